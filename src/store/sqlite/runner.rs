//! The runner's writes on SQLite. Free functions run inside the writer's transaction:
//! each loads the row with its lease columns, changes it in Rust, writes it back with one fixed
//! UPDATE and logs the state change. The single writer makes every check-then-write atomic.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::definition::{RetryPolicy, results};
use crate::domain::task::{LINKTYPE_BATCHTASK, TABLE_BATCHTASK};
use crate::domain::{BatchTaskState, CancellationBehaviour, NewTask, Task};
use crate::store::StoreError;
use crate::store::runner::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Claimed, Finish, FinishOutcome, FinishResult, Lease, LeaseInfo,
    Progress, Rescued, ScheduleTick, StopResult, TaskEvent,
};

use super::{TASK_COLUMN_COUNT, TASK_COLUMNS, backend, from_micros, micros, task_from_row};

/// A task row with its runner columns, instants in microseconds as the SQLite store keeps them.
pub(super) type RunRow = crate::store::runner::RunRow<i64>;

/// Loads a row with its runner columns. `with_params`: also the ParameterObject blob (a run needs
/// it; bookkeeping writes do not, and skipping the blob lookup keeps them cheap).
pub(super) fn load_run_row(conn: &Connection, id: i32, with_params: bool) -> Result<Option<RunRow>, StoreError> {
    let columns = if with_params { TASK_COLUMNS.to_owned() } else { light_columns() };
    let sql = format!(
        "SELECT {columns}, t.lease_token, t.lease_expires, t.lease_node, t.attempts, t.run_after, \
         t.stop_requested, t.stop_requested_by FROM batchtask t WHERE t.batchtask_id = ?"
    );
    let n = TASK_COLUMN_COUNT;
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row([id], |r| {
                Ok(RunRow {
                    task: task_from_row(r)?,
                    lease_token: r.get(n)?,
                    lease_expires: r.get(n + 1)?,
                    lease_node: r.get(n + 2)?,
                    attempts: r.get(n + 3)?,
                    run_after: r.get(n + 4)?,
                    stop_requested: r.get(n + 5)?,
                    stop_requested_by: r.get(n + 6)?,
                })
            })
            .optional()
        })
        .map_err(backend)
}

/// Writes every column the runner may change. Bumps the version (ETag) when `visible` (a change
/// a client can see); a bare lease renewal does not.
fn store_run_row(conn: &Connection, row: &RunRow, now: DateTime<Utc>, visible: bool) -> Result<(), StoreError> {
    let t = &row.task;
    conn.prepare_cached(
        "UPDATE batchtask SET state = ?, result = ?, response = ?, startcount = ?, laststarted = ?, \
         progresspercent = ?, progressdescription = ?, filename = ?, lease_token = ?, lease_expires = ?, \
         lease_node = ?, attempts = ?, run_after = ?, stop_requested = ?, stop_requested_by = ?, \
         updated = CASE WHEN ? THEN ? ELSE updated END, \
         updatedcount = updatedcount + ? WHERE batchtask_id = ?",
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
            row.lease_expires,
            row.lease_node,
            row.attempts,
            row.run_after,
            row.stop_requested,
            row.stop_requested_by,
            visible,
            micros(now),
            i64::from(visible),
            t.id,
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// Logs a state change (or a stop request) of a non-internal task.
pub(super) fn record_event(
    conn: &Connection,
    task: &Task,
    at: DateTime<Utc>,
    from: Option<BatchTaskState>,
    to: Option<BatchTaskState>,
    actor: &Actor,
) -> Result<(), StoreError> {
    if task.is_internal {
        return Ok(());
    }
    insert_event(conn, task.id, at, from, to, actor)
}

pub(super) fn insert_event(
    conn: &Connection,
    task_id: i32,
    at: DateTime<Utc>,
    from: Option<BatchTaskState>,
    to: Option<BatchTaskState>,
    actor: &Actor,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            task_id,
            micros(at),
            from.map(BatchTaskState::number),
            to.map(BatchTaskState::number),
            actor.associate_id,
            actor.node,
            actor.reason.as_deref().map(|r| truncate(r, 4096)),
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// The task columns with NULL for the ParameterObject blob.
fn light_columns() -> String {
    static LIGHT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIGHT
        .get_or_init(|| {
            let start = TASK_COLUMNS.find("(SELECT b.binarydata").expect("blob column");
            let end = start + TASK_COLUMNS[start..].find("LIMIT 1)").expect("blob column end") + "LIMIT 1)".len();
            format!("{}NULL{}", &TASK_COLUMNS[..start], &TASK_COLUMNS[end..])
        })
        .clone()
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars { s.to_owned() } else { s.chars().take(max_chars).collect() }
}

fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn lease_of(row: &RunRow) -> Lease {
    Lease {
        token: row.lease_token.clone().unwrap_or_default(),
        expires: from_micros(row.lease_expires.unwrap_or_default()),
        node: row.lease_node.clone().unwrap_or_default(),
        attempt: row.attempts,
    }
}

fn lease_micros(lease: Duration) -> i64 {
    i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 4)
}

/// Room left under a name's concurrency limit (`usize::MAX` when unlimited).
fn room(conn: &Connection, name: &ClaimName) -> Result<usize, StoreError> {
    let Some(limit) = name.concurrency else { return Ok(usize::MAX) };
    let active: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM batchtask WHERE name = ? AND state IN (2, 3)")
        .and_then(|mut s| s.query_row([&name.name], |r| r.get(0)))
        .map_err(backend)?;
    Ok((i64::from(limit) - active).max(0) as usize)
}

/// Moves one `New` row to `Aquired` (and `Started`) under a new lease.
fn claim_row(
    conn: &Connection,
    mut row: RunRow,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Claimed, StoreError> {
    let now_us = micros(now);
    row.lease_token = Some(new_token());
    row.lease_expires = Some(now_us + lease_micros(req.lease));
    row.lease_node = Some(req.node.clone());
    row.attempts += 1;
    row.run_after = None;
    row.stop_requested = None;
    row.stop_requested_by = None;
    row.task.state = BatchTaskState::Aquired;
    let actor = Actor { associate_id: req.associate_id, node: Some(req.node.clone()), reason: None };
    let reason = |r: String| Actor { reason: Some(r), ..actor.clone() };
    record_event(
        conn,
        &row.task,
        now,
        Some(BatchTaskState::New),
        Some(BatchTaskState::Aquired),
        &reason(format!("claimed, attempt {}", row.attempts)),
    )?;
    if req.start {
        row.start(now);
        record_event(
            conn,
            &row.task,
            now,
            Some(BatchTaskState::Aquired),
            Some(BatchTaskState::Started),
            &reason("started".into()),
        )?;
    }
    store_run_row(conn, &row, now, true)?;
    row.task.version += 1;
    row.task.updated = now;
    Ok(Claimed { lease: lease_of(&row), task: row.task })
}

pub(super) fn claim(conn: &Connection, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>, StoreError> {
    let now_us = micros(now);
    let mut candidates: Vec<i32> = Vec::new();
    for name in &req.names {
        let take = room(conn, name)?.min(req.max);
        if take == 0 {
            continue;
        }
        // (name, state) index: rows come out in id order, no sort.
        let mut stmt = conn
            .prepare_cached(
                "SELECT batchtask_id FROM batchtask WHERE name = ? AND state = 1 \
                 AND (run_after IS NULL OR run_after <= ?) ORDER BY batchtask_id LIMIT ?",
            )
            .map_err(backend)?;
        let ids = stmt
            .query_map(params![name.name, now_us, take as i64], |r| r.get::<_, i32>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(backend)?;
        candidates.extend(ids);
    }
    // Oldest first across names.
    candidates.sort_unstable();
    candidates.truncate(req.max);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    claim_ids(conn, &candidates, req, now)
}

/// Claims the given `New` rows in a few statements for the whole batch. The batch shares one
/// lease token: it is held by one claimer, and a later claim of any of these tasks gets a new
/// token, so fencing per lease still holds.
fn claim_ids(
    conn: &Connection,
    ids: &[i32],
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Claimed>, StoreError> {
    let now_us = micros(now);
    let token = new_token();
    let expires = now_us + lease_micros(req.lease);
    let list = vec!["?"; ids.len()].join(", ");
    let id_values = ids.iter().map(|i| rusqlite::types::Value::Integer(i64::from(*i)));
    let to = if req.start { BatchTaskState::Started } else { BatchTaskState::Aquired };
    let mut values: Vec<rusqlite::types::Value> = vec![
        i64::from(to.number()).into(),
        token.clone().into(),
        expires.into(),
        req.node.clone().into(),
        i64::from(req.start).into(),
        i64::from(req.start).into(),
        now_us.into(),
        i64::from(req.start).into(),
        i64::from(req.start).into(),
        now_us.into(),
    ];
    values.extend(id_values.clone());
    conn.prepare(&format!(
        "UPDATE batchtask SET state = ?, lease_token = ?, lease_expires = ?, lease_node = ?, attempts = attempts + 1, \
         run_after = NULL, stop_requested = NULL, stop_requested_by = NULL, startcount = startcount + ?, \
         laststarted = CASE WHEN ? THEN ? ELSE laststarted END, \
         progresspercent = CASE WHEN ? THEN 0 ELSE progresspercent END, \
         progressdescription = CASE WHEN ? THEN NULL ELSE progressdescription END, \
         updated = ?, updatedcount = updatedcount + 1 WHERE state = 1 AND batchtask_id IN ({list})"
    ))
    .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
    .map_err(backend)?;
    // The log, one statement per move; per task the claim comes before the start (event ids).
    let log = |from: BatchTaskState, to: BatchTaskState, reason: &str| -> Result<(), StoreError> {
        let mut values: Vec<rusqlite::types::Value> = vec![
            now_us.into(),
            i64::from(from.number()).into(),
            i64::from(to.number()).into(),
            req.associate_id.map(i64::from).into(),
            req.node.clone().into(),
            reason.to_owned().into(),
            token.clone().into(),
        ];
        values.extend(id_values.clone());
        conn.prepare(&format!(
            "INSERT INTO batchtaskevent (batchtask_id, at, from_state, to_state, associate_id, node, reason) \
             SELECT batchtask_id, ?, ?, ?, ?, ?, CASE WHEN ?6 = 'claimed' THEN 'claimed, attempt ' || attempts ELSE ?6 END \
             FROM batchtask WHERE lease_token = ? AND is_internal = 0 AND batchtask_id IN ({list}) ORDER BY batchtask_id"
        ))
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
        .map_err(backend)?;
        Ok(())
    };
    log(BatchTaskState::New, BatchTaskState::Aquired, "claimed")?;
    if req.start {
        log(BatchTaskState::Aquired, BatchTaskState::Started, "started")?;
    }
    let mut values: Vec<rusqlite::types::Value> = vec![token.clone().into()];
    values.extend(id_values);
    let n = TASK_COLUMN_COUNT;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {TASK_COLUMNS}, t.attempts FROM batchtask t WHERE t.lease_token = ? \
             AND t.batchtask_id IN ({list}) ORDER BY t.batchtask_id"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values), |r| Ok((task_from_row(r)?, r.get::<_, i32>(n)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(backend)?;
    Ok(rows
        .into_iter()
        .map(|(task, attempt)| Claimed {
            task,
            lease: Lease { token: token.clone(), expires: from_micros(expires), node: req.node.clone(), attempt },
        })
        .collect())
}

/// After inserting task `id`: claims it when it is claimable by `req` and nothing older waits.
pub(super) fn claim_new(
    conn: &Connection,
    id: i32,
    name: &str,
    req: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, StoreError> {
    let Some(claim_name) = req.names.iter().find(|n| n.name == name) else { return Ok(None) };
    let older: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM batchtask WHERE name = ? AND state = 1 AND batchtask_id < ? \
             AND (run_after IS NULL OR run_after <= ?) LIMIT 1",
        )
        .and_then(|mut s| s.query_row(params![name, id, micros(now)], |r| r.get(0)).optional())
        .map_err(backend)?;
    if older.is_some() || room(conn, claim_name)? == 0 {
        return Ok(None);
    }
    let Some(row) = load_run_row(conn, id, true)? else { return Ok(None) };
    Ok(Some(claim_row(conn, row, req, now)?.lease))
}

fn apply_progress(task: &mut Task, p: &Progress) {
    if let Some(pc) = p.percent {
        task.progress_percent = pc.clamp(0, 100);
    }
    if let Some(d) = &p.description {
        task.progress_description = Some(truncate(d, crate::domain::task::limits::PROGRESS_DESCRIPTION));
    }
    if let Some(f) = &p.file_name {
        task.file_name = Some(truncate(f, crate::domain::task::limits::FILE_NAME));
    }
}

pub(super) fn renew(
    conn: &Connection,
    beats: Vec<Beat>,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<BeatOutcome>, StoreError> {
    let now_us = micros(now);
    let mut out = Vec::with_capacity(beats.len());
    for beat in beats {
        let Some(mut row) = load_run_row(conn, beat.id, false)? else {
            out.push(BeatOutcome::Lost);
            continue;
        };
        if !row.holds(&beat.token, now_us) {
            out.push(BeatOutcome::Lost);
            continue;
        }
        if beat.renew {
            row.lease_expires = Some(now_us + lease_micros(lease));
        }
        let visible = match &beat.progress {
            Some(p) if !p.is_empty() => {
                apply_progress(&mut row.task, p);
                true
            }
            _ => false,
        };
        if beat.renew || visible {
            store_run_row(conn, &row, now, visible)?;
        }
        out.push(BeatOutcome::Renewed {
            expires: from_micros(row.lease_expires.unwrap_or(now_us)),
            state: row.task.state,
            stop_requested_by: row.stop_requested_by.clone(),
        });
    }
    Ok(out)
}

/// The retry rules of a task's definition (none when it has no definition row).
fn retry_policy(conn: &Connection, name: &str) -> Result<RetryPolicy, StoreError> {
    let found = conn
        .prepare_cached("SELECT autorestartcount, backoff_ms, max_backoff_ms FROM batchtaskdefinition WHERE name = ?")
        .and_then(|mut s| {
            s.query_row([name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).optional()
        })
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
/// Answers the state it moved to.
fn fail_or_retry(
    conn: &Connection,
    row: &mut RunRow,
    now: DateTime<Utc>,
    retry: bool,
    why: &str,
) -> Result<BatchTaskState, StoreError> {
    let policy = if retry { Some(retry_policy(conn, &row.task.name)?) } else { None };
    let attempt = u32::try_from(row.attempts).unwrap_or(0);
    row.clear_lease();
    let retry_at =
        crate::domain::definition::end_failed_attempt(&mut row.task, policy, attempt, rand::random::<f64>(), now, why);
    row.run_after = retry_at.map(micros);
    Ok(row.task.state)
}

/// The common case in one statement: a `Started` run under a live lease succeeds. Answers
/// `None` when the row does not qualify (the general path then decides).
fn finish_success_fast(conn: &Connection, f: &Finish, now: DateTime<Utc>) -> Result<Option<FinishResult>, StoreError> {
    let to = match f.outcome {
        FinishOutcome::Succeeded => BatchTaskState::Succeeded,
        FinishOutcome::SucceededManualCleanup => BatchTaskState::SucceededManualCleanup,
        _ => return Ok(None),
    };
    let now_us = micros(now);
    let p = f.progress.clone().unwrap_or_default();
    let internal: Option<bool> = conn
        .prepare_cached(
            "UPDATE batchtask SET state = ?, result = ?, response = ?, progresspercent = COALESCE(?, 100), \
             progressdescription = COALESCE(?, progressdescription), filename = COALESCE(?, filename), \
             lease_token = NULL, lease_expires = NULL, lease_node = NULL, stop_requested = NULL, \
             stop_requested_by = NULL, run_after = NULL, updated = ?, updatedcount = updatedcount + 1 \
             WHERE batchtask_id = ? AND lease_token = ? AND lease_expires >= ? AND state = 3 RETURNING is_internal",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    to.number(),
                    f.result,
                    f.response,
                    p.percent.map(|v| v.clamp(0, 100)),
                    p.description.as_deref().map(|d| truncate(d, crate::domain::task::limits::PROGRESS_DESCRIPTION)),
                    p.file_name.as_deref().map(|d| truncate(d, crate::domain::task::limits::FILE_NAME)),
                    now_us,
                    f.id,
                    f.token,
                    now_us,
                ],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(backend)?;
    let Some(internal) = internal else { return Ok(None) };
    if !internal {
        let reason = f.actor.reason.clone().unwrap_or_else(|| "succeeded".into());
        let actor = Actor { reason: Some(reason), ..f.actor.clone() };
        insert_event(conn, f.id, now, Some(BatchTaskState::Started), Some(to), &actor)?;
    }
    Ok(Some(FinishResult::Done(to)))
}

fn finish_one(conn: &Connection, f: Finish, now: DateTime<Utc>) -> Result<FinishResult, StoreError> {
    if let Some(done) = finish_success_fast(conn, &f, now)? {
        return Ok(done);
    }
    let now_us = micros(now);
    let Some(mut row) = load_run_row(conn, f.id, false)? else { return Ok(FinishResult::Lost) };
    if !row.holds(&f.token, now_us) {
        return Ok(FinishResult::Lost);
    }
    let before = row.task.state;
    let event = |conn: &Connection, task: &Task, from, to, reason: String| {
        let actor = Actor { reason: Some(reason), ..f.actor.clone() };
        record_event(conn, task, now, Some(from), Some(to), &actor)
    };
    // Ending a run that was never reported as started starts it first, so StartCount is right.
    let implicit_start = |conn: &Connection, row: &mut RunRow| -> Result<(), StoreError> {
        if row.task.state == BatchTaskState::Aquired {
            row.start(now);
            event(conn, &row.task, BatchTaskState::Aquired, BatchTaskState::Started, "started".into())?;
        }
        Ok(())
    };
    if let Some(p) = &f.progress {
        apply_progress(&mut row.task, p);
    }
    let reason_or = |default: &str| f.actor.reason.clone().unwrap_or_else(|| default.to_owned());
    match f.outcome {
        FinishOutcome::Start => {
            if row.task.state == BatchTaskState::Aquired {
                row.start(now);
                if let Some(p) = &f.progress {
                    apply_progress(&mut row.task, p);
                }
                event(conn, &row.task, before, BatchTaskState::Started, reason_or("started"))?;
            }
        }
        FinishOutcome::Succeeded | FinishOutcome::SucceededManualCleanup => {
            implicit_start(conn, &mut row)?;
            let to = if f.outcome == FinishOutcome::Succeeded {
                BatchTaskState::Succeeded
            } else {
                BatchTaskState::SucceededManualCleanup
            };
            if f.progress.as_ref().is_none_or(|p| p.percent.is_none()) {
                row.task.progress_percent = 100;
            }
            row.task.state = to;
            row.task.result = f.result.clone();
            row.task.response = f.response.clone();
            row.run_after = None;
            row.clear_lease();
            event(conn, &row.task, BatchTaskState::Started, to, reason_or("succeeded"))?;
        }
        FinishOutcome::Failed { retry } => {
            implicit_start(conn, &mut row)?;
            let why = f.result.clone().unwrap_or_else(|| "failed".into());
            row.task.response = f.response.clone();
            row.task.result = f.result.clone();
            // A run that fails after a stop was asked is the stop taking effect: no retry, and
            // the Result says who cancelled it.
            let cancelled_by = row.stop_requested_by.clone();
            if let Some(by) = &cancelled_by {
                row.task.result = Some(results::cancelled(by));
            }
            let to = fail_or_retry(conn, &mut row, now, retry && cancelled_by.is_none(), &why)?;
            let reason = match to {
                BatchTaskState::New => format!(
                    "{}; retry {} of {} after {}",
                    reason_or(&why),
                    row.attempts,
                    retry_policy(conn, &row.task.name)?.restarts,
                    crate::domain::definition::format_duration(Duration::from_micros(
                        u64::try_from(row.run_after.unwrap_or(now_us) - now_us).unwrap_or(0)
                    ))
                ),
                _ => reason_or(&why),
            };
            event(conn, &row.task, BatchTaskState::Started, to, reason)?;
        }
        FinishOutcome::Release => {
            row.clear_lease();
            row.attempts = (row.attempts - 1).max(0);
            row.task.state = BatchTaskState::New;
            row.run_after = None;
            event(conn, &row.task, before, BatchTaskState::New, reason_or("released"))?;
        }
    }
    store_run_row(conn, &row, now, true)?;
    Ok(FinishResult::Done(row.task.state))
}

pub(super) fn finish(
    conn: &Connection,
    finishes: Vec<Finish>,
    now: DateTime<Utc>,
) -> Result<Vec<FinishResult>, StoreError> {
    finishes.into_iter().map(|f| finish_one(conn, f, now)).collect()
}

pub(super) fn request_stop(
    conn: &Connection,
    id: i32,
    now: DateTime<Utc>,
    actor: &Actor,
    by: &str,
    guard: crate::store::DeleteGuard,
) -> Result<StopResult, StoreError> {
    let now_us = micros(now);
    let mut row = load_run_row(conn, id, false)?.ok_or(StoreError::NotFound)?;
    guard(&row.task)?;
    let from = row.task.state;
    if from.is_finished() || row.task.cancellation == CancellationBehaviour::CannotCancel {
        return Ok(StopResult::Refused(row.task));
    }
    let held =
        from == BatchTaskState::Started && row.lease_token.is_some() && row.lease_expires.is_some_and(|e| e >= now_us);
    if held {
        let node = row.lease_node.clone().unwrap_or_default();
        if row.stop_requested.is_none() {
            row.stop_requested = Some(now_us);
            row.stop_requested_by = Some(by.to_owned());
            store_run_row(conn, &row, now, false)?;
            let a = Actor { reason: Some(format!("stop requested by {by}")), ..actor.clone() };
            record_event(conn, &row.task, now, Some(from), Some(from), &a)?;
        }
        return Ok(StopResult::Requested { task: row.task, node });
    }
    row.clear_lease();
    row.run_after = None;
    row.task.state = BatchTaskState::Failed;
    row.task.result = Some(results::cancelled(by));
    store_run_row(conn, &row, now, true)?;
    let a = Actor { reason: Some(results::cancelled(by)), ..actor.clone() };
    record_event(conn, &row.task, now, Some(from), Some(BatchTaskState::Failed), &a)?;
    row.task.version += 1;
    row.task.updated = now;
    Ok(StopResult::Failed(row.task))
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
    let now_us = micros(now);
    let ids = |sql: &str, a: i64| -> Result<Vec<i32>, StoreError> {
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        stmt.query_map(params![a, limit as i64], |r| r.get::<_, i32>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(backend)
    };
    let expired = ids(
        "SELECT batchtask_id FROM batchtask WHERE lease_expires < ? AND state IN (2, 3) ORDER BY lease_expires LIMIT ?",
        now_us,
    )?;
    let stop_deadline = now_us - lease_micros(stop_grace);
    let ignored_stops = ids(
        "SELECT batchtask_id FROM batchtask WHERE stop_requested IS NOT NULL AND stop_requested < ? AND state = 3 LIMIT ?",
        stop_deadline,
    )?;
    let mut out = Vec::new();
    for id in expired.into_iter().chain(ignored_stops) {
        let Some(mut row) = load_run_row(conn, id, false)? else { continue };
        if !row.task.state.is_active() {
            continue; // handled by the first list already
        }
        let from = row.task.state;
        let holder = row.lease_node.clone().unwrap_or_else(|| "?".into());
        let (to, reason) = if let Some(by) = row.stop_requested_by.clone() {
            row.clear_lease();
            row.task.state = BatchTaskState::Failed;
            row.task.result = Some(results::cancelled(&by));
            (BatchTaskState::Failed, format!("{}; {holder} did not end the run in time", results::cancelled(&by)))
        } else if row.lease_expires.is_some_and(|e| e < now_us) {
            let why = results::lease_expired(&holder);
            let to = fail_or_retry(conn, &mut row, now, true, &why)?;
            if to == BatchTaskState::Failed {
                row.task.result = Some(why.clone());
            }
            (to, why)
        } else {
            continue;
        };
        store_run_row(conn, &row, now, true)?;
        record_event(conn, &row.task, now, Some(from), Some(to), &Actor::node(node, reason))?;
        out.push(Rescued { id, to });
    }
    Ok(out)
}

pub(super) fn release_node(conn: &Connection, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
    let ids: Vec<i32> = conn
        .prepare_cached("SELECT batchtask_id FROM batchtask WHERE lease_node = ? AND state IN (2, 3)")
        .and_then(|mut s| s.query_map([node], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(backend)?;
    for id in &ids {
        let Some(mut row) = load_run_row(conn, *id, false)? else { continue };
        let from = row.task.state;
        row.clear_lease();
        row.attempts = (row.attempts - 1).max(0);
        row.run_after = None;
        row.task.state = BatchTaskState::New;
        store_run_row(conn, &row, now, true)?;
        record_event(
            conn,
            &row.task,
            now,
            Some(from),
            Some(BatchTaskState::New),
            &Actor::node(node, format!("released: node {node} restarted")),
        )?;
    }
    Ok(ids)
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
    let ids: Vec<i32> = conn
        .prepare_cached("SELECT batchtask_id FROM batchtask WHERE state = ? AND updated < ? ORDER BY updated LIMIT ?")
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
    let now_us = micros(now);
    let next_start: Option<i64> = conn
        .prepare_cached("SELECT next_start FROM batchtaskdefinition WHERE name = ?")
        .and_then(|mut s| s.query_row([&tick.name], |r| r.get::<_, Option<i64>>(0)).optional())
        .map_err(backend)?
        .ok_or(StoreError::NotFound)?;
    let due = next_start.unwrap_or(now_us);
    if due > now_us {
        return Ok((None, from_micros(due)));
    }
    let active = tick.skip_if_active && {
        let found: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM batchtask WHERE name = ? AND state IN (1, 2, 3) LIMIT 1")
            .and_then(|mut s| s.query_row([&tick.name], |r| r.get(0)).optional())
            .map_err(backend)?;
        found.is_some()
    };
    let created = if active {
        None
    } else {
        let id = super::insert_task(conn, &new, now)?;
        super::load_task(conn, id).map_err(backend)?
    };
    let interval = lease_micros(tick.interval).max(1);
    // Missed occurrences (the server was down) are not made up for: the next one is in the future.
    let mut next = due + interval;
    if next <= now_us {
        next = now_us + interval;
    }
    conn.prepare_cached("UPDATE batchtaskdefinition SET next_start = ? WHERE name = ?")
        .and_then(|mut s| s.execute(params![next, tick.name]))
        .map_err(backend)?;
    Ok((created, from_micros(next)))
}

pub(super) fn set_definition_backoff(
    conn: &Connection,
    name: &str,
    backoff: Duration,
    max_backoff: Duration,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE batchtaskdefinition SET backoff_ms = ?, max_backoff_ms = ? WHERE name = ?")
        .and_then(|mut s| {
            s.execute(params![
                i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX),
                i64::try_from(max_backoff.as_millis()).unwrap_or(i64::MAX),
                name
            ])
        })
        .map_err(backend)?;
    Ok(())
}
