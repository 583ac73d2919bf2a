-- 100,000 tasks for the list benchmark (bench/formats.sh): 20 definitions, states 1..6,
-- registered one per second from 2023-11-14T22:13:20Z, a fiftieth of them system tasks.
INSERT OR IGNORE INTO batchtaskdefinition (name, description, runner, timeout, registered, updated)
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19)
SELECT 'Task' || i, 'definition ' || i, 'external', 60, 0, 0 FROM n;
INSERT INTO batchtask (batchtaskdefinition_id, name, associate_id, description, state, request, startcount,
  laststarted, progresspercent, registered, registered_associate_id, updated, updated_associate_id, updatedcount, is_system)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
SELECT (SELECT batchtaskdefinition_id FROM batchtaskdefinition WHERE name = 'Task' || (i % 20)), 'Task' || (i % 20),
  1, 'description ' || i, 1 + (i % 6), 'req', i % 4,
  CASE WHEN i % 6 >= 2 THEN 1700000000000000 + i * 1000000 END, i % 101, 1700000000000000 + i * 1000000, 1,
  1700000000000000 + i * 1000000 + 500000, 1, 1, CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END FROM n;
