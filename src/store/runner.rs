//! Types of the runner's store methods. The rules and the types they take live in
//! [`crate::domain::run`]; what is here is what the stores answer from their tables.

use chrono::{DateTime, Utc};

use crate::domain::BatchTaskState;

pub use crate::domain::run::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Claimed, Finish, FinishOutcome, FinishResult, Lease, Progress,
    Rescued, ScheduleTick, StopResult,
};

/// The lease columns of a task, for answering heartbeats without a write.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseInfo {
    pub state: BatchTaskState,
    pub token: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub node: Option<String>,
    pub stop_requested_by: Option<String>,
}

/// One entry of a task's event log, as read back.
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
