//! `Idempotency-Key` on creates (`POST /api/v1/BatchTask`, agent `StartBatchJob`): a client that
//! retries a create it did not hear the answer to gets the task it made the first time, and
//! nothing new is created.
//!
//! A key belongs to its caller (the associate): the same key from two associates are two keys.
//! Within [`WINDOW`] of its first use the same key with the same request answers the same task
//! id; with another request it is refused (422), since the client reused a key by mistake.
//! After the window the key is free again. The store enforces it with the primary key on
//! `(associate, key)`: of two racing creates one inserts the key, the other waits for it and
//! replays its answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::error::{DomainError, Field};
use super::task::NewTask;

/// How long a key answers with its first task.
pub const WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest key accepted, in bytes.
pub const KEY_MAX: usize = 255;
pub const HEADER: &str = "Idempotency-Key";

/// A key as the header gave it: 1 to [`KEY_MAX`] visible ASCII characters (no spaces), so it is
/// safe to store, log and compare byte for byte.
pub fn parse_key(raw: &str) -> Result<String, DomainError> {
    let field = Field::Param(HEADER);
    if raw.is_empty() {
        return Err(DomainError::Required { field });
    }
    if raw.len() > KEY_MAX {
        return Err(DomainError::TooLong { field, max: KEY_MAX, actual: raw.len() });
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DomainError::UnknownValue { field, value: raw.chars().filter(char::is_ascii_graphic).collect() });
    }
    Ok(raw.to_owned())
}

/// A digest of everything a create asks for (after the server filled in its defaults), to tell
/// a repeat of the request from another request under the same key.
pub fn request_hash(new: &NewTask) -> String {
    let mut canonical = serde_json::json!([
        new.name,
        new.associate_id,
        new.description,
        new.context,
        new.request,
        new.database_serial_number,
        new.details_table,
        new.details_record,
        new.is_system,
        new.is_internal,
        new.parameters.as_ref().map(|p| p.0.clone()),
        new.file_name,
        new.cancellation.name(),
    ]);
    // Appended only when set, so keys stored before priorities existed keep their hash.
    if new.priority != 0 {
        canonical.as_array_mut().expect("an array").push(new.priority.into());
    }
    // Likewise `After`, as an object so it cannot read as a priority.
    if !new.after.is_empty() {
        canonical.as_array_mut().expect("an array").push(serde_json::json!({ "After": new.after }));
    }
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A create under a key, as the store is asked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedCreate {
    pub associate_id: i32,
    pub key: String,
    pub request_hash: String,
}

/// A key's row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub request_hash: String,
    /// The task it created (set in the same transaction as the key row).
    pub task_id: Option<i32>,
    pub created: DateTime<Utc>,
}

/// What a create under a key does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUse {
    /// Create the task and record it under the key (new, or the old use has expired).
    Create,
    /// Answer this task id; create nothing.
    Replay(i32),
}

/// The rule: a live key with the same request replays its task; with another request it is
/// refused; an expired (or never completed) key is used afresh.
pub fn decide(stored: Option<&StoredKey>, request_hash: &str, now: DateTime<Utc>) -> Result<KeyUse, DomainError> {
    let window = chrono::Duration::from_std(WINDOW).unwrap_or(chrono::Duration::MAX);
    match stored {
        Some(s) if s.created + window > now => match s.task_id {
            _ if s.request_hash != request_hash => Err(DomainError::IdempotencyKeyReused),
            Some(id) => Ok(KeyUse::Replay(id)),
            None => Ok(KeyUse::Create),
        },
        _ => Ok(KeyUse::Create),
    }
}

/// Keys created before this are expired and may be purged.
pub fn expired_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::from_std(WINDOW).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn a_live_key_replays_its_task_and_refuses_another_request() {
        let new = NewTask { name: "Export".into(), associate_id: 5, ..NewTask::default() };
        let hash = request_hash(&new);
        assert_eq!(hash, request_hash(&new.clone()), "deterministic");
        let other = request_hash(&NewTask { description: Some("x".into()), ..new.clone() });
        assert_ne!(hash, other);
        let stored = StoredKey { request_hash: hash.clone(), task_id: Some(9), created: at(0) };
        assert_eq!(decide(None, &hash, at(0)), Ok(KeyUse::Create));
        assert_eq!(decide(Some(&stored), &hash, at(23)), Ok(KeyUse::Replay(9)));
        assert_eq!(decide(Some(&stored), &other, at(23)), Err(DomainError::IdempotencyKeyReused));
        assert_eq!(decide(Some(&stored), &other, at(24)), Ok(KeyUse::Create), "expired after 24 h");
        assert_eq!(expired_before(at(24)), at(0));
    }

    #[test]
    fn a_key_is_bounded_visible_ascii() {
        assert_eq!(parse_key("order-42/retry:1").unwrap(), "order-42/retry:1");
        assert!(matches!(parse_key(""), Err(DomainError::Required { .. })));
        assert!(matches!(parse_key(&"k".repeat(256)), Err(DomainError::TooLong { max: 255, actual: 256, .. })));
        assert!(parse_key(&"k".repeat(255)).is_ok());
        assert!(matches!(parse_key("a b"), Err(DomainError::UnknownValue { .. })));
        assert!(matches!(parse_key("é"), Err(DomainError::UnknownValue { .. })));
    }
}
