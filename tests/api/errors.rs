//! Every bad input gets a clear 4xx naming the field; none gets a 500, panics, or changes data.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_with_the_superoffice_realm() {
    let app = TestApp::spawn().await;
    for (label, req) in [
        ("none", app.client.get(app.url("/api/v1/BatchTask/All"))),
        ("wrong password", app.client.get(app.url("/api/v1/BatchTask/All")).basic_auth("admin", Some("nope"))),
        ("unknown user", app.client.get(app.url("/api/v1/BatchTask/All")).basic_auth("ghost", Some("nope"))),
        ("garbage basic", app.client.get(app.url("/api/v1/BatchTask/All")).header("Authorization", "Basic !!!")),
        ("unknown scheme", app.client.get(app.url("/api/v1/BatchTask/All")).header("Authorization", "Digest x")),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"SuperOffice Username or Ticket\"", "{label}");
        assert_error(res, 401, "SoAuthenticationException", "").await;
    }
    let agent =
        app.client.post(app.url("/api/v1/Agents/Batch/GetBatchTaskInfo")).json(&json!({"Id": 1})).send().await.unwrap();
    assert_eq!(agent.status(), 401);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_name_the_problem() {
    let app = TestApp::spawn().await;
    let raw = |body: &'static str| {
        app.request(Method::POST, "/api/v1/BatchTask").header("Content-Type", "application/json").body(body).send()
    };
    assert_error(raw("{\"Name\": ").await.unwrap(), 400, "ArgumentException", "invalid JSON").await;
    assert_error(raw("").await.unwrap(), 400, "ArgumentException", "BatchTaskInfo").await;
    assert_error(raw("null").await.unwrap(), 400, "ArgumentException", "BatchTaskInfo").await;
    assert_error(raw("\"Name\"").await.unwrap(), 400, "ArgumentException", "BatchTaskInfo").await;
    for (body, field) in [
        (json!({}), "Name"),
        (json!({"Name": ""}), "Name"),
        (json!({"Name": ["x"]}), "Name"),
        (json!({"Name": "x", "IsSystemTask": "perhaps"}), "IsSystemTask"),
        (json!({"Name": "x", "DetailsRecord": "ten"}), "DetailsRecord"),
        (json!({"Name": "x", "DetailsTable": 99999}), "DetailsTable"),
        (json!({"Name": "x", "ParameterObject": {"a": [1]}}), "ParameterObject"),
        (json!({"Name": "x", "ParameterObject": "flat"}), "ParameterObject"),
        (json!({"Name": "n".repeat(255)}), "Name"),
        (json!({"Name": "x", "FileName": "f".repeat(261)}), "FileName"),
        (json!({"Name": "x", "DatabaseSerialNumber": "9".repeat(40)}), "DatabaseSerialNumber"),
        (json!({"Name": "x", "Context": "c".repeat(64 * 1024 + 1)}), "Context"),
        (json!({"Name": "x", "CancellationBehaviour": 7}), "CancellationBehaviour"),
        (json!({"Name": "x", "AssociateId": "me"}), "AssociateId"),
    ] {
        let res = app.post_json("/api/v1/BatchTask", &body).await;
        assert_error(res, 400, "ArgumentException", field).await;
    }
    let all: Value = app.get("/api/v1/BatchTask/All").await.json().await.unwrap();
    assert_eq!(all, json!([]), "no bad request created anything");
}

#[tokio::test]
async fn oversize_and_unsupported_bodies() {
    let app = TestApp::spawn().await;
    let big = format!("{{\"Name\": \"x\", \"Description\": \"{}\"}}", "a".repeat(1024 * 1024));
    let res = app
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "PayloadTooLargeException", "1048576").await;
    let res = app
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Content-Type", "text/plain")
        .body("Name=x")
        .send()
        .await
        .unwrap();
    assert_error(res, 415, "UnsupportedMediaTypeException", "text/plain").await;
}

#[tokio::test]
async fn form_bodies_create_and_update() {
    let app = TestApp::spawn().await;
    let res = app
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Name=Form+task&Description=from%20a%20form&ParameterObject.key=value&IsSystemTask=false")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id: i64 = res.json().await.unwrap();
    let t = app.task(id).await;
    assert_eq!(t["Description"], "from a form");
    assert_eq!(t["ParameterObject"], json!({"key": "value"}));
    let res = app
        .request(Method::PUT, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("State=Started&Response=ok")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.task(id).await["State"], "Started");
}

/// A cheap hostile-input sweep: random bodies and paths never produce a 5xx.
#[tokio::test]
async fn hostile_inputs_never_produce_a_server_error() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "target", "Description": "keep"})).await;
    let before = app.task(id).await;
    let bodies = [
        "{",
        "[]",
        "1e999",
        "{\"State\": 1e400}",
        "{\"Id\": 99999999999999999999}",
        "{\"State\": -1}",
        "{\"Description\": \"\\ud800\"}",
        "\u{0}\u{1}",
        "{\"State\": {\"$gt\": 1}}",
        "{\"State\": true}",
        "{\"Id\": \"1; DROP TABLE batchtask\"}",
        "{\"State\": \"New\", \"State\": \"All\"}",
    ];
    let paths = [
        format!("/api/v1/BatchTask/{id}"),
        "/api/v1/BatchTask/2147483648".into(),
        "/api/v1/BatchTask/-1".into(),
        "/api/v1/BatchTask/%00".into(),
        "/api/v1/Agents/Batch/UpdateBatchTask".into(),
        "/api/v1/Agents/Batch/GetBatchTaskInfo?id=abc".into(),
        "/api/v1/Agents/Batch/Nope".into(),
        "/api/v1/BatchTask?$filter=%27".into(),
        "/api/v1/BatchTask?$skip=99999999999".into(),
    ];
    for path in &paths {
        for body in bodies {
            for method in [Method::PUT, Method::POST, Method::GET, Method::DELETE] {
                let res = app
                    .request(method.clone(), path)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                assert!(status < 500, "{method} {path} {body:?} → {status}: {}", res.text().await.unwrap());
            }
        }
    }
    let after = app.get(&format!("/api/v1/BatchTask/{id}")).await;
    if after.status() == 200 {
        let t: Value = after.json().await.unwrap();
        assert_eq!(t["Description"], before["Description"]);
    }
}

#[tokio::test]
async fn users_only_see_their_own_tasks() {
    let app = TestApp::spawn().await;
    let alice = app.add_associate("alice", batchd::domain::Role::User).await;
    let bob = app.add_associate("bob", batchd::domain::Role::User).await;
    let a = app.as_user(&alice).create(&json!({"Name": "mine"})).await;
    let b = app.as_user(&bob);
    assert_error(b.get(&format!("/api/v1/BatchTask/{a}")).await, 404, "SoNotFoundException", &a.to_string()).await;
    let list: Value = b.get("/api/v1/BatchTask/All").await.json().await.unwrap();
    assert_eq!(list, json!([]));
    let res = b.send_json(Method::PUT, &format!("/api/v1/BatchTask/{a}"), &json!({"Description": "hijack"})).await;
    assert_eq!(res.status(), 404);
    let res = b.request(Method::DELETE, &format!("/api/v1/BatchTask/{a}")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let odata: Value = b.get("/api/v1/BatchTask").await.json().await.unwrap();
    assert_eq!(odata["value"], json!([]));
    let res = b.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "sys", "IsSystemTask": true})).await;
    assert_error(res, 403, "SoAccessDeniedException", "system").await;
    // Alice sees hers; the admin sees everything.
    assert_eq!(app.as_user(&alice).get(&format!("/api/v1/BatchTask/{a}")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/v1/BatchTask/{a}")).await.status(), 200);
}
