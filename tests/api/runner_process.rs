//! The runner in the real binary: `kill -9` mid-run and restart (every task ends, none runs twice
//! at once, nothing stays Started past lease + heartbeat), and SIGTERM (grace, then release).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::serve;

const CONFIG: &str =
    "[runner]\nlease = \"2s\"\nheartbeat = \"500ms\"\ngrace = \"1s\"\npoll = \"100ms\"\nstop_poll = \"100ms\"\n";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn create(base: &str, body: Value) -> i64 {
    let res = client()
        .post(format!("{base}/api/v1/BatchTask"))
        .basic_auth("admin", Some("pw"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

pub async fn get(base: &str, path: &str) -> Value {
    let res = client().get(format!("{base}{path}")).basic_auth("admin", Some("pw")).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

pub fn write_config(dir: &Path, extra: &str) -> String {
    let path = dir.join("batchd.toml");
    std::fs::write(&path, format!("{CONFIG}\n{extra}")).unwrap();
    path.display().to_string()
}

/// A process that exists and is not a zombie (a killed child waits to be reaped by whoever
/// inherited it, which may take a while).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != 'Z')
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn after_kill_9_and_a_restart_every_task_ends_and_none_ran_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // Each run takes a lock holding its shell's pid. Finding the lock held by a live process
    // means the task is running twice at once. A run (3.5 s) outlasts lease + heartbeat (2.5 s),
    // so a run orphaned by the kill would still hold its lock when the rescued task runs again.
    let script = dir.path().join("work.sh");
    std::fs::write(
        &script,
        format!(
            "lock={d}/lock.$BATCHD_TASK_ID\n\
             if [ -e $lock ]; then st=$(cut -d' ' -f3 /proc/$(cat $lock)/stat 2>/dev/null); \
             if [ -n \"$st\" ] && [ \"$st\" != Z ]; then echo $BATCHD_TASK_ID >> {d}/violations; fi; fi\n\
             echo $$ > $lock\n\
             echo \"$BATCHD_TASK_ID $$ $BATCHD_ATTEMPT\" >> {d}/runs\n\
             i=0; while [ $i -lt 35 ]; do sleep 0.1; i=$((i+1)); done\n\
             rm -f $lock\n"
        ),
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[definition]]\nname = \"work\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{}\"]\nrestarts = 2\nbackoff = \"100ms\"\nconcurrency = 4\n",
            script.display()
        ),
    );
    let db = dir.path().join("kill.db");
    let mut server = serve(&db, &[("BATCHD_CONFIG", &config)]);
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(create(&server.base, json!({"Name": "work"})).await);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let started = get(&server.base, "/api/v1/BatchTask/Started").await;
        if started.as_array().unwrap().len() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let killed = chrono::Utc::now();

    // The runs die with the server (PR_SET_PDEATHSIG): no orphan keeps working.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    for line in runs.lines() {
        let pid = line.split_whitespace().nth(1).unwrap();
        assert!(!alive(pid), "run {line} outlived the killed server");
    }

    let server = serve(&db, &[("BATCHD_CONFIG", &config)]);
    let deadline = Instant::now() + Duration::from_secs(90);
    for id in &ids {
        loop {
            let t = get(&server.base, &format!("/api/v1/BatchTask/{id}")).await;
            if matches!(t["State"].as_str(), Some("Succeeded" | "Failed")) {
                assert_eq!(t["State"], "Succeeded", "restarts cover one lost run: {t}");
                break;
            }
            assert!(Instant::now() < deadline, "task {id} never ended: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(!dir.path().join("violations").exists(), "a task ran twice at once");
    // Tasks the killed node held were rescued within lease (2 s) + heartbeat (0.5 s), plus slack
    // for starting the second server on a busy machine.
    let mut rescued = 0;
    for id in &ids {
        let ev = get(&server.base, &format!("/api/v1/BatchTask/{id}/Events")).await;
        for e in ev.as_array().unwrap() {
            if e["Reason"].as_str().unwrap_or("").contains("Lease expired") {
                rescued += 1;
                let after = time(&e["Time"]) - killed;
                assert!(after < chrono::Duration::seconds(6), "task {id} stayed Started {after} after the kill");
            }
        }
    }
    assert!(rescued >= 2, "the tasks running at the kill were rescued");
}

#[tokio::test]
async fn sigterm_lets_runs_finish_within_the_grace_period_then_hands_the_rest_back() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("quick.sh");
    std::fs::write(&script, "sleep 0.5\necho quick done\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[definition]]\nname = \"quick\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{}\"]\n",
            script.display()
        ),
    );
    let db = dir.path().join("term.db");
    let mut server = serve(&db, &[("BATCHD_CONFIG", &config)]);
    let long = create(&server.base, json!({"Name": "Sleep", "ParameterObject": {"Seconds": "60"}})).await;
    let quick = create(&server.base, json!({"Name": "quick"})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&server.base, &format!("/api/v1/BatchTask/{long}")).await["State"] != "Started" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= Duration::from_millis(900), "the grace period was not given: {took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let row = |id: i64| -> (i64, Option<String>, i64) {
        conn.query_row("SELECT state, lease_token, attempts FROM batchtask WHERE batchtask_id = ?", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
    };
    assert_eq!(row(quick).0, 4, "finished within the grace period: Succeeded");
    assert_eq!(row(long), (1, None, 0), "handed back: New, no lease, the attempt not counted");
    let reason: String = conn
        .query_row(
            "SELECT reason FROM batchtaskevent WHERE batchtask_id = ? ORDER BY batchtaskevent_id DESC LIMIT 1",
            [long],
            |r| r.get(0),
        )
        .unwrap();
    assert!(reason.contains("released"), "{reason}");
    drop(conn);

    // The next start picks it up at once.
    let server = serve(&db, &[("BATCHD_CONFIG", &config)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = get(&server.base, &format!("/api/v1/BatchTask/{long}")).await;
        if t["State"] == "Started" {
            assert_eq!(t["StartCount"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "not picked up again: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
