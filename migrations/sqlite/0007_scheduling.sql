-- Scheduling: a paused definition's tasks stay New (claims skip them) and its schedule creates
-- nothing. Kept in the database so that pausing outlives restarts.
ALTER TABLE batchtaskdefinition ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;

-- Idempotency-Key on creates (src/domain/idempotency.rs): one row per associate and key, written
-- in the transaction that creates the task. Times are INTEGER microseconds, as in 0001.
CREATE TABLE idempotency_key (
    associate_id INTEGER NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    task_id      INTEGER,
    created      INTEGER NOT NULL,
    PRIMARY KEY (associate_id, key)
);
CREATE INDEX idempotency_key_created ON idempotency_key (created);
