//! Runner benchmark: Noop tasks on SQLite, against the real `batchd` binary.
//!
//! Run it with `bench/run.sh` (or `cargo bench --bench runner`). Phases:
//! 1. drain: 20,000 Noop tasks created while the runner is off, then a server with the runner on
//!    drains them; throughput from the first start to the last finish (server timestamps).
//! 2. end to end: 20,000 Noop tasks created by concurrent clients while the runner runs; from the
//!    first create request to the last finish.
//! 3. latency: Noop tasks created one at a time on an idle server; `LastStarted - Created`
//!    (create-to-start), and the client's create round trip.
//! 4. memory: 10,000 Sleep tasks running at once; the server's RSS.
//!
//! Knobs (environment): BENCH_TASKS (20000), BENCH_CLIENTS (32), BENCH_LATENCY_TASKS (500),
//! BENCH_INFLIGHT (10000), BENCH_PHASES (drain,e2e,latency,memory), BENCH_MAX_RUNNING (1024; the
//! memory phase uses BENCH_INFLIGHT), BENCH_CLAIM_BATCH (512), BATCHD_BIN (the server binary;
//! default: the one cargo built).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(db: &Path, config: &str) -> Server {
        let cfg_path = db.with_extension("toml");
        std::fs::write(&cfg_path, config).unwrap();
        // BATCHD_BIN overrides the binary (worktrees sharing a target dir overwrite each other's).
        let bin = std::env::var("BATCHD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_batchd").to_owned());
        let mut child = Command::new(bin)
            .arg("serve")
            .env("BATCHD_LISTEN", "127.0.0.1:0")
            .env("BATCHD_DATABASE", format!("sqlite:{}", db.display()))
            .env("BATCHD_ADMIN_PASSWORD", "pw")
            .env("BATCHD_CONFIG", &cfg_path)
            // The address line, not a line per request or task: those would be measured too.
            .env("BATCHD_LOG", "warn,batchd=info,batchd::request=warn,batchd::task=warn")
            .env("BATCHD_LOG_FORMAT", "pretty")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn batchd");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("server: {line}");
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("batchd printed its address");
        Server { child, base: format!("http://{addr}") }
    }

    fn terminate(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// One authenticated request: the credential is then cached, so the concurrent clients that
/// follow do not all pay for (and allocate memory for) an argon2 verification at once.
async fn warm_up(base: &str) {
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{base}/api/v1/BatchTask/0"))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// Runner settings for the throughput phases (BENCH_MAX_RUNNING, BENCH_CLAIM_BATCH).
fn config(enabled: bool) -> String {
    config_with(enabled, env_usize("BENCH_MAX_RUNNING", 1024), env_usize("BENCH_CLAIM_BATCH", 512))
}

fn config_with(enabled: bool, max_running: usize, claim_batch: usize) -> String {
    format!(
        "[runner]\nenabled = {enabled}\nmax_running = {max_running}\nclaim_batch = {claim_batch}\n\n[retention]\nsucceeded = \"never\"\nfailed = \"never\"\n"
    )
}

fn db_count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn wait_count(db: &Path, sql: &str, want: i64, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if db_count(db, sql) >= want {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {want} rows: {sql}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn create_many(base: &str, n: usize, clients: usize, body: serde_json::Value) -> Duration {
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(clients).build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (client, next, base, body) = (client.clone(), next.clone(), base.to_owned(), body.clone());
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let res = client
                    .post(format!("{base}/api/v1/BatchTask"))
                    .basic_auth("admin", Some("pw"))
                    .json(&body)
                    .send()
                    .await
                    .expect("create");
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn fresh_db(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&p);
    p
}

async fn latency(dir: &Path, latency_tasks: usize, claim_on_create: bool) {
    let noop = serde_json::json!({"Name": "Noop"});
    let db = fresh_db(dir, &format!("latency-{claim_on_create}"));
    let cfg = config(true).replace("[runner]\n", &format!("[runner]\nclaim_on_create = {claim_on_create}\n"));
    let server = Server::start(&db, &cfg);
    warm_up(&server.base).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut rtt = Vec::new();
    for _ in 0..latency_tasks {
        let t = Instant::now();
        let res = client
            .post(format!("{}/api/v1/BatchTask", server.base))
            .basic_auth("admin", Some("pw"))
            .json(&noop)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        rtt.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_count(&db, "SELECT COUNT(*) FROM batchtask WHERE state = 4", latency_tasks as i64, Duration::from_secs(60));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let column = |sql: &str| -> Vec<f64> {
        let mut v: Vec<f64> = conn
            .prepare(sql)
            .unwrap()
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|v| v.unwrap() as f64 / 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let lat = column("SELECT laststarted - registered FROM batchtask");
    let run = column("SELECT updated - registered FROM batchtask");
    rtt.sort_by(f64::total_cmp);
    println!(
        "latency, claim_on_create = {claim_on_create} ({latency_tasks} tasks, one at a time): create-to-start (LastStarted - Created) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  create-to-finish (Noop's finish written) p50 {:.2} ms, p99 {:.2} ms; client create round trip p50 {:.2} ms, p99 {:.2} ms",
        percentile(&run, 0.5),
        percentile(&run, 0.99),
        percentile(&rtt, 0.5),
        percentile(&rtt, 0.99)
    );
    server.terminate();
}

#[tokio::main]
async fn main() {
    let tasks = env_usize("BENCH_TASKS", 20_000);
    let clients = env_usize("BENCH_CLIENTS", 32);
    let latency_tasks = env_usize("BENCH_LATENCY_TASKS", 500);
    let inflight = env_usize("BENCH_INFLIGHT", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let noop = serde_json::json!({"Name": "Noop"});
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("batchd runner benchmark: {tasks} tasks, {clients} clients; load average at start: {}", load.trim());

    let phases = std::env::var("BENCH_PHASES").unwrap_or_else(|_| "drain,e2e,latency,memory".into());
    let phase = |name: &str| phases.split(',').any(|p| p.trim() == name);

    // 1. Drain.
    if phase("drain") {
        let db = fresh_db(dir.path(), "drain");
        let server = Server::start(&db, &config(false));
        warm_up(&server.base).await;
        let took = create_many(&server.base, tasks, clients, noop.clone()).await;
        println!(
            "create (runner off): {tasks} tasks in {:.2} s = {:.0} creates/s",
            took.as_secs_f64(),
            tasks as f64 / took.as_secs_f64()
        );
        server.terminate();
        let launched = Instant::now();
        let server = Server::start(&db, &config(true));
        let done =
            wait_count(&db, "SELECT COUNT(*) FROM batchtask WHERE state = 4", tasks as i64, Duration::from_secs(300));
        let span_us = db_count(&db, "SELECT MAX(updated) - MIN(laststarted) FROM batchtask");
        println!(
            "drain: {tasks} tasks in {:.3} s (first start to last finish) = {:.0} tasks/s; {:.2} s wall from process launch",
            span_us as f64 / 1e6,
            tasks as f64 / (span_us as f64 / 1e6),
            done.duration_since(launched).as_secs_f64()
        );
        server.terminate();
    }

    // 2. End to end, runner on while creating.
    if phase("e2e") {
        let db = fresh_db(dir.path(), "e2e");
        let server = Server::start(&db, &config(true));
        warm_up(&server.base).await;
        let start = Instant::now();
        let took = create_many(&server.base, tasks, clients, noop.clone()).await;
        let done =
            wait_count(&db, "SELECT COUNT(*) FROM batchtask WHERE state = 4", tasks as i64, Duration::from_secs(300));
        let total = done.duration_since(start).as_secs_f64();
        println!(
            "end to end (create + run, runner on): {tasks} tasks in {total:.2} s = {:.0} tasks/s (creates done after {:.2} s)",
            tasks as f64 / total,
            took.as_secs_f64()
        );
        server.terminate();
    }

    // 3. Latency on an idle server, with and without the claim in the create transaction.
    if phase("latency") {
        for claim_on_create in [true, false] {
            latency(dir.path(), latency_tasks, claim_on_create).await;
        }
    }

    // 4. Memory with many tasks in flight.
    if phase("memory") {
        let db = fresh_db(dir.path(), "memory");
        let server = Server::start(&db, &config_with(true, inflight, 1024));
        warm_up(&server.base).await;
        let (idle_rss, _) = server.rss_kib();
        create_many(
            &server.base,
            inflight,
            clients,
            serde_json::json!({"Name": "Sleep", "ParameterObject": {"Seconds": "60"}}),
        )
        .await;
        wait_count(&db, "SELECT COUNT(*) FROM batchtask WHERE state = 3", inflight as i64, Duration::from_secs(120));
        let mut peak_rss = 0;
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(500));
            peak_rss = peak_rss.max(server.rss_kib().0);
        }
        let (_, hwm) = server.rss_kib();
        println!(
            "memory: idle RSS {:.1} MiB; {inflight} Sleep tasks running: RSS {:.1} MiB (high-water mark {:.1} MiB)",
            idle_rss as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        drop(server);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
}
