//! Runner endpoints: external workers (Acquire, Heartbeat, finish by PUT with
//! `X-Lease-Token`) and the event log (`GET /BatchTask/{id}/Events`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::rights::rights_for;
use crate::domain::task::{check_length, limits};
use crate::domain::{Caller, DomainError, Expected, Field, Patch, time};
use crate::http::AppState;
use crate::http::body::Body;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{Format, XmlWriter, write_task};
use crate::http::wire::{Props, TaskView};
use crate::i18n::{Key, Msg};
use crate::runner::Runner;
use crate::runner::workers::WorkerFinish;
use crate::store::runner::{Progress, TaskEvent};

pub const LEASE_HEADER: &str = "x-lease-token";

fn parse_id(raw: &str) -> Result<i32, ApiError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::WrongType { field: Field::Id, expected: Expected::Integer }.into());
    }
    raw.parse::<i32>().map_err(|_| ApiError::not_found(raw))
}

fn runner(app: &AppState) -> Result<&Runner, ApiError> {
    app.tasks.runner().ok_or_else(ApiError::internal)
}

fn object(body: Body) -> Result<Map<String, Value>, ApiError> {
    match body.value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::bad_request(Msg::new(Key::BodyNotObject).arg("type", "an object"))),
    }
}

/// `X-Lease-Token`, else the body's `LeaseToken`.
fn lease_token(headers: &HeaderMap, props: &Props<'_>) -> Result<String, ApiError> {
    let from_header = headers.get(LEASE_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    let from_body = props.get("LeaseToken").and_then(Value::as_str).map(str::trim);
    match from_header.or(from_body) {
        Some(t) if !t.is_empty() && t.len() <= 128 => Ok(t.to_owned()),
        _ => Err(DomainError::Required { field: Field::Param("X-Lease-Token") }.into()),
    }
}

fn progress_of(props: &Props<'_>) -> Result<Option<Progress>, ApiError> {
    let percent = props.int(Field::ProgressPercent, 0, 100)?.map(|p| p as i16);
    let text = |field: Field, max: usize| -> Result<Option<String>, ApiError> {
        match props.text(field)? {
            Patch::Set(Some(s)) => {
                check_length(field, &s, max)?;
                Ok(Some(s))
            }
            _ => Ok(None),
        }
    };
    let p = Progress {
        percent,
        description: text(Field::ProgressDescription, limits::PROGRESS_DESCRIPTION)?,
        file_name: text(Field::FileName, limits::FILE_NAME)?,
    };
    Ok((!p.is_empty()).then_some(p))
}

pub(super) fn json_response(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, Format::Json.content_type())],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

pub(super) fn xml_response(x: XmlWriter) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, Format::Xml.content_type())], x.finish()).into_response()
}

/// `POST /api/v1/BatchTask/Acquire` `{"Names": [...], "Wait": seconds}`: the oldest `New` task
/// of those names with a lease token, or 204 when none came within `Wait`.
pub async fn acquire(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    body: Body,
) -> Result<Response, ApiError> {
    let obj = object(body)?;
    let props = Props::new(&obj);
    let names_field = Field::Param("Names");
    let names: Vec<String> = match props.get("Names").or_else(|| props.get("Name")) {
        Some(Value::String(s)) => s.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(|s| s.trim().to_owned()))
            .collect::<Option<Vec<_>>>()
            .ok_or(DomainError::WrongType { field: names_field, expected: Expected::Text })?,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(DomainError::WrongType { field: names_field, expected: Expected::Text }.into()),
    };
    if names.is_empty() || names.iter().any(|n| n.is_empty()) {
        return Err(DomainError::Required { field: names_field }.into());
    }
    if names.len() > 100 {
        return Err(DomainError::OutOfRange { field: names_field, min: 1, max: 100 }.into());
    }
    let wait = match props.get("Wait") {
        None | Some(Value::Null) => 0.0,
        Some(v) => match v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(w) if w.is_finite() && (0.0..=3600.0).contains(&w) => w,
            _ => return Err(DomainError::OutOfRange { field: Field::Param("Wait"), min: 0, max: 3600 }.into()),
        },
    };
    let runner = runner(&app)?;
    let Some(claimed) = runner.acquire(&caller, &names, Duration::from_secs_f64(wait)).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let cfg = runner.config();
    let timeout = runner.definitions().get(&claimed.task.name).and_then(|d| d.run_timeout()).map(|t| t.as_secs_f64());
    let view =
        TaskView { task: &claimed.task, rights: rights_for(&caller, &claimed.task), zone: prefs.zone, select: None };
    let expires = time::format(claimed.lease.expires, prefs.zone);
    let mut res = match prefs.format {
        Format::Json => json_response(&json!({
            "LeaseToken": claimed.lease.token,
            "LeaseExpires": expires,
            "LeaseSeconds": cfg.lease.as_secs_f64(),
            "HeartbeatSeconds": cfg.heartbeat.as_secs_f64(),
            "Attempt": claimed.lease.attempt,
            "TimeoutSeconds": timeout,
            "Task": view,
        })),
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("AcquiredBatchTask");
            x.leaf("LeaseToken", &claimed.lease.token);
            x.leaf("LeaseExpires", &expires);
            x.leaf("LeaseSeconds", &cfg.lease.as_secs_f64().to_string());
            x.leaf("HeartbeatSeconds", &cfg.heartbeat.as_secs_f64().to_string());
            x.leaf("Attempt", &claimed.lease.attempt.to_string());
            match timeout {
                Some(t) => x.leaf("TimeoutSeconds", &t.to_string()),
                None => x.nil("TimeoutSeconds"),
            }
            x.open("Task");
            write_task(&mut x, &view);
            x.close("Task");
            x.close("AcquiredBatchTask");
            xml_response(x)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&claimed.lease.token) {
        res.headers_mut().insert(LEASE_HEADER, v);
    }
    Ok(res)
}

/// `POST /api/v1/BatchTask/{id}/Heartbeat`: renews the lease, records progress, and says whether
/// a stop was asked. A stale token → 409.
pub async fn heartbeat(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    let obj = object(body)?;
    let props = Props::new(&obj);
    let token = lease_token(&headers, &props)?;
    let progress = progress_of(&props)?;
    let answer = runner(&app)?.heartbeat(&caller, id, &token, progress).await.map_err(|e| not_found_as(e, id))?;
    let expires = time::format(answer.expires, prefs.zone);
    Ok(match prefs.format {
        Format::Json => json_response(&json!({
            "LeaseExpires": expires,
            "State": answer.state.name(),
            "StopRequested": answer.stop_requested_by.is_some(),
            "StopRequestedBy": answer.stop_requested_by,
        })),
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("BatchTaskHeartbeat");
            x.leaf("LeaseExpires", &expires);
            x.leaf("State", answer.state.name());
            x.leaf("StopRequested", if answer.stop_requested_by.is_some() { "true" } else { "false" });
            match &answer.stop_requested_by {
                Some(by) => x.leaf("StopRequestedBy", by),
                None => x.nil("StopRequestedBy"),
            }
            x.close("BatchTaskHeartbeat");
            xml_response(x)
        }
    })
}

/// `PUT /api/v1/BatchTask/{id}` with `X-Lease-Token`: a worker ends (or starts, or hands back) its
/// run. Body: `State` (Succeeded, SucceededManualCleanup, Failed, Started, or New to hand back),
/// `Result`, `Response`, `ProgressPercent`, `ProgressDescription`, `FileName`.
pub async fn finish(
    caller: Caller,
    app: AppState,
    prefs: Prefs,
    id: i32,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let obj = object(body)?;
    let props = Props::new(&obj);
    let token = lease_token(headers, &props)?;
    let state = props.state(Field::State)?.ok_or(DomainError::Required { field: Field::State })?;
    let text = |field: Field| -> Result<Option<String>, ApiError> {
        match props.text(field)? {
            Patch::Set(Some(s)) => {
                check_length(field, &s, limits::LONG_TEXT)?;
                Ok(Some(s))
            }
            _ => Ok(None),
        }
    };
    let finish = WorkerFinish {
        state,
        result: text(Field::Result)?,
        response: text(Field::Response)?,
        progress: progress_of(&props)?,
    };
    let task = runner(&app)?.finish_external(&caller, id, &token, finish).await.map_err(|e| not_found_as(e, id))?;
    Ok(super::task_response(&prefs, &caller, &task, None))
}

/// `GET /api/v1/BatchTask/{id}/Events`: the task's state changes, oldest first.
pub async fn events(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    let events = app.tasks.events(&caller, id).await?;
    let state = |s: Option<crate::domain::BatchTaskState>| s.map(|s| s.name());
    Ok(match prefs.format {
        Format::Json => {
            let list: Vec<Value> = events
                .iter()
                .map(|e: &TaskEvent| {
                    json!({
                        "Id": e.id,
                        "BatchTaskId": e.task_id,
                        "Time": time::format(e.at, prefs.zone),
                        "From": state(e.from),
                        "To": state(e.to),
                        "AssociateId": e.associate_id,
                        "Associate": e.associate_name,
                        "Node": e.node,
                        "Reason": e.reason,
                    })
                })
                .collect();
            json_response(&Value::Array(list))
        }
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("ArrayOfBatchTaskEvent");
            for e in &events {
                x.open("BatchTaskEvent");
                x.leaf("Id", &e.id.to_string());
                x.leaf("BatchTaskId", &e.task_id.to_string());
                x.leaf("Time", &time::format(e.at, prefs.zone));
                let opt = |x: &mut XmlWriter, name: &str, v: Option<String>| match v {
                    Some(v) => x.leaf(name, &v),
                    None => x.nil(name),
                };
                opt(&mut x, "From", state(e.from).map(str::to_owned));
                opt(&mut x, "To", state(e.to).map(str::to_owned));
                opt(&mut x, "AssociateId", e.associate_id.map(|a| a.to_string()));
                opt(&mut x, "Associate", e.associate_name.clone());
                opt(&mut x, "Node", e.node.clone());
                opt(&mut x, "Reason", e.reason.clone());
                x.close("BatchTaskEvent");
            }
            x.close("ArrayOfBatchTaskEvent");
            xml_response(x)
        }
    })
}

/// Any other verb on `/BatchTask/Acquire`. `Acquire` is a fixed segment, so a GET lands here and
/// is answered as the id/state route would answer a word that is neither (400); the rest are 405
/// with `Allow: POST`, as on every route.
pub async fn acquire_other_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if method == axum::http::Method::GET {
        return ApiError::bad_request(Msg::new(Key::BadPathSegment).arg("segment", "Acquire")).into_response();
    }
    let msg = Msg::new(Key::MethodNotAllowed).arg("path", uri.path()).arg("method", method.as_str());
    let mut res = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, msg).into_response();
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

fn not_found_as(e: crate::store::StoreError, id: i32) -> crate::store::StoreError {
    match e {
        crate::store::StoreError::NotFound => DomainError::TaskNotFound { id: id.into() }.into(),
        other => other,
    }
}
