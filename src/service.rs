//! The application layer: what each Batch operation does, for a given caller, over the store.
//! REST handlers and agent handlers both call these, so the two surfaces cannot drift apart.
//! No HTTP here: inputs are domain values, outputs are domain values or typed errors.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::rights::{can_see, rights_for};
use crate::domain::{BatchTaskState, Caller, CancellationBehaviour, DomainError, NewTask, Task, TaskUpdate};
use crate::store::{Store, StoreError, TaskFilter};

/// Conditions a write is made under (`If-Match`, `If-Unmodified-Since`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Precondition {
    /// ETags; `*` matches any.
    pub if_match: Option<Vec<String>>,
    pub if_unmodified_since: Option<DateTime<Utc>>,
}

impl Precondition {
    pub fn check(&self, task: &Task) -> Result<(), DomainError> {
        if let Some(tags) = &self.if_match {
            let etag = task.etag();
            let weak = format!("W/{etag}");
            if !tags.iter().any(|t| t == "*" || *t == etag || *t == weak) {
                return Err(DomainError::Stale { id: task.id.into() });
            }
        }
        if let Some(since) = self.if_unmodified_since {
            // HTTP dates have whole seconds.
            if task.updated.timestamp() > since.timestamp() {
                return Err(DomainError::Stale { id: task.id.into() });
            }
        }
        Ok(())
    }
}

/// Computes an update from the stored task, for this caller (see [`TaskService::update_with`]).
pub type UpdateFromTask = Box<dyn FnOnce(&Caller, &Task) -> Result<TaskUpdate, DomainError> + Send>;

/// What a stop request did.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    /// The task is stopped (or told to stop). `warning` for `CancelWithWarning` tasks.
    Stopped { task: Task, warning: bool },
    /// Finished already, or `CannotCancel`: nothing happened.
    Refused,
}

#[derive(Clone)]
pub struct TaskService {
    store: Arc<dyn Store>,
    strict_definitions: bool,
    known_definitions: Arc<Vec<String>>,
}

fn visible(caller: &Caller, task: &Task) -> Result<(), DomainError> {
    if can_see(caller, task) { Ok(()) } else { Err(DomainError::TaskNotFound { id: task.id.into() }) }
}

impl TaskService {
    pub fn new(store: Arc<dyn Store>, strict_definitions: bool, known_definitions: Vec<String>) -> TaskService {
        TaskService { store, strict_definitions, known_definitions: Arc::new(known_definitions) }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates a task. `associate_id` is the owner the body asked for (admins may name anyone).
    pub async fn create(
        &self,
        caller: &Caller,
        mut task: NewTask,
        associate_id: Option<i32>,
        cancellation_given: bool,
    ) -> Result<Task, StoreError> {
        if caller.read_only {
            return Err(DomainError::Forbidden { reason: "a read-only token may not create tasks" }.into());
        }
        if self.strict_definitions && !self.known_definitions.iter().any(|d| d == &task.name) {
            return Err(DomainError::UnknownDefinition { name: task.name }.into());
        }
        if task.is_system {
            if !caller.sees_all() {
                return Err(DomainError::Forbidden { reason: "only workers and admins may create system tasks" }.into());
            }
            task.associate_id = 0;
        } else {
            task.associate_id = match associate_id {
                Some(other) if other != caller.associate_id => {
                    if !caller.is_admin() {
                        return Err(DomainError::Forbidden {
                            reason: "only admins may create tasks for another associate",
                        }
                        .into());
                    }
                    other
                }
                _ => caller.associate_id,
            };
        }
        if !cancellation_given {
            task.cancellation = CancellationBehaviour::default();
        }
        task.validate()?;
        self.store.create_task(task, now()).await
    }

    /// The task, if it exists and the caller may see it.
    pub async fn get(&self, caller: &Caller, id: i32) -> Result<Option<Task>, StoreError> {
        Ok(self.store.get_task(id).await?.filter(|t| can_see(caller, t)))
    }

    /// Tasks matching `filter`, limited to what the caller may see.
    pub async fn find(&self, caller: &Caller, mut filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        filter.owner = caller.owner_filter();
        self.store.find_tasks(&filter).await
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: i32,
        update: TaskUpdate,
        pre: Precondition,
    ) -> Result<Task, StoreError> {
        update.validate()?;
        let caller = caller.clone();
        let now = now();
        self.store
            .modify_task(
                id,
                now,
                Box::new(move |task| {
                    visible(&caller, task)?;
                    if !rights_for(&caller, task).update {
                        return Err(DomainError::Forbidden { reason: "you may not update this task" });
                    }
                    pre.check(task)?;
                    update.apply(task, now)
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))
    }

    /// An update computed from the stored task inside the write transaction (JSON Patch and Merge
    /// Patch bodies), so the patch applies to exactly the version it changes. Then the same rules
    /// as [`TaskService::update`]: visibility, rights, preconditions, state moves.
    pub async fn update_with(
        &self,
        caller: &Caller,
        id: i32,
        make: UpdateFromTask,
        pre: Precondition,
    ) -> Result<Task, StoreError> {
        let caller = caller.clone();
        let now = now();
        self.store
            .modify_task(
                id,
                now,
                Box::new(move |task| {
                    visible(&caller, task)?;
                    if !rights_for(&caller, task).update {
                        return Err(DomainError::Forbidden { reason: "you may not update this task" });
                    }
                    pre.check(task)?;
                    let update = make(&caller, task)?;
                    update.apply(task, now)
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))
    }

    pub async fn stop(&self, caller: &Caller, id: i32, pre: Precondition) -> Result<StopOutcome, StoreError> {
        let caller = caller.clone();
        let now = now();
        let by = caller.name.clone();
        let result = self
            .store
            .modify_task(
                id,
                now,
                Box::new(move |task| {
                    visible(&caller, task)?;
                    if !rights_for(&caller, task).update {
                        return Err(DomainError::Forbidden { reason: "you may not stop this task" });
                    }
                    pre.check(task)?;
                    if task.state.is_finished() || task.cancellation == CancellationBehaviour::CannotCancel {
                        return Err(DomainError::StopRefused);
                    }
                    let mut next = task.clone();
                    next.state = BatchTaskState::Failed;
                    next.result = Some(cancelled_text(&by));
                    Ok(next)
                }),
            )
            .await;
        match result {
            Ok(task) => {
                let warning = task.cancellation == CancellationBehaviour::CancelWithWarning;
                Ok(StopOutcome::Stopped { task, warning })
            }
            Err(StoreError::Rejected(DomainError::StopRefused)) => Ok(StopOutcome::Refused),
            Err(e) => Err(not_found_as(e, id)),
        }
    }

    pub async fn delete(&self, caller: &Caller, id: i32, pre: Precondition) -> Result<(), StoreError> {
        let caller = caller.clone();
        self.store
            .delete_task(
                id,
                Box::new(move |task| {
                    visible(&caller, task)?;
                    pre.check(task)?;
                    if task.state.is_active() {
                        return Err(DomainError::TaskBusy { id: task.id.into(), state: task.state });
                    }
                    if !rights_for(&caller, task).delete {
                        return Err(DomainError::Forbidden { reason: "you may not delete this task" });
                    }
                    Ok(())
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))
    }
}

/// The text a cancelled task's `Result` gets. English on purpose: it is stored data, not a
/// message to the current caller.
pub fn cancelled_text(by: &str) -> String {
    format!("Cancelled by {by}")
}

/// The clock, at the microsecond precision the stores keep, so an answer equals what is stored.
pub fn now() -> DateTime<Utc> {
    crate::domain::time::truncate_micros(Utc::now())
}

fn not_found_as(e: StoreError, id: i32) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::Rejected(DomainError::TaskNotFound { id: id.into() }),
        other => other,
    }
}
