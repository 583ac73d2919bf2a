//! The RPC-style agent endpoints `POST /api/v1/Agents/Batch/<Method>`, with SuperOffice's habits:
//! `null` when nothing is found, a bare int or bool, 204 for deletes, and
//! `{"Message","MessageDetail"}` (status 200) when a required parameter is missing.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::domain::{BatchTaskState, Caller, DomainError, Expected, Field};
use crate::http::AppState;
use crate::http::body::{Body, BodyKind};
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{self, Payload};
use crate::http::wire::{self, Props, int_of, parse_state};
use crate::i18n::{Key, Msg};
use crate::service::{Precondition, StopOutcome};
use crate::store::{AssociateSelector, StoreError, TaskFilter};

use super::{Query, no_content, parse_select, precondition, task_response, tasks_response};

/// The fifteen methods, in SuperOffice's spelling.
pub const METHODS: [&str; 15] = [
    "GetBatchTaskInfo",
    "GetBatchTaskInfosByAssociates",
    "StartBatchJob",
    "StopBatchJob",
    "GetBatchTaskInfosByState",
    "UpdateBatchTask",
    "GetBatchTaskInfosByNameAndState",
    "GetBatchTaskInfosByNameAndAssociates",
    "GetBatchTaskInfosByAssociatesAndState",
    "DeleteBatchTasks",
    "DeleteBatchTask",
    "GetAllBatchTaskInfosByName",
    "GetAllBatchTaskInfosByNameAndState",
    "GetSystemBatchTaskInfosByName",
    "GetSystemBatchTaskInfosByNameAndState",
];

/// A parameter was missing: the agents answer 200 with a message rather than an error status.
struct Missing(&'static str);

/// Parameters from the body object, or for scalars from the query string.
struct Params<'a> {
    body: Option<Props<'a>>,
    query: &'a Query,
}

enum Outcome {
    Done(Response),
    Missing(Missing),
}

impl From<Missing> for Outcome {
    fn from(m: Missing) -> Outcome {
        Outcome::Missing(m)
    }
}

type AgentResult = Result<Outcome, ApiError>;

impl<'a> Params<'a> {
    fn value(&self, name: &str) -> Option<&'a Value> {
        self.body.as_ref().and_then(|b| b.get(name))
    }

    fn int(&self, name: &'static str) -> Result<Result<i32, Missing>, ApiError> {
        let bad = || ApiError::from(DomainError::WrongType { field: Field::Param(name), expected: Expected::Integer });
        let n = match self.value(name) {
            Some(Value::Null) | None => match self.query.get(name) {
                Some(q) => q.trim().parse::<i64>().map_err(|_| bad())?,
                None => return Ok(Err(Missing(name))),
            },
            Some(v) => int_of(v).ok_or_else(bad)?,
        };
        i32::try_from(n).map(Ok).map_err(|_| bad())
    }

    fn ints(&self, name: &'static str) -> Result<Result<Vec<i32>, Missing>, ApiError> {
        let bad =
            || ApiError::from(DomainError::WrongType { field: Field::Param(name), expected: Expected::IntegerList });
        let items: Vec<Value> = match self.value(name) {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::Null) | None => match self.query.get(name) {
                Some(q) => q.split(',').filter(|s| !s.trim().is_empty()).map(|s| Value::from(s.trim())).collect(),
                None => return Ok(Err(Missing(name))),
            },
            // A single number (a form body with one value) is a list of one.
            Some(v @ (Value::Number(_) | Value::String(_))) => vec![v.clone()],
            // XML-style wrapper: {"int": [1, 2]}; one element name, not several.
            Some(Value::Object(m)) if m.len() > 1 => return Err(bad()),
            Some(Value::Object(m)) => match m.values().next() {
                Some(Value::Array(a)) => a.clone(),
                Some(v) => vec![v.clone()],
                None => Vec::new(),
            },
            Some(_) => return Err(bad()),
        };
        items
            .iter()
            .map(|v| int_of(v).and_then(|n| i32::try_from(n).ok()).ok_or_else(bad))
            .collect::<Result<_, _>>()
            .map(Ok)
    }

    /// A text parameter; `None` when absent or null (a blank name means "all").
    fn text(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.value(name) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Null) => Ok(None),
            None => Ok(self.query.get(name).map(str::to_owned)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(DomainError::WrongType { field: Field::Param(name), expected: Expected::Text }.into()),
        }
    }

    fn state(&self, name: &'static str) -> Result<Result<BatchTaskState, Missing>, ApiError> {
        match self.value(name) {
            Some(Value::Null) | None => match self.query.get(name) {
                Some(q) => Ok(Ok(parse_state(&Value::from(q), Field::Param(name))?)),
                None => Ok(Err(Missing(name))),
            },
            Some(v) => Ok(Ok(parse_state(v, Field::Param(name))?)),
        }
    }

    fn object(&self, name: &'static str) -> Result<Result<&'a Map<String, Value>, Missing>, ApiError> {
        match self.value(name) {
            Some(Value::Object(m)) => Ok(Ok(m)),
            Some(Value::Null) | None => Ok(Err(Missing(name))),
            Some(_) => Err(DomainError::WrongType { field: Field::Param(name), expected: Expected::Object }.into()),
        }
    }
}

macro_rules! need {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(missing) => return Ok(Outcome::Missing(missing)),
        }
    };
}

/// A parameter read already (so a malformed one is a 400 even when another is missing), now
/// required.
macro_rules! present {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(missing) => return Ok(Outcome::Missing(missing)),
        }
    };
}

/// `All` means any state; other states filter.
fn states(s: BatchTaskState) -> Option<Vec<BatchTaskState>> {
    if s == BatchTaskState::All { None } else { Some(vec![s]) }
}

/// Blank or missing names mean "every name".
fn name_filter(name: Option<String>) -> Option<String> {
    name.filter(|n| !n.trim().is_empty())
}

pub async fn call(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    Path(method): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(method) = METHODS.iter().find(|m| m.eq_ignore_ascii_case(&method)).copied() else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            Msg::new(Key::NotFoundRoute).arg("path", format!("Agents/Batch/{method}")),
        ));
    };
    let query = Query::parse(raw.as_deref());
    let select = parse_select(query.get("$select"))?;
    let select = select.as_deref();
    let body = xml_parameters(body, method);
    let body_obj = match &body.value {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(ApiError::bad_request(
                Msg::new(Key::BodyNotObject).arg("type", format!("{method} parameters")),
            ));
        }
    };
    let params = Params { body: body_obj.map(Props::new), query: &query };
    let tasks = &app.tasks;
    let caller = &caller;
    let prefs = &prefs;
    let list = |filter: TaskFilter| async move {
        let found = tasks.find(caller, filter).await?;
        Ok::<_, ApiError>(Outcome::Done(tasks_response(prefs, caller, &found, select)))
    };
    let outcome: AgentResult = async {
        match method {
            "GetBatchTaskInfo" => {
                let id = need!(params.int("Id"));
                Ok(Outcome::Done(match tasks.get(caller, id).await? {
                    Some(t) => task_response(prefs, caller, &t, select),
                    None => format::respond(prefs.format, &Payload::Null),
                }))
            }
            "StartBatchJob" => {
                // A malformed header is the request's fault whatever the body says: read it first.
                let key = super::batchtask::idempotency_key(&headers)?;
                let info = need!(params.object("BatchTaskInfo"));
                let req = wire::parse_create(info)?;
                let created = tasks
                    .create(caller, req.task, req.associate_id, req.cancellation_given, req.priority_given, key)
                    .await?;
                let mut res = format::respond(prefs.format, &Payload::Int(created.id.into()));
                super::batchtask::mark_replay(&mut res, created);
                Ok(Outcome::Done(res))
            }
            "StopBatchJob" => {
                let id = need!(params.int("Id"));
                let stopped = match tasks.stop(caller, id, Precondition::default()).await {
                    Ok(StopOutcome::Stopped { .. }) => true,
                    Ok(StopOutcome::Refused) => false,
                    Err(StoreError::Rejected(DomainError::TaskNotFound { .. })) => false,
                    Err(e) => return Err(e.into()),
                };
                Ok(Outcome::Done(format::respond(prefs.format, &Payload::Bool(stopped))))
            }
            "UpdateBatchTask" => {
                let info = need!(params.object("BatchTaskInfo"));
                let (id, update) = wire::parse_update(info)?;
                let Some(id) = id else {
                    return Ok(Outcome::Missing(Missing("BatchTaskInfo.Id")));
                };
                let id = i32::try_from(id).map_err(|_| ApiError::not_found(id))?;
                Ok(Outcome::Done(match tasks.update(caller, id, update, precondition(&headers)?).await {
                    Ok(t) => task_response(prefs, caller, &t, select),
                    Err(StoreError::Rejected(DomainError::TaskNotFound { .. })) => {
                        format::respond(prefs.format, &Payload::Null)
                    }
                    Err(e) => return Err(e.into()),
                }))
            }
            "DeleteBatchTask" => {
                let id = need!(params.int("BatchTaskId"));
                delete_all(&app, caller, &[id]).await?;
                Ok(Outcome::Done(no_content()))
            }
            "DeleteBatchTasks" => {
                let ids = need!(params.ints("BatchTaskIds"));
                delete_all(&app, caller, &ids).await?;
                Ok(Outcome::Done(no_content()))
            }
            "GetBatchTaskInfosByAssociates" => {
                let ids = need!(params.ints("AssociateIds"));
                list(TaskFilter { associates: AssociateSelector::from_ids(&ids), ..Default::default() }).await
            }
            "GetBatchTaskInfosByState" => {
                let s = need!(params.state("State"));
                list(TaskFilter { states: states(s), system: Some(false), ..Default::default() }).await
            }
            "GetBatchTaskInfosByNameAndState" => {
                let name = name_filter(params.text("Name")?);
                let s = need!(params.state("State"));
                list(TaskFilter { states: states(s), system: Some(false), name, ..Default::default() }).await
            }
            "GetBatchTaskInfosByNameAndAssociates" => {
                let name = name_filter(params.text("Name")?);
                let ids = need!(params.ints("AssociateIds"));
                list(TaskFilter { associates: AssociateSelector::from_ids(&ids), name, ..Default::default() }).await
            }
            "GetBatchTaskInfosByAssociatesAndState" => {
                let (ids, s) = (params.ints("AssociateIds")?, params.state("State")?);
                let (ids, s) = (present!(ids), present!(s));
                list(TaskFilter {
                    associates: AssociateSelector::from_ids(&ids),
                    states: states(s),
                    ..Default::default()
                })
                .await
            }
            "GetAllBatchTaskInfosByName" => {
                let name = name_filter(params.text("TaskName")?);
                list(TaskFilter { name, ..Default::default() }).await
            }
            "GetAllBatchTaskInfosByNameAndState" => {
                let name = name_filter(params.text("TaskName")?);
                let s = need!(params.state("State"));
                list(TaskFilter { name, states: states(s), ..Default::default() }).await
            }
            "GetSystemBatchTaskInfosByName" => {
                let name = name_filter(params.text("TaskName")?);
                list(TaskFilter { name, system: Some(true), ..Default::default() }).await
            }
            "GetSystemBatchTaskInfosByNameAndState" => {
                let name = name_filter(params.text("TaskName")?);
                let s = need!(params.state("State"));
                list(TaskFilter { name, states: states(s), system: Some(true), ..Default::default() }).await
            }
            _ => unreachable!("METHODS lists every arm"),
        }
    }
    .await;
    match outcome? {
        Outcome::Done(res) => Ok(res),
        Outcome::Missing(Missing(name)) => Ok(format::respond(
            prefs.format,
            &Payload::Invalid {
                message: Msg::new(Key::RequestInvalid).render(prefs.lang),
                detail: Msg::new(Key::ParameterMissing).arg("name", name).render(prefs.lang),
            },
        )),
    }
}

/// XML agent bodies: `<StartBatchJob><BatchTaskInfo>…</BatchTaskInfo></StartBatchJob>` is the
/// wrapper form (the root names the method, its children are the parameters), but a bare
/// `<BatchTaskInfo>…</BatchTaskInfo>` is that one parameter. Any other root is a wrapper.
fn xml_parameters(mut body: Body, method: &str) -> Body {
    if body.kind == BodyKind::Xml
        && let (Some(root), Some(value)) = (&body.root, &mut body.value)
    {
        // An empty wrapper (`<GetBatchTaskInfo/>`) has no parameters, like `{}`.
        if value.as_str().is_some_and(|s| s.trim().is_empty()) {
            *value = Value::Object(Map::new());
        }
        if !root.eq_ignore_ascii_case(method) && root.eq_ignore_ascii_case("BatchTaskInfo") {
            let mut wrapped = Map::new();
            wrapped.insert("BatchTaskInfo".into(), value.take());
            *value = Value::Object(wrapped);
        }
    }
    body
}

/// Deletes every listed task or none: a task held by a worker (or hidden, or not the caller's
/// to delete) stops the whole call before anything is removed. Unknown ids are skipped.
async fn delete_all(app: &AppState, caller: &Caller, ids: &[i32]) -> Result<(), ApiError> {
    let mut present = Vec::with_capacity(ids.len());
    for &id in ids {
        if let Some(task) = app.tasks.get(caller, id).await? {
            if task.state.is_active() {
                return Err(DomainError::TaskBusy { id: id.into(), state: task.state }.into());
            }
            if !crate::domain::rights::rights_for(caller, &task).delete {
                return Err(DomainError::Forbidden { reason: crate::domain::rights::Reason::MayNotDeleteTask }.into());
            }
            present.push(id);
        }
    }
    for id in present {
        match app.tasks.delete(caller, id, Precondition::default()).await {
            Ok(()) | Err(StoreError::Rejected(DomainError::TaskNotFound { .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `GET` on an agent URL describes the call instead of making it.
pub async fn describe(_caller: Caller, Path(method): Path<String>) -> Result<axum::Json<Value>, ApiError> {
    let Some(method) = METHODS.iter().find(|m| m.eq_ignore_ascii_case(&method)) else {
        return Err(ApiError::new(axum::http::StatusCode::NOT_FOUND, Msg::new(Key::NotFoundRoute).arg("path", method)));
    };
    let doc = super::discovery::ENDPOINTS
        .iter()
        .find(|(p, _)| p.ends_with(method))
        .and_then(|(_, verbs)| verbs.first())
        .map_or("", |(_, _, d)| d);
    Ok(axum::Json(json!({ "Method": method, "Verb": "POST", "Description": doc })))
}
