-- Dispatch by priority, and crash recovery in seconds (issue 9, items 2 and 3).

-- What decided a run's place in the queue (order priority and the study-type rule), kept
-- beside the priority itself; workers claim by priority, then by study close time.
ALTER TABLE dispatch
    ADD COLUMN priority_rule           text NOT NULL DEFAULT '',
    ADD COLUMN priority_reason         text NOT NULL DEFAULT '',
    -- the last heartbeat of the worker holding the run (its lease runs from here)
    ADD COLUMN heartbeat_at            timestamptz;
CREATE INDEX dispatch_claim_order ON dispatch (priority DESC, closed_at, queued_at)
    WHERE state = 'queued';

-- Prefect flow runs whose worker stopped (heartbeat lost): the study was queued again, and
-- the run is set to Crashed in Prefect; crashed_at says that was done (a worker retries
-- until it is, so a lost run is never left RUNNING).
CREATE TABLE dispatch_lost_runs (
    flow_run_id             uuid PRIMARY KEY,
    dispatch_id             bigint NOT NULL REFERENCES dispatch ON DELETE CASCADE,
    study_instance_uid      text NOT NULL,
    worker                  text NOT NULL DEFAULT '',
    lost_at                 timestamptz NOT NULL DEFAULT clock_timestamp(),
    crashed_at              timestamptz,
    error                   text
);
CREATE INDEX dispatch_lost_runs_pending ON dispatch_lost_runs (lost_at) WHERE crashed_at IS NULL;
