//! Task dependencies (`After`): a task waits, `New` and unclaimed, until every task it names has
//! succeeded; a dependency that ends `Failed` (or is deleted) fails it. The rules are here; the
//! stores load, lock and write (docs/scheduling.md, "Dependencies").

use chrono::{DateTime, Utc};

use super::error::{DomainError, Field};
use super::run::{Actor, Change, RunEvent, RunRow};
use super::task::BatchTaskState;

/// The create body's optional `After` key (batchd's own; not a `BatchTaskInfo` property).
pub const AFTER: Field = Field::Param("After");

/// At most this many distinct ids in one `After`.
pub const AFTER_MAX: usize = 100;

/// At most this many dependents are listed in a task's `Before` (the first, by id).
pub const BEFORE_MAX: usize = 100;

/// At most this many tasks may wait for one task: its end changes them all in one transaction.
pub const DEPENDENTS_MAX: usize = 10_000;

/// Longest chain of dependencies: a task with no `After` has depth 0, one with `After` one more
/// than the deepest task it names. A failure fails its chain in one transaction, so the chain is
/// bounded as the fan-out is.
pub const DEPTH_MAX: i32 = 100;

/// Checks a create's `After` ids: positive, at most [`AFTER_MAX`] once duplicates are dropped.
/// Answers them sorted, each once.
pub fn check_after(ids: &[i64]) -> Result<Vec<i32>, DomainError> {
    let mut out = Vec::with_capacity(ids.len().min(AFTER_MAX));
    for &id in ids {
        if id < 1 || id > i64::from(i32::MAX) {
            return Err(DomainError::OutOfRange { field: AFTER, min: 1, max: i64::from(i32::MAX) });
        }
        out.push(id as i32);
    }
    out.sort_unstable();
    out.dedup();
    if out.len() > AFTER_MAX {
        return Err(DomainError::TooManyIds { field: AFTER, max: AFTER_MAX, actual: out.len() });
    }
    Ok(out)
}

/// How a dependency ended, as far as its dependents are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Failed,
    Deleted,
}

impl Ended {
    /// A dependency in `state` has ended for its dependents, or not yet (`None`): only a
    /// finished state counts. A run that fails and is retried goes back to `New`, so `Failed`
    /// here is failed for good.
    pub fn of(state: BatchTaskState) -> Option<Ended> {
        match state {
            BatchTaskState::Succeeded | BatchTaskState::SucceededManualCleanup => Some(Ended::Succeeded),
            BatchTaskState::Failed => Some(Ended::Failed),
            _ => None,
        }
    }

    /// The `Result` (and event reason) of a dependent failed by dependency `id`.
    pub fn reason(self, id: i32) -> Option<String> {
        match self {
            Ended::Succeeded => None,
            Ended::Failed => Some(format!("dependency {id} failed")),
            Ended::Deleted => Some(format!("dependency {id} was deleted")),
        }
    }
}

/// Where a new task starts: how many of its dependencies it waits for, the first that has
/// already failed (then it is created `Failed`, naming it), and its depth in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub waiting_on: i32,
    pub failed: Option<i32>,
    pub depth: i32,
}

/// A task named in a create's `After`, as the create's transaction read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub id: i32,
    pub state: BatchTaskState,
    /// Its depth ([`DEPTH_MAX`]).
    pub depth: i32,
    /// How many tasks wait for it already, counted up to [`DEPENDENTS_MAX`].
    pub dependents: usize,
}

/// The start of a task created `after` these ids, given those `found` (read in the create's
/// transaction). An id not found is refused: it may have been deleted since the caller's rights
/// were checked. So is a task that already has [`DEPENDENTS_MAX`] dependents, and a chain that
/// would grow past [`DEPTH_MAX`].
pub fn at_create(after: &[i32], found: &[Found]) -> Result<Start, DomainError> {
    let mut start = Start { waiting_on: 0, failed: None, depth: 0 };
    for &id in after {
        let Some(f) = found.iter().find(|f| f.id == id) else {
            return Err(DomainError::UnknownValue { field: AFTER, value: id.to_string() });
        };
        if f.dependents >= DEPENDENTS_MAX {
            return Err(DomainError::TooManyDependents { field: AFTER, id: id.into(), max: DEPENDENTS_MAX });
        }
        start.depth = start.depth.max(f.depth.saturating_add(1));
        match Ended::of(f.state) {
            Some(Ended::Succeeded) => {}
            Some(_) => {
                start.waiting_on += 1;
                start.failed = start.failed.or(Some(id));
            }
            None => start.waiting_on += 1,
        }
    }
    if start.depth > DEPTH_MAX {
        return Err(DomainError::ChainTooDeep { field: AFTER, max: DEPTH_MAX });
    }
    Ok(start)
}

/// What dependency `dep` ending as `how` does to a dependent still waiting for it (its edge is
/// not yet satisfied): `None` when nothing, else the change that fails it. Only a `New`
/// dependent is failed; one moved on by hand is left alone. The change is logged as the
/// dependency's doing, and the dependent's own dependents follow from its `Failed`.
pub fn fail_dependent(row: RunRow, dep: i32, how: Ended, now: DateTime<Utc>) -> Option<Change> {
    let reason = how.reason(dep)?;
    if row.task.state != BatchTaskState::New {
        return None;
    }
    let mut row = row;
    let from = row.task.state;
    row.clear_lease();
    row.run_after = None;
    row.task.state = BatchTaskState::Failed;
    row.task.result = Some(reason.clone());
    row.task.version += 1;
    row.task.updated = now;
    let actor = Actor { associate_id: None, node: None, reason: Some(reason) };
    let events = RunEvent::of(&row.task, now, Some(from), Some(BatchTaskState::Failed), &actor).into_iter().collect();
    Some(Change { row, events })
}

/// Must a change of a task from `from` to `to` check the dependencies it still waits for? Yes
/// whenever it becomes `New` again, whatever it was (finished, claimed, running, Unknown) and
/// whoever moves it (a retry, a move by hand, a rescue, a run handed back or retried): a `New`
/// task whose dependency has already failed would wait for ever, as that failure has passed.
pub fn must_check(from: BatchTaskState, to: BatchTaskState) -> bool {
    to == BatchTaskState::New && from != BatchTaskState::New
}

/// The first of the `unsatisfied` dependencies of a task (with their states; `None`: deleted)
/// that keeps it from being `New` again, and how it ended.
pub fn blocking(unsatisfied: &[(i32, Option<BatchTaskState>)]) -> Option<(i32, Ended)> {
    unsatisfied.iter().find_map(|&(after, state)| match state {
        Some(BatchTaskState::Failed) => Some((after, Ended::Failed)),
        None => Some((after, Ended::Deleted)),
        _ => None,
    })
}

/// May task `id` be made `New` again by hand (a retry, a move to `New`)? Not while a
/// dependency it still waits for is failed or gone: that dependency must run again first.
/// `unsatisfied` are those dependencies and their states (`None`: deleted).
pub fn may_rerun(id: i32, unsatisfied: &[(i32, Option<BatchTaskState>)]) -> Result<(), DomainError> {
    match blocking(unsatisfied) {
        Some((after, how)) => Err(DomainError::DependencyNotMet {
            id: id.into(),
            after: after.into(),
            state: (how == Ended::Failed).then_some(BatchTaskState::Failed),
        }),
        None => Ok(()),
    }
}

/// A change by the runner (a rescue, a run retried or handed back) that makes a task `New`
/// while dependency `dep` has failed or is gone (`how`): refusing it would leave the run's lease
/// to expire again and again, and `New` would wait for ever. The task ends `Failed` naming the
/// dependency instead, as its other dependents did; the change's own events stay first.
pub fn fail_rerun(change: Change, dep: i32, how: Ended, now: DateTime<Utc>) -> Change {
    let Change { row, mut events } = change;
    let version = row.task.version;
    match fail_dependent(row.clone(), dep, how, now) {
        Some(mut failed) => {
            // One change for the client: the version moves once, as the runner's own did.
            failed.row.task.version = version;
            events.append(&mut failed.events);
            Change { row: failed.row, events }
        }
        None => Change { row, events },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Task;
    use BatchTaskState as S;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn row(state: S) -> RunRow {
        RunRow {
            task: Task::fixture(9, "b", 5, state),
            lease_token: None,
            lease_expires: None,
            lease_node: None,
            attempts: 0,
            failures: 0,
            rescues: 0,
            run_after: None,
            stop_requested: None,
            stop_requested_by: None,
        }
    }

    #[test]
    fn after_ids_are_positive_deduplicated_and_bounded() {
        assert_eq!(check_after(&[3, 1, 3, 2]).unwrap(), vec![1, 2, 3]);
        assert!(matches!(check_after(&[0]), Err(DomainError::OutOfRange { field: AFTER, .. })));
        assert!(matches!(check_after(&[-4]), Err(DomainError::OutOfRange { .. })));
        assert!(matches!(check_after(&[i64::from(i32::MAX) + 1]), Err(DomainError::OutOfRange { .. })));
        let many: Vec<i64> = (1..=101).collect();
        assert!(matches!(check_after(&many), Err(DomainError::TooManyIds { max: 100, actual: 101, .. })));
        // Duplicates do not count against the limit.
        let twice: Vec<i64> = (1..=100).chain(1..=100).collect();
        assert_eq!(check_after(&twice).unwrap().len(), 100);
    }

    fn found(id: i32, state: S) -> Found {
        Found { id, state, depth: 0, dependents: 0 }
    }

    #[test]
    fn a_new_task_waits_for_what_has_not_succeeded_and_fails_on_what_failed() {
        assert_eq!(at_create(&[], &[]).unwrap(), Start { waiting_on: 0, failed: None, depth: 0 });
        let found = [(1, S::Succeeded), (2, S::Started), (3, S::New), (4, S::Failed), (6, S::SucceededManualCleanup)]
            .map(|(i, s)| found(i, s));
        assert_eq!(at_create(&[1, 2, 3], &found).unwrap(), Start { waiting_on: 2, failed: None, depth: 1 });
        assert_eq!(at_create(&[6], &found).unwrap().waiting_on, 0);
        assert_eq!(at_create(&[3, 4], &found).unwrap(), Start { waiting_on: 2, failed: Some(4), depth: 1 });
        assert_eq!(at_create(&[1, 5], &found), Err(DomainError::UnknownValue { field: AFTER, value: "5".into() }));
    }

    #[test]
    fn fan_out_and_chain_depth_are_bounded_at_create() {
        let deep = Found { depth: DEPTH_MAX - 1, ..found(1, S::New) };
        let shallow = Found { depth: 3, ..found(2, S::New) };
        assert_eq!(at_create(&[1, 2], &[deep, shallow]).unwrap().depth, DEPTH_MAX, "one more than the deepest");
        let deepest = Found { depth: DEPTH_MAX, ..deep };
        assert_eq!(
            at_create(&[1, 2], &[deepest, shallow]),
            Err(DomainError::ChainTooDeep { field: AFTER, max: DEPTH_MAX })
        );
        let full = Found { dependents: DEPENDENTS_MAX, ..shallow };
        assert_eq!(
            at_create(&[1, 2], &[deep, full]),
            Err(DomainError::TooManyDependents { field: AFTER, id: 2, max: DEPENDENTS_MAX })
        );
        let room = Found { dependents: DEPENDENTS_MAX - 1, ..shallow };
        assert!(at_create(&[2], &[room]).is_ok(), "the last place is taken");
    }

    #[test]
    fn a_failed_or_deleted_dependency_fails_a_waiting_dependent_naming_itself() {
        let c = fail_dependent(row(S::New), 4, Ended::Failed, at(1)).unwrap();
        assert_eq!(c.row.task.state, S::Failed);
        assert_eq!(c.row.task.result.as_deref(), Some("dependency 4 failed"));
        assert_eq!(c.row.task.version, 2);
        assert_eq!(c.events.len(), 1);
        assert_eq!(c.events[0].from, Some(S::New));
        assert_eq!(c.events[0].reason.as_deref(), Some("dependency 4 failed"));
        let d = fail_dependent(row(S::New), 7, Ended::Deleted, at(1)).unwrap();
        assert_eq!(d.row.task.result.as_deref(), Some("dependency 7 was deleted"));
        // Success changes nothing but the count; a dependent moved on by hand is left alone.
        assert!(fail_dependent(row(S::New), 4, Ended::Succeeded, at(1)).is_none());
        assert!(fail_dependent(row(S::Started), 4, Ended::Failed, at(1)).is_none());
        assert!(fail_dependent(row(S::Failed), 4, Ended::Failed, at(1)).is_none());
    }

    #[test]
    fn ended_counts_only_finished_states() {
        assert_eq!(Ended::of(S::Succeeded), Some(Ended::Succeeded));
        assert_eq!(Ended::of(S::SucceededManualCleanup), Some(Ended::Succeeded));
        assert_eq!(Ended::of(S::Failed), Some(Ended::Failed));
        for s in [S::New, S::Aquired, S::Started, S::Unknown] {
            assert_eq!(Ended::of(s), None);
        }
    }

    #[test]
    fn a_rerun_waits_for_its_failed_dependency_to_run_again() {
        assert!(may_rerun(9, &[]).is_ok());
        assert!(may_rerun(9, &[(4, Some(S::New)), (5, Some(S::Started))]).is_ok());
        assert_eq!(
            may_rerun(9, &[(4, Some(S::New)), (5, Some(S::Failed))]),
            Err(DomainError::DependencyNotMet { id: 9, after: 5, state: Some(S::Failed) })
        );
        assert!(matches!(may_rerun(9, &[(6, None)]), Err(DomainError::DependencyNotMet { after: 6, state: None, .. })));
        assert_eq!(blocking(&[(4, Some(S::Succeeded)), (5, None)]), Some((5, Ended::Deleted)));
    }

    #[test]
    fn every_move_to_new_checks_the_dependencies() {
        for from in [S::Aquired, S::Started, S::Unknown, S::Failed, S::Succeeded, S::SucceededManualCleanup] {
            assert!(must_check(from, S::New), "{from:?}");
        }
        assert!(!must_check(S::New, S::New), "an edit of a waiting task");
        assert!(!must_check(S::Failed, S::Started));
    }

    #[test]
    fn a_run_made_new_after_its_dependency_failed_ends_failed_naming_it() {
        let mut rescued = row(S::New);
        rescued.task.version = 3;
        let ev = RunEvent::of(&rescued.task, at(1), Some(S::Started), Some(S::New), &Actor::default());
        let change = Change { row: rescued, events: ev.into_iter().collect() };
        let c = fail_rerun(change, 4, Ended::Failed, at(1));
        assert_eq!(c.row.task.state, S::Failed);
        assert_eq!(c.row.task.result.as_deref(), Some("dependency 4 failed"));
        assert_eq!(c.row.task.version, 3, "one visible change");
        let moves: Vec<_> = c.events.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(moves, [(Some(S::Started), Some(S::New)), (Some(S::New), Some(S::Failed))]);
    }
}
