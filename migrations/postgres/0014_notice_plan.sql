-- The task-change notice of 0008, planned for each statement. PL/pgSQL keeps a query's plan for
-- the session, and a query over transition tables is planned for the row counts of its first
-- call: after a one-row update the join of old and new rows stayed a nested loop, so a runner
-- batch of 512 rows compared 512 x 512 pairs (30-45 ms per statement, most of a claim's time).
-- EXECUTE plans the query with this statement's counts (a hash join); what it notifies is the same.
CREATE OR REPLACE FUNCTION batchd_notify_tasks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
    FOR ids IN EXECUTE
        'SELECT string_agg(batchtask_id::text, '','')
        FROM (
            SELECT n.batchtask_id, row_number() OVER () - 1 AS pos
            FROM changed_rows n JOIN before_rows o USING (batchtask_id)
            WHERE (n.state, n.progresspercent, n.progressdescription, n.startcount, n.laststarted, n.result,
                   n.response, n.request, n.description, n.context, n.name, n.associate_id, n.dbtag,
                   n.detailstable, n.detailsrecord, n.filename, n.is_system, n.is_internal,
                   n.cancellation_behaviour, n.registered)
                IS DISTINCT FROM
                  (o.state, o.progresspercent, o.progressdescription, o.startcount, o.laststarted, o.result,
                   o.response, o.request, o.description, o.context, o.name, o.associate_id, o.dbtag,
                   o.detailstable, o.detailsrecord, o.filename, o.is_system, o.is_internal,
                   o.cancellation_behaviour, o.registered)
        ) r
        GROUP BY pos / 700'
    LOOP
        PERFORM pg_notify('batchd', 'tasks:u:' || ids);
    END LOOP;
    RETURN NULL;
END $$;
