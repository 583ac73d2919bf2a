//! The OpenAPI 3.0 document, served at `GET /api/openapi.json` and rendered at `GET /api/docs`.
//!
//! Generated, so it cannot describe what does not exist:
//! - paths and verbs from the endpoint tables (`routes::discovery::ENDPOINTS`, `SERVICE_ENDPOINTS`),
//!   which also give each operation's `security` ([`Access`], the auth layer's word);
//! - the statuses an operation may answer from the layers it passes, each of which declares what
//!   it answers (authentication, preferences, bodies, preconditions, storage), plus its own;
//! - input schemas that admit exactly the leniency of the readers in `wire.rs` (names and numbers
//!   for enums, in any letter case; numbers and booleans as text), and output schemas with every
//!   property the writers always send.
//!
//! `tests/api/openapi.rs` snapshots it in `docs/openapi.json`; `tests/api/schemathesis.rs` checks
//! a live server against it.

use serde_json::{Map, Value, json};

use crate::domain::task::limits;
use crate::domain::{BatchTaskState, CancellationBehaviour};

use super::auth::Access;
use super::routes::discovery::{ENDPOINTS, SERVICE_ENDPOINTS};
use super::wire::PROPERTIES;

/// What Rust's `str::trim` removes (Unicode White_Space), spelt out: regex engines disagree on `\s`.
const WS: &str = r"[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// Text the server stores: no NUL characters.
const NO_NUL: &str = r"^[^\u0000]*$";

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `Word` → `[Ww][Oo][Rr][Dd]`: a pattern for a name in any letter case, valid in every dialect.
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An enum as the readers take it: the name (any case, surrounding white space ignored), its
/// number, or its number as text.
fn enum_input(names: &[&str], numbers: &[i32], description: &str) -> Value {
    let words: Vec<String> =
        names.iter().map(|n| any_case(n)).chain(numbers.iter().map(|n| format!(r"\+?{n}"))).collect();
    let mut any = vec![
        json!({"type": "string", "enum": names}),
        json!({"type": "string", "pattern": format!("^{WS}*(?:{}){WS}*$", words.join("|"))}),
    ];
    if !numbers.is_empty() {
        any.push(json!({"type": "integer", "enum": numbers}));
    }
    json!({"description": description, "anyOf": any})
}

/// A whole number in the int32 range.
fn int32() -> Value {
    json!({"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX})
}

/// Text as the identity endpoints read it (`text` there): a string, or a number taken as text.
fn text_or_number(string: Value) -> Value {
    json!({"anyOf": [string, {"type": "number"}]})
}

/// A boolean as the identity endpoints read it: true/false, or "true", "1", "yes", "false",
/// "0", "no" in any case.
fn identity_bool() -> Value {
    let words: Vec<String> = ["true", "1", "yes", "false", "0", "no"].iter().map(|w| any_case(w)).collect();
    json!({"nullable": true, "anyOf": [{"type": "boolean"},
        {"type": "string", "pattern": format!("^{WS}*(?:{}){WS}*$", words.join("|"))}]})
}

/// A form carries text only: nothing in it is null.
fn form_of(mut schema: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("nullable");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut schema);
    schema
}

fn states_except(skip: &[BatchTaskState]) -> (Vec<&'static str>, Vec<i32>) {
    BatchTaskState::ALL_NAMES.iter().filter(|s| !skip.contains(s)).map(|s| (s.name(), s.number())).unzip()
}

fn state_input(skip: &[BatchTaskState], description: &str) -> Value {
    let (names, numbers) = states_except(skip);
    enum_input(&names, &numbers, description)
}

fn cancellation_input() -> Value {
    let (names, numbers): (Vec<&str>, Vec<i32>) =
        CancellationBehaviour::ALL.iter().map(|c| (c.name(), c.number())).unzip();
    enum_input(&names, &numbers, "By name in any case, or by number")
}

/// A text property as `Props::text` reads it: a string (no NUL, at most `max` characters), or a
/// number or boolean taken as its text; null clears it.
fn text_input(max: usize) -> Value {
    json!({"nullable": true, "anyOf": [
        {"type": "string", "maxLength": max, "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}]})
}

/// A whole number as `Props::int` reads it. Also accepted as a string of digits.
fn int_input(min: i64, max: i64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max, "nullable": true,
        "description": "Also accepted as a string of digits"})
}

/// A boolean as `Props::bool` reads it: true/false, "true"/"false" in any case, or 0/1.
fn bool_input() -> Value {
    json!({"nullable": true, "anyOf": [
        {"type": "boolean"},
        {"type": "string", "pattern": format!("^{WS}*(?:{}|{}){WS}*$", any_case("true"), any_case("false"))},
        {"type": "integer", "enum": [0, 1]}]})
}

/// The create body (`parse_create`): the properties it reads; the others are ignored.
fn task_create() -> Value {
    let mut props = Map::new();
    let name_pattern = format!(r"^[^\u0000]*[^\u0000{}][^\u0000]*$", &WS[1..WS.len() - 1]);
    props.insert(
        "Name".into(),
        json!({"description": "The definition to run; not blank", "anyOf": [
            {"type": "string", "maxLength": limits::NAME, "pattern": name_pattern}, {"type": "number"}, {"type": "boolean"}]}),
    );
    for (name, max) in [
        ("Description", limits::DESCRIPTION),
        ("Context", limits::LONG_TEXT),
        ("Request", limits::LONG_TEXT),
        ("DatabaseSerialNumber", limits::DATABASE_SERIAL_NUMBER),
        ("FileName", limits::FILE_NAME),
    ] {
        props.insert(name.into(), text_input(max));
    }
    props.insert("DetailsTable".into(), int_input(0, i16::MAX.into()));
    props.insert("DetailsRecord".into(), int_input(0, i32::MAX.into()));
    props.insert("IsSystemTask".into(), bool_input());
    props.insert("IsInternalTask".into(), bool_input());
    props.insert("CancellationBehaviour".into(), json!({"allOf": [cancellation_input()], "nullable": true}));
    let mut priority = int_input(0, crate::domain::task::PRIORITY_MAX.into());
    priority["description"] =
        json!("batchd's own: claim order, higher first (ties oldest first); absent = the definition's priority");
    props.insert("Priority".into(), priority);
    props.insert(
        "After".into(),
        json!({"type": "array", "nullable": true, "maxItems": crate::domain::dependency::AFTER_MAX,
            "items": {"type": "integer", "minimum": 1, "maximum": i32::MAX},
            "description": format!("batchd's own: ids of tasks (the caller may see) this one waits for; it stays New \
                until all have Succeeded, and ends Failed if one fails or is deleted. Duplicates count once. \
                A task may have at most {} tasks waiting for it, and a chain of dependencies is at most {} deep",
                crate::domain::dependency::DEPENDENTS_MAX, crate::domain::dependency::DEPTH_MAX)}),
    );
    props.insert(
        "ParameterObject".into(),
        json!({"type": "object", "nullable": true, "description": "Text values; numbers, booleans and null are taken as text",
            "additionalProperties": {"nullable": true, "anyOf": [
                {"type": "string", "maxLength": limits::LONG_TEXT, "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}]}}),
    );
    json!({
        "type": "object", "required": ["Name"], "properties": props,
        "description": "A new task. Property names match in any case; Id, State, StartCount, LastStarted, Created, \
            Result, Response, ProgressPercent, ProgressDescription, TableRight and FieldProperties are ignored. \
            AssociateId names another associate (admins; 0 = the caller)."
    })
}

/// The same body as a form: flat, so without ParameterObject.
fn task_create_form() -> Value {
    let mut s = task_create();
    let props = s["properties"].as_object_mut().expect("object");
    props.remove("ParameterObject");
    // A form's booleans are the words: 0 and 1 are numbers only in JSON.
    for name in ["IsSystemTask", "IsInternalTask"] {
        props[name]["anyOf"].as_array_mut().expect("anyOf").retain(|s| s["type"] != "integer");
    }
    form_of(s)
}

/// The update body (`parse_update`): State, Description, Response, Request.
fn task_update() -> Value {
    json!({"type": "object", "properties": {
        "State": state_input(&[BatchTaskState::All, BatchTaskState::Unknown],
            "The new state; allowed moves are in docs/API.md (others answer 409)"),
        "Description": text_input(limits::DESCRIPTION),
        "Response": text_input(limits::LONG_TEXT),
        "Request": text_input(limits::LONG_TEXT)},
        "description": "Only State, Description, Response and Request change; a property absent stays, null clears it. \
            Property names match in any case. Other properties are ignored, except Id: when non-zero it must be the path's."})
}

fn batch_task_info() -> Value {
    let mut props = Map::new();
    for (name, ty, len) in PROPERTIES {
        let mut s = match ty {
            "System.Int32" => json!({"type": "integer", "format": "int32"}),
            "System.Int16" => json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": 32767}),
            "System.Boolean" => json!({"type": "boolean"}),
            "System.DateTime" => json!({"type": "string", "format": "date-time", "nullable": true}),
            "SuperOffice.Data.BatchTaskState" => r("BatchTaskState"),
            "SuperOffice.Data.BatchTaskCancellationBehaviour" => r("BatchTaskCancellationBehaviour"),
            "SuperOffice.Util.StringDictionary" => {
                json!({"type": "object", "additionalProperties": {"type": "string"}, "nullable": true})
            }
            _ => json!({"type": "string", "nullable": true}),
        };
        if len > 0 {
            s["maxLength"] = json!(len);
        }
        props.insert(name.into(), s);
    }
    props.insert("TableRight".into(), r("TableRight"));
    props.insert("FieldProperties".into(), json!({"type": "object", "additionalProperties": r("FieldProperty")}));
    let required: Vec<&String> = props.keys().collect();
    json!({"type": "object", "required": required, "properties": props,
        "description": "A batch task, as the server writes it: always all 24 properties."})
}

/// An object schema whose properties are all present in every answer.
fn answer(props: Value) -> Value {
    let required: Vec<String> = props.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    json!({"type": "object", "required": required, "properties": props})
}

fn string() -> Value {
    json!({"type": "string"})
}
fn nullable_string() -> Value {
    json!({"type": "string", "nullable": true})
}
fn date() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn nullable_date() -> Value {
    json!({"type": "string", "format": "date-time", "nullable": true})
}
fn integer() -> Value {
    json!({"type": "integer"})
}
fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// What one operation takes and answers.
#[derive(Default)]
struct Spec {
    description: Option<String>,
    params: Vec<Value>,
    body: Option<(bool, Value)>,
    /// Success statuses and their answers.
    answers: Vec<(u16, Value)>,
    /// Error statuses of its own, beyond those of the layers.
    errors: Vec<u16>,
    /// Reads the request preferences (SO-TimeZone, SO-Culture).
    prefs: bool,
    /// Takes conditional headers on a write.
    precondition: bool,
    /// Reaches the database.
    storage: bool,
}

fn content(schema: Value, xml: bool) -> Value {
    let mut c = json!({"application/json": {"schema": schema.clone()}});
    if xml {
        c["application/xml"] = json!({"schema": schema});
    }
    c
}

/// A success answer in JSON, and in XML when `xml` (the format follows `Accept`).
fn ok(schema: Value, xml: bool) -> Value {
    json!({"description": "OK", "content": content(schema, xml)})
}

fn no_body(description: &str) -> Value {
    json!({"description": description})
}

/// A request body in JSON, and as a form where given. `Body` reads XML into the same value too
/// (docs/formats.md); it is not listed, as its shape (root element, repeated children for lists)
/// is not what a JSON schema of the value says.
fn body(schema: Value, form: Option<Value>) -> Value {
    let mut c = json!({"application/json": {"schema": schema}});
    if let Some(f) = form {
        c["application/x-www-form-urlencoded"] = json!({"schema": f});
    }
    c
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema, "description": description})
}

fn task_id() -> Value {
    path_param("id", json!({"type": "integer", "minimum": 0}), "A task id (digits); larger than any id = not found")
}

/// The agents' answer when a required parameter is missing: 200 with this body.
fn agent_answer(result: Value) -> Value {
    json!({"anyOf": [result, r("InvalidRequest")]})
}

/// The optional header that makes a create idempotent (src/domain/idempotency.rs).
fn idempotency_key() -> Value {
    json!({"name": "Idempotency-Key", "in": "header", "required": false,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        "description": "1-255 visible ASCII characters. The same key from the same caller within 24 h answers the first create's id (with Idempotent-Replayed: true) and creates nothing; with a different body, 422. A create that answered a live unique task (Warning) does not use up the key"})
}

/// A create's answer: the task's id, or, when a live task of its definition has the same
/// `unique` parameter values, that task's id with a `Warning` (nothing created).
fn created(schema: Value) -> Value {
    let mut answer = ok(schema, true);
    answer["headers"] = json!({
        "Warning": {"schema": {"type": "string"}, "description": "Set when the definition's unique list matched a live \
            (New, Aquired, Started) task: the answer is that task's id and nothing was created. \
            299 batchd \"unique: task 123 of NAME with the same Param1, Param2 is live\""},
        "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}, "description": "Set when an \
            Idempotency-Key repeat answered the key's first create"}});
    answer
}

fn agent_spec(method: &str) -> Spec {
    let int_text = || json!({"type": "string", "pattern": format!(r"^{WS}*[+-]?[0-9]{{1,9}}{WS}*$")});
    let int = || json!({"nullable": true, "anyOf": [int32(), int_text()]});
    let ints = || {
        let one = json!({"anyOf": [int32(), int_text()]});
        json!({"nullable": true, "anyOf": [array(one.clone()), one.clone(),
            {"type": "object", "maxProperties": 1, "description": "XML's wrapper: {\"int\": [1, 2]}",
             "additionalProperties": {"anyOf": [array(one.clone()), one]}}]})
    };
    let name = || json!({"nullable": true, "anyOf": [{"type": "string"}, {"type": "number"}]});
    let state =
        || json!({"allOf": [state_input(&[], "By name in any case, or by number; All = any state")], "nullable": true});
    let params: Vec<(&str, Value)> = match method {
        "GetBatchTaskInfo" | "StopBatchJob" => vec![("Id", int())],
        "DeleteBatchTask" => vec![("BatchTaskId", int())],
        "DeleteBatchTasks" => vec![("BatchTaskIds", ints())],
        "StartBatchJob" => vec![("BatchTaskInfo", json!({"allOf": [r("BatchTaskCreate")], "nullable": true}))],
        "UpdateBatchTask" => vec![("BatchTaskInfo", {
            let mut update = task_update();
            update["properties"]["Id"] = int();
            update["nullable"] = json!(true);
            update["description"] = json!(
                "Id names the task (missing or 0: the request is invalid); \
                State, Description, Response and Request change as with PUT"
            );
            update
        })],
        "GetBatchTaskInfosByAssociates" => vec![("AssociateIds", ints())],
        "GetBatchTaskInfosByState" => vec![("State", state())],
        "GetBatchTaskInfosByNameAndState" => vec![("Name", name()), ("State", state())],
        "GetBatchTaskInfosByNameAndAssociates" => vec![("Name", name()), ("AssociateIds", ints())],
        "GetBatchTaskInfosByAssociatesAndState" => vec![("AssociateIds", ints()), ("State", state())],
        "GetAllBatchTaskInfosByName" | "GetSystemBatchTaskInfosByName" => vec![("TaskName", name())],
        _ => vec![("TaskName", name()), ("State", state())],
    };
    let props: Map<String, Value> = params.into_iter().map(|(n, s)| (n.to_owned(), s)).collect();
    let schema = json!({"type": "object", "nullable": true, "properties": props,
        "description": "The parameters by name, in any case; scalars may come from the query string instead. \
            A required one missing answers 200 with InvalidRequest."});
    let task = r("BatchTaskInfo");
    let (status, result) = match method {
        "StartBatchJob" => (200, created(agent_answer(integer()))),
        "StopBatchJob" => (200, ok(agent_answer(json!({"type": "boolean"})), true)),
        "GetBatchTaskInfo" | "UpdateBatchTask" => {
            (200, ok(agent_answer(json!({"allOf": [task], "nullable": true})), true))
        }
        "DeleteBatchTask" | "DeleteBatchTasks" => (204, no_body("Deleted (unknown ids are skipped)")),
        _ => (200, ok(agent_answer(array(task)), true)),
    };
    let mut answers = vec![(status, result)];
    if status == 204 {
        answers.push((200, ok(r("InvalidRequest"), true)));
    }
    let errors = match method {
        "StartBatchJob" => vec![403, 422],
        "UpdateBatchTask" => vec![403, 409, 412],
        "DeleteBatchTask" | "DeleteBatchTasks" => vec![403, 409],
        _ => vec![],
    };
    Spec {
        params: if method == "StartBatchJob" { vec![idempotency_key()] } else { vec![] },
        body: Some((false, body(schema, None))),
        answers,
        errors,
        prefs: true,
        precondition: method == "UpdateBatchTask",
        storage: true,
        ..Spec::default()
    }
}

fn spec(path: &str, verb: &str) -> Spec {
    let task = || r("BatchTaskInfo");
    let tasks = || array(r("BatchTaskInfo"));
    let db = Spec { prefs: true, storage: true, ..Spec::default() };
    let credentials = |required: &[&str]| {
        let nullable = required.is_empty();
        let field = || {
            let mut f = text_or_number(string());
            f["nullable"] = json!(nullable);
            f
        };
        let schema = json!({"type": "object", "nullable": nullable, "required": required, "properties": {
            "UserName": field(), "Password": field()},
            "description": "Names match in any case; Name is taken for UserName"});
        body(schema.clone(), Some(form_of(schema)))
    };
    match (path, verb) {
        // -- service --
        ("/api", "GET") => Spec {
            answers: vec![(
                200,
                ok(
                    answer(json!({"Version": string(), "v1": string(), "Product": string(),
                "ProductVersion": string(), "NetServer": string(),
                "Database": {"type": "string", "enum": ["Available", "Unavailable"]}})),
                    false,
                ),
            )],
            ..Spec::default()
        },
        ("/api/v1", "GET") => Spec {
            answers: vec![(
                200,
                ok(
                    json!({"type": "object", "description": "Endpoint URL -> {verb: description}",
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}}}),
                    false,
                ),
            )],
            storage: true,
            ..Spec::default()
        },
        ("/api/openapi.json", "GET") => {
            Spec { answers: vec![(200, ok(json!({"type": "object"}), false))], ..Spec::default() }
        }
        ("/api/docs", "GET") => Spec {
            answers: vec![(200, json!({"description": "OK", "content": {"text/html": {"schema": string()}}}))],
            ..Spec::default()
        },
        ("/metrics", "GET") => Spec {
            answers: vec![(
                200,
                json!({"description": "Prometheus text format", "content": {"text/plain": {"schema": string()}}}),
            )],
            storage: true,
            ..Spec::default()
        },
        ("/health/live", "GET") => {
            Spec { answers: vec![(200, ok(answer(json!({"Status": {"enum": ["Live"]}})), false))], ..Spec::default() }
        }
        ("/health/ready", "GET") => Spec {
            answers: vec![(
                200,
                ok(answer(json!({"Status": {"enum": ["Ready"]}, "Database": {"enum": ["Available"]}})), false),
            )],
            errors: vec![503],
            ..Spec::default()
        },
        // -- tasks --
        ("BatchTask", "GET") => Spec {
            description: Some(
                "Query parameters ($select, $filter, $orderBy, $top, $skip) in any case; an unknown column or a bad \
                 filter is a 400 naming it (docs/API.md, OData)."
                    .into(),
            ),
            answers: vec![(200, ok(r("ODataList"), true))],
            ..db
        },
        ("BatchTask", "POST") => Spec {
            params: vec![idempotency_key()],
            body: Some((true, body(r("BatchTaskCreate"), Some(task_create_form())))),
            answers: vec![(200, created(integer()))],
            errors: vec![403, 404, 422],
            ..db
        },
        ("BatchTask/{id}", "GET") => Spec {
            description: Some(
                "With a BatchTaskState name (any case) instead of an id: the user tasks in that state, \
                as GET /api/v1/BatchTask/{state}. Anything else is a 400."
                    .into(),
            ),
            params: vec![path_param(
                "id",
                json!({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": format!("^(?:{})$",
                    BatchTaskState::ALL_NAMES.iter().map(|s| any_case(s.name())).collect::<Vec<_>>().join("|"))}]}),
                "A task id (digits), or a state name",
            )],
            answers: vec![
                (200, ok(json!({"anyOf": [task(), tasks()]}), true)),
                (304, no_body("Not modified (If-None-Match, If-Modified-Since)")),
            ],
            errors: vec![404, 412],
            ..db
        },
        ("BatchTask/{id}", "PUT") => {
            let mut b = body(r("BatchTaskUpdate"), Some(r("BatchTaskUpdate")));
            for (k, v) in patches().as_object().expect("object") {
                b[k] = v.clone();
            }
            Spec {
                description: Some("With X-Lease-Token: a worker finishing its run (docs/runner.md).".into()),
                params: vec![task_id()],
                body: Some((true, b)),
                answers: vec![(200, ok(task(), true))],
                errors: vec![403, 404, 409],
                precondition: true,
                ..db
            }
        }
        ("BatchTask/{id}", "PATCH") => Spec {
            params: vec![task_id()],
            body: Some((true, patches())),
            answers: vec![(200, ok(task(), true))],
            errors: vec![403, 404, 409],
            precondition: true,
            ..db
        },
        ("BatchTask/{id}", "DELETE") => Spec {
            params: vec![task_id()],
            answers: vec![(204, no_body("Deleted"))],
            errors: vec![403, 404, 409],
            precondition: true,
            ..db
        },
        ("BatchTask/Events/stream", "GET") => Spec {
            params: vec![
                json!({"name": "task", "in": "query", "required": false,
                    "schema": {"type": "integer", "format": "int32", "minimum": 1}, "description": "Only this task's events"}),
                json!({"name": "name", "in": "query", "required": false,
                    "schema": {"type": "string", "maxLength": limits::NAME}, "description": "Only tasks of this definition (exact name)"}),
                json!({"name": "Last-Event-ID", "in": "header", "required": false, "schema": string(),
                    "description": "Resume after this event id; an unknown or too old one gets `resync` first"}),
            ],
            answers: vec![(
                200,
                json!({"description": "Server-sent events, one per change: `id:` (opaque resume token), `event:` \
                    created|state|progress|deleted|resync, `data:` one line of JSON ({Id, Name, Task} for created, \
                    {Id, Name, Changed} for state and progress, {Id, Name} for deleted, {} for resync); \
                    `: keep-alive` comments in between (docs/API.md)",
                    "content": {"text/event-stream": {"schema": string()}}}),
            )],
            errors: vec![503],
            ..db
        },
        ("BatchTask/{id}/Stop", "POST") => Spec {
            params: vec![task_id()],
            answers: vec![(200, ok(json!({"type": "boolean"}), true))],
            errors: vec![403, 404, 409],
            precondition: true,
            ..db
        },
        ("Definitions", "GET") => Spec {
            answers: vec![(
                200,
                ok(
                    array(answer(json!({
                "Name": string(), "Description": nullable_string(),
                "Runner": {"type": "string", "enum": ["noop", "sleep", "command", "http", "external", "embedded"]},
                "TimeOut": {"type": "integer", "nullable": true, "description": "seconds"},
                "Restarts": integer(), "Concurrency": {"type": "integer", "nullable": true},
                "StartInterval": {"type": "integer", "nullable": true, "description": "seconds; set for definitions recurring by start_interval"},
                "CancellationBehaviour": r("BatchTaskCancellationBehaviour"),
                "Priority": {"type": "integer", "minimum": 0, "maximum": crate::domain::task::PRIORITY_MAX, "description": "Of its tasks whose create names none"},
                "Rate": {"type": "string", "nullable": true, "description": "At most COUNT starts per PERIOD across all nodes (100/1m)"},
                "Unique": {"type": "array", "items": string(), "nullable": true, "description": "ParameterObject keys of which at most one combination of values is live (New, Aquired, Started) at a time; a create that matches answers the live task's id with a Warning"},
                "Paused": {"type": "boolean", "description": "Its New tasks wait and its schedule creates nothing, on every node"},
                "Schedule": {"type": "string", "nullable": true, "description": "What creates its tasks: an interval (5m) or a cron expression and its zone (0 3 * * * Europe/Oslo)"},
                "NextRun": {"type": "string", "format": "date-time", "nullable": true, "description": "When the schedule next creates a task; null when none (no schedule, or paused)"},
                "Counts": {"type": "object", "description": "Tasks the caller may see", "required": ["New", "Running", "Failed"], "properties": {
                    "New": integer(), "Running": {"type": "integer", "description": "Aquired and Started"}, "Failed": integer()}},
                "Parameters": {"type": "array", "items": string(), "description": "ParameterObject keys the runner's templates use"}}))),
                    true,
                ),
            )],
            ..db
        },
        // -- scheduling --
        ("Definitions/{name}/Pause" | "Definitions/{name}/Resume", "POST") => Spec {
            params: vec![path_param("name", string(), "A definition's Name")],
            answers: vec![(200, ok(json!({"type": "boolean", "description": "true when this call changed it"}), true))],
            errors: vec![403, 404],
            ..db
        },
        ("BatchTask/{id}/Retry", "POST") => Spec {
            description: Some(
                "Failed -> New. 409 when the task is not Failed, or when another live task of its definition has \
                 the same unique parameter values (the message names it)."
                    .into(),
            ),
            params: vec![task_id()],
            answers: vec![(200, ok(task(), true))],
            errors: vec![403, 404, 409],
            precondition: true,
            ..db
        },
        ("BatchTask/Bulk", "POST") => {
            let request = json!({"type": "object", "required": ["Action", "Filter"], "properties": {
                "Action": {"type": "string", "enum": ["Stop", "Delete", "Retry"]},
                "Filter": {"type": "string", "pattern": "\\S", "description": "An OData $filter, as GET /api/v1/BatchTask takes (required: an empty one would match every task)", "example": "State eq 'Failed'"},
                "DryRun": {"type": "boolean", "nullable": true, "description": "Count the matches only (null or absent: false)"}}});
            Spec {
                body: Some((true, body(request, None))),
                answers: vec![(
                    200,
                    ok(
                        answer(json!({
                    "Matched": {"type": "integer", "description": "Tasks the filter matched among those the caller sees (at most 1000)"},
                    "Done": {"type": "integer", "description": "Tasks the action was carried out on"}})),
                        true,
                    ),
                )],
                errors: vec![403],
                ..db
            }
        }
        // -- runner --
        ("BatchTask/Acquire", "POST") => Spec {
            body: Some((
                true,
                body(
                    json!({"type": "object", "required": ["Names"], "properties": {
                "Names": {"anyOf": [
                    {"type": "string", "pattern": "[^,\\s]", "description": "comma-separated"},
                    {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "string", "pattern": "\\S"}}]},
                "Wait": {"type": "number", "minimum": 0, "maximum": 3600, "nullable": true, "description": "seconds to wait for a task"}},
                "description": "Name is taken for Names"}),
                    None,
                ),
            )),
            answers: vec![
                (
                    200,
                    ok(
                        answer(
                            json!({"LeaseToken": string(), "LeaseExpires": date(), "LeaseSeconds": {"type": "number"},
                    "HeartbeatSeconds": {"type": "number"}, "Attempt": integer(),
                    "TimeoutSeconds": {"type": "number", "nullable": true}, "Task": task()}),
                        ),
                        true,
                    ),
                ),
                (204, no_body("No task of those names came within Wait")),
            ],
            errors: vec![403],
            ..db
        },
        ("BatchTask/{id}/Heartbeat", "POST") => Spec {
            params: vec![
                task_id(),
                json!({"name": "X-Lease-Token", "in": "header", "required": true,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
                    "description": "The lease token Acquire answered (or LeaseToken in the body)"}),
            ],
            body: Some((
                false,
                body(
                    json!({"type": "object", "properties": {
                "ProgressPercent": int_input(0, 100),
                "ProgressDescription": text_input(limits::PROGRESS_DESCRIPTION),
                "FileName": text_input(limits::FILE_NAME)}}),
                    None,
                ),
            )),
            answers: vec![(
                200,
                ok(
                    answer(json!({"LeaseExpires": date(), "State": r("BatchTaskState"),
                "StopRequested": {"type": "boolean"}, "StopRequestedBy": nullable_string()})),
                    true,
                ),
            )],
            errors: vec![403, 404, 409],
            ..db
        },
        ("BatchTask/{id}/Events", "GET") => Spec {
            params: vec![task_id()],
            answers: vec![(
                200,
                ok(
                    array(answer(json!({"Id": integer(), "BatchTaskId": integer(), "Time": date(),
                "From": {"allOf": [r("BatchTaskState")], "nullable": true}, "To": {"allOf": [r("BatchTaskState")], "nullable": true},
                "AssociateId": {"type": "integer", "nullable": true}, "Associate": nullable_string(),
                "Node": nullable_string(), "Reason": nullable_string()}))),
                    true,
                ),
            )],
            errors: vec![404],
            ..db
        },
        ("BatchTask/{id}/Dependencies", "GET") => {
            let item = |satisfied: bool| {
                let mut p = json!({"Id": integer(), "Name": nullable_string(),
                    "State": {"allOf": [r("BatchTaskState")], "nullable": true}});
                if satisfied {
                    p["Satisfied"] = json!({"type": "boolean"});
                }
                answer(p)
            };
            Spec {
                params: vec![task_id()],
                answers: vec![(
                    200,
                    ok(
                        answer(json!({"After": array(item(true)), "Before": array(item(false)),
                            "BeforeMore": {"type": "boolean"},
                            "BeforeMax": {"type": "integer", "enum": [crate::domain::dependency::BEFORE_MAX]}})),
                        true,
                    ),
                )],
                errors: vec![404],
                ..db
            }
        }
        // -- stats --
        ("Stats", "GET") => Spec {
            params: vec![json!({"name": "minutes", "in": "query", "required": false,
                "description": "The window: the last N whole minutes, this one included",
                "schema": {"type": "integer", "minimum": 1, "maximum": crate::store::STATS_MAX_MINUTES, "default": 60}})],
            answers: vec![(200, ok(r("Stats"), true))],
            ..db
        },
        ("Nodes", "GET") => Spec { answers: vec![(200, ok(array(r("Node")), true))], errors: vec![403], ..db },
        // -- identity and access --
        ("Ticket", "POST") => Spec {
            description: Some("Basic credentials, or else UserName (or Name) and Password in the body.".into()),
            body: Some((false, credentials(&[]))),
            answers: vec![(200, ok(r("Ticket"), false))],
            storage: true,
            prefs: true,
            ..Spec::default()
        },
        ("Ticket", "DELETE") | ("Session", "DELETE") => {
            Spec { answers: vec![(204, no_body("Logged out"))], storage: true, ..Spec::default() }
        }
        ("Session", "POST") => Spec {
            description: Some(
                "A form field next=/path answers 303 to that path instead. Refused (403) when a \
                browser says the form comes from another site."
                    .into(),
            ),
            body: Some((true, credentials(&["UserName", "Password"]))),
            answers: vec![
                (
                    200,
                    ok(
                        answer(json!({"AssociateId": integer(), "Associate": string(), "Role": r("Role"),
                    "Expires": nullable_date(), "XsrfToken": string()})),
                        false,
                    ),
                ),
                (303, no_body("Logged in; to the form's next path")),
            ],
            errors: vec![403],
            storage: true,
            prefs: true,
            ..Spec::default()
        },
        ("Session", "GET") => Spec {
            answers: vec![(
                200,
                ok(
                    answer(json!({"AssociateId": integer(), "Associate": string(), "Role": r("Role"),
                "ReadOnly": {"type": "boolean"},
                "Authentication": {"type": "string", "enum": ["Basic", "SOTicket", "Bearer", "Session"]},
                "Scope": {"allOf": [r("Scope")], "nullable": true}})),
                    false,
                ),
            )],
            storage: true,
            ..Spec::default()
        },
        ("Token", "GET") => Spec {
            description: Some("Admins see every associate's; ?associateId= narrows.".into()),
            answers: vec![(200, ok(array(r("Token")), false))],
            ..db
        },
        ("Token", "POST") => Spec {
            body: Some((
                true,
                body(
                    json!({"type": "object", "required": ["Scope"], "properties": {
                "Scope": names_input(&scopes(), "In any case"),
                "Name": {"nullable": true, "anyOf": [{"type": "string", "maxLength": MAX_LABEL, "pattern": NO_NUL}, {"type": "number"}]},
                "Expires": {"type": "string", "nullable": true, "pattern": r"^[1-9][0-9]{0,3}[smhd]$",
                    "description": "A lifetime: 90s, 30m, 8h, 30d (docs/auth.md has the whole grammar)"},
                "Associate": {"nullable": true, "description": "Admins: whose token (a name)",
                    "anyOf": [string(), {"type": "number"}]}},
                "description": "Names match in any case"}),
                    None,
                ),
            )),
            answers: vec![(
                201,
                ok(json!({"allOf": [r("Token")], "properties": {"Token": string()}, "required": ["Token"]}), false),
            )],
            errors: vec![403, 404],
            ..db
        },
        ("Token/{id}", "DELETE") => Spec {
            params: vec![path_param("id", json!({"type": "integer"}), "TokenId")],
            answers: vec![(204, no_body("Revoked"))],
            errors: vec![403, 404],
            storage: true,
            ..Spec::default()
        },
        ("Associate", "GET") => Spec {
            answers: vec![(200, ok(array(r("Associate")), false))],
            errors: vec![403],
            storage: true,
            ..Spec::default()
        },
        ("Associate", "POST") => Spec {
            body: Some((true, body(associate_input(&["Name", "Password"]), None))),
            answers: vec![(201, ok(r("Associate"), false))],
            errors: vec![403, 409],
            storage: true,
            ..Spec::default()
        },
        ("Associate/{id}", verb) => {
            let id = path_param("id", json!({"type": "integer", "format": "int32"}), "AssociateId");
            let (body, answers) = match verb {
                "PUT" => (Some((false, body(associate_input(&[]), None))), vec![(200, ok(r("Associate"), false))]),
                "DELETE" => (None, vec![(204, no_body("Removed; its tasks stay"))]),
                _ => (None, vec![(200, ok(r("Associate"), false))]),
            };
            // 400: an id that is not a number.
            let errors = if verb == "GET" { vec![400, 403, 404] } else { vec![400, 403, 404, 409] };
            Spec { params: vec![id], body, answers, errors, storage: true, ..Spec::default() }
        }
        ("Agents/SoPrincipal/AuthenticateUsernamePassword", "POST") => Spec {
            description: Some("A wrong name or password answers 200 with AuthenticationSucceeded false.".into()),
            body: Some((false, credentials(&[]))),
            answers: vec![(
                200,
                ok(
                    json!({"anyOf": [answer(json!({
                "AuthenticationSucceeded": {"type": "boolean"},
                "Credentials": {"nullable": true, "allOf": [answer(json!({"Ticket": string(), "Expires": nullable_date()}))]},
                "Response": {"nullable": true, "allOf": [answer(json!({"Associate": string(), "AssociateId": integer(), "RoleName": r("Role")}))]}})),
                r("InvalidRequest")]}),
                    false,
                ),
            )],
            storage: true,
            prefs: true,
            ..Spec::default()
        },
        (p, "POST") if p.starts_with("Agents/Batch/") => agent_spec(&p["Agents/Batch/".len()..]),
        (p, "GET") if p.starts_with("Agents/Batch/") => Spec {
            answers: vec![(
                200,
                ok(answer(json!({"Method": string(), "Verb": {"enum": ["POST"]}, "Description": string()})), false),
            )],
            storage: true,
            ..Spec::default()
        },
        _ => Spec { answers: vec![(200, no_body("OK"))], ..db },
    }
}

fn roles() -> Vec<&'static str> {
    crate::domain::Role::ALL.iter().map(|r| r.as_str()).collect()
}

fn scopes() -> Vec<&'static str> {
    crate::domain::access::Scope::ALL.iter().map(|s| s.as_str()).collect()
}

/// A name read with `trim` and in any case (roles, scopes).
fn names_input(names: &[&str], description: &str) -> Value {
    enum_input(names, &[], description)
}

const MAX_LABEL: usize = crate::identity::MAX_TOKEN_LABEL_CHARS;

fn associate_input(required: &[&str]) -> Value {
    let nullable = required.is_empty();
    let name = format!(
        r"^[^\u0000-\u001f\u007f-\u009f:{w}](?:[^\u0000-\u001f\u007f-\u009f:]{{0,98}}[^\u0000-\u001f\u007f-\u009f:{w}])?$",
        w = &WS[1..WS.len() - 1]
    );
    json!({"type": "object", "nullable": nullable, "required": required, "properties": {
        "Name": {"nullable": nullable, "description": "1-100 characters, no control characters or ':', no surrounding white space",
            "anyOf": [{"type": "string", "pattern": name}, {"type": "number"}]},
        "Password": {"nullable": nullable, "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": crate::identity::MAX_PASSWORD_CHARS}, {"type": "number"}]},
        "Role": {"allOf": [names_input(&roles(), "In any case; default user")], "nullable": true},
        "Active": identity_bool()},
        "description": "Names match in any case"})
}

fn patches() -> Value {
    json!({
        "application/json-patch+json": {"schema": r("JsonPatch")},
        "application/merge-patch+json": {"schema": {"type": "object", "additionalProperties": false,
            "description": "RFC 7396: the properties to change (in any case); null removes",
            "properties": {
                "State": state_input(&[BatchTaskState::All, BatchTaskState::Unknown], "The new state"),
                "Description": text_input(limits::DESCRIPTION),
                "Response": text_input(limits::LONG_TEXT),
                "Request": text_input(limits::LONG_TEXT)}}}
    })
}

/// `/State` in any case, the leading `/` optional.
fn patch_path(names: &[&str]) -> Value {
    let alternatives: Vec<String> = names.iter().map(|n| any_case(n)).collect();
    json!({"type": "string", "pattern": format!("^/?(?:{})$", alternatives.join("|")), "example": format!("/{}", names[0])})
}

/// RFC 6902 operations on the four properties PUT may change.
fn json_patch() -> Value {
    let op = |ops: &[&str], path: Value, value: Value| {
        json!({"type": "object", "required": ["op", "path", "value"],
            "properties": {"op": {"type": "string", "enum": ops}, "path": path, "value": value}})
    };
    let state = state_input(&[BatchTaskState::All, BatchTaskState::Unknown], "The new state");
    json!({"type": "array", "maxItems": super::patch::MAX_PATCH_OPERATIONS,
        "description": "RFC 6902 operations on State, Description, Response and Request; paths name properties in \
            any case, the leading / is optional. remove, move and copy also work, within the same rules: a change to any \
            other property, or a path that is not there (a property removed before), is a 400; a failed test a 409.",
        "items": {"oneOf": [
            op(&["add", "replace"], patch_path(&["State"]), state),
            op(&["add", "replace"], patch_path(&["Description"]), text_input(limits::DESCRIPTION)),
            op(&["add", "replace"], patch_path(&["Response", "Request"]), text_input(limits::LONG_TEXT)),
            op(&["test"], patch_path(&["State", "Description", "Response", "Request"]), json!({}))]}})
}

fn statuses_of(access: Access, s: &Spec) -> Vec<u16> {
    let mut codes: Vec<u16> = access.statuses().to_vec();
    codes.extend(&s.errors);
    if s.prefs {
        codes.extend(super::context::PREFS_STATUSES);
    }
    if s.body.is_some() {
        codes.extend(super::body::STATUSES);
    }
    if s.precondition {
        codes.extend(super::conditional::STATUSES);
    }
    if s.storage || access == Access::Credentials {
        codes.extend(super::error::STORAGE_STATUSES);
    }
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn operation(path: &str, verb: &str, access: Access, summary: &str) -> Value {
    let s = spec(path, verb);
    let error = json!({"description": "Error", "content": content(r("Error"), true)});
    let mut responses = Map::new();
    for (code, answer) in &s.answers {
        responses.insert(code.to_string(), answer.clone());
    }
    for code in statuses_of(access, &s) {
        let mut e = error.clone();
        e["description"] = json!(describe_status(code));
        responses.entry(code.to_string()).or_insert(e);
    }
    let mut op = json!({"summary": summary, "parameters": s.params, "responses": responses});
    if let Some(d) = &s.description {
        op["description"] = json!(d);
    }
    if let Some((required, content)) = s.body {
        op["requestBody"] = json!({"required": required, "content": content});
    }
    op["security"] = match access {
        Access::Open => json!([]),
        // A login is its own credential; Basic is taken too where the body has none.
        Access::Login if path == "Ticket" => json!([{}, {"basic": []}]),
        Access::Login => json!([]),
        Access::Credentials => json!([{"basic": []}, {"soTicket": []}, {"bearer": []}, {"session": []}]),
    };
    op
}

fn describe_status(code: u16) -> &'static str {
    match code {
        400 => "The request is not valid: the message names the field and the rule",
        401 => "No credentials, or wrong ones",
        403 => "The caller may not do this",
        404 => "Not found (or not the caller's to see)",
        408 => "The body did not arrive in time",
        409 => "Conflicts with the task's state or lease",
        412 => "A precondition (If-Match, If-Unmodified-Since) failed",
        413 => "The body is larger than 1 MiB",
        415 => "The body's Content-Type is not supported",
        429 => "Too many failed logins or password checks: wait Retry-After seconds",
        500 => "An internal error (the log has the detail)",
        503 => "The database is unavailable: retry after Retry-After seconds",
        507 => "The database is full",
        _ => "Error",
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    let v1 = ENDPOINTS.iter().map(|(p, ops)| (*p, format!("/api/v1/{p}"), *ops));
    let service = SERVICE_ENDPOINTS.iter().map(|(p, ops)| (*p, (*p).to_owned(), *ops));
    for (key, path, ops) in service.chain(v1) {
        // The same route as BatchTask/{id} (OpenAPI allows one template of a shape): that GET
        // describes both.
        if key == "BatchTask/{state}" {
            continue;
        }
        let mut item = Map::new();
        for (verb, access, summary) in ops {
            item.insert(verb.to_ascii_lowercase(), operation(key, verb, *access, summary));
        }
        // The agents' URLs also answer GET with a description of the call.
        if key.starts_with("Agents/Batch/") {
            item.insert(
                "get".into(),
                operation(key, "GET", Access::Credentials, "Describe this call: its verb and parameters"),
            );
        }
        paths.insert(path, Value::Object(item));
    }
    let states: Vec<&str> = BatchTaskState::ALL_NAMES.iter().map(|s| s.name()).collect();
    let cancels: Vec<&str> = CancellationBehaviour::ALL.iter().map(|c| c.name()).collect();
    let (roles, scopes) = (roles(), scopes());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "batchd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "SuperOffice Batch API compatible batch-task server. Paths match in any letter case and \
                with a trailing slash. Bodies are JSON or form-encoded as listed, and XML of the same \
                properties (docs/formats.md); answers are JSON, or XML when Accept asks for it. Errors use the Error schema. Property names in bodies match in any case; enums are read \
                by name in any case or by number."
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
                "BatchTaskCreate": task_create(),
                "BatchTaskUpdate": task_update(),
                "BatchTaskState": {"type": "string", "enum": states, "description": "Written by name; read by name in any case or by number (All = 99999)."},
                "BatchTaskCancellationBehaviour": {"type": "string", "enum": cancels},
                "Role": {"type": "string", "enum": roles},
                "Scope": {"type": "string", "enum": scopes},
                "TableRight": answer(json!({"Mask": {"type": "string", "example": "Select, Update, Delete"}, "Reason": string()})),
                "FieldProperty": answer(json!({
                    "FieldRight": answer(json!({"Mask": {"type": "string", "enum": ["Update", "Read"]}, "Reason": string()})),
                    "FieldType": string(), "FieldLength": integer()})),
                "Error": answer(json!({
                    "Error": {"type": "boolean"}, "ErrorType": string(), "ErrorMessage": string(),
                    "Message": string(), "ErrorSource": string()})),
                "InvalidRequest": answer(json!({"Message": string(), "MessageDetail": string()})),
                "JsonPatch": json_patch(),
                "Node": {"type": "object", "description": "A batchd process sharing the database. Alive: not shut down, and seen within its own runner lease.", "properties": {
                    "Name": string(), "Version": string(), "Address": {"type": "string", "description": "The address it listens on"},
                    "Started": date(), "LastSeen": date(),
                    "Running": {"type": "integer", "description": "Runs in progress on it when last seen"},
                    "RunnerEnabled": {"type": "boolean"}, "Alive": {"type": "boolean"}}},
                "Stats": answer(json!({
                    "Since": {"type": "string", "format": "date-time", "description": "Start of the window"},
                    "Minutes": integer(),
                    "States": {"type": "object", "description": "Tasks in each state now, every state named", "additionalProperties": integer()},
                    "Finished": {"type": "array", "description": "Per minute and end state, the tasks whose last change (their end) is in the window; oldest first",
                        "items": answer(json!({
                        "Minute": date(), "State": r("BatchTaskState"),
                        "Count": integer(), "Started": {"type": "integer", "description": "Of Count, those that ever started; the times cover these"},
                        "WaitMsAvg": {"type": "integer", "description": "Created to LastStarted, ms"}, "WaitMsMax": integer(),
                        "RunMsAvg": {"type": "integer", "description": "LastStarted to the end, ms"}, "RunMsMax": integer()}))}})),
                "Ticket": answer(json!({"Ticket": string(), "Expires": nullable_date(), "AssociateId": integer(),
                    "Associate": string(), "Role": r("Role")})),
                "Token": answer(json!({"TokenId": integer(), "AssociateId": integer(), "Associate": string(),
                    "Name": nullable_string(), "Scope": {"allOf": [r("Scope")], "nullable": true}, "Created": date(),
                    "Expires": nullable_date(), "Revoked": nullable_date(), "Live": {"type": "boolean"}})),
                "Associate": answer(json!({"AssociateId": integer(), "Name": string(), "Role": r("Role"), "Active": {"type": "boolean"}})),
                "ODataList": answer(json!({
                    "odata.metadata": string(), "odata.nextLink": nullable_string(),
                    "value": {"type": "array", "items": {"type": "object", "additionalProperties": true}}}))
            }
        }
    })
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}
