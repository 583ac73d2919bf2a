//! Task dependencies (`After`): a task stays New until every task it names has Succeeded, and
//! ends Failed, naming the dependency, when one fails or is deleted (down a chain); the ids are
//! checked against the caller's rights and bounded; `GET .../Dependencies` answers both ways.
//! Observed through the tasks themselves: their states, `Result`, `LastStarted` and events.

use batchd::domain::Role;
use chrono::{DateTime, FixedOffset};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp, assert_error};
use crate::runner::{events, spawn_runner_with, wait_state};

const DEFS: &str = r#"
[[definition]]
name = "ok"
runner = "noop"

[[definition]]
name = "bad"
runner = "command"
command = ["/bin/false"]

[[definition]]
name = "ext"
runner = "external"
"#;

async fn spawn(pg: Option<&str>) -> TestApp {
    let url = pg.map(str::to_owned);
    spawn_runner_with(DEFS, move |c| {
        if let Some(url) = url {
            c.database = url;
        }
    })
    .await
}

fn instant(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).unwrap()
}

/// When the task reached `state`, from its event log.
async fn reached(app: &TestApp, id: i64, state: &str) -> DateTime<FixedOffset> {
    let ev = events(app, id).await;
    let e = ev.iter().find(|e| e["To"] == state).unwrap_or_else(|| panic!("{id} never {state}: {ev:?}"));
    instant(&e["Time"])
}

async fn deps(app: &TestApp, id: i64) -> Value {
    let res = app.get(&format!("/api/v1/BatchTask/{id}/Dependencies")).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array().unwrap().iter().map(|t| t["Id"].as_i64().unwrap()).collect()
}

/// a (succeeds, after a short sleep) → b (fails: `/bin/false`) → c → e; d after a. d starts
/// only once a has succeeded; c and e end Failed, each naming its own dependency, never started.
async fn a_chain_with_a_failure_in_the_middle(app: &TestApp) {
    let a = app.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "0.5"}})).await;
    let b = app.create(&json!({"Name": "bad", "After": [a]})).await;
    let c = app.create(&json!({"Name": "ok", "After": [b]})).await;
    let e = app.create(&json!({"Name": "ok", "After": [c, c]})).await;
    let d = app.create(&json!({"Name": "ok", "After": [a]})).await;
    for id in [b, c, d, e] {
        assert_eq!(app.task(id).await["State"], "New", "{id} waits");
    }
    let ta = wait_state(app, a, "Succeeded").await;
    let td = wait_state(app, d, "Succeeded").await;
    let tb = wait_state(app, b, "Failed").await;
    let a_done = reached(app, a, "Succeeded").await;
    assert!(instant(&td["LastStarted"]) >= a_done, "d started {} before a finished {a_done}", td["LastStarted"]);
    assert!(instant(&tb["LastStarted"]) >= a_done, "b started before a finished");
    assert!(instant(&ta["LastStarted"]) < a_done);
    assert_eq!(tb["StartCount"], 1);
    for (id, dep) in [(c, b), (e, c)] {
        let t = wait_state(app, id, "Failed").await;
        assert_eq!(t["Result"], format!("dependency {dep} failed"));
        assert_eq!(t["StartCount"], 0, "{id} never ran");
        let ev = events(app, id).await;
        let last = ev.last().unwrap();
        assert_eq!((last["From"].as_str(), last["To"].as_str()), (Some("New"), Some("Failed")));
        assert_eq!(last["Reason"], format!("dependency {dep} failed"));
    }
    // Both directions, with their states.
    let of_c = deps(app, c).await;
    assert_eq!(of_c["After"], json!([{"Id": b, "Name": "bad", "State": "Failed", "Satisfied": false}]));
    assert_eq!(ids(&of_c["Before"]), [e]);
    let of_a = deps(app, a).await;
    assert_eq!(ids(&of_a["Before"]), [b, d]);
    assert_eq!((of_a["After"].clone(), of_a["BeforeMore"].clone()), (json!([]), json!(false)));
    assert_eq!(deps(app, d).await["After"][0]["Satisfied"], true);
    // Retry of c while b is still Failed: 409 naming b. The XML answer has both lists.
    let res = app.request(Method::POST, &format!("/api/v1/BatchTask/{c}/Retry")).send().await.unwrap();
    assert_error(res, 409, "SoConflictException", &format!("BatchTask id {b}")).await;
    let res = app
        .request(Method::GET, &format!("/api/v1/BatchTask/{a}/Dependencies"))
        .header("Accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let xml = res.text().await.unwrap();
    assert!(
        xml.contains("<BatchTaskDependencies") && xml.contains(&format!("<Before><BatchTaskDependency><Id>{b}</Id>")),
        "{xml}"
    );
}

async fn acquire(w: &Client<'_>) -> reqwest::Response {
    w.send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": ["ext"], "Wait": 0})).await
}

/// An external worker's Acquire never hands out a waiting task; a failed dependency, retried and
/// then succeeded, lets its retried dependent run. A deleted dependency fails its dependent.
async fn retry_and_delete(app: &TestApp) {
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    let f = app.create(&json!({"Name": "ext"})).await;
    let g = app.create(&json!({"Name": "ok", "After": [f]})).await;
    let h = app.create(&json!({"Name": "ext", "After": [f]})).await;
    let finish = |token: String, id: i64, state: &'static str| {
        let w = &w;
        async move {
            let res = w
                .request(Method::PUT, &format!("/api/v1/BatchTask/{id}"))
                .header("X-Lease-Token", token)
                .json(&json!({"State": state}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        }
    };
    let take = || async {
        let res = acquire(&w).await;
        assert_eq!(res.status(), 200);
        let got: Value = res.json().await.unwrap();
        (got["Task"]["Id"].as_i64().unwrap(), got["LeaseToken"].as_str().unwrap().to_owned())
    };
    let (id, token) = take().await;
    assert_eq!(id, f, "h waits for f");
    assert_eq!(acquire(&w).await.status(), 204, "nothing else is due");
    finish(token, f, "Failed").await;
    for id in [g, h] {
        assert_eq!(wait_state(app, id, "Failed").await["Result"], format!("dependency {f} failed"));
    }
    let retry = |id: i64| app.request(Method::POST, &format!("/api/v1/BatchTask/{id}/Retry")).send();
    assert_eq!(retry(g).await.unwrap().status(), 409);
    assert_eq!(retry(f).await.unwrap().status(), 200);
    assert_eq!(retry(g).await.unwrap().status(), 200, "f runs again: g may wait for it");
    assert_eq!(app.task(g).await["State"], "New");
    let (id, token) = take().await;
    assert_eq!(id, f);
    finish(token, f, "Succeeded").await;
    let tg = wait_state(app, g, "Succeeded").await;
    assert!(instant(&tg["LastStarted"]) >= reached(app, f, "Succeeded").await);
    // h stays Failed (it was not retried); f's success did not touch it.
    assert_eq!(app.task(h).await["State"], "Failed");

    // A stopped dependency ends Failed, and so does what waits for it.
    let p = app.create(&json!({"Name": "ext"})).await;
    let q = app.create(&json!({"Name": "ok", "After": [p]})).await;
    assert_eq!(crate::runner::stop(app, p).await.status(), 200);
    assert_eq!(wait_state(app, p, "Failed").await["State"], "Failed");
    assert_eq!(wait_state(app, q, "Failed").await["Result"], format!("dependency {p} failed"));

    // Deleting a dependency fails the tasks waiting for it, naming it; their retry is refused.
    let k = app.create(&json!({"Name": "ext"})).await;
    let m = app.create(&json!({"Name": "ok", "After": [k]})).await;
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{k}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let tm = wait_state(app, m, "Failed").await;
    assert_eq!(tm["Result"], format!("dependency {k} was deleted"));
    let res = retry(m).await.unwrap();
    assert_error(res, 409, "SoConflictException", "deleted").await;
    // The deleted one still shows, by id only.
    assert_eq!(deps(app, m).await["After"], json!([{"Id": k, "Name": null, "State": null, "Satisfied": false}]));
}

/// Only existing ids the caller may see, positive, at most 100 distinct: else a 400 naming
/// `After` (and the id or the limit). The agent's StartBatchJob takes `After` too. The
/// Dependencies endpoint shows a user only their own tasks.
async fn ids_are_checked_against_rights_and_bounded(app: &TestApp) {
    let ann = app.add_associate("ann", Role::User).await;
    let bob = app.add_associate("bob", Role::User).await;
    let (ann, bob) = (app.as_user(&ann), app.as_user(&bob));
    let annes = ann.create(&json!({"Name": "ext"})).await;
    let bobs = bob.create(&json!({"Name": "ext"})).await;
    let res = ann.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "ok", "After": [annes, bobs]})).await;
    assert_error(res, 400, "ArgumentException", &format!("After has an unknown value '{bobs}'")).await;
    let res = ann.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "ok", "After": [99_999_999]})).await;
    assert_error(res, 400, "ArgumentException", "After has an unknown value '99999999'").await;
    for bad in [json!([0]), json!([-3]), json!([4_000_000_000_i64])] {
        let res = ann.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "ok", "After": bad})).await;
        assert_error(res, 400, "ArgumentException", "After must be between 1 and").await;
    }
    for bad in [json!(["x"]), json!({"a": 1}), json!([[1]])] {
        let res = ann.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "ok", "After": bad})).await;
        assert_error(res, 400, "ArgumentException", "After").await;
    }
    let many: Vec<i64> = (1..=101).collect();
    let res = ann.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "ok", "After": many})).await;
    assert_error(res, 400, "ArgumentException", "After: at most 100 ids are allowed, 101 were given").await;
    // A chain is at most 100 deep: the 101st task after the first is refused, naming the limit.
    let mut last = ann.create(&json!({"Name": "ext"})).await;
    for _ in 0..batchd::domain::dependency::DEPTH_MAX {
        last = ann.create(&json!({"Name": "ext", "After": [last]})).await;
    }
    let res = ann.send_json(Method::POST, "/api/v1/BatchTask", &json!({"Name": "ext", "After": [last]})).await;
    assert_error(res, 400, "ArgumentException", "After: the chain of dependencies would be longer than 100 tasks")
        .await;
    let res = ann.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": "ok", "After": [bobs]}})).await;
    assert_error(res, 400, "ArgumentException", "After").await;
    let res = ann.agent("StartBatchJob", &json!({"BatchTaskInfo": {"Name": "ext", "After": [annes]}})).await;
    assert_eq!(res.status(), 200);
    let annes2 = res.json::<i64>().await.unwrap();
    // The admin's task after ann's: ann does not see it among hers.
    let admins = app.create(&json!({"Name": "ext", "After": [annes]})).await;
    let res = ann.get(&format!("/api/v1/BatchTask/{annes}/Dependencies")).await;
    let seen: Value = res.json().await.unwrap();
    assert_eq!(ids(&seen["Before"]), [annes2], "not the admin's {admins}");
    assert_eq!(ids(&deps(app, annes).await["Before"]), [annes2, admins]);
    assert_eq!(bob.get(&format!("/api/v1/BatchTask/{annes}/Dependencies")).await.status(), 404);
    assert_eq!(app.get("/api/v1/BatchTask/99999999/Dependencies").await.status(), 404);
    // Its fixed word matches in any case, as the others do.
    assert_eq!(ann.get(&format!("/API/v1/batchtask/{annes}/dependencies/")).await.status(), 200);
    // XML bodies: `<After><int>…</int></After>`.
    let xml_create = |body: String| async {
        let res = ann
            .request(Method::POST, "/api/v1/BatchTask")
            .header("Content-Type", "application/xml")
            .header("Accept", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<i64>().await.unwrap()
    };
    let id =
        xml_create(format!("<BatchTaskInfo><Name>ext</Name><After><int>{annes}</int></After></BatchTaskInfo>")).await;
    assert_eq!(deps(app, id).await["After"][0]["Id"], annes);
    // A one-item list as bare text is that id; a parameter called After is a parameter.
    let id = xml_create(format!(
        "<BatchTaskInfo><Name>ext</Name><After>{annes}</After><ParameterObject><After>x</After></ParameterObject></BatchTaskInfo>"
    ))
    .await;
    assert_eq!(deps(app, id).await["After"][0]["Id"], annes);
    let task: Value = ann.get(&format!("/api/v1/BatchTask/{id}")).await.json().await.unwrap();
    assert_eq!(task["ParameterObject"]["After"], "x", "{task}");
}

#[tokio::test]
async fn dependencies_on_sqlite() {
    let app = spawn(None).await;
    a_chain_with_a_failure_in_the_middle(&app).await;
    retry_and_delete(&app).await;
    ids_are_checked_against_rights_and_bounded(&app).await;
}

#[tokio::test]
async fn dependencies_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("dependencies::dependencies_on_postgres").await else { return };
    let app = spawn(Some(&db.url)).await;
    a_chain_with_a_failure_in_the_middle(&app).await;
    retry_and_delete(&app).await;
    ids_are_checked_against_rights_and_bounded(&app).await;
}

/// Two nodes on one database, each running one definition: the dependency is claimed and
/// finished on node A, its dependent then runs on node B (woken by the release's notice).
#[tokio::test]
async fn a_dependency_finishing_on_one_node_releases_its_dependent_on_another_on_postgres() {
    let Some(db) =
        crate::pg::TestPg::create("dependencies::a_dependency_finishing_on_one_node_releases_on_another").await
    else {
        return;
    };
    let node = |name: &'static str| {
        let url = db.url.clone();
        move |c: &mut batchd::config::Config| {
            c.database = url;
            c.runner.node = Some(name.into());
            // Slow polling: the dependent's prompt start shows the release woke node B.
            c.runner.poll = std::time::Duration::from_secs(30);
        }
    };
    let defs = |name: &str| format!("[[definition]]\nname = \"{name}\"\nrunner = \"noop\"\n");
    let a = spawn_runner_with(&defs("first"), node("node-a")).await;
    let b = spawn_runner_with(&defs("second"), node("node-b")).await;
    // Let both nodes settle (their first claim pass) before the tasks exist.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let blocker = a.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "0.5"}})).await;
    let first = a.create(&json!({"Name": "first", "After": [blocker]})).await;
    let second = b.create(&json!({"Name": "second", "After": [first]})).await;
    let t2 =
        crate::runner::wait_task(&b, second, std::time::Duration::from_secs(10), |t| t["State"] == "Succeeded").await;
    let done = reached(&a, first, "Succeeded").await;
    assert!(instant(&t2["LastStarted"]) >= done, "second started before first finished");
    let node_of =
        |ev: Vec<Value>| ev.iter().find(|e| e["To"] == "Aquired" || e["To"] == "Started").unwrap()["Node"].clone();
    assert_eq!(node_of(events(&a, first).await), "node-a");
    assert_eq!(node_of(events(&b, second).await), "node-b");
}
