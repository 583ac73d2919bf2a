//! The patch applier: any JSON as a JSON Patch or Merge Patch, applied to a task document, gives
//! an update or a typed error. An update it gives always passes the update rules' validation.
#![no_main]

use batchd::http::body::BodyKind;
use batchd::http::patch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let kind = if first & 1 == 0 { BodyKind::JsonPatch } else { BodyKind::MergePatch };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    let doc = serde_json::json!({
        "Id": 1, "Name": "n", "AssociateId": 1, "ParameterObject": {"a": "1", "b/c": "2"},
        "LastStarted": null, "Created": "2024-01-01T00:00:00.0000000+00:00", "StartCount": 0,
        "State": "New", "Description": "d", "Response": null, "Request": "r",
        "TableRight": {"Mask": "Select, Update", "Reason": ""}
    });
    if let Ok(p) = patch::parse(kind, Some(value)) {
        if let Ok(update) = patch::apply(&p, doc) {
            assert!(update.validate().is_ok(), "an applied patch yields a valid update");
        }
    }
});
