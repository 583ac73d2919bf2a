//! JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7396) on `PATCH` and `PUT
//! /api/v1/BatchTask/{id}`. The RFCs' appendix examples are mapped onto BatchTaskInfo: the
//! updatable properties stand in for the RFC's members, ParameterObject for a nested object.

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";

async fn patch(app: &TestApp, method: Method, id: i64, ctype: &str, body: Value) -> Response {
    app.request(method, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", ctype)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn ok(res: Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn task_with(app: &TestApp, body: Value) -> (i64, Value) {
    let id = app.create(&body).await;
    (id, app.task(id).await)
}

#[tokio::test]
async fn rfc6902_appendix_examples_on_a_task() {
    let app = TestApp::spawn().await;
    let base = json!({"Name": "P", "Request": "req", "ParameterObject": {"a/b": "slash", "m~n": "tilde"}});

    // A.1 adding an object member (Description is null: add sets it).
    let (id, _) = task_with(&app, base.clone()).await;
    let t =
        ok(patch(&app, Method::PATCH, id, JSON_PATCH, json!([{"op": "add", "path": "/Description", "value": "qux"}]))
            .await)
        .await;
    assert_eq!(t["Description"], "qux");
    assert_eq!(t, app.task(id).await, "the answer is what is stored");

    // A.3 removing an object member: the property becomes null.
    let t = ok(patch(&app, Method::PATCH, id, JSON_PATCH, json!([{"op": "remove", "path": "/Request"}])).await).await;
    assert_eq!(t["Request"], Value::Null);

    // A.5 replacing a value.
    let t = ok(patch(
        &app,
        Method::PATCH,
        id,
        JSON_PATCH,
        json!([{"op": "replace", "path": "/State", "value": "Started"}]),
    )
    .await)
    .await;
    assert_eq!((t["State"].as_str(), t["StartCount"].as_i64()), (Some("Started"), Some(1)), "the update path ran");

    // A.6 moving a value.
    let (id, _) = task_with(&app, base.clone()).await;
    let t = ok(patch(
        &app,
        Method::PATCH,
        id,
        JSON_PATCH,
        json!([{"op": "move", "from": "/Request", "path": "/Response"}]),
    )
    .await)
    .await;
    assert_eq!((t["Request"].clone(), t["Response"].clone()), (Value::Null, json!("req")));

    // copy (RFC 6902 4.5).
    let t = ok(patch(
        &app,
        Method::PATCH,
        id,
        JSON_PATCH,
        json!([{"op": "copy", "from": "/Response", "path": "/Description"}]),
    )
    .await)
    .await;
    assert_eq!(t["Description"], "req");

    // A.8 testing a value: success, then the rest applies.
    let (id, before) = task_with(&app, base.clone()).await;
    let ops = json!([{"op": "test", "path": "/Name", "value": "P"}, {"op": "test", "path": "/ParameterObject/a~1b", "value": "slash"},
        {"op": "test", "path": "/ParameterObject/m~0n", "value": "tilde"}, {"op": "test", "path": "/StartCount", "value": 0},
        {"op": "replace", "path": "/Description", "value": "tested"}]);
    let t = ok(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await).await;
    assert_eq!(t["Description"], "tested");

    // A.9 testing a value: error → 409, nothing changed.
    let ops = json!([{"op": "replace", "path": "/Description", "value": "never"}, {"op": "test", "path": "/Description", "value": "other"}]);
    assert_error(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await, 409, "SoConflictException", "/Description")
        .await;
    assert_eq!(app.task(id).await["Description"], "tested");

    // A.10 adding a nested member object: ParameterObject may not change.
    let ops = json!([{"op": "add", "path": "/ParameterObject/child", "value": "grandchild"}]);
    assert_error(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await, 400, "ArgumentException", "ParameterObject")
        .await;

    // A.12 adding to a nonexistent target.
    let ops = json!([{"op": "add", "path": "/Baz/bat", "value": "qux"}]);
    assert_error(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await, 400, "ArgumentException", "/Baz/bat").await;

    // A.13 invalid JSON Patch document (two "op"s cannot be expressed in JSON; an unknown op can).
    let ops = json!([{"op": "jump", "path": "/Description", "value": 1}]);
    assert_error(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await, 400, "ArgumentException", "operation 0").await;

    // A.15 comparing strings and numbers: "0" is not 0.
    let ops = json!([{"op": "test", "path": "/StartCount", "value": "0"}]);
    assert_error(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await, 409, "SoConflictException", "StartCount").await;

    // Removing a path that does not exist.
    let ops = json!([{"op": "remove", "path": "/Nope"}]);
    assert_error(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await, 400, "ArgumentException", "/Nope").await;
    let _ = before;
}

#[tokio::test]
async fn read_only_properties_are_refused_by_name() {
    let app = TestApp::spawn().await;
    let (id, before) = task_with(&app, json!({"Name": "RO", "Description": "d"})).await;
    for (op, field) in [
        (json!({"op": "replace", "path": "/Name", "value": "renamed"}), "Name"),
        (json!({"op": "replace", "path": "/startCount", "value": 9}), "StartCount"),
        (json!({"op": "replace", "path": "/TableRight/Mask", "value": "Select"}), "TableRight"),
        (json!({"op": "remove", "path": "/FileName"}), "FileName"),
        (json!({"op": "add", "path": "/Extra", "value": 1}), "Extra"),
        (json!({"op": "move", "from": "/Name", "path": "/Description"}), "Name"),
        (json!({"op": "copy", "from": "/Description", "path": "/Context"}), "Context"),
    ] {
        let res = patch(&app, Method::PATCH, id, JSON_PATCH, json!([op])).await;
        assert_error(res, 400, "ArgumentException", field).await;
    }
    let res = patch(
        &app,
        Method::PATCH,
        id,
        MERGE_PATCH,
        json!({"Description": "x", "CancellationBehaviour": "CannotCancel"}),
    );
    assert_error(res.await, 400, "ArgumentException", "CancellationBehaviour").await;
    assert_eq!(app.task(id).await, before, "a refused patch changes nothing");
    // Writing a read-only property's current value is no change, so it is allowed.
    let ops = json!([{"op": "replace", "path": "/Name", "value": "RO"}, {"op": "replace", "path": "/Description", "value": "e"}]);
    assert_eq!(ok(patch(&app, Method::PATCH, id, JSON_PATCH, ops).await).await["Description"], "e");
}

#[tokio::test]
async fn rfc7396_examples_on_a_task() {
    let app = TestApp::spawn().await;
    let (id, _) =
        task_with(&app, json!({"Name": "M", "Description": "b", "Request": "c", "ParameterObject": {"k": "v"}})).await;
    // {"a":"b"} + {"a":"c"} → replaced; {"b":"c"} alongside → set; {"a":null} → removed (null).
    let t = ok(patch(
        &app,
        Method::PATCH,
        id,
        MERGE_PATCH,
        json!({"description": "c", "Response": "new", "REQUEST": null}),
    )
    .await)
    .await;
    assert_eq!(
        (t["Description"].clone(), t["Response"].clone(), t["Request"].clone()),
        (json!("c"), json!("new"), Value::Null)
    );
    // An empty merge patch changes nothing.
    let before = app.task(id).await;
    let t = ok(patch(&app, Method::PATCH, id, MERGE_PATCH, json!({})).await).await;
    assert_eq!(t["Description"], before["Description"]);
    // Nested objects merge: touching ParameterObject is a change to ParameterObject.
    let res = patch(&app, Method::PATCH, id, MERGE_PATCH, json!({"ParameterObject": {"k": null}})).await;
    assert_error(res, 400, "ArgumentException", "ParameterObject").await;
    // A non-object merge patch would replace the whole task.
    let res = patch(&app, Method::PATCH, id, MERGE_PATCH, json!(["c"])).await;
    assert_error(res, 400, "ArgumentException", "merge patch").await;
    // State moves follow the same rules as PUT.
    let res = patch(&app, Method::PATCH, id, MERGE_PATCH, json!({"State": "Succeeded"})).await;
    assert_error(res, 409, "SoConflictException", "Succeeded").await;
    let res = patch(&app, Method::PATCH, id, MERGE_PATCH, json!({"State": null})).await;
    assert_error(res, 400, "ArgumentException", "State").await;
    let res = patch(&app, Method::PATCH, id, MERGE_PATCH, json!({"Description": "x".repeat(255)})).await;
    assert_error(res, 400, "ArgumentException", "Description").await;
}

#[tokio::test]
async fn put_takes_patches_and_patch_takes_nothing_else() {
    let app = TestApp::spawn().await;
    let (id, _) = task_with(&app, json!({"Name": "Put"})).await;
    let t = ok(patch(
        &app,
        Method::PUT,
        id,
        JSON_PATCH,
        json!([{"op": "replace", "path": "Description", "value": "via put"}]),
    )
    .await)
    .await;
    assert_eq!(t["Description"], "via put");
    let t = ok(patch(&app, Method::PUT, id, MERGE_PATCH, json!({"Response": "merged"})).await).await;
    assert_eq!(t["Response"], "merged");
    for ctype in ["application/json", "application/xml", "application/x-www-form-urlencoded"] {
        let res = patch(&app, Method::PATCH, id, ctype, json!({"Description": "no"})).await;
        assert_error(res, 415, "UnsupportedMediaTypeException", "merge-patch").await;
    }
    let res = app.request(Method::PATCH, &format!("/api/v1/BatchTask/{id}")).body("[]").send().await.unwrap();
    assert_error(res, 415, "UnsupportedMediaTypeException", "application/json").await;
    let res = patch(&app, Method::PATCH, 999_999, MERGE_PATCH, json!({"Description": "x"})).await;
    assert_error(res, 404, "SoNotFoundException", "999999").await;
    let res = patch(&app, Method::PATCH, id, JSON_PATCH, json!({"op": "add"})).await;
    assert_error(res, 400, "ArgumentException", "array").await;
    let res = app
        .request(Method::PATCH, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", JSON_PATCH)
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "ArgumentException", "JSON").await;
}

#[tokio::test]
async fn patches_honour_preconditions_and_formats() {
    let app = TestApp::spawn().await;
    let (id, _) = task_with(&app, json!({"Name": "Cond"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let etag = app.get(&path).await.headers()["etag"].to_str().unwrap().to_owned();
    let send = |etag: &str| {
        app.request(Method::PATCH, &path)
            .header("Content-Type", MERGE_PATCH)
            .header("If-Match", etag)
            .header("Accept", "application/xml")
            .body(r#"{"Description":"one"}"#)
            .send()
    };
    let res = send(&etag).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/xml; charset=utf-8");
    let doc = batchd::http::xml::parse(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(doc.value["Description"], "one");
    let res = send(&etag).await.unwrap();
    assert_eq!(res.status(), 412, "the old ETag is stale now");
    let res = app
        .request(Method::PATCH, &path)
        .header("Content-Type", MERGE_PATCH)
        .header("If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")
        .body(r#"{"Description":"two"}"#)
        .send()
        .await
        .unwrap();
    assert_error(res, 412, "SoPreconditionFailedException", &id.to_string()).await;
    // Dates in the document are in the request's zone, so a test on them uses that zone.
    let created = app
        .request(Method::GET, &path)
        .header("SO-TimeZone", "Asia/Kolkata")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["Created"]
        .clone();
    assert!(created.as_str().unwrap().ends_with("+05:30"));
    let res = app
        .request(Method::PATCH, &path)
        .header("Content-Type", JSON_PATCH)
        .header("SO-TimeZone", "Asia/Kolkata")
        .body(json!([{"op": "test", "path": "/Created", "value": created}, {"op": "add", "path": "/Response", "value": "z"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok(res).await["Response"], "z");
}

#[tokio::test]
async fn a_user_cannot_patch_what_it_cannot_see() {
    let app = TestApp::spawn().await;
    let alice = app.add_associate("alice", batchd::domain::Role::User).await;
    let bob = app.add_associate("bob", batchd::domain::Role::User).await;
    let id = app.as_user(&alice).create(&json!({"Name": "Mine"})).await;
    let res = app
        .as_user(&bob)
        .request(Method::PATCH, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", MERGE_PATCH)
        .body(r#"{"Description":"hijack"}"#)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "SoNotFoundException", &id.to_string()).await;
}
