-- The header evidence a series' body part is resolved from, besides BodyPartExamined,
-- descriptions and protocol (issue 10): Station Name for site overrides, and the Anatomic
-- Region Sequence codes as [scheme, value, meaning] triples (top level, or the shared
-- Frame Anatomy functional group of an enhanced multi-frame object).
ALTER TABLE series
    ADD COLUMN station_name      text NOT NULL DEFAULT '',
    ADD COLUMN anatomic_regions  jsonb NOT NULL DEFAULT '[]'::jsonb;

-- A result from a package that is not for clinical use (allowed only by
-- [models] allow_non_clinical): its pages and its worklist row say NOT FOR CLINICAL USE.
ALTER TABLE escalations ADD COLUMN clinical_use boolean NOT NULL DEFAULT true;
ALTER TABLE worklist ADD COLUMN clinical_use boolean NOT NULL DEFAULT true;
