//! Bounds on what one request may make the server build: how deep a body nests (every body
//! kind), and how large a JSON Patch may make the task document while it is applied. Each of
//! these was once a small request that aborted the process or held the store's writer.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON_PATCH: &str = "application/json-patch+json";

async fn send(app: &TestApp, method: Method, path: &str, ctype: &str, body: String) -> Response {
    app.client.request(method, app.url(path)).header("Content-Type", ctype).body(body).send().await.unwrap()
}

async fn patch(app: &TestApp, id: i64, ops: Value) -> Response {
    app.request(Method::PATCH, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", JSON_PATCH)
        .body(ops.to_string())
        .send()
        .await
        .unwrap()
}

async fn assert_alive(app: &TestApp) {
    let res = app.get("/api").await;
    assert_eq!(res.status(), 200, "the server still answers");
    app.create(&json!({"Name": "alive"})).await;
}

#[tokio::test]
async fn a_form_key_with_8000_dots_is_a_400_before_any_login() {
    let app = TestApp::spawn().await;
    // 16 KB, no credentials: the endpoints that log in read the body first.
    let key = vec!["a"; 8001].join(".");
    for path in ["/api/v1/Session", "/api/v1/Ticket", "/api/v1/Agents/SoPrincipal/AuthenticateUsernamePassword"] {
        let res = send(&app, Method::POST, path, FORM, format!("{key}=1")).await;
        assert_error(res, 400, "ArgumentException", "deeper than 32 levels").await;
    }
    assert_alive(&app).await;
}

#[tokio::test]
async fn every_body_kind_is_refused_past_the_nesting_limit() {
    let app = TestApp::spawn().await;
    let deep = "deeper than 32 levels";
    let post = |ctype: &'static str, body: String| {
        app.request(Method::POST, "/api/v1/BatchTask").header("Content-Type", ctype).body(body).send()
    };

    // JSON: 33 nested containers, well inside serde_json's own limit of 128.
    let json = format!("{{\"Name\":\"x\",\"Context\":{}1{}}}", "[".repeat(32), "]".repeat(32));
    assert_error(post("application/json", json).await.unwrap(), 400, "ArgumentException", deep).await;
    // Brackets inside strings are text.
    let id = app.create(&json!({"Name": "x", "Description": "[".repeat(100)})).await;
    assert_eq!(app.task(id).await["Description"], "[".repeat(100));

    // Form: 32 segments are 32 levels (the body object is the first); a repeat makes a list, one more.
    let key32 = vec!["p"; 32].join(".");
    let res = post(FORM, format!("Name=x&{key32}=1")).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_error(post(FORM, format!("Name=x&{key32}.p=1")).await.unwrap(), 400, "ArgumentException", deep).await;
    assert_error(post(FORM, format!("Name=x&{key32}=1&{key32}=2")).await.unwrap(), 400, "ArgumentException", deep)
        .await;
    // A value that already holds an object, made into a list: the object's levels count too.
    let key31 = vec!["p"; 31].join(".");
    let res = post(FORM, format!("Name=x&a.{key31}=1&a=2")).await.unwrap();
    assert_error(res, 400, "ArgumentException", deep).await;

    // XML: elements deeper than the limit, and repeated names whose lists add levels.
    let xml = format!("<BatchTaskInfo><Name>x</Name>{}{}</BatchTaskInfo>", "<a>".repeat(32), "</a>".repeat(32));
    assert_error(post("application/xml", xml).await.unwrap(), 400, "ArgumentException", deep).await;
    // Each <a> holds two <a>s, so each element level is an object and a list: 20 elements, 40 levels.
    let mut repeated = "x".to_owned();
    for _ in 0..20 {
        repeated = format!("<a>{repeated}</a><a/>");
    }
    let xml = format!("<BatchTaskInfo><Name>x</Name>{repeated}</BatchTaskInfo>");
    assert_error(post("application/xml", xml).await.unwrap(), 400, "ArgumentException", deep).await;

    // Patch documents are JSON bodies: the same limit.
    let ops = format!("[{{\"op\":\"add\",\"path\":\"/Description\",\"value\":{}1{}}}]", "[".repeat(32), "]".repeat(32));
    let res = app
        .request(Method::PATCH, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", JSON_PATCH)
        .body(ops)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "ArgumentException", deep).await;
    assert_alive(&app).await;
}

/// Each `copy` of the whole document into itself doubles it: 30 of them would be 2^30 copies.
#[tokio::test]
async fn a_doubling_json_patch_is_refused_quickly_and_the_store_keeps_writing() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "big", "Request": "r".repeat(1000)})).await;
    let other = app.create(&json!({"Name": "other"})).await;
    let ops: Vec<Value> = (0..30).map(|n| json!({"op": "copy", "from": "", "path": format!("/X{n}")})).collect();

    let started = Instant::now();
    let (res, write) = tokio::join!(patch(&app, id, Value::Array(ops)), async {
        // A write to another task meanwhile: the patch must not hold the writer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        let res = app.put_json(&format!("/api/v1/BatchTask/{other}"), &json!({"Description": "meanwhile"})).await;
        (res.status(), t.elapsed())
    });
    let elapsed = started.elapsed();
    assert_error(res, 400, "ArgumentException", "larger than 2097152 bytes").await;
    assert!(elapsed < Duration::from_secs(2), "the refusal took {elapsed:?}");
    assert_eq!(write.0, 200);
    assert!(write.1 < Duration::from_secs(2), "a write meanwhile took {:?}", write.1);
    assert_eq!(app.task(id).await["Request"], "r".repeat(1000), "nothing changed");
    assert_alive(&app).await;
}

#[tokio::test]
async fn a_json_patch_has_a_bounded_number_of_operations() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "n"})).await;
    let op = json!({"op": "test", "path": "/Name", "value": "n"});
    let res = patch(&app, id, Value::Array(vec![op.clone(); 32])).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = patch(&app, id, Value::Array(vec![op; 33])).await;
    assert_error(res, 400, "ArgumentException", "at most 32 operations").await;
}

/// A patch that would nest the document past the limit is refused before it runs, even when
/// each value in it is within the body's limit.
#[tokio::test]
async fn a_json_patch_cannot_nest_the_document_past_the_limit() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "n"})).await;
    let mut value = json!(1);
    for _ in 0..20 {
        value = json!([value]);
    }
    let ops = json!([
        {"op": "add", "path": "/Y", "value": value},
        {"op": "copy", "from": "/Y", "path": "/Y/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0/0"},
    ]);
    assert_error(patch(&app, id, ops).await, 400, "ArgumentException", "deeper than 32 levels").await;
}

/// Patches are computed outside the store's writer, from a snapshot: a concurrent change to the
/// task in between must not be lost or overwritten. Eight patches that each test the current
/// Description and replace it: exactly one can win, as if they had run one after another.
pub async fn concurrent_patches_apply_one_after_another(app: &TestApp) {
    let id = app.create(&json!({"Name": "race", "Description": "v0"})).await;
    let mut runs = Vec::new();
    for n in 1..=8 {
        let ops = json!([
            {"op": "test", "path": "/Description", "value": "v0"},
            {"op": "replace", "path": "/Description", "value": format!("v{n}")},
        ]);
        runs.push(patch(app, id, ops));
    }
    let mut won = Vec::new();
    for (n, res) in futures_util::future::join_all(runs).await.into_iter().enumerate() {
        match res.status().as_u16() {
            200 => won.push(format!("v{}", n + 1)),
            409 => {}
            other => panic!("patch {n}: {other} {}", res.text().await.unwrap()),
        }
    }
    assert_eq!(won.len(), 1, "exactly one patch saw v0: {won:?}");
    let task = app.task(id).await;
    assert_eq!(task["Description"], won[0]);
}

#[tokio::test]
async fn concurrent_patches_apply_one_after_another_on_sqlite() {
    concurrent_patches_apply_one_after_another(&TestApp::spawn().await).await;
}

#[tokio::test]
async fn concurrent_patches_apply_one_after_another_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("limits::concurrent_patches_apply_one_after_another_on_postgres").await
    else {
        return;
    };
    let url = db.url.clone();
    concurrent_patches_apply_one_after_another(&TestApp::spawn_with(|c| c.database = url).await).await;
}
