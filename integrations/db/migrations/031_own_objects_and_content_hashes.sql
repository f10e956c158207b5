-- Issue 9 items 6 and 7: what pacsflow created is recognised when it comes back, and a known
-- SOP Instance UID arriving with different content is noticed.

-- The SHA-256 of the dataset bytes as received (file meta excluded), taken while spooling.
-- NULL for instances recorded before this migration: the node hashes their file on demand.
ALTER TABLE instances ADD COLUMN content_sha256 text;
-- An object pacsflow built and sent (its SOP Instance UID or Series Instance UID is in
-- result_objects) that a PACS gave back: kept, but it never opens or re-opens its study.
ALTER TABLE instances ADD COLUMN ours boolean NOT NULL DEFAULT false;
ALTER TABLE series ADD COLUMN ours boolean NOT NULL DEFAULT false;

-- result_objects is the registry of everything pacsflow sends; the C-STORE path looks a
-- received instance up by SOP Instance UID (primary key) and by Series Instance UID (here).
CREATE INDEX result_objects_series ON result_objects (series_instance_uid);

-- A changed duplicate names both contents.
ALTER TABLE node_events ADD COLUMN first_content_sha256 text NOT NULL DEFAULT '';
ALTER TABLE node_events ADD COLUMN received_content_sha256 text NOT NULL DEFAULT '';
