//! The application layer: what each Batch operation does, for a given caller, over the store.
//! REST handlers and agent handlers both call these, so the two surfaces cannot drift apart.
//! No HTTP here: inputs are domain values, outputs are domain values or typed errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};

use crate::domain::dependency::{self, AFTER};
use crate::domain::idempotency::KeyedCreate;
use crate::domain::node::{self, NodeStatus};
use crate::domain::rights::{
    Reason, can_see, list_owner, may_list_nodes, may_pause_definitions, owner_of_new_task, rights_for,
};
use crate::domain::{BatchTaskState, Caller, CancellationBehaviour, DomainError, NewTask, Task, TaskUpdate};
use crate::runner::{Definitions, Runner};
use crate::store::runner::{Actor, StopResult, TaskEvent};
use crate::store::{
    BackendError, CreatedOnce, DefinitionStatus, Dependencies, ListQuery, ListRow, MinuteStats, STATS_MAX_MINUTES,
    Store, StoreError, TaskFilter, TaskStats,
};

/// Entity-tags from `If-Match` or `If-None-Match`, already parsed by the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    /// `*`: any current version of the task.
    Any,
    /// The listed tags (possibly none).
    List(Vec<EntityTag>),
}

/// One entity-tag: `"3-7"` or, weak, `W/"3-7"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    /// The opaque-tag, quotes included (`"3-7"`): what [`Task::etag`] returns.
    pub opaque: String,
}

impl EntityTags {
    /// RFC 9110 §8.8.3.2 strong comparison, as `If-Match` needs: a weak tag never matches.
    fn matches_strong(&self, task: &Task) -> bool {
        match self {
            EntityTags::Any => true,
            EntityTags::List(tags) => {
                let etag = task.etag();
                tags.iter().any(|t| !t.weak && t.opaque == etag)
            }
        }
    }

    /// Weak comparison, as `If-None-Match` needs: `W/"3-7"` matches `"3-7"`.
    fn matches_weak(&self, task: &Task) -> bool {
        match self {
            EntityTags::Any => true,
            EntityTags::List(tags) => {
                let etag = task.etag();
                tags.iter().any(|t| t.opaque == etag)
            }
        }
    }
}

/// The conditional headers of a request, parsed; a date that was not a valid date is `None`
/// (RFC 9110 §13.1.3 and §13.1.4: such a header is ignored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Precondition {
    pub if_match: Option<EntityTags>,
    pub if_unmodified_since: Option<DateTime<Utc>>,
    pub if_none_match: Option<EntityTags>,
    /// Read by [`Precondition::check_read`] only: RFC 9110 keeps it to GET and HEAD.
    pub if_modified_since: Option<DateTime<Utc>>,
}

/// What a read answers once its preconditions are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The whole task (200).
    Changed,
    /// The client's copy is current (304).
    NotModified,
}

impl Precondition {
    /// For a write: RFC 9110 §13.2.2 steps 1 to 3. A failure is a 412.
    pub fn check(&self, task: &Task) -> Result<(), DomainError> {
        self.check_version(task)?;
        if self.if_none_match.as_ref().is_some_and(|tags| tags.matches_weak(task)) {
            return Err(DomainError::NoneMatched { id: task.id.into() });
        }
        Ok(())
    }

    /// For a read (GET, HEAD): RFC 9110 §13.2.2 steps 1 to 4; If-None-Match and
    /// If-Modified-Since answer 304 instead of 412.
    pub fn check_read(&self, task: &Task) -> Result<Freshness, DomainError> {
        self.check_version(task)?;
        let current = match (&self.if_none_match, self.if_modified_since) {
            (Some(tags), _) => tags.matches_weak(task),
            // HTTP dates have whole seconds.
            (None, Some(since)) => task.updated.timestamp() <= since.timestamp(),
            (None, None) => false,
        };
        Ok(if current { Freshness::NotModified } else { Freshness::Changed })
    }

    /// Steps 1 and 2: If-Match, else If-Unmodified-Since.
    fn check_version(&self, task: &Task) -> Result<(), DomainError> {
        let holds = match (&self.if_match, self.if_unmodified_since) {
            (Some(tags), _) => tags.matches_strong(task),
            // HTTP dates have whole seconds.
            (None, Some(since)) => task.updated.timestamp() <= since.timestamp(),
            (None, None) => true,
        };
        if holds { Ok(()) } else { Err(DomainError::Stale { id: task.id.into() }) }
    }
}

/// Computes an update from a snapshot of the task, for this caller (see
/// [`TaskService::update_with`]). Called again on a newer snapshot when the task changed.
pub type UpdateFromTask = Arc<dyn Fn(&Caller, &Task) -> Result<TaskUpdate, DomainError> + Send + Sync>;

/// How often [`TaskService::update_with`] computes its update again when the task keeps
/// changing under it before giving up (409). Each retry follows a write that succeeded.
const UPDATE_ATTEMPTS: usize = 4;

/// How long the health ping waits for the database. A healthy one answers in about a
/// millisecond; past this the node is not ready (and probes, often given 1 s, still get an answer).
pub const PING_WITHIN: std::time::Duration = std::time::Duration::from_millis(500);

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
    // -- runner --
    definitions: Arc<Definitions>,
    runner: Option<Runner>,
}

fn visible(caller: &Caller, task: &Task) -> Result<(), DomainError> {
    if can_see(caller, task) { Ok(()) } else { Err(DomainError::TaskNotFound { id: task.id.into() }) }
}

/// Whether this caller may update this version of the task, under these preconditions.
fn may_update(caller: &Caller, task: &Task, pre: &Precondition) -> Result<(), DomainError> {
    visible(caller, task)?;
    if !rights_for(caller, task).update {
        return Err(DomainError::Forbidden { reason: Reason::MayNotUpdateTask });
    }
    pre.check(task)
}

impl TaskService {
    pub fn new(store: Arc<dyn Store>, strict_definitions: bool, known_definitions: Vec<String>) -> TaskService {
        TaskService {
            store,
            strict_definitions,
            known_definitions: Arc::new(known_definitions),
            definitions: Arc::new(Definitions::default()),
            runner: None,
        }
    }

    /// Tasks are run by `runner` (which also knows the definitions).
    pub fn with_runner(mut self, runner: Runner) -> TaskService {
        self.definitions = runner.definitions().clone();
        self.known_definitions = Arc::new(self.definitions.names());
        self.runner = Some(runner);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn runner(&self) -> Option<&Runner> {
        self.runner.as_ref()
    }

    /// The task's event log, if the caller may see the task. Admins also read the logs of
    /// deleted tasks.
    pub async fn events(&self, caller: &Caller, id: i32) -> Result<Vec<TaskEvent>, StoreError> {
        let not_found = || StoreError::from(DomainError::TaskNotFound { id: id.into() });
        match self.store.get_task(id).await? {
            Some(t) if can_see(caller, &t) => self.store.task_events(id).await,
            Some(_) => Err(not_found()),
            None if caller.is_admin() => {
                let events = self.store.task_events(id).await?;
                if events.is_empty() { Err(not_found()) } else { Ok(events) }
            }
            None => Err(not_found()),
        }
    }

    /// Creates a task. `associate_id` is the owner the body asked for (admins may name anyone).
    /// With an `Idempotency-Key` (`key`), a repeat of the caller's create within the window
    /// answers the first task's id and creates nothing ([`crate::domain::idempotency`]).
    pub async fn create(
        &self,
        caller: &Caller,
        mut task: NewTask,
        associate_id: Option<i32>,
        cancellation_given: bool,
        priority_given: bool,
        key: Option<String>,
    ) -> Result<Created, StoreError> {
        task.associate_id = owner_of_new_task(caller, &task, associate_id)?;
        if self.strict_definitions && !self.known_definitions.iter().any(|d| d == &task.name) {
            return Err(DomainError::UnknownDefinition { name: task.name }.into());
        }
        if !cancellation_given {
            task.cancellation =
                self.definitions.get(&task.name).map_or(CancellationBehaviour::default(), |d| d.cancellation);
        }
        if !priority_given {
            task.priority = self.definitions.get(&task.name).map_or(0, |d| d.priority);
        }
        task.validate()?;
        self.check_after(caller, &task.after).await?;
        let def = self.definitions.get(&task.name);
        task.unique_key = def.and_then(|d| d.unique_key(task.parameters.as_ref()));
        let unique = def.and_then(|d| d.unique.clone());
        let name = task.name.clone();
        let created = self.create_keyed(caller, task, key).await;
        // A live task of the same unique combination: the create answers it, and says so.
        match (created, unique) {
            (Err(StoreError::Rejected(DomainError::UniqueHeld { holder: Some(id) })), Some(u)) => {
                Ok(Created { id, replayed: false, warning: Some(crate::domain::unique::warning(id, &name, u.names())) })
            }
            (other, _) => other,
        }
    }

    async fn create_keyed(&self, caller: &Caller, task: NewTask, key: Option<String>) -> Result<Created, StoreError> {
        if let Some(key) = key {
            let keyed = KeyedCreate {
                associate_id: caller.associate_id,
                request_hash: crate::domain::idempotency::request_hash(&task),
                key,
            };
            // No claim in the create's transaction here: the key row is that transaction's point.
            return Ok(match self.store.create_task_once(task, now(), &keyed).await? {
                CreatedOnce::Created(t) => {
                    if let Some(r) = &self.runner {
                        r.wake();
                    }
                    Created { id: t.id, replayed: false, warning: None }
                }
                CreatedOnce::Replayed(id) => Created { id, replayed: true, warning: None },
            });
        }
        self.create_now(task).await.map(|t| Created { id: t.id, replayed: false, warning: None })
    }

    /// A create's `After` names only tasks that exist and the caller may see; the first that
    /// does not is named in the 400 (a task the caller may not see reads as unknown).
    async fn check_after(&self, caller: &Caller, after: &[i32]) -> Result<(), StoreError> {
        if after.is_empty() {
            return Ok(());
        }
        let found = self.store.tasks_by_id(after).await?;
        match after.iter().find(|id| !found.iter().any(|t| t.id == **id && can_see(caller, t))) {
            Some(id) => Err(DomainError::UnknownValue { field: AFTER, value: id.to_string() }.into()),
            None => Ok(()),
        }
    }

    /// Task `id`'s dependencies both ways, as far as the caller may see them: a dependency since
    /// deleted shows by id only (the caller named it); `Before` lists the first
    /// [`dependency::BEFORE_MAX`] of those the caller may see.
    pub async fn dependencies(&self, caller: &Caller, id: i32) -> Result<Dependencies, StoreError> {
        if self.get(caller, id).await?.is_none() {
            return Err(DomainError::TaskNotFound { id: id.into() }.into());
        }
        let mut deps = self.store.task_dependencies(id, list_owner(caller), dependency::BEFORE_MAX).await?;
        deps.after.retain(|e| e.task.as_ref().is_none_or(|t| can_see(caller, t)));
        deps.before.retain(|t| can_see(caller, t));
        Ok(deps)
    }

    async fn create_now(&self, task: NewTask) -> Result<Task, StoreError> {
        let Some(runner) = &self.runner else {
            return self.store.create_task(task, now()).await;
        };
        // An idle node claims the task in the transaction that creates it: it starts as soon as
        // it is durable, with no second commit in between.
        if let Some((permit, claim)) = runner.reserve_for_create(&task.name) {
            let (created, lease) = self.store.create_and_claim(task, now(), &claim).await?;
            match lease {
                Some(lease) => {
                    let mut running = created.clone();
                    running.state = crate::domain::BatchTaskState::Started;
                    runner.dispatch(running, lease, permit);
                }
                None => {
                    drop(permit);
                    runner.wake();
                }
            }
            return Ok(created);
        }
        let created = self.store.create_task(task, now()).await?;
        runner.wake();
        Ok(created)
    }

    /// The task, if it exists and the caller may see it.
    pub async fn get(&self, caller: &Caller, id: i32) -> Result<Option<Task>, StoreError> {
        Ok(self.store.get_task(id).await?.filter(|t| can_see(caller, t)))
    }

    /// Tasks matching `filter`, limited to what the caller may see (the agents' lists).
    pub async fn find(&self, caller: &Caller, mut filter: TaskFilter) -> Result<Vec<Task>, StoreError> {
        filter.owner = list_owner(caller);
        self.store.find_tasks(&filter).await
    }

    /// The OData list, limited to what the caller may see (whatever `query.owner` said).
    pub async fn list(&self, caller: &Caller, mut query: ListQuery) -> Result<Vec<ListRow>, StoreError> {
        query.owner = list_owner(caller);
        self.store.list_tasks(&query).await
    }

    /// How many tasks are in each state. The counts cover every task, so only callers who see
    /// every task may read them.
    pub async fn count_by_state(&self, caller: &Caller) -> Result<Vec<(BatchTaskState, i64)>, StoreError> {
        if !caller.sees_all() {
            return Err(DomainError::Forbidden { reason: Reason::OnlyWorkersMayReadMetrics }.into());
        }
        self.store.count_tasks_by_state().await
    }

    /// The nodes sharing the database: the live ones and those that died within the hour. Admins
    /// only. The rows are read newest first and bounded; the domain says which are listed.
    pub async fn nodes(&self, caller: &Caller) -> Result<Vec<NodeStatus>, StoreError> {
        may_list_nodes(caller)?;
        let now = now();
        let rows = self.store.list_nodes(node::kept_since(now), node::MAX_LISTED).await?;
        Ok(node::listing(rows, now))
    }

    /// The dashboard's figures of the tasks the caller may see: state counts now, and the
    /// finished tasks of the last `minutes` whole minutes, this one included (at most
    /// [`STATS_MAX_MINUTES`]). Answers where the window starts, with the figures.
    pub async fn stats(&self, caller: &Caller, minutes: u32) -> Result<(DateTime<Utc>, TaskStats), StoreError> {
        let minutes = i64::from(minutes.clamp(1, STATS_MAX_MINUTES));
        let this_minute = now().timestamp().div_euclid(60);
        let since = MinuteStats::minute_start(this_minute - (minutes - 1));
        Ok((since, self.store.task_stats(since, list_owner(caller)).await?))
    }

    /// Whether the database answers a trivial query within [`PING_WITHIN`].
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping(PING_WITHIN).await
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: i32,
        update: TaskUpdate,
        pre: Precondition,
    ) -> Result<Task, StoreError> {
        update.validate()?;
        self.write_update(caller, id, update, pre, None).await
    }

    /// An update that depends on the task (a JSON Patch or Merge Patch). It is computed outside
    /// the store's write transaction, from a snapshot, because computing it can cost far more
    /// than a write and the SQLite store has one writer; the write then happens only if the task
    /// is still that version, so the patch applies to exactly the version it changes. A newer
    /// version means computing again, at most [`UPDATE_ATTEMPTS`] times.
    pub async fn update_with(
        &self,
        caller: &Caller,
        id: i32,
        make: UpdateFromTask,
        pre: Precondition,
    ) -> Result<Task, StoreError> {
        for attempt in 1..=UPDATE_ATTEMPTS {
            let not_found = || StoreError::from(DomainError::TaskNotFound { id: id.into() });
            // Read from the database, not the task cache: the preconditions are checked on it,
            // and a cached copy a moment behind another node's write would refuse with a 412.
            let snapshot = self.store.tasks_by_id(&[id]).await?.pop().ok_or_else(not_found)?;
            // Refusals first, so a task the caller may not touch costs no computing.
            may_update(caller, &snapshot, &pre)?;
            let version = snapshot.version;
            let (who, make) = (caller.clone(), make.clone());
            let update = tokio::task::spawn_blocking(move || make(&who, &snapshot))
                .await
                .map_err(|e| StoreError::Backend(BackendError::with_context("computing an update failed", e)))??;
            match self.write_update(caller, id, update, pre.clone(), Some(version)).await {
                Err(StoreError::Rejected(DomainError::Contended { .. })) if attempt < UPDATE_ATTEMPTS => continue,
                done => return done,
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The one update path: the update is checked against visibility, rights and preconditions
    /// on the stored row inside the write transaction (and, with `version`, against the version
    /// it was computed from), recorded as an event, and the runner hears about tasks that left
    /// its hands.
    async fn write_update(
        &self,
        caller: &Caller,
        id: i32,
        update: TaskUpdate,
        pre: Precondition,
        version: Option<i64>,
    ) -> Result<Task, StoreError> {
        let actor = Actor::associate(caller.associate_id, format!("updated by {}", caller.name));
        let caller = caller.clone();
        let now = now();
        // Whether the edit moved the task to another state, told out of the store's closure.
        let moved = Arc::new(AtomicBool::new(false));
        let told = moved.clone();
        let task = self
            .store
            .modify_task(
                id,
                now,
                actor,
                Box::new(move |task| {
                    if version.is_some_and(|v| v != task.version) {
                        return Err(DomainError::Contended { id: task.id.into() });
                    }
                    may_update(&caller, task, &pre)?;
                    let next = update.apply(task, now)?;
                    told.store(next.state != task.state, Ordering::Relaxed);
                    Ok(next)
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))?;
        if let Some(r) = &self.runner {
            // Moved by hand out of Aquired/Started: whoever ran it lost its lease.
            if !task.state.is_active() {
                r.lease_revoked(task.id);
            }
            // Only a move to New gives the claim loop work: an edit of a task that was New
            // already leaves it as claimable as it was, and a claim per PUT cost a write job.
            if task.state == crate::domain::BatchTaskState::New && moved.load(Ordering::Relaxed) {
                r.wake();
            }
        }
        Ok(task)
    }

    /// Stops a task. `New`/`Aquired` tasks and `Started` tasks no runner holds fail at once; a
    /// `Started` task under a lease is told to stop (its runner ends it `Failed`).
    pub async fn stop(&self, caller: &Caller, id: i32, pre: Precondition) -> Result<StopOutcome, StoreError> {
        let by = caller.name.clone();
        let actor = Actor::associate(caller.associate_id, format!("stop by {by}"));
        let caller = caller.clone();
        let result = self
            .store
            .request_stop(
                id,
                now(),
                actor,
                by.clone(),
                Box::new(move |task| {
                    visible(&caller, task)?;
                    if !rights_for(&caller, task).update {
                        return Err(DomainError::Forbidden { reason: Reason::MayNotStopTask });
                    }
                    pre.check(task)
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))?;
        let stopped = |task: Task| {
            let warning = task.cancellation == CancellationBehaviour::CancelWithWarning;
            StopOutcome::Stopped { task, warning }
        };
        Ok(match result {
            StopResult::Failed(task) => {
                if let Some(r) = &self.runner {
                    r.lease_revoked(task.id);
                }
                stopped(task)
            }
            StopResult::Requested { task, .. } => {
                // In-process on this node; other nodes see it at their next stop poll.
                if let Some(r) = &self.runner {
                    r.notify_stop(task.id, &by);
                }
                stopped(task)
            }
            StopResult::Refused(_) => StopOutcome::Refused,
        })
    }

    // -- scheduling --

    /// Every definition row's pause flag, schedule and task counts; the counts cover what the
    /// caller may see (a user's own tasks; workers and admins every task).
    pub async fn definition_statuses(&self, caller: &Caller) -> Result<Vec<DefinitionStatus>, StoreError> {
        self.store.definition_statuses(list_owner(caller)).await
    }

    /// Pauses or resumes a definition this server runs, on every node. Admins only. Answers
    /// whether anything changed (pausing a paused definition does not).
    pub async fn set_paused(&self, caller: &Caller, name: &str, paused: bool) -> Result<bool, StoreError> {
        may_pause_definitions(caller)?;
        let unknown = || StoreError::from(DomainError::DefinitionNotFound { name: name.to_owned() });
        if self.definitions.get(name).is_none() {
            return Err(unknown());
        }
        let changed = match self.store.set_paused(name, paused).await {
            Err(StoreError::NotFound) => return Err(unknown()),
            other => other?,
        };
        tracing::info!(name, paused, changed, by = %caller.name, "definition pause changed");
        if let Some(r) = self.runner.as_ref().filter(|_| !paused) {
            r.wake();
        }
        Ok(changed)
    }

    /// `Failed → New` by hand: the task runs again, its run count and event log kept (the rule
    /// is [`crate::domain::run::retry`]). The same rights as a stop.
    pub async fn retry(&self, caller: &Caller, id: i32, pre: Precondition) -> Result<Task, StoreError> {
        let actor = Actor::associate(caller.associate_id, format!("retried by {}", caller.name));
        let caller = caller.clone();
        let task = self
            .store
            .retry_task(
                id,
                now(),
                actor,
                Box::new(move |task| {
                    visible(&caller, task)?;
                    if !rights_for(&caller, task).update {
                        return Err(DomainError::Forbidden { reason: Reason::MayNotRetryTask });
                    }
                    pre.check(task)
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))?;
        if let Some(r) = &self.runner {
            r.wake();
        }
        Ok(task)
    }

    /// One action on every task `filter` matches among those the caller sees, each under the
    /// caller's rights as if asked one by one: a task the action does not apply to (not Failed
    /// for a retry, running for a delete, finished for a stop, another's) is skipped. At most
    /// [`BULK_MAX`] tasks: a filter matching more is refused before anything is done.
    pub async fn bulk(
        &self,
        caller: &Caller,
        action: BulkAction,
        filter: crate::domain::query::Expr,
        dry_run: bool,
    ) -> Result<BulkOutcome, StoreError> {
        let query = ListQuery {
            filter: Some(filter),
            order_by: Vec::new(),
            top: u32::try_from(BULK_MAX + 1).unwrap_or(u32::MAX),
            skip: 0,
            owner: list_owner(caller),
        };
        let ids: Vec<i32> = self.store.list_tasks(&query).await?.iter().map(|r| r.task.id).collect();
        if ids.len() > BULK_MAX {
            return Err(DomainError::BulkTooMany { max: BULK_MAX }.into());
        }
        let mut outcome = BulkOutcome { matched: ids.len(), done: 0 };
        if dry_run {
            return Ok(outcome);
        }
        for batch in ids.chunks(BULK_BATCH) {
            for &id in batch {
                let pre = Precondition::default();
                let done = match action {
                    BulkAction::Stop => {
                        self.stop(caller, id, pre).await.map(|o| matches!(o, StopOutcome::Stopped { .. }))
                    }
                    BulkAction::Delete => self.delete(caller, id, pre).await.map(|()| true),
                    BulkAction::Retry => self.retry(caller, id, pre).await.map(|_| true),
                };
                match done {
                    Ok(true) => outcome.done += 1,
                    // Refused for this task (its state, the caller's rights, gone meanwhile).
                    Ok(false) | Err(StoreError::Rejected(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            // Other requests get the store between batches.
            tokio::task::yield_now().await;
        }
        tracing::info!(action = ?action, matched = outcome.matched, done = outcome.done, by = %caller.name, "bulk action");
        Ok(outcome)
    }

    pub async fn delete(&self, caller: &Caller, id: i32, pre: Precondition) -> Result<(), StoreError> {
        let actor = Actor::associate(caller.associate_id, format!("deleted by {}", caller.name));
        let caller = caller.clone();
        self.store
            .delete_task(
                id,
                now(),
                actor,
                Box::new(move |task| {
                    visible(&caller, task)?;
                    pre.check(task)?;
                    if task.state.is_active() {
                        return Err(DomainError::TaskBusy { id: task.id.into(), state: task.state });
                    }
                    if !rights_for(&caller, task).delete {
                        return Err(DomainError::Forbidden { reason: Reason::MayNotDeleteTask });
                    }
                    Ok(())
                }),
            )
            .await
            .map_err(|e| not_found_as(e, id))
    }
}

/// A create's answer: the task's id, and whether it is an earlier create's (an
/// `Idempotency-Key` replay, nothing created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: i32,
    pub replayed: bool,
    /// The `Warning` header of a create that answered the live task holding its unique key
    /// (nothing created).
    pub warning: Option<String>,
}

/// What a bulk action does to each task it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Stop,
    Delete,
    Retry,
}

impl BulkAction {
    pub fn parse(word: &str) -> Option<BulkAction> {
        match word.to_ascii_lowercase().as_str() {
            "stop" => Some(BulkAction::Stop),
            "delete" => Some(BulkAction::Delete),
            "retry" => Some(BulkAction::Retry),
            _ => None,
        }
    }
}

/// The most tasks one bulk action may match; past it the request is refused (400), so a
/// mistyped filter cannot touch the whole table. Narrow the filter or repeat the action.
pub const BULK_MAX: usize = 1000;
/// Tasks acted on between two yields to other requests.
const BULK_BATCH: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Tasks the filter matched among those the caller sees.
    pub matched: usize,
    /// Of those, the tasks the action was carried out on.
    pub done: usize,
}

/// The text a cancelled task's `Result` gets. English on purpose: it is stored data, not a
/// message to the current caller.
pub fn cancelled_text(by: &str) -> String {
    crate::domain::definition::results::cancelled(by)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn callers() -> [Caller; 4] {
        [
            Caller::new(10, "u", Role::User),
            Caller::new(20, "w", Role::Worker),
            Caller::new(30, "a", Role::Admin),
            Caller { read_only: true, ..Caller::new(10, "u", Role::User) },
        ]
    }

    #[test]
    fn the_list_rule_selects_what_can_see_allows() {
        let tasks = [
            Task::fixture(1, "t", 10, BatchTaskState::New),
            Task::fixture(2, "t", 11, BatchTaskState::New),
            Task { is_system: true, ..Task::fixture(3, "t", 10, BatchTaskState::New) },
            Task { is_system: true, ..Task::fixture(4, "t", 0, BatchTaskState::Succeeded) },
        ];
        for caller in callers() {
            let filter = TaskFilter { owner: list_owner(&caller), ..TaskFilter::default() };
            for t in &tasks {
                assert_eq!(filter.matches(t), can_see(&caller, t), "{caller:?} on task {}", t.id);
            }
        }
    }

    #[tokio::test]
    async fn lists_and_finds_hold_only_what_the_caller_may_see() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sqlite::SqliteStore::open(dir.path().join("t.db").to_str().unwrap()).unwrap());
        let service = TaskService::new(store.clone(), false, Vec::new());
        let new = |owner: i32, system: bool| NewTask {
            name: "t".into(),
            associate_id: owner,
            is_system: system,
            ..NewTask::default()
        };
        let mine = store.create_task(new(10, false), now()).await.unwrap();
        store.create_task(new(11, false), now()).await.unwrap();
        store.create_task(new(10, true), now()).await.unwrap();
        let everyone = ListQuery { filter: None, order_by: Vec::new(), top: 100, skip: 0, owner: None };
        for caller in callers() {
            let listed: Vec<i32> =
                service.list(&caller, everyone.clone()).await.unwrap().iter().map(|r| r.task.id).collect();
            let found: Vec<i32> =
                service.find(&caller, TaskFilter::default()).await.unwrap().iter().map(|t| t.id).collect();
            let want = if caller.sees_all() { vec![1, 2, 3] } else { vec![mine.id] };
            assert_eq!((&listed, &found), (&want, &want), "{caller:?}");
        }
        // Asking for someone else's tasks does not widen a user's list.
        let user = &callers()[0];
        let theirs = ListQuery { owner: Some(11), ..everyone };
        let listed = service.list(user, theirs).await.unwrap();
        assert_eq!(listed.iter().map(|r| r.task.id).collect::<Vec<_>>(), vec![mine.id]);
        let counted = service.count_by_state(user).await;
        assert!(matches!(counted, Err(StoreError::Rejected(DomainError::Forbidden { .. }))), "{counted:?}");
        assert_eq!(service.count_by_state(&callers()[1]).await.unwrap(), vec![(BatchTaskState::New, 3)]);
    }
}
