//! What a caller may do with a task. `TableRight` and `FieldProperties` on the wire come from here,
//! and so do the checks the handlers make, so the two cannot disagree.

use super::associate::{Caller, Role};
use super::error::DomainError;
use super::task::{NewTask, Task};

/// Why a caller may not do something: the `{reason}` of an "Access denied" message. The texts,
/// English and translated, are in the message catalogue (src/i18n.rs), so a reason without all
/// its texts does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    ReadOnlyTokenMayNotCreate,
    OnlyWorkersMayCreateInternalTasks,
    OnlyWorkersMayCreateSystemTasks,
    OnlyAdminsMayCreateForOthers,
    MayNotUpdateTask,
    MayNotStopTask,
    MayNotDeleteTask,
    TaskCannotBeStopped,
    OnlyWorkersMayRunTasks,
    OnlyWorkersMayReadMetrics,
    OnlyAdminsMayListNodes,
    OnlyAdminsMayPauseDefinitions,
    MayNotRetryTask,
}

impl Reason {
    /// Every reason, for the catalogue's completeness test: a new reason goes here too.
    pub const ALL: [Reason; 13] = [
        Reason::ReadOnlyTokenMayNotCreate,
        Reason::OnlyWorkersMayCreateInternalTasks,
        Reason::OnlyWorkersMayCreateSystemTasks,
        Reason::OnlyAdminsMayCreateForOthers,
        Reason::MayNotUpdateTask,
        Reason::MayNotStopTask,
        Reason::MayNotDeleteTask,
        Reason::TaskCannotBeStopped,
        Reason::OnlyWorkersMayRunTasks,
        Reason::OnlyWorkersMayReadMetrics,
        Reason::OnlyAdminsMayListNodes,
        Reason::OnlyAdminsMayPauseDefinitions,
        Reason::MayNotRetryTask,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskRights {
    pub select: bool,
    pub update: bool,
    pub delete: bool,
}

impl TaskRights {
    pub const NONE: TaskRights = TaskRights { select: false, update: false, delete: false };

    /// ETableRight flag names, in SuperOffice's order.
    pub fn flag_names(self) -> Vec<&'static str> {
        let mut v = Vec::with_capacity(3);
        if self.select {
            v.push("Select");
        }
        if self.update {
            v.push("Update");
        }
        if self.delete {
            v.push("Delete");
        }
        if v.is_empty() {
            v.push("None");
        }
        v
    }
}

/// Does the caller see this task at all? Tasks a caller does not see are "not found" to it.
pub fn can_see(caller: &Caller, task: &Task) -> bool {
    match caller.role {
        Role::Admin | Role::Worker => true,
        Role::User => !task.is_system && task.associate_id == caller.associate_id,
    }
}

/// [`can_see`] for a whole list: whose tasks the caller may list. `None` = every task;
/// `Some(id)` = only that associate's tasks that are not system tasks (what the stores' `owner`
/// filter selects).
pub fn list_owner(caller: &Caller) -> Option<i32> {
    if caller.sees_all() { None } else { Some(caller.associate_id) }
}

/// Whom a new task belongs to, or why the caller may not create it. `for_associate` is the owner
/// the request names, if any. System tasks belong to no one (0), and internal tasks leave no
/// events: both are for workers and admins, so a user cannot hide what it runs.
pub fn owner_of_new_task(caller: &Caller, task: &NewTask, for_associate: Option<i32>) -> Result<i32, DomainError> {
    if caller.read_only {
        return Err(DomainError::Forbidden { reason: Reason::ReadOnlyTokenMayNotCreate });
    }
    if task.is_internal && !caller.sees_all() {
        return Err(DomainError::Forbidden { reason: Reason::OnlyWorkersMayCreateInternalTasks });
    }
    if task.is_system {
        if !caller.sees_all() {
            return Err(DomainError::Forbidden { reason: Reason::OnlyWorkersMayCreateSystemTasks });
        }
        return Ok(0);
    }
    match for_associate {
        Some(other) if other != caller.associate_id => {
            if !caller.is_admin() {
                return Err(DomainError::Forbidden { reason: Reason::OnlyAdminsMayCreateForOthers });
            }
            Ok(other)
        }
        _ => Ok(caller.associate_id),
    }
}

pub fn rights_for(caller: &Caller, task: &Task) -> TaskRights {
    if !can_see(caller, task) {
        return TaskRights::NONE;
    }
    if caller.read_only {
        // A read-scope token: TableRight and FieldProperties must not promise a PUT it cannot make.
        return TaskRights { select: true, update: false, delete: false };
    }
    let owns = !task.is_system && task.associate_id == caller.associate_id;
    let update = true; // everyone who sees a task may update it (workers finish any task)
    let may_delete = match caller.role {
        Role::Admin => true,
        Role::User | Role::Worker => owns,
    };
    // A task held by a worker must be stopped before it can be deleted.
    TaskRights { select: true, update, delete: may_delete && !task.state.is_active() }
}

/// The node list shows where every process listens and what it runs: admins only.
pub fn may_list_nodes(caller: &Caller) -> Result<(), DomainError> {
    if caller.is_admin() { Ok(()) } else { Err(DomainError::Forbidden { reason: Reason::OnlyAdminsMayListNodes }) }
}

/// Pausing a definition stops its work for everyone: admins only.
pub fn may_pause_definitions(caller: &Caller) -> Result<(), DomainError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(DomainError::Forbidden { reason: Reason::OnlyAdminsMayPauseDefinitions })
    }
}

/// Properties PUT may change (when the caller may update the task at all).
pub const UPDATABLE_PROPERTIES: [&str; 4] = ["State", "Description", "Response", "Request"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BatchTaskState, Caller};

    fn task(owner: i32, system: bool, state: BatchTaskState) -> Task {
        Task { is_system: system, ..Task::fixture(1, "t", owner, state) }
    }

    #[test]
    fn the_rights_matrix() {
        let user = Caller::new(10, "u", Role::User);
        let worker = Caller::new(20, "w", Role::Worker);
        let admin = Caller::new(30, "a", Role::Admin);
        let new = BatchTaskState::New;
        let all = TaskRights { select: true, update: true, delete: true };
        let no_delete = TaskRights { select: true, update: true, delete: false };
        // (caller, task, expected)
        let cases = [
            (&user, task(10, false, new), all),
            (&user, task(11, false, new), TaskRights::NONE),
            (&user, task(0, true, new), TaskRights::NONE),
            // A user's id on a system task does not make it theirs.
            (&user, task(10, true, new), TaskRights::NONE),
            (&worker, task(20, false, new), all),
            (&worker, task(10, false, new), no_delete),
            (&worker, task(0, true, new), no_delete),
            (&admin, task(10, false, new), all),
            (&admin, task(0, true, new), all),
            (&admin, task(0, true, BatchTaskState::Started), no_delete),
        ];
        for (caller, t, want) in cases {
            assert_eq!(rights_for(caller, &t), want, "{caller:?} on {t:?}");
            assert_eq!(can_see(caller, &t), want.select);
        }
        let reader = Caller { read_only: true, ..admin.clone() };
        assert_eq!(
            rights_for(&reader, &task(30, false, new)),
            TaskRights { select: true, update: false, delete: false }
        );
    }

    #[test]
    fn only_admins_list_the_nodes_a_read_token_of_one_too() {
        let admin = Caller::new(30, "a", Role::Admin);
        assert_eq!(may_list_nodes(&admin), Ok(()));
        assert_eq!(may_list_nodes(&Caller { read_only: true, ..admin }), Ok(()), "listing is a read");
        for role in [Role::User, Role::Worker] {
            assert_eq!(
                may_list_nodes(&Caller::new(1, "x", role)),
                Err(DomainError::Forbidden { reason: Reason::OnlyAdminsMayListNodes })
            );
        }
    }
}
