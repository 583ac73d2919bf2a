//! The allowed moves between task states (docs/API.md, "Update").

use super::error::DomainError;
use super::task::BatchTaskState::{self, *};

/// May a task in `from` be moved to `to` by an update?
pub fn can_move(from: BatchTaskState, to: BatchTaskState) -> bool {
    if matches!(to, All | Unknown) {
        return false;
    }
    if from == to {
        return true;
    }
    match from {
        New => matches!(to, Aquired | Started | Failed),
        Aquired => matches!(to, Started | New | Failed),
        Started => matches!(to, Succeeded | SucceededManualCleanup | Failed),
        // A finished task may only be run again.
        Succeeded | SucceededManualCleanup | Failed => to == New,
        // A task found in `Unknown` (imported data) may be reset or failed.
        Unknown => matches!(to, New | Failed),
        All => false,
    }
}

pub fn check_move(from: BatchTaskState, to: BatchTaskState) -> Result<(), DomainError> {
    if matches!(to, All | Unknown) {
        return Err(DomainError::StateNotAllowed { state: to });
    }
    if can_move(from, to) { Ok(()) } else { Err(DomainError::BadStateMove { from, to }) }
}
