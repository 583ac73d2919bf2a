//! Encoded answers of `GET /api/v1/BatchTask/{id}`: the body, ETag and Last-Modified of one task
//! as one kind of caller sees it, kept so that a task polled again is not encoded again.
//!
//! The body depends on the task, the caller's rights to it, the time zone and the format, and on
//! nothing else; those are the key. An answer is served only for a task equal, field by field,
//! to the one it was encoded from, and the task compared is the one the request has just read
//! (through the task cache, with its freshness, and after the visibility check), so a stale
//! answer cannot be served: a changed task, by whatever write on whatever node, is a different
//! task and is encoded anew. Rights are computed per request as before; the cache only saves
//! the encoding.

use std::sync::Mutex;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono_tz::Tz;

use crate::domain::Task;
use crate::domain::rights::TaskRights;

use super::clock::Clock;
use super::format::{self, Format, Payload};
use super::wire::TaskView;

/// Answers kept at most (spread over the shards).
pub const MAX_ENTRIES: usize = 1024;
/// Longest body kept: a task with its FieldProperties is about 3 KB; a task with long texts is
/// encoded per request as before rather than let the cache hold megabytes.
pub const MAX_BODY: usize = 8 * 1024;
/// Locks, by task id, so that the runtime's threads rarely wait for each other.
const SHARDS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    id: i32,
    format: Format,
    zone: Tz,
    select: bool,
    update: bool,
    delete: bool,
}

struct Answer {
    /// What the body was encoded from.
    task: Task,
    body: Bytes,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

pub struct Answers {
    shards: Box<[Mutex<Clock<Key, Answer>>]>,
}

impl Answers {
    /// A cache of at most `entries` answers (capped at [`MAX_ENTRIES`]); 0 keeps none.
    pub fn new(entries: usize) -> Answers {
        let per_shard = entries.min(MAX_ENTRIES).div_ceil(SHARDS);
        let shards = if per_shard == 0 { 0 } else { SHARDS };
        Answers { shards: (0..shards).map(|_| Mutex::new(Clock::new(per_shard))).collect() }
    }

    fn shard(&self, id: i32) -> Option<std::sync::MutexGuard<'_, Clock<Key, Answer>>> {
        let shard = self.shards.get((id as u32 as usize) % self.shards.len().max(1))?;
        // An entry is replaced whole: a panic elsewhere cannot leave one half-written.
        Some(shard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The 200 answer for `task` as read now by a caller with `rights`, in `zone` and `format`:
    /// the kept encoding if it was made from an equal task, else a new one (then kept).
    pub fn task(&self, task: &Task, rights: TaskRights, zone: Tz, format: Format) -> Response {
        let key =
            Key { id: task.id, format, zone, select: rights.select, update: rights.update, delete: rights.delete };
        let kept = self.shard(task.id).and_then(|mut shard| {
            let a = shard.get(&key).filter(|a| a.task == *task)?;
            Some((a.body.clone(), a.etag.clone(), a.last_modified.clone()))
        });
        let (body, etag, last_modified) = kept.unwrap_or_else(|| {
            let view = TaskView { task, rights, zone, select: None };
            let body = Bytes::from(format::render(format, &Payload::Task(view)));
            let etag = HeaderValue::from_str(&task.etag()).ok();
            let last_modified = HeaderValue::from_str(&crate::domain::time::http_date(task.updated)).ok();
            if body.len() <= MAX_BODY
                && let Some(mut shard) = self.shard(task.id)
            {
                let answer = Answer {
                    task: task.clone(),
                    body: body.clone(),
                    etag: etag.clone(),
                    last_modified: last_modified.clone(),
                };
                shard.insert(key, answer);
            }
            (body, etag, last_modified)
        });
        let mut res = (StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], body).into_response();
        let headers = res.headers_mut();
        if let Some(v) = etag {
            headers.insert(header::ETAG, v);
        }
        if let Some(v) = last_modified {
            headers.insert(header::LAST_MODIFIED, v);
        }
        res
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BatchTaskState;
    use chrono::TimeZone;

    fn task(id: i32) -> Task {
        let at = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        Task {
            created: at,
            description: Some("d".into()),
            updated: at,
            ..Task::fixture(id, "Bench", 1, BatchTaskState::New)
        }
    }

    async fn body(res: Response) -> (Vec<u8>, Option<HeaderValue>) {
        let etag = res.headers().get(header::ETAG).cloned();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (bytes.to_vec(), etag)
    }

    fn fresh(task: &Task, rights: TaskRights, zone: Tz, format: Format) -> Vec<u8> {
        format::render(format, &Payload::Task(TaskView { task, rights, zone, select: None }))
    }

    const READ: TaskRights = TaskRights { select: true, update: false, delete: false };
    const ALL: TaskRights = TaskRights { select: true, update: true, delete: true };

    #[tokio::test]
    async fn a_kept_answer_is_the_encoding_of_the_task_as_read_now() {
        // Room for every variant in the one shard of the task's id.
        let answers = Answers::new(8 * SHARDS);
        let mut t = task(1);
        for (rights, zone, format) in [
            (READ, Tz::UTC, Format::Json),
            (ALL, Tz::UTC, Format::Json),
            (READ, Tz::Europe__Oslo, Format::Json),
            (ALL, Tz::UTC, Format::Xml),
        ] {
            // Twice: made, then kept; both the same bytes as encoding it now.
            for _ in 0..2 {
                assert_eq!(body(answers.task(&t, rights, zone, format)).await.0, fresh(&t, rights, zone, format));
            }
        }
        assert_eq!(answers.len(), 4);
        // Any change of any field, even one no version bump accompanied, is encoded anew.
        t.progress_percent = 50;
        assert_eq!(body(answers.task(&t, ALL, Tz::UTC, Format::Json)).await.0, fresh(&t, ALL, Tz::UTC, Format::Json));
        t.version = 2;
        let (b, etag) = body(answers.task(&t, ALL, Tz::UTC, Format::Json)).await;
        assert_eq!(b, fresh(&t, ALL, Tz::UTC, Format::Json));
        assert_eq!(etag.unwrap(), "\"1-2\"");
        assert_eq!(answers.len(), 4, "replaced, not added");
    }

    #[tokio::test]
    async fn bounded_and_off_when_asked() {
        let answers = Answers::new(SHARDS);
        for id in 0..100 {
            answers.task(&task(id), READ, Tz::UTC, Format::Json);
        }
        assert!(answers.len() <= SHARDS, "{}", answers.len());
        let none = Answers::new(0);
        let t = task(1);
        assert_eq!(body(none.task(&t, READ, Tz::UTC, Format::Json)).await.0, fresh(&t, READ, Tz::UTC, Format::Json));
        assert_eq!(none.len(), 0);
        let big = Answers::new(16);
        let mut t = task(2);
        t.result = Some("x".repeat(MAX_BODY));
        assert_eq!(body(big.task(&t, READ, Tz::UTC, Format::Json)).await.0, fresh(&t, READ, Tz::UTC, Format::Json));
        assert_eq!(big.len(), 0, "too long to keep");
    }
}
