//! Task dependencies on PostgreSQL: the twin of `src/store/sqlite/deps.rs`, the decisions those
//! of `crate::domain::dependency`. What the single writer gives SQLite is done here with locks:
//!
//! - A create reads its dependencies `FOR SHARE`: a dependency finishing at the same time (its
//!   row is locked `FOR UPDATE` by the finish) is either seen finished, or its finish waits for
//!   the create's commit and then, in a later statement, sees the new edges.
//! - A dependency's end locks its waiting dependents that are `New`, in id order, before
//!   changing them; success marks all its edges satisfied and decrements the `New` dependents'
//!   `waiting_on` (a decrement, so two dependencies of one task succeeding on two nodes both
//!   count), and notifies the nodes of the tasks it released (the feed's trigger only sees state
//!   changes). `waiting_on` is therefore exact only for `New` tasks, which is where it is read.
//! - A task made `New` again (a retry, a move by hand, a rescue, a run retried or handed back)
//!   reads the dependencies it still waits for `FOR SHARE`, in id order, after locking itself,
//!   and then counts its unsatisfied edges into `waiting_on`. Every path that ends a dependency
//!   holds its row `FOR UPDATE` from before it reads the dependents to its commit, so the two
//!   serialise on the dependency's row: either the rerun waits for the end's commit and then
//!   sees the dependency ended (refused or failed if it failed; counted satisfied if it
//!   succeeded), or the end waits for the rerun's commit and then, in a later statement under
//!   READ COMMITTED, sees the task `New` (and fails it, or counts it down).
//! - Lock order: an end takes the dependency, then its dependents committed `New`; a rerun takes
//!   the task (not `New`), then its dependencies. An end never waits for a task that is not
//!   `New`, and a rerun never holds a `New` task, so they cannot wait on each other in a cycle.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::dependency::{self, Ended, Found};
use crate::domain::run::Change;
use crate::domain::{BatchTaskState, NewTask, Task};
use crate::store::{AfterEdge, Dependencies, StoreError};

use super::{TASK_COLUMNS, backend, task_from_row};

fn state_of(n: i32) -> BatchTaskState {
    BatchTaskState::from_number(n.into()).unwrap_or(BatchTaskState::Unknown)
}

/// After inserting task `id`: its edges, its count and its depth; `Failed` at once when a
/// dependency has already failed. A named task that is gone, that has the most dependents
/// already, or a chain that would grow too long refuses the create.
pub async fn insert_edges(
    conn: &mut PgConnection,
    id: i32,
    new: &NewTask,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if new.after.is_empty() {
        return Ok(());
    }
    // Dependents are counted on the edge index, each up to the limit, in the same statement.
    // Two creates naming one task at once may both see room for its last place: the limit may be
    // passed by as many creates as run at once.
    let rows: Vec<(i32, i32, i32, i64)> = sqlx::query_as(
        "SELECT t.batchtask_id, t.state, t.after_depth, (SELECT count(*) FROM (SELECT 1 FROM batchtask_after b \
         WHERE b.after_id = t.batchtask_id LIMIT $2) x) FROM batchtask t WHERE t.batchtask_id = ANY($1) \
         ORDER BY t.batchtask_id FOR SHARE OF t",
    )
    .bind(&new.after)
    .bind(dependency::DEPENDENTS_MAX as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let found: Vec<Found> = rows
        .into_iter()
        .map(|(id, s, depth, n)| Found { id, state: state_of(s), depth, dependents: n as usize })
        .collect();
    let start = dependency::at_create(&new.after, &found)?;
    sqlx::query(
        "INSERT INTO batchtask_after (task_id, after_id, satisfied) SELECT $1, a, s FROM unnest($2::integer[], \
         $3::boolean[]) AS v (a, s)",
    )
    .bind(id)
    .bind(found.iter().map(|f| f.id).collect::<Vec<_>>())
    .bind(found.iter().map(|f| Ended::of(f.state) == Some(Ended::Succeeded)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query("UPDATE batchtask SET waiting_on = $1, after_depth = $2 WHERE batchtask_id = $3")
        .bind(start.waiting_on)
        .bind(start.depth)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    if let Some(dep) = start.failed {
        let row = super::runner::load_run_rows(conn, &[id], false, false).await?.pop().ok_or(StoreError::NotFound)?;
        if let Some(change) = dependency::fail_dependent(row, dep, Ended::Failed, super::runner::at(now)) {
            super::runner::write(conn, std::slice::from_ref(&change)).await?;
        }
    }
    Ok(())
}

/// What the tasks `ended` (id, how) do to the tasks waiting for them: successes satisfy their
/// edges and release those whose count reaches 0; failures and deletions answer the changes
/// that fail them, for the caller to write (which goes on to their own dependents).
pub async fn after_end(
    conn: &mut PgConnection,
    ended: &[(i32, Ended)],
    now: DateTime<Utc>,
) -> Result<Vec<Change>, StoreError> {
    let succeeded: Vec<i32> = ended.iter().filter(|(_, h)| *h == Ended::Succeeded).map(|(i, _)| *i).collect();
    if !succeeded.is_empty() {
        // Only dependents committed `New` are locked and counted down: one in another state may
        // be held by a rerun that waits for this dependency's row (a cycle), and a task that
        // enters `New` counts its unsatisfied edges itself (`recount_waiting`).
        sqlx::query(
            "SELECT 1 FROM batchtask WHERE batchtask_id IN (SELECT task_id FROM batchtask_after \
             WHERE after_id = ANY($1) AND NOT satisfied) AND state = 1 ORDER BY batchtask_id FOR UPDATE",
        )
        .bind(&succeeded)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        sqlx::query(
            "WITH done AS (UPDATE batchtask_after SET satisfied = true WHERE after_id = ANY($1) AND NOT satisfied \
             RETURNING task_id), \
             n AS (SELECT task_id, count(*)::integer AS n FROM done GROUP BY task_id), \
             released AS (UPDATE batchtask t SET waiting_on = t.waiting_on - n.n FROM n \
             WHERE t.batchtask_id = n.task_id AND t.state = 1 RETURNING t.name, t.waiting_on, t.state) \
             SELECT pg_notify('batchd', 'new:' || name) FROM released WHERE waiting_on = 0 AND state = 1",
        )
        .bind(&succeeded)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    let failed: Vec<i32> = ended.iter().filter(|(_, h)| *h != Ended::Succeeded).map(|(i, _)| *i).collect();
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    // Filtered on `state = 1` before the lock: a task made New since this snapshot had to take
    // its dependency's row FOR SHARE first, which this transaction holds (see the module doc).
    let waiting: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT a.task_id, a.after_id FROM batchtask_after a JOIN batchtask t ON t.batchtask_id = a.task_id \
         WHERE a.after_id = ANY($1) AND NOT a.satisfied AND t.state = 1 ORDER BY a.task_id, a.after_id",
    )
    .bind(&failed)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i32> = waiting.iter().map(|(t, _)| *t).collect();
    ids.dedup();
    // Locked, and read again under the lock: the rule sees the dependent as it is now.
    let rows = super::runner::load_run_rows(conn, &ids, false, true).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let (_, dep) = *waiting.iter().find(|(t, _)| *t == row.task.id)?;
            let how = ended.iter().find(|(i, _)| *i == dep).map_or(Ended::Failed, |(_, h)| *h);
            dependency::fail_dependent(row, dep, how, now)
        })
        .collect())
}

/// The dependencies tasks `ids` still wait for, (task, dependency, its state; `None`: deleted),
/// the dependencies locked `FOR SHARE` in id order (see the module doc). A task's edges are
/// written with it and never change but for `satisfied`, which only a dependency's success sets,
/// under the lock taken here: an edge read unsatisfied and then satisfied shows its dependency
/// `Succeeded` once locked.
async fn unsatisfied(
    conn: &mut PgConnection,
    ids: &[i32],
) -> Result<Vec<(i32, i32, Option<BatchTaskState>)>, StoreError> {
    let edges: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT task_id, after_id FROM batchtask_after WHERE task_id = ANY($1) AND NOT satisfied \
         ORDER BY task_id, after_id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut deps: Vec<i32> = edges.iter().map(|e| e.1).collect();
    deps.sort_unstable();
    deps.dedup();
    let states: Vec<(i32, i32)> = if deps.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT batchtask_id, state FROM batchtask WHERE batchtask_id = ANY($1) ORDER BY batchtask_id FOR SHARE",
        )
        .bind(&deps)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?
    };
    Ok(edges.into_iter().map(|(t, a)| (t, a, states.iter().find(|s| s.0 == a).map(|s| state_of(s.1)))).collect())
}

/// Tasks `ids` enter `New`: each counts the edges it still waits for into `waiting_on`. A
/// dependency's success counts down only dependents that are `New` (see `after_end`); read after
/// [`unsatisfied`]'s locks, this sees every success that committed before them, and later ones
/// find the task `New`.
async fn recount_waiting(conn: &mut PgConnection, ids: &[i32]) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE batchtask t SET waiting_on = c.n FROM (SELECT v.id, (SELECT count(*)::integer FROM batchtask_after a \
         WHERE a.task_id = v.id AND NOT a.satisfied) AS n FROM unnest($1::integer[]) AS v (id)) c \
         WHERE t.batchtask_id = c.id AND t.waiting_on <> c.n",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await
    .map(|_| ())
    .map_err(backend)
}

/// Refuses to make task `id` `New` again by hand while a dependency it still waits for is failed
/// or gone.
pub async fn check_rerun(conn: &mut PgConnection, id: i32) -> Result<(), StoreError> {
    let found: Vec<(i32, Option<BatchTaskState>)> =
        unsatisfied(conn, &[id]).await?.into_iter().map(|(_, a, s)| (a, s)).collect();
    recount_waiting(conn, &[id]).await?;
    Ok(dependency::may_rerun(id, &found)?)
}

/// The runner's `changes` of rows that were in the states `before` (id, state): each that makes
/// a task `New` again while a dependency it waits for is failed or gone fails the task instead,
/// naming the dependency ([`dependency::fail_rerun`]).
pub async fn fail_blocked_reruns(
    conn: &mut PgConnection,
    before: &[(i32, BatchTaskState)],
    changes: Vec<Change>,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, StoreError> {
    let from = |id: i32| before.iter().find(|b| b.0 == id).map_or(BatchTaskState::New, |b| b.1);
    let ids: Vec<i32> = changes
        .iter()
        .filter(|c| dependency::must_check(from(c.row.task.id), c.row.task.state))
        .map(|c| c.row.task.id)
        .collect();
    if ids.is_empty() {
        return Ok(changes);
    }
    let found = unsatisfied(conn, &ids).await?;
    recount_waiting(conn, &ids).await?;
    Ok(changes
        .into_iter()
        .map(|change| {
            let id = change.row.task.id;
            let mine: Vec<(i32, Option<BatchTaskState>)> =
                found.iter().filter(|f| f.0 == id).map(|f| (f.1, f.2)).collect();
            match dependency::blocking(&mine) {
                Some((dep, how)) => dependency::fail_rerun(change, dep, how, now),
                None => change,
            }
        })
        .collect())
}

/// A task's edges go with it (edges naming it stay: they tell its dependents it was deleted).
pub async fn delete_edges(conn: &mut PgConnection, id: i32) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM batchtask_after WHERE task_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(backend)
}

/// Both directions of task `id`: what it waits for (every edge), and the first `before_max`
/// tasks of `owner` (all when `None`) waiting for it, by id.
pub async fn dependencies(
    conn: &mut PgConnection,
    id: i32,
    owner: Option<i32>,
    before_max: usize,
) -> Result<Dependencies, StoreError> {
    let edges: Vec<(i32, bool)> =
        sqlx::query_as("SELECT after_id, satisfied FROM batchtask_after WHERE task_id = $1 ORDER BY after_id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
    let ids: Vec<i32> = edges.iter().map(|(a, _)| *a).collect();
    let found = super::select_tasks(&mut *conn, &ids).await?;
    let after = edges
        .into_iter()
        .map(|(a, satisfied)| AfterEdge { id: a, satisfied, task: found.iter().find(|t| t.id == a).cloned() })
        .collect();
    static BEFORE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {TASK_COLUMNS} FROM batchtask_after a JOIN batchtask t ON t.batchtask_id = a.task_id \
             WHERE a.after_id = $1 AND ($2::integer IS NULL OR (t.associate_id = $2 AND NOT t.is_system)) \
             ORDER BY a.task_id LIMIT $3"
        )
    });
    let mut before = sqlx::query(sqlx::AssertSqlSafe(BEFORE_SQL.as_str()))
        .bind(id)
        .bind(owner)
        .bind(before_max as i64 + 1)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?
        .iter()
        .map(task_from_row)
        .collect::<Result<Vec<Task>, _>>()
        .map_err(backend)?;
    let more_before = before.len() > before_max;
    before.truncate(before_max);
    Ok(Dependencies { after, before, more_before })
}
