//! The OpenAPI 3.0 document, served at `GET /api/openapi.json`. Paths come from the same table
//! as the `GET /api/v1` endpoint map (`routes::discovery::ENDPOINTS`), schemas from the wire
//! property table, so the document cannot describe endpoints or properties that do not exist.
//! `tests/api/openapi.rs` snapshots it in `docs/openapi.json`.

use serde_json::{Map, Value, json};

use crate::domain::{BatchTaskState, CancellationBehaviour};

use super::routes::discovery::ENDPOINTS;
use super::wire::PROPERTIES;

fn schema_for(field_type: &str) -> Value {
    match field_type {
        "System.Int32" => json!({"type": "integer", "format": "int32"}),
        "System.Int16" => json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": 32767}),
        "System.Boolean" => json!({"type": "boolean"}),
        "System.DateTime" => json!({"type": "string", "format": "date-time", "nullable": true}),
        "SuperOffice.Data.BatchTaskState" => json!({"$ref": "#/components/schemas/BatchTaskState"}),
        "SuperOffice.Data.BatchTaskCancellationBehaviour" => {
            json!({"$ref": "#/components/schemas/BatchTaskCancellationBehaviour"})
        }
        "SuperOffice.Util.StringDictionary" => {
            json!({"type": "object", "additionalProperties": {"type": "string"}, "nullable": true})
        }
        _ => json!({"type": "string", "nullable": true}),
    }
}

fn batch_task_info() -> Value {
    let mut props = Map::new();
    for (name, ty, len) in PROPERTIES {
        let mut s = schema_for(ty);
        if len > 0 {
            s["maxLength"] = json!(len);
        }
        props.insert(name.into(), s);
    }
    props.insert("TableRight".into(), json!({"$ref": "#/components/schemas/TableRight"}));
    props.insert(
        "FieldProperties".into(),
        json!({"type": "object", "additionalProperties": {"$ref": "#/components/schemas/FieldProperty"}}),
    );
    json!({"type": "object", "properties": props, "description": "A batch task. Input names match in any case; only State, Description, Response and Request change on update."})
}

/// What one operation takes and answers, by path and verb.
fn operation(path: &str, verb: &str, summary: &str) -> Value {
    let task = json!({"$ref": "#/components/schemas/BatchTaskInfo"});
    let tasks = json!({"type": "array", "items": {"$ref": "#/components/schemas/BatchTaskInfo"}});
    let ok = |schema: Value| json!({"description": "OK", "content": {"application/json": {"schema": schema.clone()}, "application/xml": {"schema": schema}}});
    let error = json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let body = |schema: Value| {
        json!({"required": true, "content": {
        "application/json": {"schema": schema.clone()}, "application/xml": {"schema": schema.clone()},
        "application/x-www-form-urlencoded": {"schema": schema}}})
    };
    let patches = || {
        json!({
            "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/JsonPatch"}},
            "application/merge-patch+json": {"schema": {"type": "object", "description": "RFC 7396: the properties to change; null removes"}}
        })
    };
    let mut params = Vec::new();
    for seg in path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let schema = if name == "state" {
                json!({"$ref": "#/components/schemas/BatchTaskState"})
            } else if name == "name" {
                json!({"type": "string", "description": "A definition's Name"})
            } else {
                json!({"type": "integer", "format": "int32"})
            };
            params.push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    if matches!((path, verb), ("BatchTask", "POST") | ("Agents/Batch/StartBatchJob", "POST")) {
        params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
            "schema": {"type": "string", "maxLength": 255},
            "description": "1-255 visible ASCII characters. The same key from the same caller within 24 h answers the first create's id (with Idempotent-Replayed: true) and creates nothing; with a different body, 422"}));
    }
    let mut op = json!({"summary": summary, "parameters": params, "responses": {"400": error, "401": error}});
    let responses = op["responses"].as_object_mut().expect("object");
    let agent = path.starts_with("Agents/");
    let (request, response): (Option<Value>, (&str, Value)) = match (path, verb) {
        ("BatchTask", "GET") => (None, ("200", ok(json!({"$ref": "#/components/schemas/ODataList"})))),
        ("BatchTask", "POST") => {
            responses.insert("422".into(), error.clone());
            let create = json!({"allOf": [task.clone(), {"type": "object", "properties": {"Priority": {
                "type": "integer", "minimum": 0, "maximum": crate::domain::task::PRIORITY_MAX,
                "description": "batchd's own: claim order, higher first (ties oldest first); absent = the definition's priority. Also taken in StartBatchJob's BatchTaskInfo"}}}]});
            (Some(body(create)), ("200", ok(json!({"type": "integer"}))))
        }
        ("BatchTask/{id}", "GET") => {
            responses.insert("304".into(), json!({"description": "Not modified (If-None-Match, If-Modified-Since)"}));
            responses.insert("412".into(), error.clone());
            (None, ("200", ok(task.clone())))
        }
        ("BatchTask/{id}", "PUT") => {
            let mut b = body(task.clone());
            let extra = patches();
            for (k, v) in extra.as_object().expect("object") {
                b["content"][k] = v.clone();
            }
            responses.insert("409".into(), error.clone());
            responses.insert("412".into(), error.clone());
            (Some(b), ("200", ok(task.clone())))
        }
        ("BatchTask/{id}", "PATCH") => {
            responses.insert("409".into(), error.clone());
            responses.insert("412".into(), error.clone());
            responses.insert("415".into(), error.clone());
            (Some(json!({"required": true, "content": patches()})), ("200", ok(task.clone())))
        }
        ("BatchTask/{id}", "DELETE") => {
            responses.insert("412".into(), error.clone());
            (None, ("204", json!({"description": "Deleted"})))
        }
        ("BatchTask/{state}", "GET") => (None, ("200", ok(tasks.clone()))),
        ("Nodes", "GET") => {
            responses.insert("403".into(), error.clone());
            (None, ("200", ok(json!({"type": "array", "items": {"$ref": "#/components/schemas/Node"}}))))
        }
        // -- stats --
        ("Stats", "GET") => (None, ("200", ok(json!({"$ref": "#/components/schemas/Stats"})))),
        ("BatchTask/{id}/Stop", "POST") => {
            responses.insert("412".into(), error.clone());
            (None, ("200", ok(json!({"type": "boolean"}))))
        }
        // -- definitions --
        ("Definitions", "GET") => (
            None,
            (
                "200",
                ok(json!({"type": "array", "items": {"type": "object", "properties": {
            "Name": {"type": "string"}, "Description": {"type": "string", "nullable": true},
            "Runner": {"type": "string", "enum": ["noop", "sleep", "command", "http", "external", "embedded"]},
            "TimeOut": {"type": "integer", "nullable": true, "description": "seconds"},
            "Restarts": {"type": "integer"}, "Concurrency": {"type": "integer", "nullable": true},
            "Priority": {"type": "integer", "minimum": 0, "maximum": crate::domain::task::PRIORITY_MAX, "description": "Of its tasks whose create names none"},
            "Rate": {"type": "string", "nullable": true, "description": "At most COUNT starts per PERIOD across all nodes (100/1m)"},
            "StartInterval": {"type": "integer", "nullable": true, "description": "seconds; set for definitions recurring by start_interval"},
            "CancellationBehaviour": {"$ref": "#/components/schemas/BatchTaskCancellationBehaviour"},
            "Paused": {"type": "boolean", "description": "Its New tasks wait and its schedule creates nothing, on every node"},
            "Schedule": {"type": "string", "nullable": true, "description": "What creates its tasks: an interval (5m) or a cron expression and its zone (0 3 * * * Europe/Oslo)"},
            "NextRun": {"type": "string", "format": "date-time", "nullable": true, "description": "When the schedule next creates a task; null when none (no schedule, or paused)"},
            "Counts": {"type": "object", "description": "Tasks the caller may see", "properties": {
                "New": {"type": "integer"}, "Running": {"type": "integer", "description": "Aquired and Started"}, "Failed": {"type": "integer"}}},
            "Parameters": {"type": "array", "items": {"type": "string"}, "description": "ParameterObject keys the runner's templates use"}}}})),
            ),
        ),
        // -- scheduling --
        ("Definitions/{name}/Pause" | "Definitions/{name}/Resume", "POST") => {
            responses.insert("403".into(), error.clone());
            (None, ("200", ok(json!({"type": "boolean", "description": "true when this call changed it"}))))
        }
        ("BatchTask/{id}/Retry", "POST") => {
            responses.insert("403".into(), error.clone());
            responses.insert("409".into(), error.clone());
            responses.insert("412".into(), error.clone());
            (None, ("200", ok(task.clone())))
        }
        ("BatchTask/Bulk", "POST") => {
            let request = json!({"type": "object", "required": ["Action", "Filter"], "properties": {
                "Action": {"type": "string", "enum": ["Stop", "Delete", "Retry"]},
                "Filter": {"type": "string", "description": "An OData $filter, as GET /api/v1/BatchTask takes", "example": "State eq 'Failed'"},
                "DryRun": {"type": "boolean", "description": "Count the matches only"}}});
            let answer = json!({"type": "object", "properties": {
                "Matched": {"type": "integer", "description": "Tasks the filter matched among those the caller sees (at most 1000)"},
                "Done": {"type": "integer", "description": "Tasks the action was carried out on"}}});
            (Some(body(request)), ("200", ok(answer)))
        }
        _ if agent => {
            let method = path.rsplit('/').next().unwrap_or("");
            let answer = match method {
                "StartBatchJob" => ok(json!({"type": "integer"})),
                "StopBatchJob" => ok(json!({"type": "boolean"})),
                "GetBatchTaskInfo" | "UpdateBatchTask" => ok(json!({"allOf": [task.clone()], "nullable": true})),
                "DeleteBatchTask" | "DeleteBatchTasks" => json!({"description": "Deleted"}),
                _ => ok(tasks.clone()),
            };
            let code = if method.starts_with("Delete") { "204" } else { "200" };
            (Some(body(json!({"type": "object", "description": "The method's parameters, by name"}))), (code, answer))
        }
        _ => (None, ("200", json!({"description": "OK"}))),
    };
    responses.insert(response.0.into(), response.1);
    if path.contains('{') || agent {
        responses.insert("404".into(), error.clone());
    }
    if let Some(b) = request {
        op["requestBody"] = b;
    }
    if path == "Stats" {
        op["parameters"] = json!([{"name": "minutes", "in": "query", "required": false,
            "description": "The window: the last N whole minutes, this one included",
            "schema": {"type": "integer", "minimum": 1, "maximum": crate::store::STATS_MAX_MINUTES, "default": 60}}]);
    }
    op
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (path, verbs) in ENDPOINTS {
        let mut item = Map::new();
        for (verb, summary) in *verbs {
            item.insert(verb.to_ascii_lowercase(), operation(path, verb, summary));
        }
        paths.insert(format!("/api/v1/{path}"), Value::Object(item));
    }
    let states: Vec<&str> = BatchTaskState::ALL_NAMES.iter().map(|s| s.name()).collect();
    let cancels: Vec<&str> = CancellationBehaviour::ALL.iter().map(|c| c.name()).collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "batchd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SuperOffice Batch API compatible batch-task server. Errors use the Error schema; agents answer 200 {Message, MessageDetail} when a parameter is missing."
        },
        "security": [{"basic": []}, {"soTicket": []}, {"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "soTicket": {"type": "apiKey", "in": "header", "name": "Authorization",
                    "description": "SOTicket 7T:... (from POST /api/v1/Ticket); scheme name in any case"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "API token from `batchd token create` or POST /api/v1/Token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "batchd_session",
                    "description": "Browser session from POST /api/v1/Session; state-changing requests also send X-XSRF-TOKEN"}
            },
            "schemas": {
                "BatchTaskInfo": batch_task_info(),
                "BatchTaskState": {"type": "string", "enum": states, "description": "Also accepted as numbers on input (All = 99999)."},
                "BatchTaskCancellationBehaviour": {"type": "string", "enum": cancels},
                "TableRight": {"type": "object", "properties": {"Mask": {"type": "string", "example": "Select, Update, Delete"}, "Reason": {"type": "string"}}},
                "FieldProperty": {"type": "object", "properties": {
                    "FieldRight": {"type": "object", "properties": {"Mask": {"type": "string", "enum": ["Update", "Read"]}, "Reason": {"type": "string"}}},
                    "FieldType": {"type": "string"}, "FieldLength": {"type": "integer"}}},
                "Error": {"type": "object", "properties": {
                    "Error": {"type": "boolean"}, "ErrorType": {"type": "string"}, "ErrorMessage": {"type": "string"},
                    "Message": {"type": "string"}, "ErrorSource": {"type": "string"}}},
                "JsonPatch": {"type": "array", "description": "RFC 6902 operations; paths name properties in any case, the leading / is optional", "items": {"type": "object", "required": ["op", "path"], "properties": {
                    "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                    "path": {"type": "string", "example": "/State"}, "from": {"type": "string"}, "value": {}}}},
                "Node": {"type": "object", "description": "A batchd process sharing the database. Alive: not shut down, and seen within its own runner lease.", "properties": {
                    "Name": {"type": "string"}, "Version": {"type": "string"}, "Address": {"type": "string", "description": "The address it listens on"},
                    "Started": {"type": "string", "format": "date-time"}, "LastSeen": {"type": "string", "format": "date-time"},
                    "Running": {"type": "integer", "description": "Runs in progress on it when last seen"},
                    "RunnerEnabled": {"type": "boolean"}, "Alive": {"type": "boolean"}}},
                "Stats": {"type": "object", "description": "Figures of the tasks the caller may see (users: their own).", "properties": {
                    "Since": {"type": "string", "format": "date-time", "description": "Start of the window"},
                    "Minutes": {"type": "integer"},
                    "States": {"type": "object", "description": "Tasks in each state now, every state named", "additionalProperties": {"type": "integer"}},
                    "Finished": {"type": "array", "description": "Per minute and end state, the tasks whose last change (their end) is in the window; oldest first", "items": {"type": "object", "properties": {
                        "Minute": {"type": "string", "format": "date-time"}, "State": {"$ref": "#/components/schemas/BatchTaskState"},
                        "Count": {"type": "integer"}, "Started": {"type": "integer", "description": "Of Count, those that ever started; the times cover these"},
                        "WaitMsAvg": {"type": "integer", "description": "Created to LastStarted, ms"}, "WaitMsMax": {"type": "integer"},
                        "RunMsAvg": {"type": "integer", "description": "LastStarted to the end, ms"}, "RunMsMax": {"type": "integer"}}}}}},
                "ODataList": {"type": "object", "properties": {
                    "odata.metadata": {"type": "string"}, "odata.nextLink": {"type": "string", "nullable": true},
                    "value": {"type": "array", "items": {"type": "object", "additionalProperties": true}}}}
            }
        }
    })
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}
