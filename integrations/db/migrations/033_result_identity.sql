-- One content per SOP Instance UID, amendments and superseded results (issue 9, item 5).
--
-- Every result object records what it contains (content_sha256 of the file sent) and the
-- digest of the inputs it was built from. A rebuild with changed inputs gets new UIDs; the
-- objects it replaces become 'superseded' (superseded_by: the SR that replaces them), so a
-- study has at most one live SR per analyzer. status: 'final' or 'preliminary' while live.
ALTER TABLE result_objects
    ADD COLUMN content_sha256          text NOT NULL DEFAULT '',
    ADD COLUMN input_digest            text NOT NULL DEFAULT '',
    ADD COLUMN superseded_by           text,
    ADD COLUMN status                  text NOT NULL DEFAULT 'final'
        CHECK (status IN ('preliminary', 'final', 'superseded'));

-- Earlier generations recorded before this migration: only the newest SR of a study and
-- analyzer stays live.
UPDATE result_objects old
   SET status = 'superseded', superseded_by = newest.sop_instance_uid
  FROM (
        SELECT DISTINCT ON (study_instance_uid, analyzer)
               study_instance_uid, analyzer, sop_instance_uid, generation
          FROM result_objects
         WHERE kind = 'sr'
         ORDER BY study_instance_uid, analyzer, generation DESC, built_at DESC
       ) newest
 WHERE old.study_instance_uid = newest.study_instance_uid
   AND old.analyzer = newest.analyzer
   AND old.sop_instance_uid <> newest.sop_instance_uid
   AND (old.kind = 'sr' OR old.generation < newest.generation);

CREATE UNIQUE INDEX result_objects_one_live_sr ON result_objects (study_instance_uid, analyzer)
    WHERE kind = 'sr' AND status <> 'superseded';
CREATE INDEX result_objects_superseded_by ON result_objects (superseded_by)
    WHERE superseded_by IS NOT NULL;
