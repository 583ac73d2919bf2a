//! Storage behind one trait. `sqlite` is the default engine; `postgres` shares the trait and the
//! contract tests (`tests/api/store_contract.rs`).
//!
//! Every change to a task goes through [`Store::modify_task`]: the store reads the row inside its
//! transaction, hands it to a pure domain function, and writes what comes back. The rules live in
//! the domain; atomicity lives here.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{Associate, BatchTaskState, DomainError, NewTask, Role, Task};

pub use error::BackendError;

pub mod access;
pub mod cache;
mod error;
pub mod feed;
pub mod postgres;
pub mod sql;
pub mod sqlite;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A rule refused the change; nothing was written.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// Another associate has this name already (names compare case-insensitively for ASCII:
    /// the `associate_name_key` index).
    #[error("an associate has this name already")]
    DuplicateName,
    /// The change would leave no active admin; nothing was written.
    #[error("the last active admin cannot be demoted, disabled or removed")]
    LastAdmin,
    /// The storage cannot answer now: the connection broke, the database is restarting or
    /// refuses connections, or stayed locked past the wait. Worth retrying; an HTTP 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The storage has no room for the write (disk or quota full). Reads still work; an HTTP 507.
    #[error("storage full: {0}")]
    Full(String),
    /// Anything else the storage did wrong; an HTTP 500 whose body says nothing of it.
    #[error(transparent)]
    Backend(BackendError),
}

/// Most ids [`Store::tasks_by_id`] takes at once.
pub const MAX_TASKS_BY_ID: usize = 500;

/// A change to one task: gets the stored row, returns the row to store (or a refusal). A pure
/// decision, so a store may make it again on a newer row (PostgreSQL decides before it locks,
/// and decides again when another write came first).
pub type TaskChange = Box<dyn Fn(&Task) -> Result<Task, DomainError> + Send + Sync>;
/// A check made on the stored row, inside the transaction, before it is deleted.
pub type DeleteGuard = Box<dyn FnOnce(&Task) -> Result<(), DomainError> + Send>;

/// Which tasks: the agents' query shapes in one struct.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// `None` = any state.
    pub states: Option<Vec<BatchTaskState>>,
    /// `None` = user and system tasks.
    pub system: Option<bool>,
    /// Definition name, exact.
    pub name: Option<String>,
    pub associates: Option<AssociateSelector>,
    /// Visibility: only this associate's (non-system) tasks.
    pub owner: Option<i32>,
}

/// SuperOffice's `AssociateIds` rule: empty = every task, `0` = system tasks, `-1` = every user
/// task, other numbers = those associates' tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssociateSelector {
    pub system: bool,
    pub all_users: bool,
    pub ids: Vec<i32>,
}

impl AssociateSelector {
    /// `None` when the list selects every task.
    pub fn from_ids(ids: &[i32]) -> Option<Self> {
        if ids.is_empty() {
            return None;
        }
        Some(AssociateSelector {
            system: ids.contains(&0),
            all_users: ids.contains(&-1),
            ids: {
                let mut ids: Vec<i32> = ids.iter().copied().filter(|i| *i > 0).collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            },
        })
    }
    pub fn matches(&self, task: &Task) -> bool {
        (self.system && task.is_system)
            || (self.all_users && !task.is_system)
            || (!task.is_system && self.ids.contains(&task.associate_id))
    }
}

impl TaskFilter {
    /// The same rule as the SQL, for tests and in-memory checks.
    pub fn matches(&self, task: &Task) -> bool {
        self.states.as_ref().is_none_or(|s| s.contains(&task.state))
            && self.system.is_none_or(|s| task.is_system == s)
            && self.name.as_ref().is_none_or(|n| &task.name == n)
            && self.associates.as_ref().is_none_or(|a| a.matches(task))
            && self.owner.is_none_or(|o| !task.is_system && task.associate_id == o)
    }
}

/// The OData list (`GET /api/v1/BatchTask`): a typed query the store turns into bound SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: Option<crate::domain::query::Expr>,
    pub order_by: Vec<(crate::domain::query::Column, bool /* descending */)>,
    pub top: u32,
    pub skip: u32,
    pub owner: Option<i32>,
}

/// A row of the OData list: the task plus the archive columns that live elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    pub task: Task,
    pub definition_id: Option<i64>,
    pub definition_description: Option<String>,
    pub definition_timeout: Option<i64>,
    pub registered_by: i32,
    pub updated_by: i32,
}

/// An associate row with its password hash, for the authenticator only.
#[derive(Debug, Clone)]
pub struct AssociateCredentials {
    pub associate: Associate,
    pub password_hash: String,
}

#[derive(Debug, Clone)]
pub struct NewAssociate {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

/// One task a task waits for: `task` is `None` once it is deleted; `satisfied` once it succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterEdge {
    pub id: i32,
    pub satisfied: bool,
    pub task: Option<Task>,
}

/// A task's dependencies both ways, as [`Store::task_dependencies`] reads them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dependencies {
    pub after: Vec<AfterEdge>,
    pub before: Vec<Task>,
    /// More tasks wait for it than `before` lists.
    pub more_before: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// This process's end of the change feed (`store::feed`): what changed, on any node.
    fn feed(&self) -> &feed::Feed;

    /// Inserts the task (and its ParameterObject blob) and returns it as stored.
    async fn create_task(&self, new: NewTask, now: DateTime<Utc>) -> Result<Task, StoreError>;
    async fn get_task(&self, id: i32) -> Result<Option<Task>, StoreError>;
    /// The tasks with these ids that exist, in no particular order: one query, for at most
    /// [`MAX_TASKS_BY_ID`] ids.
    async fn tasks_by_id(&self, ids: &[i32]) -> Result<Vec<Task>, StoreError>;
    /// Tasks matching `filter`, oldest id first.
    async fn find_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError>;
    /// Atomically reads, changes and writes one task. `version` and `updated` are set by the store.
    /// A move to another state ends any lease (the holder is fenced out) and is logged as done by
    /// `actor`; the rule is [`crate::domain::run::by_hand`].
    async fn modify_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: runner::Actor,
        change: TaskChange,
    ) -> Result<Task, StoreError>;
    /// Deletes the task with its blob and links, if `guard` agrees, and logs the deletion as done
    /// by `actor` (the log outlives the task).
    async fn delete_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: runner::Actor,
        guard: DeleteGuard,
    ) -> Result<(), StoreError>;
    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<ListRow>, StoreError>;

    async fn create_associate(&self, new: NewAssociate, now: DateTime<Utc>) -> Result<Associate, StoreError>;
    async fn associate_credentials(&self, name: &str) -> Result<Option<AssociateCredentials>, StoreError>;
    async fn list_associates(&self) -> Result<Vec<Associate>, StoreError>;
    async fn count_associates(&self) -> Result<i64, StoreError>;
    /// How many tasks are in each state (states with none are left out), for the metrics.
    async fn count_tasks_by_state(&self) -> Result<Vec<(BatchTaskState, i64)>, StoreError>;
    /// Registers (or refreshes) a task definition's row in `batchtaskdefinition`.
    async fn upsert_definition(&self, def: &DefinitionRow, now: DateTime<Utc>) -> Result<(), StoreError>;

    // -- identity and access: tickets, tokens, sessions, associate management --
    // Types in `store::access`. Every method below that ends or weakens a credential also adds a
    // `credential_change` row in the same transaction (see `credential_changes`).

    async fn get_associate(&self, id: i32) -> Result<Option<Associate>, StoreError>;
    /// Changes name, password hash, role or active flag. A password change also revokes the
    /// associate's tickets and sessions (not its API tokens). Refuses with
    /// `LastAdmin` to leave no active admin, `DuplicateName` for a taken name; `NotFound` for no
    /// such id.
    async fn update_associate(
        &self,
        id: i32,
        change: access::AssociateChange,
        now: DateTime<Utc>,
    ) -> Result<Associate, StoreError>;
    /// Removes an associate with its tickets, tokens and sessions (its tasks stay). Same
    /// last-admin rule as `update_associate`.
    async fn delete_associate(&self, id: i32, now: DateTime<Utc>) -> Result<(), StoreError>;
    async fn create_credential(
        &self,
        new: access::NewCredential,
        now: DateTime<Utc>,
    ) -> Result<access::CredentialRow, StoreError>;
    /// The credential whose secret hashes to `secret_hash`, with its associate as stored now,
    /// whether or not it is expired or revoked (the caller decides, and says which).
    async fn find_credential(
        &self,
        kind: access::CredentialKind,
        secret_hash: &str,
    ) -> Result<Option<access::CredentialMatch>, StoreError>;
    /// Credentials of a kind, newest first; `associate_id` restricts to one associate's.
    async fn list_credentials(
        &self,
        kind: access::CredentialKind,
        associate_id: Option<i32>,
    ) -> Result<Vec<access::CredentialRow>, StoreError>;
    /// Revokes what `target` names, if not revoked yet; answers how many were revoked.
    async fn revoke_credentials(
        &self,
        kind: access::CredentialKind,
        target: access::RevokeTarget,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Changes logged after change id `after`: the newest change id and the associates concerned.
    async fn credential_changes(&self, after: i64) -> Result<(i64, Vec<i32>), StoreError>;
    /// Deletes credentials that expired or were revoked before `before`, and change rows older than it.
    async fn purge_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    // -- runner: claims, leases, heartbeats, progress, events, retention --
    // The rules are in `crate::domain::run`; a store selects, locks, loads and writes.

    /// Creates the task and, in the same transaction, claims it for `claim.node` when its name
    /// is in `claim.names`, no older task of that name is waiting and the concurrency limit allows.
    async fn create_and_claim(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        claim: &runner::ClaimRequest,
    ) -> Result<(Task, Option<runner::Lease>), StoreError>;

    /// Claims up to `req.max` of the oldest claimable `New` tasks (`New → Aquired`, and
    /// `→ Started` when `req.start`), in one transaction.
    async fn claim_tasks(
        &self,
        req: &runner::ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<runner::Claimed>, StoreError>;

    /// Renews leases and writes progress, each fenced by its token, in one transaction. Answers
    /// in the order of `beats`.
    async fn renew_leases(
        &self,
        beats: Vec<runner::Beat>,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<runner::BeatOutcome>, StoreError>;

    /// Ends runs (or starts, or releases them), each fenced by its token, in one transaction.
    /// A failed run with restarts left goes back to `New` with a backoff. Answers in order.
    async fn finish_tasks(
        &self,
        finishes: Vec<runner::Finish>,
        now: DateTime<Utc>,
    ) -> Result<Vec<runner::FinishResult>, StoreError>;

    /// Stops a task: `New`/`Aquired`/unheld `Started` → `Failed` at once; `Started` under a live
    /// lease → the request is recorded for the holder. `guard` checks rights and preconditions.
    async fn request_stop(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: runner::Actor,
        by: String,
        guard: DeleteGuard,
    ) -> Result<runner::StopResult, StoreError>;

    /// The lease columns of a task.
    async fn lease_info(&self, id: i32) -> Result<Option<runner::LeaseInfo>, StoreError>;

    /// `Started` tasks `node` holds that someone asked to stop: (id, who asked).
    async fn pending_stops(&self, node: &str) -> Result<Vec<(i32, String)>, StoreError>;

    /// Tasks whose lease ran out go back to `New` (or `Failed` when their restarts are used up,
    /// or when a stop was asked). Also fails `Started` tasks whose stop request is older than
    /// `stop_grace` (the holder did not end them). At most `limit` per call.
    async fn rescue_expired(
        &self,
        node: &str,
        now: DateTime<Utc>,
        limit: usize,
        stop_grace: std::time::Duration,
    ) -> Result<Vec<runner::Rescued>, StoreError>;

    /// Hands back every lease `node` holds (`New` again, the attempt not counted).
    async fn release_node(&self, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError>;

    /// The task's event log, oldest first.
    async fn task_events(&self, id: i32) -> Result<Vec<runner::TaskEvent>, StoreError>;

    /// Removes up to `limit` tasks in `state` last updated before `before`, with their blobs,
    /// links and events. Answers how many went.
    async fn purge_finished(
        &self,
        state: BatchTaskState,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError>;

    /// Removes the event logs of tasks deleted before `before` (their last event says so).
    async fn purge_deleted_events(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;

    /// A recurring definition: when due, creates `new` and moves the schedule on, in one
    /// transaction. Answers the task created (if any) and when the next one is due.
    async fn schedule_tick(
        &self,
        tick: &runner::ScheduleTick,
        now: DateTime<Utc>,
        new: NewTask,
    ) -> Result<(Option<Task>, DateTime<Utc>), StoreError>;

    /// Stores a definition's run policy (backoff, rescues) beside its row, where the rules read it
    /// inside each transaction (`restarts` is the row's own `autorestartcount`).
    async fn set_run_policy(&self, name: &str, policy: &crate::domain::run::RunPolicy) -> Result<(), StoreError>;

    // -- scheduling: pause, retry, the definitions' state --

    /// Pauses (or resumes) a definition on every node: claims skip a paused definition's tasks
    /// (they stay `New`) and its schedule creates nothing. Tells the change feed. Answers whether
    /// the row changed; `NotFound` when the definition has no row.
    async fn set_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError>;

    /// Every definition row's scheduling state, with its counts of `New`, running (`Aquired`,
    /// `Started`) and `Failed` tasks: of every task, or with `owner` only of that associate's
    /// (non-system) tasks, the visibility rule of the lists. One query for all definitions.
    async fn definition_statuses(&self, owner: Option<i32>) -> Result<Vec<DefinitionStatus>, StoreError>;

    /// Creates the task unless `key` was used by its associate within the window
    /// ([`crate::domain::idempotency::decide`]): then answers that task's id and creates
    /// nothing, or refuses a different request under the key. The key row and the task commit
    /// together; the `(associate, key)` primary key orders racing creates.
    async fn create_task_once(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        key: &crate::domain::idempotency::KeyedCreate,
    ) -> Result<CreatedOnce, StoreError>;

    /// Removes up to `limit` idempotency keys first used before `before`; answers how many went.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;

    /// `Failed → New` ([`crate::domain::run::retry`]), if `guard` agrees, in one transaction.
    async fn retry_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: runner::Actor,
        guard: DeleteGuard,
    ) -> Result<Task, StoreError>;

    /// Task `id`'s dependencies both ways (`crate::domain::dependency`): every task it waits
    /// for, and the first `before_max` of `owner`'s (everyone's when `None`) waiting for it.
    async fn task_dependencies(
        &self,
        id: i32,
        owner: Option<i32>,
        before_max: usize,
    ) -> Result<Dependencies, StoreError>;

    // -- nodes and health --
    // The rules (liveness, what is listed, what is purged) are in `crate::domain::node`.

    /// A trivial query, answered within `within` or `Unavailable`: whether the database answers.
    async fn ping(&self, within: std::time::Duration) -> Result<(), StoreError>;

    /// Writes a node's row whole, inserting it the first time: one statement.
    async fn upsert_node(&self, node: &crate::domain::node::NodeRow) -> Result<(), StoreError>;

    /// Node rows last seen at or after `since`, most recently seen first, at most `limit`.
    async fn list_nodes(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::domain::node::NodeRow>, StoreError>;

    /// Removes up to `limit` node rows last seen before `before`; answers how many went.
    async fn purge_nodes(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;

    // -- stats: the dashboard's charts --

    /// The tasks `owner` selects (as in [`ListQuery::owner`]; `None` = every task): how many are
    /// in each state now, and per minute the finished ones whose last change is at or after
    /// `since` (the service looks at most [`STATS_MAX_MINUTES`] back), grouped in SQL.
    async fn task_stats(&self, since: DateTime<Utc>, owner: Option<i32>) -> Result<TaskStats, StoreError>;
}

/// How far back [`Store::task_stats`] may look: a day of minutes (at most 3 rows a minute).
pub const STATS_MAX_MINUTES: u32 = 1440;

/// What [`Store::task_stats`] answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStats {
    /// Tasks in each state now; states with none are left out.
    pub states: Vec<(BatchTaskState, i64)>,
    /// Finished tasks by the minute of their last change and their end state, oldest first.
    pub minutes: Vec<MinuteStats>,
}

/// The tasks that finished in one minute in one end state. A finished task's last change is its
/// end (a later edit of its Description moves it, which the figures accept).
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteStats {
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    pub state: BatchTaskState,
    pub finished: i64,
    /// Of those, the ones that ever started (stopped while `New` they did not): the wait and run
    /// figures cover these. Wait = Created → LastStarted; run = LastStarted → end.
    pub started: i64,
    pub wait_ms_total: i64,
    pub wait_ms_max: i64,
    pub run_ms_total: i64,
    pub run_ms_max: i64,
}

impl MinuteStats {
    /// The start of the minute `epoch_minute` counts from the epoch.
    pub fn minute_start(epoch_minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(epoch_minute.saturating_mul(60), 0).unwrap_or_default()
    }
}

/// The `batchtaskdefinition` mirror of a configured definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionRow {
    pub name: String,
    pub description: Option<String>,
    pub runner: String,
    pub timeout_seconds: i64,
    pub restarts: i32,
    pub start_interval_seconds: i64,
    pub cancellation: crate::domain::CancellationBehaviour,
    pub concurrency: Option<i32>,
}

/// What a create under an `Idempotency-Key` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CreatedOnce {
    Created(Box<Task>),
    /// The key's earlier create: its task id; nothing was created.
    Replayed(i32),
}

/// A definition row's scheduling state and task counts (`GET /api/v1/Definitions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefinitionStatus {
    pub name: String,
    pub paused: bool,
    /// When the schedule's next occurrence is due (`None`: it never ran, or it has no schedule).
    pub next_start: Option<DateTime<Utc>>,
    pub counts: TaskCounts,
}

/// Tasks of one definition by what an operator asks first: waiting, running, failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub new: i64,
    /// `Aquired` and `Started`.
    pub running: i64,
    pub failed: i64,
}

impl TaskCounts {
    /// Adds `count` tasks in `state` (other states are not counted).
    pub fn add(&mut self, state: BatchTaskState, count: i64) {
        match state {
            BatchTaskState::New => self.new += count,
            BatchTaskState::Aquired | BatchTaskState::Started => self.running += count,
            BatchTaskState::Failed => self.failed += count,
            _ => {}
        }
    }
}

/// Joins definition rows `(name, paused, next_start)` with counts `(name, state, count)` as
/// both engines read them; counts of names with no row are left out.
pub(crate) fn definition_statuses(
    rows: Vec<(String, bool, Option<DateTime<Utc>>)>,
    counts: impl IntoIterator<Item = (String, i64, i64)>,
) -> Vec<DefinitionStatus> {
    let mut out: Vec<DefinitionStatus> = rows
        .into_iter()
        .map(|(name, paused, next_start)| DefinitionStatus { name, paused, next_start, counts: TaskCounts::default() })
        .collect();
    let index: std::collections::HashMap<String, usize> =
        out.iter().enumerate().map(|(i, d)| (d.name.clone(), i)).collect();
    for (name, state, count) in counts {
        if let (Some(&i), Some(state)) = (index.get(&name), BatchTaskState::from_number(state)) {
            out[i].counts.add(state, count);
        }
    }
    out
}

/// Opens the store a database URL names: `sqlite:PATH` (created if missing) or `postgres://...`.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_with(url, &Default::default()).await
}

/// The same, with the `[postgres]` settings (ignored for SQLite).
pub async fn open_with(url: &str, pg: &crate::config::PostgresConfig) -> anyhow::Result<Arc<dyn Store>> {
    use anyhow::Context;
    let shown = crate::redact::redact_url(url);
    if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        Ok(Arc::new(sqlite::SqliteStore::open(path).with_context(|| format!("opening database {shown}"))?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The driver's errors may quote the URL or its parts: they are passed on scrubbed.
        match postgres::PostgresStore::open_with(url, pg).await {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) => {
                Err(anyhow::anyhow!("opening database {shown}: {}", crate::redact::scrub(&format!("{e:#}"), url)))
            }
        }
    } else {
        anyhow::bail!("unsupported database URL {shown:?}: use sqlite:PATH or postgres://...")
    }
}

// -- runner --
pub mod runner;

/// A definition's run policy from its stored columns, as both engines keep them.
pub(crate) fn policy_from(
    restarts: i64,
    backoff_ms: i64,
    max_backoff_ms: i64,
    rescues: i64,
) -> crate::domain::run::RunPolicy {
    let ms = |v: i64| std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0));
    crate::domain::run::RunPolicy {
        retry: crate::domain::definition::RetryPolicy {
            restarts: u32::try_from(restarts).unwrap_or(0),
            backoff: ms(backoff_ms),
            max_backoff: ms(max_backoff_ms),
        },
        rescues: u32::try_from(rescues).unwrap_or(crate::domain::run::DEFAULT_RESCUES),
    }
}
