//! `BatchTaskInfo` on the wire: the 24 properties out (shared by the JSON and XML writers), and
//! the lenient property reader for bodies in (case-insensitive names, enums by name or number,
//! several date shapes). Input of every format is first turned into a `serde_json::Value`.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use crate::domain::rights::{TaskRights, UPDATABLE_PROPERTIES};
use crate::domain::task::limits;
use crate::domain::{
    BatchTaskState, CancellationBehaviour, DomainError, Expected, Field, NewTask, Parameters, Patch, Task, TaskUpdate,
    time,
};

/// One property value, format-neutral.
pub enum Prop<'a> {
    Int(i64),
    Bool(bool),
    Text(Option<&'a str>),
    Date(Option<String>),
    Dict(Option<&'a Parameters>),
    Enum(&'static str),
    TableRight(TaskRights),
    FieldProperties(bool),
}

/// The 22 data properties, in SuperOffice's documented order, with .NET type and length.
pub const PROPERTIES: [(&str, &str, usize); 22] = [
    ("Id", "System.Int32", 0),
    ("Name", "System.String", limits::NAME),
    ("AssociateId", "System.Int32", 0),
    ("DetailsTable", "System.Int16", 0),
    ("DetailsRecord", "System.Int32", 0),
    ("IsSystemTask", "System.Boolean", 0),
    ("IsInternalTask", "System.Boolean", 0),
    ("ParameterObject", "SuperOffice.Util.StringDictionary", 0),
    ("LastStarted", "System.DateTime", 0),
    ("Created", "System.DateTime", 0),
    ("StartCount", "System.Int32", 0),
    ("DatabaseSerialNumber", "System.String", limits::DATABASE_SERIAL_NUMBER),
    ("Context", "System.String", limits::LONG_TEXT),
    ("Result", "System.String", limits::LONG_TEXT),
    ("State", "SuperOffice.Data.BatchTaskState", 0),
    ("Description", "System.String", limits::DESCRIPTION),
    ("Response", "System.String", limits::LONG_TEXT),
    ("Request", "System.String", limits::LONG_TEXT),
    ("ProgressDescription", "System.String", limits::PROGRESS_DESCRIPTION),
    ("ProgressPercent", "System.Int16", 0),
    ("FileName", "System.String", limits::FILE_NAME),
    ("CancellationBehaviour", "SuperOffice.Data.BatchTaskCancellationBehaviour", 0),
];

/// A task as one caller sees it: values in the caller's zone, rights for the caller, and the
/// agents' `$select` (other properties null).
pub struct TaskView<'a> {
    pub task: &'a Task,
    pub rights: TaskRights,
    pub zone: Tz,
    pub select: Option<&'a [String]>,
}

impl<'a> TaskView<'a> {
    /// Calls `f` with each of the 24 properties in order.
    pub fn for_each(&self, mut f: impl FnMut(&'static str, Prop<'_>)) {
        let t = self.task;
        let z = self.zone;
        let selected = |name: &str| self.select.is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(name)));
        let mut emit = |name: &'static str, p: Prop<'_>| {
            if selected(name) { f(name, p) } else { f(name, null_of(&p)) }
        };
        emit("Id", Prop::Int(t.id.into()));
        emit("Name", Prop::Text(Some(&t.name)));
        emit("AssociateId", Prop::Int(t.associate_id.into()));
        emit("DetailsTable", Prop::Int(t.details_table.into()));
        emit("DetailsRecord", Prop::Int(t.details_record.into()));
        emit("IsSystemTask", Prop::Bool(t.is_system));
        emit("IsInternalTask", Prop::Bool(t.is_internal));
        emit("ParameterObject", Prop::Dict(t.parameters.as_ref()));
        emit("LastStarted", Prop::Date(t.last_started.map(|d| time::format(d, z))));
        emit("Created", Prop::Date(Some(time::format(t.created, z))));
        emit("StartCount", Prop::Int(t.start_count.into()));
        emit("DatabaseSerialNumber", Prop::Text(t.database_serial_number.as_deref()));
        emit("Context", Prop::Text(t.context.as_deref()));
        emit("Result", Prop::Text(t.result.as_deref()));
        emit("State", Prop::Enum(t.state.name()));
        emit("Description", Prop::Text(t.description.as_deref()));
        emit("Response", Prop::Text(t.response.as_deref()));
        emit("Request", Prop::Text(t.request.as_deref()));
        emit("ProgressDescription", Prop::Text(t.progress_description.as_deref()));
        emit("ProgressPercent", Prop::Int(t.progress_percent.into()));
        emit("FileName", Prop::Text(t.file_name.as_deref()));
        emit("CancellationBehaviour", Prop::Enum(t.cancellation.name()));
        emit("TableRight", Prop::TableRight(self.rights));
        emit("FieldProperties", Prop::FieldProperties(self.rights.update));
    }
}

/// `$select` nulls a property out; value types (ints, bools) have no null in SuperOffice's model,
/// so they are written as null too, as the agents do.
fn null_of(p: &Prop<'_>) -> Prop<'static> {
    match p {
        Prop::Date(_) => Prop::Date(None),
        Prop::Dict(_) => Prop::Dict(None),
        _ => Prop::Text(None),
    }
}

/// The FieldProperties object, serialised once per variant: it only depends on whether the caller
/// may update the task.
pub fn field_properties_json(updatable: bool) -> &'static serde_json::value::RawValue {
    static CACHE: OnceLock<[Box<serde_json::value::RawValue>; 2]> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let build = |updatable: bool| {
            let mut map = serde_json::Map::new();
            for (name, ty, len) in PROPERTIES {
                let mask = if updatable && UPDATABLE_PROPERTIES.contains(&name) { "Update" } else { "Read" };
                map.insert(
                    name.to_owned(),
                    serde_json::json!({"FieldRight": {"Mask": mask, "Reason": ""}, "FieldType": ty, "FieldLength": len}),
                );
            }
            serde_json::value::to_raw_value(&map).expect("static JSON")
        };
        [build(false), build(true)]
    });
    &cache[usize::from(updatable)]
}

impl serde::Serialize for TaskView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(24))?;
        let mut err = None;
        self.for_each(|name, prop| {
            if err.is_some() {
                return;
            }
            let r = match prop {
                Prop::Int(i) => map.serialize_entry(name, &i),
                Prop::Bool(b) => map.serialize_entry(name, &b),
                Prop::Text(t) => map.serialize_entry(name, &t),
                Prop::Date(d) => map.serialize_entry(name, &d),
                Prop::Dict(d) => map.serialize_entry(name, &d.map(DictJson)),
                Prop::Enum(e) => map.serialize_entry(name, e),
                Prop::TableRight(r) => map.serialize_entry(name, &TableRightJson(r)),
                Prop::FieldProperties(u) => map.serialize_entry(name, field_properties_json(u)),
            };
            if let Err(e) = r {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        map.end()
    }
}

struct DictJson<'a>(&'a Parameters);
impl serde::Serialize for DictJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.0.len()))?;
        for (k, v) in &self.0.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct TableRightJson(TaskRights);
impl serde::Serialize for TableRightJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("Mask", &self.0.flag_names().join(", "))?;
        m.serialize_entry("Reason", "")?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Changes, for the event stream

/// The data properties (not the caller's rights) of a task as BatchTaskInfo JSON writes them.
fn data_properties(task: &Task, zone: Tz) -> serde_json::Map<String, Value> {
    let view = TaskView { task, rights: TaskRights::NONE, zone, select: None };
    match serde_json::to_value(&view) {
        Ok(Value::Object(mut m)) => {
            m.remove("TableRight");
            m.remove("FieldProperties");
            m
        }
        _ => serde_json::Map::new(),
    }
}

/// The data properties whose values differ between two versions of a task, in [`PROPERTIES`]
/// order; compared as written on the wire, so what is listed is what a client would see change.
pub fn changed_properties(old: &Task, new: &Task) -> Vec<&'static str> {
    let (before, after) = (data_properties(old, Tz::UTC), data_properties(new, Tz::UTC));
    PROPERTIES.iter().map(|(name, _, _)| *name).filter(|name| before.get(*name) != after.get(*name)).collect()
}

/// The named data properties of `task`, values as BatchTaskInfo JSON gives them in `zone`.
pub fn properties_json(task: &Task, zone: Tz, names: &[&str]) -> serde_json::Map<String, Value> {
    let mut all = data_properties(task, zone);
    names.iter().filter_map(|n| all.remove(*n).map(|v| ((*n).to_owned(), v))).collect()
}

// ---------------------------------------------------------------------------------------------
// Input

/// Objects up to this many properties are searched in place; larger ones get a lowercased index,
/// so that a body of many properties costs one pass however many are asked for.
const PROPS_SCANNED: usize = 16;

/// Case-insensitive view of a JSON object's properties. When two names differ only in case,
/// the later one counts.
pub struct Props<'a> {
    obj: &'a serde_json::Map<String, Value>,
    index: Option<HashMap<String, &'a Value>>,
}

impl<'a> Props<'a> {
    pub fn new(obj: &'a serde_json::Map<String, Value>) -> Props<'a> {
        // A typical body (a PUT's two or three properties) needs neither the map nor a lowercased
        // copy of every name.
        let index = (obj.len() > PROPS_SCANNED).then(|| obj.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect());
        Props { obj, index }
    }

    /// The value of a property; `Some(Value::Null)` when it is present and null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        match &self.index {
            Some(index) => index.get(&name.to_ascii_lowercase()).copied(),
            None => self.obj.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v),
        }
    }

    pub fn text(&self, field: Field) -> Result<Patch<Option<String>>, DomainError> {
        match self.get(field.name()) {
            None => Ok(Patch::Keep),
            Some(Value::Null) => Ok(Patch::Set(None)),
            Some(Value::String(s)) => Ok(Patch::Set(Some(s.clone()))),
            // Numbers and booleans are read as their text, as .NET's reader does.
            Some(Value::Number(n)) => Ok(Patch::Set(Some(n.to_string()))),
            Some(Value::Bool(b)) => Ok(Patch::Set(Some(b.to_string()))),
            Some(_) => Err(DomainError::WrongType { field, expected: Expected::Text }),
        }
    }

    pub fn int(&self, field: Field, min: i64, max: i64) -> Result<Option<i64>, DomainError> {
        let v = match self.get(field.name()) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        let n = int_of(v).ok_or(DomainError::WrongType { field, expected: Expected::Integer })?;
        if n < min || n > max {
            return Err(DomainError::OutOfRange { field, min, max });
        }
        Ok(Some(n))
    }

    pub fn bool(&self, field: Field) -> Result<Option<bool>, DomainError> {
        match self.get(field.name()) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            // Trimmed: pretty-printed XML and form bodies carry the text as written.
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => Ok(Some(n.as_i64() == Some(1))),
            Some(_) => Err(DomainError::WrongType { field, expected: Expected::Boolean }),
        }
    }

    pub fn state(&self, field: Field) -> Result<Option<BatchTaskState>, DomainError> {
        match self.get(field.name()) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => parse_state(v, field).map(Some),
        }
    }

    pub fn cancellation(&self) -> Result<Option<CancellationBehaviour>, DomainError> {
        let field = Field::CancellationBehaviour;
        match self.get(field.name()) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => CancellationBehaviour::parse(s)
                .map(Some)
                .ok_or_else(|| DomainError::UnknownValue { field, value: s.clone() }),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(CancellationBehaviour::from_number)
                .map(Some)
                .ok_or_else(|| DomainError::UnknownValue { field, value: n.to_string() }),
            Some(_) => Err(DomainError::WrongType { field, expected: Expected::Cancellation }),
        }
    }

    pub fn parameters(&self) -> Result<Option<Parameters>, DomainError> {
        let field = Field::ParameterObject;
        match self.get(field.name()) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => {
                let mut out = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => String::new(),
                        _ => {
                            return Err(DomainError::WrongType { field, expected: Expected::StringDictionary });
                        }
                    };
                    out.push((k.clone(), text));
                }
                Ok(Some(Parameters(out)))
            }
            Some(_) => Err(DomainError::WrongType { field, expected: Expected::StringDictionary }),
        }
    }

    /// Validates a date-time property's shape even though no endpoint stores client dates.
    pub fn date(&self, field: Field, zone: Tz) -> Result<Option<chrono::DateTime<chrono::Utc>>, DomainError> {
        match self.get(field.name()) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => time::parse(s, zone)
                .map(Some)
                .map_err(|_| DomainError::WrongType { field, expected: Expected::DateTime }),
            Some(_) => Err(DomainError::WrongType { field, expected: Expected::DateTime }),
        }
    }
}

pub fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn parse_state(v: &Value, field: Field) -> Result<BatchTaskState, DomainError> {
    match v {
        Value::String(s) => {
            BatchTaskState::parse(s).ok_or_else(|| DomainError::UnknownValue { field, value: s.clone() })
        }
        Value::Number(n) => n
            .as_i64()
            .and_then(BatchTaskState::from_number)
            .ok_or_else(|| DomainError::UnknownValue { field, value: n.to_string() }),
        _ => Err(DomainError::WrongType { field, expected: Expected::State }),
    }
}

fn opt_text(p: Patch<Option<String>>) -> Option<String> {
    match p {
        Patch::Keep | Patch::Set(None) => None,
        Patch::Set(Some(s)) => Some(s),
    }
}

/// What a create body asks for. Rights decide `associate_id` and `is_system` afterwards.
pub struct CreateRequest {
    pub task: NewTask,
    /// `AssociateId` as given (0 or absent = the caller).
    pub associate_id: Option<i32>,
    pub cancellation_given: bool,
    /// `Priority` as given; absent = the definition's.
    pub priority_given: bool,
}

pub fn parse_create(obj: &serde_json::Map<String, Value>) -> Result<CreateRequest, DomainError> {
    let p = Props::new(obj);
    let name = match p.text(Field::Name)? {
        Patch::Set(Some(n)) => n,
        _ => return Err(DomainError::Required { field: Field::Name }),
    };
    let cancellation = p.cancellation()?;
    let priority = p.int(crate::domain::task::PRIORITY, 0, i64::from(crate::domain::task::PRIORITY_MAX))?;
    let task = NewTask {
        name,
        associate_id: 0,
        description: opt_text(p.text(Field::Description)?),
        context: opt_text(p.text(Field::Context)?),
        request: opt_text(p.text(Field::Request)?),
        database_serial_number: opt_text(p.text(Field::DatabaseSerialNumber)?),
        details_table: p.int(Field::DetailsTable, 0, i64::from(i16::MAX))?.unwrap_or(0) as i16,
        details_record: p.int(Field::DetailsRecord, 0, i64::from(i32::MAX))?.unwrap_or(0) as i32,
        is_system: p.bool(Field::IsSystemTask)?.unwrap_or(false),
        is_internal: p.bool(Field::IsInternalTask)?.unwrap_or(false),
        parameters: p.parameters()?,
        file_name: opt_text(p.text(Field::FileName)?),
        cancellation: cancellation.unwrap_or_default(),
        priority: priority.map_or(0, |v| v as u8),
        after: after_ids(&p)?,
        // The service sets it from the definition.
        unique_key: None,
    };
    let associate_id = p.int(Field::AssociateId, 0, i64::from(i32::MAX))?.map(|v| v as i32).filter(|v| *v != 0);
    task.validate()?;
    Ok(CreateRequest {
        task,
        associate_id,
        cancellation_given: cancellation.is_some(),
        priority_given: priority.is_some(),
    })
}

/// The create body's `After`: a list of task ids (one bare id is a list of one); absent or
/// `null` is none. Bounds and duplicates are the domain's rule.
fn after_ids(p: &Props<'_>) -> Result<Vec<i32>, DomainError> {
    use crate::domain::dependency::{AFTER, check_after};
    let wrong = || DomainError::WrongType { field: AFTER, expected: Expected::IntegerList };
    let ids: Vec<i64> = match p.get(AFTER.name()) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|v| int_of(v).ok_or_else(wrong)).collect::<Result<_, _>>()?,
        Some(v) => vec![int_of(v).ok_or_else(wrong)?],
    };
    check_after(&ids)
}

/// The update a PUT body asks for, and the body's `Id` (0 or absent = none).
pub fn parse_update(obj: &serde_json::Map<String, Value>) -> Result<(Option<i64>, TaskUpdate), DomainError> {
    let p = Props::new(obj);
    let id = p.int(Field::Id, i64::from(i32::MIN), i64::from(i32::MAX))?.filter(|i| *i != 0);
    let state = match p.get("State") {
        None => Patch::Keep,
        Some(Value::Null) => {
            return Err(DomainError::WrongType { field: Field::State, expected: Expected::State });
        }
        Some(v) => Patch::Set(parse_state(v, Field::State)?),
    };
    let update = TaskUpdate {
        state,
        description: p.text(Field::Description)?,
        response: p.text(Field::Response)?,
        request: p.text(Field::Request)?,
    };
    update.validate()?;
    Ok((id, update))
}

/// The property names a BatchTaskInfo has, for `$select` checks.
pub fn is_property(name: &str) -> bool {
    PROPERTIES.iter().any(|(n, _, _)| n.eq_ignore_ascii_case(name))
        || name.eq_ignore_ascii_case("TableRight")
        || name.eq_ignore_ascii_case("FieldProperties")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn props_answer_alike_searched_in_place_or_indexed() {
        for extra in [0, PROPS_SCANNED] {
            let mut o = obj(json!({"description": "a", "Description": "b", "State": 1}));
            for i in 0..extra {
                o.insert(format!("x{i}"), json!(i));
            }
            let p = Props::new(&o);
            assert_eq!(p.index.is_some(), o.len() > PROPS_SCANNED);
            // The later of two names differing in case, as a map of lowercased names keeps it.
            let later = o.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case("DESCRIPTION")).map(|(_, v)| v);
            assert_eq!(p.get("DESCRIPTION"), later);
            assert_eq!(p.get("state"), Some(&json!(1)));
            assert_eq!(p.get("Response"), None);
        }
    }

    #[test]
    fn create_reads_names_case_insensitively_and_ignores_server_fields() {
        let r = parse_create(&obj(
            json!({"name": "Export", "DESCRIPTION": "d", "State": "Failed", "Id": 9, "StartCount": "x",
            "parameterObject": {"a": "1", "b": 2, "c": true}, "cancellationBehaviour": 2}),
        ))
        .unwrap();
        assert_eq!(r.task.name, "Export");
        assert_eq!(r.task.description.as_deref(), Some("d"));
        assert_eq!(r.task.cancellation, CancellationBehaviour::CannotCancel);
        assert_eq!(
            r.task.parameters.unwrap().0,
            vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("c".into(), "true".into())]
        );
    }

    #[test]
    fn create_names_the_bad_field() {
        for (body, field) in [
            (json!({}), "Name"),
            (json!({"Name": "  "}), "Name"),
            (json!({"Name": "x", "IsSystemTask": "maybe"}), "IsSystemTask"),
            (json!({"Name": "x", "ParameterObject": {"a": {"b": 1}}}), "ParameterObject"),
            (json!({"Name": "x", "ParameterObject": [1]}), "ParameterObject"),
            (json!({"Name": "x", "DetailsTable": 40000}), "DetailsTable"),
            (json!({"Name": "x", "Description": "d".repeat(255)}), "Description"),
            (json!({"Name": "x", "DatabaseSerialNumber": "1".repeat(40)}), "DatabaseSerialNumber"),
            (json!({"Name": "x", "CancellationBehaviour": "Sometimes"}), "CancellationBehaviour"),
        ] {
            let e = parse_create(&obj(body.clone())).err().unwrap_or_else(|| panic!("{body} accepted"));
            assert!(format!("{e}").contains(field), "{body}: {e}");
        }
    }

    #[test]
    fn changed_properties_name_what_a_client_sees_change_and_nothing_else() {
        let old = Task::fixture(7, "Sleep", 10, BatchTaskState::New);
        assert!(changed_properties(&old, &old).is_empty());
        let mut started = old.clone();
        started.begin_run(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        // Bookkeeping that is no property (version, updated) is not a change.
        started.version += 1;
        started.updated = chrono::DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        assert_eq!(changed_properties(&old, &started), ["LastStarted", "StartCount", "State"]);
        let mut progressed = started.clone();
        progressed.progress_percent = 40;
        progressed.progress_description = Some("copying".into());
        assert_eq!(changed_properties(&started, &progressed), ["ProgressDescription", "ProgressPercent"]);
        let shown = properties_json(&progressed, chrono_tz::Asia::Kolkata, &["State", "LastStarted", "Nope"]);
        assert_eq!(
            Value::Object(shown),
            json!({"State": "Started", "LastStarted": "2023-11-15T03:43:20.0000000+05:30"})
        );
    }

    #[test]
    fn update_rejects_all_and_unknown_states() {
        assert!(matches!(parse_update(&obj(json!({"State": "All"}))), Err(DomainError::StateNotAllowed { .. })));
        assert!(matches!(parse_update(&obj(json!({"State": 0}))), Err(DomainError::StateNotAllowed { .. })));
        assert!(matches!(parse_update(&obj(json!({"State": "Done"}))), Err(DomainError::UnknownValue { .. })));
        let (id, u) = parse_update(&obj(json!({"id": 5, "state": "started", "Description": null}))).unwrap();
        assert_eq!(id, Some(5));
        assert_eq!(u.state, Patch::Set(BatchTaskState::Started));
        assert_eq!(u.description, Patch::Set(None));
        assert_eq!(u.response, Patch::Keep);
    }
}
