//! Task dependencies on SQLite: the driver half of `crate::domain::dependency`. Every function
//! runs inside the writer's transaction, so a dependency's end and its dependents' release or
//! failure are one commit.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::domain::dependency::{self, Ended, Found};
use crate::domain::run::Change;
use crate::domain::{BatchTaskState, NewTask, Task};
use crate::store::{AfterEdge, Dependencies, StoreError};

use super::{TASK_COLUMNS, backend, task_from_row};

thread_local! {
    /// Names of the tasks the writer thread's current job released (their last dependency
    /// succeeded), for the change feed once the store method has its answer. A job that fails
    /// is rolled back to its savepoint, and the writer drops what it released then
    /// ([`drop_released`]): those releases never happened.
    static RELEASED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The names released since the last call (on the writer thread).
pub(super) fn take_released() -> Vec<String> {
    RELEASED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Forgets the releases of a job that was rolled back.
pub(super) fn drop_released() {
    RELEASED.with(|r| r.borrow_mut().clear());
}

fn note_released(names: Vec<String>) {
    RELEASED.with(|r| r.borrow_mut().extend(names));
}

#[cfg(test)]
pub(super) fn note_released_for_test(name: &str) {
    note_released(vec![name.to_owned()]);
}

/// The named tasks that exist, with their depths and their dependents counted up to the limit
/// (on the edge index).
fn found_of(conn: &Connection, ids: &[i32]) -> Result<Vec<Found>, StoreError> {
    let list = serde_json::to_string(ids).expect("a list of integers serialises");
    conn.prepare_cached(
        "SELECT t.batchtask_id, t.state, t.after_depth, (SELECT count(*) FROM (SELECT 1 FROM batchtask_after b \
         WHERE b.after_id = t.batchtask_id LIMIT ?2)) FROM batchtask t \
         WHERE t.batchtask_id IN (SELECT value FROM json_each(?1))",
    )
    .and_then(|mut s| {
        s.query_map(params![list, dependency::DEPENDENTS_MAX as i64], |r| {
            Ok(Found {
                id: r.get(0)?,
                state: BatchTaskState::from_number(r.get(1)?).unwrap_or(BatchTaskState::Unknown),
                depth: r.get(2)?,
                dependents: r.get::<_, i64>(3)? as usize,
            })
        })?
        .collect()
    })
    .map_err(backend)
}

/// Which of `ids` have a dependent still waiting for them (an unsatisfied edge).
pub(super) fn waited_on(
    conn: &Connection,
    ids: impl Iterator<Item = i32>,
) -> Result<std::collections::HashSet<i32>, StoreError> {
    let list = serde_json::to_string(&ids.collect::<Vec<_>>()).expect("a list of integers serialises");
    conn.prepare_cached(
        "SELECT DISTINCT after_id FROM batchtask_after WHERE satisfied = 0 \
         AND after_id IN (SELECT value FROM json_each(?))",
    )
    .and_then(|mut s| s.query_map([list], |r| r.get(0))?.collect())
    .map_err(backend)
}

/// After inserting task `id`: its edges, its count and its depth; `Failed` at once when a
/// dependency has already failed. A named task that is gone, that has the most dependents
/// already, or a chain that would grow too long refuses the create.
pub(super) fn insert_edges(conn: &Connection, id: i32, new: &NewTask, now: DateTime<Utc>) -> Result<(), StoreError> {
    if new.after.is_empty() {
        return Ok(());
    }
    let found = found_of(conn, &new.after)?;
    let start = dependency::at_create(&new.after, &found)?;
    let mut insert = conn
        .prepare_cached("INSERT INTO batchtask_after (task_id, after_id, satisfied) VALUES (?, ?, ?)")
        .map_err(backend)?;
    for f in &found {
        insert.execute(params![id, f.id, Ended::of(f.state) == Some(Ended::Succeeded)]).map_err(backend)?;
    }
    conn.prepare_cached("UPDATE batchtask SET waiting_on = ?, after_depth = ? WHERE batchtask_id = ?")
        .and_then(|mut s| s.execute(params![start.waiting_on, start.depth, id]))
        .map_err(backend)?;
    if let Some(dep) = start.failed {
        let now = crate::domain::time::truncate_micros(now);
        let row = super::runner::load_run_row(conn, id, false)?.ok_or(StoreError::NotFound)?;
        if let Some(change) = dependency::fail_dependent(row, dep, Ended::Failed, now) {
            super::runner::write(conn, &change)?;
        }
    }
    Ok(())
}

/// What task `id` ending as `how` does to the tasks waiting for it: success satisfies their
/// edges (a task whose count reaches 0 is claimable); failure or deletion answers the changes
/// that fail them, for the caller to write (which goes on to their own dependents).
pub(super) fn after_end(conn: &Connection, id: i32, how: Ended, now: DateTime<Utc>) -> Result<Vec<Change>, StoreError> {
    if how == Ended::Succeeded {
        let released: Vec<String> = conn
            .prepare_cached(
                "UPDATE batchtask SET waiting_on = waiting_on - 1 WHERE batchtask_id IN \
                 (SELECT task_id FROM batchtask_after WHERE after_id = ?1 AND satisfied = 0) \
                 RETURNING name, waiting_on, state",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(backend)?
            .into_iter()
            .filter(|(_, waiting, state)| *waiting == 0 && *state == i64::from(BatchTaskState::New.number()))
            .map(|(name, _, _)| name)
            .collect();
        conn.prepare_cached("UPDATE batchtask_after SET satisfied = 1 WHERE after_id = ? AND satisfied = 0")
            .and_then(|mut s| s.execute([id]))
            .map_err(backend)?;
        note_released(released);
        return Ok(Vec::new());
    }
    let waiting = super::runner::ids_of(
        conn,
        "SELECT a.task_id FROM batchtask_after a JOIN batchtask t ON t.batchtask_id = a.task_id \
         WHERE a.after_id = ? AND a.satisfied = 0 AND t.state = 1 ORDER BY a.task_id",
        [id],
    )?;
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    Ok(super::runner::load_run_rows(conn, &waiting, false)?
        .into_iter()
        .filter_map(|row| dependency::fail_dependent(row, id, how, now))
        .collect())
}

/// Refuses to make task `id` `New` again by hand while a dependency it still waits for is failed
/// or gone.
pub(super) fn check_rerun(conn: &Connection, id: i32) -> Result<(), StoreError> {
    Ok(dependency::may_rerun(id, &unsatisfied(conn, id)?)?)
}

/// The runner's `change` of a row that was `from`: when it makes the task `New` again while a
/// dependency it waits for is failed or gone, the task fails instead, naming the dependency
/// ([`dependency::fail_rerun`]).
pub(super) fn fail_blocked_rerun(
    conn: &Connection,
    from: BatchTaskState,
    change: Change,
    now: DateTime<Utc>,
) -> Result<Change, StoreError> {
    if !dependency::must_check(from, change.row.task.state) {
        return Ok(change);
    }
    Ok(match dependency::blocking(&unsatisfied(conn, change.row.task.id)?) {
        Some((dep, how)) => dependency::fail_rerun(change, dep, how, now),
        None => change,
    })
}

/// The dependencies task `id` still waits for, with their states (`None`: deleted).
fn unsatisfied(conn: &Connection, id: i32) -> Result<Vec<(i32, Option<BatchTaskState>)>, StoreError> {
    conn.prepare_cached(
        "SELECT a.after_id, t.state FROM batchtask_after a LEFT JOIN batchtask t ON t.batchtask_id = a.after_id \
             WHERE a.task_id = ? AND a.satisfied = 0 ORDER BY a.after_id",
    )
    .and_then(|mut s| {
        s.query_map([id], |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.and_then(BatchTaskState::from_number))))?
            .collect()
    })
    .map_err(backend)
}

/// A task's edges go with it (edges naming it stay: they tell its dependents it was deleted).
pub(super) fn delete_edges(conn: &Connection, id: i32) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM batchtask_after WHERE task_id = ?")
        .and_then(|mut s| s.execute([id]))
        .map(|_| ())
        .map_err(backend)
}

/// Both directions of task `id`: what it waits for (every edge), and the first `before_max`
/// tasks of `owner` (all when `None`) waiting for it, by id.
pub(super) fn dependencies(
    conn: &Connection,
    id: i32,
    owner: Option<i32>,
    before_max: usize,
) -> rusqlite::Result<Dependencies> {
    let edges: Vec<(i32, bool)> = conn
        .prepare_cached("SELECT after_id, satisfied FROM batchtask_after WHERE task_id = ? ORDER BY after_id")?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut after = Vec::with_capacity(edges.len());
    {
        let mut load =
            conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM batchtask t WHERE t.batchtask_id = ?"))?;
        for (after_id, satisfied) in edges {
            let task: Option<Task> = load.query_map([after_id], task_from_row)?.next().transpose()?;
            after.push(AfterEdge { id: after_id, satisfied, task });
        }
    }
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM batchtask_after a JOIN batchtask t ON t.batchtask_id = a.task_id \
         WHERE a.after_id = ?1 AND (?2 IS NULL OR (t.associate_id = ?2 AND t.is_system = 0)) \
         ORDER BY a.task_id LIMIT ?3"
    );
    let mut before: Vec<Task> = conn
        .prepare_cached(&sql)?
        .query_map(params![id, owner, before_max as i64 + 1], task_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    let more_before = before.len() > before_max;
    before.truncate(before_max);
    Ok(Dependencies { after, before, more_before })
}
