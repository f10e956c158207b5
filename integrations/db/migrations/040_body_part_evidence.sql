-- The header evidence a series' body part is resolved from, besides BodyPartExamined,
-- descriptions and protocol (issue 10): Station Name for site overrides, and the Anatomic
-- Region Sequence codes as [scheme, value, meaning] triples (top level, or the shared
-- Frame Anatomy functional group of an enhanced multi-frame object).
ALTER TABLE series
    ADD COLUMN station_name      text NOT NULL DEFAULT '',
    ADD COLUMN anatomic_regions  jsonb NOT NULL DEFAULT '[]'::jsonb;
