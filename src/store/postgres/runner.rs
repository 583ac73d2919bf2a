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

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::domain::definition::{RetryPolicy, results};
use crate::domain::task::{LINKTYPE_BATCHTASK, TABLE_BATCHTASK};
use crate::domain::{BatchTaskState, CancellationBehaviour, NewTask, Task};
use crate::store::runner::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Claimed, Finish, FinishOutcome, FinishResult, Lease, LeaseInfo,
    Progress, Rescued, ScheduleTick, StopResult, TaskEvent,
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

/// A task row with its runner columns.
type RunRow = crate::store::runner::RunRow<DateTime<Utc>>;

/// The task columns with NULL for the ParameterObject blob (bookkeeping writes do not need it).
fn light_columns() -> &'static str {
    static LIGHT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIGHT.get_or_init(|| {
        let start = TASK_COLUMNS.find("(SELECT b.binarydata").expect("blob column");
        let end = start + TASK_COLUMNS[start..].find("LIMIT 1)").expect("blob column end") + "LIMIT 1)".len();
        format!("{}NULL::bytea{}", &TASK_COLUMNS[..start], &TASK_COLUMNS[end..])
    })
}

fn run_row_sql(lock: bool) -> &'static str {
    static PLAIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static LOCKED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let make = |suffix: &str| {
        format!(
            "SELECT {}, t.lease_token, t.lease_expires, t.lease_node, t.attempts, t.run_after, t.stop_requested, \
             t.stop_requested_by FROM batchtask t WHERE t.batchtask_id = $1{suffix}",
            light_columns()
        )
    };
    if lock { LOCKED.get_or_init(|| make(" FOR UPDATE OF t")) } else { PLAIN.get_or_init(|| make("")) }
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
    })
}

/// Loads a row with its runner columns (without the blob); `lock` takes the row lock.
async fn load_run_row(conn: &mut PgConnection, id: i32, lock: bool) -> Result<Option<RunRow>, StoreError> {
    let row =
        sqlx::query(AssertSqlSafe(run_row_sql(lock))).bind(id).fetch_optional(&mut *conn).await.map_err(backend)?;
    row.as_ref().map(run_row_from).transpose().map_err(backend)
}

/// Locks the given task rows in id order (one statement), so batches sharing rows cannot deadlock.
async fn lock_rows(conn: &mut PgConnection, ids: &[i32]) -> Result<(), StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    sqlx::query("SELECT batchtask_id FROM batchtask WHERE batchtask_id = ANY($1) ORDER BY batchtask_id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Writes every column the runner may change. Bumps the version (ETag) when `visible`.
async fn store_run_row(
    conn: &mut PgConnection,
    row: &RunRow,
    now: DateTime<Utc>,
    visible: bool,
) -> Result<(), StoreError> {
    let t = &row.task;
    sqlx::query(
        "UPDATE batchtask SET state = $1, result = $2, response = $3, startcount = $4, laststarted = $5, \
         progresspercent = $6, progressdescription = $7, filename = $8, lease_token = $9, lease_expires = $10, \
         lease_node = $11, attempts = $12, run_after = $13, stop_requested = $14, stop_requested_by = $15, \
         updated = CASE WHEN $16 THEN $17 ELSE updated END, \
         updatedcount = updatedcount + CASE WHEN $16 THEN 1 ELSE 0 END WHERE batchtask_id = $18",
    )
    .bind(t.state.number())
    .bind(&t.result)
    .bind(&t.response)
    .bind(t.start_count)
    .bind(t.last_started)
    .bind(t.progress_percent)
    .bind(&t.progress_description)
    .bind(&t.file_name)
    .bind(&row.lease_token)
    .bind(row.lease_expires)
    .bind(&row.lease_node)
    .bind(row.attempts)
    .bind(row.run_after)
    .bind(row.stop_requested)
    .bind(&row.stop_requested_by)
    .bind(visible)
    .bind(now)
    .bind(t.id)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Logs a state change (or a stop request) of a non-internal task.
pub async fn record_event(
    conn: &mut PgConnection,
    task: &Task,
    at: DateTime<Utc>,
    from: Option<BatchTaskState>,
    to: Option<BatchTaskState>,
    actor: &Actor,
) -> Result<(), StoreError> {
    if task.is_internal {
        return Ok(());
    }
    insert_event(conn, task.id, at, from, to, actor).await
}

pub async fn insert_event(
    conn: &mut PgConnection,
    task_id: i32,
    at: DateTime<Utc>,
    from: Option<BatchTaskState>,
    to: Option<BatchTaskState>,
    actor: &Actor,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(task_id)
    .bind(at)
    .bind(from.map(BatchTaskState::number))
    .bind(to.map(BatchTaskState::number))
    .bind(actor.associate_id)
    .bind(actor.node.as_deref().map(clean))
    .bind(actor.reason.as_deref().map(|r| truncate(&clean(r), 4096)))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// PostgreSQL refuses U+0000 in text (SQLite keeps it); a command's output may contain one.
fn clean(s: &str) -> String {
    if s.contains('\0') { s.replace('\0', "\u{FFFD}") } else { s.to_owned() }
}

fn clean_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(clean)
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars { s.to_owned() } else { s.chars().take(max_chars).collect() }
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn lease_duration(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(365 * 100))
}

// ---------------------------------------------------------------------------------------------
// Changes by hand (API)

/// [`crate::store::Store::modify_task_as`]: the change, the lease ended when the state moves, the event.
pub async fn modify_task_as(
    conn: &mut PgConnection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    change: TaskChange,
) -> Result<Task, StoreError> {
    let current = load_task(conn, id, true).await?.ok_or(StoreError::NotFound)?;
    // A refusal drops the transaction, which rolls back and releases the row lock.
    let next = change(&current)?;
    let moved = next.state != current.state;
    // Leaving a state (by hand or by a rule) ends any lease: a runner still holding it is fenced
    // out. Back to New by hand starts the restart count afresh.
    let to_new = moved && next.state == BatchTaskState::New;
    sqlx::query(
        "UPDATE batchtask SET state = $1, description = $2, response = $3, request = $4, result = $5, \
         startcount = $6, laststarted = $7, progresspercent = $8, progressdescription = $9, filename = $10, \
         updated = $11, updatedcount = updatedcount + 1, updated_associate_id = COALESCE($12, updated_associate_id), \
         lease_token = CASE WHEN $13 THEN NULL ELSE lease_token END, \
         lease_expires = CASE WHEN $13 THEN NULL ELSE lease_expires END, \
         lease_node = CASE WHEN $13 THEN NULL ELSE lease_node END, \
         stop_requested = CASE WHEN $13 THEN NULL ELSE stop_requested END, \
         stop_requested_by = CASE WHEN $13 THEN NULL ELSE stop_requested_by END, \
         attempts = CASE WHEN $14 THEN 0 ELSE attempts END, \
         run_after = CASE WHEN $14 THEN NULL ELSE run_after END \
         WHERE batchtask_id = $15",
    )
    .bind(next.state.number())
    .bind(&next.description)
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
    .bind(moved)
    .bind(to_new)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if moved {
        record_event(conn, &next, now, Some(current.state), Some(next.state), actor).await?;
    }
    // Read back: the answer is exactly what is stored.
    load_task(conn, id, false).await?.ok_or(StoreError::NotFound)
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
    let mut limited: Vec<&str> = names.iter().filter(|n| n.concurrency.is_some()).map(|n| n.name.as_str()).collect();
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

/// Room left under a name's concurrency limit (`usize::MAX` when unlimited). Call with the
/// name's claim lock held.
async fn room(conn: &mut PgConnection, name: &ClaimName) -> Result<usize, StoreError> {
    let Some(limit) = name.concurrency else { return Ok(usize::MAX) };
    let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batchtask WHERE name = $1 AND state IN (2, 3)")
        .bind(&name.name)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
    Ok((i64::from(limit) - active).max(0) as usize)
}

pub async fn claim(
    conn: &mut PgConnection,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, StoreError> {
    if req.max == 0 || req.names.is_empty() {
        return Ok(Vec::new());
    }
    // Names with nothing due are skipped before any lock, so an idle poll stays a cheap read.
    let names: Vec<String> = req.names.iter().map(|n| n.name.clone()).collect();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT name FROM batchtask WHERE name = ANY($1) AND state = 1 AND (run_after IS NULL OR run_after <= $2)",
    )
    .bind(&names)
    .bind(now)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let wanted: Vec<&ClaimName> = req.names.iter().filter(|n| due.contains(&n.name)).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    lock_limited(conn, &wanted).await?;
    let mut candidates: Vec<i32> = Vec::new();
    for name in wanted {
        let take = room(conn, name).await?.min(req.max);
        if take == 0 {
            continue;
        }
        let ids: Vec<i32> = sqlx::query_scalar(
            "SELECT batchtask_id FROM batchtask WHERE name = $1 AND state = 1 \
             AND (run_after IS NULL OR run_after <= $2) ORDER BY batchtask_id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(&name.name)
        .bind(now)
        .bind(take as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        candidates.extend(ids);
    }
    // Oldest first across names.
    candidates.sort_unstable();
    candidates.truncate(req.max);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    claim_ids(conn, &candidates, req, now).await
}

/// Claims the given `New` rows (locked by the caller) in a few statements for the whole batch.
/// The batch shares one lease token: it is held by one claimer, and a later claim of any of
/// these tasks gets a new token, so fencing per lease still holds.
async fn claim_ids(
    conn: &mut PgConnection,
    ids: &[i32],
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, StoreError> {
    let token = new_token();
    let expires = now + lease_duration(req.lease);
    let to = if req.start { BatchTaskState::Started } else { BatchTaskState::Aquired };
    sqlx::query(
        "UPDATE batchtask SET state = $1, lease_token = $2, lease_expires = $3, lease_node = $4, \
         attempts = attempts + 1, run_after = NULL, stop_requested = NULL, stop_requested_by = NULL, \
         startcount = startcount + CASE WHEN $5 THEN 1 ELSE 0 END, \
         laststarted = CASE WHEN $5 THEN $6 ELSE laststarted END, \
         progresspercent = CASE WHEN $5 THEN 0 ELSE progresspercent END, \
         progressdescription = CASE WHEN $5 THEN NULL ELSE progressdescription END, \
         updated = $6, updatedcount = updatedcount + 1 WHERE state = 1 AND batchtask_id = ANY($7)",
    )
    .bind(to.number())
    .bind(&token)
    .bind(expires)
    .bind(&req.node)
    .bind(req.start)
    .bind(now)
    .bind(ids)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    // The log, one statement per move; per task the claim comes before the start (event ids).
    let moves: &[(BatchTaskState, BatchTaskState, &str)] = if req.start {
        &[(BatchTaskState::New, BatchTaskState::Aquired, "claimed"), (BatchTaskState::Aquired, to, "started")]
    } else {
        &[(BatchTaskState::New, BatchTaskState::Aquired, "claimed")]
    };
    for (from, to, reason) in moves {
        sqlx::query(
            "INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) \
             SELECT batchtask_id, $1, $2, $3, $4, $5, \
             CASE WHEN $6 = 'claimed' THEN 'claimed, attempt ' || attempts ELSE $6 END \
             FROM batchtask WHERE lease_token = $7 AND NOT is_internal AND batchtask_id = ANY($8) ORDER BY batchtask_id",
        )
        .bind(now)
        .bind(from.number())
        .bind(to.number())
        .bind(req.associate_id)
        .bind(&req.node)
        .bind(*reason)
        .bind(&token)
        .bind(ids)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS}, t.attempts FROM batchtask t WHERE t.lease_token = $1 \
         AND t.batchtask_id = ANY($2) ORDER BY t.batchtask_id"
    )))
    .bind(&token)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                task: task_from_row(r)?,
                lease: Lease {
                    token: token.clone(),
                    expires,
                    node: req.node.clone(),
                    attempt: r.try_get(TASK_COLUMN_COUNT)?,
                },
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(backend)
}

/// After inserting task `id`: claims it when it is claimable by `req` and nothing older waits.
pub async fn claim_new(
    conn: &mut PgConnection,
    id: i32,
    name: &str,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, StoreError> {
    let Some(claim_name) = req.names.iter().find(|n| n.name == name) else { return Ok(None) };
    let older: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM batchtask WHERE name = $1 AND state = 1 AND batchtask_id < $2 \
         AND (run_after IS NULL OR run_after <= $3) LIMIT 1",
    )
    .bind(name)
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if older.is_some() {
        return Ok(None);
    }
    lock_limited(conn, &[claim_name]).await?;
    if room(conn, claim_name).await? == 0 {
        return Ok(None);
    }
    let claimed = claim_ids(conn, &[id], req, now).await?;
    Ok(claimed.into_iter().next().map(|c| c.lease))
}

// ---------------------------------------------------------------------------------------------
// Heartbeats and finishes

/// Progress as stored: percent clamped, texts bounded and without U+0000.
fn bounded(p: &Progress) -> Progress {
    Progress {
        percent: p.percent.map(|v| v.clamp(0, 100)),
        description: p
            .description
            .as_deref()
            .map(|d| truncate(&clean(d), crate::domain::task::limits::PROGRESS_DESCRIPTION)),
        file_name: p.file_name.as_deref().map(|f| truncate(&clean(f), crate::domain::task::limits::FILE_NAME)),
    }
}

fn apply_progress(task: &mut Task, p: &Progress) {
    let p = bounded(p);
    if let Some(pc) = p.percent {
        task.progress_percent = pc;
    }
    if p.description.is_some() {
        task.progress_description = p.description;
    }
    if p.file_name.is_some() {
        task.file_name = p.file_name;
    }
}

/// All beats in one fenced UPDATE over `unnest` of their columns (rows locked in id order first).
pub async fn renew(
    conn: &mut PgConnection,
    beats: Vec<Beat>,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<BeatOutcome>, StoreError> {
    let ids: Vec<i32> = beats.iter().map(|b| b.id).collect();
    lock_rows(conn, &ids).await?;
    let expires = now + lease_duration(lease);
    let mut tokens = Vec::with_capacity(beats.len());
    let mut renews = Vec::with_capacity(beats.len());
    let mut percents: Vec<Option<i16>> = Vec::with_capacity(beats.len());
    let mut descriptions: Vec<Option<String>> = Vec::with_capacity(beats.len());
    let mut files: Vec<Option<String>> = Vec::with_capacity(beats.len());
    let mut visible = Vec::with_capacity(beats.len());
    for b in &beats {
        let p = b.progress.as_ref().map(bounded).unwrap_or_default();
        tokens.push(b.token.clone());
        renews.push(b.renew);
        visible.push(!p.is_empty());
        percents.push(p.percent);
        descriptions.push(p.description);
        files.push(p.file_name);
    }
    let rows = sqlx::query(
        "UPDATE batchtask t SET lease_expires = CASE WHEN b.renew THEN $2 ELSE t.lease_expires END, \
         progresspercent = COALESCE(b.percent, t.progresspercent), \
         progressdescription = COALESCE(b.description, t.progressdescription), \
         filename = COALESCE(b.file, t.filename), \
         updated = CASE WHEN b.visible THEN $3 ELSE t.updated END, \
         updatedcount = t.updatedcount + CASE WHEN b.visible THEN 1 ELSE 0 END \
         FROM unnest($1::integer[], $4::text[], $5::boolean[], $6::smallint[], $7::text[], $8::text[], $9::boolean[]) \
         AS b (id, token, renew, percent, description, file, visible) \
         WHERE t.batchtask_id = b.id AND t.lease_token = b.token AND t.lease_expires >= $3 AND t.state IN (2, 3) \
         RETURNING t.batchtask_id, t.state, t.lease_expires, t.stop_requested_by, b.token",
    )
    .bind(&ids)
    .bind(expires)
    .bind(now)
    .bind(&tokens)
    .bind(&renews)
    .bind(&percents)
    .bind(&descriptions)
    .bind(&files)
    .bind(&visible)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut renewed = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        let id: i32 = r.try_get(0).map_err(backend)?;
        let state: i32 = r.try_get(1).map_err(backend)?;
        let expires: DateTime<Utc> = r.try_get(2).map_err(backend)?;
        let by: Option<String> = r.try_get(3).map_err(backend)?;
        let token: String = r.try_get(4).map_err(backend)?;
        // By id and token: a stale beat beside a live one for the same task is still Lost.
        renewed.insert((id, token), (state, expires, by));
    }
    Ok(beats
        .iter()
        .map(|b| match renewed.get(&(b.id, b.token.clone())) {
            Some((state, expires, by)) => BeatOutcome::Renewed {
                expires: *expires,
                state: BatchTaskState::from_number(i64::from(*state)).unwrap_or(BatchTaskState::Unknown),
                stop_requested_by: by.clone(),
            },
            None => BeatOutcome::Lost,
        })
        .collect())
}

/// The retry rules of a task's definition (none when it has no definition row).
async fn retry_policy(conn: &mut PgConnection, name: &str) -> Result<RetryPolicy, StoreError> {
    let found: Option<(i32, i64, i64)> =
        sqlx::query_as("SELECT autorestartcount, backoff_ms, max_backoff_ms FROM batchtaskdefinition WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    Ok(match found {
        Some((restarts, backoff, max)) => RetryPolicy {
            restarts: u32::try_from(restarts).unwrap_or(0),
            backoff: Duration::from_millis(u64::try_from(backoff).unwrap_or(0)),
            max_backoff: Duration::from_millis(u64::try_from(max).unwrap_or(0)),
        },
        None => RetryPolicy { restarts: 0, ..RetryPolicy::default() },
    })
}

/// Ends a failed attempt: back to `New` after a backoff when restarts are left, else `Failed`.
async fn fail_or_retry(
    conn: &mut PgConnection,
    row: &mut RunRow,
    now: DateTime<Utc>,
    retry: bool,
    why: &str,
) -> Result<BatchTaskState, StoreError> {
    let policy = if retry { Some(retry_policy(conn, &row.task.name).await?) } else { None };
    let attempt = u32::try_from(row.attempts).unwrap_or(0);
    row.clear_lease();
    let retry_at =
        crate::domain::definition::end_failed_attempt(&mut row.task, policy, attempt, rand::random::<f64>(), now, why);
    row.run_after = retry_at.map(at);
    Ok(row.task.state)
}

/// The common case in one statement: a `Started` run under a live lease succeeds. Answers
/// `None` when the row does not qualify (the general path then decides).
async fn finish_success_fast(
    conn: &mut PgConnection,
    f: &Finish,
    now: DateTime<Utc>,
) -> Result<Option<FinishResult>, StoreError> {
    let to = match f.outcome {
        FinishOutcome::Succeeded => BatchTaskState::Succeeded,
        FinishOutcome::SucceededManualCleanup => BatchTaskState::SucceededManualCleanup,
        _ => return Ok(None),
    };
    let p = f.progress.as_ref().map(bounded).unwrap_or_default();
    let internal: Option<bool> = sqlx::query_scalar(
        "UPDATE batchtask SET state = $1, result = $2, response = $3, progresspercent = COALESCE($4, 100), \
         progressdescription = COALESCE($5, progressdescription), filename = COALESCE($6, filename), \
         lease_token = NULL, lease_expires = NULL, lease_node = NULL, stop_requested = NULL, \
         stop_requested_by = NULL, run_after = NULL, updated = $7, updatedcount = updatedcount + 1 \
         WHERE batchtask_id = $8 AND lease_token = $9 AND lease_expires >= $7 AND state = 3 RETURNING is_internal",
    )
    .bind(to.number())
    .bind(clean_opt(&f.result))
    .bind(clean_opt(&f.response))
    .bind(p.percent)
    .bind(p.description)
    .bind(p.file_name)
    .bind(now)
    .bind(f.id)
    .bind(&f.token)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    let Some(internal) = internal else { return Ok(None) };
    if !internal {
        let reason = f.actor.reason.clone().unwrap_or_else(|| "succeeded".into());
        let actor = Actor { reason: Some(reason), ..f.actor.clone() };
        insert_event(conn, f.id, now, Some(BatchTaskState::Started), Some(to), &actor).await?;
    }
    Ok(Some(FinishResult::Done(to)))
}

async fn finish_one(conn: &mut PgConnection, f: Finish, now: DateTime<Utc>) -> Result<FinishResult, StoreError> {
    if let Some(done) = finish_success_fast(conn, &f, now).await? {
        return Ok(done);
    }
    let Some(mut row) = load_run_row(conn, f.id, true).await? else { return Ok(FinishResult::Lost) };
    if !row.holds(&f.token, now) {
        return Ok(FinishResult::Lost);
    }
    let before = row.task.state;
    let actor = |reason: String| Actor { reason: Some(reason), ..f.actor.clone() };
    let reason_or = |default: &str| f.actor.reason.clone().unwrap_or_else(|| default.to_owned());
    if let Some(p) = &f.progress {
        apply_progress(&mut row.task, p);
    }
    // Ending a run that was never reported as started starts it first, so StartCount is right.
    let ends = matches!(
        f.outcome,
        FinishOutcome::Succeeded | FinishOutcome::SucceededManualCleanup | FinishOutcome::Failed { .. }
    );
    if ends && row.task.state == BatchTaskState::Aquired {
        row.start(now);
        let a = actor("started".into());
        record_event(conn, &row.task, now, Some(BatchTaskState::Aquired), Some(BatchTaskState::Started), &a).await?;
    }
    match f.outcome {
        FinishOutcome::Start => {
            if row.task.state == BatchTaskState::Aquired {
                row.start(now);
                if let Some(p) = &f.progress {
                    apply_progress(&mut row.task, p);
                }
                let a = actor(reason_or("started"));
                record_event(conn, &row.task, now, Some(before), Some(BatchTaskState::Started), &a).await?;
            }
        }
        FinishOutcome::Succeeded | FinishOutcome::SucceededManualCleanup => {
            let to = if f.outcome == FinishOutcome::Succeeded {
                BatchTaskState::Succeeded
            } else {
                BatchTaskState::SucceededManualCleanup
            };
            if f.progress.as_ref().is_none_or(|p| p.percent.is_none()) {
                row.task.progress_percent = 100;
            }
            row.task.state = to;
            row.task.result = clean_opt(&f.result);
            row.task.response = clean_opt(&f.response);
            row.run_after = None;
            row.clear_lease();
            let a = actor(reason_or("succeeded"));
            record_event(conn, &row.task, now, Some(BatchTaskState::Started), Some(to), &a).await?;
        }
        FinishOutcome::Failed { retry } => {
            let why = clean_opt(&f.result).unwrap_or_else(|| "failed".into());
            row.task.response = clean_opt(&f.response);
            row.task.result = clean_opt(&f.result);
            // A run that fails after a stop was asked is the stop taking effect: no retry, and
            // the Result says who cancelled it.
            let cancelled_by = row.stop_requested_by.clone();
            if let Some(by) = &cancelled_by {
                row.task.result = Some(results::cancelled(by));
            }
            let to = fail_or_retry(conn, &mut row, now, retry && cancelled_by.is_none(), &why).await?;
            let reason = match to {
                BatchTaskState::New => {
                    let restarts = retry_policy(conn, &row.task.name).await?.restarts;
                    let wait = row.run_after.map_or(Duration::ZERO, |r| (r - now).to_std().unwrap_or_default());
                    format!(
                        "{}; retry {} of {} after {}",
                        reason_or(&why),
                        row.attempts,
                        restarts,
                        crate::domain::definition::format_duration(wait)
                    )
                }
                _ => reason_or(&why),
            };
            record_event(conn, &row.task, now, Some(BatchTaskState::Started), Some(to), &actor(reason)).await?;
        }
        FinishOutcome::Release => {
            row.clear_lease();
            row.attempts = (row.attempts - 1).max(0);
            row.task.state = BatchTaskState::New;
            row.run_after = None;
            let a = actor(reason_or("released"));
            record_event(conn, &row.task, now, Some(before), Some(BatchTaskState::New), &a).await?;
        }
    }
    store_run_row(conn, &row, now, true).await?;
    Ok(FinishResult::Done(row.task.state))
}

pub async fn finish(
    conn: &mut PgConnection,
    finishes: Vec<Finish>,
    now: DateTime<Utc>,
) -> Result<Vec<FinishResult>, StoreError> {
    let ids: Vec<i32> = finishes.iter().map(|f| f.id).collect();
    lock_rows(conn, &ids).await?;
    let mut out = Vec::with_capacity(finishes.len());
    for f in finishes {
        out.push(finish_one(conn, f, now).await?);
    }
    Ok(out)
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
    let mut row = load_run_row(conn, id, true).await?.ok_or(StoreError::NotFound)?;
    guard(&row.task)?;
    let from = row.task.state;
    if from.is_finished() || row.task.cancellation == CancellationBehaviour::CannotCancel {
        return Ok(StopResult::Refused(row.task));
    }
    let held =
        from == BatchTaskState::Started && row.lease_token.is_some() && row.lease_expires.is_some_and(|e| e >= now);
    if held {
        let node = row.lease_node.clone().unwrap_or_default();
        if row.stop_requested.is_none() {
            row.stop_requested = Some(now);
            row.stop_requested_by = Some(clean(by));
            store_run_row(conn, &row, now, false).await?;
            let a = Actor { reason: Some(format!("stop requested by {by}")), ..actor.clone() };
            record_event(conn, &row.task, now, Some(from), Some(from), &a).await?;
        }
        return Ok(StopResult::Requested { task: row.task, node });
    }
    row.clear_lease();
    row.run_after = None;
    row.task.state = BatchTaskState::Failed;
    row.task.result = Some(results::cancelled(&clean(by)));
    store_run_row(conn, &row, now, true).await?;
    let a = Actor { reason: row.task.result.clone(), ..actor.clone() };
    record_event(conn, &row.task, now, Some(from), Some(BatchTaskState::Failed), &a).await?;
    // The answer carries the ParameterObject as a read would.
    let task = load_task(conn, id, false).await?.ok_or(StoreError::NotFound)?;
    Ok(StopResult::Failed(task))
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
    let expired: Vec<i32> = sqlx::query_scalar(
        "SELECT batchtask_id FROM batchtask WHERE lease_expires < $1 AND state IN (2, 3) \
         ORDER BY lease_expires LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let stop_deadline = now - lease_duration(stop_grace);
    let ignored_stops: Vec<i32> = sqlx::query_scalar(
        "SELECT batchtask_id FROM batchtask WHERE stop_requested IS NOT NULL AND stop_requested < $1 AND state = 3 \
         LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(stop_deadline)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in expired.into_iter().chain(ignored_stops) {
        if !seen.insert(id) {
            continue;
        }
        let Some(mut row) = load_run_row(conn, id, false).await? else { continue };
        if !row.task.state.is_active() {
            continue;
        }
        let from = row.task.state;
        let holder = row.lease_node.clone().unwrap_or_else(|| "?".into());
        let (to, reason) = if let Some(by) = row.stop_requested_by.clone() {
            row.clear_lease();
            row.task.state = BatchTaskState::Failed;
            row.task.result = Some(results::cancelled(&by));
            (BatchTaskState::Failed, format!("{}; {holder} did not end the run in time", results::cancelled(&by)))
        } else if row.lease_expires.is_some_and(|e| e < now) {
            let why = results::lease_expired(&holder);
            let to = fail_or_retry(conn, &mut row, now, true, &why).await?;
            if to == BatchTaskState::Failed {
                row.task.result = Some(why.clone());
            }
            (to, why)
        } else {
            continue;
        };
        store_run_row(conn, &row, now, true).await?;
        record_event(conn, &row.task, now, Some(from), Some(to), &Actor::node(node, reason)).await?;
        out.push(Rescued { id, to });
    }
    Ok(out)
}

pub async fn release_node(conn: &mut PgConnection, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
    let ids: Vec<i32> = sqlx::query_scalar(
        "SELECT batchtask_id FROM batchtask WHERE lease_node = $1 AND state IN (2, 3) ORDER BY batchtask_id FOR UPDATE",
    )
    .bind(node)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for id in &ids {
        let Some(mut row) = load_run_row(conn, *id, false).await? else { continue };
        let from = row.task.state;
        row.clear_lease();
        row.attempts = (row.attempts - 1).max(0);
        row.run_after = None;
        row.task.state = BatchTaskState::New;
        store_run_row(conn, &row, now, true).await?;
        let a = Actor::node(node, format!("released: node {node} restarted"));
        record_event(conn, &row.task, now, Some(from), Some(BatchTaskState::New), &a).await?;
    }
    Ok(ids)
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
    // nodes: the second node to tick sees the schedule already moved on.
    let next_start: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT next_start FROM batchtaskdefinition WHERE name = $1 FOR UPDATE")
            .bind(&tick.name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?
            .ok_or(StoreError::NotFound)?;
    let due = next_start.unwrap_or(now);
    if due > now {
        return Ok((None, due));
    }
    let active = tick.skip_if_active && {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM batchtask WHERE name = $1 AND state IN (1, 2, 3) LIMIT 1")
                .bind(&tick.name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
        found.is_some()
    };
    let created = if active {
        None
    } else {
        let id = insert_task(conn, &new, now).await?;
        load_task(conn, id, false).await?
    };
    let interval = lease_duration(tick.interval).max(chrono::Duration::microseconds(1));
    // Missed occurrences (the server was down) are not made up for: the next one is in the future.
    let mut next = due + interval;
    if next <= now {
        next = now + interval;
    }
    sqlx::query("UPDATE batchtaskdefinition SET next_start = $1 WHERE name = $2")
        .bind(next)
        .bind(&tick.name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok((created, next))
}

pub async fn set_definition_backoff(
    conn: &mut PgConnection,
    name: &str,
    backoff: Duration,
    max_backoff: Duration,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE batchtaskdefinition SET backoff_ms = $1, max_backoff_ms = $2 WHERE name = $3")
        .bind(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX))
        .bind(i64::try_from(max_backoff.as_millis()).unwrap_or(i64::MAX))
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}
