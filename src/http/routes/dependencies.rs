//! `GET /api/v1/BatchTask/{id}/Dependencies`: the tasks a task waits for (`After`) and those
//! waiting for it (`Before`, the first [`BEFORE_MAX`] by id), as far as the caller may see them.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::dependency::BEFORE_MAX;
use crate::domain::{Caller, Task};
use crate::http::AppState;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{Format, XmlWriter};

/// One listed task: `task` is `None` for a dependency since deleted (then only its id shows).
struct Item<'a> {
    id: i32,
    task: Option<&'a Task>,
    satisfied: Option<bool>,
}

fn item_json(i: &Item<'_>) -> Value {
    let mut v = json!({
        "Id": i.id,
        "Name": i.task.map(|t| t.name.as_str()),
        "State": i.task.map(|t| t.state.name()),
    });
    if let Some(s) = i.satisfied {
        v["Satisfied"] = Value::Bool(s);
    }
    v
}

fn item_xml(x: &mut XmlWriter, i: &Item<'_>) {
    x.open("BatchTaskDependency");
    x.leaf("Id", &i.id.to_string());
    match i.task {
        Some(t) => {
            x.leaf("Name", &t.name);
            x.leaf("State", t.state.name());
        }
        None => {
            x.nil("Name");
            x.nil("State");
        }
    }
    if let Some(s) = i.satisfied {
        x.leaf("Satisfied", if s { "true" } else { "false" });
    }
    x.close("BatchTaskDependency");
}

pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let id = super::batchtask::parse_id(&key)?;
    let deps = app.tasks.dependencies(&caller, id).await?;
    let after: Vec<Item<'_>> =
        deps.after.iter().map(|e| Item { id: e.id, task: e.task.as_ref(), satisfied: Some(e.satisfied) }).collect();
    let before: Vec<Item<'_>> = deps.before.iter().map(|t| Item { id: t.id, task: Some(t), satisfied: None }).collect();
    let body = match prefs.format {
        Format::Json => serde_json::to_vec(&json!({
            "After": after.iter().map(item_json).collect::<Vec<_>>(),
            "Before": before.iter().map(item_json).collect::<Vec<_>>(),
            "BeforeMore": deps.more_before,
            "BeforeMax": BEFORE_MAX,
        }))
        .expect("JSON values serialise"),
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("BatchTaskDependencies");
            for (name, list) in [("After", &after), ("Before", &before)] {
                x.open(name);
                for i in list {
                    item_xml(&mut x, i);
                }
                x.close(name);
            }
            x.leaf("BeforeMore", if deps.more_before { "true" } else { "false" });
            x.leaf("BeforeMax", &BEFORE_MAX.to_string());
            x.close("BatchTaskDependencies");
            x.finish()
        }
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, prefs.format.content_type())], body).into_response())
}
