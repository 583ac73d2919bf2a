-- Nodes, PostgreSQL dialect of migrations/sqlite/0006_nodes.sql: the same table, columns and
-- index. Every batchd process sharing this database keeps its row up to date (written at start,
-- refreshed every heartbeat, `stopped` set at a graceful shutdown). A node is alive while its
-- row was refreshed within its own lease (`lease_ms`); the rule is in src/domain/node.rs.
CREATE TABLE node (
    name           text        COLLATE "C" NOT NULL PRIMARY KEY,
    version        text        COLLATE "C" NOT NULL,
    address        text        COLLATE "C" NOT NULL,
    started        timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    running        bigint      NOT NULL DEFAULT 0,
    runner_enabled boolean     NOT NULL,
    lease_ms       bigint      NOT NULL,
    stopped        timestamptz
);

-- The list (recently seen first) and retention (long unseen).
CREATE INDEX node_last_seen ON node (last_seen);
