-- 062: a study whose model could not run anywhere (out of memory on the GPU at batch 1 and
-- then on the CPU) is shown "AI unavailable" on the worklist, never as an analysed study
-- with no finding. A rerun sets it back to 'analysing'.
ALTER TABLE worklist DROP CONSTRAINT worklist_status_check;
ALTER TABLE worklist ADD CONSTRAINT worklist_status_check
    CHECK (status IN ('received', 'analysing', 'results stored', 'read', 'AI unavailable'));
