-- The same claim and finish on the narrow runner table (narrow_table.sql), with the event rows.
BEGIN;
WITH c AS (SELECT batchtask_id FROM run_narrow t WHERE name = 'Noop' AND state = 1 AND waiting_on = 0 AND (run_after IS NULL OR run_after <= now()) ORDER BY priority DESC, batchtask_id LIMIT 512 FOR UPDATE SKIP LOCKED),
u AS (UPDATE run_narrow t SET state = 3, startcount = startcount + 1, laststarted = now(), lease_token = 'tok', lease_expires = now() + interval '30 s', lease_node = 'n1', attempts = attempts + 1, updated = now(), updatedcount = updatedcount + 1 FROM c WHERE t.batchtask_id = c.batchtask_id RETURNING t.batchtask_id)
INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) SELECT batchtask_id, now(), 1, 3, NULL, 'n1', 'claimed' FROM u;
COMMIT;
BEGIN;
WITH c AS (SELECT batchtask_id FROM run_narrow WHERE state = 3 AND lease_node = 'n1' ORDER BY batchtask_id LIMIT 512 FOR UPDATE),
u AS (UPDATE run_narrow t SET state = 4, result = 'ok', progresspercent = 100, lease_token = NULL, lease_expires = NULL, lease_node = NULL, updated = now(), updatedcount = updatedcount + 1 FROM c WHERE t.batchtask_id = c.batchtask_id RETURNING t.batchtask_id)
INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) SELECT batchtask_id, now(), 3, 4, NULL, 'n1', 'ok' FROM u;
COMMIT;
