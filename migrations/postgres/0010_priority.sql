-- Task priority (0..9, higher first; ties oldest first). A create may name it, else the
-- definition's. The claim's partial index orders by it, so a claim of a name reads its first
-- rows in claim order and stops: the same cost as the id-ordered index it replaces.
ALTER TABLE batchtask ADD COLUMN priority smallint NOT NULL DEFAULT 0;
CREATE INDEX batchtask_claim_priority ON batchtask (name, priority DESC, batchtask_id) WHERE state = 1;
DROP INDEX batchtask_claim;
