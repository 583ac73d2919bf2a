//! What a caller may do with a task. `TableRight` and `FieldProperties` on the wire come from here,
//! and so do the checks the handlers make, so the two cannot disagree.

use super::associate::{Caller, Role};
use super::task::Task;

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

pub fn rights_for(caller: &Caller, task: &Task) -> TaskRights {
    if !can_see(caller, task) {
        return TaskRights::NONE;
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

/// Properties PUT may change (when the caller may update the task at all).
pub const UPDATABLE_PROPERTIES: [&str; 4] = ["State", "Description", "Response", "Request"];
