//! The case-insensitive property reader (`wire::parse_create`, `wire::parse_update`): any JSON
//! body reads the same whatever the letter case of its property names, and what it accepts
//! passes validation.
#![no_main]

use std::collections::HashSet;

use batchd::http::body::{self, BodyKind};
use batchd::http::wire;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn flip(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(Some(Value::Object(obj))) = body::parse(BodyKind::Json, data) else { return };
    // Names that differ only in case are the same property: which one wins is not the question.
    let names: HashSet<String> = obj.keys().map(|k| k.to_ascii_lowercase()).collect();
    if names.len() != obj.len() {
        return;
    }
    let flipped: Map<String, Value> = obj.iter().map(|(k, v)| (flip(k), v.clone())).collect();

    let create = |o: &Map<String, Value>| wire::parse_create(o).map(|r| (r.task, r.associate_id, r.cancellation_given));
    let created = create(&obj);
    assert_eq!(created, create(&flipped));
    if let Ok((task, _, _)) = &created {
        assert!(task.validate().is_ok());
    }
    let updated = wire::parse_update(&obj);
    assert_eq!(updated, wire::parse_update(&flipped));
    if let Ok((_, update)) = &updated {
        assert!(update.validate().is_ok());
    }
});
