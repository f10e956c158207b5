-- Urgency worklist and critical-finding escalation that reaches a person (issue 6).

-- The escalation lifecycle: open (recorded, not yet delivered) -> notified (someone was
-- reached; re-sent and escalated to the backup after the ack timeout) -> acknowledged;
-- exhausted after max_rounds unacknowledged rounds; unroutable when no team applies.
ALTER TABLE escalations
    ADD COLUMN analyzer                text NOT NULL DEFAULT '',
    ADD COLUMN generation              integer NOT NULL DEFAULT 1,
    ADD COLUMN finding_code            text NOT NULL DEFAULT '',
    ADD COLUMN tier_rule               text NOT NULL DEFAULT '',
    ADD COLUMN team                    text NOT NULL DEFAULT '',
    ADD COLUMN team_rule               text NOT NULL DEFAULT '',
    ADD COLUMN ack_token               text,
    ADD COLUMN level                   integer NOT NULL DEFAULT 0,
    ADD COLUMN round                   integer NOT NULL DEFAULT 0,
    ADD COLUMN notifications_sent      integer NOT NULL DEFAULT 0,
    ADD COLUMN delivery_failures       integer NOT NULL DEFAULT 0,
    ADD COLUMN claimed_by              text,
    ADD COLUMN claimed_until           timestamptz,
    ADD COLUMN next_action_at          timestamptz,
    ADD COLUMN first_notified_at       timestamptz,
    -- study close -> first notification delivered; the 60-second promise is checked on it
    ADD COLUMN first_notification_seconds double precision,
    ADD COLUMN first_notification_late boolean,
    ADD COLUMN first_channel           text,
    ADD COLUMN last_notified_at        timestamptz,
    ADD COLUMN acknowledged_at         timestamptz,
    ADD COLUMN acknowledged_by         text,
    ADD COLUMN acknowledged_via        text,
    ADD COLUMN updated_at              timestamptz NOT NULL DEFAULT clock_timestamp();
ALTER TABLE escalations
    ADD CONSTRAINT escalations_state CHECK
        (state IN ('open', 'notified', 'acknowledged', 'exhausted', 'unroutable'));
CREATE UNIQUE INDEX escalations_ack_token ON escalations (ack_token) WHERE ack_token IS NOT NULL;
CREATE INDEX escalations_due ON escalations (next_action_at) WHERE state IN ('open', 'notified');
CREATE INDEX escalations_study ON escalations (study_instance_uid);

-- Every attempt on every channel: what was tried, for whom, and what came back.
CREATE TABLE escalation_attempts (
    id                      bigserial PRIMARY KEY,
    idempotency_key         text NOT NULL REFERENCES escalations ON DELETE CASCADE,
    level                   integer NOT NULL,
    round                   integer NOT NULL,
    channel                 text NOT NULL,
    attempt                 integer NOT NULL,
    recipients              text[] NOT NULL DEFAULT '{}',
    outcome                 text NOT NULL CHECK (outcome IN ('delivered', 'failed', 'skipped')),
    detail                  text NOT NULL DEFAULT '',
    started_at              timestamptz NOT NULL,
    finished_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX escalation_attempts_key ON escalation_attempts (idempotency_key, id);

-- The timeline of an escalation (opened, delivered, undelivered, late, escalated, acknowledged,
-- exhausted) for the console and monitoring.
CREATE TABLE escalation_events (
    id                      bigserial PRIMARY KEY,
    idempotency_key         text NOT NULL REFERENCES escalations ON DELETE CASCADE,
    at                      timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind                    text NOT NULL,
    detail                  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX escalation_events_key ON escalation_events (idempotency_key, id);
CREATE INDEX escalation_events_kind ON escalation_events (kind, at);

-- For monitoring: one row per escalation with its latency against the deadline.
CREATE VIEW escalation_latency AS
SELECT idempotency_key, study_instance_uid, finding, team, study_closed_at, first_notified_at,
       first_notification_seconds, first_notification_late, first_channel, state,
       acknowledged_at,
       EXTRACT(EPOCH FROM (acknowledged_at - first_notified_at)) AS seconds_to_acknowledge
FROM escalations;

ALTER TABLE worklist
    ADD COLUMN generation              integer,
    ADD COLUMN tier_rule               text NOT NULL DEFAULT '',
    ADD COLUMN primary_probability     double precision,
    ADD COLUMN patient_location        text NOT NULL DEFAULT '',
    ADD COLUMN study_description       text NOT NULL DEFAULT '',
    ADD COLUMN analysed_at             timestamptz,
    ADD COLUMN tier_at                 timestamptz,
    ADD COLUMN priority_message_control_id text,
    ADD COLUMN priority_sent_tier      text;
