//! The REST resource `/api/v1/BatchTask`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::query::Column;
use crate::domain::rights::rights_for;
use crate::domain::{BatchTaskState, Caller, DomainError, Field, time};
use crate::http::AppState;
use crate::http::body::{self, Body, BodyKind};
use crate::http::conditional::Conditions;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{self, Payload};
use crate::http::patch as http_patch;
use crate::http::wire::{self};
use crate::i18n::{Key, Msg};
use crate::service::{BulkAction, Freshness, StopOutcome};
use crate::store::{ListQuery, TaskFilter};

use super::{Query, no_content, precondition, require_object, task_response, tasks_response};
use crate::http::forwarded::{BaseUrl, local_path};

/// A path id: all digits. Larger than any task id → no such task.
pub(super) fn parse_id(raw: &str) -> Result<i32, ApiError> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::WrongType { field: Field::Id, expected: crate::domain::Expected::Integer }.into());
    }
    raw.parse::<i32>().map_err(|_| ApiError::not_found(raw))
}

pub async fn create(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let obj = require_object(body.value, "BatchTaskInfo")?;
    let req = wire::parse_create(&obj)?;
    let created =
        app.tasks.create(&caller, req.task, req.associate_id, req.cancellation_given, req.priority_given, key).await?;
    let mut res = format::respond(prefs.format, &Payload::Int(created.id.into()));
    let location = local_path(&app.config, &format!("/api/v1/BatchTask/{}", created.id));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    mark_replay(&mut res, created);
    Ok(res)
}

/// The `Idempotency-Key` header, checked (bounded, visible ASCII); `None` when absent.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    use crate::domain::idempotency::{HEADER, parse_key};
    let Some(v) = headers.get(HEADER) else { return Ok(None) };
    let raw =
        v.to_str().map_err(|_| DomainError::UnknownValue { field: Field::Param(HEADER), value: String::new() })?;
    Ok(Some(parse_key(raw)?))
}

/// A replayed create says so (`Idempotent-Replayed: true`), as the same answer may be a new task
/// or an old one; so does a create that answered the live task holding its unique key
/// (`Warning: 299 batchd "unique: …"`).
pub(crate) fn mark_replay(res: &mut Response, created: crate::service::Created) {
    if created.replayed {
        res.headers_mut().insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    }
    if let Some(v) = created.warning.as_deref().and_then(|w| HeaderValue::from_str(w).ok()) {
        res.headers_mut().insert(header::WARNING, v);
    }
}

/// `GET /BatchTask/{id}` or `GET /BatchTask/{state}`: digits are an id, a state name a list.
pub async fn get_one(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
    Conditions(pre): Conditions,
) -> Result<Response, ApiError> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        let id = parse_id(&key)?;
        let pre = pre?;
        let task = app.tasks.get(&caller, id).await?.ok_or_else(|| ApiError::not_found(id))?;
        if pre.check_read(&task)? == Freshness::NotModified {
            // RFC 9110 §15.4.5: a 304 carries the ETag a 200 would have.
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&task.etag()) {
                res.headers_mut().insert(header::ETAG, v);
            }
            return Ok(res);
        }
        return Ok(app.answers.task(&task, rights_for(&caller, &task), prefs.zone, prefs.format));
    }
    let state =
        BatchTaskState::ALL_NAMES.into_iter().find(|s| s.name().eq_ignore_ascii_case(&key)).ok_or_else(|| {
            ApiError::bad_request(
                Msg::new(Key::BadPathSegment).arg("segment", key.chars().take(80).collect::<String>()),
            )
        })?;
    let filter = TaskFilter {
        states: if state == BatchTaskState::All { None } else { Some(vec![state]) },
        system: Some(false),
        ..TaskFilter::default()
    };
    let tasks = app.tasks.find(&caller, filter).await?;
    Ok(tasks_response(&prefs, &caller, &tasks, None))
}

pub async fn update(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    // -- runner -- a worker finishing its run under a lease.
    if headers.contains_key(super::runner::LEASE_HEADER) {
        return super::runner::finish(caller, app, prefs, id, &headers, body).await;
    }
    if matches!(body.kind, BodyKind::JsonPatch | BodyKind::MergePatch) {
        return apply_patch(caller, app, prefs, id, headers, body).await;
    }
    let obj = require_object(body.value, "BatchTaskInfo")?;
    let (body_id, update) = wire::parse_update(&obj)?;
    if let Some(b) = body_id {
        if b != i64::from(id) {
            return Err(DomainError::IdMismatch { path: id.into(), body: b }.into());
        }
    }
    let task = app.tasks.update(&caller, id, update, precondition(&headers)?).await?;
    Ok(task_response(&prefs, &caller, &task, None))
}

/// `PATCH /BatchTask/{id}`: JSON Patch or Merge Patch only. The type is checked before the body
/// is read, so any other body is a 415 whatever it holds.
pub async fn patch(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    let headers = request.headers().clone();
    let kind = match body::body_kind(&headers) {
        Ok(k @ (BodyKind::JsonPatch | BodyKind::MergePatch)) => k,
        _ => {
            let sent = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Msg::new(Key::PatchNotAllowedType).arg("type", sent.chars().take(100).collect::<String>()),
            ));
        }
    };
    let (_, bytes) = body::read_bytes(request, app.config.http.body_read_timeout).await?;
    let value = body::parse(kind, &bytes)?;
    apply_patch(caller, app, prefs, id, headers, Body { kind, value, root: None }).await
}

/// Applies a patch body to the task (see [`crate::http::patch`] and
/// [`crate::service::TaskService::update_with`]).
async fn apply_patch(
    caller: Caller,
    app: AppState,
    prefs: Prefs,
    id: i32,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let parsed = http_patch::parse(body.kind, body.value)?;
    let zone = prefs.zone;
    let make: crate::service::UpdateFromTask = std::sync::Arc::new(move |caller, task| {
        let doc = http_patch::task_document(task, rights_for(caller, task), zone);
        http_patch::apply(&parsed, doc)
    });
    let task = app.tasks.update_with(&caller, id, make, precondition(&headers)?).await?;
    Ok(task_response(&prefs, &caller, &task, None))
}

pub async fn stop(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    Ok(match app.tasks.stop(&caller, id, precondition(&headers)?).await? {
        StopOutcome::Stopped { task, warning } => {
            let mut res = format::respond(prefs.format, &Payload::Bool(true));
            if warning {
                let text = Msg::new(Key::CancelWarning).arg("id", task.id).render(prefs.lang);
                let value = format!("199 batchd \"{}\"", text.replace('"', "'"));
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(header::WARNING, v);
                }
            }
            res
        }
        StopOutcome::Refused => format::respond(prefs.format, &Payload::Bool(false)),
    })
}

/// `POST /BatchTask/{id}/Retry`: a `Failed` task back to `New`; answers the task as GET does.
pub async fn retry(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    let task = app.tasks.retry(&caller, id, precondition(&headers)?).await?;
    Ok(task_response(&prefs, &caller, &task, None))
}

/// A property of a request body, by name in any case.
fn property<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn required_text<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, ApiError> {
    match property(obj, name) {
        None | Some(Value::Null) => Err(DomainError::Required { field: Field::Param(name) }.into()),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(DomainError::Required { field: Field::Param(name) }.into()),
        Some(_) => {
            Err(DomainError::WrongType { field: Field::Param(name), expected: crate::domain::Expected::Text }.into())
        }
    }
}

/// `POST /BatchTask/Bulk` `{"Action": "Stop"|"Delete"|"Retry", "Filter": "<$filter>", "DryRun": bool}`:
/// the action on every task the filter matches that the caller sees (at most
/// [`crate::service::BULK_MAX`]); answers `{"Matched", "Done"}`.
pub async fn bulk(caller: Caller, State(app): State<AppState>, prefs: Prefs, body: Body) -> Result<Response, ApiError> {
    let obj = require_object(body.value, "BulkAction")?;
    let word = required_text(&obj, "Action")?;
    let action = BulkAction::parse(word).ok_or_else(|| DomainError::UnknownValue {
        field: Field::Param("Action"),
        value: word.chars().take(80).collect(),
    })?;
    let filter = crate::domain::filter::parse(required_text(&obj, "Filter")?, prefs.zone).map_err(|e| {
        ApiError::bad_request(
            Msg::new(Key::FilterInvalid)
                .arg("position", e.position)
                .arg("expected", &e.expected)
                .arg("found", &e.found),
        )
    })?;
    let dry_run = match property(&obj, "DryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
            s.eq_ignore_ascii_case("true")
        }
        Some(_) => {
            return Err(DomainError::WrongType {
                field: Field::Param("DryRun"),
                expected: crate::domain::Expected::Boolean,
            }
            .into());
        }
    };
    let outcome = app.tasks.bulk(&caller, action, filter, dry_run).await?;
    let body = match prefs.format {
        format::Format::Json => {
            serde_json::to_vec(&json!({"Matched": outcome.matched, "Done": outcome.done})).unwrap_or_default()
        }
        format::Format::Xml => {
            let mut x = format::XmlWriter::new();
            x.open_root("BulkResult");
            x.leaf("Matched", &outcome.matched.to_string());
            x.leaf("Done", &outcome.done.to_string());
            x.close("BulkResult");
            x.finish()
        }
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, prefs.format.content_type())], body).into_response())
}

pub async fn delete(
    caller: Caller,
    State(app): State<AppState>,
    // Read for its checks only: SO-TimeZone and SO-Culture are validated on every endpoint.
    _prefs: Prefs,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&key)?;
    app.tasks.delete(&caller, id, precondition(&headers)?).await?;
    Ok(no_content())
}

const DEFAULT_TOP: u32 = 100;
const MAX_TOP: u32 = 1000;

fn parse_count(q: &Query, name: &'static str, default: u32, max: u32) -> Result<u32, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            Ok(_) => Err(DomainError::OutOfRange { field: Field::Param(name), min: 0, max: max.into() }.into()),
            Err(_) => {
                Err(DomainError::WrongType { field: Field::Param(name), expected: crate::domain::Expected::Integer }
                    .into())
            }
        },
    }
}

fn parse_columns(raw: &str, param: &'static str, sortable: bool) -> Result<Vec<(Column, bool)>, ApiError> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = item.split_whitespace();
        let name = words.next().unwrap_or("");
        let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    Msg::new(Key::FieldUnknownValue).arg("field", param).arg("value", other),
                ));
            }
        };
        let column = Column::parse(name).ok_or_else(|| {
            ApiError::bad_request(
                Msg::new(Key::FieldUnknownValue)
                    .arg("field", param)
                    .arg("value", name.chars().take(80).collect::<String>()),
            )
        })?;
        if sortable && !column.sortable() {
            return Err(ApiError::bad_request(
                Msg::new(Key::FieldUnknownValue).arg("field", param).arg("value", column.name()),
            ));
        }
        out.push((column, desc));
    }
    Ok(out)
}

/// `GET /api/v1/BatchTask`: the OData list over the BatchTasks archive.
pub async fn list(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    RawQuery(raw): RawQuery,
    BaseUrl(base): BaseUrl,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw.as_deref());
    let top = parse_count(&q, "$top", DEFAULT_TOP, MAX_TOP)?;
    let skip = parse_count(&q, "$skip", 0, u32::MAX)?;
    let select: Vec<Column> = match q.get("$select") {
        Some(s) if !s.trim().is_empty() => parse_columns(s, "$select", false)?.into_iter().map(|(c, _)| c).collect(),
        _ => Column::DEFAULT_SELECT.to_vec(),
    };
    let order_by = match q.get("$orderBy") {
        Some(s) => parse_columns(s, "$orderBy", true)?,
        None => Vec::new(),
    };
    let filter = match q.get("$filter") {
        Some(f) if !f.trim().is_empty() => Some(crate::domain::filter::parse(f, prefs.zone).map_err(|e| {
            ApiError::bad_request(
                Msg::new(Key::FilterInvalid)
                    .arg("position", e.position)
                    .arg("expected", &e.expected)
                    .arg("found", &e.found),
            )
        })?),
        _ => None,
    };
    // One row more than asked tells whether there is a next page.
    // The service narrows `owner` to what the caller may see.
    let query = ListQuery { filter, order_by, top: top.saturating_add(1), skip, owner: None };
    let mut rows = app.tasks.list(&caller, query).await?;
    let more = rows.len() > top as usize;
    rows.truncate(top as usize);

    let rows: Vec<Map<String, Value>> = rows
        .iter()
        .map(|row| {
            let mut obj = Map::new();
            obj.insert("PrimaryKey".into(), json!(row.task.id));
            obj.insert("EntityName".into(), json!("batchtask"));
            for c in &select {
                obj.insert(c.name().into(), archive_value(row, *c, &prefs));
            }
            obj
        })
        .collect();
    let next = more.then(|| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q.0 {
            if !k.eq_ignore_ascii_case("$skip") {
                s.append_pair(k, v);
            }
        }
        s.append_pair("$skip", &(skip.saturating_add(top)).to_string());
        format!("{base}/api/v1/BatchTask?{}", s.finish())
    });
    let metadata = format!("{base}/api/v1/archive/$metadata");
    let body = match prefs.format {
        format::Format::Json => serde_json::to_vec(&json!({
            "odata.metadata": metadata,
            "odata.nextLink": next,
            "value": rows,
        }))
        .unwrap_or_default(),
        format::Format::Xml => format::odata_xml(&metadata, next.as_deref(), &rows),
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, prefs.format.content_type())], body).into_response())
}

fn archive_value(row: &crate::store::ListRow, c: Column, prefs: &Prefs) -> Value {
    let t = &row.task;
    let date =
        |d: Option<chrono::DateTime<chrono::Utc>>| d.map_or(Value::Null, |d| Value::from(time::format(d, prefs.zone)));
    match c {
        Column::Id => json!(t.id),
        Column::DefinitionId => json!(row.definition_id),
        Column::DefinitionName => json!(t.name),
        Column::DefinitionDescription => json!(row.definition_description),
        Column::DefinitionTimeOut => json!(row.definition_timeout),
        Column::Description => json!(t.description),
        Column::DbTag => json!(t.database_serial_number),
        Column::State => json!(t.state.number()),
        Column::DetailsTable => json!(t.details_table),
        Column::DetailsRecord => json!(t.details_record),
        Column::Request => json!(t.request),
        Column::Response => json!(t.response),
        Column::StartCount => json!(t.start_count),
        Column::LastStarted => date(t.last_started),
        Column::ProgressPercent => json!(t.progress_percent),
        Column::ProgressDescription => json!(t.progress_description),
        Column::UpdatedBy => json!(row.updated_by),
        Column::UpdatedDate => date(Some(t.updated)),
        Column::RegisteredBy => json!(row.registered_by),
        Column::RegisteredDate => date(Some(t.created)),
    }
}
