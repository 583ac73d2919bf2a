//! Route table. Each resource module exposes its handlers; they are wired here in one place.

mod agents;
mod batchtask;
mod definitions;
mod dependencies;
pub(crate) mod discovery;
mod health;
mod identity;
mod nodes;
mod runner;
mod stats;
mod stream;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value};

use crate::domain::rights::rights_for;
use crate::domain::{Caller, Task};
use crate::i18n::{Key, Msg};

use super::AppState;
pub(crate) use super::conditional::precondition;
use super::context::Prefs;
use super::dashboard;
use super::error::ApiError;
use super::format::{self, Payload};
use super::wire::TaskView;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api", get(discovery::version))
        .route("/api/v1", get(discovery::endpoints))
        .route("/api/openapi.json", get(super::openapi::serve))
        .route("/api/docs", get(super::apidocs::serve))
        .route("/metrics", get(super::metrics::serve))
        .route("/api/v1/BatchTask", get(batchtask::list).post(batchtask::create))
        .route("/api/v1/BatchTask/{key}", get(batchtask::get_one).put(batchtask::update).delete(batchtask::delete))
        .route("/api/v1/BatchTask/{id}/Stop", post(batchtask::stop))
        // -- event stream -- (a static segment: wins over `{key}` and `{id}/Events`)
        .route("/api/v1/BatchTask/Events/stream", get(stream::stream))
        .route("/api/v1/Agents/Batch/{method}", post(agents::call).get(agents::describe))
        // -- definitions --
        .route("/api/v1/Definitions", get(definitions::list))
        // -- scheduling --
        .route("/api/v1/Definitions/{name}/Pause", post(definitions::pause))
        .route("/api/v1/Definitions/{name}/Resume", post(definitions::resume))
        .route("/api/v1/BatchTask/{id}/Retry", post(batchtask::retry))
        .route("/api/v1/BatchTask/Bulk", post(batchtask::bulk))
        // -- formats --
        .route("/api/v1/BatchTask/{key}", axum::routing::patch(batchtask::patch))
        // -- identity and access --
        .route("/api/v1/Ticket", post(identity::create_ticket).delete(identity::delete_ticket))
        .route(
            "/api/v1/Session",
            post(identity::create_session).get(identity::current_session).delete(identity::delete_session),
        )
        .route("/api/v1/Token", get(identity::list_tokens).post(identity::create_token))
        .route("/api/v1/Token/{id}", delete(identity::delete_token))
        .route("/api/v1/Associate", get(identity::list_associates).post(identity::create_associate))
        .route(
            "/api/v1/Associate/{id}",
            get(identity::get_associate).put(identity::update_associate).delete(identity::delete_associate),
        )
        .route(
            "/api/v1/Agents/SoPrincipal/AuthenticateUsernamePassword",
            post(identity::authenticate_username_password),
        )
        // -- runner --
        .route("/api/v1/BatchTask/Acquire", post(runner::acquire).fallback(runner::acquire_other_method))
        .route("/api/v1/BatchTask/{id}/Heartbeat", post(runner::heartbeat))
        .route("/api/v1/BatchTask/{id}/Events", get(runner::events))
        .route("/api/v1/BatchTask/{id}/Dependencies", get(dependencies::get))
        // -- nodes and health --
        .route("/api/v1/Nodes", get(nodes::list))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        // -- stats and the dashboard --
        .route("/api/v1/Stats", get(stats::get))
        .route("/", get(dashboard::page))
        .route("/login", get(dashboard::page))
        .route("/tasks", get(dashboard::page))
        .route("/tasks/{id}", get(dashboard::task_page))
        .route("/definitions", get(dashboard::page))
        .route("/nodes", get(dashboard::page))
        .route("/ui/{version}/{file}", get(dashboard::asset))
        .with_state(state)
}

/// One task, with its ETag and Last-Modified.
pub(crate) fn task_response(prefs: &Prefs, caller: &Caller, task: &Task, select: Option<&[String]>) -> Response {
    let view = TaskView { task, rights: rights_for(caller, task), zone: prefs.zone, select };
    let mut res = format::respond(prefs.format, &Payload::Task(view));
    if let Ok(v) = HeaderValue::from_str(&task.etag()) {
        res.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&crate::domain::time::http_date(task.updated)) {
        res.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    res
}

pub(crate) fn tasks_response(prefs: &Prefs, caller: &Caller, tasks: &[Task], select: Option<&[String]>) -> Response {
    let views =
        tasks.iter().map(|t| TaskView { task: t, rights: rights_for(caller, t), zone: prefs.zone, select }).collect();
    format::respond(prefs.format, &Payload::Tasks(views))
}

/// The body as a `BatchTaskInfo` object, or a 400 that says what was wrong.
pub(crate) fn require_object(value: Option<Value>, type_name: &str) -> Result<Map<String, Value>, ApiError> {
    match value {
        Some(Value::Object(m)) => Ok(m),
        None | Some(Value::Null) => Err(ApiError::bad_request(Msg::new(Key::BodyMissing).arg("type", type_name))),
        Some(_) => Err(ApiError::bad_request(Msg::new(Key::BodyNotObject).arg("type", type_name))),
    }
}

/// `$select=A,B` as property names, checked against `BatchTaskInfo`.
pub(crate) fn parse_select(raw: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let names: Vec<String> = raw.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if names.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = names.iter().find(|n| !super::wire::is_property(n)) {
        return Err(ApiError::bad_request(Msg::new(Key::UnknownSelect).arg("name", bad).arg("type", "BatchTaskInfo")));
    }
    Ok(Some(names))
}

/// Query-string pairs with case-insensitive lookup.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub(crate) fn no_content() -> Response {
    axum::http::StatusCode::NO_CONTENT.into_response()
}
