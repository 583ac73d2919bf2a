//! Bounds on what one request may make the server build: how deep a body nests (every body
//! kind). A small request past it once aborted the process.

use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::{TestApp, assert_error};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON_PATCH: &str = "application/json-patch+json";

async fn send(app: &TestApp, method: Method, path: &str, ctype: &str, body: String) -> Response {
    app.client.request(method, app.url(path)).header("Content-Type", ctype).body(body).send().await.unwrap()
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
