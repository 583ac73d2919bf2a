//! The rights matrix (docs/API.md): three roles × every task endpoint × own, another
//! user's and a system task, asserting status codes and TableRight; then every list and agent
//! query, asserting that nothing a caller may not see leaks into it.

use std::collections::BTreeSet;

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, ADMIN_PASSWORD, Client, TestApp};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Own,
    Others,
    System,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    User,
    Worker,
    Admin,
}

struct World {
    app: TestApp,
    user: (String, String),
    other: (String, String),
    other_id: i64,
    worker: (String, String),
}

impl World {
    async fn new() -> World {
        let app = TestApp::spawn().await;
        let user = app.add_associate("ursula", Role::User).await;
        let other = app.add_associate("otto", Role::User).await;
        let worker = app.add_associate("wanda", Role::Worker).await;
        let other_id = app.as_user(&other).get("/api/v1/Session").await.json::<Value>().await.unwrap()["AssociateId"]
            .as_i64()
            .unwrap();
        World { app, user, other, other_id, worker }
    }

    fn client(&self, who: Who) -> Client<'_> {
        let creds = match who {
            Who::User => self.user.clone(),
            Who::Worker => self.worker.clone(),
            Who::Admin => (ADMIN.to_owned(), ADMIN_PASSWORD.to_owned()),
        };
        self.app.as_user(&creds)
    }

    /// A fresh task of the given kind, seen from `who`.
    async fn task(&self, who: Who, target: Target) -> i64 {
        match target {
            Target::Own => self.client(who).create(&json!({"Name": "own"})).await,
            Target::Others => self.app.as_user(&self.other).create(&json!({"Name": "others"})).await,
            Target::System => self.app.create(&json!({"Name": "system", "IsSystemTask": true})).await,
        }
    }

    async fn exists(&self, id: i64) -> bool {
        self.app.get(&format!("/api/v1/BatchTask/{id}")).await.status() == 200
    }
}

fn visible(who: Who, target: Target) -> bool {
    who != Who::User || target == Target::Own
}

fn may_delete(who: Who, target: Target) -> bool {
    who == Who::Admin || target == Target::Own
}

const ROLES: [Who; 3] = [Who::User, Who::Worker, Who::Admin];
const TARGETS: [Target; 3] = [Target::Own, Target::Others, Target::System];

#[tokio::test]
async fn every_task_endpoint_follows_the_rights_of_each_role() {
    let w = World::new().await;
    for who in ROLES {
        let c = w.client(who);
        for target in TARGETS {
            let case = format!("{who:?} on {target:?}");
            let see = visible(who, target);

            // GET, with TableRight and FieldProperties saying exactly what this caller may do.
            let id = w.task(who, target).await;
            let res = c.get(&format!("/api/v1/BatchTask/{id}")).await;
            assert_eq!(res.status(), if see { 200 } else { 404 }, "GET {case}");
            if see {
                let t: Value = res.json().await.unwrap();
                let want = if may_delete(who, target) { "Select, Update, Delete" } else { "Select, Update" };
                assert_eq!(t["TableRight"]["Mask"], want, "TableRight {case}");
                assert_eq!(t["FieldProperties"]["State"]["FieldRight"]["Mask"], "Update", "{case}");
            } else {
                let text = res.text().await.unwrap();
                assert!(!text.contains("others") && !text.contains("system"), "a 404 tells nothing: {text}");
            }

            // PUT
            let res = c.send_json(Method::PUT, &format!("/api/v1/BatchTask/{id}"), &json!({"Description": "x"})).await;
            assert_eq!(res.status(), if see { 200 } else { 404 }, "PUT {case}");
            if see {
                let t: Value = res.json().await.unwrap();
                assert!(t["TableRight"]["Mask"].as_str().unwrap().contains("Update"), "PUT {case}");
            }

            // PATCH-free state move through the agent
            let res = c.agent("UpdateBatchTask", &json!({"BatchTaskInfo": {"Id": id, "State": "Started"}})).await;
            assert_eq!(res.status(), 200, "UpdateBatchTask {case}");
            let body: Value = res.json().await.unwrap();
            if see {
                assert_eq!(body["State"], "Started", "UpdateBatchTask {case}");
            } else {
                assert_eq!(body, Value::Null, "UpdateBatchTask {case}");
            }

            // GetBatchTaskInfo
            let res = c.agent("GetBatchTaskInfo", &json!({"Id": id})).await;
            assert_eq!(res.status(), 200);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body == Value::Null, !see, "GetBatchTaskInfo {case}: {body}");

            // Stop (REST): a started task is stopped by whoever may see it.
            let res = c.request(Method::POST, &format!("/api/v1/BatchTask/{id}/Stop")).send().await.unwrap();
            assert_eq!(res.status(), if see { 200 } else { 404 }, "Stop {case}");

            // StopBatchJob on a fresh one
            let id2 = w.task(who, target).await;
            let res = c.agent("StopBatchJob", &json!({"Id": id2})).await;
            assert_eq!(res.json::<Value>().await.unwrap(), json!(see), "StopBatchJob {case}");

            // DELETE (REST) on a finished task
            let res = c.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
            let want = match (see, may_delete(who, target)) {
                (false, _) => 404,
                (true, true) => 204,
                (true, false) => 403,
            };
            assert_eq!(res.status(), want, "DELETE {case}");
            assert_eq!(w.exists(id).await, want != 204, "DELETE {case}");

            // DeleteBatchTask and DeleteBatchTasks: hidden ids are skipped as if unknown.
            for method in ["DeleteBatchTask", "DeleteBatchTasks"] {
                let id3 = w.task(who, target).await;
                let body = if method == "DeleteBatchTask" {
                    json!({"BatchTaskId": id3})
                } else {
                    json!({"BatchTaskIds": [id3]})
                };
                let res = c.agent(method, &body).await;
                let want = if see && !may_delete(who, target) { 403 } else { 204 };
                assert_eq!(res.status(), want, "{method} {case}");
                assert_eq!(w.exists(id3).await, !(see && may_delete(who, target)), "{method} {case}");
            }
            let _ = id2;
        }
    }
}

#[tokio::test]
async fn creating_system_tasks_or_tasks_for_others_needs_the_role() {
    let w = World::new().await;
    let other = w.other_id;
    for (who, system, foreign) in [(Who::User, 403, 403), (Who::Worker, 200, 403), (Who::Admin, 200, 200)] {
        let c = w.client(who);
        let res = c.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "s", "IsSystemTask": true})).await;
        assert_eq!(res.status(), system, "{who:?} system task");
        let res = c.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "f", "AssociateId": other})).await;
        assert_eq!(res.status(), foreign, "{who:?} task for another");
        let res = c.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": "s", "IsSystemTask": true}})).await;
        assert_eq!(res.status(), system, "{who:?} StartBatchJob system");
    }
}

/// An internal task leaves no event: a user must not be able to run something without a trace.
#[tokio::test]
async fn only_workers_and_admins_create_internal_tasks() {
    let w = World::new().await;
    for (who, want) in [(Who::User, 403), (Who::Worker, 200), (Who::Admin, 200)] {
        let c = w.client(who);
        let res = c.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "i", "IsInternalTask": true})).await;
        assert_eq!(res.status(), want, "{who:?} internal task");
        if want == 403 {
            let body = res.text().await.unwrap();
            assert!(body.contains("IsInternalTask"), "the refusal names the property: {body}");
        }
        let res = c.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": "i", "IsInternalTask": "true"}})).await;
        assert_eq!(res.status(), want, "{who:?} StartBatchJob internal");
        let res = c.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "i", "IsInternalTask": false})).await;
        assert_eq!(res.status(), 200, "{who:?} a task that is not internal");
    }
}

/// Ids in any list answer: arrays of BatchTaskInfo, or the OData list.
fn ids(v: &Value) -> BTreeSet<i64> {
    let items = match v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o.get("value").and_then(Value::as_array).cloned().unwrap_or_default(),
        _ => Vec::new(),
    };
    items.iter().filter_map(|t| t.get("Id").or_else(|| t.get("PrimaryKey")).and_then(Value::as_i64)).collect()
}

#[tokio::test]
async fn no_list_or_agent_query_leaks_a_task_the_caller_may_not_see() {
    let w = World::new().await;
    let mut own = std::collections::HashMap::new();
    for who in ROLES {
        let mut mine = BTreeSet::new();
        for _ in 0..2 {
            mine.insert(w.task(who, Target::Own).await);
        }
        own.insert(format!("{who:?}"), mine);
    }
    let others: BTreeSet<i64> = [w.task(Who::User, Target::Others).await].into();
    let system: BTreeSet<i64> =
        [w.task(Who::Admin, Target::System).await, w.task(Who::Admin, Target::System).await].into();
    let user_tasks: BTreeSet<i64> = own.values().flatten().copied().chain(others.iter().copied()).collect();
    let everything: BTreeSet<i64> = user_tasks.union(&system).copied().collect();

    let other = w.other_id;
    let gets = ["/api/v1/BatchTask/All", "/api/v1/BatchTask/New", "/api/v1/BatchTask", "/api/v1/BatchTask?$top=1000"];
    let agents: Vec<(&str, Value, &str)> = vec![
        ("GetBatchTaskInfosByAssociates", json!({"AssociateIds": []}), "all"),
        ("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [0]}), "system"),
        ("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [-1]}), "users"),
        ("GetBatchTaskInfosByAssociates", json!({"AssociateIds": [other]}), "others"),
        ("GetBatchTaskInfosByState", json!({"State": "All"}), "users"),
        ("GetBatchTaskInfosByNameAndState", json!({"Name": "", "State": "New"}), "users"),
        ("GetBatchTaskInfosByNameAndAssociates", json!({"Name": "", "AssociateIds": []}), "all"),
        ("GetBatchTaskInfosByAssociatesAndState", json!({"AssociateIds": [-1, 0], "State": "All"}), "all"),
        ("GetAllBatchTaskInfosByName", json!({"TaskName": ""}), "all"),
        ("GetAllBatchTaskInfosByNameAndState", json!({"TaskName": "", "State": "All"}), "all"),
        ("GetSystemBatchTaskInfosByName", json!({"TaskName": ""}), "system"),
        ("GetSystemBatchTaskInfosByNameAndState", json!({"TaskName": "system", "State": "All"}), "system"),
    ];
    for who in ROLES {
        let c = w.client(who);
        let mine = &own[&format!("{who:?}")];
        let allowed: BTreeSet<i64> = if who == Who::User { mine.clone() } else { everything.clone() };
        let mut answers: Vec<(String, BTreeSet<i64>)> = Vec::new();
        for path in gets {
            let res = c.get(path).await;
            assert_eq!(res.status(), 200, "{who:?} {path}");
            answers.push((path.to_owned(), ids(&res.json().await.unwrap())));
        }
        for (method, body, _) in &agents {
            let res = c.agent(method, body).await;
            assert_eq!(res.status(), 200, "{who:?} {method}");
            answers.push((format!("{method} {body}"), ids(&res.json().await.unwrap())));
        }
        for (what, got) in &answers {
            let leaked: Vec<_> = got.difference(&allowed).collect();
            assert!(leaked.is_empty(), "{who:?} {what} leaked {leaked:?}");
        }
        // And the lists are not simply empty: each caller finds what it may see.
        let all = &answers[0].1;
        assert!(mine.is_subset(all), "{who:?} sees its own tasks in /All");
        let by_agent: BTreeSet<i64> = answers
            .iter()
            .filter(|(w, _)| w.starts_with("GetAllBatchTaskInfosByName "))
            .flat_map(|(_, s)| s.clone())
            .collect();
        match who {
            Who::User => assert_eq!(&by_agent, mine),
            _ => assert_eq!(by_agent, everything, "{who:?} GetAll* sees every task"),
        }
        let sys: BTreeSet<i64> = answers
            .iter()
            .filter(|(w, _)| w.starts_with("GetSystemBatchTaskInfosByName "))
            .flat_map(|(_, s)| s.clone())
            .collect();
        assert_eq!(sys, if who == Who::User { BTreeSet::new() } else { system.clone() }, "{who:?} system tasks");
        // State lists never include system tasks, whoever asks.
        assert!(answers[0].1.is_disjoint(&system), "{who:?} /All excludes system tasks");
    }
}
