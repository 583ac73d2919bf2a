//! What a task's definition or parameters cannot make the runner do: break out of a body
//! template, see the server's environment, hold unbounded output, follow redirects unasked, or
//! leave a task Started after its run panicked.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use batchd::domain::Task;
use batchd::domain::definition::{Definition, Embedded, EmbeddedRunner, RunnerSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;
use crate::process::serve;
use crate::runner::{fast, hook_server, sh, spawn_runner, wait_task};
use crate::runner_process::{create, get, write_config};

fn ended(t: &Value) -> bool {
    matches!(t["State"].as_str(), Some("Succeeded" | "SucceededManualCleanup" | "Failed"))
}

/// Waits for a task of a `serve`d binary to end.
async fn wait_end_at(base: &str, id: i64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let t = get(base, &format!("/api/v1/BatchTask/{id}")).await;
        if ended(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not end in {limit:?}: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- values in body templates --------------------------------------------------------------

#[tokio::test]
async fn a_parameter_cannot_break_out_of_a_json_body_string() {
    let (base, mut seen) = hook_server().await;
    // The template of batchd.example.toml; its Content-Type makes the body JSON.
    let defs = format!(
        r#"[[definition]]
name = "notify"
runner = "http"
url = "{base}/hooks/{{id}}"
headers = {{ "Content-Type" = "application/json" }}
body = "{{\"task\": {{id}}, \"contact\": \"{{ContactId}}\"}}"
"#
    );
    let app = spawn_runner(&defs).await;
    for hostile in [r#"1", "admin": true, "x": ""#, "line\nbreak \\ \"q\" \u{1} \u{2028} ünï </script>"] {
        let id = app.create(&json!({"Name": "notify", "ParameterObject": {"ContactId": hostile}})).await;
        let t = wait_task(&app, id, Duration::from_secs(20), ended).await;
        assert_eq!(t["State"], "Succeeded", "{t}");
        let (_, _, body) = seen.recv().await.unwrap();
        let sent: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        let keys: Vec<&String> = sent.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["task", "contact"], "the value changed the body's structure: {body}");
        assert_eq!(sent["contact"], hostile, "{body}");
        assert_eq!(sent["task"], id);
    }
}

#[tokio::test]
async fn a_parameter_cannot_add_fields_to_a_form_body() {
    let (base, mut seen) = hook_server().await;
    let defs = format!(
        r#"[[definition]]
name = "form"
runner = "http"
url = "{base}/form"
headers = {{ "Content-Type" = "application/x-www-form-urlencoded" }}
body = "contact={{ContactId}}&role=user"
"#
    );
    let app = spawn_runner(&defs).await;
    let hostile = "1&role=admin =%+ü";
    let id = app.create(&json!({"Name": "form", "ParameterObject": {"ContactId": hostile}})).await;
    let t = wait_task(&app, id, Duration::from_secs(20), ended).await;
    assert_eq!(t["State"], "Succeeded", "{t}");
    let (_, _, body) = seen.recv().await.unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(pairs, [("contact".to_owned(), hostile.to_owned()), ("role".to_owned(), "user".to_owned())], "{body}");
}

// ---- the environment of a program ----------------------------------------------------------

fn read_env(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[tokio::test]
async fn a_program_gets_a_clean_environment_and_only_what_its_definition_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let script = sh(dir.path(), "env > \"$OUT/$BATCHD_TASK_NAME.env\"\n");
    let plain = format!(
        "[[definition]]\nname = \"plain\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{script}\"]\nenv = {{ OUT = \"{d}\" }}\n"
    );
    let inherits = format!(
        "[[definition]]\nname = \"inherits\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{script}\"]\nenv = {{ OUT = \"{d}\" }}\ninherit_env = [\"AWS_PROFILE\", \"NOT_SET_ANYWHERE\"]\n"
    );
    let db = dir.path().join("env.db");
    // `serve` also sets BATCHD_DATABASE and BATCHD_ADMIN_PASSWORD.
    let server_env = |config: &str| -> Vec<(String, String)> {
        [
            ("BATCHD_CONFIG", config),
            ("CLOUD_SECRET_KEY", "s3cr3t-value"),
            ("AWS_PROFILE", "batch-profile"),
            ("HOME", d.as_str()),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "C"),
            ("TZ", "Europe/Oslo"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let run = |config: String, name: &'static str| {
        let env = server_env(&config);
        let db = db.clone();
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let server = serve(&db, &env);
            let id = create(&server.base, json!({"Name": name, "ParameterObject": {"Day": "mon"}})).await;
            let t = wait_end_at(&server.base, id, Duration::from_secs(20)).await;
            assert_eq!(t["State"], "Succeeded", "{t}");
            id
        }
    };

    let id = run(write_config(dir.path(), &plain), "plain").await;
    let env = read_env(&dir.path().join("plain.env"));
    for secret in ["BATCHD_ADMIN_PASSWORD", "BATCHD_DATABASE", "BATCHD_CONFIG", "CLOUD_SECRET_KEY", "AWS_PROFILE"] {
        assert!(!env.contains_key(secret), "{secret} reached the task: {env:?}");
    }
    assert!(!env.values().any(|v| v.contains("s3cr3t")), "{env:?}");
    assert_eq!(env.get("PATH"), std::env::var("PATH").ok().as_ref(), "PATH is passed on");
    assert_eq!(env["HOME"], d);
    assert_eq!(env["LANG"], "C.UTF-8");
    assert_eq!(env["LC_TIME"], "C");
    assert_eq!(env["TZ"], "Europe/Oslo");
    assert_eq!(env["OUT"], d, "the definition's env");
    assert_eq!(env["BATCHD_TASK_ID"], id.to_string());
    assert_eq!(env["BATCHD_TASK_NAME"], "plain");
    assert_eq!(env["BATCHD_ATTEMPT"], "1");
    assert_eq!(env["BATCHD_PARAM_DAY"], "mon");

    let id = run(write_config(dir.path(), &format!("{plain}\n{inherits}")), "inherits").await;
    let env = read_env(&dir.path().join("inherits.env"));
    assert_eq!(env["AWS_PROFILE"], "batch-profile", "named in inherit_env: {env:?}");
    assert!(!env.contains_key("NOT_SET_ANYWHERE"));
    assert!(!env.contains_key("CLOUD_SECRET_KEY") && !env.contains_key("BATCHD_ADMIN_PASSWORD"), "{env:?}");
    assert_eq!(env["BATCHD_TASK_ID"], id.to_string());
}

// ---- bounds on what a run may hold ---------------------------------------------------------

/// Peak resident memory of process `pid` in KiB (VmHWM).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Starts counting the peak again from the current size (where the kernel allows it) and
/// returns the peak to compare with.
fn reset_peak(pid: u32) -> u64 {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    peak_kib(pid)
}

/// How much a run may add to the server's peak memory: far below the output it is sent.
const RUN_MEMORY_KIB: u64 = 32 * 1024;

/// The largest `Response`, in characters (64 KiB).
const RESPONSE_MAX: usize = 64 * 1024;

/// Splits a truncated text into the kept part and the number of bytes the marker says were cut.
fn truncated(text: &str) -> (&str, Option<u64>) {
    let (kept, marker) = text.rsplit_once("… [truncated").unwrap_or_else(|| panic!("no marker: …{}", tail(text)));
    let n = marker.trim_end_matches(']').trim().strip_suffix(" bytes").map(|n| n.parse().unwrap());
    (kept, n)
}

fn tail(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(60)..].iter().collect()
}

const FLOOD: usize = 50_000_000;

/// Answers every request with 50 MB of `y`: with a Content-Length on `/sized`, close-delimited
/// otherwise. Stops writing when the client hangs up.
async fn flood_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let sized = head.starts_with(b"POST /sized") || head.starts_with(b"GET /sized");
                let length = if sized { format!("Content-Length: {FLOOD}\r\n") } else { String::new() };
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n{length}\r\n");
                if sock.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'y'; 64 * 1024];
                let mut sent = 0;
                while sent < FLOOD {
                    let n = chunk.len().min(FLOOD - sent);
                    if sock.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_huge_http_response_is_cut_and_marked_in_bounded_memory() {
    let flood = flood_server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[definition]]\nname = \"sized\"\nrunner = \"http\"\nmethod = \"GET\"\nurl = \"{flood}/sized\"\ntimeout = \"60s\"\n\n\
             [[definition]]\nname = \"stream\"\nrunner = \"http\"\nmethod = \"GET\"\nurl = \"{flood}/stream\"\ntimeout = \"60s\"\n"
        ),
    );
    let server = serve(&dir.path().join("flood.db"), &[("BATCHD_CONFIG", &config)]);
    let pid = server.child.id();
    let warm = create(&server.base, json!({"Name": "Noop"})).await; // the credential check's memory
    wait_end_at(&server.base, warm, Duration::from_secs(20)).await;
    let before = reset_peak(pid);

    let id = create(&server.base, json!({"Name": "sized"})).await;
    let t = wait_end_at(&server.base, id, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Succeeded", "{}", t["Result"]);
    let response = t["Response"].as_str().unwrap();
    assert!(response.chars().count() <= RESPONSE_MAX, "{} characters", response.chars().count());
    let (kept, cut) = truncated(response);
    assert!(kept.len() > 60_000 && kept.bytes().all(|b| b == b'y'), "kept {} bytes", kept.len());
    assert_eq!(cut, Some((FLOOD - kept.len()) as u64), "the marker counts the bytes left out");

    let id = create(&server.base, json!({"Name": "stream"})).await;
    let t = wait_end_at(&server.base, id, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Succeeded", "{}", t["Result"]);
    let response = t["Response"].as_str().unwrap();
    assert!(response.chars().count() <= RESPONSE_MAX);
    let (kept, cut) = truncated(response);
    assert!(kept.len() > 60_000 && kept.bytes().all(|b| b == b'y'));
    assert_eq!(cut, None, "no length given, none claimed");

    let grew = peak_kib(pid).saturating_sub(before);
    assert!(grew < RUN_MEMORY_KIB, "two 50 MB responses raised the server's peak memory by {grew} KiB");
}

#[tokio::test]
async fn a_100_mb_output_line_is_cut_and_marked_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 100 MB on stdout with no newline, then 20 MB on stderr.
    let script =
        sh(dir.path(), "head -c 100000000 /dev/zero | tr '\\000' x\nhead -c 20000000 /dev/zero | tr '\\000' e >&2\n");
    let config = write_config(
        dir.path(),
        &format!(
            "[[definition]]\nname = \"loud\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{script}\"]\ntimeout = \"60s\"\n"
        ),
    );
    let server = serve(&dir.path().join("loud.db"), &[("BATCHD_CONFIG", &config)]);
    let pid = server.child.id();
    let warm = create(&server.base, json!({"Name": "Noop"})).await;
    wait_end_at(&server.base, warm, Duration::from_secs(20)).await;
    let before = reset_peak(pid);

    let id = create(&server.base, json!({"Name": "loud"})).await;
    let t = wait_end_at(&server.base, id, Duration::from_secs(60)).await;
    assert_eq!(t["State"], "Succeeded", "{}", t["Result"]);
    let response = t["Response"].as_str().unwrap();
    assert!(response.chars().count() <= RESPONSE_MAX, "{} characters", response.chars().count());
    let (kept, cut) = truncated(response);
    assert!(kept.len() > 60_000 && kept.bytes().all(|b| b == b'x'), "kept {} bytes", kept.len());
    assert_eq!(cut, Some((100_000_000 - kept.len()) as u64));
    let grew = peak_kib(pid).saturating_sub(before);
    assert!(grew < RUN_MEMORY_KIB, "a 100 MB line raised the server's peak memory by {grew} KiB");

    let ev = get(&server.base, &format!("/api/v1/BatchTask/{id}/Events")).await;
    let reason = ev.as_array().unwrap().last().unwrap()["Reason"].as_str().unwrap().to_owned();
    let stderr = reason.split_once("stderr: ").map_or("", |(_, s)| s);
    assert!(stderr.len() <= 4096 && stderr.len() > 1000 && stderr.bytes().all(|b| b == b'e'), "{}", tail(&reason));
}

/// `/moved` answers 302 to `/target`, which counts its visitors.
async fn redirect_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new()
        .route(
            "/moved",
            axum::routing::any(|| async {
                (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, "/target")], "see /target")
            }),
        )
        .route(
            "/target",
            axum::routing::any(move || {
                let hits = counted.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "arrived"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn a_redirect_is_not_followed_unless_the_definition_allows_it() {
    let (base, hits) = redirect_server().await;
    let app =
        spawn_runner(&format!("[[definition]]\nname = \"moved\"\nrunner = \"http\"\nurl = \"{base}/moved\"\n")).await;
    let id = app.create(&json!({"Name": "moved"})).await;
    let t = wait_task(&app, id, Duration::from_secs(20), ended).await;
    assert_eq!(t["State"], "Failed", "{t}");
    let result = t["Result"].as_str().unwrap();
    assert!(result.starts_with("HTTP 302") && result.contains("not followed"), "{result}");
    assert_eq!(t["Response"], "see /target");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the target was not visited");

    let app = spawn_runner(&format!(
        "[[definition]]\nname = \"follows\"\nrunner = \"http\"\nurl = \"{base}/moved\"\nfollow_redirects = 1\n"
    ))
    .await;
    let id = app.create(&json!({"Name": "follows"})).await;
    let t = wait_task(&app, id, Duration::from_secs(20), ended).await;
    assert_eq!(t["State"], "Succeeded", "{t}");
    assert_eq!(t["Response"], "arrived");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_http_definition_without_a_timeout_gets_the_default_one() {
    let app = spawn_runner(
        "[[definition]]\nname = \"hook\"\nrunner = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n\n\
         [[definition]]\nname = \"quick-hook\"\nrunner = \"http\"\nurl = \"http://127.0.0.1:9/x\"\ntimeout = \"20s\"\n",
    )
    .await;
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let timeout = |name: &str| -> i64 {
        conn.query_row("SELECT timeout FROM batchtaskdefinition WHERE name = ?", [name], |r| r.get(0)).unwrap()
    };
    assert_eq!(timeout("hook"), 300, "an http run is bounded by default");
    assert_eq!(timeout("quick-hook"), 20);
}

// ---- a run that panics --------------------------------------------------------------------

/// Panics when `ParameterObject.Panic` is `always`, or `first` on the first attempt.
struct Panicky;

impl EmbeddedRunner for Panicky {
    fn run(&self, task: Task, attempt: i32) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        Box::pin(async move {
            let when = task.parameters.as_ref().and_then(|p| p.get("Panic")).unwrap_or("never").to_owned();
            if when == "always" || (when == "first" && attempt == 1) {
                panic!("boom in task {}", task.id);
            }
            Ok(format!("ran attempt {attempt}"))
        })
    }
}

#[tokio::test]
async fn a_run_that_panics_fails_its_attempt_and_frees_its_slot() {
    let app = TestApp::spawn_with(|c| {
        fast(c);
        c.runner.max_running = 1; // the node's one slot must come back too
        let runner = Embedded(Arc::new(Panicky));
        let mut once = Definition::new("panicky", RunnerSpec::Embedded(runner.clone()));
        once.concurrency = Some(1);
        let mut retried = Definition::new("panicky-retried", RunnerSpec::Embedded(runner));
        retried.retry.restarts = 1;
        retried.retry.backoff = Duration::from_millis(100);
        c.definitions.extend([once, retried]);
    })
    .await;
    let id = app.create(&json!({"Name": "panicky", "ParameterObject": {"Panic": "always"}})).await;
    let t = wait_task(&app, id, Duration::from_secs(10), ended).await;
    assert_eq!(t["State"], "Failed", "{t}");
    let result = t["Result"].as_str().unwrap();
    assert!(result.contains("panicked") && result.contains(&format!("boom in task {id}")), "{result}");

    // Same definition (concurrency 1), same node (one slot): runs only if both were freed.
    let next = app.create(&json!({"Name": "panicky"})).await;
    let t = wait_task(&app, next, Duration::from_secs(10), ended).await;
    assert_eq!((t["State"].as_str(), t["Result"].as_str()), (Some("Succeeded"), Some("ran attempt 1")), "{t}");

    // A panic is a failed attempt: the definition's restarts apply.
    let id = app.create(&json!({"Name": "panicky-retried", "ParameterObject": {"Panic": "first"}})).await;
    let t = wait_task(&app, id, Duration::from_secs(10), ended).await;
    assert_eq!((t["State"].as_str(), t["Result"].as_str()), (Some("Succeeded"), Some("ran attempt 2")), "{t}");
    assert_eq!(t["StartCount"], 2);
    let ev = crate::runner::events(&app, id).await;
    assert!(ev.iter().any(|e| e["Reason"].as_str().unwrap_or("").contains("panicked")), "{ev:?}");
}
