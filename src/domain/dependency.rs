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

/// Where a new task starts: how many of its dependencies it waits for, and the first that has
/// already failed (then it is created `Failed`, naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub waiting_on: i32,
    pub failed: Option<i32>,
}

/// The start of a task created `after` these ids, given the states of those `found` (read in
/// the create's transaction). An id not found is refused: it may have been deleted since the
/// caller's rights were checked.
pub fn at_create(after: &[i32], found: &[(i32, BatchTaskState)]) -> Result<Start, DomainError> {
    let mut start = Start { waiting_on: 0, failed: None };
    for &id in after {
        let Some(&(_, state)) = found.iter().find(|(f, _)| *f == id) else {
            return Err(DomainError::UnknownValue { field: AFTER, value: id.to_string() });
        };
        match Ended::of(state) {
            Some(Ended::Succeeded) => {}
            Some(_) => {
                start.waiting_on += 1;
                start.failed = start.failed.or(Some(id));
            }
            None => start.waiting_on += 1,
        }
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

/// May task `id` be made `New` again (a retry, or a move to `New` by hand)? Not while a
/// dependency it still waits for is failed or gone: that dependency must run again first.
/// `unsatisfied` are those dependencies and their states (`None`: deleted).
pub fn may_rerun(id: i32, unsatisfied: &[(i32, Option<BatchTaskState>)]) -> Result<(), DomainError> {
    for &(after, state) in unsatisfied {
        match state {
            Some(BatchTaskState::Failed) | None => {
                return Err(DomainError::DependencyNotMet { id: id.into(), after: after.into(), state });
            }
            _ => {}
        }
    }
    Ok(())
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

    #[test]
    fn a_new_task_waits_for_what_has_not_succeeded_and_fails_on_what_failed() {
        assert_eq!(at_create(&[], &[]).unwrap(), Start { waiting_on: 0, failed: None });
        let found = [(1, S::Succeeded), (2, S::Started), (3, S::New), (4, S::Failed), (6, S::SucceededManualCleanup)];
        assert_eq!(at_create(&[1, 2, 3], &found).unwrap(), Start { waiting_on: 2, failed: None });
        assert_eq!(at_create(&[6], &found).unwrap().waiting_on, 0);
        assert_eq!(at_create(&[3, 4], &found).unwrap(), Start { waiting_on: 2, failed: Some(4) });
        assert_eq!(at_create(&[1, 5], &found), Err(DomainError::UnknownValue { field: AFTER, value: "5".into() }));
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
        assert!(matches!(may_rerun(9, &[(6, None)]), Err(DomainError::DependencyNotMet { after: 6, .. })));
    }
}
