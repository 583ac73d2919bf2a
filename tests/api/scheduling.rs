//! Scheduling over HTTP: the definitions' state (pause, schedule, counts, parameters), pause and
//! resume across nodes, retry of a failed task, and bulk actions under the caller's rights.

use std::time::{Duration, Instant};

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::runner::{events, moves, spawn_runner, spawn_runner_with, wait_state, wait_task};

/// `ext` waits for external workers (its tasks stay New here), `hook` is an http definition whose
/// templates name parameters (and a secret that must not be shown), `tick` is scheduled.
const DEFS: &str = r#"
[[definition]]
name = "ext"
runner = "external"

[[definition]]
name = "hook"
runner = "http"
method = "POST"
url = "http://127.0.0.1:9/{Tenant}/run?key={Key}"
headers = { Authorization = "Bearer sk-secret-{Token}" }
body = '{"id": {id}, "tenant": "{Tenant}"}'
body_format = "json"

[[definition]]
name = "tick"
runner = "noop"
start_interval = "1h"

[[definition]]
name = "nightly"
runner = "noop"
cron = "0 3 * * *"
time_zone = "Europe/Oslo"
"#;

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|d| d["Name"] == name).unwrap_or_else(|| panic!("{name} in {list}"))
}

async fn definitions(app: &TestApp, as_user: Option<&(String, String)>) -> Value {
    let res = match as_user {
        Some(u) => app.as_user(u).get("/api/v1/Definitions").await,
        None => app.get("/api/v1/Definitions").await,
    };
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn post(
    app: &TestApp,
    as_user: Option<&(String, String)>,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = match as_user {
        Some(u) => app.as_user(u).request(Method::POST, path),
        None => app.request(Method::POST, path),
    };
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn definitions_show_pause_schedule_counts_and_the_parameters_only() {
    let app = spawn_runner(DEFS).await;
    let ursula = app.add_associate("ursula", Role::User).await;
    for _ in 0..2 {
        app.create(&json!({"Name": "ext"})).await;
    }
    app.as_user(&ursula).create(&json!({"Name": "ext"})).await;

    let all = definitions(&app, None).await;
    let ext = find(&all, "ext");
    assert_eq!(ext["Counts"], json!({"New": 3, "Running": 0, "Failed": 0}), "admins count every task");
    assert_eq!(
        (ext["Paused"].clone(), ext["Schedule"].clone(), ext["NextRun"].clone()),
        (json!(false), Value::Null, Value::Null)
    );
    assert_eq!(ext["Parameters"], json!([]));
    let mine = definitions(&app, Some(&ursula)).await;
    assert_eq!(find(&mine, "ext")["Counts"]["New"], 1, "a user counts its own tasks");

    let hook = find(&all, "hook");
    assert_eq!(hook["Parameters"], json!(["Tenant", "Key", "Token"]));
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("sk-secret") && !text.contains("127.0.0.1:9"), "no template is shown: {text}");

    // The schedule ran once at start-up (its first tick is due at once): next in about an hour.
    let tick = find(&all, "tick");
    assert_eq!(tick["Schedule"], "1h");
    let next = chrono::DateTime::parse_from_rfc3339(tick["NextRun"].as_str().expect("a NextRun")).unwrap();
    let ahead = next.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(ahead > chrono::Duration::minutes(55) && ahead <= chrono::Duration::hours(1), "{ahead}");

    // A cron schedule shows its expression and zone, and its next occurrence.
    let nightly = find(&all, "nightly");
    assert_eq!(nightly["Schedule"], "0 3 * * * Europe/Oslo");
    let next = chrono::DateTime::parse_from_rfc3339(nightly["NextRun"].as_str().expect("a NextRun")).unwrap();
    let oslo: chrono_tz::Tz = "Europe/Oslo".parse().unwrap();
    let want = batchd::domain::cron::Cron::parse("0 3 * * *", oslo).unwrap().next_after(chrono::Utc::now()).unwrap();
    assert_eq!(next.with_timezone(&chrono::Utc), want);
    assert_eq!(next.with_timezone(&oslo).format("%H:%M").to_string(), "03:00");
    assert_eq!(nightly["Counts"]["New"], 0, "the first tick arms the schedule, creating nothing");

    // Paused, a schedule creates nothing: no NextRun.
    assert_eq!(post(&app, None, "/api/v1/Definitions/tick/Pause", None).await.status(), 200);
    let tick = definitions(&app, None).await;
    assert_eq!(
        (find(&tick, "tick")["Paused"].clone(), find(&tick, "tick")["NextRun"].clone()),
        (json!(true), Value::Null)
    );

    // XML nests the counts and lists the parameters.
    let res = app.request(Method::GET, "/api/v1/Definitions").header("Accept", "application/xml").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let xml = res.text().await.unwrap();
    for part in [
        "<Name>ext</Name>",
        "<Counts><New>3</New><Running>0</Running><Failed>0</Failed></Counts>",
        "<Parameters><string>Tenant</string><string>Key</string><string>Token</string></Parameters>",
        "<Paused>true</Paused>",
    ] {
        assert!(xml.contains(part), "{part} missing from {xml}");
    }
}

#[tokio::test]
async fn a_paused_definition_holds_its_new_tasks_until_resumed_and_only_admins_pause() {
    let app = spawn_runner("").await;
    let ursula = app.add_associate("ursula", Role::User).await;
    let res = post(&app, Some(&ursula), "/api/v1/Definitions/Noop/Pause", None).await;
    assert_error(res, 403, "SoAccessDeniedException", "only admins may pause").await;
    let res = post(&app, None, "/api/v1/Definitions/NoSuchThing/Pause", None).await;
    assert_error(res, 404, "SoNotFoundException", "NoSuchThing").await;

    let res = post(&app, None, "/api/v1/Definitions/Noop/Pause", None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), true);
    let res = post(&app, None, "/api/v1/Definitions/Noop/Pause", None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), false, "paused already");
    assert_eq!(find(&definitions(&app, None).await, "Noop")["Paused"], true);

    // A running task of another definition is not touched; a new Noop waits.
    let id = app.create(&json!({"Name": "Noop"})).await;
    let sleep = app.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "0"}})).await;
    wait_state(&app, sleep, "Succeeded").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(app.task(id).await["State"], "New", "paused: not claimed");
    assert_eq!(find(&definitions(&app, None).await, "Noop")["Counts"]["New"], 1);

    let res = post(&app, Some(&ursula), "/api/v1/Definitions/Noop/Resume", None).await;
    assert_eq!(res.status(), 403);
    let resumed = Instant::now();
    let res = post(&app, None, "/api/v1/Definitions/Noop/Resume", None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), true);
    wait_task(&app, id, Duration::from_secs(5), |t| t["State"] == "Succeeded").await;
    assert!(resumed.elapsed() < Duration::from_secs(2), "a resume wakes the claim loop: {:?}", resumed.elapsed());
}

#[tokio::test]
async fn a_failed_task_retried_runs_again_keeping_its_count_and_events() {
    let dir = tempfile::tempdir().unwrap();
    // Fails the first time, succeeds the second.
    let marker = dir.path().join("ran-once");
    let script = crate::runner::sh(
        dir.path(),
        &format!(
            "if [ -e {m} ]; then echo 'result: fine'; else touch {m}; echo 'result: broke'; exit 3; fi\n",
            m = marker.display()
        ),
    );
    let app = spawn_runner(&crate::runner::command_def("flaky", &script, "")).await;
    let ursula = app.add_associate("ursula", Role::User).await;
    let otto = app.add_associate("otto", Role::User).await;
    let id = app.as_user(&ursula).create(&json!({"Name": "flaky"})).await;
    let failed = wait_state(&app, id, "Failed").await;
    assert_eq!(failed["StartCount"], 1);

    let path = format!("/api/v1/BatchTask/{id}/Retry");
    assert_error(post(&app, Some(&otto), &path, None).await, 404, "SoNotFoundException", &id.to_string()).await;
    let etag_mismatch =
        app.as_user(&ursula).request(Method::POST, &path).header("If-Match", "\"0-0\"").send().await.unwrap();
    assert_eq!(etag_mismatch.status(), 412);
    let res = post(&app, Some(&ursula), &path, None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("ETag").is_some());
    let answered: Value = res.json().await.unwrap();
    assert_eq!((answered["Id"].clone(), answered["State"].clone()), (json!(id), json!("New")));
    let done = wait_state(&app, id, "Succeeded").await;
    assert_eq!(done["StartCount"], 2, "StartCount keeps counting");
    assert_eq!(done["Result"], "fine");
    let ev = events(&app, id).await;
    assert_eq!(
        moves(&ev),
        [
            "-->New",
            "New->Aquired",
            "Aquired->Started",
            "Started->Failed",
            "Failed->New",
            "New->Aquired",
            "Aquired->Started",
            "Started->Succeeded"
        ]
    );
    assert_eq!(ev[4]["Reason"], "retried by ursula");

    // Not Failed: 409, in XML too.
    let res = post(&app, None, &path, None).await;
    assert_error(res, 409, "SoConflictException", "only a Failed task can be retried").await;
    let res = app.request(Method::POST, &path).header("Accept", "application/xml").send().await.unwrap();
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("Succeeded"));
    assert_eq!(post(&app, None, "/api/v1/BatchTask/99999/Retry", None).await.status(), 404);
}

#[tokio::test]
async fn bulk_actions_take_a_filter_the_callers_rights_and_a_bound() {
    let app = spawn_runner(DEFS).await;
    let ursula = app.add_associate("ursula", Role::User).await;
    let mut admins = Vec::new();
    for _ in 0..3 {
        admins.push(app.create(&json!({"Name": "ext"})).await);
    }
    let mut hers = Vec::new();
    for _ in 0..2 {
        hers.push(app.as_user(&ursula).create(&json!({"Name": "ext"})).await);
    }
    let bulk = |user: Option<(String, String)>, body: Value| {
        let app = &app;
        async move { post(app, user.as_ref(), "/api/v1/BatchTask/Bulk", Some(&body)).await }
    };
    let ok = |res: reqwest::Response| async move {
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };

    // A dry run counts; a user's filter sees only its own tasks.
    let by_name = "DefinitionName eq 'ext'";
    let r = ok(bulk(Some(ursula.clone()), json!({"Action": "Stop", "Filter": by_name, "DryRun": true})).await).await;
    assert_eq!(r, json!({"Matched": 2, "Done": 0}));
    assert_eq!(app.task(hers[0]).await["State"], "New", "a dry run changes nothing");
    let r = ok(bulk(Some(ursula.clone()), json!({"Action": "stop", "Filter": by_name})).await).await;
    assert_eq!(r, json!({"Matched": 2, "Done": 2}));
    for id in &hers {
        assert_eq!(app.task(*id).await["State"], "Failed");
    }
    for id in &admins {
        assert_eq!(app.task(*id).await["State"], "New", "another's tasks are untouched");
    }

    // Retry what failed, then stop everything: a task the action does not apply to is skipped.
    let r = ok(bulk(None, json!({"Action": "Retry", "Filter": "State eq 'Failed'"})).await).await;
    assert_eq!(r, json!({"Matched": 2, "Done": 2}));
    let stopped = app.post_json(&format!("/api/v1/BatchTask/{}/Stop", admins[0]), &json!({})).await;
    assert_eq!(stopped.status(), 200);
    let r = ok(bulk(None, json!({"Action": "Retry", "Filter": by_name})).await).await;
    assert_eq!(r, json!({"Matched": 5, "Done": 1}), "only the Failed one is retried");
    // XML in, XML out.
    let res = app
        .request(Method::POST, "/api/v1/BatchTask/Bulk")
        .header("Content-Type", "application/xml")
        .header("Accept", "application/xml")
        .body("<BulkAction><Action>Retry</Action><Filter>DefinitionName eq 'ext'</Filter><DryRun>true</DryRun></BulkAction>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let xml = res.text().await.unwrap();
    assert!(xml.contains("<Matched>5</Matched>") && xml.contains("<Done>0</Done>"), "{xml}");

    let r = ok(bulk(None, json!({"Action": "Delete", "Filter": format!("{by_name} and State eq 'New'")})).await).await;
    assert_eq!(r, json!({"Matched": 5, "Done": 5}));
    assert_eq!(app.get(&format!("/api/v1/BatchTask/{}", admins[1])).await.status(), 404);

    // Bad input names the field.
    let res = bulk(None, json!({"Action": "Explode", "Filter": by_name})).await;
    assert_error(res, 400, "ArgumentException", "Action").await;
    let res = bulk(None, json!({"Action": "Stop"})).await;
    assert_error(res, 400, "ArgumentException", "Filter").await;
    let res = bulk(None, json!({"Action": "Stop", "Filter": "State eq"})).await;
    assert_eq!(res.status(), 400);
    let res = bulk(None, json!({"Action": "Stop", "Filter": by_name, "DryRun": 3})).await;
    assert_error(res, 400, "ArgumentException", "DryRun").await;

    // More than the bound matches: refused before anything is done.
    let t0 = chrono::Utc::now();
    for _ in 0..=batchd::service::BULK_MAX {
        app.store
            .create_task(batchd::domain::NewTask { name: "many".into(), associate_id: 1, ..Default::default() }, t0)
            .await
            .unwrap();
    }
    let res = bulk(None, json!({"Action": "Delete", "Filter": "DefinitionName eq 'many'"})).await;
    assert_error(res, 400, "ArgumentException", "1000").await;
    let r = ok(bulk(
        None,
        json!({"Action": "Delete", "Filter": "DefinitionName eq 'many' and batchTaskId lt 0", "DryRun": true}),
    )
    .await)
    .await;
    assert_eq!(r["Matched"], 0);
}

/// Pausing on one node stops the claims of another at once (the pause is in the database), and
/// resuming there wakes the other's claim loop through the change feed, its polls slowed to 5 s.
#[tokio::test]
async fn a_pause_on_one_node_stops_claims_on_another_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("scheduling::a_pause_on_one_node_stops_claims_on_another").await else {
        return;
    };
    let api = spawn_runner_with("", crate::pg::feed_only_node(&db.url, "api-only", false)).await;
    let worker = spawn_runner_with("", crate::pg::feed_only_node(&db.url, "worker", true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening

    let first = api.create(&json!({"Name": "Noop"})).await;
    wait_task(&api, first, Duration::from_secs(3), |t| t["State"] == "Succeeded").await;
    assert_eq!(post(&api, None, "/api/v1/Definitions/Noop/Pause", None).await.status(), 200);
    assert_eq!(find(&definitions(&worker, None).await, "Noop")["Paused"], true, "the other node sees it");
    let held = api.create(&json!({"Name": "Noop"})).await;
    let direct = worker.create(&json!({"Name": "Noop"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(api.task(held).await["State"], "New", "created on the API node: not claimed by the worker");
    assert_eq!(api.task(direct).await["State"], "New", "created on the worker: not claimed in its create");

    let resumed = Instant::now();
    assert_eq!(post(&api, None, "/api/v1/Definitions/Noop/Resume", None).await.status(), 200);
    for id in [held, direct] {
        wait_task(&api, id, Duration::from_secs(3), |t| t["State"] == "Succeeded").await;
    }
    assert!(resumed.elapsed() < Duration::from_secs(2), "the feed woke the worker: {:?}", resumed.elapsed());
}

/// Racing clients with one `Idempotency-Key`, spread over `apps` (nodes): one task, every answer
/// its id; a different body under the key is a 422; the key is the caller's; the agent too.
async fn idempotent_creates(apps: &[&TestApp]) {
    let body = json!({"Name": "ext", "Description": "once"});
    let mut joins = Vec::new();
    for i in 0..12 {
        let app = apps[i % apps.len()];
        let (client, url, user) = (app.client.clone(), app.url("/api/v1/BatchTask"), app.user.clone());
        let body = body.clone();
        joins.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .basic_auth(&user.0, Some(&user.1))
                .header("Idempotency-Key", "order-4711")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let replayed = res.headers().get("Idempotent-Replayed").is_some();
            (res.json::<i64>().await.unwrap(), replayed)
        }));
    }
    let mut answers = Vec::new();
    for j in joins {
        answers.push(j.await.unwrap());
    }
    let id = answers[0].0;
    assert!(answers.iter().all(|(i, _)| *i == id), "{answers:?}");
    assert_eq!(
        answers.iter().filter(|(_, replayed)| !replayed).count(),
        1,
        "one created, the rest replayed: {answers:?}"
    );
    let app = apps[0];
    let list = app.get("/api/v1/BatchTask?$filter=DefinitionName%20eq%20'ext'").await.json::<Value>().await.unwrap();
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");

    let keyed = |body: Value, key: &str| {
        app.request(Method::POST, "/api/v1/BatchTask").header("Idempotency-Key", key).json(&body).send()
    };
    let res = keyed(json!({"Name": "ext", "Description": "another"}), "order-4711").await.unwrap();
    assert_error(res, 422, "ArgumentException", "Idempotency-Key").await;
    let res = keyed(body.clone(), &"k".repeat(256)).await.unwrap();
    assert_error(res, 400, "ArgumentException", "Idempotency-Key").await;
    // Another caller's key of the same name is its own.
    let ursula = app.add_associate("ursula", Role::User).await;
    let res = app
        .as_user(&ursula)
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Idempotency-Key", "order-4711")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(res.json::<i64>().await.unwrap(), id);
    // StartBatchJob honours the header as well.
    let start = || {
        app.request(Method::POST, "/api/v1/Agents/Batch/StartBatchJob")
            .header("Idempotency-Key", "agent-1")
            .json(&json!({"BatchTaskInfo": {"Name": "ext"}}))
            .send()
    };
    let a = start().await.unwrap().json::<i64>().await.unwrap();
    let res = start().await.unwrap();
    assert_eq!(res.headers().get("Idempotent-Replayed").unwrap(), "true");
    assert_eq!(res.json::<i64>().await.unwrap(), a);
    // Without a key every create is new.
    assert_ne!(app.create(&body).await, app.create(&body).await);
}

#[tokio::test]
async fn an_idempotency_key_makes_racing_creates_one_task() {
    let app = spawn_runner(DEFS).await;
    idempotent_creates(&[&app]).await;
}

#[tokio::test]
async fn an_idempotency_key_makes_racing_creates_on_two_nodes_one_task_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("scheduling::an_idempotency_key_on_two_nodes").await else { return };
    let a = spawn_runner_with(DEFS, crate::pg::feed_only_node(&db.url, "node-a", true)).await;
    let b = spawn_runner_with(DEFS, crate::pg::feed_only_node(&db.url, "node-b", true)).await;
    idempotent_creates(&[&a, &b]).await;
}

/// External workers honour the pause too: `Acquire` hands out nothing of a paused definition,
/// and a worker waiting on it gets the task as soon as it is resumed.
#[tokio::test]
async fn an_external_worker_acquires_nothing_of_a_paused_definition_until_resumed() {
    let app = spawn_runner(DEFS).await;
    let worker = app.add_associate("worker1", Role::Worker).await;
    assert_eq!(post(&app, None, "/api/v1/Definitions/ext/Pause", None).await.status(), 200);
    let id = app.create(&json!({"Name": "ext"})).await;
    let res = app
        .as_user(&worker)
        .send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": ["ext"], "Wait": 0}))
        .await;
    assert_eq!(res.status(), 204, "paused: nothing to acquire");

    let (client, url) = (app.client.clone(), app.url("/api/v1/BatchTask/Acquire"));
    let waiter = tokio::spawn(async move {
        let res = client
            .post(url)
            .basic_auth("worker1", Some("worker1-password"))
            .json(&json!({"Names": ["ext"], "Wait": 20}))
            .send()
            .await
            .unwrap();
        (res.json::<Value>().await.unwrap(), Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "still waiting while paused");
    let resumed = Instant::now();
    assert_eq!(post(&app, None, "/api/v1/Definitions/ext/Resume", None).await.status(), 200);
    let (body, at) = waiter.await.unwrap();
    assert_eq!(body["Task"]["Id"], id, "{body}");
    assert!(at - resumed < Duration::from_secs(2), "the resume woke the waiting worker: {:?}", at - resumed);
}

#[test]
fn a_cron_definition_is_checked_when_the_config_is_read() {
    use batchd::runner::settings::parse_definitions;
    let def = |extra: &str| parse_definitions(&format!("[[definition]]\nname = \"n\"\nrunner = \"noop\"\n{extra}\n"));
    let ok = def("cron = \"*/5 * * * mon-fri\"").unwrap();
    let n = ok.iter().find(|d| d.name == "n").unwrap();
    assert_eq!(n.schedule().unwrap().describe(), "*/5 * * * mon-fri UTC");
    assert_eq!(n.catch_up, batchd::domain::run::CatchUp::One, "by default");
    let none = def("cron = \"30 0 3 * * *\"\ncatch_up = \"none\"").unwrap();
    assert_eq!(none.iter().find(|d| d.name == "n").unwrap().catch_up, batchd::domain::run::CatchUp::None);
    for (extra, says) in [
        ("cron = \"0 3 * * *\"\ncatch_up = \"all\"", "catch_up = \"all\": use \"one\" or \"none\""),
        ("catch_up = \"none\"", "catch_up is about a schedule"),
        ("cron = \"0 0 3 * * * 2027\"", "7 fields"),
        ("cron = \"0 3 * * *\"\nstart_interval = \"1h\"", "not both"),
        ("time_zone = \"Europe/Oslo\"", "cron, which is missing"),
        ("cron = \"0 3 * *\"", "4 fields"),
        ("cron = \"0 3 * * *\"\ntime_zone = \"Mars/Olympus\"", "not a known time zone"),
    ] {
        let e = format!("{:#}", def(extra).unwrap_err());
        assert!(e.contains(says), "{extra}: {e}");
    }
}
