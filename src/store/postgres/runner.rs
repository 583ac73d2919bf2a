//! The runner's writes on PostgreSQL: free functions the `Store` impl calls inside one
//! transaction each, the twins of `src/store/sqlite/runner.rs`. SQLite's single writer makes every
//! check-then-write atomic; here the same decisions are made under row locks:
//!
//! - **Fencing.** Every write after a claim first locks the task row (`FOR UPDATE`), then checks
//!   that the token is the row's lease and the lease has not expired (`lease_expires >= now`).
//!   A holder that lost its lease, or a write racing a rescue, changes nothing. Batches (beats,
//!   finishes, releases) lock their rows in id order in one statement, so two batches that share
//!   rows queue instead of deadlocking.
//! - **Claims** pick `New` rows with `FOR UPDATE SKIP LOCKED`: nodes claiming at once take
//!   different tasks and never wait on each other's candidates.
//! - **Concurrency limits across nodes.** Counting `Aquired`/`Started` rows and claiming must not
//!   interleave with another node doing the same for that definition. A claim of a limited name
//!   first takes a transaction-level advisory lock on the name (`LIMITED_CLAIM_LOCK`,
//!   `hashtext(name)`), held to COMMIT, then counts. Under READ COMMITTED the count statement's
//!   snapshot is taken after the lock is granted, so it sees every claim committed by the
//!   previous holder. Names are locked in sorted order (no deadlock between multi-name claims);
//!   an advisory lock rather than the definition row's lock because the built-ins (`Noop`,
//!   `Sleep`) may have no row. A hash collision only serialises two names' claims.
//! - **Rescue and retention** select with `SKIP LOCKED`: a row someone is writing right now is
//!   left for the next round instead of blocking the sweep.
//!
//! Events are written in the same transaction as the change they record (never for
//! `IsInternalTask` tasks).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::domain::dependency::Ended;
use crate::domain::run::{self, Change, RunEvent, RunPolicy, RunRow};
use crate::domain::task::{LINKTYPE_BATCHTASK, TABLE_BATCHTASK};
use crate::domain::{BatchTaskState, NewTask, Task};
use crate::store::policy_from;
use crate::store::runner::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Claimed, Finish, FinishResult, Lease, LeaseInfo, Rescued,
    ScheduleTick, StopResult, TaskEvent,
};
use crate::store::{StoreError, TaskChange};

use super::{TASK_COLUMN_COUNT, TASK_COLUMNS, backend, insert_task, load_task, task_from_row};

/// First key of the advisory lock a claim of a concurrency-limited name takes (ASCII "bdCL");
/// the second key is `hashtext(name)`.
pub const LIMITED_CLAIM_LOCK: i32 = 0x6264_434c;

/// `now` at storage precision (microseconds), so answers equal what is stored.
pub fn at(now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The task columns with NULL for the ParameterObject blob (bookkeeping writes do not need it).
fn light_columns() -> String {
    let start = TASK_COLUMNS.find("(SELECT b.binarydata").expect("blob column");
    let end = start + TASK_COLUMNS[start..].find("LIMIT 1)").expect("blob column end") + "LIMIT 1)".len();
    format!("{}NULL::bytea{}", &TASK_COLUMNS[..start], &TASK_COLUMNS[end..])
}

/// The runner's columns after the task's, as [`run_row_from`] reads them.
const RUN_COLUMNS: &str = "t.lease_token, t.lease_expires, t.lease_node, t.attempts, t.run_after, t.stop_requested, \
     t.stop_requested_by, t.failures, t.rescues";
const RUN_COLUMN_COUNT: usize = 9;

/// The statement loading rows by id list with their runner columns: `[with_params][lock]`.
fn run_rows_sql(with_params: bool, lock: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[[String; 2]; 2]> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        [light_columns(), TASK_COLUMNS.to_owned()].map(|columns| {
            ["", " FOR UPDATE OF t"].map(|suffix| {
                format!(
                    "SELECT {columns}, {RUN_COLUMNS} FROM batchtask t WHERE t.batchtask_id = ANY($1) \
                     ORDER BY t.batchtask_id{suffix}"
                )
            })
        })
    });
    &sql[usize::from(with_params)][usize::from(lock)]
}

fn run_row_from(r: &PgRow) -> Result<RunRow, sqlx::Error> {
    let n = TASK_COLUMN_COUNT;
    Ok(RunRow {
        task: task_from_row(r)?,
        lease_token: r.try_get(n)?,
        lease_expires: r.try_get(n + 1)?,
        lease_node: r.try_get(n + 2)?,
        attempts: r.try_get(n + 3)?,
        run_after: r.try_get(n + 4)?,
        stop_requested: r.try_get(n + 5)?,
        stop_requested_by: r.try_get(n + 6)?,
        failures: r.try_get(n + 7)?,
        rescues: r.try_get(n + 8)?,
    })
}

/// Loads rows with their runner columns, in id order. `lock` takes their row locks, in id order
/// in one statement, so batches sharing rows queue instead of deadlocking.
pub(super) async fn load_run_rows(
    conn: &mut PgConnection,
    ids: &[i32],
    with_params: bool,
    lock: bool,
) -> Result<Vec<RunRow>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(run_rows_sql(with_params, lock)))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    rows.iter().map(run_row_from).collect::<Result<_, _>>().map_err(backend)
}

/// The states of `rows` before a rule changes them, for [`super::deps::fail_blocked_reruns`].
fn states(rows: &[RunRow]) -> Vec<(i32, BatchTaskState)> {
    rows.iter().map(|r| (r.task.id, r.task.state)).collect()
}

/// Locks and loads the rows a batch names (a missing one is simply absent).
async fn locked_rows(conn: &mut PgConnection, ids: impl Iterator<Item = i32>) -> Result<Vec<RunRow>, StoreError> {
    let mut ids: Vec<i32> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    load_run_rows(conn, &ids, false, true).await
}

/// Event columns as `unnest` parameters `$n…$n+6` in the order given; `ORDER BY n` makes the
/// event ids follow that order.
fn events_sql(first: usize) -> String {
    let p = |i: usize| first + i;
    format!(
        "INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) \
         SELECT id, at, from_state, to_state, associate_id, node, reason FROM unnest(${}::integer[], \
         ${}::timestamptz[], ${}::integer[], ${}::integer[], ${}::integer[], ${}::text[], ${}::text[]) \
         WITH ORDINALITY AS e (id, at, from_state, to_state, associate_id, node, reason, n) ORDER BY n",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6)
    )
}

fn bind_events<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    events: &[&RunEvent],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let each = || events.iter();
    q.bind(each().map(|e| e.task_id).collect::<Vec<_>>())
        .bind(each().map(|e| e.at).collect::<Vec<_>>())
        .bind(each().map(|e| e.from.map(BatchTaskState::number)).collect::<Vec<_>>())
        .bind(each().map(|e| e.to.map(BatchTaskState::number)).collect::<Vec<_>>())
        .bind(each().map(|e| e.associate_id).collect::<Vec<_>>())
        .bind(each().map(|e| e.node.clone()).collect::<Vec<_>>())
        .bind(each().map(|e| e.reason.clone()).collect::<Vec<_>>())
}

/// The batch write: every column the runner may change, over `unnest` of the columns, and the
/// events, in one statement (one round trip). `t.batchtask_id = ANY($1)` lets the planner find
/// the rows by primary key instead of hashing the whole table.
fn write_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH changed AS (UPDATE batchtask t SET state = v.state, result = v.result, response = v.response, \
             startcount = v.startcount, laststarted = v.laststarted, progresspercent = v.progresspercent, \
             progressdescription = v.progressdescription, filename = v.filename, lease_token = v.lease_token, \
             lease_expires = v.lease_expires, lease_node = v.lease_node, attempts = v.attempts, \
             run_after = v.run_after, stop_requested = v.stop_requested, stop_requested_by = v.stop_requested_by, \
             updated = v.updated, updatedcount = v.updatedcount, failures = v.failures, rescues = v.rescues \
             FROM unnest($1::integer[], $2::integer[], $3::text[], $4::text[], $5::integer[], $6::timestamptz[], \
             $7::smallint[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[], $13::integer[], \
             $14::timestamptz[], $15::timestamptz[], $16::text[], $17::timestamptz[], $18::bigint[], $19::integer[], \
             $20::integer[]) \
             AS v (id, state, result, response, startcount, laststarted, progresspercent, progressdescription, \
             filename, lease_token, lease_expires, lease_node, attempts, run_after, stop_requested, \
             stop_requested_by, updated, updatedcount, failures, rescues) \
             WHERE t.batchtask_id = v.id AND t.batchtask_id = ANY($1) RETURNING 1) {}",
            events_sql(21)
        )
    })
}

/// Writes what the rules decided, and what that does to the tasks waiting for those that ended.
pub(super) async fn write(conn: &mut PgConnection, changes: &[Change]) -> Result<(), StoreError> {
    write_rows(conn, changes).await?;
    let ended: Vec<(i32, Ended)> =
        changes.iter().filter_map(|c| Ended::of(c.row.task.state).map(|h| (c.row.task.id, h))).collect();
    match changes.first() {
        Some(c) if !ended.is_empty() => cascade_end(conn, ended, c.row.task.updated).await.map(|_| ()),
        _ => Ok(()),
    }
}

/// Tasks `ended` (id, how): their dependents are released or failed, and theirs in turn.
/// Answers the ids of the dependents it failed, in the order failed (each after the task that
/// failed it).
pub(super) async fn cascade_end(
    conn: &mut PgConnection,
    mut ended: Vec<(i32, Ended)>,
    now: DateTime<Utc>,
) -> Result<Vec<i32>, StoreError> {
    let mut all = Vec::new();
    while !ended.is_empty() {
        let failed = super::deps::after_end(conn, &ended, now).await?;
        write_rows(conn, &failed).await?;
        ended = failed.iter().map(|c| (c.row.task.id, Ended::Failed)).collect();
        all.extend(ended.iter().map(|e| e.0));
    }
    Ok(all)
}

/// The batch write: every column the runner may change, over `unnest` of the columns, and the
/// events, in one statement (one round trip).
async fn write_rows(conn: &mut PgConnection, changes: &[Change]) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows = || changes.iter().map(|c| &c.row);
    let tasks = || changes.iter().map(|c| &c.row.task);
    let events: Vec<&RunEvent> = changes.iter().flat_map(|c| &c.events).collect();
    let q = sqlx::query(AssertSqlSafe(write_sql()))
        .bind(tasks().map(|t| t.id).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.state.number()).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.result.clone()).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.response.clone()).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.start_count).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.last_started).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.progress_percent).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.progress_description.clone()).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.file_name.clone()).collect::<Vec<_>>())
        .bind(rows().map(|r| r.lease_token.clone()).collect::<Vec<_>>())
        .bind(rows().map(|r| r.lease_expires).collect::<Vec<_>>())
        .bind(rows().map(|r| r.lease_node.clone()).collect::<Vec<_>>())
        .bind(rows().map(|r| r.attempts).collect::<Vec<_>>())
        .bind(rows().map(|r| r.run_after).collect::<Vec<_>>())
        .bind(rows().map(|r| r.stop_requested).collect::<Vec<_>>())
        .bind(rows().map(|r| r.stop_requested_by.clone()).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.updated).collect::<Vec<_>>())
        .bind(tasks().map(|t| t.version).collect::<Vec<_>>())
        .bind(rows().map(|r| r.failures).collect::<Vec<_>>())
        .bind(rows().map(|r| r.rescues).collect::<Vec<_>>());
    bind_events(q, &events).execute(&mut *conn).await.map_err(backend)?;
    run::log_events(events);
    Ok(())
}

/// Appends events to the log in one statement, in the order given (their ids follow it).
pub async fn write_events<'a>(
    conn: &mut PgConnection,
    events: impl IntoIterator<Item = &'a RunEvent>,
) -> Result<(), StoreError> {
    let events: Vec<&RunEvent> = events.into_iter().collect();
    if events.is_empty() {
        return Ok(());
    }
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| events_sql(1));
    bind_events(sqlx::query(AssertSqlSafe(sql.as_str())), &events).execute(&mut *conn).await.map_err(backend)?;
    // Logged when written, before the caller's commit: a failed commit is rare and itself
    // logged, and carrying the events to every commit would touch each store method.
    run::log_events(events);
    Ok(())
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The run rules of the definitions named, in one read (a name with no definition row gets
/// [`RunPolicy::undefined`]).
async fn policies<'a>(
    conn: &mut PgConnection,
    names: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, RunPolicy>, StoreError> {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.dedup();
    let found: Vec<(String, i32, i64, i64, i32)> = sqlx::query_as(
        "SELECT name, autorestartcount, backoff_ms, max_backoff_ms, rescues FROM batchtaskdefinition \
         WHERE name = ANY($1)",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut out: HashMap<String, RunPolicy> = names.iter().map(|n| ((*n).to_owned(), RunPolicy::undefined())).collect();
    for (name, restarts, backoff, max, rescues) in found {
        out.insert(name, policy_from(restarts.into(), backoff, max, rescues.into()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Changes by hand (API)

/// [`crate::store::Store::modify_task`]: the change, the runner columns as [`run::by_hand`] says, the event.
/// Answers the task and the ids of the dependents the change failed, in the order failed: the
/// transaction raises no task notice (its caller sends them after the commit, the task first).
pub async fn modify_task(
    conn: &mut PgConnection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    change: &TaskChange,
) -> Result<(Task, Vec<i32>), StoreError> {
    let current = load_task(conn, id, true).await?.ok_or(StoreError::NotFound)?;
    // A refusal drops the transaction, which rolls back and releases the row lock.
    let next = change(&current)?;
    if crate::domain::dependency::must_check(current.state, next.state) {
        super::deps::check_rerun(conn, id).await?;
    }
    if crate::domain::unique::revives(current.state, next.state) {
        check_unique_free(conn, id).await?;
    }
    let by_hand = run::by_hand(&current, &next, actor, now);
    // The answer is read back by the UPDATE itself (`t` is the updated row): exactly what is
    // stored, one round trip fewer.
    let row = sqlx::query(concat!(
        "WITH t AS (UPDATE batchtask SET state = $1, description = $2, response = $3, request = $4, result = $5, \
         startcount = $6, laststarted = $7, progresspercent = $8, progressdescription = $9, filename = $10, \
         updated = $11, updatedcount = updatedcount + 1, updated_associate_id = COALESCE($12, updated_associate_id), \
         lease_token = CASE WHEN $13 THEN NULL ELSE lease_token END, \
         lease_expires = CASE WHEN $13 THEN NULL ELSE lease_expires END, \
         lease_node = CASE WHEN $13 THEN NULL ELSE lease_node END, \
         stop_requested = CASE WHEN $13 THEN NULL ELSE stop_requested END, \
         stop_requested_by = CASE WHEN $13 THEN NULL ELSE stop_requested_by END, \
         attempts = CASE WHEN $14 THEN 0 ELSE attempts END, \
         failures = CASE WHEN $14 THEN 0 ELSE failures END, \
         rescues = CASE WHEN $14 THEN 0 ELSE rescues END, \
         run_after = CASE WHEN $14 THEN NULL ELSE run_after END \
         WHERE batchtask_id = $15 RETURNING *) SELECT ",
        task_columns!(),
        " FROM t"
    ))
    .bind(next.state.number());
    let row = bind_edit(row, &next, now, actor)
        .bind(by_hand.ends_lease)
        .bind(by_hand.resets_attempts)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let task = row.as_ref().map(task_from_row).transpose().map_err(backend)?.ok_or(StoreError::NotFound)?;
    write_events(conn, &by_hand.event).await?;
    let failed = match Ended::of(next.state).filter(|_| next.state != current.state) {
        Some(how) => cascade_end(conn, vec![(id, how)], now).await?,
        None => Vec::new(),
    };
    Ok((task, failed))
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The columns an edit writes, in the order both edit statements number them (description,
/// response, request, result, startcount, laststarted, progress, its text, filename, updated,
/// who).
fn bind_edit<'q>(q: PgQuery<'q>, next: &'q Task, now: DateTime<Utc>, actor: &Actor) -> PgQuery<'q> {
    q.bind(&next.description)
        .bind(&next.response)
        .bind(&next.request)
        .bind(&next.result)
        .bind(next.start_count)
        .bind(next.last_started)
        .bind(next.progress_percent)
        .bind(&next.progress_description)
        .bind(&next.file_name)
        .bind(now)
        .bind(actor.associate_id)
}

/// The row as the batch edit statement ([`write_edits`]) leaves it: `next`'s values for the
/// columns an edit writes (those of [`bind_edit`]), the version moved on by one, `updated` at
/// `now`; everything else as stored. A later edit of the same task in the same batch is decided
/// on this.
pub(super) fn as_edited(current: &Task, next: &Task, now: DateTime<Utc>) -> Task {
    Task {
        description: next.description.clone(),
        response: next.response.clone(),
        request: next.request.clone(),
        result: next.result.clone(),
        start_count: next.start_count,
        last_started: next.last_started,
        progress_percent: next.progress_percent,
        progress_description: next.progress_description.clone(),
        file_name: next.file_name.clone(),
        updated: now,
        version: current.version + 1,
        ..current.clone()
    }
}

/// One task's part of a batch edit: the row it was decided on (`base`), the row to store (from
/// [`as_edited`], once per edit of the batch) and the associate who made its last edit.
pub(super) struct Edited<'a> {
    pub base: &'a Task,
    pub stored: &'a Task,
    pub who: Option<i32>,
}

/// Writes edits that move no state, of distinct tasks, in ONE autocommit statement: a row is
/// written only if it still has the version and state its edits were decided on. Every write
/// that changes a task's columns moves its version (`updatedcount`, the ETag), so an unchanged
/// version means the decisions were made on what is stored; a write in between makes the row
/// match nothing (under READ COMMITTED the statement waits for a concurrent writer and checks
/// the row that writer left). The lease columns are left alone, as the locked path leaves them
/// when the state stays. Answers the ids written; the others raced.
///
/// The statement also sets `batchd.task_notices = 'after_commit'` for its own (implicit)
/// transaction, before any row is touched (an InitPlan runs first), so the trigger stays quiet
/// and the caller sends the notices once this returns, i.e. after the commit: an autocommit
/// statement's answer comes after its commit, which `synchronous_commit = on` makes durable.
/// The raw driver error, so that the caller can tell a refused statement (nothing written) from
/// a lost connection (perhaps committed).
pub(super) async fn write_edits(conn: &mut PgConnection, edits: &[Edited<'_>]) -> Result<Vec<i32>, sqlx::Error> {
    // In id order, the order the locked batches take their row locks in. The planner usually
    // meets the rows in this order but does not promise it: a deadlock with a runner batch is
    // refused, and its edits then take the locked path (`edits`).
    let mut edits: Vec<&Edited> = edits.iter().collect();
    edits.sort_unstable_by_key(|e| e.base.id);
    let stored = || edits.iter().map(|e| e.stored);
    // The columns of `bind_edit`, as arrays, then the guard.
    sqlx::query(
        "UPDATE batchtask t SET description = v.description, response = v.response, request = v.request, \
         result = v.result, startcount = v.startcount, laststarted = v.laststarted, \
         progresspercent = v.progresspercent, progressdescription = v.progressdescription, filename = v.filename, \
         updated = v.updated, updatedcount = v.updatedcount, \
         updated_associate_id = COALESCE(v.who, t.updated_associate_id) \
         FROM unnest($1::integer[], $2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], \
         $7::timestamptz[], $8::smallint[], $9::text[], $10::text[], $11::timestamptz[], $12::integer[], \
         $13::bigint[], $14::integer[], $15::bigint[]) \
         AS v (id, description, response, request, result, startcount, laststarted, progresspercent, \
         progressdescription, filename, updated, who, version, state, updatedcount) \
         WHERE t.batchtask_id = v.id AND t.batchtask_id = ANY($1) AND t.updatedcount = v.version \
         AND t.state = v.state \
         AND (SELECT set_config('batchd.task_notices', 'after_commit', true)) IS NOT NULL \
         RETURNING t.batchtask_id",
    )
    .bind(edits.iter().map(|e| e.base.id).collect::<Vec<_>>())
    .bind(stored().map(|t| t.description.clone()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.response.clone()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.request.clone()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.result.clone()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.start_count).collect::<Vec<_>>())
    .bind(stored().map(|t| t.last_started).collect::<Vec<_>>())
    .bind(stored().map(|t| t.progress_percent).collect::<Vec<_>>())
    .bind(stored().map(|t| t.progress_description.clone()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.file_name.clone()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.updated).collect::<Vec<_>>())
    .bind(edits.iter().map(|e| e.who).collect::<Vec<_>>())
    .bind(edits.iter().map(|e| e.base.version).collect::<Vec<_>>())
    .bind(edits.iter().map(|e| e.base.state.number()).collect::<Vec<_>>())
    .bind(stored().map(|t| t.version).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect()
}

/// Deletes a task row with its blobs and links (and, when `events`, its event log).
pub async fn delete_rows(conn: &mut PgConnection, id: i32, events: bool) -> Result<(), StoreError> {
    // Blobs go with their links (ON DELETE CASCADE runs from blob to link, so delete blobs).
    sqlx::query(
        "DELETE FROM binaryobject WHERE binaryobject_id IN (SELECT binaryobject_id FROM binaryobjectlink \
         WHERE ownertable = $1 AND ownerrecord = $2 AND linktype = $3)",
    )
    .bind(TABLE_BATCHTASK)
    .bind(id)
    .bind(LINKTYPE_BATCHTASK)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query("DELETE FROM binaryobjectlink WHERE ownertable = $1 AND ownerrecord = $2")
        .bind(TABLE_BATCHTASK)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    super::deps::delete_edges(conn, id).await?;
    sqlx::query("DELETE FROM batchtask WHERE batchtask_id = $1").bind(id).execute(&mut *conn).await.map_err(backend)?;
    if events {
        sqlx::query("DELETE FROM batchtaskevent WHERE batchtask_id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Claims

/// Takes the claim lock of each limited name, in name order (see the module doc).
async fn lock_limited(conn: &mut PgConnection, names: &[&ClaimName]) -> Result<(), StoreError> {
    let mut limited: Vec<&str> =
        names.iter().filter(|n| n.concurrency.is_some() || n.rate.is_some()).map(|n| n.name.as_str()).collect();
    limited.sort_unstable();
    limited.dedup();
    for name in limited {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(LIMITED_CLAIM_LOCK)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// Room left under a name's concurrency limit and rate (`usize::MAX` when it has neither).
/// Call with the name's claim lock held.
async fn room(conn: &mut PgConnection, name: &ClaimName, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let active: i64 = match name.concurrency {
        None => 0,
        Some(_) => sqlx::query_scalar("SELECT COUNT(*) FROM batchtask WHERE name = $1 AND state IN (2, 3)")
            .bind(&name.name)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?,
    };
    let started: i64 = match name.rate {
        None => 0,
        Some(rate) => sqlx::query_scalar("SELECT COUNT(*) FROM claim_start WHERE name = $1 AND at > $2")
            .bind(&name.name)
            .bind(rate.window_start(now))
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?,
    };
    Ok(name.claim_room(active, started))
}

/// Records the claims of rate-limited names (one row each) and forgets those out of the window.
/// Call with the names' claim locks held.
async fn record_starts(
    conn: &mut PgConnection,
    claimed: &[Claimed],
    names: &[ClaimName],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (name, rate, n) in run::starts_to_record(claimed, names) {
        sqlx::query("DELETE FROM claim_start WHERE name = $1 AND at <= $2")
            .bind(name)
            .bind(rate.window_start(now))
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO claim_start (name, at) SELECT $1, $2 FROM generate_series(1, $3)")
            .bind(name)
            .bind(now)
            .bind(n as i32)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

pub async fn claim(
    conn: &mut PgConnection,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, StoreError> {
    if req.max == 0 || req.names.is_empty() {
        return Ok(Vec::new());
    }
    // Names with nothing due are skipped before any lock, so an idle poll stays a cheap read. The
    // same read says which are paused. A pause committed after this read lets this one claim
    // finish: the pause takes effect for the claims that start after it.
    let names: Vec<String> = req.names.iter().map(|n| n.name.clone()).collect();
    // -- deps -- `waiting_on = 0` here too: a name whose New tasks all wait is not due.
    let due: Vec<(String, bool)> = sqlx::query_as(
        "SELECT n.name, COALESCE(d.paused, false) FROM unnest($1::text[]) AS n (name) \
         LEFT JOIN batchtaskdefinition d ON d.name = n.name \
         WHERE EXISTS (SELECT 1 FROM batchtask t WHERE t.name = n.name AND t.state = 1 AND t.waiting_on = 0 \
         AND (t.run_after IS NULL OR t.run_after <= $2))",
    )
    .bind(&names)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let paused: Vec<String> = due.iter().filter(|(_, p)| *p).map(|(n, _)| n.clone()).collect();
    let wanted: Vec<&ClaimName> =
        run::unpaused(&req.names, &paused).into_iter().filter(|n| due.iter().any(|(d, _)| d == &n.name)).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    lock_limited(conn, &wanted).await?;
    // Each name's first rows in claim order, locked and loaded whole in one statement.
    let mut rows: Vec<RunRow> = Vec::new();
    let mut candidates: Vec<(i16, i32)> = Vec::new();
    for name in wanted {
        let take = room(conn, name, now).await?.min(req.max);
        if take == 0 {
            continue;
        }
        let found = sqlx::query(AssertSqlSafe(claim_rows_sql()))
            .bind(&name.name)
            .bind(now)
            .bind(take as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        for r in &found {
            candidates.push((
                r.try_get(TASK_COLUMN_COUNT + RUN_COLUMN_COUNT).map_err(backend)?,
                r.try_get(0).map_err(backend)?,
            ));
            rows.push(run_row_from(r).map_err(backend)?);
        }
    }
    let order = run::claim_order(candidates, req.max);
    if order.is_empty() {
        return Ok(Vec::new());
    }
    // Candidates past `max` (several names) stay locked to COMMIT but are not claimed.
    rows.retain(|r| order.contains(&r.task.id));
    let mut claimed = claim_rows(conn, rows, req, now).await?;
    run::in_claim_order(&mut claimed, &order);
    record_starts(conn, &claimed, &req.names, now).await?;
    Ok(claimed)
}

/// The claim's candidates of one name (`$1`), due at `$2`, at most `$3`: the claim index (name,
/// priority DESC, id) WHERE state = 1 AND waiting_on = 0 gives them in claim order (a task
/// waiting for its dependencies is not due); `SKIP LOCKED` leaves rows other nodes are claiming
/// to them. The row lock is taken before the columns are read, so they are the latest committed.
fn claim_rows_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {TASK_COLUMNS}, {RUN_COLUMNS}, t.priority FROM batchtask t WHERE t.name = $1 AND t.state = 1 \
             AND t.waiting_on = 0 AND (t.run_after IS NULL OR t.run_after <= $2) ORDER BY t.priority DESC, t.batchtask_id LIMIT $3 \
             FOR UPDATE OF t SKIP LOCKED"
        )
    })
}

/// Claims the given `New` rows (locked by the caller) under one lease token for the batch.
async fn claim_rows(
    conn: &mut PgConnection,
    rows: Vec<RunRow>,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, StoreError> {
    let token = new_token();
    let (claimed, changes): (Vec<Claimed>, Vec<Change>) =
        rows.into_iter().filter_map(|row| run::claim(row, req, &token, now)).unzip();
    write(conn, &changes).await?;
    Ok(claimed)
}

/// After inserting task `id`: claims it when it is claimable by `req` and nothing of its name
/// goes before it (a higher priority, or the same and older).
pub async fn claim_new(
    conn: &mut PgConnection,
    id: i32,
    name: &str,
    priority: u8,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, StoreError> {
    let Some(claim_name) = req.names.iter().find(|n| n.name == name) else { return Ok(None) };
    let (older, paused): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM batchtask WHERE name = $1 AND state = 1 AND waiting_on = 0 \
         AND (priority > $4 OR (priority = $4 AND batchtask_id < $2)) \
         AND (run_after IS NULL OR run_after <= $3)), \
         EXISTS (SELECT 1 FROM batchtaskdefinition WHERE name = $1 AND paused)",
    )
    .bind(name)
    .bind(id)
    .bind(now)
    .bind(i16::from(priority))
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    let paused: Vec<String> = if paused { vec![name.to_owned()] } else { Vec::new() };
    if older || run::unpaused(std::slice::from_ref(claim_name), &paused).is_empty() {
        return Ok(None);
    }
    lock_limited(conn, &[claim_name]).await?;
    if room(conn, claim_name, now).await? == 0 {
        return Ok(None);
    }
    let rows = load_run_rows(conn, &[id], true, false).await?;
    let claimed = claim_rows(conn, rows, req, now).await?;
    record_starts(conn, &claimed, std::slice::from_ref(claim_name), now).await?;
    Ok(claimed.into_iter().next().map(|c| c.lease))
}

// ---------------------------------------------------------------------------------------------
// Heartbeats and finishes

pub async fn renew(
    conn: &mut PgConnection,
    beats: Vec<Beat>,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<BeatOutcome>, StoreError> {
    let rows = locked_rows(conn, beats.iter().map(|b| b.id)).await?;
    let (answers, changes) = run::renew_batch(rows, &beats, lease, now);
    write(conn, &changes).await?;
    Ok(answers)
}

pub async fn finish(
    conn: &mut PgConnection,
    finishes: Vec<Finish>,
    now: DateTime<Utc>,
) -> Result<Vec<FinishResult>, StoreError> {
    let rows = locked_rows(conn, finishes.iter().map(|f| f.id)).await?;
    let policies = policies(conn, rows.iter().map(|r| r.task.name.as_str())).await?;
    let before = states(&rows);
    let (mut answers, changes) = run::finish_batch(rows, &finishes, &policies, now, rand::random);
    let changes = super::deps::fail_blocked_reruns(conn, &before, changes, now).await?;
    run::answer_as_written(&mut answers, &finishes, &changes);
    write(conn, &changes).await?;
    Ok(answers)
}

// ---------------------------------------------------------------------------------------------
// Stops, rescue, release

pub async fn request_stop(
    conn: &mut PgConnection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    by: &str,
    guard: crate::store::DeleteGuard,
) -> Result<StopResult, StoreError> {
    let row = load_run_rows(conn, &[id], true, true).await?.pop().ok_or(StoreError::NotFound)?;
    guard(&row.task)?;
    let (answer, change) = run::stop(row, by, actor, now);
    write(conn, change.as_slice()).await?;
    Ok(answer)
}

pub async fn lease_info(conn: &mut PgConnection, id: i32) -> Result<Option<LeaseInfo>, StoreError> {
    let row = sqlx::query(
        "SELECT state, lease_token, lease_expires, lease_node, stop_requested_by FROM batchtask WHERE batchtask_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    row.map(|r| {
        Ok(LeaseInfo {
            state: BatchTaskState::from_number(i64::from(r.try_get::<i32, _>(0)?)).unwrap_or(BatchTaskState::Unknown),
            token: r.try_get(1)?,
            expires: r.try_get(2)?,
            node: r.try_get(3)?,
            stop_requested_by: r.try_get(4)?,
        })
    })
    .transpose()
    .map_err(backend)
}

pub async fn pending_stops(conn: &mut PgConnection, node: &str) -> Result<Vec<(i32, String)>, StoreError> {
    let rows: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT batchtask_id, stop_requested_by FROM batchtask WHERE lease_node = $1 \
         AND stop_requested IS NOT NULL AND state = 3",
    )
    .bind(node)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(rows.into_iter().map(|(id, by)| (id, by.unwrap_or_default())).collect())
}

pub async fn rescue(
    conn: &mut PgConnection,
    node: &str,
    now: DateTime<Utc>,
    limit: usize,
    stop_grace: Duration,
) -> Result<Vec<Rescued>, StoreError> {
    let limit = limit as i64;
    // SKIP LOCKED: a row being written right now (its holder finishing it, say) waits for the
    // next sweep instead of blocking this one.
    let mut ids: Vec<i32> = sqlx::query_scalar(
        "SELECT batchtask_id FROM batchtask WHERE lease_expires < $1 AND state IN (2, 3) \
         ORDER BY lease_expires LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let stop_deadline = now - chrono::Duration::from_std(stop_grace).unwrap_or_default();
    ids.extend(
        sqlx::query_scalar::<_, i32>(
            "SELECT batchtask_id FROM batchtask WHERE stop_requested IS NOT NULL AND stop_requested < $1 \
             AND state = 3 LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(stop_deadline)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?,
    );
    ids.sort_unstable();
    ids.dedup();
    // Locked above: loading them again needs no lock.
    let rows = load_run_rows(conn, &ids, false, false).await?;
    let policies = policies(conn, rows.iter().map(|r| r.task.name.as_str())).await?;
    let before = states(&rows);
    let (mut rescued, changes): (Vec<Rescued>, Vec<Change>) = rows
        .into_iter()
        .filter_map(|row| {
            let policy = RunPolicy::of(&policies, &row.task);
            run::rescue(row, node, &policy, now, stop_grace)
        })
        .unzip();
    // A rescue never fails for a dependency: the task it would make New ends Failed instead.
    let changes = super::deps::fail_blocked_reruns(conn, &before, changes, now).await?;
    for (r, c) in rescued.iter_mut().zip(&changes) {
        r.to = c.row.task.state;
    }
    write(conn, &changes).await?;
    Ok(rescued)
}

pub async fn release_node(conn: &mut PgConnection, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
    let ids: Vec<i32> = sqlx::query_scalar(
        "SELECT batchtask_id FROM batchtask WHERE lease_node = $1 AND state IN (2, 3) ORDER BY batchtask_id FOR UPDATE",
    )
    .bind(node)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let rows = load_run_rows(conn, &ids, false, false).await?;
    let before = states(&rows);
    let changes: Vec<Change> = rows.into_iter().filter_map(|row| run::release(row, node, now)).collect();
    let changes = super::deps::fail_blocked_reruns(conn, &before, changes, now).await?;
    write(conn, &changes).await?;
    Ok(changes.iter().map(|c| c.row.task.id).collect())
}

// ---------------------------------------------------------------------------------------------
// Events, retention, schedules

pub async fn task_events(conn: &mut PgConnection, id: i32) -> Result<Vec<TaskEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.batchtaskevent_id, e.batchtask_id, e.at, e.from_state, e.to_state, e.associate_id, a.name, e.node, \
         e.reason FROM batchtaskevent e LEFT JOIN associate a ON a.associate_id = e.associate_id \
         WHERE e.batchtask_id = $1 ORDER BY e.batchtaskevent_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let state = |v: Option<i32>| v.and_then(|n| BatchTaskState::from_number(i64::from(n)));
    rows.iter()
        .map(|r| {
            Ok(TaskEvent {
                id: r.try_get(0)?,
                task_id: r.try_get(1)?,
                at: r.try_get(2)?,
                from: state(r.try_get(3)?),
                to: state(r.try_get(4)?),
                associate_id: r.try_get(5)?,
                associate_name: r.try_get(6)?,
                node: r.try_get(7)?,
                reason: r.try_get(8)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(backend)
}

pub async fn purge_finished(
    conn: &mut PgConnection,
    state: BatchTaskState,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    if !state.is_finished() {
        return Ok(0);
    }
    let ids: Vec<i32> = sqlx::query_scalar(
        "SELECT batchtask_id FROM batchtask WHERE state = $1 AND updated < $2 ORDER BY updated LIMIT $3 \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(state.number())
    .bind(before)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for id in &ids {
        delete_rows(conn, *id, true).await?;
    }
    Ok(ids.len())
}

pub async fn purge_deleted_events(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    let ids: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT batchtask_id FROM (SELECT batchtask_id FROM batchtaskevent WHERE to_state IS NULL AND at < $1 \
         LIMIT $2) d",
    )
    .bind(before)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    // A task id is never reused (identity column), so the whole log of a deleted id can go.
    sqlx::query("DELETE FROM batchtaskevent WHERE batchtask_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(ids.len())
}

pub async fn schedule_tick(
    conn: &mut PgConnection,
    tick: &ScheduleTick,
    now: DateTime<Utc>,
    new: NewTask,
) -> Result<(Option<Task>, DateTime<Utc>), StoreError> {
    // The definition row's lock makes the check and the move of `next_start` one step across
    // nodes: the second node to tick sees the schedule already moved on. NO KEY UPDATE: the tick
    // changes no key, and the FOR KEY SHARE that a create's foreign key takes on this row (a
    // task of the name, unique or keyed, being created on another node) need not wait for it.
    let (next_start, paused): (Option<DateTime<Utc>>, bool) =
        sqlx::query_as("SELECT next_start, paused FROM batchtaskdefinition WHERE name = $1 FOR NO KEY UPDATE")
            .bind(&tick.name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
    let Some(due) = run::schedule_due(next_start, &tick.schedule, paused, tick.catch_up, now) else {
        return Ok((None, next_start.unwrap_or(now)));
    };
    let next = due.next;
    // Paused, or (when asked) a task of the name still waiting or running: no task this time.
    let skipped = !due.create
        || tick.skip_if_active && {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM batchtask WHERE name = $1 AND state IN (1, 2, 3) LIMIT 1")
                    .bind(&tick.name)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(backend)?;
            found.is_some()
        };
    let created = if skipped {
        None
    } else {
        match insert_task(conn, &new, now).await {
            Ok(id) => load_task(conn, id, false).await?,
            // A live task holds the unique key: this occurrence creates nothing.
            Err(StoreError::Rejected(crate::domain::DomainError::UniqueHeld { .. })) => None,
            Err(e) => return Err(e),
        }
    };
    let next = at(next);
    sqlx::query("UPDATE batchtaskdefinition SET next_start = $1 WHERE name = $2")
        .bind(next)
        .bind(&tick.name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok((created, next))
}

pub async fn set_run_policy(conn: &mut PgConnection, name: &str, policy: &RunPolicy) -> Result<(), StoreError> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    sqlx::query("UPDATE batchtaskdefinition SET backoff_ms = $1, max_backoff_ms = $2, rescues = $3 WHERE name = $4")
        .bind(ms(policy.retry.backoff))
        .bind(ms(policy.retry.max_backoff))
        .bind(i32::try_from(policy.rescues).unwrap_or(i32::MAX))
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scheduling

/// The trigger of `0009_scheduling.sql` tells the feed when `paused` changes.
pub async fn set_paused(conn: &mut PgConnection, name: &str, paused: bool) -> Result<bool, StoreError> {
    // NO KEY UPDATE, as the schedule's tick: creates of the name do not wait for a pause.
    let was: bool = sqlx::query_scalar("SELECT paused FROM batchtaskdefinition WHERE name = $1 FOR NO KEY UPDATE")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
    if was == paused {
        return Ok(false);
    }
    sqlx::query("UPDATE batchtaskdefinition SET paused = $1 WHERE name = $2")
        .bind(paused)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(true)
}

pub async fn definition_statuses(
    conn: &mut PgConnection,
    owner: Option<i32>,
) -> Result<Vec<crate::store::DefinitionStatus>, StoreError> {
    let rows: Vec<(String, bool, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT name, paused, next_start FROM batchtaskdefinition ORDER BY name")
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
    // Two statements, so each has its index: (name, state) for every task, (associate_id, state)
    // for a user's own.
    let counts: Vec<(String, i32, i64)> = match owner {
        None => {
            sqlx::query_as(
                "SELECT name, state, COUNT(*) FROM batchtask WHERE state IN (1, 2, 3, 5) GROUP BY name, state",
            )
            .fetch_all(&mut *conn)
            .await
        }
        Some(owner) => {
            sqlx::query_as(
                "SELECT name, state, COUNT(*) FROM batchtask WHERE associate_id = $1 AND state IN (1, 2, 3, 5) \
             AND NOT is_system GROUP BY name, state",
            )
            .bind(owner)
            .fetch_all(&mut *conn)
            .await
        }
    }
    .map_err(backend)?;
    Ok(crate::store::definition_statuses(rows, counts.into_iter().map(|(n, s, c)| (n, i64::from(s), c))))
}

pub async fn retry_task(
    conn: &mut PgConnection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    guard: crate::store::DeleteGuard,
) -> Result<Task, StoreError> {
    let row = load_run_rows(conn, &[id], false, true).await?.pop().ok_or(StoreError::NotFound)?;
    guard(&row.task)?;
    let from = row.task.state;
    let change = run::retry(row, actor, now)?;
    if crate::domain::dependency::must_check(from, change.row.task.state) {
        super::deps::check_rerun(conn, id).await?;
    }
    check_unique_free(conn, id).await?;
    write(conn, std::slice::from_ref(&change)).await?;
    load_task(conn, id, false).await?.ok_or(StoreError::NotFound)
}

// ---------------------------------------------------------------------------------------------
// Unique tasks: the index `batchtask_unique_live` decides; these name the holder.

/// The live task holding unique `key`.
pub async fn unique_holder(conn: &mut PgConnection, key: &str) -> Result<Option<i32>, StoreError> {
    sqlx::query_scalar("SELECT batchtask_id FROM batchtask WHERE unique_key = $1 AND state IN (1, 2, 3) LIMIT 1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)
}

/// Refuses to bring task `id` back to a live state while another live task holds its key. A
/// create racing past this check is caught by the index when the row is written (the holder
/// is then not named).
pub async fn check_unique_free(conn: &mut PgConnection, id: i32) -> Result<(), StoreError> {
    let holder: Option<i32> = sqlx::query_scalar(
        "SELECT o.batchtask_id FROM batchtask t JOIN batchtask o ON o.unique_key = t.unique_key \
         AND o.state IN (1, 2, 3) AND o.batchtask_id <> t.batchtask_id WHERE t.batchtask_id = $1 LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    match holder {
        Some(h) => Err(crate::domain::DomainError::UniqueHeld { holder: Some(h) }.into()),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys

/// The key row is inserted first: a racing create with the same key blocks on the primary key
/// until this transaction ends, then finds the row and replays its task.
pub async fn create_task_once(
    conn: &mut PgConnection,
    new: &NewTask,
    now: DateTime<Utc>,
    key: &crate::domain::idempotency::KeyedCreate,
) -> Result<crate::store::CreatedOnce, StoreError> {
    use crate::domain::idempotency::{KeyUse, StoredKey, decide};
    let inserted = sqlx::query(
        "INSERT INTO idempotency_key (associate_id, key, request_hash, created) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (associate_id, key) DO NOTHING",
    )
    .bind(key.associate_id)
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(backend)?
    .rows_affected();
    if inserted == 0 {
        let stored: (String, Option<i32>, DateTime<Utc>) = sqlx::query_as(
            "SELECT request_hash, task_id, created FROM idempotency_key WHERE associate_id = $1 AND key = $2 FOR UPDATE",
        )
        .bind(key.associate_id)
        .bind(&key.key)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        let stored = StoredKey { request_hash: stored.0, task_id: stored.1, created: stored.2 };
        if let KeyUse::Replay(id) = decide(Some(&stored), &key.request_hash, now)? {
            return Ok(crate::store::CreatedOnce::Replayed(id));
        }
    }
    let id = insert_task(conn, new, now).await?;
    sqlx::query(
        "UPDATE idempotency_key SET request_hash = $3, task_id = $4, created = $5 WHERE associate_id = $1 AND key = $2",
    )
    .bind(key.associate_id)
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let task = load_task(conn, id, false).await?.ok_or(StoreError::NotFound)?;
    Ok(crate::store::CreatedOnce::Created(Box::new(task)))
}

pub async fn purge_idempotency_keys(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    let n = sqlx::query(
        "DELETE FROM idempotency_key WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_key WHERE created < $1 \
         LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(before)
    .bind(limit as i64)
    .execute(&mut *conn)
    .await
    .map_err(backend)?
    .rows_affected();
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
