//! A fresh PostgreSQL database per test, on the server `BATCHD_TEST_PG` names
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Unset: PostgreSQL tests print a loud SKIPPED line and pass. `BATCHD_REQUIRE_PG=1` (CI) turns
//! an unset variable or an unreachable server into a failure, so a green run there means the
//! PostgreSQL tests really ran.
//!
//! Also here: the identity-and-access HTTP path (tickets, tokens, sessions, the change log that
//! carries revocations between nodes) on a PostgreSQL-backed pair of servers.

use std::time::Duration;

use batchd::identity::hash_secret;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::helpers::{ADMIN, TestApp};

pub struct TestPg {
    /// URL of the fresh database, for `store::open` or `Config::database`.
    pub url: String,
    server_url: String,
    name: String,
}

fn required() -> bool {
    std::env::var("BATCHD_REQUIRE_PG").is_ok_and(|v| v == "1")
}

fn skip(test: &str, why: &str) -> Option<TestPg> {
    if required() {
        panic!("BATCHD_REQUIRE_PG=1 but {why}: PostgreSQL test {test} cannot run");
    }
    // Straight to stderr: libtest captures `eprintln!` of passing tests, and this must be seen.
    let line =
        format!("\n**** SKIPPED {test}: {why} (set BATCHD_TEST_PG=postgres://user@host:port/db to run it) ****\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

/// `postgres://u@h:p/db?x=y` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

impl TestPg {
    /// Creates `batchd_test_<random>`; `None` (after a SKIPPED line) when no server is configured.
    pub async fn create(test: &str) -> Option<TestPg> {
        let Ok(server_url) = std::env::var("BATCHD_TEST_PG") else {
            return skip(test, "BATCHD_TEST_PG is not set");
        };
        let connect = tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(&server_url)).await;
        let mut conn = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return skip(test, &format!("PostgreSQL at {server_url} is unreachable ({e})")),
            Err(_) => return skip(test, &format!("PostgreSQL at {server_url} did not answer in 15 s")),
        };
        let name = format!("batchd_test_{:016x}", rand::random::<u64>());
        // The name is ours (hex digits), never input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        Some(TestPg { url: with_database(&server_url, &name), server_url, name })
    }

    /// A plain connection to the test database, to look at rows the Store API does not show.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect to the test database")
    }
}

impl Drop for TestPg {
    /// Drops the database even when the test panicked. `WITH (FORCE)` ends the store's pooled
    /// connections; a thread of its own because the test's runtime may be shutting down.
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server_url).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

#[test]
fn database_is_replaced_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(with_database("postgresql://u:p@h/db?sslmode=disable", "x"), "postgresql://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
}

// ---------------------------------------------------------------------------------------------
// Identity and access over HTTP on PostgreSQL, across two nodes sharing one database

fn with_auth(app: &TestApp, method: Method, path: &str, authorization: &str) -> RequestBuilder {
    app.client.request(method, app.url(path)).header("Authorization", authorization)
}

async fn whoami(app: &TestApp, authorization: &str) -> Response {
    with_auth(app, Method::GET, "/api/v1/Session", authorization).send().await.unwrap()
}

async fn whoami_by_cookie(app: &TestApp, cookie: &str) -> Response {
    app.client.get(app.url("/api/v1/Session")).header("Cookie", cookie).send().await.unwrap()
}

/// Polls until `check` holds; a generous deadline, since the other node polls the change log
/// once a second on a possibly busy machine.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(conn: &mut PgConnection, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql).bind(bind).fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn tickets_tokens_and_sessions_work_across_two_nodes_on_postgres() {
    let Some(db) = TestPg::create("pg::tickets_tokens_and_sessions_work_across_two_nodes_on_postgres").await else {
        return;
    };
    let (u1, u2) = (db.url.clone(), db.url.clone());
    let a = TestApp::spawn_with(|c| c.database = u1).await;
    let b = TestApp::spawn_with(|c| c.database = u2).await;

    // An associate made on node a; a ticket from a, a token and a browser session from b.
    let res = a.post_json("/api/v1/Associate", &json!({"Name": "pia", "Password": "pw-1", "Role": "user"})).await;
    assert_eq!(res.status(), 201);
    let pia = res.json::<Value>().await.unwrap()["AssociateId"].as_i64().unwrap();
    let res = a.client.post(a.url("/api/v1/Ticket")).basic_auth("pia", Some("pw-1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ticket = res.json::<Value>().await.unwrap()["Ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("7T:"), "{ticket}");
    let res = b
        .client
        .post(b.url("/api/v1/Token"))
        .basic_auth("pia", Some("pw-1"))
        .json(&json!({"Scope": "read", "Name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let (token_id, token) = (body["TokenId"].as_i64().unwrap(), body["Token"].as_str().unwrap().to_owned());
    let res = b.client.post(b.url("/api/v1/Session")).form(&[("UserName", "pia"), ("Password", "pw-1")]).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("batchd_session="))
        .expect("session cookie");
    let (soticket, bearer) = (format!("SOTicket {ticket}"), format!("Bearer {token}"));

    // Each works on both nodes and says how it authenticated.
    for node in [&a, &b] {
        let me: Value = whoami(node, &soticket).await.json().await.unwrap();
        assert_eq!((me["Authentication"].as_str(), me["AssociateId"].as_i64()), (Some("SOTicket"), Some(pia)));
        let me: Value = whoami(node, &bearer).await.json().await.unwrap();
        assert_eq!((me["Authentication"].as_str(), me["Scope"].as_str()), (Some("Bearer"), Some("read")));
        let me: Value = whoami_by_cookie(node, &cookie).await.json().await.unwrap();
        assert_eq!((me["Authentication"].as_str(), me["Associate"].as_str()), (Some("Session"), Some("pia")));
    }
    let res = with_auth(&a, Method::POST, "/api/v1/BatchTask", &soticket).json(&json!({"Name": "hers"})).send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 200);
    let task: i64 = res.json().await.unwrap();
    let res = with_auth(&b, Method::GET, &format!("/api/v1/BatchTask/{task}"), &bearer).send().await.unwrap();
    assert_eq!(res.status(), 200, "a read token sees its associate's task on the other node");
    let res = with_auth(&b, Method::POST, "/api/v1/BatchTask", &bearer).json(&json!({"Name": "x"})).send().await;
    assert_eq!(res.unwrap().status(), 403, "a read token changes nothing");
    let listed: Value =
        with_auth(&a, Method::GET, "/api/v1/Token", &soticket).send().await.unwrap().json().await.unwrap();
    assert_eq!((listed[0]["TokenId"].as_i64(), listed[0]["Name"].as_str()), (Some(token_id), Some("ci")));

    // Only hashes are stored.
    let mut conn = db.connect().await;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM ticket WHERE secret_hash = $1", &hash_secret(&ticket)).await, 1);
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) FROM api_token WHERE secret_hash = $1", &hash_secret(&token)).await,
        1
    );
    for table in ["ticket", "api_token", "browser_session"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE strpos(secret_hash, $1) > 0");
        let found: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).bind(&token[7..]).fetch_one(&mut conn).await.unwrap();
        assert_eq!(found, 0, "{table} holds no secret");
    }

    // A password change on node a ends the ticket and the session on both nodes (on b, which
    // cached them, within a poll of the change log); the token lives on.
    let res = a.put_json(&format!("/api/v1/Associate/{pia}"), &json!({"Password": "pw-2"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(whoami(&a, &soticket).await.status(), 401, "at once on the node that made the change");
    eventually("node b drops the ticket", || async { whoami(&b, &soticket).await.status() == 401 }).await;
    eventually("node b drops the session", || async { whoami_by_cookie(&b, &cookie).await.status() == 401 }).await;
    assert_eq!(whoami_by_cookie(&a, &cookie).await.status(), 401);
    for node in [&a, &b] {
        assert_eq!(whoami(node, &bearer).await.status(), 200, "tokens outlive a password change");
    }

    // Revoking the token on node b ends it on node a too.
    let res = b.client.delete(b.url(&format!("/api/v1/Token/{token_id}"))).basic_auth("pia", Some("pw-2")).send();
    assert_eq!(res.await.unwrap().status(), 204);
    assert_eq!(whoami(&b, &bearer).await.status(), 401);
    eventually("node a drops the token", || async { whoami(&a, &bearer).await.status() == 401 }).await;

    // Logout on node b ends a fresh ticket on node a.
    let res = b.client.post(b.url("/api/v1/Ticket")).basic_auth("pia", Some("pw-2")).send().await.unwrap();
    let ticket = format!("SOTicket {}", res.json::<Value>().await.unwrap()["Ticket"].as_str().unwrap());
    assert_eq!(whoami(&a, &ticket).await.status(), 200);
    assert_eq!(with_auth(&b, Method::DELETE, "/api/v1/Ticket", &ticket).send().await.unwrap().status(), 204);
    eventually("node a drops the logged-out ticket", || async { whoami(&a, &ticket).await.status() == 401 }).await;

    // The last admin stays; pia goes with her credentials, her task stays.
    let all: Value = a.get("/api/v1/Associate").await.json().await.unwrap();
    let admin = all.as_array().unwrap().iter().find(|x| x["Name"] == ADMIN).unwrap()["AssociateId"].as_i64().unwrap();
    let res = b.request(Method::DELETE, &format!("/api/v1/Associate/{admin}")).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let res = a.put_json(&format!("/api/v1/Associate/{admin}"), &json!({"Role": "user"})).await;
    assert_eq!(res.status(), 409);
    let res = b.client.post(b.url("/api/v1/Ticket")).basic_auth("pia", Some("pw-2")).send().await.unwrap();
    let ticket = format!("SOTicket {}", res.json::<Value>().await.unwrap()["Ticket"].as_str().unwrap());
    assert_eq!(whoami(&a, &ticket).await.status(), 200);
    assert_eq!(b.request(Method::DELETE, &format!("/api/v1/Associate/{pia}")).send().await.unwrap().status(), 204);
    eventually("node a drops the removed associate's ticket", || async { whoami(&a, &ticket).await.status() == 401 })
        .await;
    for table in ["ticket", "api_token", "browser_session"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE associate_id = $1");
        let left: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).bind(pia as i32).fetch_one(&mut conn).await.unwrap();
        assert_eq!(left, 0, "{table}: credentials go with their associate");
    }
    assert_eq!(a.task(task).await["Name"], "hers");
}

// ---------------------------------------------------------------------------------------------
// The runner on PostgreSQL: several nodes share the work

/// A script that counts its running siblings through files in `dir`, records a violation when
/// more than `limit` run at once, and logs each run (to check every task ran exactly once).
fn counting_script(dir: &std::path::Path, limit: usize) -> String {
    let running = dir.join("running");
    std::fs::create_dir_all(&running).unwrap();
    let path = dir.join("count.sh");
    std::fs::write(
        &path,
        format!(
            "touch {r}/$BATCHD_TASK_ID\necho $BATCHD_TASK_ID >> {d}/runs\nn=$(ls {r} | wc -l)\n\
             [ $n -gt {limit} ] && echo $BATCHD_TASK_ID >> {d}/violations\nsleep 0.2\nrm -f {r}/$BATCHD_TASK_ID\n\
             echo progress: 100 done\necho ok\n",
            r = running.display(),
            d = dir.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn lease_node(conn: &mut PgConnection, id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT lease_node FROM batchtask WHERE batchtask_id = $1")
        .bind(id as i32)
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn two_nodes_share_the_work_on_postgres() {
    let Some(db) = TestPg::create("pg::two_nodes_share_the_work_on_postgres").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = counting_script(dir.path(), 2);
    let defs = format!(
        "[[definition]]\nname = \"limited\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{script}\"]\nconcurrency = 2\n"
    );
    let node = |name: &'static str| {
        let url = db.url.clone();
        move |c: &mut batchd::config::Config| {
            c.database = url;
            c.runner.node = Some(name.into());
            c.runner.claim_batch = 8;
        }
    };
    let a = crate::runner::spawn_runner_with(&defs, node("node-a")).await;
    let b = crate::runner::spawn_runner_with(&defs, node("node-b")).await;

    // A long Sleep to stop from the node that does not run it.
    let sleeper = a.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "60"}})).await;
    let mut ids = Vec::new();
    let mut limited = Vec::new();
    for i in 0..80 {
        let app = if i % 2 == 0 { &a } else { &b };
        let body = match i % 8 {
            0 | 1 => json!({"Name": "limited"}),
            2 => json!({"Name": "Sleep", "ParameterObject": {"Seconds": "1"}}),
            _ => json!({"Name": "Noop"}),
        };
        let id = app.create(&body).await;
        if body["Name"] == "limited" {
            limited.push(id);
        }
        ids.push(id);
    }

    let mut conn = db.connect().await;
    let started = crate::runner::wait_state(&a, sleeper, "Started").await;
    assert_eq!(started["StartCount"], 1);
    let holder = lease_node(&mut conn, sleeper).await.expect("a Started task has a lease");
    let other = if holder == "node-a" { &b } else { &a };
    let asked = std::time::Instant::now();
    let res = crate::runner::stop(other, sleeper).await;
    assert_eq!(res.json::<Value>().await.unwrap(), true);
    let t = crate::runner::wait_task(other, sleeper, Duration::from_secs(30), |t| t["State"] == "Failed").await;
    assert!(asked.elapsed() < Duration::from_secs(10), "stop took {:?}", asked.elapsed());
    assert_eq!(t["Result"], "Cancelled by admin");
    let ev = crate::runner::events(other, sleeper).await;
    assert_eq!(ev.last().unwrap()["Node"], holder.as_str(), "ended by the node running it: {ev:?}");

    for id in &ids {
        crate::runner::wait_task(&a, *id, Duration::from_secs(120), |t| t["State"] == "Succeeded").await;
    }
    assert!(!dir.path().join("violations").exists(), "more than 2 limited tasks ran at once");
    let runs = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    let mut ran: Vec<i64> = runs.lines().map(|l| l.trim().parse().unwrap()).collect();
    ran.sort_unstable();
    let mut want = limited.clone();
    want.sort_unstable();
    assert_eq!(ran, want, "every limited task ran exactly once");

    // Every task: created, claimed, started, succeeded, each move once, logged by the node.
    let mut nodes = std::collections::HashSet::new();
    for id in &ids {
        let ev = crate::runner::events(&b, *id).await;
        assert_eq!(
            crate::runner::moves(&ev),
            ["-->New", "New->Aquired", "Aquired->Started", "Started->Succeeded"],
            "task {id}: {ev:?}"
        );
        nodes.insert(ev[3]["Node"].as_str().unwrap().to_owned());
    }
    assert!(nodes.iter().all(|n| n == "node-a" || n == "node-b"), "{nodes:?}");
    let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batchtask WHERE lease_token IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(leases, 0, "no lease outlives its run");
}

#[tokio::test]
async fn a_killed_nodes_tasks_are_rescued_by_another_on_postgres() {
    let Some(db) = TestPg::create("pg::a_killed_nodes_tasks_are_rescued_by_another_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("work.sh");
    std::fs::write(&script, "sleep 1.5\necho done\n").unwrap();
    let def = format!(
        "[[definition]]\nname = \"work\"\nrunner = \"command\"\ncommand = [\"/bin/sh\", \"{}\"]\nrestarts = 2\n\
         backoff = \"100ms\"\n",
        script.display()
    );
    let config = dir.path().join("victim.toml");
    std::fs::write(
        &config,
        format!(
            "[runner]\nnode = \"victim\"\nlease = \"2s\"\nheartbeat = \"500ms\"\ngrace = \"1s\"\npoll = \"100ms\"\n\
             stop_poll = \"100ms\"\n\n{def}"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mut victim = crate::process::serve(
        &dir.path().join("unused.db"),
        &[("BATCHD_CONFIG", config.as_str()), ("BATCHD_DATABASE", db.url.as_str())],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        let res = client
            .post(format!("{}/api/v1/BatchTask", victim.base))
            .basic_auth(ADMIN, Some("pw"))
            .json(&json!({"Name": "work"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        ids.push(res.json::<i64>().await.unwrap());
    }
    let mut conn = db.connect().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batchtask WHERE lease_node = 'victim' AND state = 3")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if held >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the victim started nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.child.kill().unwrap(); // SIGKILL: no release
    victim.child.wait().unwrap();
    let killed = chrono::Utc::now();
    let held: Vec<i32> = sqlx::query_scalar("SELECT batchtask_id FROM batchtask WHERE lease_node = 'victim'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!held.is_empty(), "the killed node held leases");

    // Another node (its own name) rescues them once the leases run out, and runs them again.
    let url = db.url.clone();
    let mut rescuer = crate::runner::spawn_runner_with(&def, |c| {
        c.database = url;
        c.runner.node = Some("rescuer".into());
    })
    .await;
    rescuer.user = (ADMIN.into(), "pw".into()); // the victim made the admin
    for id in &ids {
        let t = crate::runner::wait_task(&rescuer, *id, Duration::from_secs(60), |t| {
            matches!(t["State"].as_str(), Some("Succeeded" | "Failed"))
        })
        .await;
        assert_eq!(t["State"], "Succeeded", "restarts cover the lost run: {t}");
    }
    for id in &held {
        let ev = crate::runner::events(&rescuer, i64::from(*id)).await;
        let rescue = ev
            .iter()
            .find(|e| e["Reason"].as_str().unwrap_or("").contains("Lease expired: victim"))
            .unwrap_or_else(|| panic!("task {id} was not rescued: {ev:?}"));
        assert_eq!(rescue["Node"], "rescuer");
        let at = chrono::DateTime::parse_from_rfc3339(rescue["Time"].as_str().unwrap()).unwrap();
        let after = at.with_timezone(&chrono::Utc) - killed;
        assert!(after < chrono::Duration::seconds(15), "task {id} stayed held {after} after the kill");
        let finished = crate::runner::moves(&ev).iter().filter(|m| m.ends_with("->Succeeded")).count();
        assert_eq!(finished, 1, "task {id} finished once: {ev:?}");
    }
}

/// A node on `url` whose polls are slowed to 5 s, so that only the change feed can explain a quick
/// wake-up; `runner`: whether it runs tasks (else API only).
pub fn feed_only_node(url: &str, name: &'static str, runner: bool) -> impl FnOnce(&mut batchd::config::Config) {
    let url = url.to_owned();
    move |c| {
        c.database = url;
        c.runner.node = Some(name.into());
        c.runner.enabled = runner;
        c.runner.poll = Duration::from_secs(5);
        c.runner.stop_poll = Duration::from_secs(5);
    }
}

/// The change feed across nodes: with polls slowed to 5 s, a task created on an API-only node
/// starts on the runner node at once, and a stop asked on the API node reaches the run on the
/// other, both by `LISTEN/NOTIFY`.
#[tokio::test]
async fn the_change_feed_wakes_another_node_for_creates_and_stops_on_postgres() {
    let Some(db) = TestPg::create("pg::the_change_feed_wakes_another_node").await else { return };
    let api = crate::runner::spawn_runner_with("", feed_only_node(&db.url, "api-only", false)).await;
    let worker = crate::runner::spawn_runner_with("", feed_only_node(&db.url, "worker", true)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening

    let mut waits = Vec::new();
    for _ in 0..20 {
        let id = api.create(&json!({"Name": "Noop"})).await;
        let t = crate::runner::wait_task(&api, id, Duration::from_secs(3), |t| t["State"] == "Succeeded").await;
        let created = chrono::DateTime::parse_from_rfc3339(t["Created"].as_str().unwrap()).unwrap();
        let started = chrono::DateTime::parse_from_rfc3339(t["LastStarted"].as_str().unwrap()).unwrap();
        waits.push((started - created).num_microseconds().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    waits.sort_unstable();
    // Polls are 5 s apart, so a start within a second of every create is the feed's doing; how
    // fast it is belongs to bench/peers.sh, not to a test on a shared machine.
    assert!(waits[waits.len() - 1] < 1_000_000, "create on A to start on B, µs: {waits:?}");

    let id = api.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "60"}})).await;
    crate::runner::wait_task(&api, id, Duration::from_secs(3), |t| t["State"] == "Started").await;
    let asked = std::time::Instant::now();
    assert_eq!(crate::runner::stop(&api, id).await.status(), 200);
    let t = crate::runner::wait_task(&api, id, Duration::from_secs(3), |t| t["State"] == "Failed").await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "a stop on A ended the run on B after {took:?}: {t}");
    drop(worker);
}

/// The change feed carries credential changes: with the change-log poll at a minute on both
/// nodes, a token revoked through node A stops working on node B (which had it cached) at once.
#[tokio::test]
async fn a_revocation_on_one_node_reaches_the_other_through_the_change_feed_on_postgres() {
    let Some(db) = TestPg::create("pg::a_revocation_reaches_the_other_node").await else { return };
    let node = || {
        let url = db.url.clone();
        move |c: &mut batchd::config::Config| {
            c.database = url;
            c.access.change_poll = Duration::from_secs(60);
        }
    };
    let a = TestApp::spawn_with(node()).await;
    let b = TestApp::spawn_with(node()).await;
    let res = a.post_json("/api/v1/Token", &json!({"Scope": "read", "Name": "feed"})).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let (id, bearer) = (body["TokenId"].as_i64().unwrap(), format!("Bearer {}", body["Token"].as_str().unwrap()));
    assert_eq!(whoami(&b, &bearer).await.status(), 200, "b has the token cached now");
    let revoked = std::time::Instant::now();
    let res = a.request(Method::DELETE, &format!("/api/v1/Token/{id}")).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    loop {
        if whoami(&b, &bearer).await.status() == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(2),
            "b still takes the revoked token: the feed did not tell it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// PUTs of one task through two nodes at once, none moving its state (PostgreSQL's unlocked
/// edit: read, decide, write if the version is unchanged). With If-Match on the same ETag
/// exactly one wins and every other answers 412, though all read that version before any wrote;
/// without, every PUT is applied to the version before it: distinct ETags, one per version.
#[tokio::test]
async fn concurrent_puts_of_one_task_through_two_nodes_on_postgres() {
    let Some(db) = TestPg::create("pg::concurrent_puts_of_one_task_through_two_nodes").await else { return };
    let (u1, u2) = (db.url.clone(), db.url.clone());
    let a = TestApp::spawn_with(|c| c.database = u1).await;
    let b = TestApp::spawn_with(|c| c.database = u2).await;
    const PUTS: usize = 24;
    for round in 0..3 {
        let id = a.create(&json!({"Name": "Export", "Description": "start"})).await;
        let path = format!("/api/v1/BatchTask/{id}");
        let res = b.get(&path).await;
        let etag = res.headers()["etag"].to_str().unwrap().to_owned();
        let put = |i: usize, if_match: bool| {
            let node = if i.is_multiple_of(2) { &a } else { &b };
            let mut req = node.request(Method::PUT, &path).json(&json!({"Description": format!("put {i}")}));
            if if_match {
                req = req.header("If-Match", &etag);
            }
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let tag = res.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (i, status, tag, body["Description"].as_str().map(str::to_owned))
            })
        };

        let mut answers = Vec::new();
        for h in (0..PUTS).map(|i| put(i, true)).collect::<Vec<_>>() {
            answers.push(h.await.unwrap());
        }
        let won: Vec<_> = answers.iter().filter(|a| a.1 == 200).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one PUT wins per version: {answers:?}");
        assert!(answers.iter().all(|a| a.1 == 200 || a.1 == 412), "round {round}: {answers:?}");
        let stored: Value = a.get(&path).await.json().await.unwrap();
        assert_eq!(stored["Description"].as_str(), won[0].3.as_deref(), "round {round}: the winner is stored");

        let mut tags = Vec::new();
        for h in (0..PUTS).map(|i| put(i, false)).collect::<Vec<_>>() {
            let (i, status, tag, _) = h.await.unwrap();
            assert_eq!(status, 200, "round {round}: put {i}");
            tags.push(tag.unwrap());
        }
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), PUTS, "round {round}: one version per PUT");
        let res = b.get(&path).await;
        let last = res.headers()["etag"].to_str().unwrap().to_owned();
        let version = |t: &str| t.trim_matches('"').rsplit('-').next().unwrap().parse::<i64>().unwrap();
        let first = version(&etag);
        assert_eq!(version(&last), first + 1 + PUTS as i64, "round {round}: {etag} then {last}");
    }
}
