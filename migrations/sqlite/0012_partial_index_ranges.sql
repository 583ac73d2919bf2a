-- The two partial indexes on task state name their states as a range instead of an IN list.
-- SQLite evaluates an IN list of three or more constants through a temporary b-tree, built
-- afresh each time the predicate is tested, and it tests a partial index's predicate on the old
-- and on the new row of every write that touches the index: a PUT (which moves `updated`) paid
-- two such b-trees, a claim or finish (which moves `state`) four. A range is two comparisons.
-- Same rows as before (states are integers, src/domain/task.rs): finished = Succeeded 4, Failed 5,
-- SucceededManualCleanup 6; live = New 1, Aquired 2, Started 3. Queries meant for these indexes,
-- and the create's ON CONFLICT target, repeat the predicate word for word, as SQLite requires.
DROP INDEX batchtask_finished;
CREATE INDEX batchtask_finished ON batchtask (state, updated) WHERE state BETWEEN 4 AND 6;
DROP INDEX batchtask_unique_live;
CREATE UNIQUE INDEX batchtask_unique_live ON batchtask (unique_key)
    WHERE unique_key IS NOT NULL AND state BETWEEN 1 AND 3;
