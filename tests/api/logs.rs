//! Log lines of the real binary in JSON: one per request and one per task state change, with
//! nothing secret in them.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::serve_keeping_stderr;

const MARKER: &str = "pw-marker-5d1f0c";
const QUERY_MARKER: &str = "query-marker-77ab";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn request_id(res: &reqwest::Response) -> String {
    res.headers().get("x-request-id").expect("X-Request-Id answered").to_str().unwrap().to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn json_logs_have_a_line_per_request_and_per_state_change_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    json_logs(&dir.path().join("logs.db"), &[]).await;
}

/// The same on PostgreSQL, whose driver writes the events its own way.
#[tokio::test]
async fn json_logs_on_postgres() {
    let Some(db) = crate::pg::TestPg::create("logs::json_logs_on_postgres").await else { return };
    let dir = tempfile::tempdir().unwrap();
    json_logs(&dir.path().join("unused.db"), &[("BATCHD_DATABASE", db.url.as_str())]).await;
}

async fn json_logs(db: &std::path::Path, extra_env: &[(&str, &str)]) {
    let mut env = vec![("BATCHD_LOG_FORMAT", "json")];
    env.extend_from_slice(extra_env);
    let (mut server, stderr) = serve_keeping_stderr(db, &env);
    let base = server.base.clone();
    let c = client();

    let res = c
        .post(format!("{base}/api/v1/BatchTask"))
        .basic_auth("admin", Some("pw"))
        .json(&json!({"Name": "Noop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let created_id = request_id(&res);
    assert!(is_generated(&created_id), "{created_id}");
    let id: i64 = res.json().await.unwrap();

    // Polled with the client's own id until the Noop task is done.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = c
            .get(format!("{base}/api/v1/BatchTask/{id}?secret={QUERY_MARKER}"))
            .basic_auth("admin", Some("pw"))
            .header("X-Request-Id", "abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(request_id(&res), "abc-123");
        let task: Value = res.json().await.unwrap();
        if task["State"] == "Succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the Noop task did not finish: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let res = c.get(format!("{base}/api/v1/NoSuchThing")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let not_found_id = request_id(&res);
    assert!(is_generated(&not_found_id), "{not_found_id}");

    let res = c.get(format!("{base}/api/v1/BatchTask/All")).basic_auth("admin", Some(MARKER)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let refused_id = request_id(&res);
    assert!(is_generated(&refused_id), "an error answer carries one too: {refused_id}");

    // Not a plain token: replaced rather than logged or echoed.
    let res = c.get(format!("{base}/api")).header("X-Request-Id", "two words").send().await.unwrap();
    let replaced_id = request_id(&res);
    assert!(is_generated(&replaced_id), "{replaced_id}");
    let long = "x".repeat(65);
    let res = c.get(format!("{base}/api")).header("X-Request-Id", &long).send().await.unwrap();
    assert!(is_generated(&request_id(&res)));

    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(server.child.wait().unwrap().success());
    // The reader thread sees the end of the pipe just after the exit.
    std::thread::sleep(Duration::from_millis(300));

    let lines = stderr.lock().unwrap().clone();
    let all = lines.join("\n");
    assert!(!all.contains(MARKER), "a password was logged:\n{all}");
    assert!(!all.contains(QUERY_MARKER), "a query string was logged:\n{all}");
    let parsed: Vec<Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let requests: Vec<&Value> = parsed.iter().filter(|v| v["target"] == "batchd::request").collect();
    let with = |rid: &str| requests.iter().copied().filter(|v| v["request_id"] == rid).collect::<Vec<_>>();

    let polls = with("abc-123");
    assert!(!polls.is_empty(), "{all}");
    for l in &polls {
        assert_eq!(l["method"], "GET");
        assert_eq!(l["route"], "/api/v1/BatchTask/{key}");
        assert_eq!(l["status"], 200);
        assert!(l["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{l}");
    }
    let created = with(&created_id);
    assert_eq!(created.len(), 1, "{all}");
    assert_eq!(created[0]["method"], "POST");
    assert_eq!(created[0]["route"], "/api/v1/BatchTask");
    let missing = with(&not_found_id);
    assert_eq!(missing.len(), 1, "{all}");
    assert_eq!(missing[0]["status"], 404);
    assert_eq!(with(&refused_id)[0]["status"], 401);
    assert_eq!(with(&replaced_id).len(), 1);
    assert!(with("two words").is_empty());

    let moves: Vec<(Option<&str>, Option<&str>)> = parsed
        .iter()
        .filter(|v| v["target"] == "batchd::task" && v["id"] == id)
        .map(|v| (v["from"].as_str(), v["to"].as_str()))
        .collect();
    assert_eq!(
        moves,
        [
            (None, Some("New")),
            (Some("New"), Some("Aquired")),
            (Some("Aquired"), Some("Started")),
            (Some("Started"), Some("Succeeded"))
        ],
        "{all}"
    );
    for v in parsed.iter().filter(|v| v["target"] == "batchd::task" && v["from"].is_string()) {
        assert!(v["node"].is_string() && v["reason"].is_string(), "{v}");
    }
}

#[test]
fn log_format_pretty_is_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let (server, stderr) = serve_keeping_stderr(&dir.path().join("pretty.db"), &[("BATCHD_LOG_FORMAT", "pretty")]);
    drop(server);
    std::thread::sleep(Duration::from_millis(200));
    let lines = stderr.lock().unwrap().clone();
    let listening = lines.iter().find(|l| l.contains("batchd is listening")).expect("the address line");
    assert!(listening.contains("addr=127.0.0.1:") && !listening.starts_with('{'), "{listening}");
}
