-- Task priority (0..9, higher first; ties oldest first). A create may name it, else the
-- definition's. The claim reads a name's New rows in claim order from this partial index.
ALTER TABLE batchtask ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX batchtask_claim_priority ON batchtask (name, priority DESC, batchtask_id) WHERE state = 1;
