//! Types of the runner's store methods: claims, leases, heartbeats, finishes, stops,
//! events and retention. The methods themselves are on [`super::Store`], at the runner marker.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{BatchTaskState, Task};

/// A task row with its runner columns, as both stores load it inside a write. `T` is how the
/// store keeps instants: microseconds on SQLite, `timestamptz` on PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct RunRow<T> {
    pub task: Task,
    pub lease_token: Option<String>,
    pub lease_expires: Option<T>,
    pub lease_node: Option<String>,
    pub attempts: i32,
    pub run_after: Option<T>,
    pub stop_requested: Option<T>,
    pub stop_requested_by: Option<String>,
}

impl<T: PartialOrd + Copy> RunRow<T> {
    /// The token is this task's live lease.
    pub fn holds(&self, token: &str, now: T) -> bool {
        self.task.state.is_active()
            && self.lease_token.as_deref() == Some(token)
            && self.lease_expires.is_some_and(|e| e >= now)
    }

    /// Ends the lease and any stop request with it.
    pub fn clear_lease(&mut self) {
        self.lease_token = None;
        self.lease_expires = None;
        self.lease_node = None;
        self.stop_requested = None;
        self.stop_requested_by = None;
    }

    pub fn start(&mut self, now: DateTime<Utc>) {
        self.task.begin_run(now);
    }
}

/// Who made a change, for the event log. API writes name the associate, runner writes the node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actor {
    pub associate_id: Option<i32>,
    pub node: Option<String>,
    pub reason: Option<String>,
}

impl Actor {
    pub fn associate(id: i32, reason: impl Into<String>) -> Actor {
        Actor { associate_id: Some(id), node: None, reason: Some(reason.into()) }
    }
    pub fn node(node: &str, reason: impl Into<String>) -> Actor {
        Actor { associate_id: None, node: Some(node.to_owned()), reason: Some(reason.into()) }
    }
}

/// What a claim takes and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    pub node: String,
    pub lease: Duration,
    /// Names that may be claimed, each with its definition's concurrency limit.
    pub names: Vec<ClaimName>,
    pub max: usize,
    /// Move on to `Started` in the same transaction (the server's own runner starts at once;
    /// external workers start with their first heartbeat).
    pub start: bool,
    /// The associate claiming (external workers), for the events.
    pub associate_id: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimName {
    pub name: String,
    /// At most this many tasks of the name `Aquired` or `Started` at once, across all nodes.
    pub concurrency: Option<u32>,
}

/// A lease as granted to its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub token: String,
    pub expires: DateTime<Utc>,
    pub node: String,
    /// Run number since the task was last New by a user's hand (1 = first run).
    pub attempt: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub task: Task,
    pub lease: Lease,
}

/// Progress as reported by a run. `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub percent: Option<i16>,
    pub description: Option<String>,
    pub file_name: Option<String>,
}

impl Progress {
    pub fn is_empty(&self) -> bool {
        self.percent.is_none() && self.description.is_none() && self.file_name.is_none()
    }
    /// Later values win.
    pub fn merge(&mut self, later: Progress) {
        if later.percent.is_some() {
            self.percent = later.percent;
        }
        if later.description.is_some() {
            self.description = later.description;
        }
        if later.file_name.is_some() {
            self.file_name = later.file_name;
        }
    }
}

/// A lease renewal, optionally carrying progress, fenced by the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    pub id: i32,
    pub token: String,
    pub progress: Option<Progress>,
    /// Renew the lease (progress alone may be flushed without renewing).
    pub renew: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BeatOutcome {
    Renewed {
        expires: DateTime<Utc>,
        state: BatchTaskState,
        /// Who asked the run to stop, if anyone did.
        stop_requested_by: Option<String>,
    },
    /// The token is not (or no longer) the task's lease: the holder must stop without writing.
    Lost,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishOutcome {
    Succeeded,
    SucceededManualCleanup,
    /// `retry`: counts as a failed attempt, run again if the definition's restarts allow.
    Failed {
        retry: bool,
    },
    /// Hand the task back untouched (shutdown): `New` again, the attempt not counted.
    Release,
    /// Aquired → Started (an external worker saying it began).
    Start,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub id: i32,
    pub token: String,
    pub outcome: FinishOutcome,
    pub result: Option<String>,
    pub response: Option<String>,
    pub progress: Option<Progress>,
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FinishResult {
    /// Written; the task is now in this state (read the task for the rest).
    Done(BatchTaskState),
    /// Stale token or expired lease: nothing was written.
    Lost,
}

/// What a stop request did.
#[derive(Debug, Clone, PartialEq)]
pub enum StopResult {
    /// Stopped at once (`New`, `Aquired`, or `Started` with no live lease): now `Failed`.
    Failed(Task),
    /// `Started` under a live lease: the request is recorded; the holder stops the run.
    Requested { task: Task, node: String },
    /// Finished already, or `CannotCancel`.
    Refused(Task),
}

/// The lease columns of a task, for answering heartbeats without a write.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseInfo {
    pub state: BatchTaskState,
    pub token: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub node: Option<String>,
    pub stop_requested_by: Option<String>,
}

/// One entry of a task's event log.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub id: i64,
    pub task_id: i32,
    pub at: DateTime<Utc>,
    /// `None`: the task was created.
    pub from: Option<BatchTaskState>,
    /// `None`: the task was deleted.
    pub to: Option<BatchTaskState>,
    pub associate_id: Option<i32>,
    pub associate_name: Option<String>,
    pub node: Option<String>,
    pub reason: Option<String>,
}

/// A task the rescuer moved after its lease ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescued {
    pub id: i32,
    pub to: BatchTaskState,
}

/// A recurring definition's next occurrence, created atomically with moving the schedule on.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleTick {
    pub name: String,
    pub interval: Duration,
    /// Skip the occurrence while a task of this name is New, Aquired or Started.
    pub skip_if_active: bool,
}
