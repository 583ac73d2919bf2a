//! Typed errors of the domain rules. The HTTP layer maps them to statuses in one place.

use super::rights::Reason;
use super::task::BatchTaskState;

/// A `BatchTaskInfo` property (or request parameter) an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Name,
    AssociateId,
    DetailsTable,
    DetailsRecord,
    IsSystemTask,
    IsInternalTask,
    ParameterObject,
    LastStarted,
    Created,
    StartCount,
    DatabaseSerialNumber,
    Context,
    Result,
    State,
    Description,
    Response,
    Request,
    ProgressDescription,
    ProgressPercent,
    FileName,
    CancellationBehaviour,
    /// A request parameter that is not a task property (`$top`, `AssociateIds`, ...).
    Param(&'static str),
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "Id",
            Field::Name => "Name",
            Field::AssociateId => "AssociateId",
            Field::DetailsTable => "DetailsTable",
            Field::DetailsRecord => "DetailsRecord",
            Field::IsSystemTask => "IsSystemTask",
            Field::IsInternalTask => "IsInternalTask",
            Field::ParameterObject => "ParameterObject",
            Field::LastStarted => "LastStarted",
            Field::Created => "Created",
            Field::StartCount => "StartCount",
            Field::DatabaseSerialNumber => "DatabaseSerialNumber",
            Field::Context => "Context",
            Field::Result => "Result",
            Field::State => "State",
            Field::Description => "Description",
            Field::Response => "Response",
            Field::Request => "Request",
            Field::ProgressDescription => "ProgressDescription",
            Field::ProgressPercent => "ProgressPercent",
            Field::FileName => "FileName",
            Field::CancellationBehaviour => "CancellationBehaviour",
            Field::Param(p) => p,
        }
    }
}

/// The kind of value a field wants, for "wrong type" messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Integer,
    Boolean,
    Text,
    DateTime,
    State,
    Cancellation,
    StringDictionary,
    IntegerList,
    Object,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("{} is required", field.name())]
    Required { field: Field },
    #[error("{} must be {expected:?}", field.name())]
    WrongType { field: Field, expected: Expected },
    #[error("{} is too long ({actual} > {max})", field.name())]
    TooLong { field: Field, max: usize, actual: usize },
    #[error("{} must be between {min} and {max}", field.name())]
    OutOfRange { field: Field, min: i64, max: i64 },
    #[error("{} has an unknown value {value:?}", field.name())]
    UnknownValue { field: Field, value: String },
    #[error("state {state:?} cannot be stored")]
    StateNotAllowed { state: BatchTaskState },
    #[error("a task cannot move from {from:?} to {to:?}")]
    BadStateMove { from: BatchTaskState, to: BatchTaskState },
    #[error("path id {path} and body id {body} differ")]
    IdMismatch { path: i64, body: i64 },
    #[error("task {id} not found")]
    TaskNotFound { id: i64 },
    #[error("task {id} is {state:?}; stop it first")]
    TaskBusy { id: i64, state: BatchTaskState },
    #[error("task {id} has changed since the version given")]
    Stale { id: i64 },
    /// A write under `If-None-Match` that matches the task: the client asked for it not to happen.
    #[error("task {id} matches If-None-Match")]
    NoneMatched { id: i64 },
    #[error("not allowed: {reason}")]
    Forbidden { reason: Reason },
    /// A stop that cannot take effect (finished or `CannotCancel` task): answered `false`.
    #[error("the task cannot be stopped")]
    StopRefused,
    #[error("no task definition is named {name:?}")]
    UnknownDefinition { name: String },
    /// A patch changed a property that PUT may not change (or one the task does not have).
    #[error("{property} cannot be changed by a patch")]
    PatchReadOnly { property: String },
    /// A JSON Patch `test` operation did not hold.
    #[error("patch operation {operation} (test at {path}) failed")]
    PatchTestFailed { operation: usize, path: String },
    /// A JSON Patch operation named a path the task does not have.
    #[error("patch operation {operation}: path {path} does not exist")]
    PatchPathInvalid { operation: usize, path: String },
    /// A patch operation would make the task document larger than `max` bytes.
    #[error("patch operation {operation} would make the task document larger than {max} bytes")]
    PatchTooLarge { operation: usize, max: usize },
    /// A patch operation would nest the task document deeper than `max` levels.
    #[error("patch operation {operation} would nest the task document deeper than {max} levels")]
    PatchTooDeep { operation: usize, max: usize },
    /// An update computed from a snapshot of the task found a newer version when it was written,
    /// on every attempt.
    #[error("task {id} kept changing while an update was computed from it")]
    Contended { id: i64 },
    /// A write under a lease token that is not (or no longer) the task's lease.
    #[error("task {id}: the lease token is not the task's current lease")]
    LeaseStale { id: i64 },
    /// Only a `Failed` task can be retried.
    #[error("task {id} is {state:?}; only a Failed task can be retried")]
    NotFailed { id: i64, state: BatchTaskState },
    /// A definition named in a path (pause, resume) that this server does not run.
    #[error("no task definition is named {name:?}")]
    DefinitionNotFound { name: String },
    /// A bulk action whose filter matches more tasks than one request may act on.
    #[error("the filter matches more than {max} tasks")]
    BulkTooMany { max: usize },
    /// An `Idempotency-Key` used within its window for a different create.
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// A list of ids with more distinct entries than allowed.
    #[error("{} names {actual} ids, more than {max}", field.name())]
    TooManyIds { field: Field, max: usize, actual: usize },
    /// A task may not be made `New` again while a dependency it waits for is failed or deleted
    /// (`state` `None`).
    #[error("task {id} waits for task {after}, which is {state:?}")]
    DependencyNotMet { id: i64, after: i64, state: Option<BatchTaskState> },
    /// A create naming a task that already has the most dependents allowed.
    #[error("{}: task {id} already has {max} dependents", field.name())]
    TooManyDependents { field: Field, id: i64, max: usize },
    /// A create whose chain of dependencies would be longer than allowed.
    #[error("{}: the chain of dependencies would be longer than {max}", field.name())]
    ChainTooDeep { field: Field, max: i32 },
    /// A live task holds the same unique key (`holder`; `None` when a racing write found it
    /// and its id is not known). A create answers the holder instead; a retry is refused.
    #[error("a live task ({holder:?}) holds the same unique key")]
    UniqueHeld { holder: Option<i32> },
    /// An external worker asked for a definition the server runs itself.
    #[error("definition {name:?} is run by the server, not by external workers")]
    NotExternal { name: String },
}
