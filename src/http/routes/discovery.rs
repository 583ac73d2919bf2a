//! `GET /api` (no credentials) and `GET /api/v1` (the endpoint map).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::domain::Caller;
use crate::http::AppState;
use crate::http::forwarded::BaseUrl;

/// The version, and whether the database answers: a 200 either way, since the answer is about
/// this server (`/health/ready` is the probe that fails).
pub async fn version(State(app): State<AppState>, BaseUrl(base): BaseUrl) -> Json<Value> {
    let database = match app.tasks.ping().await {
        Ok(()) => "Available",
        Err(e) => {
            tracing::warn!(error = %e, "the database did not answer a ping");
            "Unavailable"
        }
    };
    Json(json!({
        "Version": "v1",
        "v1": format!("{base}/api/v1"),
        "Product": "batchd",
        "ProductVersion": env!("CARGO_PKG_VERSION"),
        "NetServer": format!("batchd {} (SuperOffice Batch API compatible)", env!("CARGO_PKG_VERSION")),
        "Database": database,
    }))
}

/// Every endpoint with its verbs and a one-line description.
pub const ENDPOINTS: &[(&str, &[(&str, &str)])] = &[
    (
        "BatchTask",
        &[
            ("GET", "?$select=&$filter=&$orderBy=&$top=&$skip= OData list over the BatchTasks archive"),
            ("POST", "Start a batch task; answers its id"),
        ],
    ),
    (
        "BatchTask/{id}",
        &[
            ("GET", "Get a BatchTaskInfo by id"),
            ("PUT", "Update State, Description, Response and Request (a body, a JSON Patch or a Merge Patch)"),
            ("PATCH", "Apply a JSON Patch or Merge Patch to State, Description, Response and Request"),
            ("DELETE", "Delete a finished or waiting task"),
        ],
    ),
    ("BatchTask/{state}", &[("GET", "User tasks in a BatchTaskState (All = every state)")]),
    ("BatchTask/{id}/Stop", &[("POST", "Stop a task; answers true when the stop took effect")]),
    (
        "BatchTask/Events/stream",
        &[("GET", "?task=&name= text/event-stream of task changes: created, state, progress, deleted, resync")],
    ),
    // -- definitions --
    ("Definitions", &[("GET", "The task definitions this server runs: Name, Runner, Description, limits")]),
    // -- runner --
    (
        "BatchTask/Acquire",
        &[("POST", "{Names, Wait} Worker: claim the oldest New task of those names, with a lease token")],
    ),
    (
        "BatchTask/{id}/Heartbeat",
        &[("POST", "X-Lease-Token; {ProgressPercent, ProgressDescription} Worker: renew the lease, report progress")],
    ),
    ("BatchTask/{id}/Events", &[("GET", "The task's state changes: time, from, to, who, why")]),
    // -- nodes --
    ("Nodes", &[("GET", "Admins: the nodes sharing the database, live and dead within the hour, with their liveness")]),
    ("Agents/Batch/GetBatchTaskInfo", &[("POST", "?id={int} Get a BatchTaskInfo by id")]),
    (
        "Agents/Batch/GetBatchTaskInfosByAssociates",
        &[("POST", "{AssociateIds} Tasks of associates (empty = all, 0 = system, -1 = all users)")],
    ),
    ("Agents/Batch/StartBatchJob", &[("POST", "{BatchTaskInfo} Start a batch task; answers its id")]),
    ("Agents/Batch/StopBatchJob", &[("POST", "?id={int} Stop a task")]),
    ("Agents/Batch/GetBatchTaskInfosByState", &[("POST", "{State} User tasks in a state")]),
    ("Agents/Batch/UpdateBatchTask", &[("POST", "{BatchTaskInfo} Update State, Description, Response and Request")]),
    (
        "Agents/Batch/GetBatchTaskInfosByNameAndState",
        &[("POST", "{Name, State} User tasks by definition name and state")],
    ),
    (
        "Agents/Batch/GetBatchTaskInfosByNameAndAssociates",
        &[("POST", "{Name, AssociateIds} Tasks by name and associates")],
    ),
    (
        "Agents/Batch/GetBatchTaskInfosByAssociatesAndState",
        &[("POST", "{AssociateIds, State} Tasks by associates and state")],
    ),
    ("Agents/Batch/DeleteBatchTasks", &[("POST", "{BatchTaskIds} Delete tasks")]),
    ("Agents/Batch/DeleteBatchTask", &[("POST", "?batchTaskId={int} Delete a task")]),
    ("Agents/Batch/GetAllBatchTaskInfosByName", &[("POST", "{TaskName} User and system tasks by name")]),
    (
        "Agents/Batch/GetAllBatchTaskInfosByNameAndState",
        &[("POST", "{TaskName, State} User and system tasks by name and state")],
    ),
    ("Agents/Batch/GetSystemBatchTaskInfosByName", &[("POST", "{TaskName} System tasks by name")]),
    (
        "Agents/Batch/GetSystemBatchTaskInfosByNameAndState",
        &[("POST", "{TaskName, State} System tasks by name and state")],
    ),
    // -- identity and access --
    (
        "Ticket",
        &[
            ("POST", "Basic credentials (or {UserName, Password}) for an SOTicket 7T:..."),
            ("DELETE", "Log out: end this SOTicket (or, with a password, all of the caller's)"),
        ],
    ),
    (
        "Session",
        &[
            ("POST", "Browser login form {UserName, Password}: session cookie and XSRF-TOKEN"),
            ("GET", "Who the caller is and how it authenticated"),
            ("DELETE", "Log out: end this browser session"),
        ],
    ),
    (
        "Token",
        &[("GET", "The caller's API tokens (admins: all)"), ("POST", "{Scope, Name, Expires} Create an API token")],
    ),
    ("Token/{id}", &[("DELETE", "Revoke an API token")]),
    ("Associate", &[("GET", "Associates (admins)"), ("POST", "{Name, Password, Role, Active} Add an associate")]),
    (
        "Associate/{id}",
        &[
            ("GET", "An associate (admins)"),
            ("PUT", "Change Name, Password, Role or Active"),
            ("DELETE", "Remove an associate"),
        ],
    ),
    ("Agents/SoPrincipal/AuthenticateUsernamePassword", &[("POST", "{UserName, Password} Log in for an SOTicket")]),
];

pub async fn endpoints(_caller: Caller, BaseUrl(base): BaseUrl) -> Json<Value> {
    let mut map = serde_json::Map::new();
    for (path, verbs) in ENDPOINTS {
        let verbs: serde_json::Map<String, Value> =
            verbs.iter().map(|(v, d)| ((*v).to_owned(), Value::from(*d))).collect();
        map.insert(format!("{base}/api/v1/{path}"), Value::Object(verbs));
    }
    Json(Value::Object(map))
}
