//! `GET /api/v1/Definitions`: the task definitions this server runs, read-only.
//!
//! Deliberately small (what `batchd definition list` shows): the runner's kind but never its
//! command line, URL or headers, which may hold secrets. Any authenticated caller may read it,
//! as anyone who may start a task needs to know the names.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::Caller;
use crate::domain::definition::Definition;
use crate::http::AppState;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{Format, XmlWriter};

fn seconds(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| d.as_secs())
}

fn view(d: &Definition) -> Value {
    json!({
        "Name": d.name,
        "Description": d.description,
        "Runner": d.runner.kind(),
        "TimeOut": seconds(d.run_timeout()),
        "Restarts": d.retry.restarts,
        "Concurrency": d.concurrency,
        "StartInterval": seconds(d.start_interval),
        "CancellationBehaviour": d.cancellation.name(),
    })
}

pub async fn list(_caller: Caller, State(app): State<AppState>, prefs: Prefs) -> Result<Response, ApiError> {
    let defs = app.tasks.runner().map(|r| r.definitions().all().to_vec()).unwrap_or_default();
    let list: Vec<Value> = defs.iter().map(|d| view(d)).collect();
    let body = match prefs.format {
        Format::Json => serde_json::to_vec(&list).unwrap_or_default(),
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("ArrayOfBatchTaskDefinition");
            for d in &list {
                x.open("BatchTaskDefinition");
                for (k, v) in d.as_object().into_iter().flatten() {
                    match v {
                        Value::Null => x.nil(k),
                        Value::String(s) => x.leaf(k, s),
                        other => x.leaf(k, &other.to_string()),
                    }
                }
                x.close("BatchTaskDefinition");
            }
            x.close("ArrayOfBatchTaskDefinition");
            x.finish()
        }
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, prefs.format.content_type())], body).into_response())
}
