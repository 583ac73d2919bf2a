-- A task's version (`updatedcount`, the ETag) and `updated` move on every change a client can
-- see, also on one that writes the same values again (a heartbeat repeating its progress): the
-- task cache of other nodes (src/store/cache.rs) must hear of it, or they would serve the old
-- ETag. 0015's function with `updatedcount` in the comparison; lease-only writes still say nothing.

CREATE OR REPLACE FUNCTION batchd_notify_tasks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
    IF current_setting('batchd.task_notices', true) = 'after_commit' THEN
        RETURN NULL;
    END IF;
    FOR ids IN EXECUTE
        'SELECT string_agg(batchtask_id::text, '','')
        FROM (
            SELECT n.batchtask_id, row_number() OVER () - 1 AS pos
            FROM changed_rows n JOIN before_rows o USING (batchtask_id)
            WHERE (n.state, n.progresspercent, n.progressdescription, n.startcount, n.laststarted, n.result,
                   n.response, n.request, n.description, n.context, n.name, n.associate_id, n.dbtag,
                   n.detailstable, n.detailsrecord, n.filename, n.is_system, n.is_internal,
                   n.cancellation_behaviour, n.registered, n.updatedcount)
                IS DISTINCT FROM
                  (o.state, o.progresspercent, o.progressdescription, o.startcount, o.laststarted, o.result,
                   o.response, o.request, o.description, o.context, o.name, o.associate_id, o.dbtag,
                   o.detailstable, o.detailsrecord, o.filename, o.is_system, o.is_internal,
                   o.cancellation_behaviour, o.registered, o.updatedcount)
        ) r
        GROUP BY pos / 700'
    LOOP
        PERFORM pg_notify('batchd', 'tasks:u:' || ids);
    END LOOP;
    RETURN NULL;
END $$;
