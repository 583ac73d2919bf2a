//! The real binary: start-up, the CLI, SIGTERM, and `kill -9` losing nothing it answered.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

pub struct Proc {
    pub child: Child,
    pub base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary under test. `BATCHD_TEST_BIN` overrides it: several worktrees sharing one target
/// directory overwrite each other's `target/debug/batchd`; `deps/batchd-<hash>` is per worktree.
pub fn batchd_bin() -> String {
    std::env::var("BATCHD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_batchd").to_owned())
}

/// Starts `batchd serve` on a free port over `db`, and waits until `GET /api` answers.
pub fn serve(db: &Path, extra_env: &[(&str, &str)]) -> Proc {
    serve_with(db, extra_env, |_| {})
}

/// [`serve`], with the command changed by `tweak` first (limits, say).
pub fn serve_with(db: &Path, extra_env: &[(&str, &str)], tweak: impl FnOnce(&mut Command)) -> Proc {
    serve_database_with(&format!("sqlite:{}", db.display()), extra_env, tweak)
}

/// Starts `batchd serve` on a free port over `database` (a `sqlite:` path or a PostgreSQL URL).
pub fn serve_database(database: &str, extra_env: &[(&str, &str)]) -> Proc {
    serve_database_with(database, extra_env, |_| {})
}

fn serve_database_with(database: &str, extra_env: &[(&str, &str)], tweak: impl FnOnce(&mut Command)) -> Proc {
    start(database, extra_env, tweak, None)
}

/// Every line the server wrote on stderr so far.
pub type Stderr = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// [`serve`], keeping every line of the server's stderr.
pub fn serve_keeping_stderr(db: &Path, extra_env: &[(&str, &str)]) -> (Proc, Stderr) {
    let lines = Stderr::default();
    let proc = start(&format!("sqlite:{}", db.display()), extra_env, |_| {}, Some(lines.clone()));
    (proc, lines)
}

/// The address of the "batchd is listening" line, in either log format.
pub fn listening_addr(line: &str) -> Option<String> {
    if let Some(rest) = line.split("\"addr\":\"").nth(1) {
        return rest.split('"').next().map(str::to_owned);
    }
    line.split("addr=").nth(1).map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
}

fn start(database: &str, extra_env: &[(&str, &str)], tweak: impl FnOnce(&mut Command), keep: Option<Stderr>) -> Proc {
    let mut cmd = Command::new(batchd_bin());
    cmd.arg("serve")
        .env("BATCHD_LISTEN", "127.0.0.1:0")
        .env("BATCHD_DATABASE", database)
        .env("BATCHD_ADMIN_PASSWORD", "pw")
        .env_remove("BATCHD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    tweak(&mut cmd);
    let mut child = cmd.spawn().expect("spawn batchd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = listening_addr(&line) {
                let _ = tx.send(addr);
            }
            if let Some(keep) = &keep {
                keep.lock().unwrap().push(line);
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("batchd printed its address");
    Proc { child, base: format!("http://{addr}") }
}

/// Every user task of a server started by [`serve`], as the admin sees them.
pub async fn all_tasks(base: &str) -> Vec<serde_json::Value> {
    let res = client().get(format!("{base}/api/v1/BatchTask/All")).basic_auth("admin", Some("pw")).send().await;
    res.unwrap().json().await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn a_killed_server_loses_nothing_it_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut server = serve(&db, &[]);
    let c = client();
    let mut handles = Vec::new();
    for i in 0..40 {
        let c = c.clone();
        let base = server.base.clone();
        handles.push(tokio::spawn(async move {
            let res = c
                .post(format!("{base}/api/v1/BatchTask"))
                .basic_auth("admin", Some("pw"))
                .json(&json!({"Name": "durable", "Description": format!("task {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<i64>().await.unwrap()
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    let last = ids[0];
    let res = c
        .put(format!("{}/api/v1/BatchTask/{last}", server.base))
        .basic_auth("admin", Some("pw"))
        .json(&json!({"State": "Started", "Response": "answered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // SIGKILL: no chance to flush anything.
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = serve(&db, &[]);
    let all = all_tasks(&server.base).await;
    let mut found: Vec<i64> = all.iter().map(|t| t["Id"].as_i64().unwrap()).collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids);
    let t = all.iter().find(|t| t["Id"] == last).unwrap();
    assert_eq!(t["State"], "Started");
    assert_eq!(t["Response"], "answered");
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_the_cli_manages_associates_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let server = serve(&db, &[]);
    let base = server.base.clone();
    let c = client();

    let mut add = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(["associate", "add", "worker1", "--role", "worker", "--database"])
        .arg(format!("sqlite:{}", db.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"worker-secret\n").unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dup = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(["associate", "add", "WORKER1"])
        .env("BATCHD_DATABASE", format!("sqlite:{}", db.display()))
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(!dup.status.success(), "names are unique, case-insensitively");

    let list = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(["associate", "list"])
        .env("BATCHD_DATABASE", format!("sqlite:{}", db.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("admin") && text.contains("worker1") && text.contains("worker"), "{text}");

    let res = c
        .get(format!("{base}/api/v1/BatchTask/All"))
        .basic_auth("worker1", Some("worker-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the running server sees the new associate");

    let pid = server.child.id();
    let mut server = server;
    let started = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn first_start_without_a_password_prints_a_generated_one_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("first.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .arg("serve")
        .env("BATCHD_LISTEN", "127.0.0.1:0")
        .env("BATCHD_DATABASE", format!("sqlite:{}", db.display()))
        .env_remove("BATCHD_ADMIN_PASSWORD")
        .env_remove("BATCHD_ADMIN_USER")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut password = None;
    let mut addr = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(p) = line.split("password: ").nth(1) {
            password = Some(p.trim().to_owned());
        }
        if let Some(a) = listening_addr(&line) {
            addr = Some(a);
            break;
        }
    }
    let (password, addr) = (password.expect("password printed"), addr.expect("address printed"));
    let res = client()
        .get(format!("http://{addr}/api/v1/BatchTask/All"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    // Second start: the admin exists, nothing is printed.
    let mut second = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .arg("serve")
        .env("BATCHD_LISTEN", "127.0.0.1:0")
        .env("BATCHD_DATABASE", format!("sqlite:{}", db.display()))
        .env_remove("BATCHD_ADMIN_PASSWORD")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(second.stderr.take().unwrap()).lines().map_while(Result::ok) {
        assert!(!line.contains("password: "), "printed again: {line}");
        if listening_addr(&line).is_some() {
            break;
        }
    }
    second.kill().unwrap();
    second.wait().unwrap();
}

/// A burst of password checks (here: wrong passwords, throttling switched off) must not grow the
/// server by one argon2 working set (~19 MiB) per concurrent request.
#[tokio::test]
async fn a_burst_of_logins_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("burst.db");
    let config = dir.path().join("burst.toml");
    std::fs::write(&config, "[auth]\nfailed_logins_per_address = 100000\nfailed_logins_per_name = 100000\npassword_checks_per_address = 0\n").unwrap();
    let server = serve(&db, &[("BATCHD_CONFIG", config.to_str().unwrap())]);
    let c = client();
    let mut handles = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        let url = format!("{}/api/v1/BatchTask/All", server.base);
        handles.push(tokio::spawn(async move {
            c.get(url).basic_auth("admin", Some(format!("wrong-{i}"))).send().await.unwrap().status().as_u16()
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 401);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    // 64 concurrent checks unbounded would peak above 1 GiB; bounded by the core count, ~100 MB.
    assert!(rss_kb < 200 * 1024, "peak RSS {} MB", rss_kb / 1024);
}

/// `RssAnon` of a process, in KiB: its heap and stacks, not the binary's mapped pages.
fn anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc status")
}

/// Polls for up to `within` until the process's anonymous memory is under `kib`; the last
/// figure read.
async fn anon_settles_under(pid: u32, kib: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let now = anon_kib(pid);
        if now < kib || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// argon2 takes 19 MiB a hash or a check. The first admin's hash at start-up, and a login's
/// check later, give it back at once: the node does not sit on the peak for seconds (the
/// allocator used to keep it with the idle thread that freed it, ten seconds).
#[tokio::test]
async fn argon2_memory_goes_back_to_the_os_at_once() {
    const ONE_HASH_KIB: u64 = 19 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("argon.db"), &[]);
    let pid = server.child.id();
    // Just started: the admin was created with a hash, so the peak was there.
    let settled = anon_settles_under(pid, ONE_HASH_KIB, Duration::from_secs(2)).await;
    assert!(settled < ONE_HASH_KIB, "{} KiB of heap 2 s after start", settled);
    let c = client();
    for password in ["wrong", "pw"] {
        let res = c.get(format!("{}/api/v1/BatchTask/All", server.base)).basic_auth("admin", Some(password)).send();
        let status = res.await.unwrap().status().as_u16();
        assert_eq!(status, if password == "pw" { 200 } else { 401 });
    }
    let after = anon_settles_under(pid, settled + ONE_HASH_KIB / 2, Duration::from_secs(2)).await;
    assert!(after < settled + ONE_HASH_KIB / 2, "{settled} KiB before two password checks, {after} KiB 2 s after");
}

/// The process takes no transparent huge pages (they made whole 2 MiB of mimalloc's arena resident
/// for a few bytes used: idle RSS), unless `MIMALLOC_ALLOW_THP` asks for mimalloc's default.
#[tokio::test]
async fn the_heap_takes_no_transparent_huge_pages_unless_asked() {
    fn thp_enabled(pid: u32) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(|v| v.trim().to_owned())
    }
    // Started with THP on, whatever this test process has (a runner test turns it off here).
    fn thp_on(cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
                Ok(())
            });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(&dir.path().join("thp.db"), &[], thp_on);
    let Some(off) = thp_enabled(server.child.id()) else { return }; // a kernel before 5.0 does not say
    assert_eq!(off, "0", "THP_enabled of batchd serve");
    let asked = serve_with(&dir.path().join("thp2.db"), &[("MIMALLOC_ALLOW_THP", "1")], thp_on);
    assert_eq!(thp_enabled(asked.child.id()).as_deref(), Some("1"), "with MIMALLOC_ALLOW_THP=1");
}

/// Runs the binary to completion (killed after 20 s) and answers its exit status and stderr.
fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(batchd_bin());
    cmd.args(args).env("BATCHD_LISTEN", "127.0.0.1:0").env_remove("BATCHD_CONFIG").stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn batchd");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("batchd {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

#[test]
fn a_failed_start_does_not_print_the_database_password() {
    // A "database" that hangs up at once, so connecting fails at once (a refused connection is
    // retried until the pool's timeout).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    for url in [
        format!("postgres://u:SECRET@127.0.0.1:{port}/x"),
        format!("postgres://u@127.0.0.1:{port}/x?password=SECRET"),
        "mysql://u:SECRET@127.0.0.1/x".to_owned(),
    ] {
        for args in [&["serve"][..], &["associate", "list"]] {
            let (status, stderr) = run_to_end(args, &[("BATCHD_DATABASE", &url)]);
            assert!(!status.success(), "{args:?} {url}: {stderr}");
            assert!(!stderr.contains("SECRET"), "{args:?} printed the password: {stderr}");
            assert!(stderr.contains("127.0.0.1"), "{args:?}: the message still says which database: {stderr}");
        }
    }
}
