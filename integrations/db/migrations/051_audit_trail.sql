-- The ATNA audit trail: every audited event as its DICOM PS3.15 A.5 AuditMessage, append-only,
-- and the queue that delivers each one to the syslog collector (integrations.audit).

-- One row per audited event. The summary columns carry no patient data (the console's IT
-- view searches on them); the message itself names the patient, as PS3.15 requires.
CREATE TABLE audit_records (
    id                      bigserial PRIMARY KEY,
    recorded_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_time              timestamptz NOT NULL,
    event_id                text NOT NULL,          -- DCID 400 code, e.g. 110114
    event_type              text NOT NULL DEFAULT '', -- DCID 401 code, e.g. 110122, or ''
    action                  text NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome                 smallint NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    user_id                 text NOT NULL,          -- the requesting user, AE title or process
    kind                    text NOT NULL,          -- pacsflow's name: login, association, ...
    study_instance_uid      text,
    message                 text NOT NULL           -- the AuditMessage XML
);
CREATE INDEX audit_records_time ON audit_records (recorded_at);
CREATE INDEX audit_records_user ON audit_records (user_id, recorded_at);
CREATE INDEX audit_records_study ON audit_records (study_instance_uid) WHERE study_instance_uid IS NOT NULL;

-- Append-only: PostgreSQL itself refuses to change or delete a record.
CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();

-- Delivery state, apart from the records: claimed, retried and marked sent as the EMR
-- outboxes are (integrations.db.outbox). One queue, so records leave in the order recorded.
CREATE TABLE audit_outbox (
    id                      bigserial PRIMARY KEY,
    audit_record_id         bigint NOT NULL UNIQUE REFERENCES audit_records (id),
    queue                   text NOT NULL DEFAULT 'syslog',
    state                   text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    priority                integer NOT NULL DEFAULT 0,
    attempts                integer NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    leased_until            timestamptz,
    last_attempt_at         timestamptz,
    last_error              text,
    sent_at                 timestamptz,
    failed_at               timestamptz
);
CREATE INDEX audit_outbox_pending ON audit_outbox (id) WHERE state = 'pending';
