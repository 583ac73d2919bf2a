-- Fresh 20,480 New tasks, copies of the one task created over HTTP (bench/pg_floor.sh).
TRUNCATE batchtaskevent;
DELETE FROM batchtask WHERE batchtask_id > 1;
INSERT INTO batchtask (batchtaskdefinition_id, name, associate_id, description, dbtag, state, detailstable, detailsrecord, request, response, result, context, startcount, laststarted, progresspercent, progressdescription, filename, is_system, is_internal, cancellation_behaviour, registered, registered_associate_id, updated, updated_associate_id, updatedcount, attempts, failures, rescues, priority, waiting_on, after_depth)
SELECT batchtaskdefinition_id, name, associate_id, description, dbtag, 1, detailstable, detailsrecord, request, response, result, context, startcount, laststarted, progresspercent, progressdescription, filename, is_system, is_internal, cancellation_behaviour, now() + g * interval '1 microsecond', registered_associate_id, now(), updated_associate_id, updatedcount, attempts, failures, rescues, priority, waiting_on, after_depth
FROM batchtask, generate_series(1, 20480) g WHERE batchtask_id = 1;
INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) SELECT batchtask_id, now(), NULL, 1, 1, NULL, 'created' FROM batchtask;
ANALYZE;
VACUUM batchtask;
CHECKPOINT;
