//! The runner: each runner kind end to end, timeouts, restarts, stop in every state and
//! for every cancellation behaviour, events, retention, concurrency, schedules.

use std::path::Path;
use std::time::{Duration, Instant};

use batchd::config::Config;
use batchd::runner::settings::parse_definitions;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Short lease, heartbeat and grace so the tests are quick; generous deadlines keep them reliable.
pub fn fast(config: &mut Config) {
    config.runner.lease = Duration::from_secs(2);
    config.runner.heartbeat = Duration::from_millis(500);
    config.runner.grace = Duration::from_secs(1);
    config.runner.poll = Duration::from_millis(100);
    config.runner.stop_poll = Duration::from_millis(100);
}

/// A server running the given `[[definition]]` tables.
pub async fn spawn_runner(definitions: &str) -> TestApp {
    spawn_runner_with(definitions, |_| {}).await
}

pub async fn spawn_runner_with(definitions: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let defs = parse_definitions(definitions).expect("test definitions parse");
    TestApp::spawn_with(move |c| {
        fast(c);
        c.definitions = defs;
        tweak(c);
    })
    .await
}

/// Polls the task until `ok` holds, or panics after `limit` with the last state seen.
pub async fn wait_task(app: &TestApp, id: i64, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let t = app.task(id).await;
        if ok(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not get there in {limit:?}; last seen: {t}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn wait_state(app: &TestApp, id: i64, state: &str) -> Value {
    wait_task(app, id, Duration::from_secs(20), |t| t["State"] == state).await
}

pub async fn events(app: &TestApp, id: i64) -> Vec<Value> {
    let res = app.get(&format!("/api/v1/BatchTask/{id}/Events")).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The event log as `from->to` strings (`-` for none).
pub fn moves(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{}->{}", e["From"].as_str().unwrap_or("-"), e["To"].as_str().unwrap_or("-")))
        .collect()
}

pub async fn stop(app: &TestApp, id: i64) -> reqwest::Response {
    app.request(Method::POST, &format!("/api/v1/BatchTask/{id}/Stop")).send().await.unwrap()
}

pub fn sh(dir: &Path, script: &str) -> String {
    let path = dir.join(format!("script-{}.sh", rand_tag()));
    std::fs::write(&path, script).unwrap();
    path.display().to_string()
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1000 + u64::from(std::process::id() % 1000)
}

/// A `[[definition]]` running `script` with /bin/sh.
pub fn command_def(name: &str, script_path: &str, extra: &str) -> String {
    format!(
        "[[definition]]\nname = \"{name}\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{script_path}\"]\n{extra}\n"
    )
}

#[tokio::test]
async fn noop_goes_through_every_state_and_logs_each_move() {
    let app = spawn_runner("").await;
    let id = app.create(&json!({"Name": "Noop", "Description": "nothing"})).await;
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["StartCount"], 1);
    assert!(t["LastStarted"].is_string());
    assert_eq!(t["Result"], "ok");
    assert_eq!(t["ProgressPercent"], 100);
    let ev = events(&app, id).await;
    assert_eq!(moves(&ev), ["-->New", "New->Aquired", "Aquired->Started", "Started->Succeeded"]);
    assert_eq!(ev[0]["Associate"], "admin");
    assert!(ev[1]["Node"].is_string() && ev[1]["Node"] == ev[3]["Node"], "{ev:?}");
    for e in &ev {
        assert!(e["Time"].as_str().unwrap().ends_with("+00:00"), "{e}");
    }
}

#[tokio::test]
async fn definitions_are_mirrored_and_give_new_tasks_their_cancellation() {
    let app = spawn_runner(
        "[[definition]]\nname = \"careful\"\nrunner = \"external\"\ncancellation = \"CancelWithWarning\"\nrestarts = 2\ntimeout = \"1m\"",
    )
    .await;
    let id = app.create(&json!({"Name": "careful"})).await;
    assert_eq!(app.task(id).await["CancellationBehaviour"], "CancelWithWarning");
    let id = app.create(&json!({"Name": "careful", "CancellationBehaviour": "CanCancel"})).await;
    assert_eq!(app.task(id).await["CancellationBehaviour"], "CanCancel", "the body wins");
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let row: (String, i64, i64, i64) = conn
        .query_row(
            "SELECT runner, timeout, autorestartcount, cancellation_behaviour FROM batchtaskdefinition WHERE name = 'careful'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, ("external".into(), 60, 2, 1));
    let builtins: i64 = conn
        .query_row("SELECT COUNT(*) FROM batchtaskdefinition WHERE name IN ('Noop', 'Sleep')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(builtins, 2);
}

#[tokio::test]
async fn sleep_reports_progress_each_second_and_stops_when_told() {
    let app = spawn_runner("").await;
    let id = app.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "30"}})).await;
    let t = wait_task(&app, id, Duration::from_secs(10), |t| t["ProgressPercent"].as_i64().unwrap_or(0) > 0).await;
    assert_eq!(t["State"], "Started");
    assert!(t["ProgressDescription"].as_str().unwrap().contains("of 30 s"), "{t}");
    let asked = Instant::now();
    let res = stop(&app, id).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), true);
    let t = wait_state(&app, id, "Failed").await;
    // Sleep wakes at once; well inside the 1 s grace even on a loaded machine.
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(t["Result"], "Cancelled by admin");
    let ev = events(&app, id).await;
    assert_eq!(moves(&ev).last().unwrap(), "Started->Failed");
    assert!(ev.iter().any(|e| e["Reason"] == "stop requested by admin" && e["Associate"] == "admin"), "{ev:?}");

    let bad = app.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "soon"}})).await;
    let t = wait_state(&app, bad, "Failed").await;
    assert!(t["Result"].as_str().unwrap().contains("Seconds"), "{t}");
}

#[tokio::test]
async fn a_command_gets_parameters_reports_progress_and_leaves_response_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let script = sh(
        dir.path(),
        r#"echo "progress: 40 half way"
sleep 1.5
read -r line
echo "file: /tmp/report-$BATCHD_TASK_ID.csv"
echo "got $line" >&2
echo "day=$BATCHD_PARAM_REPORT_DAY id=$BATCHD_TASK_ID attempt=$BATCHD_ATTEMPT stdin=$line"
"#,
    );
    let app = spawn_runner(&command_def("report", &script, "")).await;
    let id =
        app.create(&json!({"Name": "report", "ParameterObject": {"Report day": "mon"}, "Request": "hello\n"})).await;
    let t = wait_task(&app, id, Duration::from_secs(10), |t| t["ProgressPercent"] == 40).await;
    assert_eq!(t["State"], "Started");
    assert_eq!(t["ProgressDescription"], "half way");
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["Response"], format!("day=mon id={id} attempt=1 stdin=hello"));
    assert_eq!(t["FileName"], format!("/tmp/report-{id}.csv"));
    assert_eq!(t["Result"], "exit status 0");
}

/// batchd turns transparent huge pages off for itself (src/main.rs); the switch is inherited
/// across exec, and a program it runs gets them back.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_command_gets_transparent_huge_pages_back_when_batchd_turned_them_off() {
    let dir = tempfile::tempdir().unwrap();
    let script = sh(dir.path(), "grep THP_enabled /proc/self/status | tr -d ' \\t'\n");
    // As main does for the server (this test process stands in for it).
    // SAFETY: sets a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return; // a kernel without the switch
    }
    batchd::runner::THP_OFF_FOR_BATCHD_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
    let app = spawn_runner(&command_def("thp", &script, "")).await;
    let id = app.create(&json!({"Name": "thp"})).await;
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["Response"], "THP_enabled:1");
}

#[tokio::test]
async fn a_failing_command_ends_failed_with_its_status_and_stderr_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let script = sh(dir.path(), "echo partial\necho 'disk on fire' >&2\nexit 3\n");
    let manual = sh(dir.path(), "echo 'state: SucceededManualCleanup'\necho 'result: 12 rows'\necho done\n");
    let defs = command_def("bad", &script, "") + &command_def("manual", &manual, "");
    let app = spawn_runner(&defs).await;
    let id = app.create(&json!({"Name": "bad"})).await;
    let t = wait_state(&app, id, "Failed").await;
    assert_eq!(t["Result"], "exit status 3");
    assert_eq!(t["Response"], "partial");
    let ev = events(&app, id).await;
    let last = ev.last().unwrap();
    assert!(last["Reason"].as_str().unwrap().contains("disk on fire"), "{last}");

    let id = app.create(&json!({"Name": "manual"})).await;
    let t = wait_state(&app, id, "SucceededManualCleanup").await;
    assert_eq!(t["Result"], "12 rows");
    assert_eq!(t["Response"], "done");

    let missing = "[[definition]]\nname = \"ghost\"\nrunner = \"command\"\ncommand = [\"/no/such/program\"]";
    let app = spawn_runner(missing).await;
    let id = app.create(&json!({"Name": "ghost"})).await;
    let t = wait_state(&app, id, "Failed").await;
    assert!(t["Result"].as_str().unwrap().contains("cannot start /no/such/program"), "{t}");
}

/// A tiny HTTP server recording what it was sent; answers 200 with a body, or 500 on `/fail`.
pub async fn hook_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>) {
    use axum::extract::Request;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |req: Request| {
        let tx = tx.clone();
        async move {
            let uri = req.uri().to_string();
            let token = req.headers().get("x-token").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
            let _ = tx.send((uri.clone(), token, String::from_utf8_lossy(&body).into_owned()));
            if uri.starts_with("/fail") {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "nope".to_owned())
            } else {
                (axum::http::StatusCode::OK, format!("handled {uri}"))
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rx)
}

#[tokio::test]
async fn the_http_runner_calls_the_url_and_the_status_decides() {
    let (base, mut seen) = hook_server().await;
    let defs = format!(
        "[[definition]]\nname = \"hook\"\nrunner = \"http\"\nmethod = \"PUT\"\nurl = \"{base}/hook/{{id}}?day={{Day}}\"\nheaders = {{ \"X-Token\" = \"t-{{Day}}\" }}\nbody = \"{{\\\"task\\\": {{id}}}}\"\n\n[[definition]]\nname = \"failhook\"\nrunner = \"http\"\nurl = \"{base}/fail\"\n"
    );
    let app = spawn_runner(&defs).await;
    let id = app.create(&json!({"Name": "hook", "ParameterObject": {"Day": "mon day"}})).await;
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["Result"], "HTTP 200");
    let (uri, token, body) = seen.recv().await.unwrap();
    assert_eq!(uri, format!("/hook/{id}?day=mon%20day"));
    assert_eq!(token, "t-mon day");
    assert_eq!(body, format!("{{\"task\": {id}}}"));
    assert_eq!(t["Response"], format!("handled {uri}"));

    let id = app.create(&json!({"Name": "failhook", "Request": "payload"})).await;
    let t = wait_state(&app, id, "Failed").await;
    assert_eq!(t["Result"], "HTTP 500");
    assert_eq!(t["Response"], "nope");
    assert_eq!(seen.recv().await.unwrap().2, "payload", "the Request is the default body");

    let id = app.create(&json!({"Name": "hook"})).await;
    let t = wait_state(&app, id, "Failed").await;
    assert!(t["Result"].as_str().unwrap().contains("{Day}"), "a missing parameter is named: {t}");
}

#[tokio::test]
async fn a_run_past_its_timeout_is_stopped_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let script = sh(dir.path(), "sleep 30\n");
    let app = spawn_runner(&command_def("slow", &script, "timeout = \"1s\"")).await;
    let started = Instant::now();
    let id = app.create(&json!({"Name": "slow"})).await;
    let t = wait_state(&app, id, "Failed").await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(t["Result"], "Timed out after 1s");
    assert_eq!(t["StartCount"], 1);
}

#[tokio::test]
async fn failed_runs_are_retried_with_growing_backoff_until_restarts_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count");
    let flaky = sh(
        dir.path(),
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo run $n; [ $n -ge 3 ]\n",
            c = counter.display()
        ),
    );
    let hopeless = sh(dir.path(), "exit 1\n");
    let defs = command_def("flaky", &flaky, "restarts = 3\nbackoff = \"400ms\"")
        + &command_def("hopeless", &hopeless, "restarts = 1\nbackoff = \"100ms\"");
    let app = spawn_runner(&defs).await;
    let id = app.create(&json!({"Name": "flaky"})).await;
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["StartCount"], 3);
    assert_eq!(t["Response"], "run 3");
    let ev = events(&app, id).await;
    let retries: Vec<&Value> = ev.iter().filter(|e| e["From"] == "Started" && e["To"] == "New").collect();
    assert_eq!(retries.len(), 2, "{ev:?}");
    assert!(retries[0]["Reason"].as_str().unwrap().contains("retry 1 of 3"), "{ev:?}");
    // Backoff: attempt n waits at least half of 400 ms × 2^(n-1) (equal jitter).
    let time = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["Time"].as_str().unwrap()).unwrap();
    let starts: Vec<_> = ev.iter().filter(|e| e["To"] == "Started").map(time).collect();
    let fails: Vec<_> = retries.iter().map(|e| time(e)).collect();
    assert!(starts[1] - fails[0] >= chrono::Duration::milliseconds(200), "{ev:?}");
    assert!(starts[2] - fails[1] >= chrono::Duration::milliseconds(400), "{ev:?}");

    let id = app.create(&json!({"Name": "hopeless"})).await;
    let t = wait_state(&app, id, "Failed").await;
    assert_eq!(t["StartCount"], 2);
    assert_eq!(t["Result"], "exit status 1");
    // Running it again by hand starts the restart count afresh.
    let res = app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "New"})).await;
    assert_eq!(res.status(), 200);
    wait_task(&app, id, Duration::from_secs(20), |t| t["State"] == "Failed" && t["StartCount"] == 4).await;
}

#[tokio::test]
async fn stop_in_each_state() {
    let dir = tempfile::tempdir().unwrap();
    let polite = sh(dir.path(), "trap 'echo stopping; exit 0' TERM\nwhile true; do sleep 0.1; done\n");
    let defs = command_def("polite", &polite, "") + "[[definition]]\nname = \"outside\"\nrunner = \"external\"\n";
    let app = spawn_runner(&defs).await;
    let worker = app.add_associate("w", batchd::domain::Role::Worker).await;

    // New: fails at once.
    let id = app.create(&json!({"Name": "outside"})).await;
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), true);
    let t = app.task(id).await;
    assert_eq!((t["State"].as_str(), t["Result"].as_str()), (Some("Failed"), Some("Cancelled by admin")));
    assert_eq!(moves(&events(&app, id).await), ["-->New", "New->Failed"]);

    // Aquired by a worker: fails at once, and the worker's lease is gone.
    let id = app.create(&json!({"Name": "outside"})).await;
    let res =
        app.as_user(&worker).send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": ["outside"]})).await;
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["LeaseToken"].as_str().unwrap().to_owned();
    assert_eq!(app.task(id).await["State"], "Aquired");
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), true);
    assert_eq!(app.task(id).await["State"], "Failed");
    let res = app
        .as_user(&worker)
        .request(Method::POST, &format!("/api/v1/BatchTask/{id}/Heartbeat"))
        .header("X-Lease-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);

    // Started, held by this node's runner: the command gets SIGTERM and the task ends Failed.
    let id = app.create(&json!({"Name": "polite"})).await;
    wait_state(&app, id, "Started").await;
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), true);
    let t = wait_state(&app, id, "Failed").await;
    assert_eq!(t["Result"], "Cancelled by admin", "a stopped run fails even when it exits 0");

    // Started by hand (no runner holds it): fails at once.
    let id = app.create(&json!({"Name": "nobody-runs-this"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Started"})).await;
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), true);
    assert_eq!(app.task(id).await["State"], "Failed");

    // Finished: false, nothing changes.
    let before = app.task(id).await;
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), false);
    assert_eq!(app.task(id).await, before);
    let res = stop(&app, 999_999).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn stop_for_each_cancellation_behaviour() {
    let dir = tempfile::tempdir().unwrap();
    let short = sh(dir.path(), "sleep 1.5\necho finished\n");
    let defs = command_def("keep", &short, "cancellation = \"CannotCancel\"")
        + &command_def("warn", &short, "cancellation = \"CancelWithWarning\"");
    let app = spawn_runner(&defs).await;

    let id = app.create(&json!({"Name": "keep"})).await;
    wait_state(&app, id, "Started").await;
    let res = stop(&app, id).await;
    assert!(res.headers().get("warning").is_none());
    assert_eq!(res.json::<Value>().await.unwrap(), false);
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!(t["Response"], "finished", "CannotCancel runs to its end");
    let ev = events(&app, id).await;
    assert!(!ev.iter().any(|e| e["Reason"].as_str().unwrap_or("").contains("stop")), "{ev:?}");

    let id = app.create(&json!({"Name": "warn"})).await;
    wait_state(&app, id, "Started").await;
    let res = stop(&app, id).await;
    assert!(res.headers().get("warning").unwrap().to_str().unwrap().contains("CancelWithWarning"));
    assert_eq!(res.json::<Value>().await.unwrap(), true);
    assert_eq!(wait_state(&app, id, "Failed").await["Result"], "Cancelled by admin");

    let id = app
        .create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "20"}, "CancellationBehaviour": "CanCancel"}))
        .await;
    wait_state(&app, id, "Started").await;
    let res = stop(&app, id).await;
    assert!(res.headers().get("warning").is_none());
    assert_eq!(res.json::<Value>().await.unwrap(), true);
    wait_state(&app, id, "Failed").await;
}

#[tokio::test]
async fn a_command_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("child-alive");
    // The child in the same group ignores TERM too; SIGKILL to the group ends both.
    let stubborn = sh(
        dir.path(),
        &format!(
            "trap '' TERM\n(trap '' TERM; while true; do touch {m}; sleep 0.1; done) &\nwhile true; do sleep 0.1; done\n",
            m = marker.display()
        ),
    );
    let app = spawn_runner(&command_def("stubborn", &stubborn, "")).await;
    let id = app.create(&json!({"Name": "stubborn"})).await;
    wait_state(&app, id, "Started").await;
    // Started is stored before the shell has run its first line: a TERM sent before the traps
    // are set would end it at once. The marker is touched only once both traps are set.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the script never started its child");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    assert_eq!(stop(&app, id).await.json::<Value>().await.unwrap(), true);
    let t = wait_state(&app, id, "Failed").await;
    let took = asked.elapsed();
    assert!(took >= Duration::from_secs(1), "killed before the 1 s grace: {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(t["Result"], "Cancelled by admin");
    // The whole process group is gone: the marker stops being touched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m1 = std::fs::metadata(&marker).unwrap().modified().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m2 = std::fs::metadata(&marker).unwrap().modified().unwrap();
    assert_eq!(m1, m2, "a process of the group survived");
}

#[tokio::test]
async fn every_write_is_logged_with_who_and_internal_tasks_leave_no_trace() {
    let app = spawn_runner("[[definition]]\nname = \"ext\"\nrunner = \"external\"\n").await;
    let id = app.create(&json!({"Name": "ext"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"Description": "no state change"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Failed"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "New"})).await;
    stop(&app, id).await;
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // Deleted: the log stays readable for admins, ending with the deletion.
    let ev = events(&app, id).await;
    assert_eq!(moves(&ev), ["-->New", "New->Failed", "Failed->New", "New->Failed", "Failed->-"]);
    assert!(ev.iter().all(|e| e["Associate"] == "admin"), "{ev:?}");
    assert_eq!(ev[1]["Reason"], "updated by admin");
    assert_eq!(ev[4]["Reason"], "deleted by admin");

    let internal = app.create(&json!({"Name": "Noop", "IsInternalTask": true})).await;
    wait_state(&app, internal, "Succeeded").await;
    assert!(events(&app, internal).await.is_empty());

    let user = app.add_associate("u", batchd::domain::Role::User).await;
    let other = app.add_associate("v", batchd::domain::Role::User).await;
    let id = app.as_user(&user).create(&json!({"Name": "ext"})).await;
    assert_eq!(app.as_user(&user).get(&format!("/api/v1/BatchTask/{id}/Events")).await.status(), 200);
    assert_eq!(app.as_user(&other).get(&format!("/api/v1/BatchTask/{id}/Events")).await.status(), 404);
    assert_eq!(app.get("/api/v1/BatchTask/999999/Events").await.status(), 404);
    assert_eq!(app.get("/api/v1/BatchTask/abc/Events").await.status(), 400);
    let xml = app
        .request(Method::GET, &format!("/api/v1/BatchTask/{id}/events"))
        .header("Accept", "application/xml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        xml.contains("<ArrayOfBatchTaskEvent")
            && xml.contains("<To>New</To>")
            && xml.contains("<From i:nil=\"true\"/>"),
        "{xml}"
    );
}

#[tokio::test]
async fn retention_removes_old_finished_tasks_with_their_blobs_and_events() {
    let app = spawn_runner_with("", |c| {
        c.retention.succeeded = Some(Duration::ZERO);
        c.retention.failed = None;
        c.retention.interval = Duration::from_millis(200);
        c.retention.batch = 2;
    })
    .await;
    let mut gone = Vec::new();
    for _ in 0..5 {
        gone.push(app.create(&json!({"Name": "Noop", "ParameterObject": {"k": "v"}})).await);
    }
    let kept = app.create(&json!({"Name": "nobody-runs-this"})).await;
    stop(&app, kept).await; // Failed: kept forever in this config
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &gone {
        while app.get(&format!("/api/v1/BatchTask/{id}")).await.status() != 404 {
            assert!(Instant::now() < deadline, "task {id} was not removed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(app.task(kept).await["State"], "Failed");
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let ids = gone.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(count(&format!("SELECT COUNT(*) FROM batchtaskevent WHERE batchtask_id IN ({ids})")), 0);
    assert_eq!(count(&format!("SELECT COUNT(*) FROM binaryobjectlink WHERE ownerrecord IN ({ids})")), 0);
    assert_eq!(count("SELECT COUNT(*) FROM binaryobject"), 0);
    assert!(count(&format!("SELECT COUNT(*) FROM batchtaskevent WHERE batchtask_id = {kept}")) > 0);
}

/// A script that counts its running siblings through files in `dir` and records a violation
/// when more than `limit` run at once.
fn counting_script(dir: &Path, limit: usize) -> String {
    let running = dir.join("running");
    std::fs::create_dir_all(&running).unwrap();
    sh(
        dir,
        &format!(
            "touch {r}/$BATCHD_TASK_ID\nn=$(ls {r} | wc -l)\necho $n >> {d}/seen\n[ $n -gt {limit} ] && echo $BATCHD_TASK_ID >> {d}/violations\nsleep 0.3\nrm -f {r}/$BATCHD_TASK_ID\n",
            r = running.display(),
            d = dir.display()
        ),
    )
}

#[tokio::test]
async fn the_concurrency_limit_holds_across_two_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let script = counting_script(dir.path(), 2);
    let defs = command_def("limited", &script, "concurrency = 2");
    let a = spawn_runner(&defs).await;
    let db = a.db_path.clone();
    let b = spawn_runner_with(&defs, |c| c.database = format!("sqlite:{}", db.display())).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &a } else { &b };
        ids.push(app.create(&json!({"Name": "limited"})).await);
    }
    for id in &ids {
        wait_task(&a, *id, Duration::from_secs(60), |t| t["State"] == "Succeeded").await;
    }
    assert!(!dir.path().join("violations").exists(), "more than 2 ran at once");
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    assert_eq!(seen.lines().count(), 10);
    let nodes: std::collections::HashSet<String> = {
        let mut s = std::collections::HashSet::new();
        for id in &ids {
            for e in events(&a, *id).await {
                if e["To"] == "Started" {
                    s.insert(e["Node"].as_str().unwrap().to_owned());
                }
            }
        }
        s
    };
    assert!(!nodes.is_empty() && nodes.len() <= 2);
}

#[tokio::test]
async fn a_recurring_definition_creates_tasks_on_its_schedule() {
    let app = spawn_runner(
        "[[definition]]\nname = \"tick\"\nrunner = \"noop\"\nstart_interval = \"300ms\"\nparameters = { source = \"schedule\" }\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let tasks = loop {
        let res = app.agent("GetSystemBatchTaskInfosByName", &json!({"TaskName": "tick"})).await;
        let list: Vec<Value> = res.json().await.unwrap();
        if list.len() >= 3 {
            break list;
        }
        assert!(Instant::now() < deadline, "only {} scheduled tasks", list.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for t in &tasks {
        assert_eq!(t["IsSystemTask"], true);
        assert_eq!(t["ParameterObject"]["source"], "schedule");
    }
}

#[test]
fn the_example_config_file_is_valid() {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/batchd.example.toml"));
    let config = Config::load(Some(path)).expect("batchd.example.toml loads");
    let names: Vec<&str> = config.definitions.iter().map(|d| d.name.as_str()).collect();
    for name in ["nightly-report", "notify-crm", "import-contacts", "Noop", "Sleep"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(config.runner, batchd::runner::settings::RunnerConfig::default(), "the file shows the defaults");
    assert_eq!(config.retention, batchd::runner::settings::RetentionConfig::default());
}

#[tokio::test]
async fn a_stop_asked_on_another_node_reaches_the_run_within_a_second() {
    // Node a runs everything; node b only serves the API.
    let a = spawn_runner("").await;
    let db = a.db_path.clone();
    let b = spawn_runner_with("", |c| {
        c.database = format!("sqlite:{}", db.display());
        c.runner.enabled = false;
        c.runner.stop_poll = Duration::from_millis(500);
    })
    .await;
    let id = a.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "60"}})).await;
    wait_state(&a, id, "Started").await;
    let asked = Instant::now();
    assert_eq!(stop(&b, id).await.json::<Value>().await.unwrap(), true);
    let t = wait_state(&b, id, "Failed").await;
    // Node a polls every 100 ms in this test; 1 s is the contract with the default 500 ms.
    assert!(asked.elapsed() < Duration::from_secs(5), "{:?}", asked.elapsed());
    assert_eq!(t["Result"], "Cancelled by admin");
    let ev = events(&b, id).await;
    let last = ev.last().unwrap();
    assert_ne!(last["Node"], Value::Null, "ended by the node running it: {ev:?}");
}
