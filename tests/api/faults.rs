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
use crate::pg::TestPg;

/// A TCP proxy on loopback that can be cut (open connections drop, new ones are closed at once)
/// and restored.
struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, watching) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let mut down = watching.clone();
                if !*down.borrow() {
                    continue; // dropped: closed at once
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { addr, up, task }
    }
    fn cut(&self) {
        self.up.send_replace(false);
    }
    fn restore(&self) {
        self.up.send_replace(true);
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
