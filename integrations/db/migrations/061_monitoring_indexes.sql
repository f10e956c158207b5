-- Monitoring (issue 15): the daily report and every /metrics scrape read recent rows by time;
-- without these they scan whole tables that grow by every study.
CREATE INDEX IF NOT EXISTS study_steps_finished ON study_steps (finished_at);
CREATE INDEX IF NOT EXISTS worklist_analysed ON worklist (analysed_at) WHERE tier IS NOT NULL;
CREATE INDEX IF NOT EXISTS worklist_results_stored ON worklist (results_stored_at)
    WHERE results_stored_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS result_objects_live_sr_built ON result_objects (built_at)
    WHERE kind = 'sr' AND status <> 'superseded';
CREATE INDEX IF NOT EXISTS studies_needing_attention ON studies (state, updated_at)
    WHERE state IN ('failed', 'unrouted');
CREATE INDEX IF NOT EXISTS hl7_outbox_unsent ON hl7_outbox (created_at) WHERE state <> 'sent';
