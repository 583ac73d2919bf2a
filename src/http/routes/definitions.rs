//! `GET /api/v1/Definitions`: the task definitions this server runs, with their state across
//! the nodes; `POST /api/v1/Definitions/{name}/Pause` and `/Resume` (admins).
//!
//! Deliberately small (what `batchd definition list` shows): the runner's kind and the names of
//! the parameters its templates use, but never its command line, URL or headers, which may hold
//! secrets. Any authenticated caller may read it, as anyone who may start a task needs to know
//! the names; the counts cover only the tasks the caller may see.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::Caller;
use crate::domain::definition::Definition;
use crate::domain::run::next_run;
use crate::domain::time;
use crate::http::AppState;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{Format, Payload, XmlWriter, respond};
use crate::store::DefinitionStatus;

fn seconds(d: Option<std::time::Duration>) -> Option<u64> {
    d.map(|d| d.as_secs())
}

fn view(d: &Definition, status: Option<&DefinitionStatus>, prefs: &Prefs, now: chrono::DateTime<chrono::Utc>) -> Value {
    let paused = status.is_some_and(|s| s.paused);
    let counts = status.map(|s| s.counts).unwrap_or_default();
    let schedule = d.schedule();
    let next = schedule
        .as_ref()
        .and_then(|s| next_run(s, status.and_then(|st| st.next_start), paused, d.catch_up, now))
        .map(|t| time::format(t, prefs.zone));
    json!({
        "Name": d.name,
        "Description": d.description,
        "Runner": d.runner.kind(),
        "TimeOut": seconds(d.run_timeout()),
        "Restarts": d.retry.restarts,
        "Concurrency": d.concurrency,
        "Priority": d.priority,
        "Rate": d.rate.map(|r| r.describe()),
        "Unique": d.unique.as_ref().map(|u| u.names()),
        "StartInterval": seconds(d.start_interval),
        "CancellationBehaviour": d.cancellation.name(),
        "Paused": paused,
        "Schedule": schedule.map(|s| s.describe()),
        "NextRun": next,
        "Counts": {"New": counts.new, "Running": counts.running, "Failed": counts.failed},
        "Parameters": crate::runner::parameter_names(&d.runner),
    })
}

/// One XML element for a JSON value: objects and arrays nest (an array's items are `<string>`
/// or `<int>` elements, as .NET writes a `string[]`), null is `i:nil`.
fn xml_value(x: &mut XmlWriter, name: &str, v: &Value) {
    match v {
        Value::Null => x.nil(name),
        Value::String(s) => x.leaf(name, s),
        Value::Object(m) => {
            x.open(name);
            for (k, v) in m {
                xml_value(x, k, v);
            }
            x.close(name);
        }
        Value::Array(items) => {
            x.open(name);
            for item in items {
                let tag = if item.is_string() { "string" } else { "int" };
                xml_value(x, tag, item);
            }
            x.close(name);
        }
        other => x.leaf(name, &other.to_string()),
    }
}

pub async fn list(caller: Caller, State(app): State<AppState>, prefs: Prefs) -> Result<Response, ApiError> {
    let defs = app.tasks.runner().map(|r| r.definitions().all().to_vec()).unwrap_or_default();
    let statuses: HashMap<String, DefinitionStatus> =
        app.tasks.definition_statuses(&caller).await?.into_iter().map(|s| (s.name.clone(), s)).collect();
    let now = crate::service::now();
    let list: Vec<Value> = defs.iter().map(|d| view(d, statuses.get(&d.name), &prefs, now)).collect();
    let body = match prefs.format {
        Format::Json => serde_json::to_vec(&list).unwrap_or_default(),
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("ArrayOfBatchTaskDefinition");
            for d in &list {
                xml_value(&mut x, "BatchTaskDefinition", d);
            }
            x.close("ArrayOfBatchTaskDefinition");
            x.finish()
        }
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, prefs.format.content_type())], body).into_response())
}

/// `POST /Definitions/{name}/Pause`: answers `true` when this call paused it, `false` when it
/// was paused already.
pub async fn pause(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let changed = app.tasks.set_paused(&caller, &name, true).await?;
    Ok(respond(prefs.format, &Payload::Bool(changed)))
}

/// `POST /Definitions/{name}/Resume`: answers `true` when this call resumed it.
pub async fn resume(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let changed = app.tasks.set_paused(&caller, &name, false).await?;
    Ok(respond(prefs.format, &Payload::Bool(changed)))
}
