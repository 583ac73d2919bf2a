//! Faults of the storage under load: the database goes away and comes back. Every answer is a
//! 200 or a 503 with `Retry-After` (never a 500), and every task whose create was answered 200
//! is there afterwards and runs to its end.
//!
//! The machine's PostgreSQL is shared by the other tests running beside these, so it is not
//! restarted here: a loopback proxy in front of it is cut instead (the connections drop and new
//! ones are refused, as in a restart), and the test database's connections are terminated by the
//! server itself (`pg_terminate_backend`, the error a restart gives clients). The real restart is
//! in the fault suite (`faults/run.sh`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::TestApp;
use crate::pg::{TestPg, feed_only_node};

/// A TCP proxy on loopback that can be cut (open connections drop, new ones are closed at once),
/// made a black hole (open connections drop, new ones are accepted and never answered, as with a
/// host that is gone) and restored.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Up,
    Cut,
    Hang,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watching) = watch::channel(Mode::Up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let mut now = watching.clone();
                let current = *now.borrow();
                match current {
                    Mode::Cut => continue, // dropped: closed at once
                    Mode::Hang => {
                        // Held open, silent, until the proxy is restored.
                        tokio::spawn(async move {
                            let _ = now.wait_for(|m| *m == Mode::Up).await;
                            drop(inbound);
                        });
                        continue;
                    }
                    Mode::Up => {}
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = now.wait_for(|m| *m != Mode::Up) => {}
                    }
                });
            }
        });
        Proxy { addr, mode, task }
    }
    fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }
    fn hang(&self) {
        self.mode.send_replace(Mode::Hang);
    }
    fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `postgres://u@host:port/db` → (the server's address, the same URL through `via`).
async fn through(url: &str, via: Option<SocketAddr>) -> (SocketAddr, String) {
    let after_scheme = url.find("://").unwrap() + 3;
    let rest = &url[after_scheme..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    let target = tokio::net::lookup_host(&host_port).await.unwrap().next().unwrap();
    let replaced = match via {
        Some(v) => format!("{}{}{v}{}", &url[..after_scheme], &authority[..host_start], &rest[authority_end..]),
        None => url.to_owned(),
    };
    (target, replaced)
}

#[derive(Debug)]
struct Answer {
    read: bool,
    status: u16,
    retry_after: bool,
    body: String,
    at: Duration,
}

/// `workers` clients each create tasks (and read one back) until `until`.
async fn load(app: Arc<TestApp>, workers: usize, start: Instant, until: Duration) -> Vec<Answer> {
    let mut handles = Vec::new();
    for _ in 0..workers {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while start.elapsed() < until {
                let res = app
                    .request(reqwest::Method::POST, "/api/v1/BatchTask")
                    .json(&json!({"Name": "Noop"}))
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
                    .expect("the server answers");
                let status = res.status().as_u16();
                let retry_after = res.headers().contains_key("retry-after");
                let body = res.text().await.unwrap();
                answers.push(Answer { read: false, status, retry_after, body: body.clone(), at: start.elapsed() });
                if status == 200 {
                    let res = app.get(&format!("/api/v1/BatchTask/{body}")).await;
                    let status = res.status().as_u16();
                    let retry_after = res.headers().contains_key("retry-after");
                    let body = res.text().await.unwrap();
                    answers.push(Answer { read: true, status, retry_after, body, at: start.elapsed() });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// Created ids (200 answers to a create are bare integers).
fn created(answers: &[Answer]) -> Vec<i64> {
    answers.iter().filter(|a| a.status == 200).filter_map(|a| a.body.parse::<i64>().ok()).collect()
}

fn assert_only_200_or_503(answers: &[Answer]) {
    for a in answers {
        assert!(a.status == 200 || a.status == 503, "only 200 or 503 during an outage, got {a:?}");
        if a.status == 503 {
            assert!(a.retry_after, "a 503 says when to retry: {a:?}");
            let body: Value = serde_json::from_str(&a.body).unwrap_or_else(|_| panic!("error body: {a:?}"));
            assert_eq!(body["ErrorType"], "ServiceUnavailableException", "{body}");
        }
    }
}

/// Every answered task exists, and the runner ends each (Noop) once the database is back.
async fn assert_every_answered_task_runs(app: &TestApp, ids: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in ids {
        loop {
            let res = app.get(&format!("/api/v1/BatchTask/{id}")).await;
            assert_eq!(res.status(), 200, "task {id} answered 200 at its create must exist");
            let task: Value = res.json().await.unwrap();
            if task["State"] == "Succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "task {id} did not finish after the outage: {task}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_postgres_outage_answers_503_with_retry_after_and_loses_no_answered_task() {
    let Some(pg) = TestPg::create("faults::a_postgres_outage_answers_503").await else { return };
    let (target, _) = through(&pg.url, None).await;
    let proxy = Proxy::start(target).await;
    let (_, url) = through(&pg.url, Some(proxy.addr)).await;
    let app = Arc::new(TestApp::spawn_with(|c| c.database = url).await);

    let start = Instant::now();
    let traffic = tokio::spawn(load(app.clone(), 4, start, Duration::from_secs(12)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    // Longer than the pool's wait for a connection (5 s), so requests give up with a 503.
    tokio::time::sleep(Duration::from_secs(7)).await;
    proxy.restore();
    let restored_at = start.elapsed();
    let answers = traffic.await.unwrap();

    assert_only_200_or_503(&answers);
    let unavailable = answers.iter().filter(|a| a.status == 503).count();
    assert!(unavailable > 0, "the outage was seen: {} answers, none 503", answers.len());
    let late = answers.iter().filter(|a| a.at > restored_at + Duration::from_secs(2)).collect::<Vec<_>>();
    assert!(!late.is_empty() && late.iter().all(|a| a.status == 200), "service resumed after the outage: {late:?}");
    assert_every_answered_task_runs(&app, &created(&answers)).await;
}

/// Readiness follows the database: 503 (with `Retry-After` and the error body, and quickly: the
/// ping is bounded) while it is unreachable, 200 again once it is back. Liveness and discovery
/// stay 200 throughout; discovery says the database is unavailable.
#[tokio::test]
async fn ready_answers_503_while_postgres_is_unreachable_and_live_stays_200() {
    let Some(pg) = TestPg::create("faults::ready_answers_503_while_postgres_is_unreachable").await else { return };
    let (target, _) = through(&pg.url, None).await;
    let proxy = Proxy::start(target).await;
    let (_, url) = through(&pg.url, Some(proxy.addr)).await;
    let app = TestApp::spawn_with(|c| c.database = url).await;
    let probe = |path: &'static str| {
        let req = app.client.get(app.url(path)).timeout(Duration::from_secs(20));
        async move {
            let asked = Instant::now();
            let res = req.send().await.expect("the server answers");
            let took = asked.elapsed();
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key("retry-after");
            (status, retry_after, res.json::<Value>().await.unwrap(), took)
        }
    };
    assert_eq!(probe("/health/ready").await.0, 200);
    assert_eq!(probe("/api").await.2["Database"], "Available");

    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, retry_after, body, took) = loop {
        let answer = probe("/health/ready").await;
        if answer.0 != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((status, retry_after), (503, true), "{body}");
    assert_eq!(body["ErrorType"], "ServiceUnavailableException", "{body}");
    assert!(took < Duration::from_secs(3), "the ping is bounded (the pool would wait 5 s): {took:?}");
    eprintln!("unreachable database: /health/ready answered 503 in {took:?}");
    for _ in 0..3 {
        let (status, retry_after, body, took) = probe("/health/ready").await;
        assert_eq!((status, retry_after), (503, true), "still unreachable: {body}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let (status, _, body, _) = probe("/health/live").await;
        assert_eq!((status, &body["Status"]), (200, &json!("Live")), "the process is alive: {body}");
        let (status, _, body, _) = probe("/api").await;
        assert_eq!((status, &body["Database"]), (200, &json!("Unavailable")), "{body}");
        assert_eq!(body["Product"], "batchd", "{body}");
    }

    // A database host that is gone answers nothing at all: the ping gives up on its own bound,
    // where the pool would wait 5 s for a connection.
    proxy.hang();
    for _ in 0..2 {
        let (status, retry_after, body, took) = probe("/health/ready").await;
        assert_eq!((status, retry_after), (503, true), "a silent database: {body}");
        assert!(took < Duration::from_secs(2), "bounded by the ping's wait, not the pool's: {took:?}");
        eprintln!("silent database: /health/ready answered 503 in {took:?}");
    }
    let (status, _, _, took) = probe("/health/live").await;
    assert!(status == 200 && took < Duration::from_millis(500), "live asks nothing of the database: {took:?}");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body, _) = probe("/health/ready").await;
        if status == 200 {
            assert_eq!(body["Database"], "Available", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "not ready again after the database came back: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(probe("/api").await.2["Database"], "Available");
}

#[tokio::test]
async fn terminated_postgres_connections_cost_reads_nothing_and_writes_at_most_a_503() {
    let Some(pg) = TestPg::create("faults::terminated_postgres_connections").await else { return };
    let app = Arc::new(TestApp::spawn_with(|c| c.database = pg.url.clone()).await);
    let mut admin = pg.connect().await;
    let start = Instant::now();
    let traffic = tokio::spawn(load(app.clone(), 4, start, Duration::from_secs(4)));
    while start.elapsed() < Duration::from_secs(3) {
        // What every client of a restarting server gets: "terminating connection due to
        // administrator command" (57P01) on each open connection.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut admin)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let answers = traffic.await.unwrap();
    assert_only_200_or_503(&answers);
    assert!(answers.len() > 20, "the load ran: {} answers", answers.len());
    let refused = |read: bool| answers.iter().filter(|a| a.read == read && a.status == 503).count();
    eprintln!(
        "terminated connections: {} answers; 503 to {} writes and {} reads",
        answers.len(),
        refused(false),
        refused(true)
    );
    assert_eq!(refused(true), 0, "a read whose connection was terminated runs again on a fresh one");
    assert_every_answered_task_runs(&app, &created(&answers)).await;
}

// ---------------------------------------------------------------------------------------------
// The fault suite on the real binary: real signals, two nodes on one PostgreSQL database, and a
// SQLite volume that fills up. After each case the invariants are checked in SQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::{Proc, serve_database};
use crate::runner_process;

/// Short leases so that a case takes seconds.
const RUNNER: &str =
    "[runner]\nlease = \"2s\"\nheartbeat = \"500ms\"\ngrace = \"1s\"\npoll = \"100ms\"\nstop_poll = \"100ms\"\n";

/// `work`: a program of `tenths` tenths of a second, with no restarts: a rescued run runs again
/// because a crash is not the task's failure, not because a restart allows it. `crash`: a program
/// that kills its own node (`kill -9` of its parent, batchd) every time it runs.
fn config(dir: &Path, tenths: u32) -> String {
    config_as(dir, tenths, "batchd.toml", "")
}

/// The same definitions under another file name, with `extra` in `[runner]` (e.g. an API-only node).
fn config_as(dir: &Path, tenths: u32, file: &str, extra: &str) -> String {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "{RUNNER}{extra}\n[[definition]]\nname = \"work\"\nrunner = \"command\"\n\
             command = [\"/bin/sh\", \"-c\", \"i=0; while [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done\"]\n\
             restarts = 0\nconcurrency = 8\n\n\
             [[definition]]\nname = \"crash\"\nrunner = \"command\"\n\
             command = [\"/bin/sh\", \"-c\", \"kill -9 $PPID; sleep 5\"]\nrescues = 2\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

async fn create_work(base: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(runner_process::create(base, json!({"Name": "work"})).await);
    }
    ids
}

async fn states(base: &str, ids: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let task = runner_process::get(base, &format!("/api/v1/BatchTask/{id}")).await;
        out.push(task["State"].as_str().unwrap_or("?").to_owned());
    }
    out
}

/// Waits until `count` of `ids` are in `state` (bounded).
async fn wait_for(base: &str, ids: &[i64], count: usize, state: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = states(base, ids).await;
        if now.iter().filter(|s| state.contains(&s.as_str())).count() >= count {
            return;
        }
        assert!(Instant::now() < deadline, "waited {within:?} for {count} of {ids:?} in {state:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(proc: &Proc, sig: &str) {
    let pid = proc.child.id().to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success(), "kill {sig} {pid}");
}

/// Where a case's tasks live, read the same way on either engine.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

/// What the invariants look at.
#[derive(Clone)]
struct Facts {
    /// id, state, lease expiry (µs since the epoch), stop requested
    tasks: Vec<(i64, i32, Option<i64>, bool)>,
    /// task id, to_state, reason; in the order they were written
    events: Vec<(i64, Option<i32>, String)>,
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite:{}", path.display()),
            Db::Postgres(url) => url.clone(),
        }
    }

    async fn facts(&self) -> Facts {
        const TASKS: &str = "SELECT batchtask_id, state, LEASE, stop_requested IS NOT NULL FROM batchtask ORDER BY 1";
        const EVENTS: &str =
            "SELECT batchtask_id, to_state, COALESCE(reason, '') FROM batchtaskevent ORDER BY batchtaskevent_id";
        match self {
            Db::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut tasks = conn.prepare(&TASKS.replace("LEASE", "lease_expires")).unwrap();
                let tasks = tasks
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let mut events = conn.prepare(EVENTS).unwrap();
                let events = events
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                Facts { tasks, events }
            }
            Db::Postgres(url) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let lease = "(extract(epoch FROM lease_expires) * 1000000)::int8";
                let tasks: Vec<(i32, i32, Option<i64>, bool)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(TASKS.replace("LEASE", lease)))
                        .fetch_all(&mut conn)
                        .await
                        .unwrap();
                let events: Vec<(i32, Option<i32>, String)> =
                    sqlx::query_as(EVENTS).fetch_all(&mut conn).await.unwrap();
                Facts {
                    tasks: tasks.into_iter().map(|(i, s, l, r)| (i64::from(i), s, l, r)).collect(),
                    events: events.into_iter().map(|(i, s, r)| (i64::from(i), s, r)).collect(),
                }
            }
        }
    }

    async fn assert_invariants(&self, answered: &[i64]) {
        let broken = violations(&self.facts().await, answered, chrono::Utc::now().timestamp_micros());
        assert!(broken.is_empty(), "invariants broken: {broken:#?}");
    }

    fn rescued(facts: &Facts, id: i64) -> bool {
        facts.events.iter().any(|e| e.0 == id && e.2.contains("Lease expired"))
    }
}

/// Node B is killed with running tasks; node C (on SQLite: B's restart on the same file) takes
/// them over, and each runs again to its end.
async fn kill_9_mid_run(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    // Runs of 4 s: under load, the first of the six can be a second or more ahead of the last to
    // start, and B must still be running all of them when it is killed.
    let config = config(dir.path(), 40);
    let mut b = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let ids = create_work(&b.base, 6).await;
    wait_for(&b.base, &ids, 6, &["Started"], Duration::from_secs(20)).await;
    b.child.kill().unwrap(); // SIGKILL
    b.child.wait().unwrap();
    let c = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    wait_for(&c.base, &ids, 6, &["Succeeded"], Duration::from_secs(40)).await;
    db.assert_invariants(&ids).await;
    let facts = db.facts().await;
    assert!(ids.iter().all(|id| Db::rescued(&facts, *id)), "every run of the killed node was rescued");
    for id in &ids {
        let task = runner_process::get(&c.base, &format!("/api/v1/BatchTask/{id}")).await;
        assert_eq!(task["StartCount"], 2, "run once on B, once more after the rescue: {task}");
    }
}

/// A task whose program kills its node every time: each node that takes it over dies too, until
/// the definition's `rescues` (2) crashes in a row end it `Failed`, saying so.
async fn a_task_that_crashes_its_node_every_time(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1);
    let mut node = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let id = runner_process::create(&node.base, json!({"Name": "crash"})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut nodes_killed = 0;
    let task = loop {
        assert!(Instant::now() < deadline, "the crashing task never ended ({nodes_killed} nodes killed)");
        // Either the node dies by the task's hand, or it outlives it (the task ended).
        let died = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            node.child.try_wait().unwrap().is_some()
        });
        if !died {
            let task = runner_process::get(&node.base, &format!("/api/v1/BatchTask/{id}")).await;
            if task["State"] == "Failed" {
                break task;
            }
            continue;
        }
        nodes_killed += 1;
        node = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    };
    assert_eq!(nodes_killed, 2, "two crashes in a row end it: {task}");
    assert!(task["Result"].as_str().unwrap().starts_with("Rescued 2 times in a row"), "{task}");
    assert_eq!(task["StartCount"], 2, "{task}");
    db.assert_invariants(&[id]).await;
}

#[tokio::test]
async fn fault_a_task_that_crashes_its_node_every_time_ends_failed_on_postgres() {
    let Some(pg) = TestPg::create("faults::fault_a_task_that_crashes_its_node").await else { return };
    a_task_that_crashes_its_node_every_time(Db::Postgres(pg.url.clone())).await;
}

#[tokio::test]
async fn fault_a_task_that_crashes_its_node_every_time_ends_failed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_task_that_crashes_its_node_every_time(Db::Sqlite(dir.path().join("crash.db"))).await;
}

/// A stop asked of a running task whose node dies before acting on it: the stop wins, and the
/// task is not run again. The node is frozen (SIGSTOP) so that it cannot act on the stop, which an
/// API-only node on the same database records; then it is killed.
async fn a_stop_asked_just_before_the_crash(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 600);
    let api_only = config_as(dir.path(), 600, "api.toml", "enabled = false\n");
    let mut b = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let a = serve_database(&db.url(), &[("BATCHD_CONFIG", &api_only)]);
    let id = runner_process::create(&b.base, json!({"Name": "work"})).await;
    wait_for(&b.base, &[id], 1, &["Started"], Duration::from_secs(20)).await;
    let stop = || async {
        http()
            .post(format!("{}/api/v1/BatchTask/{id}/Stop", a.base))
            .basic_auth("admin", Some("pw"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
    };
    // Frozen mid-write, B would hold the database lock and the stop would wait: thaw and retry.
    let mut recorded = false;
    for _ in 0..10 {
        signal(&b, "-STOP");
        if stop().await.is_ok_and(|r| r.status() == 200) {
            recorded = true;
            break;
        }
        signal(&b, "-CONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recorded, "the stop was recorded while B was frozen");
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    // A's rescuer finds the lease run out with a stop asked: Failed as cancelled, never run again.
    wait_for(&a.base, &[id], 1, &["Failed"], Duration::from_secs(20)).await;
    let task = runner_process::get(&a.base, &format!("/api/v1/BatchTask/{id}")).await;
    assert!(task["Result"].as_str().unwrap().starts_with("Cancelled by"), "{task}");
    assert_eq!(task["StartCount"], 1, "not run again: {task}");
    let facts = db.facts().await;
    let reasons: Vec<&str> = facts.events.iter().filter(|e| e.0 == id).map(|e| e.2.as_str()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("stop requested by")), "asked of a live run: {reasons:?}");
    assert!(reasons.last().unwrap().ends_with("did not end the run in time"), "ended by the rescuer: {reasons:?}");
    db.assert_invariants(&[id]).await;
}

#[tokio::test]
async fn fault_a_stop_asked_just_before_the_crash_wins_on_postgres() {
    let Some(pg) = TestPg::create("faults::fault_a_stop_asked_just_before_the_crash").await else { return };
    a_stop_asked_just_before_the_crash(Db::Postgres(pg.url.clone())).await;
}

#[tokio::test]
async fn fault_a_stop_asked_just_before_the_crash_wins_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_stop_asked_just_before_the_crash(Db::Sqlite(dir.path().join("stop.db"))).await;
}

#[tokio::test]
async fn fault_kill_9_of_a_postgres_node_mid_run_another_node_takes_over() {
    let Some(pg) = TestPg::create("faults::fault_kill_9_of_a_postgres_node").await else { return };
    kill_9_mid_run(Db::Postgres(pg.url.clone())).await;
}

#[tokio::test]
async fn fault_kill_9_of_a_sqlite_node_mid_run_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_mid_run(Db::Sqlite(dir.path().join("kill.db"))).await;
}

/// A node frozen past its lease (a long GC pause, a stopped VM) comes back to find its leases
/// gone: its late finishes are fenced off, and each attempt is finished once.
async fn sigstop_past_the_lease(db: Db, second_node: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 30);
    let b = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let ids = create_work(&b.base, 4).await;
    wait_for(&b.base, &ids, 4, &["Started"], Duration::from_secs(20)).await;
    let c = second_node.then(|| serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]));
    signal(&b, "-STOP");
    // lease (2 s) + heartbeat (0.5 s) + the rescuer's round, with slack; B's programs end meanwhile.
    tokio::time::sleep(Duration::from_secs(5)).await;
    signal(&b, "-CONT");
    let base = c.as_ref().map_or(b.base.clone(), |c| c.base.clone());
    wait_for(&base, &ids, 4, &["Succeeded", "Failed"], Duration::from_secs(40)).await;
    // Give B's late finishes time to arrive and be refused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.assert_invariants(&ids).await;
    if second_node {
        let facts = db.facts().await;
        assert!(ids.iter().all(|id| Db::rescued(&facts, *id)), "node C rescued the frozen node's runs");
        assert_eq!(states(&base, &ids).await, vec!["Succeeded"; 4], "the rescued runs ran again on C");
    }
}

#[tokio::test]
async fn fault_sigstop_of_a_postgres_node_past_its_lease_then_sigcont() {
    let Some(pg) = TestPg::create("faults::fault_sigstop_of_a_postgres_node").await else { return };
    sigstop_past_the_lease(Db::Postgres(pg.url.clone()), true).await;
}

#[tokio::test]
async fn fault_sigstop_of_a_sqlite_node_past_its_lease_then_sigcont() {
    let dir = tempfile::tempdir().unwrap();
    sigstop_past_the_lease(Db::Sqlite(dir.path().join("stop.db")), false).await;
}

/// No answered task lost; at most one finish per attempt; nothing Aquired or Started past its
/// lease; every stop ended in a finished state.
fn violations(facts: &Facts, answered: &[i64], now: i64) -> Vec<String> {
    let mut out = Vec::new();
    for id in answered {
        if !facts.tasks.iter().any(|t| t.0 == *id) {
            out.push(format!("task {id} was answered 200 and is gone"));
        }
    }
    let finished = |s: i32| matches!(s, 4..=6);
    for &(id, state, lease, stopped) in &facts.tasks {
        if matches!(state, 2 | 3) && !lease.is_some_and(|l| l >= now) {
            out.push(format!("task {id} is in state {state} past its lease ({lease:?})"));
        }
        if stopped && !finished(state) {
            out.push(format!("task {id} was asked to stop and is in state {state}"));
        }
        // A run begins with a move to New, Aquired or Started; it ends with at most one finish.
        let mut open = true;
        for (_, to, reason) in facts.events.iter().filter(|e| e.0 == id) {
            match to {
                Some(s) if finished(*s) => {
                    if !open {
                        out.push(format!("task {id}: a second finish for one attempt ({reason})"));
                    }
                    open = false;
                }
                Some(1..=3) => open = true,
                _ => {}
            }
        }
    }
    out
}

#[test]
fn the_invariant_checks_see_each_kind_of_breakage() {
    let ok = Facts {
        tasks: vec![(1, 4, None, false), (2, 3, Some(2_000), false), (3, 5, None, true)],
        events: vec![
            (1, Some(1), "created".into()),
            (1, Some(3), "started".into()),
            (1, Some(5), "Lease expired".into()),
            (1, Some(3), "started".into()),
            (1, Some(4), "succeeded".into()),
        ],
    };
    assert_eq!(violations(&ok, &[1, 2, 3], 1_000), Vec::<String>::new());
    assert_eq!(violations(&ok, &[1, 9], 1_000).len(), 1, "a lost task");
    assert_eq!(violations(&ok, &[1], 3_000).len(), 1, "Started past its lease");
    let mut stop = ok.tasks.clone();
    stop[0] = (1, 1, None, true);
    assert_eq!(violations(&Facts { tasks: stop, events: ok.events.clone() }, &[], 1_000).len(), 1, "a stop unfinished");
    let mut twice = ok.events.clone();
    twice.push((1, Some(5), "late finish".into()));
    assert_eq!(violations(&Facts { tasks: ok.tasks.clone(), events: twice }, &[], 1_000).len(), 1, "two finishes");
}

/// A small tmpfs, unmounted when dropped. Mounting needs root (CI runs as root); elsewhere the
/// case is skipped loudly, or fails when `BATCHD_REQUIRE_FAULTS=1`.
struct SmallVolume {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallVolume {
    fn mount(test: &str, size: &str) -> Option<SmallVolume> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(SmallVolume { path, _dir: dir });
        }
        assert!(
            !std::env::var("BATCHD_REQUIRE_FAULTS").is_ok_and(|v| v == "1"),
            "BATCHD_REQUIRE_FAULTS=1 but a tmpfs cannot be mounted here: {test} cannot run"
        );
        let line = format!("\n**** SKIPPED {test}: mounting a tmpfs needs root ****\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        None
    }

    fn available(&self) -> u64 {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(&self.path).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn fault_a_full_sqlite_volume_answers_507_keeps_reads_and_recovers_when_space_returns() {
    let Some(vol) = SmallVolume::mount("faults::fault_a_full_sqlite_volume", "8m") else { return };
    let db = Db::Sqlite(vol.path.join("batchd.db"));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1);
    let mut server = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let create = |base: String, i: usize| async move {
        let res = http()
            .post(format!("{base}/api/v1/BatchTask"))
            .basic_auth("admin", Some("pw"))
            .json(&json!({"Name": "kept", "Description": format!("task {i}"), "Request": "x".repeat(4000)}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let retry_after = res.headers().contains_key("retry-after");
        (status, retry_after, res.text().await.unwrap())
    };
    let mut answered = Vec::new();
    for i in 0..20 {
        let (status, _, body) = create(server.base.clone(), i).await;
        assert_eq!(status, 200, "{body}");
        answered.push(body.parse::<i64>().unwrap());
    }
    // Leave about 200 KB: a few dozen more tasks, then the volume is full.
    let filler = vol.path.join("filler");
    let fill = vol.available().saturating_sub(200 * 1024);
    std::fs::write(&filler, vec![0u8; usize::try_from(fill).unwrap()]).unwrap();
    let mut refusals = Vec::new();
    for i in 20..2_000 {
        let (status, retry_after, body) = create(server.base.clone(), i).await;
        match status {
            200 => answered.push(body.parse::<i64>().unwrap()),
            _ => {
                refusals.push((status, retry_after, body));
                if refusals.len() >= 5 {
                    break;
                }
            }
        }
    }
    assert!(!refusals.is_empty(), "the volume never filled up");
    eprintln!("full volume: {} tasks answered, then {:?}", answered.len(), refusals[0]);
    for (status, retry_after, body) in &refusals {
        assert_eq!(*status, 507, "a full volume is a 507: {body}");
        assert!(*retry_after, "with Retry-After");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["ErrorType"], "InsufficientStorageException", "{body}");
    }
    // Reads go on while the volume is full.
    let res = http().get(format!("{}/api/v1/BatchTask/{}", server.base, answered[0])).basic_auth("admin", Some("pw"));
    assert_eq!(res.send().await.unwrap().status(), 200);

    // Space returns: writes work again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (status, _, body) = create(server.base.clone(), 9_999).await;
    assert_eq!(status, 200, "writes resume once space returns: {body}");
    answered.push(body.parse::<i64>().unwrap());

    // And nothing answered was lost, even across a kill -9.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    db.assert_invariants(&answered).await;
    let server = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let all = crate::process::all_tasks(&server.base).await;
    assert_eq!(all.len(), answered.len(), "exactly the answered tasks exist");
}

/// The real thing: the machine's PostgreSQL restarts under load. It would break the other tests
/// sharing that server, so it runs only in the full suite (`faults/run.sh`, one test at a time).
#[tokio::test]
async fn fault_a_postgres_restart_under_load() {
    if !std::env::var("BATCHD_FAULTS_FULL").is_ok_and(|v| v == "1") {
        let line = "\n**** SKIPPED faults::fault_a_postgres_restart_under_load: restarts the shared PostgreSQL; \
                    run by faults/run.sh (BATCHD_FAULTS_FULL=1) ****\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        return;
    }
    let Some(pg) = TestPg::create("faults::fault_a_postgres_restart_under_load").await else { return };
    let app = Arc::new(TestApp::spawn_with(|c| c.database = pg.url.clone()).await);
    let start = Instant::now();
    let traffic = tokio::spawn(load(app.clone(), 4, start, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let version = std::fs::read_dir("/etc/postgresql").unwrap().next().unwrap().unwrap().file_name();
    let restarted = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version.to_string_lossy(), "main", "restart"])
        .status()
        .unwrap();
    assert!(restarted.success(), "pg_ctlcluster restart");
    let restarted_at = start.elapsed();
    let answers = traffic.await.unwrap();
    assert_only_200_or_503(&answers);
    let late = answers.iter().filter(|a| a.at > restarted_at + Duration::from_secs(2)).collect::<Vec<_>>();
    assert!(!late.is_empty() && late.iter().all(|a| a.status == 200), "service resumed after the restart: {late:?}");
    eprintln!(
        "PostgreSQL restart: {} answers, {} of them 503, restart took {:?}",
        answers.len(),
        answers.iter().filter(|a| a.status == 503).count(),
        restarted_at
    );
    assert_every_answered_task_runs(&app, &created(&answers)).await;
    Db::Postgres(pg.url.clone()).assert_invariants(&created(&answers)).await;
}

/// The machine's PostgreSQL stopped for a few seconds and started again, with an API-only node A
/// under load and a runner node B: A answers 200 or 503 (with Retry-After) and never hangs; once
/// the database is back every answered task runs, and the change feed listens again, so a create
/// on A starts on B at once while the polls are slowed to 5 s. Full suite and CI's outage step only.
#[tokio::test]
async fn fault_a_postgres_stop_and_start_with_two_nodes() {
    if !std::env::var("BATCHD_FAULTS_FULL").is_ok_and(|v| v == "1") {
        let line = "\n**** SKIPPED faults::fault_a_postgres_stop_and_start_with_two_nodes: stops the shared \
                    PostgreSQL; run by faults/run.sh and CI's outage step (BATCHD_FAULTS_FULL=1) ****\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        return;
    }
    let Some(pg) = TestPg::create("faults::fault_a_postgres_stop_and_start").await else { return };
    let a = Arc::new(crate::runner::spawn_runner_with("", feed_only_node(&pg.url, "api-only", false)).await);
    let _b = crate::runner::spawn_runner_with("", feed_only_node(&pg.url, "runner", true)).await;
    let version = std::fs::read_dir("/etc/postgresql").unwrap().next().unwrap().unwrap().file_name();
    let cluster = |action: &str| {
        let done = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version.to_string_lossy(), "main", action])
            .status()
            .unwrap();
        assert!(done.success(), "pg_ctlcluster {action}");
    };
    let start = Instant::now();
    let traffic = tokio::spawn(load(a.clone(), 2, start, Duration::from_secs(18)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster("stop");
    let stopped_at = start.elapsed();
    // Longer than a request's wait for a connection (5 s): requests must be answered 503 while
    // the database is down, not wait it out.
    tokio::time::sleep(Duration::from_secs(9)).await;
    cluster("start");
    let started_at = start.elapsed();
    let answers = traffic.await.unwrap();
    assert_only_200_or_503(&answers);
    let down = answers.iter().filter(|x| x.status == 503 && x.at > stopped_at && x.at < started_at).count();
    let unavailable = answers.iter().filter(|x| x.status == 503).count();
    let timeline: Vec<(u128, u16)> = answers.iter().map(|x| (x.at.as_millis(), x.status)).collect();
    assert!(
        down > 0 && unavailable > 0,
        "requests while the database was down ({stopped_at:?}..{started_at:?}) are answered 503: {timeline:?}"
    );
    let late: Vec<_> = answers.iter().filter(|x| x.at > started_at + Duration::from_secs(3)).collect();
    assert!(!late.is_empty() && late.iter().all(|x| x.status == 200), "service resumed: {late:?}");
    assert_every_answered_task_runs(&a, &created(&answers)).await;
    Db::Postgres(pg.url.clone()).assert_invariants(&created(&answers)).await;
    // The feed reconnected (within its 5 s pause at most): creates on A start on B at once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..10 {
        let id = a.create(&json!({"Name": "Noop"})).await;
        let t = crate::runner::wait_task(&a, id, Duration::from_secs(3), |t| t["State"] == "Succeeded").await;
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(t[k].as_str().unwrap()).unwrap();
        let wait = at("LastStarted") - at("Created");
        assert!(wait < chrono::Duration::milliseconds(100), "create on A to start on B after the outage: {wait}");
    }
    eprintln!("PostgreSQL stop and start: {} answers, {unavailable} of them 503", answers.len());
}

/// Slow clients and a connection flood while tasks run: 300 connections that dribble a header a
/// byte every 200 ms, and 300 more that connect and say nothing, against a cap of 128. The tasks
/// still end, real clients are still served once the floods time out, and the invariants hold.
#[tokio::test]
async fn fault_a_slow_client_and_connection_flood_while_tasks_run() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batchd.toml");
    let limits = "[http]\nmax_connections = 128\nheader_read_timeout = \"1s\"\nkeep_alive_timeout = \"1s\"\n";
    std::fs::write(&path, format!("{limits}{}", std::fs::read_to_string(config(dir.path(), 10)).unwrap())).unwrap();
    let db = Db::Sqlite(dir.path().join("flood.db"));
    let server = serve_database(&db.url(), &[("BATCHD_CONFIG", path.to_str().unwrap())]);
    let ids = create_work(&server.base, 8).await;
    let target = server.base.trim_start_matches("http://").to_owned();
    let start = Instant::now();
    let mut flood = Vec::new();
    for i in 0..600 {
        let target = target.clone();
        flood.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&target).await else { return };
            if i % 2 == 0 {
                for b in b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle().take(100) {
                    if s.write_all(&[*b]).await.is_err() {
                        return; // closed by the header deadline
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            } else {
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncReadExt::read(&mut s, &mut buf))
                    .await;
            }
        }));
    }
    // A real client gets through while the flood is on: the deadlines make room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res = http().get(format!("{}/api", server.base)).send().await.expect("served during the flood");
    assert_eq!(res.status(), 200);
    let served_after = start.elapsed();
    for f in flood {
        tokio::time::timeout(Duration::from_secs(25), f).await.expect("every flood connection was closed").unwrap();
    }
    let mut more = create_work(&server.base, 2).await;
    let mut all = ids.clone();
    all.append(&mut more);
    wait_for(&server.base, &all, all.len(), &["Succeeded"], Duration::from_secs(30)).await;
    db.assert_invariants(&all).await;
    eprintln!("flood: a client was served {served_after:?} into a flood of 600 connections");
}

/// Three nodes on one PostgreSQL database: B runs tasks, C runs tasks, D serves the API only. B is
/// killed: the node list (on any node) shows it not alive once its lease has passed, and every
/// task it held is rescued exactly once, by C or D, whichever saw it first, then runs again.
#[tokio::test]
async fn fault_kill_9_of_one_postgres_node_it_is_listed_dead_and_each_task_is_rescued_once() {
    let Some(pg) = TestPg::create("faults::fault_kill_9_of_one_postgres_node_listed_dead").await else { return };
    let db = Db::Postgres(pg.url.clone());
    let dir = tempfile::tempdir().unwrap();
    // Runs of 10 s: still running on B when it is killed.
    let config = config(dir.path(), 100);
    let api_only = config_as(dir.path(), 100, "api.toml", "enabled = false\n");
    let mut b = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let ids = create_work(&b.base, 6).await;
    wait_for(&b.base, &ids, 6, &["Started"], Duration::from_secs(20)).await;
    let c = serve_database(&db.url(), &[("BATCHD_CONFIG", &config)]);
    let d = serve_database(&db.url(), &[("BATCHD_CONFIG", &api_only)]);
    let address = |p: &Proc| p.base.trim_start_matches("http://").to_owned();
    let (b_at, c_at, d_at) = (address(&b), address(&c), address(&d));

    let listed = |on: String, at: String| async move {
        let list = runner_process::get(&on, "/api/v1/Nodes").await;
        list.as_array().unwrap().iter().find(|n| n["Address"] == at.as_str()).cloned()
    };
    // A node writes its row as it starts serving, just after it says where it listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let b_node = loop {
        let b_node = listed(d.base.clone(), b_at.clone()).await.expect("B is listed");
        if listed(d.base.clone(), d_at.clone()).await.is_some() && b_node["Running"].as_i64() >= Some(1) {
            break b_node;
        }
        assert!(Instant::now() < deadline, "D and B's running tasks are not listed: {b_node}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (at, enabled) in [(&b_at, true), (&c_at, true), (&d_at, false)] {
        let node = listed(d.base.clone(), at.clone()).await.unwrap_or_else(|| panic!("{at} is listed"));
        assert_eq!((&node["Alive"], &node["RunnerEnabled"]), (&json!(true), &json!(enabled)), "{node}");
    }

    b.child.kill().unwrap(); // SIGKILL: its row is never marked stopped
    b.child.wait().unwrap();
    let killed = Instant::now();
    // Alive while seen within its lease (2 s); refreshed every heartbeat (0.5 s).
    let dead_after = loop {
        let node = listed(c.base.clone(), b_at.clone()).await.expect("a killed node stays listed");
        if node["Alive"] == false {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "B still looks alive: {node}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(dead_after <= Duration::from_secs(4), "listed dead within lease + heartbeat, with slack: {dead_after:?}");
    eprintln!("kill -9: node B listed dead {dead_after:?} after the kill");
    for at in [&c_at, &d_at] {
        assert_eq!(listed(c.base.clone(), at.clone()).await.unwrap()["Alive"], true, "{at} lives on");
    }

    wait_for(&c.base, &ids, 6, &["Succeeded"], Duration::from_secs(40)).await;
    db.assert_invariants(&ids).await;
    let facts = db.facts().await;
    for id in &ids {
        let rescues = facts.events.iter().filter(|e| e.0 == *id && e.2.contains("Lease expired")).count();
        assert_eq!(rescues, 1, "task {id} is rescued exactly once: {:?}", facts.events);
    }
    // The rescuers are the survivors, whichever came first.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    let rescuers: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT node FROM batchtaskevent WHERE reason LIKE 'Lease expired%'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let b_name = b_node["Name"].as_str().unwrap();
    assert!(!rescuers.is_empty() && rescuers.iter().all(|r| r != b_name), "rescued by C or D: {rescuers:?}");
}
