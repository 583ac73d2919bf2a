-- Task priority (0..9, higher first; ties oldest first). A create may name it, else the
-- definition's. The claim's partial index orders by it, so a claim of a name reads its first
-- rows in claim order and stops: the same cost as the id-ordered index it replaces.
ALTER TABLE batchtask ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX batchtask_claim_priority ON batchtask (name, priority DESC, batchtask_id) WHERE state = 1;
DROP INDEX batchtask_claim;

-- Rate limits (`rate = "100/1m"`): one row per claim of a rate-limited definition, written in
-- the claim's transaction under the name's claim lock; a claim counts the rows of the window
-- ending now and removes older ones. At most the rate's count (bounded) rows per name stay.
CREATE TABLE claim_start (
    name text        COLLATE "C" NOT NULL,
    at   timestamptz NOT NULL
);
CREATE INDEX claim_start_name_at ON claim_start (name, at);
