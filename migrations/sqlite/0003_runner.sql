-- Runner: leases, stop requests, retries, schedules and the event log.
-- Times are INTEGER microseconds since the Unix epoch, UTC, as in 0001.

-- A claim gives the task a lease: a random token, its expiry and the node holding it. Every write
-- after the claim names the token; a write with another token, or after expiry, changes nothing.
ALTER TABLE batchtask ADD COLUMN lease_token TEXT;
ALTER TABLE batchtask ADD COLUMN lease_expires INTEGER;
ALTER TABLE batchtask ADD COLUMN lease_node TEXT;
-- Runs since the task was last (re)created or reset to New by a user; restarts = attempts - 1.
ALTER TABLE batchtask ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- Not claimable before this time (retry backoff).
ALTER TABLE batchtask ADD COLUMN run_after INTEGER;
-- A stop asked while Started: when and by whom. The holder sees it and stops the run.
ALTER TABLE batchtask ADD COLUMN stop_requested INTEGER;
ALTER TABLE batchtask ADD COLUMN stop_requested_by TEXT;

ALTER TABLE batchtaskdefinition ADD COLUMN backoff_ms INTEGER NOT NULL DEFAULT 1000;
ALTER TABLE batchtaskdefinition ADD COLUMN max_backoff_ms INTEGER NOT NULL DEFAULT 600000;
-- Recurring definitions: when the next task is due. Moved forward in the transaction that creates
-- the task, so two nodes never create the same occurrence.
ALTER TABLE batchtaskdefinition ADD COLUMN next_start INTEGER;

-- Claim: oldest New task of a name (batchtask_name_state from 0001 already orders by rowid).
-- Rescue: leases by expiry.
CREATE INDEX batchtask_lease ON batchtask (lease_expires) WHERE lease_expires IS NOT NULL;
-- Stop requests by holder, polled by each node.
CREATE INDEX batchtask_stop ON batchtask (lease_node) WHERE stop_requested IS NOT NULL;
-- Retention: finished tasks by age.
CREATE INDEX batchtask_finished ON batchtask (state, updated) WHERE state IN (4, 5, 6);

-- Every state change of a non-internal task. `to_state` NULL = the task was deleted;
-- `from_state` NULL = it was created. Kept when a task is deleted (audit); removed with the task
-- by retention.
CREATE TABLE batchtaskevent (
    batchtaskevent_id INTEGER PRIMARY KEY AUTOINCREMENT,
    batchtask_id      INTEGER NOT NULL,
    at                INTEGER NOT NULL,
    from_state        INTEGER,
    to_state          INTEGER,
    associate_id      INTEGER,
    node              TEXT,
    reason            TEXT
);

CREATE INDEX batchtaskevent_task ON batchtaskevent (batchtask_id, batchtaskevent_id);
-- Deleted tasks' logs, found by their last event, for retention.
CREATE INDEX batchtaskevent_deleted ON batchtaskevent (at) WHERE to_state IS NULL;
