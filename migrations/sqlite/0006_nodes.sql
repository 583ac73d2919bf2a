-- Nodes: every batchd process sharing this database keeps its row up to date (written at start,
-- refreshed every heartbeat, `stopped` set at a graceful shutdown). A node is alive while its
-- row was refreshed within its own lease (`lease_ms`); the rule is in src/domain/node.rs.
-- Times are INTEGER microseconds since the Unix epoch, UTC, as in 0001.
CREATE TABLE node (
    name           TEXT    NOT NULL PRIMARY KEY,
    version        TEXT    NOT NULL,
    address        TEXT    NOT NULL,
    started        INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    running        INTEGER NOT NULL DEFAULT 0,
    runner_enabled INTEGER NOT NULL,
    lease_ms       INTEGER NOT NULL,
    stopped        INTEGER
);

-- The list (recently seen first) and retention (long unseen).
CREATE INDEX node_last_seen ON node (last_seen);
