//! The XML body reader: any bytes give a value or an error, within the documented limits.
#![no_main]

use batchd::http::xml;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = xml::parse(data) {
        // The value nests no deeper than the limit, lists of repeated names included.
        assert!(depth(&doc.value) <= xml::MAX_DEPTH, "too deep");
        assert!(!doc.root.is_empty());
    }
});
