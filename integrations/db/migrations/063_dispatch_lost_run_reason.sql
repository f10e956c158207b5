-- Why a Prefect flow run was lost, for the Crashed message: '' is a worker that stopped
-- (heartbeat lost); a worker that is still alive says what cut its run short (the Prefect
-- API failing during the run).
ALTER TABLE dispatch_lost_runs ADD COLUMN reason text NOT NULL DEFAULT '';
