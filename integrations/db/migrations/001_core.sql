-- pacsflow core schema: studies as received, the dispatch queue, per-step outcomes, results.
-- Later migrations add to it; never edit a migration that has shipped.

CREATE TABLE studies (
    study_instance_uid      text PRIMARY KEY,
    patient_id              text NOT NULL DEFAULT '',
    issuer_of_patient_id    text NOT NULL DEFAULT '',
    patient_name            text NOT NULL DEFAULT '',
    patient_birth_date      text NOT NULL DEFAULT '',
    patient_sex             text NOT NULL DEFAULT '',
    accession_number        text NOT NULL DEFAULT '',
    study_date              text NOT NULL DEFAULT '',
    study_time              text NOT NULL DEFAULT '',
    study_description       text NOT NULL DEFAULT '',
    referring_physician_name text NOT NULL DEFAULT '',
    modalities              text[] NOT NULL DEFAULT '{}',
    calling_ae_title        text NOT NULL DEFAULT '',
    -- receiving: open; queued/processing/done/failed: closed and routed; unrouted: closed, no rule
    -- matched; prior: fetched from the PACS as a prior of another study, never processed itself.
    state                   text NOT NULL DEFAULT 'receiving'
        CHECK (state IN ('receiving', 'queued', 'processing', 'done', 'failed', 'unrouted', 'prior')),
    generation              integer NOT NULL DEFAULT 1,
    instance_count          integer NOT NULL DEFAULT 0,
    first_received_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_received_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at               timestamptz,
    close_reason            text,
    route                   jsonb,
    unrouted_reason         text,
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX studies_receiving ON studies (last_received_at) WHERE state = 'receiving';
CREATE INDEX studies_patient ON studies (patient_id);

CREATE TABLE series (
    series_instance_uid     text PRIMARY KEY,
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    modality                text NOT NULL DEFAULT '',
    body_part_examined      text NOT NULL DEFAULT '',
    series_description      text NOT NULL DEFAULT '',
    protocol_name           text NOT NULL DEFAULT '',
    series_number           integer,
    laterality              text NOT NULL DEFAULT '',
    view_position           text NOT NULL DEFAULT '',
    sop_class_uids          text[] NOT NULL DEFAULT '{}',
    instance_count          integer NOT NULL DEFAULT 0
);
CREATE INDEX series_study ON series (study_instance_uid);

CREATE TABLE instances (
    sop_instance_uid        text PRIMARY KEY,
    series_instance_uid     text NOT NULL REFERENCES series ON DELETE CASCADE,
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    sop_class_uid           text NOT NULL,
    transfer_syntax_uid     text NOT NULL,
    instance_number         integer,
    path                    text NOT NULL,
    size_bytes              bigint NOT NULL,
    calling_ae_title        text NOT NULL DEFAULT '',
    received_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX instances_study ON instances (study_instance_uid);

-- One row per requested run of process-study; the queue the warm workers drain.
CREATE TABLE dispatch (
    id                      bigserial PRIMARY KEY,
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    generation              integer NOT NULL,
    reason                  text NOT NULL,
    state                   text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'completed', 'failed', 'superseded')),
    priority                integer NOT NULL DEFAULT 0,
    queued_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_at               timestamptz,
    started_at              timestamptz,
    finished_at             timestamptz,
    lease_expires_at        timestamptz,
    worker                  text,
    flow_run_id             uuid,
    error                   text
);
-- At most one waiting run per study: no double submit.
CREATE UNIQUE INDEX dispatch_one_queued ON dispatch (study_instance_uid) WHERE state = 'queued';
CREATE INDEX dispatch_active ON dispatch (state, priority DESC, queued_at) WHERE state IN ('queued', 'running');

-- Latest outcome of each flow step per study and generation (monitoring and acceptance read it).
CREATE TABLE study_steps (
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    generation              integer NOT NULL,
    step                    text NOT NULL,
    state                   text NOT NULL CHECK (state IN ('running', 'completed', 'failed', 'skipped')),
    detail                  jsonb NOT NULL DEFAULT '{}',
    flow_run_id             uuid,
    started_at              timestamptz,
    finished_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (study_instance_uid, generation, step)
);

-- One analysis per study and analyzer; a rerun upserts it.
CREATE TABLE analyses (
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    analyzer                text NOT NULL,
    generation              integer NOT NULL,
    model_name              text NOT NULL,
    model_version           text NOT NULL,
    status                  text NOT NULL,
    tier                    text NOT NULL,
    result_path             text NOT NULL,
    summary                 jsonb NOT NULL DEFAULT '{}',
    inference_seconds       double precision,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (study_instance_uid, analyzer)
);

-- Result objects pacsflow built and stored to the PACS.
CREATE TABLE result_objects (
    sop_instance_uid        text PRIMARY KEY,
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    series_instance_uid     text NOT NULL,
    sop_class_uid           text NOT NULL,
    kind                    text NOT NULL,
    analyzer                text NOT NULL,
    model_version           text NOT NULL,
    generation              integer NOT NULL,
    path                    text NOT NULL,
    built_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    stored_at               timestamptz
);
CREATE INDEX result_objects_study ON result_objects (study_instance_uid);

CREATE TABLE priors (
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    prior_study_instance_uid text NOT NULL,
    prior_study_date        text NOT NULL DEFAULT '',
    prior_accession_number  text NOT NULL DEFAULT '',
    modality                text NOT NULL DEFAULT '',
    status                  text NOT NULL,
    detail                  text NOT NULL DEFAULT '',
    recorded_at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (study_instance_uid, prior_study_instance_uid)
);

CREATE TABLE worklist (
    study_instance_uid      text PRIMARY KEY REFERENCES studies ON DELETE CASCADE,
    accession_number        text NOT NULL DEFAULT '',
    patient_id              text NOT NULL DEFAULT '',
    patient_name            text NOT NULL DEFAULT '',
    modality                text NOT NULL DEFAULT '',
    -- tier is unknown until the study is analysed
    tier                    text CHECK (tier IN ('Critical', 'Urgent', 'Routine')),
    tier_rank               integer,
    primary_finding         text NOT NULL DEFAULT '',
    status                  text NOT NULL
        CHECK (status IN ('received', 'analysing', 'results stored', 'read')),
    received_at             timestamptz,
    closed_at               timestamptz,
    analysing_at            timestamptz,
    results_stored_at       timestamptz,
    read_at                 timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX worklist_order ON worklist (tier_rank NULLS LAST, closed_at);

-- Outbound HL7 messages; a message leaves only on ACK AA (the EMR issue adds the sender).
CREATE TABLE hl7_outbox (
    id                      bigserial PRIMARY KEY,
    message_control_id      text NOT NULL UNIQUE,
    study_instance_uid      text REFERENCES studies ON DELETE SET NULL,
    patient_key             text NOT NULL DEFAULT '',
    message_type            text NOT NULL,
    payload                 text NOT NULL,
    state                   text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts                integer NOT NULL DEFAULT 0,
    last_error              text,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at                 timestamptz
);

-- Critical findings to escalate; the idempotency key makes each (study, finding) notify once.
CREATE TABLE escalations (
    idempotency_key         text PRIMARY KEY,
    study_instance_uid      text NOT NULL REFERENCES studies ON DELETE CASCADE,
    finding                 text NOT NULL,
    tier                    text NOT NULL,
    probability             double precision NOT NULL,
    state                   text NOT NULL DEFAULT 'open',
    study_closed_at         timestamptz,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- What the node refused or noticed, for the monitoring and doctor issues.
CREATE TABLE node_events (
    id                      bigserial PRIMARY KEY,
    at                      timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind                    text NOT NULL,
    calling_ae_title        text NOT NULL DEFAULT '',
    peer_host               text NOT NULL DEFAULT '',
    study_instance_uid      text NOT NULL DEFAULT '',
    sop_instance_uid        text NOT NULL DEFAULT '',
    detail                  text NOT NULL DEFAULT ''
);
CREATE INDEX node_events_at ON node_events (at);
