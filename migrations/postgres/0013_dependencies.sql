-- Task dependencies ("After"): a task waits until every task it names has succeeded. One row
-- per edge; `satisfied` is set in the transaction that marks the dependency Succeeded, and
-- `waiting_on` counts a task's unsatisfied edges (decremented under the dependent's row lock),
-- so the claim only adds `waiting_on = 0`. Edges outlive a deleted dependency (an unsatisfied
-- edge to a missing task fails its dependent); they go with the dependent.
ALTER TABLE batchtask ADD COLUMN waiting_on integer NOT NULL DEFAULT 0;
CREATE TABLE batchtask_after (
    task_id   integer NOT NULL,
    after_id  integer NOT NULL,
    satisfied boolean NOT NULL DEFAULT false,
    PRIMARY KEY (task_id, after_id)
);
CREATE INDEX batchtask_after_before ON batchtask_after (after_id, task_id);

-- The claim reads a name's ready rows in claim order from this partial index, so waiting tasks
-- cost the claim nothing (a filter on the old index would step over every one of them).
CREATE INDEX batchtask_claim_ready ON batchtask (name, priority DESC, batchtask_id) WHERE state = 1 AND waiting_on = 0;
DROP INDEX batchtask_claim_priority;
