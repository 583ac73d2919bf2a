//! PostgreSQL store: the same behaviour as the SQLite store, for several batchd nodes sharing one
//! database.
//!
//! Every write is one transaction that returns only after COMMIT, with `synchronous_commit = on`
//! forced per connection, so a 200 means "durable" here too. `modify_task` of an edit that moves
//! no state is group-committed (`postgres/edits.rs`, writes guarded by the row's version); state
//! moves, raced edits and `delete_task` read the row `FOR UPDATE`: concurrent changes to one task
//! queue on the row lock instead of losing updates, whichever node they come from. The SQL is written at run time (no `query!` macros,
//! so no database is needed to build); the shared contract test (`tests/api/store_contract.rs`)
//! checks it against the SQLite store. Identity and access is in `postgres/auth.rs`,
//! which explains its locks (last active admin, change-log order). The runner is in
//! `postgres/runner.rs` (claims with SKIP LOCKED, concurrency limits across nodes, fencing).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo, Postgres};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use crate::domain::run::{self, RunPolicy};
use crate::domain::task::{LINKTYPE_BATCHTASK, TABLE_BATCHTASK, TABLE_BINARYOBJECT};
use crate::domain::{Associate, BatchTaskState, CancellationBehaviour, NewTask, Parameters, Role, Task};

use super::runner::{
    Actor, Beat, BeatOutcome, ClaimRequest, Claimed, Finish, FinishResult, Lease, LeaseInfo, Rescued, ScheduleTick,
    StopResult, TaskEvent,
};
use super::sql::{self, Dialect, SqlValue};
use super::{
    AssociateCredentials, BackendError, DefinitionRow, DeleteGuard, ListQuery, ListRow, NewAssociate, Store,
    StoreError, TaskChange, TaskFilter, access,
};

mod auth;
mod connect;
mod deps;
mod edits;
mod notices;

use super::feed::{self, Feed, Notice};

/// The advisory lock that orders `credential_change` commits (tests hold it to play another node).
pub use auth::CHANGE_LOG_LOCK;

/// Connections per node. Each request holds one only for its statements, so this serves many
/// more concurrent requests; keep `nodes * (pool size + 2)` under the server's `max_connections`
/// (the change feed's listener and the edit writer have connections of their own).
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Columns of a task row, in the order `task_from_row` reads them. Same shape as SQLite's. A macro
/// so that `concat!` can build whole static statements from it.
macro_rules! task_columns {
    () => {
        "t.batchtask_id, t.name, t.associate_id, t.detailstable, t.detailsrecord, t.is_system, \
     t.is_internal, (SELECT b.binarydata FROM binaryobjectlink l JOIN binaryobject b ON b.binaryobject_id = l.binaryobject_id \
     WHERE l.ownertable = 243 AND l.ownerrecord = t.batchtask_id AND l.linktype = 6 ORDER BY l.rank LIMIT 1), \
     t.laststarted, t.registered, t.startcount, t.dbtag, t.context, t.result, t.state, t.description, t.response, \
     t.request, t.progressdescription, t.progresspercent, t.filename, t.cancellation_behaviour, t.updatedcount, t.updated"
    };
}
const TASK_COLUMNS: &str = task_columns!();
/// Longest a request waits for a pooled connection, by default (`[postgres] connect_timeout`).
/// Past it the answer is a 503 with Retry-After: while the database is down or every connection
/// is busy, a quick "try again" serves the client better than a request that hangs.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const TASK_COLUMN_COUNT: usize = 24;

// After `task_columns!` so the runner's statements can use it.
mod nodes;
mod runner;
mod stats;

pub struct PostgresStore {
    pool: PgPool,
    feed: Feed,
    /// Task notices of edits by hand, sent after their commits.
    notices: notices::Deferred,
    /// The group commit of edits by hand that move no state.
    edits: edits::Writers,
    /// Ends the feed's listener with the store.
    _listener: ListenerGuard,
    /// Ends the notice sender with the store.
    _notifier: ListenerGuard,
}

struct ListenerGuard(tokio::task::JoinHandle<()>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Maps a driver error; the case-insensitive associate name index becomes `DuplicateName`.
fn backend(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Database(db) if db.is_unique_violation() && db.constraint() == Some("associate_name_key") => {
            StoreError::DuplicateName
        }
        // A move back to a live state raced a create of the same unique key.
        E::Database(db) if db.is_unique_violation() && db.constraint() == Some("batchtask_unique_live") => {
            StoreError::Rejected(crate::domain::DomainError::UniqueHeld { holder: None })
        }
        E::Database(db) => match db.code().as_deref().map(sqlstate_kind) {
            Some(SqlStateKind::Unavailable) => StoreError::Unavailable(e.to_string()),
            Some(SqlStateKind::Full) => StoreError::Full(e.to_string()),
            _ => StoreError::Backend(BackendError::new(e)),
        },
        // The connection broke or none could be had in time: the database is down, restarting or
        // out of connections.
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Protocol(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(BackendError::new(e)),
    }
}

/// The tasks with these ids that exist, in no particular order, in one statement.
pub(super) async fn select_tasks<'e>(conn: impl sqlx::PgExecutor<'e>, ids: &[i32]) -> Result<Vec<Task>, StoreError> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {TASK_COLUMNS} FROM batchtask t WHERE t.batchtask_id = ANY($1)"));
    let rows = sqlx::query(AssertSqlSafe(SQL.as_str())).bind(ids).fetch_all(conn).await.map_err(backend)?;
    rows.iter().map(task_from_row).collect::<Result<_, _>>().map_err(backend)
}

/// Runs a read once more when the connection it had was gone (the database restarted or failed
/// over since the connection was pooled): a read changes nothing, so repeating it is safe, and
/// the pool hands out a fresh connection the second time.
async fn read_twice<T, Fut>(read: impl Fn() -> Fut) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    match read().await {
        Err(StoreError::Unavailable(detail)) => {
            tracing::debug!(%detail, "a read lost its connection; trying once more");
            read().await
        }
        other => other,
    }
}

enum SqlStateKind {
    Unavailable,
    Full,
    Other,
}

/// What a SQLSTATE says about the server (PostgreSQL's Appendix A).
fn sqlstate_kind(code: &str) -> SqlStateKind {
    match code {
        // class 08: connection exception
        c if c.starts_with("08") => SqlStateKind::Unavailable,
        // admin_shutdown, crash_shutdown, cannot_connect_now (a restart), too_many_connections,
        // out_of_memory: all pass, so the client is told to retry.
        "57P01" | "57P02" | "57P03" | "53300" | "53200" => SqlStateKind::Unavailable,
        // deadlock_detected, serialization_failure: the transaction was rolled back and may be
        // tried again as it is (rare: a dependency's end and a create naming its dependents).
        "40P01" | "40001" => SqlStateKind::Unavailable,
        // disk_full
        "53100" => SqlStateKind::Full,
        _ => SqlStateKind::Other,
    }
}

impl PostgresStore {
    /// [`Store::modify_task`] under the row lock, once its notice is armed: a state move, or an
    /// edit the group commit could not write (see `edits`). The dependents the change failed
    /// join the notice, after the task, before the commit.
    async fn locked_edit(&self, edit: &edits::Edit, notice: &mut notices::OnDrop<'_>) -> Result<Task, StoreError> {
        let mut tx = self.pool.begin_with(notices::BEGIN_QUIET).await.map_err(backend)?;
        let (task, failed) = runner::modify_task(&mut tx, edit.id, edit.now, &edit.actor, &edit.change).await?;
        // The task first, then the dependents its change failed: a stream shows them in that order.
        notice.extend(failed);
        tx.commit().await.map_err(backend)?;
        Ok(task)
    }

    /// Connects to `url` (`postgres://user@host:port/db`) and applies the migrations.
    pub async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        Self::open_with(url, &Default::default()).await
    }

    /// The same with `[postgres]` settings (pool size, timeouts); TLS is the URL's `sslmode`.
    pub async fn open_with(url: &str, cfg: &crate::config::PostgresConfig) -> anyhow::Result<PostgresStore> {
        let pool = connect::pool(url, cfg).await?;
        // sqlx holds an advisory lock while migrating, so nodes starting together take turns.
        connect::migrate(&pool).await?;
        let feed = Feed::remote();
        let listener = ListenerGuard(tokio::spawn(listen(pool.clone(), feed.clone())));
        let notices = notices::Deferred::default();
        let notifier = ListenerGuard(tokio::spawn(notices.clone().run(pool.clone())));
        let edits = edits::Writers::start(&pool, notices.clone());
        Ok(PostgresStore { pool, feed, notices, edits, _listener: listener, _notifier: notifier })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Forwards the channel's notices into the feed, for as long as the store lives. On a lost
/// connection (PostgreSQL restarting, a network cut) it reconnects with a growing pause and says
/// [`Notice::Resync`]: what was raised meanwhile is gone, and the consumers' polls catch it.
async fn listen(pool: PgPool, feed: Feed) {
    // Its own connection, outside the request pool: `pool_size` stays what requests can use.
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy_with((*pool.connect_options()).clone());
    let mut pause = Duration::from_millis(100);
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(feed::CHANNEL).await {
                Ok(()) => {
                    pause = Duration::from_millis(100);
                    // Listening again after a gap: anything may have changed.
                    feed.connected();
                    feed.send(Notice::Resync);
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) => feed.send(Notice::decode(n.payload())),
                            Ok(None) => break, // connection lost
                            Err(e) => {
                                tracing::warn!(error = %e, "the change feed lost its connection");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN for the change feed"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot connect the change feed"),
        }
        // Before anything else hears of it: readers that trust the feed (the task cache) stop now.
        feed.disconnected();
        feed.send(Notice::Resync);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// A NULL whose type PostgreSQL infers from where it stands (`unknown`), like an untyped literal.
/// `State oneOf (1, null)` must compare an integer column with it, which a typed text NULL cannot.
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(705))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _: &mut PgArgumentBuffer) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind_value(q: PgQuery<'_>, v: SqlValue) -> PgQuery<'_> {
    match v {
        SqlValue::Int(i) => q.bind(i),
        SqlValue::Text(s) => q.bind(s),
        SqlValue::Time(t) => q.bind(t),
        SqlValue::Bool(b) => q.bind(b),
        SqlValue::Ints(list) => q.bind(list),
        SqlValue::Null => q.bind(UntypedNull),
    }
}

fn task_from_row(r: &PgRow) -> Result<Task, sqlx::Error> {
    let blob: Option<Vec<u8>> = r.try_get(7)?;
    Ok(Task {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        associate_id: r.try_get(2)?,
        details_table: r.try_get(3)?,
        details_record: r.try_get(4)?,
        is_system: r.try_get(5)?,
        is_internal: r.try_get(6)?,
        parameters: blob.as_deref().and_then(Parameters::from_blob),
        last_started: r.try_get(8)?,
        created: r.try_get(9)?,
        start_count: r.try_get(10)?,
        database_serial_number: r.try_get(11)?,
        context: r.try_get(12)?,
        result: r.try_get(13)?,
        state: BatchTaskState::from_number(i64::from(r.try_get::<i32, _>(14)?)).unwrap_or(BatchTaskState::Unknown),
        description: r.try_get(15)?,
        response: r.try_get(16)?,
        request: r.try_get(17)?,
        progress_description: r.try_get(18)?,
        progress_percent: r.try_get(19)?,
        file_name: r.try_get(20)?,
        cancellation: CancellationBehaviour::from_number(i64::from(r.try_get::<i32, _>(21)?)).unwrap_or_default(),
        version: r.try_get(22)?,
        updated: r.try_get(23)?,
    })
}

fn associate_from_row(r: &PgRow) -> Result<Associate, sqlx::Error> {
    let role: String = r.try_get(2)?;
    Ok(Associate {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        role: Role::parse(&role).unwrap_or(Role::User),
        active: r.try_get(3)?,
    })
}

/// The task row; `lock` takes the row lock for the rest of the transaction.
async fn load_task(conn: &mut PgConnection, id: i32, lock: bool) -> Result<Option<Task>, StoreError> {
    let sql = if lock {
        concat!("SELECT ", task_columns!(), " FROM batchtask t WHERE t.batchtask_id = $1 FOR UPDATE OF t")
    } else {
        concat!("SELECT ", task_columns!(), " FROM batchtask t WHERE t.batchtask_id = $1")
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await.map_err(backend)?;
    row.as_ref().map(task_from_row).transpose().map_err(backend)
}

/// Inserts a task with its ParameterObject blob and logs its creation (not for internal tasks).
/// Answers the new id.
async fn insert_task(conn: &mut PgConnection, new: &NewTask, now: DateTime<Utc>) -> Result<i32, StoreError> {
    let definition: Option<i32> =
        sqlx::query_scalar("SELECT batchtaskdefinition_id FROM batchtaskdefinition WHERE name = $1")
            .bind(&new.name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    // A unique key already live: the insert waits for a racing holder's commit, then does nothing
    // and the holder is read (READ COMMITTED: a fresh snapshot per statement). A holder that
    // ended in between frees the key, so the insert is tried again.
    let mut tries = 0;
    let id = loop {
        let Some(id) = insert_task_row(conn, new, definition, now).await? else {
            // Only the live-unique index is the conflict target: any other unique violation is
            // an error, and a task with no key never lands here.
            let Some(key) = &new.unique_key else {
                return Err(StoreError::Backend("a task without a unique key was not inserted".into()));
            };
            let holder = runner::unique_holder(conn, key).await?;
            tries += 1;
            if holder.is_some() || tries >= UNIQUE_TRIES {
                return Err(crate::domain::DomainError::UniqueHeld { holder }.into());
            }
            continue;
        };
        break id;
    };
    if let Some(params) = &new.parameters {
        let data = params.to_blob();
        let size = data.len() as i64;
        let blob: i32 = sqlx::query_scalar(
            "INSERT INTO binaryobject (conceptualtype, mimetype, description, originalsize, blobsize, binarydata, \
             registered, updated) VALUES ('BatchTaskParameters', 'application/json', 'ParameterObject', $1, $1, $2, \
             $3, $3) RETURNING binaryobject_id",
        )
        .bind(size)
        .bind(data)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO binaryobjectlink (binaryobject_id, ownertable, ownerrecord, linktype, rank, registered) \
             VALUES ($1, $2, $3, $4, 0, $5)",
        )
        .bind(blob)
        .bind(TABLE_BATCHTASK)
        .bind(id)
        .bind(LINKTYPE_BATCHTASK)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        sqlx::query("UPDATE batchtask SET detailstable = $1, detailsrecord = $2 WHERE batchtask_id = $3")
            .bind(TABLE_BINARYOBJECT)
            .bind(blob)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    runner::write_events(conn, run::created(id, new, now).as_slice()).await?;
    deps::insert_edges(conn, id, new, now).await?;
    Ok(id)
}

/// Tries to insert a task at most this often while its unique key's holders keep ending.
const UNIQUE_TRIES: u32 = 5;

/// The task row alone; `None` when a live task holds its unique key (the index
/// `batchtask_unique_live` of `0012_unique.sql` is the conflict target, its predicate repeated).
async fn insert_task_row(
    conn: &mut PgConnection,
    new: &NewTask,
    definition: Option<i32>,
    now: DateTime<Utc>,
) -> Result<Option<i32>, StoreError> {
    // The identity column is `integer`: past 2^31-1 the insert fails instead of wrapping.
    sqlx::query_scalar(
        "INSERT INTO batchtask (batchtaskdefinition_id, name, associate_id, description, dbtag, state, \
         detailstable, detailsrecord, request, context, filename, is_system, is_internal, \
         cancellation_behaviour, registered, registered_associate_id, updated, updated_associate_id, updatedcount, \
         priority, unique_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $15, \
         $16, 1, $17, $18) ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN (1, 2, 3) \
         DO NOTHING RETURNING batchtask_id",
    )
    .bind(definition)
    .bind(&new.name)
    .bind(new.associate_id)
    .bind(&new.description)
    .bind(&new.database_serial_number)
    .bind(BatchTaskState::New.number())
    .bind(new.details_table)
    .bind(new.details_record)
    .bind(&new.request)
    .bind(&new.context)
    .bind(&new.file_name)
    .bind(new.is_system)
    .bind(new.is_internal)
    .bind(new.cancellation.number())
    .bind(now)
    .bind(new.associate_id)
    .bind(i16::from(new.priority))
    .bind(&new.unique_key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)
}

#[async_trait]
impl Store for PostgresStore {
    fn feed(&self) -> &Feed {
        &self.feed
    }

    async fn create_task(&self, new: NewTask, now: DateTime<Utc>) -> Result<Task, StoreError> {
        let now = runner::at(now);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let id = insert_task(&mut tx, &new, now).await?;
        let task = load_task(&mut tx, id, false).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(backend)?;
        Ok(task)
    }

    async fn get_task(&self, id: i32) -> Result<Option<Task>, StoreError> {
        read_twice(|| async move {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            load_task(&mut conn, id, false).await
        })
        .await
    }

    async fn tasks_by_id(&self, ids: &[i32]) -> Result<Vec<Task>, StoreError> {
        debug_assert!(ids.len() <= super::MAX_TASKS_BY_ID);
        read_twice(|| select_tasks(&self.pool, ids)).await
    }

    async fn find_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        // PostgreSQL refuses U+0000 in text; no stored name has one, so nothing matches.
        if filter.name.as_deref().is_some_and(|n| n.contains('\0')) {
            return Ok(Vec::new());
        }
        let (where_clause, values) = sql::build_filter(filter, Dialect::Postgres);
        let text = format!("SELECT {TASK_COLUMNS} FROM batchtask t{where_clause} ORDER BY t.batchtask_id");
        read_twice(|| async {
            // Only constants and numbered placeholders are in the text; every value is bound.
            let mut q = sqlx::query(AssertSqlSafe(text.clone()));
            for v in values.iter().cloned() {
                q = bind_value(q, v);
            }
            let rows = q.fetch_all(&self.pool).await.map_err(backend)?;
            rows.iter().map(task_from_row).collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<ListRow>, StoreError> {
        let q = sql::build_list(query, Dialect::Postgres);
        let n = q.values.len();
        let text = format!(
            "SELECT {TASK_COLUMNS}, t.batchtaskdefinition_id, d.description, d.timeout, t.registered_associate_id, \
             t.updated_associate_id FROM batchtask t LEFT JOIN batchtaskdefinition d ON d.batchtaskdefinition_id = \
             t.batchtaskdefinition_id{}{} LIMIT ${} OFFSET ${}",
            q.where_clause,
            q.order_clause,
            n + 1,
            n + 2
        );
        let rows = read_twice(|| async {
            // Only constants and numbered placeholders are in the text; every value is bound.
            let mut sq = sqlx::query(AssertSqlSafe(text.clone()));
            for v in q.values.iter().cloned() {
                sq = bind_value(sq, v);
            }
            sq.bind(i64::from(query.top)).bind(i64::from(query.skip)).fetch_all(&self.pool).await.map_err(backend)
        })
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ListRow {
                    task: task_from_row(r)?,
                    definition_id: r.try_get::<Option<i32>, _>(TASK_COLUMN_COUNT)?.map(i64::from),
                    definition_description: r.try_get(TASK_COLUMN_COUNT + 1)?,
                    definition_timeout: r.try_get(TASK_COLUMN_COUNT + 2)?,
                    registered_by: r.try_get(TASK_COLUMN_COUNT + 3)?,
                    updated_by: r.try_get(TASK_COLUMN_COUNT + 4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(backend)
    }

    async fn create_associate(&self, new: NewAssociate, now: DateTime<Utc>) -> Result<Associate, StoreError> {
        let id: i32 = sqlx::query_scalar(
            "INSERT INTO associate (name, password_hash, role, active, registered, updated) \
             VALUES ($1, $2, $3, true, $4, $4) RETURNING associate_id",
        )
        .bind(&new.name)
        .bind(&new.password_hash)
        .bind(new.role.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        Ok(Associate { id, name: new.name, role: new.role, active: true })
    }

    async fn associate_credentials(&self, name: &str) -> Result<Option<AssociateCredentials>, StoreError> {
        // PostgreSQL refuses U+0000 in text; no associate name has one (they exclude control characters).
        if name.contains('\0') {
            return Ok(None);
        }
        // `lower(name)` is the unique index; COLLATE "C" folds the argument the way the column folds.
        let row = read_twice(|| async {
            sqlx::query(
                "SELECT associate_id, name, role, active, password_hash FROM associate \
                 WHERE lower(name) = lower($1 COLLATE \"C\")",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
        })
        .await?;
        row.map(|r| Ok(AssociateCredentials { associate: associate_from_row(&r)?, password_hash: r.try_get(4)? }))
            .transpose()
            .map_err(backend)
    }

    async fn list_associates(&self) -> Result<Vec<Associate>, StoreError> {
        let rows = sqlx::query("SELECT associate_id, name, role, active FROM associate ORDER BY associate_id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(associate_from_row).collect::<Result<_, _>>().map_err(backend)
    }

    async fn count_associates(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM associate").fetch_one(&self.pool).await.map_err(backend)
    }

    async fn count_tasks_by_state(&self) -> Result<Vec<(BatchTaskState, i64)>, StoreError> {
        let counts: Vec<(i32, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM batchtask GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        Ok(super::sql::states_with_counts(counts.into_iter().map(|(s, n)| (i64::from(s), n))))
    }

    async fn upsert_definition(&self, def: &DefinitionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO batchtaskdefinition (name, description, runner, timeout, autorestartcount, startinterval, \
             cancellation_behaviour, concurrency, registered, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, runner = excluded.runner, \
             timeout = excluded.timeout, autorestartcount = excluded.autorestartcount, \
             startinterval = excluded.startinterval, cancellation_behaviour = excluded.cancellation_behaviour, \
             concurrency = excluded.concurrency, updated = excluded.updated",
        )
        .bind(&def.name)
        .bind(&def.description)
        .bind(&def.runner)
        .bind(def.timeout_seconds)
        .bind(def.restarts)
        .bind(def.start_interval_seconds)
        .bind(def.cancellation.number())
        .bind(def.concurrency)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // Tasks created before their definition existed now point at it.
        sqlx::query(
            "UPDATE batchtask SET batchtaskdefinition_id = (SELECT batchtaskdefinition_id FROM batchtaskdefinition \
             WHERE name = $1) WHERE name = $1 AND batchtaskdefinition_id IS NULL",
        )
        .bind(&def.name)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    // -- identity and access --
    // In `postgres/auth.rs`. Writes are one transaction each: the change, its revocations and its
    // `credential_change` rows commit together or not at all.

    async fn get_associate(&self, id: i32) -> Result<Option<Associate>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        auth::get_associate(&mut conn, id).await
    }

    async fn update_associate(
        &self,
        id: i32,
        change: access::AssociateChange,
        now: DateTime<Utc>,
    ) -> Result<Associate, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let a = auth::update_associate(&mut tx, id, change, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(a)
    }

    async fn delete_associate(&self, id: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        auth::delete_associate(&mut tx, id, now).await?;
        tx.commit().await.map_err(backend)
    }

    async fn create_credential(
        &self,
        new: access::NewCredential,
        now: DateTime<Utc>,
    ) -> Result<access::CredentialRow, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row = auth::create_credential(&mut tx, new, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(row)
    }

    async fn find_credential(
        &self,
        kind: access::CredentialKind,
        secret_hash: &str,
    ) -> Result<Option<access::CredentialMatch>, StoreError> {
        read_twice(|| async move {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            auth::find_credential(&mut conn, kind, secret_hash).await
        })
        .await
    }

    async fn list_credentials(
        &self,
        kind: access::CredentialKind,
        associate_id: Option<i32>,
    ) -> Result<Vec<access::CredentialRow>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        auth::list_credentials(&mut conn, kind, associate_id).await
    }

    async fn revoke_credentials(
        &self,
        kind: access::CredentialKind,
        target: access::RevokeTarget,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let n = auth::revoke_credentials(&mut tx, kind, target, now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn credential_changes(&self, after: i64) -> Result<(i64, Vec<i32>), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        auth::credential_changes(&mut conn, after).await
    }

    async fn purge_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let n = auth::purge_credentials(&mut tx, before).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    // -- runner --
    // In `postgres/runner.rs`, which explains the locks (fencing, concurrency limits across nodes).

    async fn modify_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        let edit = std::sync::Arc::new(edits::Edit { id, now: runner::at(now), actor, change });
        // Most edits are written by the group commit, which sends their notices itself.
        if let edits::Outcome::Done(done) = self.edits.edit(edit.clone()).await {
            return done.map(|t| *t);
        }
        // The task notice follows the commit (see `notices`). It is armed before the first
        // statement that may commit: a request dropped mid-write may still have committed, and
        // then other nodes must hear of it.
        let mut notice = notices::OnDrop::new(&self.notices, id);
        let edited = self.locked_edit(&edit, &mut notice).await;
        // A refusal or a missing row is decided before anything is written.
        if matches!(edited, Err(StoreError::Rejected(_) | StoreError::NotFound)) {
            notice.disarm();
        }
        edited
    }

    async fn delete_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        guard: DeleteGuard,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let current = load_task(&mut tx, id, true).await?.ok_or(StoreError::NotFound)?;
        guard(&current)?;
        runner::write_events(&mut tx, run::deleted(&current, &actor, runner::at(now)).as_slice()).await?;
        runner::cascade_end(&mut tx, vec![(id, crate::domain::dependency::Ended::Deleted)], runner::at(now)).await?;
        runner::delete_rows(&mut tx, id, false).await?;
        tx.commit().await.map_err(backend)
    }

    async fn create_and_claim(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        claim: &ClaimRequest,
    ) -> Result<(Task, Option<Lease>), StoreError> {
        let now = runner::at(now);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let id = insert_task(&mut tx, &new, now).await?;
        // -- deps -- a task with dependencies is left to the claim loop.
        let lease = if new.after.is_empty() {
            runner::claim_new(&mut tx, id, &new.name, new.priority, claim, now).await?
        } else {
            None
        };
        let task = load_task(&mut tx, id, false).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await.map_err(backend)?;
        Ok((task, lease))
    }

    async fn claim_tasks(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let claimed = runner::claim(&mut tx, req, runner::at(now)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(claimed)
    }

    async fn renew_leases(
        &self,
        beats: Vec<Beat>,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<BeatOutcome>, StoreError> {
        if beats.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let out = runner::renew(&mut tx, beats, lease, runner::at(now)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn finish_tasks(&self, finishes: Vec<Finish>, now: DateTime<Utc>) -> Result<Vec<FinishResult>, StoreError> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let out = runner::finish(&mut tx, finishes, runner::at(now)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn request_stop(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        by: String,
        guard: DeleteGuard,
    ) -> Result<StopResult, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let out = runner::request_stop(&mut tx, id, runner::at(now), &actor, &by, guard).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn lease_info(&self, id: i32) -> Result<Option<LeaseInfo>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        runner::lease_info(&mut conn, id).await
    }

    async fn pending_stops(&self, node: &str) -> Result<Vec<(i32, String)>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        runner::pending_stops(&mut conn, node).await
    }

    async fn rescue_expired(
        &self,
        node: &str,
        now: DateTime<Utc>,
        limit: usize,
        stop_grace: Duration,
    ) -> Result<Vec<Rescued>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let out = runner::rescue(&mut tx, node, runner::at(now), limit, stop_grace).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn release_node(&self, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let out = runner::release_node(&mut tx, node, runner::at(now)).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn task_events(&self, id: i32) -> Result<Vec<TaskEvent>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        runner::task_events(&mut conn, id).await
    }

    async fn purge_finished(
        &self,
        state: BatchTaskState,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let n = runner::purge_finished(&mut tx, state, before, limit).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn purge_deleted_events(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let n = runner::purge_deleted_events(&mut tx, before, limit).await?;
        tx.commit().await.map_err(backend)?;
        Ok(n)
    }

    async fn schedule_tick(
        &self,
        tick: &ScheduleTick,
        now: DateTime<Utc>,
        new: NewTask,
    ) -> Result<(Option<Task>, DateTime<Utc>), StoreError> {
        let now = runner::at(now);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let out = runner::schedule_tick(&mut tx, tick, now, new).await?;
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    async fn set_run_policy(&self, name: &str, policy: &RunPolicy) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        runner::set_run_policy(&mut conn, name, policy).await
    }

    // -- scheduling --

    async fn set_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let changed = runner::set_paused(&mut tx, name, paused).await?;
        tx.commit().await.map_err(backend)?;
        Ok(changed)
    }

    async fn definition_statuses(&self, owner: Option<i32>) -> Result<Vec<super::DefinitionStatus>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        runner::definition_statuses(&mut conn, owner).await
    }

    async fn create_task_once(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        key: &crate::domain::idempotency::KeyedCreate,
    ) -> Result<super::CreatedOnce, StoreError> {
        let now = runner::at(now);
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = runner::create_task_once(&mut tx, &new, now, key).await?;
        tx.commit().await.map_err(backend)?;
        Ok(done)
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        runner::purge_idempotency_keys(&mut conn, before, limit).await
    }

    async fn retry_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        guard: DeleteGuard,
    ) -> Result<Task, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let task = runner::retry_task(&mut tx, id, runner::at(now), &actor, guard).await?;
        tx.commit().await.map_err(backend)?;
        Ok(task)
    }

    async fn task_dependencies(
        &self,
        id: i32,
        owner: Option<i32>,
        before_max: usize,
    ) -> Result<super::Dependencies, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        deps::dependencies(&mut conn, id, owner, before_max).await
    }

    // -- nodes and health --

    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        nodes::ping(&self.pool, within).await
    }

    async fn upsert_node(&self, node: &crate::domain::node::NodeRow) -> Result<(), StoreError> {
        nodes::upsert(&self.pool, &node.clone().stored()).await
    }

    async fn list_nodes(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::domain::node::NodeRow>, StoreError> {
        read_twice(|| nodes::list(&self.pool, since, limit)).await
    }

    async fn purge_nodes(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        nodes::purge(&self.pool, before, limit).await
    }

    // -- stats --

    async fn task_stats(&self, since: DateTime<Utc>, owner: Option<i32>) -> Result<super::TaskStats, StoreError> {
        stats::task_stats(&self.pool, since, owner).await
    }
}
