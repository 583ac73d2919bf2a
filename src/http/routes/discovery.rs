//! `GET /api` (no credentials) and `GET /api/v1` (the endpoint map).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::domain::Caller;
use crate::http::AppState;
use crate::http::auth::Access::{self, Credentials, Login, Open};
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

/// One operation: its verb, the credentials it asks for, and a one-line description.
pub type Operation = (&'static str, Access, &'static str);

/// Every endpoint under `/api/v1` with its operations. `GET /api/v1` lists them, and the OpenAPI
/// document is generated from them.
pub const ENDPOINTS: &[(&str, &[Operation])] = &[
    (
        "BatchTask",
        &[
            ("GET", Credentials, "?$select=&$filter=&$orderBy=&$top=&$skip= OData list over the BatchTasks archive"),
            (
                "POST",
                Credentials,
                "Start a batch task; answers its id (Idempotency-Key: a repeat within 24 h answers the same id)",
            ),
        ],
    ),
    (
        "BatchTask/{id}",
        &[
            ("GET", Credentials, "Get a BatchTaskInfo by id"),
            (
                "PUT",
                Credentials,
                "Update State, Description, Response and Request (a body, a JSON Patch or a Merge Patch)",
            ),
            ("PATCH", Credentials, "Apply a JSON Patch or Merge Patch to State, Description, Response and Request"),
            ("DELETE", Credentials, "Delete a finished or waiting task"),
        ],
    ),
    ("BatchTask/{state}", &[("GET", Credentials, "User tasks in a BatchTaskState (All = every state)")]),
    ("BatchTask/{id}/Stop", &[("POST", Credentials, "Stop a task; answers true when the stop took effect")]),
    (
        "BatchTask/Events/stream",
        &[(
            "GET",
            Credentials,
            "?task=&name= text/event-stream of task changes: created, state, progress, deleted, resync",
        )],
    ),
    // -- definitions --
    (
        "Definitions",
        &[(
            "GET",
            Credentials,
            "The task definitions this server runs: Name, Runner, limits, Paused, Schedule, NextRun, Counts, Parameters",
        )],
    ),
    // -- scheduling --
    (
        "Definitions/{name}/Pause",
        &[("POST", Credentials, "Admins: pause a definition on every node (its New tasks wait)")],
    ),
    ("Definitions/{name}/Resume", &[("POST", Credentials, "Admins: resume a paused definition")]),
    ("BatchTask/{id}/Retry", &[("POST", Credentials, "Run a Failed task again (back to New); answers the task")]),
    (
        "BatchTask/Bulk",
        &[(
            "POST",
            Credentials,
            "{Action: Stop|Delete|Retry, Filter, DryRun} Act on every task a $filter matches; {Matched, Done}",
        )],
    ),
    // -- runner --
    (
        "BatchTask/Acquire",
        &[("POST", Credentials, "{Names, Wait} Worker: claim the oldest New task of those names, with a lease token")],
    ),
    (
        "BatchTask/{id}/Heartbeat",
        &[(
            "POST",
            Credentials,
            "X-Lease-Token; {ProgressPercent, ProgressDescription} Worker: renew the lease, report progress",
        )],
    ),
    ("BatchTask/{id}/Events", &[("GET", Credentials, "The task's state changes: time, from, to, who, why")]),
    (
        "BatchTask/{id}/Dependencies",
        &[("GET", Credentials, "The tasks it waits for (After) and those waiting for it (Before, the first 100)")],
    ),
    // -- nodes --
    (
        "Nodes",
        &[(
            "GET",
            Credentials,
            "Admins: the nodes sharing the database, live and dead within the hour, with their liveness",
        )],
    ),
    // -- stats --
    (
        "Stats",
        &[(
            "GET",
            Credentials,
            "?minutes=60 State counts, and tasks finished per minute with queue wait and run time (own tasks for users)",
        )],
    ),
    ("Agents/Batch/GetBatchTaskInfo", &[("POST", Credentials, "?id={int} Get a BatchTaskInfo by id")]),
    (
        "Agents/Batch/GetBatchTaskInfosByAssociates",
        &[("POST", Credentials, "{AssociateIds} Tasks of associates (empty = all, 0 = system, -1 = all users)")],
    ),
    (
        "Agents/Batch/StartBatchJob",
        &[(
            "POST",
            Credentials,
            "{BatchTaskInfo} Start a batch task; answers its id (Idempotency-Key as for POST BatchTask)",
        )],
    ),
    ("Agents/Batch/StopBatchJob", &[("POST", Credentials, "?id={int} Stop a task")]),
    ("Agents/Batch/GetBatchTaskInfosByState", &[("POST", Credentials, "{State} User tasks in a state")]),
    (
        "Agents/Batch/UpdateBatchTask",
        &[("POST", Credentials, "{BatchTaskInfo} Update State, Description, Response and Request")],
    ),
    (
        "Agents/Batch/GetBatchTaskInfosByNameAndState",
        &[("POST", Credentials, "{Name, State} User tasks by definition name and state")],
    ),
    (
        "Agents/Batch/GetBatchTaskInfosByNameAndAssociates",
        &[("POST", Credentials, "{Name, AssociateIds} Tasks by name and associates")],
    ),
    (
        "Agents/Batch/GetBatchTaskInfosByAssociatesAndState",
        &[("POST", Credentials, "{AssociateIds, State} Tasks by associates and state")],
    ),
    ("Agents/Batch/DeleteBatchTasks", &[("POST", Credentials, "{BatchTaskIds} Delete tasks")]),
    ("Agents/Batch/DeleteBatchTask", &[("POST", Credentials, "?batchTaskId={int} Delete a task")]),
    ("Agents/Batch/GetAllBatchTaskInfosByName", &[("POST", Credentials, "{TaskName} User and system tasks by name")]),
    (
        "Agents/Batch/GetAllBatchTaskInfosByNameAndState",
        &[("POST", Credentials, "{TaskName, State} User and system tasks by name and state")],
    ),
    ("Agents/Batch/GetSystemBatchTaskInfosByName", &[("POST", Credentials, "{TaskName} System tasks by name")]),
    (
        "Agents/Batch/GetSystemBatchTaskInfosByNameAndState",
        &[("POST", Credentials, "{TaskName, State} System tasks by name and state")],
    ),
    // -- identity and access --
    (
        "Ticket",
        &[
            ("POST", Login, "Basic credentials (or {UserName, Password}) for an SOTicket 7T:..."),
            ("DELETE", Credentials, "Log out: end this SOTicket (or, with a password, all of the caller's)"),
        ],
    ),
    (
        "Session",
        &[
            ("POST", Login, "Browser login form {UserName, Password}: session cookie and XSRF-TOKEN"),
            ("GET", Credentials, "Who the caller is and how it authenticated"),
            ("DELETE", Credentials, "Log out: end this browser session"),
        ],
    ),
    (
        "Token",
        &[
            ("GET", Credentials, "The caller's API tokens (admins: all)"),
            ("POST", Credentials, "{Scope, Name, Expires} Create an API token"),
        ],
    ),
    ("Token/{id}", &[("DELETE", Credentials, "Revoke an API token")]),
    (
        "Associate",
        &[
            ("GET", Credentials, "Associates (admins)"),
            ("POST", Credentials, "{Name, Password, Role, Active} Add an associate"),
        ],
    ),
    (
        "Associate/{id}",
        &[
            ("GET", Credentials, "An associate (admins)"),
            ("PUT", Credentials, "Change Name, Password, Role or Active"),
            ("DELETE", Credentials, "Remove an associate"),
        ],
    ),
    (
        "Agents/SoPrincipal/AuthenticateUsernamePassword",
        &[("POST", Login, "{UserName, Password} Log in for an SOTicket")],
    ),
];

/// Endpoints outside `/api/v1`, by absolute path: in the OpenAPI document, not in `GET /api/v1`.
pub const SERVICE_ENDPOINTS: &[(&str, &[Operation])] = &[
    ("/api", &[("GET", Open, "The version, and whether the database answers")]),
    ("/api/v1", &[("GET", Credentials, "The endpoint map: URL -> {verb: description}")]),
    ("/api/openapi.json", &[("GET", Open, "This OpenAPI document")]),
    ("/api/docs", &[("GET", Open, "The API reference, as a web page rendered from the OpenAPI document")]),
    ("/metrics", &[("GET", Credentials, "Prometheus metrics: requests, latencies, tasks by state")]),
    ("/health/live", &[("GET", Open, "200 while the process serves requests")]),
    ("/health/ready", &[("GET", Open, "200 when the database answers, else 503")]),
];

pub async fn endpoints(_caller: Caller, BaseUrl(base): BaseUrl) -> Json<Value> {
    let mut map = serde_json::Map::new();
    for (path, verbs) in ENDPOINTS {
        let verbs: serde_json::Map<String, Value> =
            verbs.iter().map(|(v, _, d)| ((*v).to_owned(), Value::from(*d))).collect();
        map.insert(format!("{base}/api/v1/{path}"), Value::Object(verbs));
    }
    // The reference, and the document it is rendered from.
    for (path, verbs) in SERVICE_ENDPOINTS.iter().filter(|(p, _)| matches!(*p, "/api/docs" | "/api/openapi.json")) {
        let verbs = verbs.iter().map(|(v, _, d)| ((*v).to_owned(), Value::from(*d))).collect();
        map.insert(format!("{base}{path}"), Value::Object(verbs));
    }
    Json(Value::Object(map))
}
