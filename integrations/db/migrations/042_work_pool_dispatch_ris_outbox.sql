-- The work-pool route (issue 10 item 7): a queued dispatch row becomes exactly one scheduled
-- run of the process-study deployment. The run is created with the idempotency key
-- "pacsflow-dispatch-<id>" (Prefect returns the same run when asked twice) and recorded in
-- dispatch.flow_run_id; one flow run never belongs to two rows.
CREATE UNIQUE INDEX IF NOT EXISTS dispatch_one_row_per_flow_run
    ON dispatch (flow_run_id) WHERE flow_run_id IS NOT NULL;

-- [ris] is its own destination (issue 10 item 8): the HL7 outbox rows say where they go, and
-- each destination's sender drains only its own rows (the EMR's ORU, the RIS's ORM/OMI).
ALTER TABLE hl7_outbox ADD COLUMN IF NOT EXISTS destination text NOT NULL DEFAULT 'emr'
    CHECK (destination IN ('emr', 'ris'));
CREATE INDEX IF NOT EXISTS hl7_outbox_pending_destination ON hl7_outbox (destination, id)
    WHERE state = 'pending';
