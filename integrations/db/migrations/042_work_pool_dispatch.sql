-- The work-pool route (issue 10 item 7): a queued dispatch row becomes exactly one scheduled
-- run of the process-study deployment. The run is created with the idempotency key
-- "pacsflow-dispatch-<id>" (Prefect returns the same run when asked twice) and recorded in
-- dispatch.flow_run_id; one flow run never belongs to two rows.
CREATE UNIQUE INDEX IF NOT EXISTS dispatch_one_row_per_flow_run
    ON dispatch (flow_run_id) WHERE flow_run_id IS NOT NULL;
