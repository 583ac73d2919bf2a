//! The fifteen agent endpoints `POST /api/v1/Agents/Batch/<Method>`.

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

fn ids(v: &Value) -> Vec<i64> {
    let mut out: Vec<i64> =
        v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|t| t["Id"].as_i64().unwrap()).collect();
    out.sort();
    out
}

async fn json_of(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn start_get_update_stop_delete_round_trip() {
    let app = TestApp::spawn().await;
    let res = app
        .agent(
            "StartBatchJob",
            &json!({"BatchTaskInfo": {"Name": "AgentJob", "Description": "via agent", "ParameterObject": {"p": "1"}}}),
        )
        .await;
    let id: i64 = json_of(res).await.as_i64().expect("a bare integer");
    let t = json_of(app.agent("GetBatchTaskInfo", &json!({"Id": id})).await).await;
    assert_eq!(t["Name"], "AgentJob");
    assert_eq!(t["ParameterObject"], json!({"p": "1"}));
    // camelCase wrapper and properties, as the TypeScript client sends them.
    let t = json_of(
        app.agent(
            "UpdateBatchTask",
            &json!({"batchTaskInfo": {"id": id, "state": "Started", "description": "running",
        "tableRight": {"mask": 11, "reason": ""}, "created": "2024-01-01T00:00:00.000Z"}}),
        )
        .await,
    )
    .await;
    assert_eq!(t["State"], "Started");
    assert_eq!(t["Description"], "running");
    assert_eq!(t["StartCount"], 1);
    // Query-string scalars.
    let res = app.request(Method::POST, &format!("/api/v1/Agents/Batch/StopBatchJob?id={id}")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "true");
    assert_eq!(json_of(app.agent("StopBatchJob", &json!({"Id": id})).await).await, json!(false), "already finished");
    let res = app.agent("DeleteBatchTask", &json!({"BatchTaskId": id})).await;
    assert_eq!(res.status(), 204);
    assert_eq!(json_of(app.agent("GetBatchTaskInfo", &json!({"Id": id})).await).await, Value::Null);
    assert_eq!(json_of(app.agent("StopBatchJob", &json!({"Id": id})).await).await, json!(false), "unknown id: false");
    assert_eq!(
        json_of(app.agent("UpdateBatchTask", &json!({"BatchTaskInfo": {"Id": id, "Description": "x"}})).await).await,
        Value::Null
    );
}

#[tokio::test]
async fn missing_parameters_answer_200_with_message_and_bad_bodies_400() {
    let app = TestApp::spawn().await;
    for (method, param) in [
        ("GetBatchTaskInfo", "Id"),
        ("StopBatchJob", "Id"),
        ("StartBatchJob", "BatchTaskInfo"),
        ("UpdateBatchTask", "BatchTaskInfo"),
        ("GetBatchTaskInfosByState", "State"),
        ("GetBatchTaskInfosByAssociates", "AssociateIds"),
        ("DeleteBatchTask", "BatchTaskId"),
        ("DeleteBatchTasks", "BatchTaskIds"),
    ] {
        let v = json_of(app.agent(method, &json!({})).await).await;
        assert_eq!(v["Message"], "The request is invalid.", "{method}");
        assert!(v["MessageDetail"].as_str().unwrap().contains(param), "{method}: {v}");
    }
    let res = app
        .request(Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo")
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "ArgumentException", "JSON").await;
    assert_error(app.agent("GetBatchTaskInfo", &json!({"Id": "seven"})).await, 400, "ArgumentException", "Id").await;
    assert_error(
        app.agent("GetBatchTaskInfosByState", &json!({"State": "Sleeping"})).await,
        400,
        "ArgumentException",
        "State",
    )
    .await;
    assert_error(
        app.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": ""}})).await,
        400,
        "ArgumentException",
        "Name",
    )
    .await;
    assert_error(app.agent("NoSuchMethod", &json!({})).await, 404, "SoNotFoundException", "NoSuchMethod").await;
    // GET describes the call.
    let d: Value = app.get("/api/v1/Agents/Batch/getbatchtaskinfo").await.json().await.unwrap();
    assert_eq!(d["Method"], "GetBatchTaskInfo");
}

#[tokio::test]
async fn queries_by_state_name_associates_and_system() {
    let app = TestApp::spawn().await;
    let alice = app.add_associate("alice", Role::User).await;
    let alice_id = 2;
    let a1 = app.as_user(&alice).create(&json!({"Name": "Report"})).await;
    let a2 = app.as_user(&alice).create(&json!({"Name": "Export"})).await;
    let admin1 = app.create(&json!({"Name": "Report"})).await;
    let sys1 = app.create(&json!({"Name": "Report", "IsSystemTask": true})).await;
    let sys2 = app.create(&json!({"Name": "Cleanup", "IsSystemTask": true})).await;
    app.put_json(&format!("/api/v1/BatchTask/{a2}"), &json!({"State": "Aquired"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{sys2}"), &json!({"State": "Aquired"})).await;

    let q = |m: &'static str, body: Value| {
        let app = &app;
        async move { ids(&json_of(app.agent(m, &body).await).await) }
    };
    assert_eq!(q("GetBatchTaskInfosByState", json!({"State": "New"})).await, vec![a1, admin1]);
    assert_eq!(q("GetBatchTaskInfosByState", json!({"state": "All"})).await, vec![a1, a2, admin1]);
    assert_eq!(q("GetBatchTaskInfosByState", json!({"State": 2})).await, vec![a2]);
    assert_eq!(q("GetBatchTaskInfosByNameAndState", json!({"Name": "Report", "State": "All"})).await, vec![a1, admin1]);
    assert_eq!(q("GetBatchTaskInfosByNameAndState", json!({"Name": "", "State": "New"})).await, vec![a1, admin1]);
    assert_eq!(q("GetBatchTaskInfosByAssociates", json!({"AssociateIds": []})).await, vec![a1, a2, admin1, sys1, sys2]);
    assert_eq!(q("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [0]})).await, vec![sys1, sys2]);
    assert_eq!(q("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [-1]})).await, vec![a1, a2, admin1]);
    assert_eq!(q("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [alice_id]})).await, vec![a1, a2]);
    assert_eq!(
        q("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [alice_id, 0]})).await,
        vec![a1, a2, sys1, sys2]
    );
    // Any list that fits in the body limit: 100,000 ids is about 700 KB of JSON.
    let many: Vec<i32> = (1_000..101_000).chain([alice_id]).collect();
    assert_eq!(q("GetBatchTaskInfosByAssociates", json!({ "AssociateIds": many })).await, vec![a1, a2]);
    assert_eq!(
        q("GetBatchTaskInfosByNameAndAssociates", json!({"Name": "Report", "AssociateIds": [-1]})).await,
        vec![a1, admin1]
    );
    assert_eq!(
        q("GetBatchTaskInfosByAssociatesAndState", json!({"AssociateIds": [0], "State": "Aquired"})).await,
        vec![sys2]
    );
    assert_eq!(q("GetAllBatchTaskInfosByName", json!({"TaskName": "Report"})).await, vec![a1, admin1, sys1]);
    assert_eq!(q("GetAllBatchTaskInfosByName", json!({"TaskName": null})).await, vec![a1, a2, admin1, sys1, sys2]);
    assert_eq!(
        q("GetAllBatchTaskInfosByNameAndState", json!({"TaskName": "Report", "State": "New"})).await,
        vec![a1, admin1, sys1]
    );
    assert_eq!(q("GetSystemBatchTaskInfosByName", json!({"TaskName": ""})).await, vec![sys1, sys2]);
    assert_eq!(
        q("GetSystemBatchTaskInfosByNameAndState", json!({"TaskName": "Cleanup", "State": "Aquired"})).await,
        vec![sys2]
    );

    // A user sees only her own tasks, whatever she asks for.
    let alice_sees =
        json_of(app.as_user(&alice).agent("GetBatchTaskInfosByAssociates", &json!({"AssociateIds": []})).await).await;
    assert_eq!(ids(&alice_sees), vec![a1, a2]);
    let none =
        json_of(app.as_user(&alice).agent("GetSystemBatchTaskInfosByName", &json!({"TaskName": ""})).await).await;
    assert_eq!(ids(&none), Vec::<i64>::new());
    assert_eq!(json_of(app.as_user(&alice).agent("GetBatchTaskInfo", &json!({"Id": sys1})).await).await, Value::Null);
}

#[tokio::test]
async fn select_nulls_other_properties_and_deletes_are_all_or_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Sel", "Description": "d"})).await;
    let v = json_of(
        app.request(Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo?$select=Name,state")
            .json(&json!({"Id": id}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["Name"], "Sel");
    assert_eq!(v["State"], "New");
    assert_eq!(v["Description"], Value::Null);
    assert_eq!(v["Id"], Value::Null);
    assert_eq!(v.as_object().unwrap().len(), 24);
    let list = json_of(
        app.request(Method::POST, "/api/v1/Agents/Batch/GetAllBatchTaskInfosByName?$select=Id")
            .json(&json!({"TaskName": "Sel"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list[0]["Id"], id);
    assert_eq!(list[0]["Name"], Value::Null);
    assert_error(
        app.request(Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo?$select=Bogus")
            .json(&json!({"Id": id}))
            .send()
            .await
            .unwrap(),
        400,
        "ArgumentException",
        "Bogus",
    )
    .await;

    let busy = app.create(&json!({"Name": "Sel"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{busy}"), &json!({"State": "Started"})).await;
    let res = app.agent("DeleteBatchTasks", &json!({"BatchTaskIds": [id, busy]})).await;
    assert_error(res, 409, "SoConflictException", &busy.to_string()).await;
    assert_eq!(app.get(&format!("/api/v1/BatchTask/{id}")).await.status(), 200, "nothing was deleted");
    let res = app.agent("DeleteBatchTasks", &json!({"batchTaskIds": [id, 424242]})).await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get(&format!("/api/v1/BatchTask/{id}")).await.status(), 404);
}

#[tokio::test]
async fn form_bodies_reach_agents_with_dotted_wrappers() {
    let app = TestApp::spawn().await;
    let res = app
        .request(Method::POST, "/api/v1/Agents/Batch/StartBatchJob")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("BatchTaskInfo.Name=Formed&BatchTaskInfo.ParameterObject.k=v")
        .send()
        .await
        .unwrap();
    let id: i64 = json_of(res).await.as_i64().unwrap();
    let res = app
        .request(Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfosByAssociates")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("AssociateIds=1&AssociateIds=-1")
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&json_of(res).await), vec![id]);
    assert_eq!(app.task(id).await["ParameterObject"], json!({"k": "v"}));
}
