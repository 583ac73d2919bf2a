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

/// Each operation's `security` is what the server does: without credentials, an operation that
/// declares some answers 401, and one that declares none does not.
#[tokio::test]
async fn declared_security_matches_what_the_server_asks() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "1");
        for (verb, op) in item.as_object().unwrap() {
            let security = op["security"].as_array().unwrap();
            let open = security.is_empty();
            // `{}` among others: the credentials may come in the body instead (a login).
            if !open && security.iter().any(|r| r.as_object().is_some_and(|m| m.is_empty())) {
                continue;
            }
            let method = reqwest::Method::from_bytes(verb.to_ascii_uppercase().as_bytes()).unwrap();
            let res = app.client.request(method, app.url(&concrete)).send().await.unwrap();
            let status = res.status().as_u16();
            if open {
                assert_ne!(status, 401, "{verb} {path} declares no credentials but asks for them");
            } else {
                assert_eq!(status, 401, "{verb} {path} declares credentials but answered {status} without");
                assert!(op["responses"]["401"].is_object(), "{verb} {path} does not list its 401");
            }
        }
    }
}

/// `GET /api/docs`: the reference page, from the same document, linked from `GET /api/v1`;
/// self-contained under a policy that allows its one style and nothing else.
#[tokio::test]
async fn the_reference_page_renders_the_document_under_a_strict_policy() {
    use base64::Engine;
    use sha2::Digest;

    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(res.status(), 200, "no credentials needed");
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let page = res.text().await.unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
    assert!(!page.contains("<script") && !page.contains("src=\"http") && !page.contains("href=\"http"));
    // The one inline style is the one the policy names by hash.
    let style = page.split("<style>").nth(1).unwrap().split("</style>").next().unwrap();
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()));
    assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");

    let doc: Value = app.client.get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (verb, op) in item.as_object().unwrap() {
            let heading = format!(
                "<span class=\"verb\">{}</span> <span class=\"path\">{}</span>",
                verb.to_ascii_uppercase(),
                path.replace('&', "&amp;")
            );
            assert!(page.contains(&heading), "{verb} {path} is not on the page");
            let summary =
                op["summary"].as_str().unwrap().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            assert!(page.contains(&summary.replace('"', "&quot;").replace('\'', "&#39;")), "{summary}");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(page.contains(&format!("id=\"schema-{name}\"")), "schema {name} is not on the page");
    }
    let map: Value = app.get("/api/v1").await.json().await.unwrap();
    assert!(map[app.url("/api/docs")]["GET"].is_string(), "GET /api/v1 links the reference: {map}");
}

/// Undeclared verbs on a fixed route are 405 with `Allow`, `Acquire` included (its GET is the
/// id/state route's 400, which runner_workers checks).
#[tokio::test]
async fn undeclared_methods_answer_405_with_allow() {
    let app = TestApp::spawn().await;
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/api/v1/BatchTask/Acquire", "POST"),
        (reqwest::Method::DELETE, "/api/v1/BatchTask/Acquire", "POST"),
        (reqwest::Method::PATCH, "/api/v1/BatchTask/acquire", "POST"),
        (reqwest::Method::POST, "/api/v1/BatchTask/1", ""),
        (reqwest::Method::DELETE, "/api/v1/Definitions", ""),
    ] {
        let res = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        let allowed = res.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allowed.contains(allow) && !allowed.contains(method.as_str()), "{method} {path}: Allow {allowed}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["ErrorType"], "MethodNotAllowedException", "{body}");
    }
}
