//! External workers: Acquire (long-polling), Heartbeat, finish under `X-Lease-Token`, lease
//! expiry and rescue, the fenced late write of a paused worker, and the example worker script.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp, assert_error};
use crate::pg::TestPg;
use crate::runner::{events, moves, spawn_runner, spawn_runner_with, stop, wait_state, wait_task};

const EXT: &str = "[[definition]]\nname = \"ext\"\nrunner = \"external\"\nrestarts = 1\nbackoff = \"100ms\"\nrescues = 2\n\n\
                   [[definition]]\nname = \"ext0\"\nrunner = \"external\"\n";

async fn acquire(w: &Client<'_>, names: &[&str], wait: f64) -> reqwest::Response {
    w.send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": names, "Wait": wait})).await
}

async fn heartbeat(w: &Client<'_>, id: i64, token: &str, body: Value) -> reqwest::Response {
    w.request(Method::POST, &format!("/api/v1/BatchTask/{id}/Heartbeat"))
        .header("X-Lease-Token", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn finish(w: &Client<'_>, id: i64, token: &str, body: Value) -> reqwest::Response {
    w.request(Method::PUT, &format!("/api/v1/BatchTask/{id}"))
        .header("X-Lease-Token", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_worker_acquires_heartbeats_and_finishes_a_task() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    assert_eq!(acquire(&w, &["ext"], 0.0).await.status(), 204, "nothing to do yet");

    let id = app.create(&json!({"Name": "ext", "ParameterObject": {"n": "1"}})).await;
    let res = acquire(&w, &["other", "ext"], 0.0).await;
    assert_eq!(res.status(), 200);
    let header_token = res.headers().get("x-lease-token").unwrap().to_str().unwrap().to_owned();
    let got: Value = res.json().await.unwrap();
    let token = got["LeaseToken"].as_str().unwrap().to_owned();
    assert_eq!(token, header_token);
    assert_eq!(got["Task"]["Id"], id);
    assert_eq!(got["Task"]["State"], "Aquired");
    assert_eq!(got["Task"]["ParameterObject"]["n"], "1");
    assert_eq!(got["Attempt"], 1);
    assert_eq!(got["HeartbeatSeconds"], 0.5);
    assert_eq!(got["TimeoutSeconds"], Value::Null);
    assert_eq!(app.task(id).await["State"], "Aquired");

    // The first heartbeat starts it.
    let res = heartbeat(&w, id, &token, json!({"ProgressPercent": 30, "ProgressDescription": "a third"})).await;
    assert_eq!(res.status(), 200);
    let hb: Value = res.json().await.unwrap();
    assert_eq!(hb["StopRequested"], false);
    assert_eq!(hb["State"], "Started");
    assert!(hb["LeaseExpires"].is_string());
    let t = app.task(id).await;
    assert_eq!((t["State"].as_str(), t["StartCount"].as_i64()), (Some("Started"), Some(1)));
    assert_eq!((t["ProgressPercent"].as_i64(), t["ProgressDescription"].as_str()), (Some(30), Some("a third")));

    let res = finish(&w, id, &token, json!({"State": "Succeeded", "Result": "ok", "Response": "42 rows"})).await;
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    assert_eq!((t["State"].as_str(), t["Response"].as_str()), (Some("Succeeded"), Some("42 rows")));
    let ev = events(&app, id).await;
    assert_eq!(moves(&ev), ["-->New", "New->Aquired", "Aquired->Started", "Started->Succeeded"]);
    assert_eq!(ev[1]["Associate"], "worker1");
    assert!(ev[3]["Reason"].as_str().unwrap().contains("worker1"), "{ev:?}");

    // A token that is not the lease: 409, nothing changes.
    let res = finish(&w, id, &token, json!({"State": "Failed"})).await;
    assert_error(res, 409, "SoConflictException", "X-Lease-Token").await;
    let res = heartbeat(&w, id, "not-a-token", json!({})).await;
    assert_eq!(res.status(), 409);
    assert_eq!(app.task(id).await["State"], "Succeeded");
}

#[tokio::test]
async fn acquire_long_polls_and_only_workers_and_admins_may_use_it() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("worker1", Role::Worker).await;
    let user = app.add_associate("plain", Role::User).await;
    let u = app.as_user(&user);
    assert_error(acquire(&u, &["ext"], 0.0).await, 403, "SoAccessDeniedException", "worker").await;
    let res =
        u.request(Method::POST, "/api/v1/BatchTask/1/Heartbeat").header("X-Lease-Token", "x").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert_error(acquire(&app.as_user(&creds), &["Noop"], 0.0).await, 400, "ArgumentException", "Noop").await;
    let res = app.as_user(&creds).send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({})).await;
    assert_error(res, 400, "ArgumentException", "Names").await;
    let res = app
        .as_user(&creds)
        .send_json(Method::POST, "/api/v1/batchtask/acquire", &json!({"Names": "ext", "Wait": -1}))
        .await;
    assert_error(res, 400, "ArgumentException", "Wait").await;
    assert_eq!(app.get("/api/v1/BatchTask/Acquire").await.status(), 400, "not an id or a state");

    // A waiting Acquire gets a task created while it waits.
    let base = app.base.clone();
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let res = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!("{base}/api/v1/BatchTask/Acquire"))
            .basic_auth("worker1", Some("worker1-password"))
            .json(&json!({"Names": ["ext"], "Wait": 20}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = app.create(&json!({"Name": "ext"})).await;
    let (status, body, took) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["Task"]["Id"], id);
    assert!(took < Duration::from_secs(15), "{took:?}");
    // A task with no definition at all waits for external workers too.
    let id = app.create(&json!({"Name": "undefined-name"})).await;
    let res = acquire(&app.as_user(&creds), &["undefined-name"], 0.0).await;
    assert_eq!(res.json::<Value>().await.unwrap()["Task"]["Id"], id);
}

#[tokio::test]
async fn heartbeats_are_coalesced_to_one_write_per_second() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    let id = app.create(&json!({"Name": "ext"})).await;
    let got: Value = acquire(&w, &["ext"], 0.0).await.json().await.unwrap();
    let token = got["LeaseToken"].as_str().unwrap().to_owned();
    let etag = |res: &reqwest::Response| res.headers().get("etag").unwrap().to_str().unwrap().to_owned();
    let version = |tag: &str| tag.trim_matches('"').split('-').nth(1).unwrap().parse::<i64>().unwrap();
    let before = version(&etag(&app.get(&format!("/api/v1/BatchTask/{id}")).await));
    let started = Instant::now();
    for p in 1..=10 {
        let res = heartbeat(&w, id, &token, json!({"ProgressPercent": p * 10})).await;
        assert_eq!(res.status(), 200);
    }
    let burst = started.elapsed();
    let after = version(&etag(&app.get(&format!("/api/v1/BatchTask/{id}")).await));
    // The start, the first heartbeat, then at most one write per second (a flush may land just
    // before the read below).
    let allowed = 3 + burst.as_secs() as i64;
    assert!(after - before <= allowed, "{} writes for 10 heartbeats in {burst:?}", after - before);
    // The last progress is not lost: the flush writes it within about a second.
    wait_task(&app, id, Duration::from_secs(10), |t| t["ProgressPercent"] == 100).await;
}

#[tokio::test]
async fn a_stop_reaches_the_worker_through_its_heartbeat() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    let id = app.create(&json!({"Name": "ext"})).await;
    let token =
        acquire(&w, &["ext"], 0.0).await.json::<Value>().await.unwrap()["LeaseToken"].as_str().unwrap().to_owned();
    heartbeat(&w, id, &token, json!({})).await;
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), true);
    assert_eq!(app.task(id).await["State"], "Started", "told, not yet stopped");
    let hb: Value = heartbeat(&w, id, &token, json!({})).await.json().await.unwrap();
    assert_eq!(hb["StopRequested"], true);
    assert_eq!(hb["StopRequestedBy"], "admin");
    let res = finish(&w, id, &token, json!({"State": "Failed", "Result": "stopped"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.task(id).await["State"], "Failed");

    // A worker that ignores the stop is failed for it after the grace period.
    let id = app.create(&json!({"Name": "ext0"})).await;
    let token =
        acquire(&w, &["ext0"], 0.0).await.json::<Value>().await.unwrap()["LeaseToken"].as_str().unwrap().to_owned();
    heartbeat(&w, id, &token, json!({})).await;
    stop(&app, id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Keep the lease alive: only the ignored stop may end the task.
        let res = heartbeat(&w, id, &token, json!({})).await;
        if res.status() == 409 {
            break;
        }
        assert!(Instant::now() < deadline, "the ignored stop was never enforced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = app.task(id).await;
    assert_eq!((t["State"].as_str(), t["Result"].as_str()), (Some("Failed"), Some("Cancelled by admin")));
}

#[tokio::test]
async fn a_vanished_workers_task_goes_back_to_new_then_fails_after_the_rescues_limit_on_sqlite() {
    vanished_worker(spawn_runner(EXT).await).await;
}

#[tokio::test]
async fn a_vanished_workers_task_goes_back_to_new_then_fails_after_the_rescues_limit_on_postgres() {
    let Some(db) = TestPg::create("runner_workers::a_vanished_workers_task_on_postgres").await else { return };
    let url = db.url.clone();
    vanished_worker(spawn_runner_with(EXT, |c| c.database = url).await).await;
}

async fn vanished_worker(app: TestApp) {
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    let id = app.create(&json!({"Name": "ext"})).await;
    let token =
        acquire(&w, &["ext"], 0.0).await.json::<Value>().await.unwrap()["LeaseToken"].as_str().unwrap().to_owned();
    heartbeat(&w, id, &token, json!({})).await;
    let silent = Instant::now();
    // No more heartbeats: the worker is gone. The 2 s lease runs out and the rescuer puts the
    // task back for another attempt; that is not a failure of the task (rescues = 2).
    wait_task(&app, id, Duration::from_secs(20), |t| t["State"] == "New").await;
    let took = silent.elapsed();
    assert!(took >= Duration::from_secs(2), "rescued before the lease ran out: {took:?}");
    assert!(took < Duration::from_secs(8), "rescue is due within 2 x lease; took {took:?}");
    assert_eq!(heartbeat(&w, id, &token, json!({})).await.status(), 409);
    let ev = events(&app, id).await;
    let reason = ev.last().unwrap()["Reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("Lease expired") && reason.contains("crash 1 of 2"), "{ev:?}");

    // The second attempt (it knows it is one), abandoned too: the second crash in a row fails it,
    // saying so, and its own restart was never spent.
    let got: Value = acquire(&w, &["ext"], 10.0).await.json().await.unwrap();
    assert_eq!(got["Attempt"], 2);
    heartbeat(&w, id, got["LeaseToken"].as_str().unwrap(), json!({})).await;
    wait_state(&app, id, "Failed").await;
    let task = app.task(id).await;
    assert!(task["Result"].as_str().unwrap().starts_with("Rescued 2 times in a row"), "{task}");
    assert_eq!(task["StartCount"], 2);
}

#[tokio::test]
async fn a_failure_after_a_rescue_still_has_its_restart() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&creds);
    let id = app.create(&json!({"Name": "ext"})).await;
    let got: Value = acquire(&w, &["ext"], 0.0).await.json().await.unwrap();
    heartbeat(&w, id, got["LeaseToken"].as_str().unwrap(), json!({})).await;
    wait_task(&app, id, Duration::from_secs(20), |t| t["State"] == "New").await;
    // Attempt 2 fails on its own: restarts = 1 still allows attempt 3.
    let got: Value = acquire(&w, &["ext"], 10.0).await.json().await.unwrap();
    let token = got["LeaseToken"].as_str().unwrap().to_owned();
    heartbeat(&w, id, &token, json!({})).await;
    let failed = finish(&w, id, &token, json!({"State": "Failed", "Result": "exit 3"})).await;
    assert_eq!(failed.status(), 200, "{}", failed.text().await.unwrap());
    assert_eq!(app.task(id).await["State"], "New", "retried: the crash did not use the restart");
    let got: Value = acquire(&w, &["ext"], 10.0).await.json().await.unwrap();
    assert_eq!(got["Attempt"], 3, "{got}");
}

fn python() -> &'static str {
    let ok = Command::new("python3").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(ok, "python3 is needed to run examples/worker.py");
    "python3"
}

fn start_worker(app: &TestApp, creds: &(String, String), extra: &[&str], names: &[&str]) -> Child {
    Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/worker.py"))
        .args(["--url", &app.base, "--user", &creds.0, "--password", &creds.1, "--wait", "5"])
        .args(extra)
        .args(names)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the worker did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_example_worker_runs_a_task() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("pyworker", Role::Worker).await;
    let mut worker = start_worker(&app, &creds, &["--once"], &["ext"]);
    let id = app.create(&json!({"Name": "ext", "ParameterObject": {"Seconds": "1.2"}})).await;
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["Response"], format!("worked 1.2s on ext {id}"));
    assert_eq!(tokio::task::spawn_blocking(move || wait_exit(&mut worker, Duration::from_secs(20))).await.unwrap(), 0);
    let ev = events(&app, id).await;
    assert_eq!(moves(&ev), ["-->New", "New->Aquired", "Aquired->Started", "Started->Succeeded"]);
}

/// The zombie case: a worker paused past its lease comes back and tries to write. Its write is
/// refused and the task shows exactly one finish, the one of the worker that took over.
#[tokio::test]
async fn a_paused_worker_that_resumes_after_losing_its_lease_cannot_write() {
    let app = spawn_runner(EXT).await;
    let creds = app.add_associate("pyworker", Role::Worker).await;
    let mut paused = start_worker(&app, &creds, &["--once", "--heartbeat", "0.3"], &["ext"]);
    let id = app.create(&json!({"Name": "ext", "ParameterObject": {"Seconds": "2"}})).await;
    wait_state(&app, id, "Started").await;
    let pid = paused.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());

    // Lease (2 s) runs out; the rescuer gives the task back (restarts = 1) and another worker
    // takes it and finishes it.
    wait_task(&app, id, Duration::from_secs(20), |t| t["State"] == "New").await;
    let w = app.as_user(&creds);
    let got: Value = acquire(&w, &["ext"], 10.0).await.json().await.unwrap();
    assert_eq!(got["Task"]["Id"], id);
    let token = got["LeaseToken"].as_str().unwrap().to_owned();
    let res = finish(&w, id, &token, json!({"State": "Succeeded", "Response": "second worker"})).await;
    assert_eq!(res.status(), 200);

    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut paused, Duration::from_secs(30))).await.unwrap();
    assert_eq!(code, 3, "the resumed worker's write must be refused (exit 3 = lease lost)");

    let t = app.task(id).await;
    assert_eq!((t["State"].as_str(), t["Response"].as_str()), (Some("Succeeded"), Some("second worker")));
    let ev = events(&app, id).await;
    let finishes = ev.iter().filter(|e| e["To"] == "Succeeded" || e["To"] == "Failed").count();
    assert_eq!(finishes, 1, "{ev:?}");
    assert_eq!(moves(&ev).iter().filter(|m| *m == "New->Aquired").count(), 2);
}
