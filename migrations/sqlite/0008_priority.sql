-- Task priority (0..9, higher first; ties oldest first). A create may name it, else the
-- definition's. The claim reads a name's New rows in claim order from this partial index.
ALTER TABLE batchtask ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX batchtask_claim_priority ON batchtask (name, priority DESC, batchtask_id) WHERE state = 1;

-- Rate limits (`rate = "100/1m"`): one row per claim of a rate-limited definition, written in
-- the claim's transaction; a claim counts the rows of the window ending now and removes older
-- ones. Times are INTEGER microseconds, as in 0001.
CREATE TABLE claim_start (
    name TEXT    NOT NULL,
    at   INTEGER NOT NULL
);
CREATE INDEX claim_start_name_at ON claim_start (name, at);
