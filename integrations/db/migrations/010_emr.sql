-- EMR integration: ADT messages received, patient context, merges, and the outboxes to the
-- EMR (HL7 MLLP and FHIR) with retry state, priority and per-patient order.

-- Every ADT (or other HL7) message received by the listener, as received.
CREATE TABLE hl7_inbox (
    id                      bigserial PRIMARY KEY,
    sending_application     text NOT NULL DEFAULT '',
    sending_facility        text NOT NULL DEFAULT '',
    message_control_id      text NOT NULL DEFAULT '',
    message_type            text NOT NULL DEFAULT '',
    version_id              text NOT NULL DEFAULT '',
    charset                 text NOT NULL DEFAULT '',
    peer                    text NOT NULL DEFAULT '',
    raw                     bytea NOT NULL,
    -- applied: patient context updated; ignored: a valid message pacsflow does not act on;
    -- rejected: answered AE (the reason is in error); duplicate: a control ID applied before.
    state                   text NOT NULL CHECK (state IN ('applied', 'ignored', 'rejected', 'duplicate')),
    ack_code                text NOT NULL,
    error                   text,
    patient_key             text NOT NULL DEFAULT '',
    received_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A control ID is applied once per sending system; a duplicate is acknowledged, not applied.
CREATE UNIQUE INDEX hl7_inbox_once ON hl7_inbox (sending_application, sending_facility, message_control_id)
    WHERE state IN ('applied', 'ignored');
CREATE INDEX hl7_inbox_received ON hl7_inbox (received_at);

-- What ADT says about each patient, keyed by the MRN's matching key (see integrations.emr.identifiers).
CREATE TABLE patient_context (
    patient_key             text PRIMARY KEY,
    mrn_authority           text NOT NULL,
    mrn_identifier          text NOT NULL,
    context                 jsonb NOT NULL,
    revision                bigint NOT NULL DEFAULT 1,
    visit_status            text NOT NULL DEFAULT 'unknown',
    ward                    text NOT NULL DEFAULT '',
    merged_into             text REFERENCES patient_context (patient_key),
    last_message_id         bigint REFERENCES hl7_inbox (id) ON DELETE SET NULL,
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX patient_context_identifier ON patient_context (mrn_identifier);

-- A40 merges applied: the old MRN's results now belong to the surviving one.
CREATE TABLE patient_merges (
    id                      bigserial PRIMARY KEY,
    prior_patient_key       text NOT NULL,
    patient_key             text NOT NULL,
    message_id              bigint REFERENCES hl7_inbox (id) ON DELETE SET NULL,
    studies_moved           integer NOT NULL DEFAULT 0,
    messages_moved          integer NOT NULL DEFAULT 0,
    merged_at               timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The HL7 outbox (001) gains retry state, priority and documents rendered at send time.
ALTER TABLE hl7_outbox
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN document jsonb,
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN rendered_revision bigint,
    -- adt: rendered with an ADT patient context; none: without ("no clinical context");
    -- given: the payload was enqueued ready-made.
    ADD COLUMN clinical_context text NOT NULL DEFAULT 'given'
        CHECK (clinical_context IN ('adt', 'none', 'given')),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ADD COLUMN leased_until timestamptz,
    ADD COLUMN last_attempt_at timestamptz,
    ADD COLUMN ack_code text,
    ADD COLUMN failed_at timestamptz,
    ADD CONSTRAINT hl7_outbox_has_content CHECK (payload IS NOT NULL OR document IS NOT NULL);
CREATE INDEX hl7_outbox_pending ON hl7_outbox (patient_key, id) WHERE state = 'pending';
CREATE INDEX hl7_outbox_study ON hl7_outbox (study_instance_uid);

-- FHIR R4 DiagnosticReports (with their Observations) waiting for the FHIR server.
CREATE TABLE fhir_outbox (
    id                      bigserial PRIMARY KEY,
    idempotency_key         text NOT NULL UNIQUE,
    study_instance_uid      text REFERENCES studies ON DELETE SET NULL,
    patient_key             text NOT NULL DEFAULT '',
    resource_type           text NOT NULL DEFAULT 'Bundle',
    document                jsonb,
    payload                 jsonb,
    priority                integer NOT NULL DEFAULT 0,
    rendered_revision       bigint,
    clinical_context        text NOT NULL DEFAULT 'given'
        CHECK (clinical_context IN ('adt', 'none', 'given')),
    state                   text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts                integer NOT NULL DEFAULT 0,
    last_error              text,
    http_status             integer,
    response                jsonb,
    next_attempt_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    leased_until            timestamptz,
    last_attempt_at         timestamptz,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at                 timestamptz,
    failed_at               timestamptz,
    CONSTRAINT fhir_outbox_has_content CHECK (payload IS NOT NULL OR document IS NOT NULL)
);
CREATE INDEX fhir_outbox_pending ON fhir_outbox (patient_key, id) WHERE state = 'pending';
CREATE INDEX fhir_outbox_study ON fhir_outbox (study_instance_uid);
