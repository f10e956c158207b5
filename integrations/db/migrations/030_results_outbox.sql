-- The results outbox: every built result object (SR, overlays), queued per destination and
-- delivered by `pacsflow results-sender` with retries; the run never waits for the PACS.

CREATE TABLE results_outbox (
    id                      bigserial PRIMARY KEY,
    -- where it goes: 'pacs' is the [pacs] peer (more destinations are more names)
    destination             text NOT NULL,
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    generation              integer NOT NULL,
    sop_instance_uid        text NOT NULL,
    sop_class_uid           text NOT NULL,
    kind                    text NOT NULL,
    -- 'report' (the SR) is delivered before the 'overlay' objects of the same study
    part                    text NOT NULL CHECK (part IN ('report', 'overlay')),
    path                    text NOT NULL,
    -- SHA-256 of the file's bytes: what was stored, so a rerun sends nothing the peer has
    content_sha256          text NOT NULL,
    priority                integer NOT NULL DEFAULT 0,
    -- pending: waiting or being retried; sent: stored by the peer (or it had this content
    -- already); failed: given up or refused for good (kept, alerted, retried by an operator);
    -- superseded: a newer content of the same SOP Instance UID was queued before this one left
    state                   text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'failed', 'superseded')),
    -- 'stored' (C-STORE success or warning) or 'already stored' (same UID and hash sent before)
    outcome                 text,
    status_code             integer,
    peer                    text,
    attempts                integer NOT NULL DEFAULT 0,
    last_error              text,
    next_attempt_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    leased_until            timestamptz,
    last_attempt_at         timestamptz,
    give_up_at              timestamptz NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at                 timestamptz,
    failed_at               timestamptz,
    -- when the "delivery late" and the "delivery failed" alerts went out (once each per row)
    late_alert_at           timestamptz,
    failure_alert_at        timestamptz
);
-- one pending row per destination, object and content: queuing it again is a no-op
CREATE UNIQUE INDEX results_outbox_once ON results_outbox (destination, sop_instance_uid, content_sha256)
    WHERE state = 'pending';
CREATE INDEX results_outbox_pending ON results_outbox (destination, study_instance_uid, id)
    WHERE state = 'pending';
CREATE INDEX results_outbox_stored ON results_outbox (destination, sop_instance_uid)
    WHERE state = 'sent';
CREATE INDEX results_outbox_study ON results_outbox (study_instance_uid);
