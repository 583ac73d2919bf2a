-- Edits by hand send their task notice after their commit (src/store/postgres/notices.rs): a
-- transaction that calls pg_notify commits under a cluster-wide lock held through its WAL flush,
-- so notices inside the edits made every durable edit wait for the one before. Such an edit sets
-- `batchd.task_notices = 'after_commit'` for its transaction, and this trigger then says nothing;
-- every other write (the runner's claims, finishes, rescues) still notifies here as before.
-- The query is 0014's, run by EXECUTE so that it is planned for each statement's row counts.

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
