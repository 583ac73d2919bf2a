//! SQLite store: one file, WAL, durable commits.
//!
//! Reads use a small pool of connections and run inline: a point read on a warm page cache
//! takes microseconds, far less than a hop to a blocking thread. Writes go to one writer
//! thread that batches them into group commits (see `writer.rs`).

mod auth;
mod deps;
mod list;
mod nodes;
mod runner;
mod stats;
mod writer;

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};

use crate::domain::node::NodeRow;
use crate::domain::run::{self, RunPolicy};
use crate::domain::task::{LINKTYPE_BATCHTASK, TABLE_BATCHTASK, TABLE_BINARYOBJECT};
use crate::domain::{Associate, BatchTaskState, CancellationBehaviour, DomainError, NewTask, Parameters, Role, Task};

use super::access;
use super::feed::{Feed, Notice, TasksWere};
use super::runner::{
    Actor, Beat, BeatOutcome, ClaimRequest, Claimed, Finish, FinishResult, Lease, LeaseInfo, Rescued, ScheduleTick,
    StopResult, TaskEvent,
};
use super::sql::{self, Dialect, SqlValue};
use super::{
    AssociateCredentials, BackendError, DefinitionRow, DeleteGuard, ListQuery, ListRow, NewAssociate, Store,
    StoreError, TaskChange, TaskFilter,
};
use writer::Writer;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_auth.sql")),
    // 3: runner
    (3, include_str!("../../../migrations/sqlite/0003_runner.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_formats.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_rescues.sql")),
    (6, include_str!("../../../migrations/sqlite/0006_nodes.sql")),
    (7, include_str!("../../../migrations/sqlite/0007_scheduling.sql")),
    (8, include_str!("../../../migrations/sqlite/0008_priority.sql")),
    (9, include_str!("../../../migrations/sqlite/0009_unique.sql")),
    (10, include_str!("../../../migrations/sqlite/0010_dependencies.sql")),
    (11, include_str!("../../../migrations/sqlite/0011_after_depth.sql")),
    (12, include_str!("../../../migrations/sqlite/0012_partial_index_ranges.sql")),
];

/// Columns of a task row, in the order `task_from_row` reads them.
pub(crate) const TASK_COLUMNS: &str = "t.batchtask_id, t.name, t.associate_id, t.detailstable, t.detailsrecord, t.is_system, \
     t.is_internal, (SELECT b.binarydata FROM binaryobjectlink l JOIN binaryobject b ON b.binaryobject_id = l.binaryobject_id \
     WHERE l.ownertable = 243 AND l.ownerrecord = t.batchtask_id AND l.linktype = 6 ORDER BY l.rank LIMIT 1), \
     t.laststarted, t.registered, t.startcount, t.dbtag, t.context, t.result, t.state, t.description, t.response, \
     t.request, t.progressdescription, t.progresspercent, t.filename, t.cancellation_behaviour, t.updatedcount, t.updated";
pub(crate) const TASK_COLUMN_COUNT: usize = 24;

pub struct SqliteStore {
    path: String,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// One process on the file: the store tells its own consumers of what it wrote.
    feed: Feed,
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.code {
            C::ConstraintViolation if msg.as_deref().is_some_and(|m| m.contains("associate.name")) => {
                return StoreError::DuplicateName;
            }
            // A move back to a live state while another live task holds the unique key.
            C::ConstraintViolation if msg.as_deref().is_some_and(|m| m.contains("batchtask.unique_key")) => {
                return StoreError::Rejected(DomainError::UniqueHeld { holder: None });
            }
            // The volume is full (SQLite reports ENOSPC as SQLITE_FULL) or over a quota.
            C::DiskFull => return StoreError::Full(e.to_string()),
            // Another process held the file past the busy timeout, or the file is gone for now.
            C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen => return StoreError::Unavailable(e.to_string()),
            _ => {}
        }
    }
    StoreError::Backend(BackendError::new(e))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}

/// How long a statement waits for another process holding the file before it is `Unavailable`.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn connect(path: &str, create: bool) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a commit is on disk when it returns, so a killed server loses nothing it answered.
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;")?;
    Ok(conn)
}

impl SqliteStore {
    /// Wakes the nodes for tasks whose last dependency just succeeded.
    fn tell_released(&self, mut names: Vec<String>) {
        names.sort_unstable();
        names.dedup();
        for name in names {
            self.feed.send(Notice::New { name });
        }
    }

    pub fn open(path: &str) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = Path::new(path).parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let conn = connect(path, true)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite did not switch to WAL; concurrent readers will wait for writers");
        }
        migrate(&conn)?;
        // Planner statistics for the OData list's filters (SQLite's advice for long-lived
        // connections): analyses only tables that need it, with a bounded sample.
        conn.execute_batch("PRAGMA optimize=0x10002")?;
        let feed = Feed::default();
        let told = feed.clone();
        // Another process wrote the file (the CLI, another server): this one's consumers re-read.
        let tasks = feed.clone();
        let writer = Writer::start(
            conn,
            connect(path, false)?,
            move || told.send(Notice::Resync),
            move |t: writer::TouchedTasks| {
                for (were, ids) in
                    [(TasksWere::Created, t.created), (TasksWere::Changed, t.changed), (TasksWere::Deleted, t.deleted)]
                {
                    if !ids.is_empty() {
                        tasks.send(Notice::Tasks { were, ids: ids.into() });
                    }
                }
            },
        )?;
        Ok(SqliteStore { path: path.to_owned(), writer, readers: Mutex::new(Vec::new()), feed })
    }

    /// Runs `f` on a pooled read connection, on the calling thread.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.readers.lock().expect("reader pool").pop();
        let conn = match conn {
            Some(c) => c,
            None => connect(&self.path, false).map_err(backend)?,
        };
        let out = f(&conn).map_err(backend);
        let mut pool = self.readers.lock().expect("reader pool");
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _batchd_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
    )?;
    // A newer batchd may have added tables or columns this one knows nothing of: refuse to start
    // rather than run on a schema whose rules it cannot keep.
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    let found: Option<i64> = conn.query_row("SELECT max(version) FROM _batchd_migrations", [], |r| r.get(0))?;
    if let Some(found) = found.filter(|f| *f > known) {
        anyhow::bail!(
            "the database schema is at version {found}, newer than this batchd knows (up to {known}): a newer \
             batchd has upgraded it. Run that version or a later one here; migrations are never undone"
        );
    }
    for (version, sql) in MIGRATIONS {
        let done: bool =
            conn.query_row("SELECT COUNT(*) FROM _batchd_migrations WHERE version = ?", [version], |r| {
                r.get::<_, i64>(0)
            })? > 0;
        if done {
            continue;
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO _batchd_migrations (version, applied) VALUES (?, ?)",
            params![version, micros(Utc::now())],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

pub(crate) fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let blob: Option<Vec<u8>> = r.get(7)?;
    Ok(Task {
        id: r.get(0)?,
        name: r.get(1)?,
        associate_id: r.get(2)?,
        details_table: r.get(3)?,
        details_record: r.get(4)?,
        is_system: r.get(5)?,
        is_internal: r.get(6)?,
        parameters: blob.as_deref().and_then(Parameters::from_blob),
        last_started: r.get::<_, Option<i64>>(8)?.map(from_micros),
        created: from_micros(r.get(9)?),
        start_count: r.get(10)?,
        database_serial_number: r.get(11)?,
        context: r.get(12)?,
        result: r.get(13)?,
        state: BatchTaskState::from_number(r.get(14)?).unwrap_or(BatchTaskState::Unknown),
        description: r.get(15)?,
        response: r.get(16)?,
        request: r.get(17)?,
        progress_description: r.get(18)?,
        progress_percent: r.get(19)?,
        file_name: r.get(20)?,
        cancellation: CancellationBehaviour::from_number(r.get(21)?).unwrap_or_default(),
        version: r.get(22)?,
        updated: from_micros(r.get(23)?),
    })
}

/// The common update (Description, Response, Request, progress): a statement that leaves state,
/// start and lease columns alone, so SQLite maintains only the `updated` index instead of the seven
/// indexes and partial indexes on those columns. This halves the writer thread's work per PUT.
fn update_task_content(
    conn: &Connection,
    next: &Task,
    now: DateTime<Utc>,
    actor: &Actor,
    id: i32,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE batchtask SET description = ?, response = ?, request = ?, result = ?, progresspercent = ?, \
         progressdescription = ?, filename = ?, updated = ?, updatedcount = updatedcount + 1, \
         updated_associate_id = COALESCE(?, updated_associate_id) WHERE batchtask_id = ?",
    )
    .and_then(|mut s| {
        s.execute(params![
            next.description,
            next.response,
            next.request,
            next.result,
            next.progress_percent,
            next.progress_description,
            next.file_name,
            micros(now),
            actor.associate_id,
            id
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// Writes every column an update may change, including state, start and lease columns: for a
/// state move or a run starting.
fn update_whole_task(
    conn: &Connection,
    next: &Task,
    now: DateTime<Utc>,
    actor: &Actor,
    by_hand: &run::ByHand,
    id: i32,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE batchtask SET state = ?1, description = ?2, response = ?3, request = ?4, result = ?5, \
         startcount = ?6, laststarted = ?7, progresspercent = ?8, progressdescription = ?9, filename = ?10, \
         updated = ?11, updatedcount = updatedcount + 1, updated_associate_id = COALESCE(?12, updated_associate_id), \
         lease_token = CASE WHEN ?13 THEN NULL ELSE lease_token END, \
         lease_expires = CASE WHEN ?13 THEN NULL ELSE lease_expires END, \
         lease_node = CASE WHEN ?13 THEN NULL ELSE lease_node END, \
         stop_requested = CASE WHEN ?13 THEN NULL ELSE stop_requested END, \
         stop_requested_by = CASE WHEN ?13 THEN NULL ELSE stop_requested_by END, \
         attempts = CASE WHEN ?14 THEN 0 ELSE attempts END, \
         failures = CASE WHEN ?14 THEN 0 ELSE failures END, \
         rescues = CASE WHEN ?14 THEN 0 ELSE rescues END, \
         run_after = CASE WHEN ?14 THEN NULL ELSE run_after END \
         WHERE batchtask_id = ?15",
    )
    .and_then(|mut s| {
        s.execute(params![
            next.state.number(),
            next.description,
            next.response,
            next.request,
            next.result,
            next.start_count,
            next.last_started.map(micros),
            next.progress_percent,
            next.progress_description,
            next.file_name,
            micros(now),
            actor.associate_id,
            by_hand.ends_lease,
            by_hand.resets_attempts,
            id
        ])
    })
    .map_err(backend)?;
    Ok(())
}

fn load_task(conn: &Connection, id: i32) -> rusqlite::Result<Option<Task>> {
    // Built once: this is the hottest statement (every GET and every write reads the row).
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {TASK_COLUMNS} FROM batchtask t WHERE t.batchtask_id = ?"));
    conn.prepare_cached(&SQL)?.query_row([id], task_from_row).optional()
}

pub(crate) fn to_sql(v: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        SqlValue::Int(i) => Value::Integer(*i),
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Time(t) => Value::Integer(micros(*t)),
        SqlValue::Bool(b) => Value::Integer(i64::from(*b)),
        SqlValue::Ints(list) => Value::Text(serde_json::to_string(list).unwrap_or_else(|_| "[]".into())),
        SqlValue::Null => Value::Null,
    }
}

fn associate_from_row(r: &Row<'_>) -> rusqlite::Result<Associate> {
    let role: String = r.get(2)?;
    Ok(Associate { id: r.get(0)?, name: r.get(1)?, role: Role::parse(&role).unwrap_or(Role::User), active: r.get(3)? })
}

/// Inserts a task with its ParameterObject blob and logs its creation. Answers the new id.
fn insert_task(conn: &Connection, new: &NewTask, now: DateTime<Utc>) -> Result<i32, StoreError> {
    let now_us = micros(now);
    let definition: Option<i64> = conn
        .prepare_cached("SELECT batchtaskdefinition_id FROM batchtaskdefinition WHERE name = ?")
        .and_then(|mut s| s.query_row([&new.name], |r| r.get(0)).optional())
        .map_err(backend)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO batchtask (batchtaskdefinition_id, name, associate_id, description, dbtag, state, \
             detailstable, detailsrecord, request, context, filename, is_system, is_internal, \
             cancellation_behaviour, registered, registered_associate_id, updated, updated_associate_id, updatedcount, \
             priority, unique_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) \
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state BETWEEN 1 AND 3 DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                definition,
                new.name,
                new.associate_id,
                new.description,
                new.database_serial_number,
                BatchTaskState::New.number(),
                new.details_table,
                new.details_record,
                new.request,
                new.context,
                new.file_name,
                new.is_system,
                new.is_internal,
                new.cancellation.number(),
                now_us,
                new.associate_id,
                now_us,
                new.associate_id,
                new.priority,
                new.unique_key,
            ])
        })
        .map_err(backend)?;
    if inserted == 0 {
        // The live-unique index (`0009_unique.sql`, its predicate repeated) is the one conflict
        // target: any other unique violation is an error, and a task with no key never lands
        // here. The writer is alone, so the holder is there.
        let Some(key) = new.unique_key.as_deref() else {
            return Err(StoreError::Backend("a task without a unique key was not inserted".into()));
        };
        return Err(DomainError::UniqueHeld { holder: runner::unique_holder(conn, key)? }.into());
    }
    let id = i32::try_from(conn.last_insert_rowid())
        .map_err(|_| StoreError::Backend("task ids have run past the 32-bit range".into()))?;
    if let Some(params) = &new.parameters {
        let data = params.to_blob();
        conn.prepare_cached(
                "INSERT INTO binaryobject (conceptualtype, mimetype, description, originalsize, blobsize, binarydata, registered, updated) \
                 VALUES ('BatchTaskParameters', 'application/json', 'ParameterObject', ?, ?, ?, ?, ?)",
            )
            .and_then(|mut s| s.execute(params![data.len(), data.len(), data, now_us, now_us]))
            .map_err(backend)?;
        let blob = conn.last_insert_rowid();
        conn.prepare_cached(
                "INSERT INTO binaryobjectlink (binaryobject_id, ownertable, ownerrecord, linktype, rank, registered) VALUES (?, ?, ?, ?, 0, ?)",
            )
            .and_then(|mut s| s.execute(params![blob, TABLE_BATCHTASK, id, LINKTYPE_BATCHTASK, now_us]))
            .map_err(backend)?;
        conn.prepare_cached("UPDATE batchtask SET detailstable = ?, detailsrecord = ? WHERE batchtask_id = ?")
            .and_then(|mut s| s.execute(params![TABLE_BINARYOBJECT, blob, id]))
            .map_err(backend)?;
    }
    runner::write_events(conn, &run::created(id, new, now))?;
    deps::insert_edges(conn, id, new, now)?;
    Ok(id)
}

#[async_trait]
impl Store for SqliteStore {
    fn feed(&self) -> &Feed {
        &self.feed
    }

    async fn create_task(&self, new: NewTask, now: DateTime<Utc>) -> Result<Task, StoreError> {
        let task = self
            .writer
            .write(move |conn| {
                let id = insert_task(conn, &new, now)?;
                load_task(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)
            })
            .await?;
        self.feed.send(Notice::New { name: task.name.clone() });
        Ok(task)
    }

    async fn get_task(&self, id: i32) -> Result<Option<Task>, StoreError> {
        self.read(|conn| load_task(conn, id))
    }

    async fn tasks_by_id(&self, ids: &[i32]) -> Result<Vec<Task>, StoreError> {
        debug_assert!(ids.len() <= super::MAX_TASKS_BY_ID);
        let list = serde_json::to_string(ids).map_err(|e| StoreError::Backend(BackendError::new(e)))?;
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM batchtask t WHERE t.batchtask_id IN (SELECT value FROM json_each(?))"
            ))?;
            let rows = stmt.query_map([list], task_from_row)?;
            rows.collect()
        })
    }

    async fn find_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let (where_clause, values) = sql::build_filter(filter, Dialect::Sqlite);
        let sql = format!("SELECT {TASK_COLUMNS} FROM batchtask t{where_clause} ORDER BY t.batchtask_id");
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values.iter().map(to_sql)), task_from_row)?;
            rows.collect()
        })
    }

    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<ListRow>, StoreError> {
        let conn = self.readers.lock().expect("reader pool").pop();
        let conn = match conn {
            Some(c) => c,
            None => connect(&self.path, false).map_err(backend)?,
        };
        let query = query.clone();
        // A list may scan many rows: keep it off the async threads, on a pooled connection.
        let (conn, rows) = tokio::task::spawn_blocking(move || {
            let rows = list::list_tasks(&conn, &query);
            (conn, rows)
        })
        .await
        .map_err(|e| StoreError::Backend(BackendError::with_context("listing tasks", e)))?;
        let mut pool = self.readers.lock().expect("reader pool");
        if pool.len() < 8 {
            pool.push(conn);
        }
        rows
    }

    async fn create_associate(&self, new: NewAssociate, now: DateTime<Utc>) -> Result<Associate, StoreError> {
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO associate (name, password_hash, role, active, registered, updated) VALUES (?, ?, ?, 1, ?, ?)",
                    params![new.name, new.password_hash, new.role.as_str(), micros(now), micros(now)],
                )
                .map_err(backend)?;
                let id = conn.last_insert_rowid() as i32;
                Ok(Associate { id, name: new.name, role: new.role, active: true })
            })
            .await
    }

    async fn associate_credentials(&self, name: &str) -> Result<Option<AssociateCredentials>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT associate_id, name, role, active, password_hash FROM associate WHERE name = ? COLLATE NOCASE",
            )?
            .query_row([name], |r| {
                Ok(AssociateCredentials { associate: associate_from_row(r)?, password_hash: r.get(4)? })
            })
            .optional()
        })
    }

    async fn list_associates(&self) -> Result<Vec<Associate>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT associate_id, name, role, active FROM associate ORDER BY associate_id")?;
            let rows = stmt.query_map([], associate_from_row)?;
            rows.collect()
        })
    }

    async fn count_associates(&self) -> Result<i64, StoreError> {
        self.read(|conn| conn.query_row("SELECT COUNT(*) FROM associate", [], |r| r.get(0)))
    }

    async fn count_tasks_by_state(&self) -> Result<Vec<(BatchTaskState, i64)>, StoreError> {
        // Served by the batchtask_state index without touching the rows.
        let counts: Vec<(i64, i64)> = self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT state, COUNT(*) FROM batchtask GROUP BY state ORDER BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        Ok(sql::states_with_counts(counts))
    }

    async fn upsert_definition(&self, def: &DefinitionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let def = def.clone();
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO batchtaskdefinition (name, description, runner, timeout, autorestartcount, startinterval, \
                     cancellation_behaviour, concurrency, registered, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description, runner = excluded.runner, \
                     timeout = excluded.timeout, autorestartcount = excluded.autorestartcount, \
                     startinterval = excluded.startinterval, cancellation_behaviour = excluded.cancellation_behaviour, \
                     concurrency = excluded.concurrency, updated = excluded.updated",
                    params![
                        def.name,
                        def.description,
                        def.runner,
                        def.timeout_seconds,
                        def.restarts,
                        def.start_interval_seconds,
                        def.cancellation.number(),
                        def.concurrency,
                        micros(now),
                        micros(now)
                    ],
                )
                .map_err(backend)?;
                // Tasks created before their definition existed now point at it.
                conn.execute(
                    "UPDATE batchtask SET batchtaskdefinition_id = (SELECT batchtaskdefinition_id FROM batchtaskdefinition WHERE name = ?1) \
                     WHERE name = ?1 AND batchtaskdefinition_id IS NULL",
                    [&def.name],
                )
                .map_err(backend)?;
                Ok(())
            })
            .await
    }

    // -- identity and access --

    async fn get_associate(&self, id: i32) -> Result<Option<Associate>, StoreError> {
        self.read(|conn| auth::get_associate(conn, id))
    }

    async fn update_associate(
        &self,
        id: i32,
        change: access::AssociateChange,
        now: DateTime<Utc>,
    ) -> Result<Associate, StoreError> {
        self.writer.write(move |conn| auth::update_associate(conn, id, change, now)).await
    }

    async fn delete_associate(&self, id: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.writer.write(move |conn| auth::delete_associate(conn, id, now)).await
    }

    async fn create_credential(
        &self,
        new: access::NewCredential,
        now: DateTime<Utc>,
    ) -> Result<access::CredentialRow, StoreError> {
        self.writer.write(move |conn| auth::create_credential(conn, new, now)).await
    }

    async fn find_credential(
        &self,
        kind: access::CredentialKind,
        secret_hash: &str,
    ) -> Result<Option<access::CredentialMatch>, StoreError> {
        self.read(|conn| auth::find_credential(conn, kind, secret_hash))
    }

    async fn list_credentials(
        &self,
        kind: access::CredentialKind,
        associate_id: Option<i32>,
    ) -> Result<Vec<access::CredentialRow>, StoreError> {
        self.read(|conn| auth::list_credentials(conn, kind, associate_id))
    }

    async fn revoke_credentials(
        &self,
        kind: access::CredentialKind,
        target: access::RevokeTarget,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.writer.write(move |conn| auth::revoke_credentials(conn, kind, target, now)).await
    }

    async fn credential_changes(&self, after: i64) -> Result<(i64, Vec<i32>), StoreError> {
        self.read(|conn| auth::credential_changes(conn, after))
    }

    async fn purge_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.writer.write(move |conn| auth::purge_credentials(conn, before)).await
    }

    async fn modify_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        let now = crate::domain::time::truncate_micros(now);
        let (task, to_new, released) = self
            .writer
            .write(move |conn| {
                let current = load_task(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)?;
                let next = change(&current)?;
                if crate::domain::dependency::must_check(current.state, next.state) {
                    deps::check_rerun(conn, id)?;
                }
                if crate::domain::unique::revives(current.state, next.state) {
                    runner::check_unique_free(conn, id)?;
                }
                let by_hand = run::by_hand(&current, &next, &actor, now);
                let run_fields_same =
                    next.start_count == current.start_count && next.last_started == current.last_started;
                if next.state == current.state && run_fields_same {
                    update_task_content(conn, &next, now, &actor, id)?;
                } else {
                    update_whole_task(conn, &next, now, &actor, &by_hand, id)?;
                }
                runner::write_events(conn, &by_hand.event)?;
                let ended = crate::domain::dependency::Ended::of(next.state);
                if let Some(how) = ended.filter(|_| next.state != current.state) {
                    runner::cascade_end(conn, id, how, now)?;
                }
                let released = deps::take_released();
                // What was just written, without reading it back: the writer thread is the one
                // serial resource of the SQLite store. Times are cut to the stored precision.
                let last_started = next.last_started.map(crate::domain::time::truncate_micros);
                Ok((
                    Task { version: current.version + 1, updated: now, last_started, ..next },
                    by_hand.resets_attempts,
                    released,
                ))
            })
            .await?;
        if to_new {
            self.feed.send(Notice::New { name: task.name.clone() });
        }
        self.tell_released(released);
        Ok(task)
    }

    async fn delete_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        guard: DeleteGuard,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                let current = load_task(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)?;
                guard(&current)?;
                runner::write_events(conn, &run::deleted(&current, &actor, now))?;
                let now = crate::domain::time::truncate_micros(now);
                runner::cascade_end(conn, id, crate::domain::dependency::Ended::Deleted, now)?;
                runner::delete_rows(conn, id, false)
            })
            .await
    }

    async fn create_and_claim(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        claim: &ClaimRequest,
    ) -> Result<(Task, Option<Lease>), StoreError> {
        let claim = claim.clone();
        let (task, lease) = self
            .writer
            .write(move |conn| {
                let id = insert_task(conn, &new, now)?;
                // -- deps -- a task with dependencies is left to the claim loop.
                let lease = if new.after.is_empty() {
                    runner::claim_new(conn, id, &new.name, new.priority, &claim, now)?
                } else {
                    None
                };
                let task = load_task(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)?;
                Ok((task, lease))
            })
            .await?;
        if lease.is_none() {
            self.feed.send(Notice::New { name: task.name.clone() });
        }
        Ok((task, lease))
    }

    async fn claim_tasks(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>, StoreError> {
        let req = req.clone();
        self.writer.write(move |conn| runner::claim(conn, &req, now)).await
    }

    async fn renew_leases(
        &self,
        beats: Vec<Beat>,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<BeatOutcome>, StoreError> {
        self.writer.write(move |conn| runner::renew(conn, beats, lease, now)).await
    }

    async fn finish_tasks(&self, finishes: Vec<Finish>, now: DateTime<Utc>) -> Result<Vec<FinishResult>, StoreError> {
        let (done, released) =
            self.writer.write(move |conn| Ok((runner::finish(conn, finishes, now)?, deps::take_released()))).await?;
        self.tell_released(released);
        Ok(done)
    }

    async fn request_stop(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        by: String,
        guard: DeleteGuard,
    ) -> Result<StopResult, StoreError> {
        let stopped = self.writer.write(move |conn| runner::request_stop(conn, id, now, &actor, &by, guard)).await?;
        if let StopResult::Requested { node, .. } = &stopped {
            self.feed.send(Notice::Stop { node: node.clone() });
        }
        Ok(stopped)
    }

    async fn lease_info(&self, id: i32) -> Result<Option<LeaseInfo>, StoreError> {
        self.read(|conn| runner::lease_info(conn, id))
    }

    async fn pending_stops(&self, node: &str) -> Result<Vec<(i32, String)>, StoreError> {
        self.read(|conn| runner::pending_stops(conn, node))
    }

    async fn rescue_expired(
        &self,
        node: &str,
        now: DateTime<Utc>,
        limit: usize,
        stop_grace: std::time::Duration,
    ) -> Result<Vec<Rescued>, StoreError> {
        let node = node.to_owned();
        self.writer.write(move |conn| runner::rescue(conn, &node, now, limit, stop_grace)).await
    }

    async fn release_node(&self, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
        let node = node.to_owned();
        self.writer.write(move |conn| runner::release_node(conn, &node, now)).await
    }

    async fn task_events(&self, id: i32) -> Result<Vec<TaskEvent>, StoreError> {
        self.read(|conn| runner::task_events(conn, id))
    }

    async fn purge_finished(
        &self,
        state: BatchTaskState,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.writer.write(move |conn| runner::purge_finished(conn, state, before, limit)).await
    }

    async fn purge_deleted_events(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.writer.write(move |conn| runner::purge_deleted_events(conn, before, limit)).await
    }

    async fn schedule_tick(
        &self,
        tick: &ScheduleTick,
        now: DateTime<Utc>,
        new: NewTask,
    ) -> Result<(Option<Task>, DateTime<Utc>), StoreError> {
        let tick = tick.clone();
        self.writer.write(move |conn| runner::schedule_tick(conn, &tick, now, new)).await
    }

    async fn set_run_policy(&self, name: &str, policy: &RunPolicy) -> Result<(), StoreError> {
        let (name, policy) = (name.to_owned(), *policy);
        self.writer.write(move |conn| runner::set_run_policy(conn, &name, &policy)).await
    }

    // -- scheduling --

    async fn set_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let owned = name.to_owned();
        let changed = self.writer.write(move |conn| runner::set_paused(conn, &owned, paused)).await?;
        if changed {
            self.feed.send(Notice::Definition { name: name.to_owned() });
        }
        Ok(changed)
    }

    async fn definition_statuses(&self, owner: Option<i32>) -> Result<Vec<super::DefinitionStatus>, StoreError> {
        self.read(|conn| runner::definition_statuses(conn, owner))
    }

    async fn create_task_once(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        key: &crate::domain::idempotency::KeyedCreate,
    ) -> Result<super::CreatedOnce, StoreError> {
        let key = key.clone();
        let done = self.writer.write(move |conn| runner::create_task_once(conn, &new, now, &key)).await?;
        if let super::CreatedOnce::Created(task) = &done {
            self.feed.send(Notice::New { name: task.name.clone() });
        }
        Ok(done)
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.writer.write(move |conn| runner::purge_idempotency_keys(conn, before, limit)).await
    }

    async fn retry_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        guard: DeleteGuard,
    ) -> Result<Task, StoreError> {
        let task = self.writer.write(move |conn| runner::retry_task(conn, id, now, &actor, guard)).await?;
        self.feed.send(Notice::New { name: task.name.clone() });
        Ok(task)
    }

    async fn task_dependencies(
        &self,
        id: i32,
        owner: Option<i32>,
        before_max: usize,
    ) -> Result<super::Dependencies, StoreError> {
        self.read(|conn| deps::dependencies(conn, id, owner, before_max))
    }

    // -- nodes and health --

    async fn ping(&self, within: std::time::Duration) -> Result<(), StoreError> {
        self.read(|conn| nodes::ping(conn, within))
    }

    async fn upsert_node(&self, node: &NodeRow) -> Result<(), StoreError> {
        let node = node.clone().stored();
        self.writer.write(move |conn| nodes::upsert(conn, &node)).await
    }

    async fn list_nodes(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<NodeRow>, StoreError> {
        self.read(|conn| nodes::list(conn, since, limit))
    }

    async fn purge_nodes(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.writer.write(move |conn| nodes::purge(conn, before, limit)).await
    }

    // -- stats --

    async fn task_stats(&self, since: DateTime<Utc>, owner: Option<i32>) -> Result<super::TaskStats, StoreError> {
        self.read(|conn| stats::task_stats(conn, since, owner))
    }
}
