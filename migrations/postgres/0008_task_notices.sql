-- Task-level notices on the change feed (src/store/feed.rs), for the live event stream: which
-- tasks a statement created, changed or deleted, as `tasks:c:1,2,3`, `tasks:u:…`, `tasks:d:…`.
-- Statement-level triggers over transition tables: one notice per statement (per 700 ids, so a
-- payload stays under PostgreSQL's 8000 bytes: 700 ids of at most 10 digits and a comma), not one
-- per row. An UPDATE notifies only rows whose visible properties changed: a lease heartbeat that
-- moves only lease columns (or `updated`) says nothing. PostgreSQL allows no column list on an
-- UPDATE trigger with transition tables, hence the comparison here.

CREATE FUNCTION batchd_notify_tasks_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
    FOR ids IN
        SELECT string_agg(batchtask_id::text, ',')
        FROM (SELECT batchtask_id, row_number() OVER () - 1 AS pos FROM created_rows) r
        GROUP BY pos / 700
    LOOP
        PERFORM pg_notify('batchd', 'tasks:c:' || ids);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION batchd_notify_tasks_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
    FOR ids IN
        SELECT string_agg(batchtask_id::text, ',')
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
        GROUP BY pos / 700
    LOOP
        PERFORM pg_notify('batchd', 'tasks:u:' || ids);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION batchd_notify_tasks_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
    FOR ids IN
        SELECT string_agg(batchtask_id::text, ',')
        FROM (SELECT batchtask_id, row_number() OVER () - 1 AS pos FROM deleted_rows) r
        GROUP BY pos / 700
    LOOP
        PERFORM pg_notify('batchd', 'tasks:d:' || ids);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER batchtask_created_notify AFTER INSERT ON batchtask
    REFERENCING NEW TABLE AS created_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batchd_notify_tasks_created();

CREATE TRIGGER batchtask_changed_notify AFTER UPDATE ON batchtask
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batchd_notify_tasks_changed();

CREATE TRIGGER batchtask_deleted_notify AFTER DELETE ON batchtask
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batchd_notify_tasks_deleted();
