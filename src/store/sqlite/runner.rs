//! The runner's writes on SQLite: the driver half of `crate::domain::run`. Each function runs
//! inside the writer's transaction: it selects and loads rows, hands them to the rule, and writes
//! the rows and events the rule answers. The single writer makes every check-then-write atomic.
//! Each entry point first cuts `now` to the stored precision (microseconds), so that a lease
//! compares with `now` as it is stored.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::dependency::Ended;
use crate::domain::run::{self, Change, RunEvent, RunPolicy, RunRow};
use crate::domain::task::{LINKTYPE_BATCHTASK, TABLE_BATCHTASK};
use crate::domain::{BatchTaskState, NewTask, Task};
use crate::store::StoreError;
use crate::store::policy_from;
use crate::store::runner::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Claimed, Finish, FinishResult, Lease, LeaseInfo, Rescued,
    ScheduleTick, StopResult, TaskEvent,
};

use super::{TASK_COLUMN_COUNT, TASK_COLUMNS, backend, from_micros, micros, task_from_row};

/// The runner columns after the task's own, in `RunRow` order.
const RUN_COLUMNS: &str = "t.lease_token, t.lease_expires, t.lease_node, t.attempts, t.run_after, t.stop_requested, \
                           t.stop_requested_by, t.failures, t.rescues";

fn run_row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let n = TASK_COLUMN_COUNT;
    let instant = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.map(from_micros));
    Ok(RunRow {
        task: task_from_row(r)?,
        lease_token: r.get(n)?,
        lease_expires: instant(n + 1)?,
        lease_node: r.get(n + 2)?,
        attempts: r.get(n + 3)?,
        run_after: instant(n + 4)?,
        stop_requested: instant(n + 5)?,
        stop_requested_by: r.get(n + 6)?,
        failures: r.get(n + 7)?,
        rescues: r.get(n + 8)?,
    })
}

/// Loads rows with their runner columns, in id order. `with_params`: also the ParameterObject
/// blob (a run needs it; bookkeeping writes do not, and skipping the blob lookup keeps them cheap).
/// The ids are one bound JSON array, so the statement is prepared once for any batch size.
pub(super) fn load_run_rows(conn: &Connection, ids: &[i32], with_params: bool) -> Result<Vec<RunRow>, StoreError> {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        [light_columns(), TASK_COLUMNS.to_owned()].map(|columns| {
            format!(
                "SELECT {columns}, {RUN_COLUMNS} FROM batchtask t \
                 WHERE t.batchtask_id IN (SELECT value FROM json_each(?)) ORDER BY t.batchtask_id"
            )
        })
    });
    let list = serde_json::to_string(ids).expect("a list of integers serialises");
    let mut out = Vec::with_capacity(ids.len());
    conn.prepare_cached(&sql[usize::from(with_params)])
        .and_then(|mut s| s.query_map([list], run_row_from)?.try_for_each(|r| r.map(|r| out.push(r))))
        .map_err(backend)?;
    Ok(out)
}

pub(super) fn load_run_row(conn: &Connection, id: i32, with_params: bool) -> Result<Option<RunRow>, StoreError> {
    Ok(load_run_rows(conn, &[id], with_params)?.pop())
}

/// Writes what a rule decided, and what that does to the tasks waiting for this one.
pub(super) fn write(conn: &Connection, change: &Change) -> Result<(), StoreError> {
    write_batch(conn, std::slice::from_ref(change))
}

/// Writes a batch of decisions (a claim's or a finish's): every row, then all their events in
/// multi-row inserts, then what the ended tasks do to their dependents. Only the ended tasks that
/// have an unsatisfied dependent (one lookup for the batch) go through the cascade: for the
/// others it would change nothing, and it cost two statements per task.
pub(super) fn write_batch(conn: &Connection, changes: &[Change]) -> Result<(), StoreError> {
    for change in changes {
        update_row(conn, change)?;
    }
    write_events(conn, changes.iter().flat_map(|c| &c.events))?;
    let ended: Vec<(i32, Ended, DateTime<Utc>)> = changes
        .iter()
        .filter_map(|c| Ended::of(c.row.task.state).map(|how| (c.row.task.id, how, c.row.task.updated)))
        .collect();
    if ended.is_empty() {
        return Ok(());
    }
    let waited_on = super::deps::waited_on(conn, ended.iter().map(|(id, ..)| *id))?;
    for (id, how, at) in ended {
        if waited_on.contains(&id) {
            cascade_end(conn, id, how, at)?;
        }
    }
    Ok(())
}

/// Task `id` ended as `how`: its dependents are released or failed, and theirs in turn.
pub(super) fn cascade_end(conn: &Connection, id: i32, how: Ended, now: DateTime<Utc>) -> Result<(), StoreError> {
    let mut todo = vec![(id, how)];
    while let Some((id, how)) = todo.pop() {
        for change in super::deps::after_end(conn, id, how, now)? {
            write_row(conn, &change)?;
            todo.push((change.row.task.id, Ended::Failed));
        }
    }
    Ok(())
}

/// Writes every column the runner may change, then the events.
fn write_row(conn: &Connection, change: &Change) -> Result<(), StoreError> {
    update_row(conn, change)?;
    write_events(conn, &change.events)
}

/// Writes every column the runner may change.
fn update_row(conn: &Connection, change: &Change) -> Result<(), StoreError> {
    let (row, t) = (&change.row, &change.row.task);
    conn.prepare_cached(
        "UPDATE batchtask SET state = ?, result = ?, response = ?, startcount = ?, laststarted = ?, \
         progresspercent = ?, progressdescription = ?, filename = ?, lease_token = ?, lease_expires = ?, \
         lease_node = ?, attempts = ?, run_after = ?, stop_requested = ?, stop_requested_by = ?, \
         failures = ?, rescues = ?, updated = ?, updatedcount = ? WHERE batchtask_id = ?",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.state.number(),
            t.result,
            t.response,
            t.start_count,
            t.last_started.map(micros),
            t.progress_percent,
            t.progress_description,
            t.file_name,
            row.lease_token,
            row.lease_expires.map(micros),
            row.lease_node,
            row.attempts,
            row.run_after.map(micros),
            row.stop_requested.map(micros),
            row.stop_requested_by,
            row.failures,
            row.rescues,
            micros(t.updated),
            t.version,
            t.id,
        ])
    })
    .map_err(backend)?;
    Ok(())
}

thread_local! {
    /// Events the writer thread's current job wrote, for the log once its commit is durable.
    static WRITTEN: std::cell::RefCell<Vec<RunEvent>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The events written since the last call (on the writer thread: by the job just run).
pub(super) fn take_written() -> Vec<RunEvent> {
    WRITTEN.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

/// Events per multi-row insert: a batch's events cost a statement per this many rows (7
/// parameters each, far under SQLite's limit) instead of one each.
const EVENTS_PER_INSERT: usize = 32;

/// The event insert of `rows` rows.
fn events_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) VALUES {values}"
    )
}

/// Appends events to the log in the order given (and keeps them for [`run::log_events`] after
/// the commit): whole chunks of [`EVENTS_PER_INSERT`] in one statement each, the rest one by one.
pub(super) fn write_events<'a>(
    conn: &Connection,
    events: impl IntoIterator<Item = &'a RunEvent>,
) -> Result<(), StoreError> {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let [one, chunk] = SQL.get_or_init(|| [events_sql(1), events_sql(EVENTS_PER_INSERT)]);
    let events: Vec<&RunEvent> = events.into_iter().collect();
    if run::logging_events() {
        WRITTEN.with(|w| w.borrow_mut().extend(events.iter().map(|e| (*e).clone())));
    }
    let mut chunks = events.chunks_exact(EVENTS_PER_INSERT);
    if chunks.len() > 0 {
        let mut stmt = conn.prepare_cached(chunk).map_err(backend)?;
        for rows in chunks.by_ref() {
            bind_events(&mut stmt, rows)?;
            stmt.raw_execute().map_err(backend)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(one).map_err(backend)?;
        for e in rest {
            bind_events(&mut stmt, std::slice::from_ref(e))?;
            stmt.raw_execute().map_err(backend)?;
        }
    }
    Ok(())
}

/// Binds `events` to the parameters of an insert of as many rows.
fn bind_events(stmt: &mut rusqlite::CachedStatement<'_>, events: &[&RunEvent]) -> Result<(), StoreError> {
    for (i, e) in events.iter().enumerate() {
        let at = i * 7;
        let bind = |stmt: &mut rusqlite::CachedStatement<'_>, n: usize, v: &dyn rusqlite::ToSql| {
            stmt.raw_bind_parameter(at + n, v).map_err(backend)
        };
        bind(stmt, 1, &e.task_id)?;
        bind(stmt, 2, &micros(e.at))?;
        bind(stmt, 3, &e.from.map(BatchTaskState::number))?;
        bind(stmt, 4, &e.to.map(BatchTaskState::number))?;
        bind(stmt, 5, &e.associate_id)?;
        bind(stmt, 6, &e.node)?;
        bind(stmt, 7, &e.reason)?;
    }
    Ok(())
}

/// The task columns with NULL for the ParameterObject blob.
fn light_columns() -> String {
    let start = TASK_COLUMNS.find("(SELECT b.binarydata").expect("blob column");
    let end = start + TASK_COLUMNS[start..].find("LIMIT 1)").expect("blob column end") + "LIMIT 1)".len();
    format!("{}NULL{}", &TASK_COLUMNS[..start], &TASK_COLUMNS[end..])
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The run rules of the definitions named (a name with no definition row gets
/// [`RunPolicy::undefined`] from the rules).
fn policies<'a>(
    conn: &Connection,
    names: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, RunPolicy>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT autorestartcount, backoff_ms, max_backoff_ms, rescues FROM batchtaskdefinition WHERE name = ?",
        )
        .map_err(backend)?;
    let mut out = HashMap::new();
    for name in names {
        if out.contains_key(name) {
            continue;
        }
        let found = stmt
            .query_row([name], |r| Ok(policy_from(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()
            .map_err(backend)?;
        if let Some(policy) = found {
            out.insert(name.to_owned(), policy);
        }
    }
    Ok(out)
}

/// How many of a name are `Aquired` or `Started` now.
fn active_count(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT COUNT(*) FROM batchtask WHERE name = ? AND state IN (2, 3)")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
        .map_err(backend)
}

/// Room left under a name's concurrency limit and rate (`usize::MAX` when it has neither).
fn room(conn: &Connection, name: &ClaimName, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let active = if name.concurrency.is_some() { active_count(conn, &name.name)? } else { 0 };
    let started = match name.rate {
        None => 0,
        Some(rate) => conn
            .prepare_cached("SELECT COUNT(*) FROM claim_start WHERE name = ? AND at > ?")
            .and_then(|mut s| s.query_row(params![name.name, micros(rate.window_start(now))], |r| r.get(0)))
            .map_err(backend)?,
    };
    Ok(name.claim_room(active, started))
}

/// Records the claims of rate-limited names (one row each) and forgets those out of the window.
fn record_starts(
    conn: &Connection,
    claimed: &[Claimed],
    names: &[ClaimName],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (name, rate, n) in run::starts_to_record(claimed, names) {
        conn.prepare_cached("DELETE FROM claim_start WHERE name = ? AND at <= ?")
            .and_then(|mut s| s.execute(params![name, micros(rate.window_start(now))]))
            .map_err(backend)?;
        let mut insert = conn.prepare_cached("INSERT INTO claim_start (name, at) VALUES (?, ?)").map_err(backend)?;
        for _ in 0..n {
            insert.execute(params![name, micros(now)]).map_err(backend)?;
        }
    }
    Ok(())
}

pub(super) fn ids_of(conn: &Connection, sql: &str, values: impl rusqlite::Params) -> Result<Vec<i32>, StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.query_map(values, |r| r.get::<_, i32>(0))?.collect()).map_err(backend)
}

// ---------------------------------------------------------------------------------------------
// Claims

/// The names of paused definitions (a handful of rows at most).
fn paused_names(conn: &Connection) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached("SELECT name FROM batchtaskdefinition WHERE paused <> 0")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(backend)
}

pub(super) fn claim(conn: &Connection, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let mut candidates: Vec<(i16, i32)> = Vec::new();
    let paused = paused_names(conn)?;
    for name in run::unpaused(&req.names, &paused) {
        let take = room(conn, name, now)?.min(req.max);
        if take == 0 {
            continue;
        }
        // The claim index (name, priority DESC, id) WHERE state = 1 AND waiting_on = 0: rows come
        // out in claim order.
        candidates.extend(
            conn.prepare_cached(
                // -- deps -- `waiting_on = 0`: a task waiting for its dependencies is not due.
                "SELECT priority, batchtask_id FROM batchtask WHERE name = ? AND state = 1 AND waiting_on = 0 \
                 AND (run_after IS NULL OR run_after <= ?) ORDER BY priority DESC, batchtask_id LIMIT ?",
            )
            .and_then(|mut s| {
                s.query_map(params![name.name, micros(now), take as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(backend)?,
        );
    }
    let order = run::claim_order(candidates, req.max);
    let mut claimed = claim_ids(conn, &order, req, now)?;
    run::in_claim_order(&mut claimed, &order);
    record_starts(conn, &claimed, &req.names, now)?;
    Ok(claimed)
}

/// Claims the given `New` rows under one lease token for the batch.
fn claim_ids(
    conn: &Connection,
    ids: &[i32],
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let token = new_token();
    let (mut out, mut changes) = (Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()));
    for row in load_run_rows(conn, ids, true)? {
        if let Some((claimed, change)) = run::claim(row, req, &token, now) {
            out.push(claimed);
            changes.push(change);
        }
    }
    write_batch(conn, &changes)?;
    Ok(out)
}

/// After inserting task `id`: claims it when it is claimable by `req` and nothing of its name
/// goes before it (a higher priority, or the same and older).
pub(super) fn claim_new(
    conn: &Connection,
    id: i32,
    name: &str,
    priority: u8,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let paused = paused_names(conn)?;
    let Some(claim_name) = run::unpaused(&req.names, &paused).into_iter().find(|n| n.name == name) else {
        return Ok(None);
    };
    let older = ids_of(
        conn,
        "SELECT batchtask_id FROM batchtask WHERE name = ?1 AND state = 1 AND waiting_on = 0 \
         AND (priority > ?4 OR (priority = ?4 AND batchtask_id < ?2)) \
         AND (run_after IS NULL OR run_after <= ?3) LIMIT 1",
        params![name, id, micros(now), priority],
    )?;
    if !older.is_empty() || room(conn, claim_name, now)? == 0 {
        return Ok(None);
    }
    let claimed = claim_ids(conn, &[id], req, now)?;
    record_starts(conn, &claimed, std::slice::from_ref(claim_name), now)?;
    Ok(claimed.into_iter().next().map(|c| c.lease))
}

// ---------------------------------------------------------------------------------------------
// Heartbeats and finishes

/// Loads the rows a batch names (a missing one is simply absent).
fn rows_of(conn: &Connection, ids: impl Iterator<Item = i32>) -> Result<Vec<RunRow>, StoreError> {
    let mut ids: Vec<i32> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    load_run_rows(conn, &ids, false)
}

pub(super) fn renew(
    conn: &Connection,
    beats: Vec<Beat>,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<BeatOutcome>, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let rows = rows_of(conn, beats.iter().map(|b| b.id))?;
    let (answers, changes) = run::renew_batch(rows, &beats, lease, now);
    changes.iter().try_for_each(|c| write(conn, c))?;
    Ok(answers)
}

pub(super) fn finish(
    conn: &Connection,
    finishes: Vec<Finish>,
    now: DateTime<Utc>,
) -> Result<Vec<FinishResult>, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let rows = rows_of(conn, finishes.iter().map(|f| f.id))?;
    let policies = policies(conn, rows.iter().map(|r| r.task.name.as_str()))?;
    let before: Vec<(i32, BatchTaskState)> = rows.iter().map(|r| (r.task.id, r.task.state)).collect();
    let (mut answers, changes) = run::finish_batch(rows, &finishes, &policies, now, rand::random);
    let changes = changes
        .into_iter()
        .map(|change| {
            let from = before.iter().find(|b| b.0 == change.row.task.id).map_or(BatchTaskState::New, |b| b.1);
            super::deps::fail_blocked_rerun(conn, from, change, now)
        })
        .collect::<Result<Vec<_>, _>>()?;
    run::answer_as_written(&mut answers, &finishes, &changes);
    write_batch(conn, &changes)?;
    Ok(answers)
}

// ---------------------------------------------------------------------------------------------
// Stops, rescue, release

pub(super) fn request_stop(
    conn: &Connection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    by: &str,
    guard: crate::store::DeleteGuard,
) -> Result<StopResult, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let row = load_run_row(conn, id, true)?.ok_or(StoreError::NotFound)?;
    guard(&row.task)?;
    let (answer, change) = run::stop(row, by, actor, now);
    if let Some(change) = change {
        write(conn, &change)?;
    }
    Ok(answer)
}

pub(super) fn lease_info(conn: &Connection, id: i32) -> rusqlite::Result<Option<LeaseInfo>> {
    conn.prepare_cached(
        "SELECT state, lease_token, lease_expires, lease_node, stop_requested_by FROM batchtask WHERE batchtask_id = ?",
    )?
    .query_row([id], |r| {
        Ok(LeaseInfo {
            state: BatchTaskState::from_number(r.get(0)?).unwrap_or(BatchTaskState::Unknown),
            token: r.get(1)?,
            expires: r.get::<_, Option<i64>>(2)?.map(from_micros),
            node: r.get(3)?,
            stop_requested_by: r.get(4)?,
        })
    })
    .optional()
}

pub(super) fn pending_stops(conn: &Connection, node: &str) -> rusqlite::Result<Vec<(i32, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT batchtask_id, stop_requested_by FROM batchtask WHERE lease_node = ? \
         AND stop_requested IS NOT NULL AND state = 3",
    )?;
    let rows = stmt.query_map([node], |r| Ok((r.get(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default())))?;
    rows.collect()
}

pub(super) fn rescue(
    conn: &Connection,
    node: &str,
    now: DateTime<Utc>,
    limit: usize,
    stop_grace: Duration,
) -> Result<Vec<Rescued>, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let now_us = micros(now);
    let mut ids = ids_of(
        conn,
        "SELECT batchtask_id FROM batchtask WHERE lease_expires < ? AND state IN (2, 3) ORDER BY lease_expires LIMIT ?",
        params![now_us, limit as i64],
    )?;
    ids.extend(ids_of(
        conn,
        "SELECT batchtask_id FROM batchtask WHERE stop_requested IS NOT NULL AND stop_requested < ? AND state = 3 LIMIT ?",
        params![micros(now - chrono::Duration::from_std(stop_grace).unwrap_or_default()), limit as i64],
    )?);
    ids.sort_unstable();
    ids.dedup();
    let rows = load_run_rows(conn, &ids, false)?;
    let policies = policies(conn, rows.iter().map(|r| r.task.name.as_str()))?;
    let mut out = Vec::new();
    for row in rows {
        let policy = RunPolicy::of(&policies, &row.task);
        let from = row.task.state;
        if let Some((rescued, change)) = run::rescue(row, node, &policy, now, stop_grace) {
            // A rescue never fails for a dependency: the task it would make New ends Failed instead.
            let change = super::deps::fail_blocked_rerun(conn, from, change, now)?;
            write(conn, &change)?;
            out.push(Rescued { to: change.row.task.state, ..rescued });
        }
    }
    Ok(out)
}

pub(super) fn release_node(conn: &Connection, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let ids = ids_of(conn, "SELECT batchtask_id FROM batchtask WHERE lease_node = ? AND state IN (2, 3)", [node])?;
    let mut released = Vec::with_capacity(ids.len());
    for row in load_run_rows(conn, &ids, false)? {
        let from = row.task.state;
        if let Some(change) = run::release(row, node, now) {
            let change = super::deps::fail_blocked_rerun(conn, from, change, now)?;
            write(conn, &change)?;
            released.push(change.row.task.id);
        }
    }
    Ok(released)
}

pub(super) fn task_events(conn: &Connection, id: i32) -> rusqlite::Result<Vec<TaskEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.batchtaskevent_id, e.batchtask_id, e.at, e.from_state, e.to_state, e.associate_id, a.name, e.node, \
         e.reason FROM batchtaskevent e LEFT JOIN associate a ON a.associate_id = e.associate_id \
         WHERE e.batchtask_id = ? ORDER BY e.batchtaskevent_id",
    )?;
    let rows = stmt.query_map([id], |r| {
        let state = |v: Option<i64>| v.and_then(BatchTaskState::from_number);
        Ok(TaskEvent {
            id: r.get(0)?,
            task_id: r.get(1)?,
            at: from_micros(r.get(2)?),
            from: state(r.get(3)?),
            to: state(r.get(4)?),
            associate_id: r.get(5)?,
            associate_name: r.get(6)?,
            node: r.get(7)?,
            reason: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// Deletes a task row with its blobs and links (and, when `events`, its event log).
pub(super) fn delete_rows(conn: &Connection, id: i32, events: bool) -> Result<(), StoreError> {
    // Blobs go with their links (ON DELETE CASCADE runs from blob to link, so delete blobs).
    conn.prepare_cached(
        "DELETE FROM binaryobject WHERE binaryobject_id IN (SELECT binaryobject_id FROM binaryobjectlink \
         WHERE ownertable = ? AND ownerrecord = ? AND linktype = ?)",
    )
    .and_then(|mut s| s.execute(params![TABLE_BATCHTASK, id, LINKTYPE_BATCHTASK]))
    .map_err(backend)?;
    conn.prepare_cached("DELETE FROM binaryobjectlink WHERE ownertable = ? AND ownerrecord = ?")
        .and_then(|mut s| s.execute(params![TABLE_BATCHTASK, id]))
        .map_err(backend)?;
    super::deps::delete_edges(conn, id)?;
    conn.prepare_cached("DELETE FROM batchtask WHERE batchtask_id = ?")
        .and_then(|mut s| s.execute([id]))
        .map_err(backend)?;
    if events {
        conn.prepare_cached("DELETE FROM batchtaskevent WHERE batchtask_id = ?")
            .and_then(|mut s| s.execute([id]))
            .map_err(backend)?;
    }
    Ok(())
}

pub(super) fn purge_finished(
    conn: &Connection,
    state: BatchTaskState,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    if !state.is_finished() {
        return Ok(0);
    }
    // `state BETWEEN 4 AND 6` restates the partial index's predicate (migration 0012), so that
    // SQLite may use `batchtask_finished`.
    let ids: Vec<i32> = conn
        .prepare_cached(
            "SELECT batchtask_id FROM batchtask WHERE state = ? AND state BETWEEN 4 AND 6 AND updated < ? \
             ORDER BY updated LIMIT ?",
        )
        .and_then(|mut s| {
            s.query_map(params![state.number(), micros(before), limit as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend)?;
    for id in &ids {
        delete_rows(conn, *id, true)?;
    }
    Ok(ids.len())
}

pub(super) fn purge_deleted_events(
    conn: &Connection,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    let ids: Vec<i32> = conn
        .prepare_cached("SELECT batchtask_id FROM batchtaskevent WHERE to_state IS NULL AND at < ? LIMIT ?")
        .and_then(|mut s| {
            s.query_map(params![micros(before), limit as i64], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend)?;
    for id in &ids {
        // A task id is never reused (AUTOINCREMENT), so the whole log of a deleted id can go.
        conn.prepare_cached("DELETE FROM batchtaskevent WHERE batchtask_id = ?")
            .and_then(|mut s| s.execute([id]))
            .map_err(backend)?;
    }
    Ok(ids.len())
}

pub(super) fn schedule_tick(
    conn: &Connection,
    tick: &ScheduleTick,
    now: DateTime<Utc>,
    new: NewTask,
) -> Result<(Option<Task>, DateTime<Utc>), StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let (next_start, paused): (Option<i64>, bool) = conn
        .prepare_cached("SELECT next_start, paused <> 0 FROM batchtaskdefinition WHERE name = ?")
        .and_then(|mut s| s.query_row([&tick.name], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
    let Some(due) = run::schedule_due(next_start.map(from_micros), &tick.schedule, paused, tick.catch_up, now) else {
        return Ok((None, next_start.map_or(now, from_micros)));
    };
    let next = due.next;
    // Paused, or (when asked) a task of the name still waiting or running: no task this time.
    let skipped = !due.create
        || tick.skip_if_active
            && !ids_of(
                conn,
                "SELECT batchtask_id FROM batchtask WHERE name = ? AND state IN (1, 2, 3) LIMIT 1",
                [&tick.name],
            )?
            .is_empty();
    let created = if skipped {
        None
    } else {
        match super::insert_task(conn, &new, now) {
            Ok(id) => super::load_task(conn, id).map_err(backend)?,
            // A live task holds the unique key: this occurrence creates nothing.
            Err(StoreError::Rejected(crate::domain::DomainError::UniqueHeld { .. })) => None,
            Err(e) => return Err(e),
        }
    };
    conn.prepare_cached("UPDATE batchtaskdefinition SET next_start = ? WHERE name = ?")
        .and_then(|mut s| s.execute(params![micros(next), tick.name]))
        .map_err(backend)?;
    Ok((created, from_micros(micros(next))))
}

pub(super) fn set_run_policy(conn: &Connection, name: &str, policy: &RunPolicy) -> Result<(), StoreError> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "UPDATE batchtaskdefinition SET backoff_ms = ?, max_backoff_ms = ?, rescues = ? WHERE name = ?",
    )
    .and_then(|mut s| s.execute(params![ms(policy.retry.backoff), ms(policy.retry.max_backoff), policy.rescues, name]))
    .map_err(backend)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scheduling

pub(super) fn set_paused(conn: &Connection, name: &str, paused: bool) -> Result<bool, StoreError> {
    let was: bool = conn
        .prepare_cached("SELECT paused <> 0 FROM batchtaskdefinition WHERE name = ?")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
    if was == paused {
        return Ok(false);
    }
    conn.prepare_cached("UPDATE batchtaskdefinition SET paused = ? WHERE name = ?")
        .and_then(|mut s| s.execute(params![paused, name]))
        .map_err(backend)?;
    Ok(true)
}

pub(super) fn definition_statuses(
    conn: &Connection,
    owner: Option<i32>,
) -> rusqlite::Result<Vec<crate::store::DefinitionStatus>> {
    let rows: Vec<(String, bool, Option<DateTime<Utc>>)> = conn
        .prepare_cached("SELECT name, paused <> 0, next_start FROM batchtaskdefinition ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?.map(from_micros))))?
        .collect::<rusqlite::Result<_>>()?;
    // Two statements, so each has its index: (name, state) covers the count of every task,
    // (associate_id, state) finds a user's own.
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    let counts: Vec<(String, i64, i64)> = match owner {
        None => conn
            .prepare_cached(
                "SELECT name, state, COUNT(*) FROM batchtask WHERE state IN (1, 2, 3, 5) GROUP BY name, state",
            )?
            .query_map([], row)?
            .collect::<rusqlite::Result<_>>()?,
        Some(owner) => conn
            .prepare_cached(
                "SELECT name, state, COUNT(*) FROM batchtask WHERE associate_id = ? AND state IN (1, 2, 3, 5) \
                 AND is_system = 0 GROUP BY name, state",
            )?
            .query_map([owner], row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    Ok(crate::store::definition_statuses(rows, counts))
}

pub(super) fn retry_task(
    conn: &Connection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    guard: crate::store::DeleteGuard,
) -> Result<Task, StoreError> {
    let now = crate::domain::time::truncate_micros(now);
    let row = load_run_row(conn, id, false)?.ok_or(StoreError::NotFound)?;
    guard(&row.task)?;
    let from = row.task.state;
    let change = run::retry(row, actor, now)?;
    if crate::domain::dependency::must_check(from, change.row.task.state) {
        super::deps::check_rerun(conn, id)?;
    }
    check_unique_free(conn, id)?;
    write(conn, &change)?;
    super::load_task(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)
}

// ---------------------------------------------------------------------------------------------
// Unique tasks: the index `batchtask_unique_live` decides; these name the holder.

/// The live task holding unique `key`.
pub(super) fn unique_holder(conn: &Connection, key: &str) -> Result<Option<i32>, StoreError> {
    conn.prepare_cached("SELECT batchtask_id FROM batchtask WHERE unique_key = ? AND state BETWEEN 1 AND 3 LIMIT 1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(backend)
}

/// Refuses to bring task `id` back to a live state while another live task holds its key.
pub(super) fn check_unique_free(conn: &Connection, id: i32) -> Result<(), StoreError> {
    let holder: Option<i32> = conn
        .prepare_cached(
            "SELECT o.batchtask_id FROM batchtask t JOIN batchtask o ON o.unique_key = t.unique_key \
             AND o.state BETWEEN 1 AND 3 AND o.batchtask_id <> t.batchtask_id WHERE t.batchtask_id = ? LIMIT 1",
        )
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(backend)?;
    match holder {
        Some(h) => Err(crate::domain::DomainError::UniqueHeld { holder: Some(h) }.into()),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys

pub(super) fn create_task_once(
    conn: &Connection,
    new: &NewTask,
    now: DateTime<Utc>,
    key: &crate::domain::idempotency::KeyedCreate,
) -> Result<crate::store::CreatedOnce, StoreError> {
    use crate::domain::idempotency::{KeyUse, StoredKey, decide};
    let now = crate::domain::time::truncate_micros(now);
    let stored = conn
        .prepare_cached("SELECT request_hash, task_id, created FROM idempotency_key WHERE associate_id = ? AND key = ?")
        .and_then(|mut s| {
            s.query_row(params![key.associate_id, key.key], |r| {
                Ok(StoredKey { request_hash: r.get(0)?, task_id: r.get(1)?, created: from_micros(r.get(2)?) })
            })
            .optional()
        })
        .map_err(backend)?;
    if let KeyUse::Replay(id) = decide(stored.as_ref(), &key.request_hash, now)? {
        return Ok(crate::store::CreatedOnce::Replayed(id));
    }
    let id = super::insert_task(conn, new, now)?;
    conn.prepare_cached(
        "INSERT INTO idempotency_key (associate_id, key, request_hash, task_id, created) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (associate_id, key) DO UPDATE SET request_hash = excluded.request_hash, \
         task_id = excluded.task_id, created = excluded.created",
    )
    .and_then(|mut s| s.execute(params![key.associate_id, key.key, key.request_hash, id, micros(now)]))
    .map_err(backend)?;
    let task = super::load_task(conn, id).map_err(backend)?.ok_or(StoreError::NotFound)?;
    Ok(crate::store::CreatedOnce::Created(Box::new(task)))
}

pub(super) fn purge_idempotency_keys(
    conn: &Connection,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<usize, StoreError> {
    conn.prepare_cached(
        "DELETE FROM idempotency_key WHERE rowid IN (SELECT rowid FROM idempotency_key WHERE created < ? LIMIT ?)",
    )
    .and_then(|mut s| s.execute(params![micros(before), limit as i64]))
    .map_err(backend)
}
