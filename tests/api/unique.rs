//! Unique tasks (`unique = [...]` on a definition): at most one live task per definition and
//! combination of the chosen ParameterObject values, enforced by the database. The store
//! contract on both engines; racing creates over the real server (SQLite, and two PostgreSQL
//! nodes on one database); every create path; retry collisions; the config's checks.

use std::sync::Arc;

use batchd::domain::run::{CatchUp, Schedule};
use batchd::domain::{BatchTaskState, DomainError, NewTask, Task};
use batchd::store::runner::{Actor, ClaimName, ClaimRequest, ScheduleTick};
use batchd::store::{self, CreatedOnce, DefinitionRow, Store, StoreError, TaskFilter};
use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::pg::TestPg;
use crate::runner::spawn_runner_with;

// ---------------------------------------------------------------------------------------------
// Store contract

fn now() -> DateTime<Utc> {
    batchd::domain::time::truncate_micros(Utc::now())
}

fn keyed(name: &str, key: Option<&str>) -> NewTask {
    NewTask { name: name.into(), associate_id: 1, unique_key: key.map(str::to_owned), ..NewTask::default() }
}

fn held(r: Result<Task, StoreError>) -> Option<i32> {
    match r {
        Err(StoreError::Rejected(DomainError::UniqueHeld { holder })) => holder,
        other => panic!("expected a unique collision, got {other:?}"),
    }
}

async fn set_state(store: &Arc<dyn Store>, id: i32, state: BatchTaskState) {
    let t = store
        .modify_task(id, now(), Actor::default(), Box::new(move |t| Ok(Task { state, ..t.clone() })))
        .await
        .unwrap();
    assert_eq!(t.state, state);
}

async fn live_with_key(store: &Arc<dyn Store>, name: &str) -> usize {
    let filter = TaskFilter {
        states: Some(batchd::domain::unique::LIVE.to_vec()),
        name: Some(name.into()),
        ..TaskFilter::default()
    };
    store.find_tasks(&filter).await.unwrap().len()
}

async fn unique_story(store: Arc<dyn Store>) {
    let t0 = now();
    let def = DefinitionRow {
        name: "u".into(),
        description: None,
        runner: "external".into(),
        timeout_seconds: 0,
        restarts: 0,
        start_interval_seconds: 0,
        cancellation: Default::default(),
        concurrency: None,
    };
    store.upsert_definition(&def, t0).await.unwrap();

    // Live (New): a second create of the key collides and names the holder; nothing is written.
    let a = store.create_task(keyed("u", Some("k1")), t0).await.unwrap();
    assert_eq!(held(store.create_task(keyed("u", Some("k1")), t0).await), Some(a.id));
    // Another key, and no key at all, do not collide.
    let b = store.create_task(keyed("u", Some("k2")), t0).await.unwrap();
    store.create_task(keyed("u", None), t0).await.unwrap();
    store.create_task(keyed("u", None), t0).await.unwrap();
    assert_eq!(live_with_key(&store, "u").await, 4);

    // Every create path: create-and-claim, an Idempotency-Key create (whose key is then not
    // used: a collision created nothing), the schedule (the occurrence creates nothing and moves on).
    let claim = ClaimRequest {
        node: "n1".into(),
        lease: std::time::Duration::from_secs(30),
        names: vec![ClaimName { name: "u".into(), concurrency: None, rate: None }],
        max: 1,
        start: true,
        associate_id: None,
    };
    let r = store.create_and_claim(keyed("u", Some("k1")), t0, &claim).await.map(|(t, _)| t);
    assert_eq!(held(r), Some(a.id));
    let once = batchd::domain::idempotency::KeyedCreate {
        associate_id: 1,
        key: "idem-1".into(),
        request_hash: batchd::domain::idempotency::request_hash(&keyed("u", Some("k1"))),
    };
    let r = store.create_task_once(keyed("u", Some("k1")), t0, &once).await;
    assert!(matches!(r, Err(StoreError::Rejected(DomainError::UniqueHeld { holder: Some(h) })) if h == a.id), "{r:?}");
    let tick = ScheduleTick {
        name: "u".into(),
        schedule: Schedule::Every(std::time::Duration::from_secs(60)),
        skip_if_active: false,
        catch_up: CatchUp::One,
    };
    let (armed, next) = store.schedule_tick(&tick, t0, keyed("u", Some("k1"))).await.unwrap();
    assert!(armed.is_none());
    let (made, after) = store.schedule_tick(&tick, next + Duration::seconds(1), keyed("u", Some("k1"))).await.unwrap();
    assert!(made.is_none(), "the key is held: the occurrence creates nothing");
    assert!(after > next, "and the schedule moves on");
    assert_eq!(live_with_key(&store, "u").await, 4, "no path wrote a row");

    // Running (Started) still holds it.
    set_state(&store, a.id, BatchTaskState::Started).await;
    assert_eq!(held(store.create_task(keyed("u", Some("k1")), t0).await), Some(a.id));

    // Succeeded frees the key.
    set_state(&store, a.id, BatchTaskState::Succeeded).await;
    let a_succeeded = store.get_task(a.id).await.unwrap().unwrap();
    let c = store.create_task(keyed("u", Some("k1")), t0).await.unwrap();
    // Failed frees it.
    set_state(&store, c.id, BatchTaskState::Failed).await;
    let d = store.create_task(keyed("u", Some("k1")), t0).await.unwrap();
    // A retry (or an update) back to New while another holds the key is refused, naming it.
    let r = store.retry_task(c.id, t0, Actor::default(), Box::new(|_| Ok(()))).await;
    assert_eq!(held(r), Some(d.id));
    let r = store
        .modify_task(a.id, t0, Actor::default(), Box::new(|t| Ok(Task { state: BatchTaskState::New, ..t.clone() })))
        .await;
    assert_eq!(held(r), Some(d.id));
    // Neither refusal wrote anything: the retried task is still Failed, the edited one Succeeded.
    assert_eq!(store.get_task(c.id).await.unwrap().unwrap().state, BatchTaskState::Failed, "nothing written");
    let edited = store.get_task(a.id).await.unwrap().unwrap();
    assert_eq!((edited.state, edited.version), (BatchTaskState::Succeeded, a_succeeded.version), "nothing written");
    // Deleted frees it; then the retry goes through, and holds the key in turn.
    store.delete_task(d.id, t0, Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
    let retried = store.retry_task(c.id, t0, Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
    assert_eq!(retried.state, BatchTaskState::New);
    assert_eq!(held(store.create_task(keyed("u", Some("k1")), t0).await), Some(c.id));
    // The Idempotency-Key that collided before was not used up: now that the key is free, it creates.
    set_state(&store, c.id, BatchTaskState::Failed).await;
    let r = store.create_task_once(keyed("u", Some("k1")), t0, &once).await.unwrap();
    assert!(matches!(r, CreatedOnce::Created(_)), "{r:?}");
    // k2's holder was never disturbed.
    assert_eq!(held(store.create_task(keyed("u", Some("k2")), t0).await), Some(b.id));
}

#[tokio::test]
async fn sqlite_unique_story() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&format!("sqlite:{}", dir.path().join("u.db").display())).await.unwrap();
    unique_story(store).await;
}

#[tokio::test]
async fn postgres_unique_story() {
    let Some(db) = TestPg::create("unique::postgres_unique_story").await else { return };
    unique_story(store::open(&db.url).await.unwrap()).await;
}

/// Two PostgreSQL stores (two nodes' pools) insert the same key at once, many times over:
/// exactly one row per key, and every loser names the winner.
#[tokio::test]
async fn postgres_racing_stores_make_one_task_per_key() {
    let Some(db) = TestPg::create("unique::postgres_racing_stores_make_one_task_per_key").await else { return };
    let stores = [store::open(&db.url).await.unwrap(), store::open(&db.url).await.unwrap()];
    for round in 0..10 {
        let key = format!("race-{round}");
        let creates = (0..16).map(|i| {
            let store = stores[i % 2].clone();
            let key = key.clone();
            async move { store.create_task(keyed("r", Some(&key)), now()).await }
        });
        let results = futures_util::future::join_all(creates).await;
        let made: Vec<i32> = results.iter().filter_map(|r| r.as_ref().ok().map(|t| t.id)).collect();
        assert_eq!(made.len(), 1, "round {round}: {results:?}");
        for r in results {
            if let Err(e) = r {
                assert!(
                    matches!(e, StoreError::Rejected(DomainError::UniqueHeld { holder: Some(h) }) if h == made[0]),
                    "{e:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Over HTTP

/// External: its tasks wait for a worker, so they stay live.
const DEFS: &str = r#"
[[definition]]
name = "export"
runner = "external"
unique = ["Month", "Customer"]

[[definition]]
name = "flaky"
runner = "external"
unique = ["Customer"]
"#;

async fn spawn(pg: Option<&str>, node: &'static str) -> TestApp {
    let url = pg.map(str::to_owned);
    spawn_runner_with(DEFS, move |c| {
        if let Some(url) = url {
            c.database = url;
        }
        c.runner.node = Some(node.into());
    })
    .await
}

/// A create answer: status, id, Warning header.
async fn create(app: &TestApp, body: &Value) -> (u16, i64, Option<String>) {
    let res = app.post_json("/api/v1/BatchTask", body).await;
    answer(res).await
}

async fn answer(res: reqwest::Response) -> (u16, i64, Option<String>) {
    let status = res.status().as_u16();
    let warning = res.headers().get("Warning").map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    let id = serde_json::from_str::<i64>(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    (status, id, warning)
}

/// 32 clients create the same combination at once, spread over `nodes`: one task exists, every
/// answer is its id with the normal status, and all but one carry the Warning.
async fn racing_creates_make_one_task(nodes: &[&TestApp]) {
    let body = json!({"Name": "export", "ParameterObject": {"Customer": 42, "Month": "2026-12", "Note": "x"}});
    let creates = (0..32).map(|i| {
        let app = nodes[i % nodes.len()];
        let body = body.clone();
        async move { create(app, &body).await }
    });
    let answers = futures_util::future::join_all(creates).await;
    let id = answers[0].1;
    assert!(answers.iter().all(|(status, got, _)| *status == 200 && *got == id), "{answers:?}");
    let warned: Vec<&String> = answers.iter().filter_map(|a| a.2.as_ref()).collect();
    assert_eq!(warned.len(), 31, "{answers:?}");
    let want = format!("299 batchd \"unique: task {id} of export with the same Month, Customer is live\"");
    assert!(warned.iter().all(|w| **w == want), "{warned:?}");
    let stored = nodes[0].store.find_tasks(&TaskFilter { name: Some("export".into()), ..Default::default() }).await;
    assert_eq!(stored.unwrap().len(), 1, "one task exists");

    // The same values as text (42 and "42"), other parameters and their order: the same key.
    let (_, again, w) =
        create(nodes[0], &json!({"Name": "export", "ParameterObject": {"Month": "2026-12", "Customer": "42"}})).await;
    assert_eq!((again, w.is_some()), (id, true));
    // Another value, or a missing one (not the same as ""), is another combination.
    let (_, other, w) =
        create(nodes[0], &json!({"Name": "export", "ParameterObject": {"Customer": 43, "Month": "2026-12"}})).await;
    assert!(other != id && w.is_none());
    let (_, missing, w) = create(nodes[0], &json!({"Name": "export", "ParameterObject": {"Customer": 42}})).await;
    assert!(missing != id && missing != other && w.is_none());
    let (_, empty, w) =
        create(nodes[0], &json!({"Name": "export", "ParameterObject": {"Customer": 42, "Month": ""}})).await;
    assert!(empty != missing && w.is_none(), "missing is not the empty text");
    let (_, null, w) =
        create(nodes[0], &json!({"Name": "export", "ParameterObject": {"Customer": 42, "Month": null}})).await;
    assert_eq!((null, w.is_some()), (empty, true), "null is stored as the empty text");

    // StartBatchJob and an Idempotency-Key create answer the holder the same way.
    let res = nodes[nodes.len() - 1]
        .agent(
            "StartBatchJob",
            &json!({"BatchTaskInfo": {"Name": "export", "ParameterObject": {"Customer": 42, "Month": "2026-12"}}}),
        )
        .await;
    let (status, got, w) = answer(res).await;
    assert_eq!((status, got, w.as_deref()), (200, id, Some(want.as_str())));
    let res = nodes[0]
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Idempotency-Key", "unique-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("Idempotent-Replayed").is_none());
    let (status, got, w) = answer(res).await;
    assert_eq!((status, got, w.as_deref()), (200, id, Some(want.as_str())));
}

#[tokio::test]
async fn racing_creates_make_one_task_on_sqlite() {
    let app = spawn(None, "node-a").await;
    racing_creates_make_one_task(&[&app]).await;
}

#[tokio::test]
async fn racing_creates_make_one_task_across_two_postgres_nodes() {
    let Some(db) = TestPg::create("unique::racing_creates_make_one_task_across_two_postgres_nodes").await else {
        return;
    };
    let a = spawn(Some(&db.url), "node-a").await;
    let b = spawn(Some(&db.url), "node-b").await;
    racing_creates_make_one_task(&[&a, &b]).await;
}

/// A Failed task brought back while another live task holds its key: 409 naming the holder;
/// the Bulk Retry counts it as not done. Once the holder ends, the retry goes through.
async fn retry_collides(app: &TestApp) {
    let body = json!({"Name": "flaky", "ParameterObject": {"Customer": "7"}});
    let (_, first, _) = create(app, &body).await;
    let stopped = app.post_json(&format!("/api/v1/BatchTask/{first}/Stop"), &json!({})).await;
    assert_eq!(stopped.status(), 200);
    assert_eq!(app.task(first).await["State"], "Failed");
    let (_, second, w) = create(app, &body).await;
    assert!(second != first && w.is_none(), "a Failed task holds nothing");

    let path = format!("/api/v1/BatchTask/{first}/Retry");
    let res = app.post_json(&path, &json!({})).await;
    assert_error(res, 409, "SoConflictException", &format!("BatchTask id {second} is live")).await;
    let res = app
        .post_json("/api/v1/BatchTask/Bulk", &json!({"Action": "Retry", "Filter": "DefinitionName eq 'flaky'"}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"Matched": 2, "Done": 0}));
    // An update back to New is refused the same way.
    let res = app.put_json(&format!("/api/v1/BatchTask/{first}"), &json!({"State": "New"})).await;
    assert_eq!(res.status(), 409, "{}", res.text().await.unwrap());
    assert_eq!(app.task(first).await["State"], "Failed");

    let stopped = app.post_json(&format!("/api/v1/BatchTask/{second}/Stop"), &json!({})).await;
    assert_eq!(stopped.status(), 200);
    let res = app.post_json(&path, &json!({})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.task(first).await["State"], "New");

    // The definitions show their lists, in the config's order.
    let list: Value = app.get("/api/v1/Definitions").await.json().await.unwrap();
    let of = |n: &str| list.as_array().unwrap().iter().find(|d| d["Name"] == n).unwrap()["Unique"].clone();
    assert_eq!(of("export"), json!(["Month", "Customer"]));
    assert_eq!(of("Noop"), Value::Null);
}

#[tokio::test]
async fn a_retry_that_would_collide_answers_409_on_sqlite() {
    retry_collides(&spawn(None, "node-a").await).await;
}

#[tokio::test]
async fn a_retry_that_would_collide_answers_409_on_postgres() {
    let Some(db) = TestPg::create("unique::a_retry_that_would_collide_answers_409_on_postgres").await else {
        return;
    };
    retry_collides(&spawn(Some(&db.url), "node-a").await).await;
}

/// An in-process definition: the first create is claimed in its own transaction (claim-on-create)
/// and runs; while it is Started a create answers it; once it Succeeded the key is free.
#[tokio::test]
async fn a_running_task_holds_its_key_until_it_ends() {
    let defs = "[[definition]]\nname = \"nap\"\nrunner = \"sleep\"\nunique = [\"Seconds\"]\n";
    let app = spawn_runner_with(defs, |_| {}).await;
    let body = json!({"Name": "nap", "ParameterObject": {"Seconds": "1"}});
    let (_, id, w) = create(&app, &body).await;
    assert!(w.is_none());
    crate::runner::wait_state(&app, id, "Started").await;
    let (status, again, w) = create(&app, &body).await;
    assert_eq!((status, again), (200, id));
    assert!(w.unwrap().contains(&format!("task {id} of nap with the same Seconds is live")));
    let (_, other, w) = create(&app, &json!({"Name": "nap", "ParameterObject": {"Seconds": "0"}})).await;
    assert!(other != id && w.is_none());
    crate::runner::wait_state(&app, id, "Succeeded").await;
    let (_, next, w) = create(&app, &body).await;
    assert!(next != id && w.is_none(), "a Succeeded task holds nothing");
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn a_bad_unique_list_in_the_config_names_the_key() {
    let long = "x".repeat(255);
    let many: Vec<String> = (0..17).map(|i| format!("\"P{i}\"")).collect();
    for (list, why) in [
        ("[]".to_owned(), "empty list"),
        ("[\"A\", \"B\", \"A\"]".to_owned(), "\"A\" is named twice"),
        (format!("[{}]", many.join(", ")), "at most 16"),
        (format!("[\"{long}\"]"), "longer than 254"),
        ("[\" \"]".to_owned(), "blank"),
    ] {
        let toml = format!("[[definition]]\nname = \"x\"\nrunner = \"noop\"\nunique = {list}\n");
        let err = format!("{:#}", batchd::runner::settings::parse_definitions(&toml).unwrap_err());
        assert!(err.contains("definition \"x\": unique") && err.contains(why), "{list}: {err}");
    }
    let ok = "[[definition]]\nname = \"x\"\nrunner = \"noop\"\nunique = [\"B\", \"A\"]\n";
    let defs = batchd::runner::settings::parse_definitions(ok).unwrap();
    let x = defs.iter().find(|d| d.name == "x").unwrap();
    assert_eq!(x.unique.as_ref().unwrap().names(), ["B", "A"]);
}
