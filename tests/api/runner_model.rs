//! A model of the task life under leases, checked against the SQLite store and the PostgreSQL
//! store: random sequences of claims, starts, heartbeats, finishes, stops, rescues and clock moves
//! by three workers. After every step the store must agree with the model, and a write under a
//! token that is not the live lease must change nothing. One model and one driver, over
//! `Arc<dyn Store>`; each engine only says how a case gets an empty store.

use std::sync::Arc;
use std::time::Duration;

use batchd::domain::definition::RetryPolicy;
use batchd::domain::run::RunPolicy;
use batchd::domain::{BatchTaskState as S, NewTask};
use batchd::store::runner::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Finish, FinishOutcome, FinishResult, StopResult,
};
use batchd::store::sqlite::SqliteStore;
use batchd::store::{DefinitionRow, Store};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::pg::TestPg;

const LEASE_MS: i64 = 1000;
const STOP_GRACE_MS: i64 = 500;
const RESTARTS: i32 = 1;
/// Crashes in a row that end the task: small, so sequences reach it.
const RESCUES: u32 = 2;
const WORKERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Claim(usize),
    Start(usize),
    Beat(usize),
    Succeed(usize),
    Fail(usize),
    Release(usize),
    /// The worker's node dies: it never writes again, and its lease runs out.
    Crash(usize),
    Stop,
    Rescue,
    Advance(i64),
    RunAgain,
}

fn op() -> impl Strategy<Value = Op> {
    let w = 0..WORKERS;
    prop_oneof![
        3 => w.clone().prop_map(Op::Claim),
        2 => w.clone().prop_map(Op::Start),
        3 => w.clone().prop_map(Op::Beat),
        2 => w.clone().prop_map(Op::Succeed),
        2 => w.clone().prop_map(Op::Fail),
        1 => w.clone().prop_map(Op::Release),
        2 => w.prop_map(Op::Crash),
        1 => Just(Op::Stop),
        2 => Just(Op::Rescue),
        3 => (100i64..1500).prop_map(Op::Advance),
        1 => Just(Op::RunAgain),
    ]
}

/// What the model knows about the one task.
#[derive(Debug, Clone)]
struct Model {
    state: S,
    holder: Option<usize>,
    expires: i64,
    attempts: i32,
    /// Runs that failed on their own (what restarts count).
    failures: i32,
    /// Crashes in a row.
    rescues: u32,
    /// The live lease's token (its holder may have crashed and forgotten it).
    token: Option<String>,
    stop_at: Option<i64>,
    start_count: i32,
}

impl Model {
    /// Worker `w`, knowing `token`, holds the live lease (a crashed worker forgot its token).
    fn live(&self, w: usize, token: &Option<String>, now: i64) -> bool {
        self.state.is_active() && self.holder == Some(w) && self.expires >= now && *token == self.token
    }
    fn end_lease(&mut self) {
        self.holder = None;
        self.stop_at = None;
    }
    /// A run that failed on its own: back to New while restarts last (backoff 0 in this model).
    fn fail(&mut self, retry: bool) {
        self.end_lease();
        self.failures += 1;
        self.rescues = 0;
        self.state = if retry && self.failures <= RESTARTS { S::New } else { S::Failed };
    }
    /// A run whose lease ran out with no outcome: run again, unless it is the RESCUES-th crash in a row.
    fn crashed(&mut self) {
        self.end_lease();
        self.rescues += 1;
        self.state = if self.rescues >= RESCUES { S::Failed } else { S::New };
    }
}

fn at(base: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    base + chrono::Duration::milliseconds(ms)
}

/// One case on an empty store.
async fn run_case(store: Arc<dyn Store>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let base = Utc::now();
    store
        .upsert_definition(
            &DefinitionRow {
                name: "m".into(),
                description: None,
                runner: "external".into(),
                timeout_seconds: 0,
                restarts: RESTARTS,
                start_interval_seconds: 0,
                cancellation: Default::default(),
                concurrency: None,
            },
            base,
        )
        .await
        .unwrap();
    let policy = RunPolicy {
        retry: RetryPolicy { restarts: RESTARTS as u32, backoff: Duration::ZERO, max_backoff: Duration::ZERO },
        rescues: RESCUES,
    };
    store.set_run_policy("m", &policy).await.unwrap();
    let task =
        store.create_task(NewTask { name: "m".into(), associate_id: 1, ..NewTask::default() }, base).await.unwrap();
    let id = task.id;
    let mut m = Model {
        state: S::New,
        holder: None,
        expires: 0,
        attempts: 0,
        failures: 0,
        rescues: 0,
        token: None,
        stop_at: None,
        start_count: 0,
    };
    let mut tokens: Vec<Option<String>> = vec![None; WORKERS];
    let mut now = 0i64;
    let actor = || Actor::node("model", "test");
    let claim = ClaimRequest {
        node: "model".into(),
        lease: Duration::from_millis(LEASE_MS as u64),
        names: vec![ClaimName { name: "m".into(), concurrency: None, rate: None }],
        max: 1,
        start: false,
        associate_id: None,
    };
    let finish = |w: usize, tokens: &Vec<Option<String>>, outcome| Finish {
        id,
        token: tokens[w].clone().unwrap_or_else(|| "never-issued".into()),
        outcome,
        result: None,
        response: None,
        progress: None,
        actor: actor(),
    };

    for op in ops {
        let before = store.get_task(id).await.unwrap().unwrap();
        let t = at(base, now);
        // Whether the store must refuse this write (stale or missing token).
        let mut refused = false;
        match op.clone() {
            Op::Claim(w) => {
                let got = store.claim_tasks(&claim, t).await.unwrap();
                if m.state == S::New {
                    prop_assert_eq!(got.len(), 1, "claim of a New task");
                    tokens[w] = Some(got[0].lease.token.clone());
                    m.token = tokens[w].clone();
                    m.state = S::Aquired;
                    m.holder = Some(w);
                    m.expires = now + LEASE_MS;
                    m.attempts += 1;
                    m.stop_at = None;
                    prop_assert_eq!(got[0].lease.attempt, m.attempts);
                } else {
                    prop_assert!(got.is_empty(), "claimed a task in {:?}", m.state);
                }
            }
            Op::Start(w) => {
                let r = store.finish_tasks(vec![finish(w, &tokens, FinishOutcome::Start)], t).await.unwrap();
                if m.live(w, &tokens[w], now) {
                    prop_assert!(matches!(r[0], FinishResult::Done(_)), "write refused");
                    if m.state == S::Aquired {
                        m.state = S::Started;
                        m.start_count += 1;
                    }
                } else {
                    prop_assert_eq!(&r[0], &FinishResult::Lost);
                    refused = true;
                }
            }
            Op::Beat(w) => {
                let beat = Beat { id, token: tokens[w].clone().unwrap_or_default(), progress: None, renew: true };
                let r = store.renew_leases(vec![beat], Duration::from_millis(LEASE_MS as u64), t).await.unwrap();
                if m.live(w, &tokens[w], now) {
                    prop_assert!(matches!(r[0], BeatOutcome::Renewed { .. }), "beat refused");
                    m.expires = now + LEASE_MS;
                } else {
                    prop_assert_eq!(&r[0], &BeatOutcome::Lost);
                    refused = true;
                }
            }
            Op::Succeed(w) | Op::Fail(w) | Op::Release(w) => {
                let outcome = match op {
                    Op::Succeed(_) => FinishOutcome::Succeeded,
                    Op::Fail(_) => FinishOutcome::Failed { retry: true },
                    _ => FinishOutcome::Release,
                };
                let r = store.finish_tasks(vec![finish(w, &tokens, outcome.clone())], t).await.unwrap();
                if m.live(w, &tokens[w], now) {
                    prop_assert!(matches!(r[0], FinishResult::Done(_)), "write refused");
                    if m.state == S::Aquired && outcome != FinishOutcome::Release {
                        m.start_count += 1;
                    }
                    match outcome {
                        FinishOutcome::Succeeded => {
                            m.end_lease();
                            m.rescues = 0;
                            m.state = S::Succeeded;
                        }
                        FinishOutcome::Release => {
                            m.end_lease();
                            m.state = S::New;
                            m.attempts -= 1;
                        }
                        // A failure after a stop request is the stop: final, no retry.
                        _ => {
                            let retry = m.stop_at.is_none();
                            m.fail(retry)
                        }
                    }
                } else {
                    prop_assert_eq!(&r[0], &FinishResult::Lost);
                    refused = true;
                }
            }
            Op::Stop => {
                let r = store.request_stop(id, t, actor(), "tester".into(), Box::new(|_| Ok(()))).await.unwrap();
                if m.state.is_finished() {
                    prop_assert!(matches!(r, StopResult::Refused(_)), "stop not refused");
                } else if m.state == S::Started && m.holder.is_some() && m.expires >= now {
                    prop_assert!(matches!(r, StopResult::Requested { .. }), "{:?}", r);
                    m.stop_at.get_or_insert(now);
                } else {
                    prop_assert!(matches!(r, StopResult::Failed(_)), "{:?}", r);
                    m.end_lease();
                    m.state = S::Failed;
                }
            }
            Op::Rescue => {
                store.rescue_expired("model", t, 100, Duration::from_millis(STOP_GRACE_MS as u64)).await.unwrap();
                if m.state.is_active() && m.expires < now {
                    if m.stop_at.is_some() {
                        m.end_lease();
                        m.state = S::Failed;
                    } else {
                        m.crashed();
                    }
                } else if m.state == S::Started && m.stop_at.is_some_and(|s| s < now - STOP_GRACE_MS) {
                    m.end_lease();
                    m.state = S::Failed;
                }
            }
            Op::Crash(w) => tokens[w] = None,
            Op::Advance(ms) => now += ms,
            Op::RunAgain => {
                let r = store
                    .modify_task(
                        id,
                        t,
                        actor(),
                        Box::new(|task| {
                            let mut next = task.clone();
                            if task.state.is_finished() {
                                next.state = S::New;
                            }
                            Ok(next)
                        }),
                    )
                    .await;
                prop_assert!(r.is_ok());
                if m.state.is_finished() {
                    m.state = S::New;
                    m.attempts = 0;
                    m.failures = 0;
                    m.rescues = 0;
                }
            }
        }
        let after = store.get_task(id).await.unwrap().unwrap();
        if refused {
            prop_assert_eq!(&after, &before, "a refused write changed the task ({:?})", op);
        }
        prop_assert_eq!(after.state, m.state, "after {:?}", op);
        prop_assert_eq!(after.start_count, m.start_count, "after {:?}", op);
        let lease = store.lease_info(id).await.unwrap().unwrap();
        match m.holder {
            Some(_) if m.state.is_active() => {
                prop_assert_eq!(&lease.token, &m.token, "the holder's token is the lease");
                prop_assert_eq!(lease.stop_requested_by.is_some(), m.stop_at.is_some());
            }
            _ => prop_assert!(lease.token.is_none(), "no lease outside Aquired/Started: {:?}", lease),
        }
    }
    // The log agrees: as many arrivals in a finished state as finishes the model went through is
    // hard to track across runs-again, so check the weaker rule that every event is a real move.
    let events = store.task_events(id).await.unwrap();
    for e in &events {
        if let (Some(from), Some(to)) = (e.from, e.to) {
            prop_assert!(from != to || e.reason.as_deref().unwrap_or("").contains("stop requested"), "{:?}", e);
        }
    }
    Ok(())
}

fn shm() -> std::path::PathBuf {
    let p = std::path::Path::new("/dev/shm");
    if p.is_dir() { p.to_path_buf() } else { std::env::temp_dir() }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}

/// What `proptest!` does, by hand: the engines' tests need a runtime (and a database) that
/// outlive one case.
fn check(test: &'static str, cases: u32, case: impl Fn(Vec<Op>) -> Result<(), TestCaseError>) {
    let config = ProptestConfig {
        cases,
        test_name: Some(test),
        // Failures persist beside this file (tests/proptest-regressions/runner_model.txt), shared
        // by both engines: a sequence one engine failed is replayed on the other too.
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&ops(), case) {
        panic!("{e}\n{runner}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn runner_model_sqlite() {
    let rt = runtime();
    check("runner_model::runner_model_sqlite", 48, |ops| {
        let dir = tempfile::Builder::new().tempdir_in(shm()).unwrap();
        let store = SqliteStore::open(dir.path().join("m.db").to_str().unwrap()).expect("store opens");
        rt.block_on(run_case(Arc::new(store), ops))
    });
}

/// Found by the model: a write in the lease's last microsecond holds the lease, as the store keeps
/// instants in microseconds while `now` comes with nanoseconds.
#[test]
fn a_finish_at_the_instant_the_lease_ends_still_holds_it_on_sqlite() {
    let dir = tempfile::Builder::new().tempdir_in(shm()).unwrap();
    let store = SqliteStore::open(dir.path().join("m.db").to_str().unwrap()).expect("store opens");
    let case = vec![Op::Claim(0), Op::Advance(LEASE_MS), Op::Fail(0)];
    runtime().block_on(run_case(Arc::new(store), case)).unwrap();
}

/// Every table emptied and its identities restarted: the state the migrations leave (they insert
/// no rows). The tables come from the catalog, so one added later is emptied too.
async fn empty(conn: &mut sqlx::PgConnection) {
    let tables: String = sqlx::query_scalar(
        "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables \
         WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {tables} RESTART IDENTITY CASCADE")))
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// One database for all cases, emptied before each: a fresh database per case costs about
/// 250 ms on top of the case's 70 ms (create, migrate, drop), and makes shrinking a failure slow.
#[test]
fn runner_model_postgres() {
    let rt = runtime();
    let Some((_db, store, conn)) = rt.block_on(async {
        let db = TestPg::create("runner_model::runner_model_postgres").await?;
        let store = batchd::store::open(&db.url).await.expect("store opens");
        let conn = db.connect().await;
        Some((db, store, std::cell::RefCell::new(conn)))
    }) else {
        return;
    };
    check("runner_model::runner_model_postgres", 48, |ops| {
        rt.block_on(async {
            empty(&mut conn.borrow_mut()).await;
            run_case(store.clone(), ops).await
        })
    });
}
