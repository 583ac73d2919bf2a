-- graphile-worker's shape: the narrow claim without events, and a finish that deletes the row.
BEGIN;
WITH c AS (SELECT batchtask_id FROM run_narrow t WHERE name = 'Noop' AND state = 1 AND waiting_on = 0 AND (run_after IS NULL OR run_after <= now()) ORDER BY priority DESC, batchtask_id LIMIT 512 FOR UPDATE SKIP LOCKED),
u AS (UPDATE run_narrow t SET state = 3, startcount = startcount + 1, laststarted = now(), lease_token = 'tok', lease_expires = now() + interval '30 s', lease_node = 'n1', attempts = attempts + 1, updated = now(), updatedcount = updatedcount + 1 FROM c WHERE t.batchtask_id = c.batchtask_id RETURNING t.batchtask_id)
SELECT count(*) FROM u;
COMMIT;
BEGIN;
DELETE FROM run_narrow WHERE batchtask_id IN (SELECT batchtask_id FROM run_narrow WHERE state = 3 AND lease_node = 'n1' ORDER BY batchtask_id LIMIT 512 FOR UPDATE);
COMMIT;
