//! JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7396) bodies on `PUT` and `PATCH
//! /api/v1/BatchTask/{id}`.
//!
//! A patch applies to the task's public JSON (the same 24 properties GET answers, dates in the
//! request's zone). The result is compared with the original property by property: a change to a
//! property PUT may not change (anything but State, Description, Response, Request), or a new
//! property, is a 400 naming it; the changed updatable properties then go through the same update
//! path as a PUT body (validation, state moves, preconditions). A removed property counts as
//! `null`. Property names in paths and merge keys match case-insensitively, and a path may leave
//! out its leading `/`; keys inside `ParameterObject` are the caller's and keep their case.
//! All six RFC 6902 operations are accepted (SuperOffice documents four; move and copy cost
//! nothing more here).
//!
//! Bounds: a JSON Patch has at most [`MAX_PATCH_OPERATIONS`] operations, and each operation is
//! admitted before it runs, so that the document stays within [`MAX_PATCHED_DOCUMENT`] bytes and
//! [`MAX_DEPTH`] levels after every one (a `copy` of the whole document into itself doubles it,
//! so a few hundred bytes of patch would otherwise take gigabytes). The caller applies patches
//! outside the store's writer (see [`crate::service::TaskService::update_with`]).

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::{Map, Value};

use crate::domain::rights::{TaskRights, UPDATABLE_PROPERTIES};
use crate::domain::{DomainError, Task, TaskUpdate};
use crate::i18n::{Key, Msg};

use super::body::{BodyKind, MAX_BODY, MAX_DEPTH, extent};
use super::error::ApiError;
use super::wire::{self, PROPERTIES, TaskView};

/// Most operations in one JSON Patch. A task has four updatable properties: a `test` and a
/// change for each is eight.
pub const MAX_PATCH_OPERATIONS: usize = 32;

/// Largest the task document may become while a patch is applied, in bytes of compact JSON as
/// [`extent`] counts them. A stored task's document is at most about 1.3 MiB (a 1 MiB body's
/// ParameterObject and four 64 KiB texts), so every patch that could succeed fits.
pub const MAX_PATCHED_DOCUMENT: usize = 2 * MAX_BODY;

/// A parsed, normalised patch, ready to apply to any version of the task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskPatch {
    Json(Vec<PatchOperation>),
    Merge(Value),
}

/// Names that are matched case-insensitively in paths: properties and the rights structure.
fn canonical(segment: &str) -> Option<&'static str> {
    const EXTRA: [&str; 7] =
        ["TableRight", "FieldProperties", "Mask", "Reason", "FieldRight", "FieldType", "FieldLength"];
    PROPERTIES.iter().map(|(n, _, _)| *n).chain(EXTRA).find(|n| n.eq_ignore_ascii_case(segment))
}

/// `description` → `/Description`; `/fieldProperties/state/fieldRight` →
/// `/FieldProperties/State/FieldRight`; `/parameterObject/Key` → `/ParameterObject/Key`.
pub fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return String::new(); // the whole document (RFC 6901)
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut out = String::with_capacity(path.len() + 1);
    let mut in_parameters = false;
    for (i, seg) in body.split('/').enumerate() {
        out.push('/');
        let known = if in_parameters { None } else { canonical(seg) };
        match known {
            Some(name) => out.push_str(name),
            None => out.push_str(seg),
        }
        if i == 0 && known == Some("ParameterObject") {
            in_parameters = true;
        }
    }
    out
}

fn unreadable(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(Msg::new(Key::BodyUnreadable).arg("detail", detail.into()))
}

/// Reads a patch body of `kind` (JSON Patch or Merge Patch). Structural problems are 400s here;
/// problems that depend on the task (paths, tests, read-only properties) come from [`apply`].
pub fn parse(kind: BodyKind, value: Option<Value>) -> Result<TaskPatch, ApiError> {
    let Some(value) = value else {
        return Err(ApiError::bad_request(Msg::new(Key::BodyMissing).arg("type", "patch")));
    };
    match kind {
        BodyKind::JsonPatch => {
            let Value::Array(ops) = value else {
                return Err(unreadable("a JSON Patch is an array of operations"));
            };
            if ops.len() > MAX_PATCH_OPERATIONS {
                let msg =
                    Msg::new(Key::PatchTooManyOperations).arg("max", MAX_PATCH_OPERATIONS).arg("actual", ops.len());
                return Err(ApiError::bad_request(msg));
            }
            let mut out = Vec::with_capacity(ops.len());
            for (i, mut op) in ops.into_iter().enumerate() {
                let Some(obj) = op.as_object_mut() else {
                    return Err(unreadable(format!("patch operation {i} is not an object")));
                };
                // Lenient like the rest of the input: any case for keys, `op` names and property paths.
                let mut norm = Map::new();
                for (k, v) in std::mem::take(obj) {
                    norm.insert(k.to_ascii_lowercase(), v);
                }
                if let Some(Value::String(o)) = norm.get_mut("op") {
                    *o = o.to_ascii_lowercase();
                }
                for key in ["path", "from"] {
                    if let Some(Value::String(p)) = norm.get_mut(key) {
                        *p = canonical_path(p);
                    }
                }
                let parsed: PatchOperation = serde_json::from_value(Value::Object(norm))
                    .map_err(|e| unreadable(format!("patch operation {i}: {e}")))?;
                out.push(parsed);
            }
            Ok(TaskPatch::Json(out))
        }
        BodyKind::MergePatch => {
            let Value::Object(map) = value else {
                return Err(unreadable("a merge patch is an object of the properties to change"));
            };
            let mut norm = Map::new();
            for (k, v) in map {
                let key = canonical(&k).map_or(k, str::to_owned);
                norm.insert(key, v);
            }
            Ok(TaskPatch::Merge(Value::Object(norm)))
        }
        _ => Err(unreadable("not a patch")),
    }
}

/// The task's public JSON, as GET shows it to this caller.
pub fn task_document(task: &Task, rights: TaskRights, zone: chrono_tz::Tz) -> Value {
    serde_json::to_value(TaskView { task, rights, zone, select: None }).expect("a task always serialises")
}

/// Applies `patch` to `doc` (a task's public JSON) and returns the update it amounts to.
pub fn apply(patch: &TaskPatch, doc: Value) -> Result<TaskUpdate, DomainError> {
    let too_large = |operation| DomainError::PatchTooLarge { operation, max: MAX_PATCHED_DOCUMENT };
    let mut after = doc.clone();
    match patch {
        TaskPatch::Json(ops) => {
            let mut room = Room::of(&after);
            for (operation, op) in ops.iter().enumerate() {
                room.admit(operation, &after, op)?;
                // One at a time and without the crate's undo log: on an error `after` is dropped.
                json_patch::patch_unsafe(&mut after, std::slice::from_ref(op)).map_err(|e| {
                    let path = e.path.to_string();
                    match e.kind {
                        PatchErrorKind::TestFailed => DomainError::PatchTestFailed { operation, path },
                        _ => DomainError::PatchPathInvalid { operation, path },
                    }
                })?;
            }
        }
        TaskPatch::Merge(m) => {
            // No deeper than the document or the patch, so only the size needs a check.
            json_patch::merge(&mut after, m);
            extent(&after, MAX_PATCHED_DOCUMENT).ok_or_else(|| too_large(0))?;
        }
    }
    diff_to_update(&doc, &after)
}

/// The document's size while a JSON Patch runs: an upper bound, since what an operation adds is
/// counted and what it replaces or removes is not (the body limit bounds what a patch can add
/// by itself; only `copy` can add more than it carries).
struct Room {
    size: usize,
}

impl Room {
    fn of(doc: &Value) -> Room {
        Room { size: extent(doc, usize::MAX).map_or(usize::MAX, |e| e.size) }
    }

    /// Refuses `op` if its result would break a bound, before it runs. A copied value is
    /// measured only as far as the room left, so refusing a huge copy costs little.
    fn admit(&mut self, operation: usize, doc: &Value, op: &PatchOperation) -> Result<(), DomainError> {
        let (path, value, grows) = match op {
            PatchOperation::Add(o) => (&o.path, Some(&o.value), true),
            PatchOperation::Replace(o) => (&o.path, Some(&o.value), true),
            PatchOperation::Copy(o) => (&o.path, doc.pointer(o.from.as_str()), true),
            // A moved value keeps the size but may land deeper.
            PatchOperation::Move(o) => (&o.path, doc.pointer(o.from.as_str()), false),
            PatchOperation::Remove(_) | PatchOperation::Test(_) => return Ok(()),
        };
        // A missing source is the operation's own error, reported when it runs.
        let Some(value) = value else { return Ok(()) };
        let budget = if grows { MAX_PATCHED_DOCUMENT.saturating_sub(self.size) } else { MAX_PATCHED_DOCUMENT };
        let e = extent(value, budget).ok_or(DomainError::PatchTooLarge { operation, max: MAX_PATCHED_DOCUMENT })?;
        // The value lands under as many containers as its path has segments.
        if path.count() + e.depth > MAX_DEPTH {
            return Err(DomainError::PatchTooDeep { operation, max: MAX_DEPTH });
        }
        if grows {
            self.size += e.size;
        }
        Ok(())
    }
}

/// The changed properties between two task documents, as an update (or the first read-only one).
fn diff_to_update(before: &Value, after: &Value) -> Result<TaskUpdate, DomainError> {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let Some(a) = after.as_object() else {
        // The whole document was replaced by a non-object.
        return Err(DomainError::PatchReadOnly { property: "BatchTaskInfo".into() });
    };
    let mut changes = Map::new();
    // Properties in their documented order first, so the error names the same one every time.
    let names = b.keys().chain(a.keys().filter(|k| !b.contains_key(*k)));
    for name in names {
        let (old, new) = (b.get(name), a.get(name));
        if old == new {
            continue;
        }
        if !UPDATABLE_PROPERTIES.contains(&name.as_str()) {
            return Err(DomainError::PatchReadOnly { property: name.clone() });
        }
        changes.insert(name.clone(), new.cloned().unwrap_or(Value::Null));
    }
    let (_, update) = wire::parse_update(&changes)?;
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BatchTaskState, Patch};
    use serde_json::json;

    fn doc() -> Value {
        json!({"Id": 1, "Name": "n", "State": "New", "Description": "d", "Response": null, "Request": "r",
               "ParameterObject": {"k": "v"}, "TableRight": {"Mask": "Select", "Reason": ""}})
    }

    fn json_patch(v: Value) -> TaskPatch {
        parse(BodyKind::JsonPatch, Some(v)).unwrap()
    }

    #[test]
    fn paths_are_case_insensitive_and_may_omit_the_slash() {
        assert_eq!(canonical_path("description"), "/Description");
        assert_eq!(canonical_path("/fieldproperties/state/fieldright/mask"), "/FieldProperties/State/FieldRight/Mask");
        assert_eq!(canonical_path("/parameterobject/state"), "/ParameterObject/state");
        assert_eq!(canonical_path("/nope/x"), "/nope/x");
        assert_eq!(canonical_path(""), "");
    }

    #[test]
    fn rfc6902_operations_map_onto_updatable_properties() {
        let p = json_patch(json!([
            {"op": "test", "path": "/state", "value": "New"},
            {"op": "replace", "path": "State", "value": "Started"},
            {"op": "copy", "from": "/Request", "path": "/Response"},
            {"op": "remove", "path": "/Description"},
        ]));
        let u = apply(&p, doc()).unwrap();
        assert_eq!(u.state, Patch::Set(BatchTaskState::Started));
        assert_eq!(u.response, Patch::Set(Some("r".into())));
        assert_eq!(u.description, Patch::Set(None));
        assert_eq!(u.request, Patch::Keep);
        // move = copy + remove of the source
        let u = apply(&json_patch(json!([{"op": "move", "from": "/Request", "path": "/Description"}])), doc()).unwrap();
        assert_eq!((u.description, u.request), (Patch::Set(Some("r".into())), Patch::Set(None)));
    }

    #[test]
    fn refusals_name_the_property_or_the_operation() {
        let e = apply(&json_patch(json!([{"op": "replace", "path": "/name", "value": "x"}])), doc()).unwrap_err();
        assert_eq!(e, DomainError::PatchReadOnly { property: "Name".into() });
        let e = apply(&json_patch(json!([{"op": "add", "path": "/ParameterObject/z", "value": "1"}])), doc());
        assert_eq!(e.unwrap_err(), DomainError::PatchReadOnly { property: "ParameterObject".into() });
        let e = apply(&json_patch(json!([{"op": "add", "path": "/Bogus", "value": 1}])), doc()).unwrap_err();
        assert_eq!(e, DomainError::PatchReadOnly { property: "Bogus".into() });
        let e = apply(&json_patch(json!([{"op": "test", "path": "/State", "value": "Failed"}])), doc()).unwrap_err();
        assert_eq!(e, DomainError::PatchTestFailed { operation: 0, path: "/State".into() });
        let e = apply(&json_patch(json!([{"op": "remove", "path": "/Nope/x"}])), doc()).unwrap_err();
        assert!(matches!(e, DomainError::PatchPathInvalid { operation: 0, .. }), "{e:?}");
        // Moving a read-only property away changes it.
        let e = apply(&json_patch(json!([{"op": "move", "from": "/Name", "path": "/Description"}])), doc());
        assert_eq!(e.unwrap_err(), DomainError::PatchReadOnly { property: "Name".into() });
        // Removing State would null it, which PUT refuses too.
        assert!(apply(&json_patch(json!([{"op": "remove", "path": "/State"}])), doc()).is_err());
    }

    #[test]
    fn patches_are_bounded_while_they_apply() {
        // Each copy of the whole document doubles it: refused once the next would not fit.
        let ops: Vec<Value> = (0..30).map(|n| json!({"op": "copy", "from": "", "path": format!("/X{n}")})).collect();
        let e = apply(&json_patch(Value::Array(ops)), doc()).unwrap_err();
        let DomainError::PatchTooLarge { operation, max } = e else { panic!("{e:?}") };
        assert_eq!(max, MAX_PATCHED_DOCUMENT);
        assert!((8..20).contains(&operation), "refused at operation {operation}");
        // A value that would land deeper than the limit, by add, copy or move.
        let nested = |n: usize| (0..n).fold(json!(1), |v, _| json!([v]));
        let deep_path = format!("/Y{}", "/0".repeat(20));
        for last in [
            json!({"op": "add", "path": "/Y/0", "value": nested(MAX_DEPTH - 1)}),
            json!({"op": "copy", "from": "/Z", "path": deep_path}),
            json!({"op": "move", "from": "/Z", "path": deep_path}),
        ] {
            let add = |path, n| json!({"op": "add", "path": path, "value": nested(n)});
            let p = json_patch(json!([add("/Y", 20), add("/Z", 20), last]));
            assert_eq!(apply(&p, doc()).unwrap_err(), DomainError::PatchTooDeep { operation: 2, max: MAX_DEPTH });
        }
        // At the limit is fine (then refused as a new property, as always).
        let p = json_patch(json!([{"op": "add", "path": "/Y", "value": nested(MAX_DEPTH - 1)}]));
        assert_eq!(apply(&p, doc()).unwrap_err(), DomainError::PatchReadOnly { property: "Y".into() });
        // Operations are counted before anything else.
        let many = Value::Array(vec![json!({"op": "test", "path": "/Name", "value": "n"}); MAX_PATCH_OPERATIONS + 1]);
        assert_eq!(parse(BodyKind::JsonPatch, Some(many)).unwrap_err().msg.key, Key::PatchTooManyOperations);
        let enough = Value::Array(vec![json!({"op": "test", "path": "/Name", "value": "n"}); MAX_PATCH_OPERATIONS]);
        assert_eq!(apply(&json_patch(enough), doc()).unwrap(), TaskUpdate::default());
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        let p = parse(BodyKind::MergePatch, Some(json!({"description": null, "RESPONSE": "ok", "Name": "n"}))).unwrap();
        let u = apply(&p, doc()).unwrap();
        assert_eq!(u.description, Patch::Set(None));
        assert_eq!(u.response, Patch::Set(Some("ok".into())));
        let p = parse(BodyKind::MergePatch, Some(json!({"ParameterObject": {"k": null}}))).unwrap();
        assert_eq!(apply(&p, doc()).unwrap_err(), DomainError::PatchReadOnly { property: "ParameterObject".into() });
        assert!(parse(BodyKind::MergePatch, Some(json!([1]))).is_err());
    }

    #[test]
    fn malformed_patches_are_refused_before_any_task_is_read() {
        for bad in [json!({}), json!([1]), json!([{"op": "jump", "path": "/State"}]), json!([{"op": "add"}])] {
            assert!(parse(BodyKind::JsonPatch, Some(bad.clone())).is_err(), "{bad}");
        }
    }
}
