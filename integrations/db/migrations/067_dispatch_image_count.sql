-- 067: how many images (frames included) the study held when its run was queued. Express
-- workers ([worker] express_workers) claim only runs of at most [worker] express_max_images,
-- so a short study never waits behind long ones that every other worker has taken. NULL
-- (rows queued before this migration): not known, so never taken by the express lane.
ALTER TABLE dispatch ADD COLUMN image_count integer;
