-- The task trigger of 0007 fires only for rows it may notify about. Its function decides, but a
-- trigger without a condition is queued for every row whose state changes and runs at COMMIT:
-- the runner's claims and finishes (never state New) paid a PL/pgSQL call per row for nothing.
-- The condition reads NEW only (an INSERT trigger has no OLD); the function's checks stay.
DROP TRIGGER batchtask_notify ON batchtask;

CREATE CONSTRAINT TRIGGER batchtask_notify AFTER INSERT OR UPDATE OF state, stop_requested ON batchtask
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 1 OR (NEW.stop_requested IS NOT NULL AND NEW.lease_node IS NOT NULL))
    EXECUTE FUNCTION batchd_notify_task();
