//! Task priority and rate limits: claims take higher priority first, ties oldest first, across
//! definitions; a create names it (`Priority`) or gets its definition's; a definition's `rate` bounds
//! its starts per period over every node; bad values are refused. Observed by the tasks themselves:
//! the order an external worker acquires them in, and their `LastStarted`.

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::runner::{events, spawn_runner_with, wait_state};

/// Two external definitions (their tasks wait for a worker) and two in-process ones, one of
/// each with a priority of its own.
const DEFS: &str = r#"
[[definition]]
name = "ext_low"
runner = "external"

[[definition]]
name = "ext_high"
runner = "external"
priority = 5

[[definition]]
name = "low"
runner = "noop"

[[definition]]
name = "high"
runner = "noop"
priority = 7
"#;

async fn spawn(pg: Option<&str>) -> TestApp {
    let url = pg.map(str::to_owned);
    spawn_runner_with(DEFS, move |c| {
        if let Some(url) = url {
            c.database = url;
        }
        // One slot: each claim takes one task, so the start order is the claim order.
        c.runner.max_running = 1;
    })
    .await
}

fn create_body(name: &str, priority: Option<i64>) -> Value {
    match priority {
        Some(p) => json!({"Name": name, "Priority": p}),
        None => json!({"Name": name}),
    }
}

/// An external worker acquires across both definitions in priority order, ties by id.
async fn a_worker_acquires_in_priority_order(app: &TestApp) {
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    let a = app.create(&create_body("ext_low", None)).await; // 0
    let b = app.create(&create_body("ext_high", None)).await; // 5, the definition's
    let c = app.create(&create_body("ext_low", Some(9))).await;
    let d = app.create(&create_body("ext_low", Some(5))).await;
    let e = app.create(&create_body("ext_high", Some(0))).await; // named: beats the definition's
    let mut got = Vec::new();
    for _ in 0..5 {
        let res = w
            .send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": ["ext_low", "ext_high"], "Wait": 0}))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        got.push(body["Task"]["Id"].as_i64().unwrap());
    }
    assert_eq!(got, [c, b, d, a, e], "priority 9, 5 (older first), 5, 0 (older first), 0");
    // The event log shows a priority other than the default.
    assert_eq!(events(app, c).await[0]["Reason"], "created with priority 9");
    assert_eq!(events(app, b).await[0]["Reason"], "created with priority 5");
    assert_eq!(events(app, a).await[0]["Reason"], "created");
}

/// The node's own claims: with its one slot held by a Sleep, tasks of two definitions pile up;
/// they then start one by one in priority order (as their `LastStarted` says).
async fn a_node_starts_waiting_tasks_in_priority_order(app: &TestApp) {
    let blocker = app.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "1"}})).await;
    wait_state(app, blocker, "Started").await;
    let plan = [("low", None), ("high", None), ("low", Some(8)), ("low", None), ("high", Some(2)), ("low", Some(7))];
    let mut ids = Vec::new();
    for (name, p) in plan {
        ids.push(app.create(&create_body(name, p)).await);
    }
    let mut started = Vec::new();
    for id in &ids {
        let t = wait_state(app, *id, "Succeeded").await;
        let at = chrono::DateTime::parse_from_rfc3339(t["LastStarted"].as_str().unwrap()).unwrap();
        started.push((at, *id));
    }
    started.sort();
    let order: Vec<i64> = started.into_iter().map(|(_, id)| id).collect();
    // 8, then 7 (the definition's, older) and 7 (named), then 2, then the 0s oldest first.
    assert_eq!(order, [ids[2], ids[1], ids[5], ids[4], ids[0], ids[3]]);
}

async fn bad_priorities_are_refused(app: &TestApp) {
    for bad in [json!(10), json!(-1), json!(1000000)] {
        let res = app.post_json("/api/v1/BatchTask", &json!({"Name": "low", "Priority": bad})).await;
        assert_error(res, 400, "ArgumentException", "Priority must be between 0 and 9").await;
    }
    let res = app.post_json("/api/v1/BatchTask", &json!({"Name": "low", "Priority": "high"})).await;
    assert_error(res, 400, "ArgumentException", "Priority").await;
    let res = app.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": "low", "Priority": 12}})).await;
    assert_error(res, 400, "ArgumentException", "Priority must be between 0 and 9").await;
    // The agent takes it too.
    let res = app.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": "ext_low", "Priority": 3}})).await;
    assert_eq!(res.status(), 200);
    let id = res.json::<i64>().await.unwrap();
    assert_eq!(events(app, id).await[0]["Reason"], "created with priority 3");
}

async fn definitions_show_their_priority(app: &TestApp) {
    let list: Value = app.get("/api/v1/Definitions").await.json().await.unwrap();
    let of = |n: &str| list.as_array().unwrap().iter().find(|d| d["Name"] == n).unwrap()["Priority"].clone();
    assert_eq!((of("high"), of("low"), of("Noop")), (json!(7), json!(0), json!(0)));
}

#[tokio::test]
async fn claims_take_higher_priority_first_across_definitions() {
    let app = spawn(None).await;
    a_worker_acquires_in_priority_order(&app).await;
    a_node_starts_waiting_tasks_in_priority_order(&app).await;
    bad_priorities_are_refused(&app).await;
    definitions_show_their_priority(&app).await;
}

#[tokio::test]
async fn claims_take_higher_priority_first_across_definitions_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("priority::claims_take_higher_priority_first_on_postgres").await else {
        return;
    };
    let app = spawn(Some(&db.url)).await;
    a_worker_acquires_in_priority_order(&app).await;
    a_node_starts_waiting_tasks_in_priority_order(&app).await;
    bad_priorities_are_refused(&app).await;
}

#[test]
fn a_priority_out_of_range_in_the_config_names_the_key_and_range() {
    let err =
        batchd::runner::settings::parse_definitions("[[definition]]\nname = \"x\"\nrunner = \"noop\"\npriority = 10\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("priority = 10") && err.contains("0 (the default) to 9"), "{err}");
    let err =
        batchd::runner::settings::parse_definitions("[[definition]]\nname = \"x\"\nrunner = \"noop\"\npriority = -1\n")
            .unwrap_err();
    assert!(format!("{err:#}").contains("priority"), "{err:#}");
}

/// `rate = "4/1s"` on a definition whose tasks are all waiting: they start, but no more than 4
/// in any one-second window (as their `LastStarted` say), over every node given.
async fn starts_stay_within_the_rate(nodes: &[&TestApp]) {
    let mut ids = Vec::new();
    for i in 0..14 {
        ids.push(nodes[i % nodes.len()].create(&json!({"Name": "limited"})).await);
    }
    let mut starts = Vec::new();
    for id in &ids {
        let t =
            crate::runner::wait_task(nodes[0], *id, std::time::Duration::from_secs(30), |t| t["State"] == "Succeeded")
                .await;
        starts.push(chrono::DateTime::parse_from_rfc3339(t["LastStarted"].as_str().unwrap()).unwrap());
    }
    starts.sort();
    let period = chrono::Duration::seconds(1);
    for pair in starts.windows(5) {
        assert!(pair[4] - pair[0] >= period, "5 starts within 1 s: {pair:?} (all: {starts:?})");
    }
    // It does not merely run slowly: the limit is used.
    let spread = *starts.last().unwrap() - starts[0];
    assert!(spread < chrono::Duration::seconds(8), "14 starts at 4/s took {spread:?}");
}

const RATED: &str = "[[definition]]\nname = \"limited\"\nrunner = \"noop\"\nrate = \"4/1s\"\n";

#[tokio::test]
async fn a_rate_limit_bounds_the_starts_in_any_window() {
    let app = spawn_runner_with(RATED, |_| {}).await;
    starts_stay_within_the_rate(&[&app]).await;
    let list: Value = app.get("/api/v1/Definitions").await.json().await.unwrap();
    let limited = list.as_array().unwrap().iter().find(|d| d["Name"] == "limited").unwrap();
    assert_eq!(limited["Rate"], "4/1s");
}

#[tokio::test]
async fn a_rate_limit_holds_across_two_nodes_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("priority::a_rate_limit_holds_across_two_nodes_on_postgres").await else {
        return;
    };
    let node = |name: &'static str| {
        let url = db.url.clone();
        move |c: &mut batchd::config::Config| {
            c.database = url;
            c.runner.node = Some(name.into());
        }
    };
    let a = spawn_runner_with(RATED, node("node-a")).await;
    let b = spawn_runner_with(RATED, node("node-b")).await;
    starts_stay_within_the_rate(&[&a, &b]).await;
}

#[test]
fn a_bad_rate_in_the_config_names_the_key() {
    for (rate, why) in [("100", "COUNT/PERIOD"), ("0/1m", "from 1 to 10000"), ("5/1ms", "from 1s to 1d")] {
        let toml = format!("[[definition]]\nname = \"x\"\nrunner = \"noop\"\nrate = \"{rate}\"\n");
        let err = format!("{:#}", batchd::runner::settings::parse_definitions(&toml).unwrap_err());
        assert!(err.contains("rate = ") && err.contains(why), "{rate}: {err}");
    }
}
