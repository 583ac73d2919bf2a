-- Unique tasks (`unique = [...]` on a definition): the canonical key of the definition's name and
-- the chosen ParameterObject values (src/domain/unique.rs), set at create. At most one task per
-- key is live (New 1, Aquired 2, Started 3): a create that finds the key taken inserts nothing
-- (ON CONFLICT DO NOTHING) and answers the holder; a retry back to New is refused.
ALTER TABLE batchtask ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX batchtask_unique_live ON batchtask (unique_key)
    WHERE unique_key IS NOT NULL AND state IN (1, 2, 3);
