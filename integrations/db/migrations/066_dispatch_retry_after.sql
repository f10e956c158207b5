-- 066: a run queued again for a transient cause (the Prefect API unreachable, after the
-- worker escalated the study's Critical findings without it) waits until retry_after before
-- it is claimed again, so the other queued studies get their turn meanwhile.
ALTER TABLE dispatch ADD COLUMN retry_after timestamptz;
