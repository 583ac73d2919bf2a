-- The change feed (src/store/feed.rs): every node LISTENs on channel `batchd`. The triggers raise
-- the notices in the transaction of the change, so they are delivered at its COMMIT (and not at
-- all on ROLLBACK). Payloads name a definition or a node only: PostgreSQL folds identical
-- payloads of one transaction into one, so a batch of creates costs one notice per name.

-- Deferred to COMMIT, where it looks at the row again: a task the creating node claimed in the
-- same transaction (claim on create) wakes nobody.
CREATE FUNCTION batchd_notify_task() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 1 AND (TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM 1)
       AND EXISTS (SELECT 1 FROM batchtask WHERE batchtask_id = NEW.batchtask_id AND state = 1) THEN
        PERFORM pg_notify('batchd', 'new:' || NEW.name);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.stop_requested IS NOT NULL AND OLD.stop_requested IS NULL
       AND NEW.lease_node IS NOT NULL THEN
        PERFORM pg_notify('batchd', 'stop:' || NEW.lease_node);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER batchtask_notify AFTER INSERT OR UPDATE OF state, stop_requested ON batchtask
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION batchd_notify_task();

CREATE FUNCTION batchd_notify_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('batchd', 'cred');
    RETURN NULL;
END $$;

CREATE TRIGGER credential_change_notify AFTER INSERT ON credential_change
    FOR EACH ROW EXECUTE FUNCTION batchd_notify_credentials();
