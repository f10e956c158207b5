-- An opaque study key: what Prefect (run names, parameters, artifacts, logs) and the IT
-- operator see instead of accession numbers, MRNs or names (issue 10). "S" and 12 characters
-- of Crockford base32 (no I, L, O, U) drawn from gen_random_uuid(): 59 random bits, so two
-- studies of one site practically never draw the same key (1 in 20,000 over 10 million
-- studies), and the unique index turns that case into a refused insert, never a shared key.
-- It is a column DEFAULT, so every path that creates a study row (C-STORE, priors) gets one.

CREATE FUNCTION pacsflow_study_key() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT 'S' || string_agg(
        substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
               (get_byte(bytes, i) % 32) + 1, 1), '' ORDER BY i)
    FROM (SELECT uuid_send(gen_random_uuid()) AS bytes) AS random,
         generate_series(0, 11) AS i
$$;

ALTER TABLE studies ADD COLUMN study_key text NOT NULL DEFAULT pacsflow_study_key();
CREATE UNIQUE INDEX studies_study_key ON studies (study_key);
