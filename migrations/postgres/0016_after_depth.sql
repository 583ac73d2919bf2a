-- A task's place in its chain of dependencies (src/domain/dependency.rs, DEPTH_MAX): 0 with no
-- `After`, else one more than the deepest task it names, set at create. A failure fails its whole
-- chain in one transaction, so a create that would make a chain longer than the limit is
-- refused. Tasks created before this column count as 0 (their chains were not measured).
ALTER TABLE batchtask ADD COLUMN after_depth integer NOT NULL DEFAULT 0;
