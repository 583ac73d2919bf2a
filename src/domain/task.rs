//! The batch task as SuperOffice describes it, plus the few fields batchd needs to run it.

use chrono::{DateTime, Utc};

use super::error::{DomainError, Field};

/// SuperOffice's `BatchTaskState`, with its numbers and its spelling (`Aquired`, sic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BatchTaskState {
    Unknown,
    New,
    Aquired,
    Started,
    Succeeded,
    Failed,
    SucceededManualCleanup,
    /// Only a query filter ("any state"); never stored.
    All,
}

impl BatchTaskState {
    pub const STORED: [BatchTaskState; 7] = [
        Self::Unknown,
        Self::New,
        Self::Aquired,
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::SucceededManualCleanup,
    ];
    pub const ALL_NAMES: [BatchTaskState; 8] = [
        Self::Unknown,
        Self::New,
        Self::Aquired,
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::SucceededManualCleanup,
        Self::All,
    ];

    pub fn number(self) -> i32 {
        match self {
            Self::Unknown => 0,
            Self::New => 1,
            Self::Aquired => 2,
            Self::Started => 3,
            Self::Succeeded => 4,
            Self::Failed => 5,
            Self::SucceededManualCleanup => 6,
            Self::All => 99999,
        }
    }

    pub fn from_number(n: i64) -> Option<Self> {
        Self::ALL_NAMES.into_iter().find(|s| i64::from(s.number()) == n)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::New => "New",
            Self::Aquired => "Aquired",
            Self::Started => "Started",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::SucceededManualCleanup => "SucceededManualCleanup",
            Self::All => "All",
        }
    }

    /// Case-insensitive name, or the number written as text.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Ok(n) = t.parse::<i64>() {
            return Self::from_number(n);
        }
        Self::ALL_NAMES.into_iter().find(|s| s.name().eq_ignore_ascii_case(t))
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::SucceededManualCleanup | Self::Failed)
    }

    /// Held by a worker: it may not be deleted, and its writes are fenced by a lease.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Aquired | Self::Started)
    }
}

/// SuperOffice's `BatchTaskCancellationBehaviour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CancellationBehaviour {
    #[default]
    CanCancel,
    CancelWithWarning,
    CannotCancel,
}

impl CancellationBehaviour {
    pub const ALL: [CancellationBehaviour; 3] = [Self::CanCancel, Self::CancelWithWarning, Self::CannotCancel];

    pub fn number(self) -> i32 {
        match self {
            Self::CanCancel => 0,
            Self::CancelWithWarning => 1,
            Self::CannotCancel => 2,
        }
    }
    pub fn from_number(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| i64::from(s.number()) == n)
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::CanCancel => "CanCancel",
            Self::CancelWithWarning => "CancelWithWarning",
            Self::CannotCancel => "CannotCancel",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Ok(n) = t.parse::<i64>() {
            return Self::from_number(n);
        }
        Self::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(t))
    }
}

/// `ParameterObject`: a string dictionary whose key order is kept, so it reads back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parameters(pub Vec<(String, String)>);

impl Parameters {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    /// Serialised form kept in `binaryobject.binarydata`: a JSON object of strings.
    pub fn to_blob(&self) -> Vec<u8> {
        let map: serde_json::Map<String, serde_json::Value> =
            self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        serde_json::to_vec(&map).expect("a map of strings always serialises")
    }
    pub fn from_blob(bytes: &[u8]) -> Option<Self> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes).ok()?;
        Some(Parameters(
            map.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect(),
        ))
    }
}

/// Table numbers SuperOffice uses for the rows a task points at.
pub const TABLE_BINARYOBJECT: i16 = 205;
pub const TABLE_BATCHTASK: i16 = 243;
/// `BlobLinkType.BatchTask`.
pub const LINKTYPE_BATCHTASK: i32 = 6;

/// A stored task. Mirrors `BatchTaskInfo` plus bookkeeping (`version`, `updated`).
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: i32,
    pub name: String,
    pub associate_id: i32,
    pub details_table: i16,
    pub details_record: i32,
    pub is_system: bool,
    pub is_internal: bool,
    pub parameters: Option<Parameters>,
    pub last_started: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub start_count: i32,
    pub database_serial_number: Option<String>,
    pub context: Option<String>,
    pub result: Option<String>,
    pub state: BatchTaskState,
    pub description: Option<String>,
    pub response: Option<String>,
    pub request: Option<String>,
    pub progress_description: Option<String>,
    pub progress_percent: i16,
    pub file_name: Option<String>,
    pub cancellation: CancellationBehaviour,
    /// Bumped on every write; the ETag.
    pub version: i64,
    pub updated: DateTime<Utc>,
}

impl Task {
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.id, self.version)
    }

    /// A runner starts a run: `Started`, one more start, when, and fresh progress. Both stores
    /// apply this same rule when a claimed task starts.
    pub fn begin_run(&mut self, now: DateTime<Utc>) {
        self.state = BatchTaskState::Started;
        self.start_count = self.start_count.saturating_add(1);
        self.last_started = Some(now);
        self.progress_percent = 0;
        self.progress_description = None;
    }
}

/// What a create request may set. Everything else is the server's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewTask {
    pub name: String,
    pub associate_id: i32,
    pub description: Option<String>,
    pub context: Option<String>,
    pub request: Option<String>,
    pub database_serial_number: Option<String>,
    pub details_table: i16,
    pub details_record: i32,
    pub is_system: bool,
    pub is_internal: bool,
    pub parameters: Option<Parameters>,
    pub file_name: Option<String>,
    pub cancellation: CancellationBehaviour,
    /// Claim order: higher first, ties oldest first (`0..=PRIORITY_MAX`).
    pub priority: u8,
    /// Tasks this one waits for (`After`): existing ids, sorted, each once, at most
    /// [`super::dependency::AFTER_MAX`].
    pub after: Vec<i32>,
    /// Set from the definition's `unique` list ([`super::unique::key`]): while a live task has
    /// the same key, the create answers that task instead.
    pub unique_key: Option<String>,
}

/// The create body's optional `Priority` key (batchd's own; not a `BatchTaskInfo` property).
pub const PRIORITY: Field = Field::Param("Priority");

/// The highest task priority (the lowest, and the default, is 0).
pub const PRIORITY_MAX: u8 = 9;

/// A property in an update: absent (keep), `null` (clear) or a value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Set(T),
}

/// What PUT may change: State, Description, Response, Request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskUpdate {
    pub state: Patch<BatchTaskState>,
    pub description: Patch<Option<String>>,
    pub response: Patch<Option<String>>,
    pub request: Patch<Option<String>>,
}

/// Length limits, in characters (docs/API.md).
pub mod limits {
    pub const NAME: usize = 254;
    pub const DESCRIPTION: usize = 254;
    pub const PROGRESS_DESCRIPTION: usize = 254;
    pub const FILE_NAME: usize = 260;
    pub const DATABASE_SERIAL_NUMBER: usize = 39;
    pub const LONG_TEXT: usize = 64 * 1024;
    pub const PARAMETER_KEY: usize = 254;
}

/// Checks a text field against its limit. U+0000 is refused too: PostgreSQL text cannot hold
/// it, and both stores must accept the same input.
pub fn check_length(field: Field, value: &str, max: usize) -> Result<(), DomainError> {
    let len = value.chars().count();
    if len > max {
        return Err(DomainError::TooLong { field, max, actual: len });
    }
    if value.contains('\0') {
        return Err(DomainError::WrongType { field, expected: super::error::Expected::Text });
    }
    Ok(())
}

impl NewTask {
    /// Every rule a new task must meet, whatever format it arrived in.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.name.trim().is_empty() {
            return Err(DomainError::Required { field: Field::Name });
        }
        check_length(Field::Name, &self.name, limits::NAME)?;
        let opt = |field, v: &Option<String>, max| v.as_deref().map_or(Ok(()), |s| check_length(field, s, max));
        opt(Field::Description, &self.description, limits::DESCRIPTION)?;
        opt(Field::Context, &self.context, limits::LONG_TEXT)?;
        opt(Field::Request, &self.request, limits::LONG_TEXT)?;
        opt(Field::DatabaseSerialNumber, &self.database_serial_number, limits::DATABASE_SERIAL_NUMBER)?;
        opt(Field::FileName, &self.file_name, limits::FILE_NAME)?;
        if self.priority > PRIORITY_MAX {
            return Err(DomainError::OutOfRange { field: PRIORITY, min: 0, max: i64::from(PRIORITY_MAX) });
        }
        if self.details_table < 0 {
            return Err(DomainError::OutOfRange { field: Field::DetailsTable, min: 0, max: i64::from(i16::MAX) });
        }
        if let Some(p) = &self.parameters {
            for (k, v) in &p.0 {
                check_length(Field::ParameterObject, k, limits::PARAMETER_KEY)?;
                check_length(Field::ParameterObject, v, limits::LONG_TEXT)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl Task {
    /// A user task of `owner` in `state`, with nothing else set: the fixture of the unit tests.
    pub(crate) fn fixture(id: i32, name: &str, owner: i32, state: BatchTaskState) -> Task {
        Task {
            id,
            name: name.into(),
            associate_id: owner,
            details_table: 0,
            details_record: 0,
            is_system: false,
            is_internal: false,
            parameters: None,
            last_started: None,
            created: DateTime::default(),
            start_count: 0,
            database_serial_number: None,
            context: None,
            result: None,
            state,
            description: None,
            response: None,
            request: None,
            progress_description: None,
            progress_percent: 0,
            file_name: None,
            cancellation: Default::default(),
            version: 1,
            updated: DateTime::default(),
        }
    }
}

impl TaskUpdate {
    pub fn validate(&self) -> Result<(), DomainError> {
        if let Patch::Set(s) = self.state {
            if matches!(s, BatchTaskState::All | BatchTaskState::Unknown) {
                return Err(DomainError::StateNotAllowed { state: s });
            }
        }
        let opt = |field, p: &Patch<Option<String>>, max| match p {
            Patch::Set(Some(s)) => check_length(field, s, max),
            _ => Ok(()),
        };
        opt(Field::Description, &self.description, limits::DESCRIPTION)?;
        opt(Field::Response, &self.response, limits::LONG_TEXT)?;
        opt(Field::Request, &self.request, limits::LONG_TEXT)?;
        Ok(())
    }

    /// Applies the update to `task`, enforcing the state moves. Pure: the caller stores the result.
    pub fn apply(&self, task: &Task, now: DateTime<Utc>) -> Result<Task, DomainError> {
        self.validate()?;
        let mut next = task.clone();
        if let Patch::Set(to) = self.state {
            super::state::check_move(task.state, to)?;
            if to == BatchTaskState::Started && task.state != BatchTaskState::Started {
                next.start_count = next.start_count.saturating_add(1);
                next.last_started = Some(now);
            }
            next.state = to;
        }
        if let Patch::Set(v) = &self.description {
            next.description = v.clone();
        }
        if let Patch::Set(v) = &self.response {
            next.response = v.clone();
        }
        if let Patch::Set(v) = &self.request {
            next.request = v.clone();
        }
        Ok(next)
    }
}
