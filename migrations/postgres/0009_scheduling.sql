-- Scheduling: a definition can be paused across every node sharing the database. Claims skip
-- the tasks of a paused definition (they stay New), and its schedule creates nothing. Kept here,
-- not in the config file, so that pausing outlives restarts and reaches every node.
ALTER TABLE batchtaskdefinition ADD COLUMN paused boolean NOT NULL DEFAULT false;

-- The change feed (0007_feed.sql) says a definition was paused or resumed, so the other nodes'
-- claim loops look again at once (a resume makes its waiting tasks claimable).
CREATE FUNCTION batchd_notify_definition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.paused IS DISTINCT FROM OLD.paused THEN
        PERFORM pg_notify('batchd', 'def:' || NEW.name);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER batchtaskdefinition_notify AFTER UPDATE OF paused ON batchtaskdefinition
    FOR EACH ROW EXECUTE FUNCTION batchd_notify_definition();

-- Idempotency-Key on creates (src/domain/idempotency.rs): one row per associate and key, written
-- in the transaction that creates the task. The primary key decides between racing creates: the
-- second insert waits for the first to commit and then finds its row.
CREATE TABLE idempotency_key (
    associate_id integer     NOT NULL,
    key          text        COLLATE "C" NOT NULL,
    request_hash text        COLLATE "C" NOT NULL,
    task_id      integer,
    created      timestamptz NOT NULL,
    PRIMARY KEY (associate_id, key)
);
-- Retention: expired keys by age.
CREATE INDEX idempotency_key_created ON idempotency_key (created);
