//! `GET /api/v1/BatchTask/Events/stream`: task changes as server-sent events, from the node's
//! hub (`crate::http::hub`). One message per event:
//!
//! ```text
//! id: <epoch>-<seq>
//! event: created|state|progress|deleted|resync
//! data: {"Id": 7, "Name": "Sleep", ...}
//! ```
//!
//! `retry: 2000` once at the start, `: keep-alive` comments while idle (`[http] stream_keepalive`).
//! The stream ends when the server shuts down, after a `resync` sent because the subscriber fell
//! behind, and after [`MAX_AGE`]: the caller was authenticated once, at connect, so a revoked
//! credential or a disabled associate stops streaming within that time (EventSource reconnects,
//! with `Last-Event-ID`, and is authenticated again).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::domain::rights::rights_for;
use crate::domain::task::limits;
use crate::domain::{Caller, Field};
use crate::http::AppState;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::hub::{Event, EventKind, Hub, Interest, Next, SubscribeError, Subscription};
use crate::http::wire::{TaskView, properties_json};
use crate::i18n::{Key, Msg};

use super::Query;

/// How long a client waits before reconnecting (EventSource's `retry`), in milliseconds.
const RETRY_MS: u32 = 2000;

/// How long one stream lasts at most.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// Longest `Last-Event-ID` looked at; a longer one is unknown (`resync`).
const MAX_EVENT_ID: usize = 64;

pub async fn stream(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = Query::parse(uri.query());
    let interest = Interest { task: task_param(query.get("task"))?, name: name_param(query.get("name"))?, caller };
    let last = headers.get("last-event-id").map(|v| v.to_str().ok().filter(|s| s.len() <= MAX_EVENT_ID).unwrap_or("?"));
    let sub = app.hub.subscribe(interest.clone(), last).map_err(|e| match e {
        SubscribeError::Full { max } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::new(Key::TooManyStreams).arg("max", max))
        }
    })?;
    let out = Out {
        interest,
        zone: prefs.zone,
        keepalive: app.config.http.stream_keepalive,
        until: tokio::time::Instant::now() + MAX_AGE,
    };
    let body = Body::from_stream(futures_util::stream::unfold(Phase::Start(sub), move |phase| {
        let out = out.clone();
        async move { out.step(phase).await }
    }));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx would otherwise hold the events back in its buffer.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

fn task_param(raw: Option<&str>) -> Result<Option<i32>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as i32)),
        Ok(_) => Err(ApiError::bad_request(
            Msg::new(Key::FieldOutOfRange).arg("field", "task").arg("min", 1).arg("max", i32::MAX),
        )),
        Err(_) => Err(ApiError::bad_request(
            Msg::new(Key::FieldUnknownValue)
                .arg("field", "task")
                .arg("value", raw.chars().take(40).collect::<String>()),
        )),
    }
}

fn name_param(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.trim().is_empty() {
        return Err(ApiError::bad_request(Msg::new(Key::FieldUnknownValue).arg("field", "name").arg("value", raw)));
    }
    crate::domain::task::check_length(Field::Name, raw, limits::NAME).map_err(|e| match e {
        crate::domain::DomainError::TooLong { max, actual, .. } => ApiError::bad_request(
            Msg::new(Key::FieldTooLong).arg("field", "name").arg("max", max).arg("actual", actual),
        ),
        _ => ApiError::bad_request(Msg::new(Key::FieldUnknownValue).arg("field", "name").arg("value", "\\0")),
    })?;
    Ok(Some(raw.to_owned()))
}

enum Phase {
    Start(Subscription),
    Replay(Subscription, std::vec::IntoIter<Arc<Event>>),
    Live(Subscription),
    Done,
}

/// How one subscriber's events are written.
#[derive(Clone)]
struct Out {
    interest: Interest,
    zone: Tz,
    keepalive: Duration,
    until: tokio::time::Instant,
}

impl Out {
    async fn step(&self, phase: Phase) -> Option<(Result<Bytes, Infallible>, Phase)> {
        match phase {
            Phase::Start(mut sub) => {
                let replay = std::mem::take(&mut sub.replay).into_iter();
                Some((Ok(Bytes::from(format!("retry: {RETRY_MS}\n\n"))), Phase::Replay(sub, replay)))
            }
            Phase::Replay(sub, mut replay) => match replay.next() {
                Some(e) => Some((Ok(self.message(sub.hub(), &e)), Phase::Replay(sub, replay))),
                None => self.live(sub).await,
            },
            Phase::Live(sub) => self.live(sub).await,
            Phase::Done => None,
        }
    }

    async fn live(&self, mut sub: Subscription) -> Option<(Result<Bytes, Infallible>, Phase)> {
        let now = tokio::time::Instant::now();
        if now >= self.until {
            return None;
        }
        let wait = self.keepalive.min(self.until - now);
        match tokio::time::timeout(wait, sub.next()).await {
            Err(_) if tokio::time::Instant::now() >= self.until => None,
            Err(_) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), Phase::Live(sub))),
            Ok(Next::Event(e)) => Some((Ok(self.message(sub.hub(), &e)), Phase::Live(sub))),
            Ok(Next::Lagged(seq)) => {
                let text = format!("id: {}\nevent: resync\ndata: {{}}\n\n", sub.hub().event_id(seq));
                Some((Ok(Bytes::from(text)), Phase::Done))
            }
            Ok(Next::Closed) => None,
        }
    }

    fn message(&self, hub: &Hub, e: &Event) -> Bytes {
        let data = self.data(e);
        Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", hub.event_id(e.seq), e.kind.name()))
    }

    /// The event's JSON, as this subscriber sees it (its rights, its time zone).
    fn data(&self, e: &Event) -> String {
        if e.kind == EventKind::Resync {
            return "{}".into();
        }
        let mut m = Map::new();
        m.insert("Id".into(), Value::from(e.id));
        m.insert("Name".into(), e.task.as_ref().map_or(Value::Null, |t| Value::from(t.name.as_str())));
        if let Some(task) = &e.task {
            match e.kind {
                EventKind::Created => {
                    let view = TaskView {
                        task,
                        rights: rights_for(&self.interest.caller, task),
                        zone: self.zone,
                        select: None,
                    };
                    m.insert("Task".into(), serde_json::to_value(&view).unwrap_or(Value::Null));
                }
                EventKind::State | EventKind::Progress => {
                    m.insert("Changed".into(), Value::Object(properties_json(task, self.zone, &e.changed)));
                }
                EventKind::Deleted | EventKind::Resync => {}
            }
        }
        Value::Object(m).to_string()
    }
}
