//! The OpenAPI document is snapshotted in docs/openapi.json, so API changes show up in review.
//! Run with UPDATE_SNAPSHOTS=1 to accept a change.

use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn openapi_document_matches_the_snapshot_and_every_path_answers() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    let snapshot_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&snapshot_path, &pretty).unwrap();
    }
    let saved = std::fs::read_to_string(&snapshot_path).unwrap_or_default();
    assert!(saved == pretty, "docs/openapi.json is out of date: rerun with UPDATE_SNAPSHOTS=1 and review the diff");

    // Every documented path and verb is routed (never 404 "no endpoint" or 405).
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "1").replace("{state}", "New");
        for verb in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(verb.to_ascii_uppercase().as_bytes()).unwrap();
            let res = app
                .request(method, &concrete)
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            // An event stream's body never ends: its status and type say it is routed.
            let streams = res.headers().get("content-type").is_some_and(|v| v == "text/event-stream");
            let text = if streams { String::new() } else { res.text().await.unwrap() };
            assert!(
                status != 405 && !text.contains("No endpoint answers"),
                "{verb} {path} is documented but not routed: {status} {text}"
            );
        }
    }
}
