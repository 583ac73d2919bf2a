//! The store contract: one set of stories, written once over `Arc<dyn Store>`, run against the
//! SQLite store and the PostgreSQL store (when `BATCHD_TEST_PG` names a server; see `pg.rs`).
//! Whatever one engine does, the other must do the same.

use std::sync::Arc;

use async_trait::async_trait;
use batchd::domain::Associate;
use batchd::domain::access::Scope;
use batchd::domain::definition::RetryPolicy;
use batchd::domain::filter;
use batchd::domain::query::Column;
use batchd::domain::run::RunPolicy;
use batchd::domain::{
    BatchTaskState, CancellationBehaviour, DomainError, NewTask, Parameters, Patch, Role, Task, TaskUpdate,
};
use batchd::store::access::{AssociateChange, CredentialKind, CredentialRow, NewCredential, RevokeTarget};
use batchd::store::runner::Actor;
use batchd::store::{
    self, AssociateSelector, DefinitionRow, ListQuery, MinuteStats, NewAssociate, Store, StoreError, TaskFilter,
};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use chrono_tz::Tz;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::pg::TestPg;

// ---------------------------------------------------------------------------------------------
// Engines

/// Looks at rows the Store API does not show (blobs, links) and moves the id sequence.
#[async_trait]
trait Probe: Send + Sync {
    /// Rows of `binaryobject` with this id.
    async fn blob_rows(&self, blob_id: i32) -> i64;
    /// Rows of `binaryobjectlink` owned by this task (table 243).
    async fn link_rows(&self, task_id: i32) -> i64;
    /// Makes the next task id `next`.
    async fn set_next_task_id(&self, next: i64);
    /// Runs a statement of the engine's SQL (test set-ups the Store API cannot make).
    async fn exec(&self, sql: &str);
    /// A time as a literal of the engine's timestamp columns.
    fn time_literal(&self, at: DateTime<Utc>) -> String;
    /// A statement that adds `n` edges naming task `after` (from task ids that do not exist).
    fn fake_dependents(&self, after: i32, n: usize) -> String;
}

struct SqliteProbe(std::path::PathBuf);

#[async_trait]
impl Probe for SqliteProbe {
    async fn blob_rows(&self, blob_id: i32) -> i64 {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        conn.query_row("SELECT COUNT(*) FROM binaryobject WHERE binaryobject_id = ?", [blob_id], |r| r.get(0)).unwrap()
    }
    async fn link_rows(&self, task_id: i32) -> i64 {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM binaryobjectlink WHERE ownertable = 243 AND ownerrecord = ?",
            [task_id],
            |r| r.get(0),
        )
        .unwrap()
    }
    async fn set_next_task_id(&self, next: i64) {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        let n = conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'batchtask'", [next - 1]).unwrap();
        assert_eq!(n, 1, "batchtask has a sequence row once a task was created");
    }
    fn time_literal(&self, at: DateTime<Utc>) -> String {
        at.timestamp_micros().to_string()
    }
    fn fake_dependents(&self, after: i32, n: usize) -> String {
        format!(
            "WITH RECURSIVE g(i) AS (SELECT 1000000 UNION ALL SELECT i + 1 FROM g WHERE i < {}) \
             INSERT INTO batchtask_after (task_id, after_id, satisfied) SELECT i, {after}, 0 FROM g",
            1_000_000 + n - 1
        )
    }
    async fn exec(&self, sql: &str) {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        conn.execute_batch(sql).unwrap();
    }
}

struct PgProbe(sqlx::PgPool);

#[async_trait]
impl Probe for PgProbe {
    async fn blob_rows(&self, blob_id: i32) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM binaryobject WHERE binaryobject_id = $1")
            .bind(blob_id)
            .fetch_one(&self.0)
            .await
            .unwrap()
    }
    async fn link_rows(&self, task_id: i32) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM binaryobjectlink WHERE ownertable = 243 AND ownerrecord = $1")
            .bind(task_id)
            .fetch_one(&self.0)
            .await
            .unwrap()
    }
    async fn set_next_task_id(&self, next: i64) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE batchtask ALTER COLUMN batchtask_id RESTART WITH {next}"
        )))
        .execute(&self.0)
        .await
        .unwrap();
    }
    fn time_literal(&self, at: DateTime<Utc>) -> String {
        format!("'{}'::timestamptz", at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
    fn fake_dependents(&self, after: i32, n: usize) -> String {
        format!(
            "INSERT INTO batchtask_after (task_id, after_id, satisfied) \
             SELECT g, {after}, false FROM generate_series(1000000, {}) g",
            1_000_000 + n - 1
        )
    }
    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&self.0).await.unwrap();
    }
}

async fn sqlite_store() -> (Arc<dyn Store>, SqliteProbe, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.db");
    let store = store::open(&format!("sqlite:{}", path.display())).await.unwrap();
    (store, SqliteProbe(path), dir)
}

async fn pg_store(db: &TestPg) -> (Arc<dyn Store>, PgProbe) {
    let store = store::open(&db.url).await.unwrap();
    let probe = PgProbe(sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&db.url).await.unwrap());
    (store, probe)
}

/// One test per story and engine, so a failure names both. The PostgreSQL half skips (or fails
/// under `BATCHD_REQUIRE_PG=1`) as every PostgreSQL test does.
macro_rules! stories {
    ($($story:ident: $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            let (store, probe, _dir) = sqlite_store().await;
            $story(store, Box::new(probe)).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let Some(db) = TestPg::create(concat!("store_contract::", stringify!($postgres))).await else { return };
            let (store, probe) = pg_store(&db).await;
            $story(store, Box::new(probe)).await;
        }
    )*};
}

stories! {
    tasks_story: sqlite_tasks_story, postgres_tasks_story;
    runner_story: sqlite_runner_story, postgres_runner_story;
    list_story: sqlite_list_story, postgres_list_story;
    associates_story: sqlite_associates_story, postgres_associates_story;
    identity_story: sqlite_identity_story, postgres_identity_story;
    nodes_story: sqlite_nodes_story, postgres_nodes_story;
    stats_story: sqlite_stats_story, postgres_stats_story;
    scheduling_story: sqlite_scheduling_story, postgres_scheduling_story;
    cron_story: sqlite_cron_story, postgres_cron_story;
    idempotency_story: sqlite_idempotency_story, postgres_idempotency_story;
    dependencies_story: sqlite_dependencies_story, postgres_dependencies_story;
}

/// A retry reads the dependencies it waits for under a share lock: a dependency's end on another
/// node (played here by a transaction that holds the row, marks it Failed and commits) is either
/// seen by the retry, or sees the retried task. Without the lock the retry read the running
/// dependency, made the task New, and the failure's transaction, not seeing it, left it New for ever.
#[tokio::test]
async fn postgres_a_retry_waits_for_a_dependency_ending_on_another_node() {
    let Some(db) = TestPg::create("store_contract::postgres_a_retry_waits_for_a_dependency").await else { return };
    let (store, probe) = pg_store(&db).await;
    let t0 = micros_now();
    let x = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    let t = store.create_task(NewTask { after: vec![x], ..task("dep", 1, None) }, t0).await.unwrap().id;
    set_state(&store, x, BatchTaskState::Failed).await;
    assert_eq!(store.get_task(t).await.unwrap().unwrap().state, BatchTaskState::Failed);
    store.retry_task(x, t0, Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
    set_state(&store, x, BatchTaskState::Started).await;
    // "Another node" finishing x: its row locked, then Failed, not yet committed.
    let mut other = probe.0.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM batchtask WHERE batchtask_id = $1 FOR UPDATE")
        .bind(x)
        .execute(&mut *other)
        .await
        .unwrap();
    sqlx::query("UPDATE batchtask SET state = 5 WHERE batchtask_id = $1").bind(x).execute(&mut *other).await.unwrap();
    let retry = tokio::spawn({
        let store = store.clone();
        async move { store.retry_task(t, micros_now(), Actor::default(), Box::new(|_| Ok(()))).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!retry.is_finished(), "the retry waits for the dependency's row");
    other.commit().await.unwrap();
    let r = retry.await.unwrap();
    assert!(
        matches!(&r, Err(StoreError::Rejected(DomainError::DependencyNotMet { after, .. })) if *after == i64::from(x)),
        "the retry saw x Failed: {r:?}"
    );
    assert_eq!(store.get_task(t).await.unwrap().unwrap().state, BatchTaskState::Failed);
}

/// A dependency's success neither waits for nor counts down a dependent that is not `New` (a
/// move of that dependent to `New` may hold its row while it waits for the dependency's: a
/// deadlock); the dependent counts what it still waits for when it enters `New`.
#[tokio::test]
async fn postgres_a_dependency_succeeding_does_not_wait_for_a_dependent_that_is_not_new() {
    let Some(db) = TestPg::create("store_contract::postgres_a_dependency_succeeding_no_wait").await else { return };
    let (store, probe) = pg_store(&db).await;
    let t0 = micros_now();
    let d = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    let e = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    let t = store.create_task(NewTask { after: vec![d, e], ..task("dep", 1, None) }, t0).await.unwrap().id;
    set_state(&store, e, BatchTaskState::Failed).await;
    assert_eq!(store.get_task(t).await.unwrap().unwrap().state, BatchTaskState::Failed);
    store.retry_task(e, t0, Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
    set_state(&store, e, BatchTaskState::Succeeded).await;
    // The failed dependent's row held elsewhere, as by a move of it to New that has not yet
    // reached its dependencies' rows.
    let mut other = probe.0.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM batchtask WHERE batchtask_id = $1 FOR UPDATE")
        .bind(t)
        .execute(&mut *other)
        .await
        .unwrap();
    let ended =
        tokio::time::timeout(std::time::Duration::from_secs(3), set_state(&store, d, BatchTaskState::Succeeded)).await;
    assert!(ended.is_ok(), "the dependency's success waited for a dependent that is not New");
    other.rollback().await.unwrap();
    // Back to New, it counts its edges: both satisfied, so it is ready at once.
    store.retry_task(t, micros_now(), Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
    let waiting: i32 = sqlx::query_scalar("SELECT waiting_on FROM batchtask WHERE batchtask_id = $1")
        .bind(t)
        .fetch_one(&probe.0)
        .await
        .unwrap();
    assert_eq!(waiting, 0, "a task made New counts its unsatisfied edges");
    assert_eq!(store.get_task(t).await.unwrap().unwrap().state, BatchTaskState::New);
}

/// The schedule's tick locks its definition row without blocking the key-share lock that a
/// create's foreign key takes on it (a task of the name being created, uncommitted, elsewhere).
#[tokio::test]
async fn postgres_a_schedule_tick_does_not_wait_for_a_create_of_its_name() {
    use batchd::domain::run::{CatchUp, Schedule};
    use batchd::store::runner::ScheduleTick;
    let Some(db) = TestPg::create("store_contract::postgres_a_schedule_tick_does_not_wait").await else { return };
    let (store, probe) = pg_store(&db).await;
    let t0 = micros_now();
    store.upsert_definition(&definition("cron", "c", 0), t0).await.unwrap();
    // An open create of a "cron" task on another connection holds FOR KEY SHARE on the row.
    let mut create = probe.0.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO batchtask (batchtaskdefinition_id, name, associate_id, state, registered, updated) \
         SELECT batchtaskdefinition_id, name, 1, 1, now(), now() FROM batchtaskdefinition WHERE name = 'cron'",
    )
    .execute(&mut *create)
    .await
    .unwrap();
    let tick = ScheduleTick {
        name: "cron".into(),
        schedule: Schedule::Every(std::time::Duration::from_secs(60)),
        skip_if_active: false,
        catch_up: CatchUp::One,
    };
    let ticked =
        tokio::time::timeout(std::time::Duration::from_secs(3), store.schedule_tick(&tick, t0, task("cron", 1, None)));
    assert!(ticked.await.is_ok(), "the tick waited for the create's key-share lock");
    let paused = tokio::time::timeout(std::time::Duration::from_secs(3), store.set_paused("cron", true));
    assert!(paused.await.is_ok(), "the pause waited for the create's key-share lock");
    create.rollback().await.unwrap();
}

#[tokio::test]
async fn sqlite_store_loses_no_concurrent_update() {
    let (store, _probe, _dir) = sqlite_store().await;
    concurrent_updates_story(vec![store]).await;
}

#[tokio::test]
async fn sqlite_store_keeps_concurrent_edits_of_many_tasks_apart() {
    let (store, _probe, _dir) = sqlite_store().await;
    mixed_concurrent_edits_story(vec![store]).await;
}

#[tokio::test]
async fn postgres_store_keeps_concurrent_edits_of_many_tasks_apart() {
    let Some(db) = TestPg::create("store_contract::postgres_store_keeps_concurrent_edits_of_many_tasks_apart").await
    else {
        return;
    };
    mixed_concurrent_edits_story(vec![store::open(&db.url).await.unwrap()]).await;
}

#[tokio::test]
async fn postgres_store_keeps_concurrent_edits_of_many_tasks_apart_across_two_nodes() {
    let Some(db) =
        TestPg::create("store_contract::postgres_store_keeps_concurrent_edits_of_many_tasks_apart_across_two_nodes")
            .await
    else {
        return;
    };
    let first = store::open(&db.url).await.unwrap();
    let second = store::open(&db.url.replacen("postgres://", "postgresql://", 1)).await.unwrap();
    mixed_concurrent_edits_story(vec![first, second]).await;
}

/// SQLite only: the writer turns off SQLite's automatic checkpoint (it would run inside a
/// commit) and a checkpoint thread copies the WAL into the database file instead. Without it the
/// database file would stay as small as the empty schema and the WAL would grow for ever.
#[tokio::test]
async fn sqlite_store_checkpoints_the_wal_into_the_database_file() {
    let (store, _probe, dir) = sqlite_store().await;
    let db = dir.path().join("contract.db");
    let empty = std::fs::metadata(&db).unwrap().len();
    // 200 tasks with an 8 KB ParameterObject each (1.6 MB), `pause` apart.
    let create_200 = |pause: std::time::Duration| {
        let store = store.clone();
        async move {
            let blob = "x".repeat(8000);
            for i in 0..200 {
                let parameters = Some(Parameters(vec![("payload".into(), format!("{i}{blob}"))]));
                store.create_task(NewTask { parameters, ..task("Checkpointed", 7, None) }, micros_now()).await.unwrap();
                tokio::time::sleep(pause).await;
            }
        }
    };
    create_200(std::time::Duration::ZERO).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&db).unwrap().len();
        if size > empty + 1_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file is still {size} bytes (empty: {empty}) 10 s after 1.6 MB of commits: no checkpoint ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The WAL is reused from its start once checkpointed: the same volume again, spread out so
    // checkpoints can keep up, does not make it grow by that volume.
    let wal_path = dir.path().join("contract.db-wal");
    let wal_before = std::fs::metadata(&wal_path).unwrap().len();
    create_200(std::time::Duration::from_millis(2)).await;
    let wal = std::fs::metadata(&wal_path).unwrap().len();
    assert!(
        wal < wal_before + 3_000_000,
        "the WAL grew from {wal_before} to {wal} bytes for the same commits again: it is not being reused"
    );
}

#[tokio::test]
async fn postgres_store_loses_no_concurrent_update_across_two_nodes() {
    let Some(db) = TestPg::create("store_contract::postgres_store_loses_no_concurrent_update_across_two_nodes").await
    else {
        return;
    };
    // Two stores (two pools) on one database: two batchd nodes. The second uses the other scheme.
    let first = store::open(&db.url).await.unwrap();
    let second = store::open(&db.url.replacen("postgres://", "postgresql://", 1)).await.unwrap();
    concurrent_updates_story(vec![first, second]).await;
}

/// Two nodes (two pools on one database) tick every cron slot at the same instant, across the
/// Oslo DST changes: each slot makes exactly one task.
#[tokio::test]
async fn postgres_cron_slots_make_one_task_across_two_nodes() {
    let Some(db) = TestPg::create("store_contract::postgres_cron_slots_make_one_task_across_two_nodes").await else {
        return;
    };
    let first = store::open(&db.url).await.unwrap();
    let second = store::open(&db.url.replacen("postgres://", "postgresql://", 1)).await.unwrap();
    cron_dst_ticks(&[first, second]).await;
}

#[tokio::test]
async fn sqlite_cron_slots_make_one_task_across_two_ticking_loops() {
    let (store, _probe, _dir) = sqlite_store().await;
    cron_dst_ticks(&[store.clone(), store]).await;
}

async fn cron_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    cron_dst_ticks(std::slice::from_ref(&store)).await;
    cron_catch_up(store).await;
}

fn cron_tick(
    name: &str,
    expr: &str,
    zone: &str,
    catch_up: batchd::domain::run::CatchUp,
) -> batchd::store::runner::ScheduleTick {
    let zone: Tz = zone.parse().unwrap();
    batchd::store::runner::ScheduleTick {
        name: name.into(),
        schedule: batchd::domain::run::Schedule::Cron(batchd::domain::cron::Cron::parse(expr, zone).unwrap()),
        skip_if_active: false,
        catch_up,
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Ticks `tick` from `from` to `to` as every node does (each at the next occurrence the store
/// answered, all at once); the instants at which tasks were created.
async fn tick_through(
    stores: &[Arc<dyn Store>],
    tick: &batchd::store::runner::ScheduleTick,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut created = Vec::new();
    let mut now = from;
    while now < to {
        let ticks = stores.iter().map(|s| s.schedule_tick(tick, now, task(&tick.name, 0, None)));
        let answers: Vec<_> = futures_util::future::join_all(ticks).await.into_iter().map(Result::unwrap).collect();
        let made = answers.iter().filter(|(t, _)| t.is_some()).count();
        assert!(made <= 1, "{} at {now}: {made} tasks for one slot", tick.name);
        if made == 1 {
            created.push(now);
        }
        let next = answers.iter().map(|(_, n)| *n).max().unwrap();
        assert!(answers.iter().all(|(_, n)| *n == next), "every node is told the same next occurrence");
        assert!(next > now);
        now = next;
    }
    created
}

async fn new_count(store: &Arc<dyn Store>, name: &str) -> i64 {
    let statuses = store.definition_statuses(None).await.unwrap();
    statuses.iter().find(|s| s.name == name).map(|s| s.counts.new).unwrap()
}

async fn cron_dst_ticks(stores: &[Arc<dyn Store>]) {
    use batchd::domain::run::CatchUp;
    let store = &stores[0];
    let t0 = micros_now();
    for name in ["spring", "autumn", "quarter"] {
        store.upsert_definition(&definition(name, "cron", 0), t0).await.unwrap();
    }
    let spring = cron_tick("spring", "30 2 * * *", "Europe/Oslo", CatchUp::One);
    let made = tick_through(stores, &spring, utc("2026-03-27T12:00:00Z"), utc("2026-03-30T12:00:00Z")).await;
    // 28 March 02:30 CET; 29 March in the gap: once, at its end (03:00 CEST); 30 March 02:30 CEST.
    assert_eq!(made, [utc("2026-03-28T01:30:00Z"), utc("2026-03-29T01:00:00Z"), utc("2026-03-30T00:30:00Z")]);
    assert_eq!(new_count(store, "spring").await, 3, "the tasks stored");
    let autumn = cron_tick("autumn", "30 2 * * *", "Europe/Oslo", CatchUp::One);
    let made = tick_through(stores, &autumn, utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z")).await;
    assert_eq!(made, [utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")], "the first 02:30 only");
    assert_eq!(new_count(store, "autumn").await, 2);
    // Every 30 minutes through the autumn night: 00:00-02:30 CEST, not 02:00-02:30 CET again,
    // then 03:00-04:30 CET (armed at 00:00 CEST, so that one makes none).
    let quarter = cron_tick("quarter", "*/30 * * * *", "Europe/Oslo", CatchUp::One);
    let made = tick_through(stores, &quarter, utc("2026-10-24T22:00:00Z"), utc("2026-10-25T04:00:00Z")).await;
    assert_eq!(made.len(), 5 + 4, "{made:?}");
    assert_eq!(new_count(store, "quarter").await, 9);
}

/// A node down from before a slot until hours after it: `one` makes one task for the missed
/// slots, `none` makes none; both then go on at the next slot.
async fn cron_catch_up(store: Arc<dyn Store>) {
    use batchd::domain::run::CatchUp;
    let t0 = micros_now();
    for name in ["late-one", "late-none"] {
        store.upsert_definition(&definition(name, "cron", 0), t0).await.unwrap();
    }
    for (name, catch_up, after_downtime) in [("late-one", CatchUp::One, 1), ("late-none", CatchUp::None, 0)] {
        let tick = cron_tick(name, "0 * * * *", "UTC", catch_up);
        let (made, armed) = store.schedule_tick(&tick, utc("2026-12-03T09:20:00Z"), task(name, 0, None)).await.unwrap();
        assert!(made.is_none());
        assert_eq!(armed, utc("2026-12-03T10:00:00Z"));
        // Back at 13:30: the 10, 11, 12 and 13 o'clock slots were missed.
        let back = utc("2026-12-03T13:30:00Z");
        let (made, next) = store.schedule_tick(&tick, back, task(name, 0, None)).await.unwrap();
        assert_eq!(made.is_some() as i64, after_downtime, "{name}");
        assert_eq!(next, utc("2026-12-03T14:00:00Z"), "{name}: on to the next future slot");
        assert_eq!(new_count(&store, name).await, after_downtime);
        let (made, _) = store.schedule_tick(&tick, back, task(name, 0, None)).await.unwrap();
        assert!(made.is_none(), "{name}: the missed slots are done with");
        let (made, _) = store.schedule_tick(&tick, next, task(name, 0, None)).await.unwrap();
        assert!(made.is_some(), "{name}: on schedule again");
        assert_eq!(new_count(&store, name).await, after_downtime + 1);
    }
}

#[tokio::test]
async fn postgres_store_commits_synchronously_whatever_the_database_default() {
    let Some(db) = TestPg::create("store_contract::postgres_store_commits_synchronously").await else { return };
    let mut conn = db.connect().await;
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut conn).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} SET synchronous_commit = off")))
        .execute(&mut conn)
        .await
        .unwrap();
    let store = batchd::store::postgres::PostgresStore::open(&db.url).await.unwrap();
    for _ in 0..3 {
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(store.pool()).await.unwrap();
        assert_eq!(setting, "on", "a 200 must mean the commit is durable");
    }
}

#[tokio::test]
async fn sqlite_store_keeps_one_active_admin_under_concurrent_changes() {
    let (store, _probe, _dir) = sqlite_store().await;
    last_admin_race_story(vec![store]).await;
}

#[tokio::test]
async fn postgres_store_keeps_one_active_admin_under_concurrent_changes_across_two_nodes() {
    let Some(db) = TestPg::create("store_contract::postgres_store_keeps_one_active_admin").await else { return };
    let first = store::open(&db.url).await.unwrap();
    let second = store::open(&db.url).await.unwrap();
    last_admin_race_story(vec![first, second]).await;
}

/// A change logged by a transaction that commits late must not be skipped by a poller that
/// already saw a later id: PostgreSQL hands out identity values before COMMIT, so the store
/// orders change-log commits with an advisory lock. Here another node's transaction holds that
/// lock with its change logged but not committed, while this node revokes a token.
#[tokio::test]
async fn postgres_change_log_ids_become_visible_in_id_order() {
    let Some(db) = TestPg::create("store_contract::postgres_change_log_ids_become_visible_in_id_order").await else {
        return;
    };
    let store = store::open(&db.url).await.unwrap();
    let now = micros_now();
    let new = |name: &str| NewAssociate { name: name.into(), password_hash: "h".into(), role: Role::User };
    let early = store.create_associate(new("early"), now).await.unwrap();
    let late = store.create_associate(new("late"), now).await.unwrap();
    let token = store
        .create_credential(
            NewCredential {
                kind: CredentialKind::Token,
                associate_id: late.id,
                secret_hash: secret_hash("late"),
                expires: None,
                scope: Some(Scope::Read),
                name: None,
            },
            now,
        )
        .await
        .unwrap();

    let mut other_node = db.connect().await;
    sqlx::query("BEGIN").execute(&mut other_node).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(batchd::store::postgres::CHANGE_LOG_LOCK)
        .execute(&mut other_node)
        .await
        .unwrap();
    sqlx::query("INSERT INTO credential_change (associate_id, registered) VALUES ($1, now())")
        .bind(early.id)
        .execute(&mut other_node)
        .await
        .unwrap();

    let revoking = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .revoke_credentials(CredentialKind::Token, RevokeTarget::Id { id: token.id, owner: None }, micros_now())
                .await
        })
    };
    // Wait (with a generous deadline) until the revocation queues on the lock.
    let mut probe = db.connect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut probe)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the revocation never waited for the change-log lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A poll now sees neither change (the later id is not committed before the earlier one).
    let (seen, who) = store.credential_changes(0).await.unwrap();
    assert_eq!((seen, who), (0, vec![]));
    sqlx::query("COMMIT").execute(&mut other_node).await.unwrap();
    assert_eq!(revoking.await.unwrap().unwrap(), 1);
    let (_, who) = store.credential_changes(seen).await.unwrap();
    assert_eq!(who, vec![early.id, late.id], "the next poll sees both, in commit order");
}

// ---------------------------------------------------------------------------------------------
// Stories

/// Now, at the stores' precision (microseconds), so stored times compare equal.
fn micros_now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn definition(name: &str, description: &str, timeout_seconds: i64) -> DefinitionRow {
    DefinitionRow {
        name: name.into(),
        description: Some(description.into()),
        runner: "noop".into(),
        timeout_seconds,
        restarts: 2,
        start_interval_seconds: 30,
        cancellation: CancellationBehaviour::CanCancel,
        concurrency: Some(3),
    }
}

fn task(name: &str, associate_id: i32, description: Option<&str>) -> NewTask {
    NewTask { name: name.into(), associate_id, description: description.map(Into::into), ..NewTask::default() }
}

fn ids(tasks: &[Task]) -> Vec<i32> {
    tasks.iter().map(|t| t.id).collect()
}

fn update(f: impl FnOnce(&mut TaskUpdate)) -> TaskUpdate {
    let mut u = TaskUpdate::default();
    f(&mut u);
    u
}

/// Create, get, find, modify, delete: the agents' and REST's single-task paths.
async fn tasks_story(store: Arc<dyn Store>, probe: Box<dyn Probe>) {
    let t0 = micros_now();

    // Create without parameters: every given field kept, the server's fields set.
    let plain = store
        .create_task(
            NewTask {
                name: "Export".into(),
                associate_id: 7,
                description: Some("first".into()),
                context: Some("ctx".into()),
                request: Some("req".into()),
                database_serial_number: Some("1305401".into()),
                details_table: 3,
                details_record: 4,
                file_name: Some("out.csv".into()),
                cancellation: CancellationBehaviour::CancelWithWarning,
                ..NewTask::default()
            },
            t0,
        )
        .await
        .unwrap();
    assert!(plain.id > 0);
    assert_eq!((plain.name.as_str(), plain.associate_id), ("Export", 7));
    assert_eq!(plain.state, BatchTaskState::New);
    assert_eq!((plain.version, plain.created, plain.updated), (1, t0, t0));
    assert_eq!((plain.details_table, plain.details_record), (3, 4), "kept when there are no parameters");
    assert_eq!(plain.parameters, None);
    assert_eq!((plain.start_count, plain.last_started, plain.progress_percent), (0, None, 0));
    assert_eq!(
        (plain.result.as_deref(), plain.response.as_deref(), plain.progress_description.as_deref()),
        (None, None, None)
    );
    assert_eq!(plain.description.as_deref(), Some("first"));
    assert_eq!(plain.context.as_deref(), Some("ctx"));
    assert_eq!(plain.request.as_deref(), Some("req"));
    assert_eq!(plain.database_serial_number.as_deref(), Some("1305401"));
    assert_eq!(plain.file_name.as_deref(), Some("out.csv"));
    assert_eq!(plain.cancellation, CancellationBehaviour::CancelWithWarning);
    assert!(!plain.is_system && !plain.is_internal);
    assert_eq!(store.get_task(plain.id).await.unwrap().as_ref(), Some(&plain), "create answers what is stored");

    // Create with parameters: a blob linked to the task (type 6, table 243); DetailsTable=205
    // (binaryobject) and DetailsRecord=the blob's id. Key order and text survive.
    let params = Parameters(vec![
        ("zeta".into(), "1".into()),
        ("alpha".into(), "two words, \"quoted\"".into()),
        ("unicodé".into(), "ü ✓ 𝄞".into()),
    ]);
    let with = store
        .create_task(
            NewTask {
                parameters: Some(params.clone()),
                details_table: 3,
                details_record: 4,
                is_internal: true,
                ..task("Import", 7, None)
            },
            t0,
        )
        .await
        .unwrap();
    assert!(with.id > plain.id, "ids grow");
    assert_eq!(with.parameters.as_ref(), Some(&params));
    assert_eq!(with.details_table, 205);
    assert!(with.details_record > 0);
    assert!(with.is_internal);
    assert_eq!(probe.blob_rows(with.details_record).await, 1);
    assert_eq!(probe.link_rows(with.id).await, 1);
    assert_eq!(store.get_task(with.id).await.unwrap().as_ref(), Some(&with));
    let keep = store
        .create_task(
            NewTask { parameters: Some(Parameters(vec![("k".into(), "v".into())])), ..task("Import", 8, None) },
            t0,
        )
        .await
        .unwrap();
    assert_ne!(keep.details_record, with.details_record, "one blob per task");

    // A system task owned by associate 7: the associate rules must still call it a system task.
    let system =
        store.create_task(NewTask { is_system: true, ..task("Cleanup", 7, Some("housekeeping")) }, t0).await.unwrap();
    assert!(system.is_system);
    let other = store.create_task(task("Export", 8, Some("second")), t0).await.unwrap();
    assert_eq!(store.get_task(other.id + 1000).await.unwrap(), None, "a missing id is None, not an error");
    // Several at once (the event stream's re-read): the rows that exist, as get_task reads them.
    let mut some = store.tasks_by_id(&[with.id, other.id + 1000, plain.id, plain.id]).await.unwrap();
    some.sort_by_key(|t| t.id);
    assert_eq!(some, [plain.clone(), with.clone()]);
    assert!(store.tasks_by_id(&[]).await.unwrap().is_empty());

    // modify_task: the change sees the stored row; the store bumps version and updated.
    let t1 = t0 + Duration::seconds(1);
    let started = store
        .modify_task(
            other.id,
            t1,
            Actor::default(),
            Box::new(move |t| {
                update(|u| {
                    u.state = Patch::Set(BatchTaskState::Started);
                    u.description = Patch::Set(Some("second, running".into()));
                })
                .apply(t, t1)
            }),
        )
        .await
        .unwrap();
    assert_eq!(started.state, BatchTaskState::Started);
    assert_eq!((started.start_count, started.last_started), (1, Some(t1)));
    assert_eq!((started.version, started.updated, started.created), (2, t1, t0));
    assert_eq!(store.get_task(other.id).await.unwrap().as_ref(), Some(&started), "modify answers what is stored");

    // Every column a change may write is written; identity columns are not.
    let t2 = t1 + Duration::seconds(1);
    let progressed = store
        .modify_task(
            other.id,
            t2,
            Actor::default(),
            Box::new(|t| {
                let mut n = t.clone();
                n.result = Some("rows: 12".into());
                n.response = Some("resp".into());
                n.request = None;
                n.progress_percent = 42;
                n.progress_description = Some("reading".into());
                n.file_name = Some("in.csv".into());
                n.name = "Renamed".into();
                n.associate_id = 99;
                n.is_system = true;
                Ok(n)
            }),
        )
        .await
        .unwrap();
    assert_eq!(progressed.version, 3);
    let stored = store.get_task(other.id).await.unwrap().unwrap();
    assert_eq!(stored.result.as_deref(), Some("rows: 12"));
    assert_eq!(stored.response.as_deref(), Some("resp"));
    assert_eq!(stored.request, None);
    assert_eq!((stored.progress_percent, stored.progress_description.as_deref()), (42, Some("reading")));
    assert_eq!(stored.file_name.as_deref(), Some("in.csv"));
    assert_eq!((stored.version, stored.updated), (3, t2));
    assert_eq!((stored.name.as_str(), stored.associate_id, stored.is_system), ("Export", 8, false));
    assert_eq!((stored.state, stored.start_count, stored.last_started), (BatchTaskState::Started, 1, Some(t1)));

    // A refused change writes nothing: same row, same version, same `updated`.
    let before = store.get_task(plain.id).await.unwrap().unwrap();
    let refused = store
        .modify_task(
            plain.id,
            t2,
            Actor::default(),
            Box::new(move |t| {
                update(|u| {
                    u.state = Patch::Set(BatchTaskState::Succeeded);
                    u.description = Patch::Set(Some("must not be stored".into()));
                })
                .apply(t, t2)
            }),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Rejected(DomainError::BadStateMove {
                from: BatchTaskState::New,
                to: BatchTaskState::Succeeded
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(store.get_task(plain.id).await.unwrap().unwrap(), before);
    let missing = store.modify_task(999_999, t2, Actor::default(), Box::new(|t| Ok(t.clone()))).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    // find_tasks: each filter field, checked against expected ids and against TaskFilter::matches.
    let all: Vec<Task> = store.find_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(ids(&all), vec![plain.id, with.id, keep.id, system.id, other.id], "every task, oldest first");
    let find = |filter: TaskFilter| {
        let store = store.clone();
        let all = all.clone();
        async move {
            let found = store.find_tasks(&filter).await.unwrap();
            let model: Vec<i32> = all.iter().filter(|t| filter.matches(t)).map(|t| t.id).collect();
            assert_eq!(ids(&found), model, "the SQL and TaskFilter::matches disagree on {filter:?}");
            ids(&found)
        }
    };
    let states = |s: &[BatchTaskState]| TaskFilter { states: Some(s.to_vec()), ..TaskFilter::default() };
    assert_eq!(find(states(&[BatchTaskState::New])).await, vec![plain.id, with.id, keep.id, system.id]);
    assert_eq!(find(states(&[BatchTaskState::Started, BatchTaskState::Failed])).await, vec![other.id]);
    assert_eq!(find(states(&[])).await, Vec::<i32>::new(), "no state, no task");
    // The metrics' counts by state agree with the rows.
    let mut counts = store.count_tasks_by_state().await.unwrap();
    counts.sort_by_key(|(s, _)| s.number());
    let mut model: Vec<(BatchTaskState, i64)> = Vec::new();
    for t in all.iter() {
        match model.iter_mut().find(|(s, _)| *s == t.state) {
            Some((_, n)) => *n += 1,
            None => model.push((t.state, 1)),
        }
    }
    model.sort_by_key(|(s, _)| s.number());
    assert_eq!(counts, model);
    let sys = |s: bool| TaskFilter { system: Some(s), ..TaskFilter::default() };
    assert_eq!(find(sys(true)).await, vec![system.id]);
    assert_eq!(find(sys(false)).await, vec![plain.id, with.id, keep.id, other.id]);
    let named = |n: &str| TaskFilter { name: Some(n.into()), ..TaskFilter::default() };
    assert_eq!(find(named("Export")).await, vec![plain.id, other.id]);
    assert_eq!(find(named("export")).await, Vec::<i32>::new(), "names match exactly");
    assert_eq!(find(named("Export\0")).await, Vec::<i32>::new(), "a NUL is no error, just no match");
    assert_eq!(AssociateSelector::from_ids(&[]), None, "an empty list selects every task");
    let assoc = |a: &[i32]| TaskFilter { associates: AssociateSelector::from_ids(a), ..TaskFilter::default() };
    assert_eq!(find(assoc(&[0])).await, vec![system.id], "0 = system tasks");
    assert_eq!(find(assoc(&[-1])).await, vec![plain.id, with.id, keep.id, other.id], "-1 = every user task");
    assert_eq!(find(assoc(&[7])).await, vec![plain.id, with.id], "7's user tasks, not the system task it owns");
    assert_eq!(find(assoc(&[0, 8])).await, vec![keep.id, system.id, other.id]);
    assert_eq!(find(assoc(&[12345])).await, Vec::<i32>::new());
    // A list of any length that fits in a body: one bound value, not one test per id (SQLite
    // refuses an expression tree over 1000 deep, PostgreSQL more than 65535 bound values).
    let many: Vec<i32> = (1..=100_000).rev().chain([8, 8]).collect();
    assert_eq!(find(assoc(&many)).await, vec![plain.id, with.id, keep.id, other.id], "100,000 ids");
    let many_with_system: Vec<i32> = (100..5_000).chain([0, 7]).collect();
    assert_eq!(find(assoc(&many_with_system)).await, vec![plain.id, with.id, system.id]);
    let owner = |o: i32| TaskFilter { owner: Some(o), ..TaskFilter::default() };
    assert_eq!(find(owner(7)).await, vec![plain.id, with.id], "owners see their user tasks only");
    assert_eq!(find(owner(8)).await, vec![keep.id, other.id]);
    let combined = TaskFilter {
        states: Some(vec![BatchTaskState::New, BatchTaskState::Started]),
        system: Some(false),
        name: Some("Export".into()),
        associates: AssociateSelector::from_ids(&[7, 8]),
        owner: Some(8),
    };
    assert_eq!(find(combined).await, vec![other.id]);

    // delete_task: a refusing guard leaves task, blob and link in place.
    let refused = store
        .delete_task(
            with.id,
            Utc::now(),
            Actor::default(),
            Box::new(|t| Err(DomainError::TaskBusy { id: t.id.into(), state: BatchTaskState::Started })),
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Rejected(DomainError::TaskBusy { .. }))), "{refused:?}");
    assert_eq!(store.get_task(with.id).await.unwrap().as_ref(), Some(&with));
    assert_eq!((probe.blob_rows(with.details_record).await, probe.link_rows(with.id).await), (1, 1));

    // The guard sees the stored row; a normal delete takes blob and links along.
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen_in_guard = seen.clone();
    store
        .delete_task(
            with.id,
            Utc::now(),
            Actor::default(),
            Box::new(move |t| {
                *seen_in_guard.lock().unwrap() = Some(t.clone());
                Ok(())
            }),
        )
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().as_ref(), Some(&with));
    assert_eq!(store.get_task(with.id).await.unwrap(), None);
    assert_eq!((probe.blob_rows(with.details_record).await, probe.link_rows(with.id).await), (0, 0));
    assert_eq!(
        store.get_task(keep.id).await.unwrap().unwrap().parameters,
        Some(Parameters(vec![("k".into(), "v".into())])),
        "another task's blob stays"
    );
    assert_eq!((probe.blob_rows(keep.details_record).await, probe.link_rows(keep.id).await), (1, 1));
    let again = store.delete_task(with.id, Utc::now(), Actor::default(), Box::new(|_| Ok(()))).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    store.delete_task(plain.id, Utc::now(), Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
    assert_eq!(ids(&store.find_tasks(&TaskFilter::default()).await.unwrap()), vec![keep.id, system.id, other.id]);

    // Ids are 32-bit: the last one is handed out, the next create fails and leaves nothing.
    probe.set_next_task_id(i64::from(i32::MAX)).await;
    let last = store.create_task(NewTask { parameters: Some(params.clone()), ..task("Last", 7, None) }, t0).await;
    assert_eq!(last.as_ref().map(|t| t.id).ok(), Some(i32::MAX), "{last:?}");
    let past = store.create_task(NewTask { parameters: Some(params), ..task("Past", 7, None) }, t0).await;
    assert!(matches!(past, Err(StoreError::Backend(_))), "{past:?}");
    assert_eq!(
        ids(&store.find_tasks(&TaskFilter::default()).await.unwrap()),
        vec![keep.id, system.id, other.id, i32::MAX],
        "the failed create left no row"
    );
}

/// The OData list: filters (parsed by domain::filter), orders, paging, owner, definition columns.
async fn list_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    let t0 = micros_now();
    let minute = Duration::minutes(1);
    store.upsert_definition(&definition("Export", "nightly export", 120), t0).await.unwrap();
    let mk = |new: NewTask, at: DateTime<Utc>| {
        let store = store.clone();
        async move { store.create_task(new, at).await.unwrap().id }
    };
    let a = mk(task("Export", 7, Some("alpha 50% done")), t0).await;
    let b = mk(task("Export", 8, Some("beta 500 rows")), t0 + minute).await;
    let c = mk(task("Import", 7, Some("Gamma_x")), t0 + minute * 2).await;
    let d = mk(NewTask { is_system: true, ..task("Cleanup", 0, None) }, t0 + minute * 3).await;
    let e = mk(task("Export", 7, Some("delta a x")), t0 + minute * 4).await;
    let t5 = t0 + minute * 5;
    store
        .modify_task(
            b,
            t5,
            Actor::default(),
            Box::new(move |t| update(|u| u.state = Patch::Set(BatchTaskState::Started)).apply(t, t5)),
        )
        .await
        .unwrap();

    let list = |filter: &str, order_by: &[(Column, bool)], top: u32, skip: u32, owner: Option<i32>| {
        let query = ListQuery {
            filter: (!filter.is_empty())
                .then(|| filter::parse(filter, Tz::UTC).unwrap_or_else(|e| panic!("{filter}: {e}"))),
            order_by: order_by.to_vec(),
            top,
            skip,
            owner,
        };
        let store = store.clone();
        async move { store.list_tasks(&query).await.unwrap_or_else(|e| panic!("{query:?}: {e}")) }
    };
    let ids_of = |rows: Vec<store::ListRow>| rows.into_iter().map(|r| r.task.id).collect::<Vec<_>>();
    let by = |filter: &'static str| {
        let list = &list;
        async move { ids_of(list(filter, &[], 100, 0, None).await) }
    };

    // Paging, in id order by default.
    assert_eq!(by("").await, vec![a, b, c, d, e]);
    assert_eq!(ids_of(list("", &[], 2, 0, None).await), vec![a, b]);
    assert_eq!(ids_of(list("", &[], 2, 2, None).await), vec![c, d]);
    assert_eq!(ids_of(list("", &[], 2, 4, None).await), vec![e]);
    assert_eq!(ids_of(list("", &[], 2, 10, None).await), Vec::<i32>::new());

    // Orders: byte order for text (capitals first), NULL lowest, ties by id.
    let ordered = |order: &'static [(Column, bool)]| {
        let list = &list;
        async move { ids_of(list("", order, 100, 0, None).await) }
    };
    assert_eq!(ordered(&[(Column::DefinitionName, false)]).await, vec![d, a, b, e, c]);
    assert_eq!(ordered(&[(Column::Description, false)]).await, vec![d, c, a, b, e], "NULL first, then 'G' < 'a'");
    assert_eq!(ordered(&[(Column::Description, true)]).await, vec![e, b, a, c, d], "NULL last when descending");
    assert_eq!(ordered(&[(Column::LastStarted, false)]).await, vec![a, c, d, e, b]);
    assert_eq!(ordered(&[(Column::LastStarted, true)]).await, vec![b, a, c, d, e]);
    assert_eq!(ordered(&[(Column::State, true)]).await, vec![b, a, c, d, e]);
    assert_eq!(ordered(&[(Column::Id, true)]).await, vec![e, d, c, b, a]);
    assert_eq!(ordered(&[(Column::DefinitionName, false), (Column::Description, true)]).await, vec![d, e, b, a, c]);
    assert_eq!(ids_of(list("", &[(Column::RegisteredDate, true)], 2, 1, None).await), vec![d, c]);

    // Text tests: LIKE wildcards in the value are literal; ASCII case is ignored; NULL is ''.
    assert_eq!(by("Description contains '50%'").await, vec![a], "'%' is literal");
    assert_eq!(by("Description contains 'a_x'").await, vec![c], "'_' is literal");
    assert_eq!(by("Description contains 'GAMMA'").await, vec![c], "case-insensitive");
    assert_eq!(by("Description begins 'ALPHA'").await, vec![a]);
    assert_eq!(by("Description endsWith 'done'").await, vec![a]);
    assert_eq!(by("Description notContains 'a'").await, vec![d], "a NULL description contains nothing");
    assert_eq!(by("Description notBegins 'b'").await, vec![a, c, d, e]);
    assert_eq!(by("Description eq 'Gamma_x'").await, vec![c]);
    assert_eq!(by("Description eq null").await, vec![d]);
    assert_eq!(by("Description ne null").await, vec![a, b, c, e]);
    assert_eq!(by("DefinitionName oneOf ('Import', 'Cleanup')").await, vec![c, d]);

    // Numbers, states, NULL in lists, dates, associates.
    assert_eq!(by("State eq 'Started'").await, vec![b]);
    assert_eq!(by("State oneOf (1, null)").await, vec![a, c, d, e], "NULL in a list matches nothing");
    assert_eq!(by("State notOneOf (3)").await, vec![a, c, d, e]);
    assert_eq!(by("State notOneOf (3, null)").await, Vec::<i32>::new(), "NOT IN with a NULL is never true");
    assert_eq!(by("DefinitionName eq 'Export' and not StartCount ge 1").await, vec![a, e]);
    assert_eq!(by("(StartCount gt 0 or DefinitionName eq 'Import') and batchTaskId ne 0").await, vec![b, c]);
    let cut = (t0 + minute * 2).to_rfc3339_opts(SecondsFormat::Micros, true);
    assert_eq!(ids_of(list(&format!("registeredDate lt '{cut}'"), &[], 100, 0, None).await), vec![a, b]);
    assert_eq!(ids_of(list(&format!("registeredDate ge '{cut}'"), &[], 100, 0, None).await), vec![c, d, e]);
    assert_eq!(ids_of(list(&format!("updatedDate gt '{cut}'"), &[], 100, 0, None).await), vec![b, d, e]);
    assert_eq!(by("LastStarted ne null").await, vec![b]);
    assert_eq!(by("registeredBy eq 8").await, vec![b]);
    assert_eq!(by("updatedBy oneOf (7, 0)").await, vec![a, c, d, e]);
    assert_eq!(by("DetailsTable eq 0 and DetailsRecord eq 0 and ProgressPercent eq 0").await, vec![a, b, c, d, e]);

    // Definition columns come from batchtaskdefinition; tasks without one have NULLs.
    assert_eq!(by("DefinitionId eq null").await, vec![c, d]);
    assert_eq!(by("DefinitionDescription begins 'Nightly'").await, vec![a, b, e]);
    assert_eq!(by("DefinitionTimeOut eq 120").await, vec![a, b, e]);
    let rows = list("", &[], 100, 0, None).await;
    let row = |id: i32| rows.iter().find(|r| r.task.id == id).unwrap().clone();
    let ra = row(a);
    assert_eq!(ra.task, store.get_task(a).await.unwrap().unwrap(), "the row's task is the stored task");
    assert!(ra.definition_id.is_some());
    assert_eq!(ra.definition_description.as_deref(), Some("nightly export"));
    assert_eq!((ra.definition_timeout, ra.registered_by, ra.updated_by), (Some(120), 7, 7));
    let rc = row(c);
    assert_eq!((rc.definition_id, rc.definition_description, rc.definition_timeout), (None, None, None));
    assert_eq!(row(b).task.state, BatchTaskState::Started);

    // Owner: that associate's user tasks only, with the filter on top.
    assert_eq!(ids_of(list("", &[], 100, 0, Some(7)).await), vec![a, c, e]);
    assert_eq!(ids_of(list("DefinitionName eq 'Export'", &[], 100, 0, Some(7)).await), vec![a, e]);
    assert_eq!(ids_of(list("", &[(Column::Id, true)], 1, 1, Some(7)).await), vec![c]);
    assert_eq!(ids_of(list("", &[], 100, 0, Some(0)).await), Vec::<i32>::new(), "system tasks have no owner");

    // upsert_definition, twice: the first links tasks created before it; the second refreshes
    // the row in place (same id).
    store.upsert_definition(&definition("Import", "imports", 30), t0).await.unwrap();
    let rows = list("", &[], 100, 0, None).await;
    let rc = rows.iter().find(|r| r.task.id == c).unwrap();
    assert!(rc.definition_id.is_some(), "a task created before its definition gets linked");
    assert_eq!(rc.definition_description.as_deref(), Some("imports"));
    let export_id = row(a).definition_id;
    store.upsert_definition(&definition("Export", "weekly export", 600), t0 + minute).await.unwrap();
    let rows = list("", &[], 100, 0, None).await;
    let ra = rows.iter().find(|r| r.task.id == a).unwrap();
    assert_eq!(ra.definition_id, export_id, "the definition keeps its id");
    assert_eq!((ra.definition_description.as_deref(), ra.definition_timeout), (Some("weekly export"), Some(600)));
    assert_eq!(by("DefinitionId eq null").await, vec![d]);
    // A task created after its definition exists points at it at once.
    let f = mk(task("Import", 9, None), t0).await;
    let rows = list(&format!("batchTaskId eq {f}"), &[], 100, 0, None).await;
    assert_eq!(rows[0].definition_id, rc.definition_id);
}

/// Associates: create, case-insensitive uniqueness, credentials, list, count.
async fn associates_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    let now = micros_now();
    let new = |name: &str, role: Role| NewAssociate { name: name.into(), password_hash: format!("hash-{name}"), role };
    assert_eq!(store.count_associates().await.unwrap(), 0);
    assert_eq!(store.list_associates().await.unwrap(), vec![]);
    assert!(store.associate_credentials("alice").await.unwrap().is_none());

    let alice = store.create_associate(new("Alice", Role::User), now).await.unwrap();
    assert!(alice.id > 0);
    assert_eq!((alice.name.as_str(), alice.role, alice.active), ("Alice", Role::User, true));
    for dup in ["Alice", "alice", "ALICE", "aLiCe"] {
        let res = store.create_associate(new(dup, Role::Admin), now).await;
        assert!(matches!(res, Err(StoreError::DuplicateName)), "{dup}: {res:?}");
    }
    let bob = store.create_associate(new("Bob", Role::Worker), now).await.unwrap();
    let root = store.create_associate(new("root", Role::Admin), now).await.unwrap();
    assert!(bob.id > alice.id && root.id > bob.id);
    // Case folds for ASCII letters only (SQLite's NOCASE; lower() under COLLATE "C").
    let zoe = store.create_associate(new("Zoë", Role::User), now).await.unwrap();
    let zoe_upper = store.create_associate(new("ZOË", Role::User), now).await.unwrap();
    let res = store.create_associate(new("zoë", Role::User), now).await;
    assert!(matches!(res, Err(StoreError::DuplicateName)), "{res:?}");
    assert_eq!(store.associate_credentials("zOë").await.unwrap().map(|c| c.associate), Some(zoe.clone()));

    let creds = store.associate_credentials("ALICE").await.unwrap().expect("found whatever the case");
    assert_eq!(creds.associate, alice);
    assert_eq!(creds.password_hash, "hash-Alice");
    let creds = store.associate_credentials("Bob").await.unwrap().unwrap();
    assert_eq!((creds.associate.role, creds.password_hash.as_str()), (Role::Worker, "hash-Bob"));
    assert!(store.associate_credentials("Alice ").await.unwrap().is_none(), "no trimming");
    assert!(store.associate_credentials("Al%").await.unwrap().is_none(), "no patterns");
    assert!(store.associate_credentials("Ali\0ce").await.unwrap().is_none(), "a NUL is no error, just no match");

    assert_eq!(store.list_associates().await.unwrap(), vec![alice, bob, root, zoe, zoe_upper]);
    assert_eq!(store.count_associates().await.unwrap(), 5, "refused inserts left nothing");
}

/// A stand-in for the hex SHA-256 of a secret: the store only compares it.
fn secret_hash(secret: &str) -> String {
    format!("{secret:0>64}")
}

/// Identity and access: associates (get, update with the password/role/active effects, the
/// last-admin rule, delete with credentials), credentials of each kind (create, find, list,
/// revoke, expired and revoked ones, purge) and the change log other servers poll.
async fn identity_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    use CredentialKind::{Session, Ticket, Token};
    let t0 = micros_now();
    let at = |s: i64| t0 + Duration::seconds(s);
    let new = |name: &str, role: Role| NewAssociate { name: name.into(), password_hash: format!("hash-{name}"), role };
    let root = store.create_associate(new("root", Role::Admin), t0).await.unwrap();
    let ann = store.create_associate(new("ann", Role::Admin), t0).await.unwrap();
    let ula = store.create_associate(new("ula", Role::User), t0).await.unwrap();
    let wim = store.create_associate(new("wim", Role::Worker), t0).await.unwrap();

    // get_associate.
    assert_eq!(store.get_associate(ula.id).await.unwrap().as_ref(), Some(&ula));
    assert_eq!(store.get_associate(root.id).await.unwrap().as_ref(), Some(&root));
    assert_eq!(store.get_associate(wim.id + 100).await.unwrap(), None, "a missing id is None, not an error");
    assert_eq!(store.credential_changes(0).await.unwrap(), (0, vec![]), "creating associates ends nothing");

    // create_credential: each kind; the answer is the stored row.
    let cred = |kind, who: &Associate, secret: &str, expires, scope, name: Option<&str>| NewCredential {
        kind,
        associate_id: who.id,
        secret_hash: secret_hash(secret),
        expires,
        scope,
        name: name.map(Into::into),
    };
    let make = |new: NewCredential| {
        let store = store.clone();
        async move { store.create_credential(new, t0).await.unwrap() }
    };
    let ticket = make(cred(Ticket, &ula, "t-ula", Some(at(3600)), None, None)).await;
    assert!(ticket.id > 0);
    assert_eq!(
        ticket,
        CredentialRow {
            kind: Ticket,
            id: ticket.id,
            associate_id: ula.id,
            associate_name: "ula".into(),
            scope: None,
            name: None,
            created: t0,
            expires: Some(at(3600)),
            revoked: None,
        }
    );
    let stale = make(cred(Ticket, &ula, "t-ula-stale", Some(at(-1)), None, None)).await;
    let bare = make(cred(Ticket, &ula, "t-ula-bare", None, Some(Scope::Admin), Some("label"))).await;
    assert_eq!(
        (bare.scope, bare.name.as_deref(), bare.expires),
        (None, None, Some(t0)),
        "tickets keep no scope or label, and always expire"
    );
    let root_ticket = make(cred(Ticket, &root, "t-root", Some(at(3600)), None, None)).await;
    let session = make(cred(Session, &ula, "s-ula", Some(at(8 * 3600)), None, Some("label"))).await;
    assert_eq!((session.kind, session.scope, session.name.as_deref()), (Session, None, None));
    assert_eq!((session.associate_name.as_str(), session.expires), ("ula", Some(at(8 * 3600))));
    let write = make(cred(Token, &ula, "k-ula-write", None, Some(Scope::Write), Some("ci"))).await;
    assert_eq!((write.scope, write.name.as_deref(), write.expires), (Some(Scope::Write), Some("ci"), None));
    let read = make(cred(Token, &ula, "k-ula-read", Some(at(30 * 86_400)), None, None)).await;
    assert_eq!(read.scope, Some(Scope::Read), "no scope = read");
    let old = make(cred(Token, &ula, "k-ula-old", Some(at(-1)), Some(Scope::Read), None)).await;
    let worker = make(cred(Token, &wim, "k-wim", None, Some(Scope::Worker), Some("runner"))).await;
    assert!(stale.id > ticket.id && bare.id > stale.id && root_ticket.id > bare.id, "ids grow");
    assert!(read.id > write.id && old.id > read.id && worker.id > old.id);
    let res = store.create_credential(cred(Ticket, &ula, "x", Some(at(60)), None, None), t0).await;
    let res2 = store
        .create_credential(NewCredential { associate_id: wim.id + 100, ..cred(Token, &ula, "y", None, None, None) }, t0)
        .await;
    assert!(res.is_ok() && matches!(res2, Err(StoreError::NotFound)), "{res2:?}");
    let extra = res.unwrap();
    let dup = store.create_credential(cred(Ticket, &root, "x", Some(at(60)), None, None), t0).await;
    assert!(dup.is_err(), "a secret hash is unique: {dup:?}");
    assert!(!matches!(dup, Err(StoreError::NotFound)));
    assert_eq!(store.revoke_credentials(Ticket, RevokeTarget::Id { id: extra.id, owner: None }, t0).await.unwrap(), 1);

    // find_credential: by hash, within its kind, expired and revoked ones too, with the associate.
    let find = |kind, secret: &str| {
        let store = store.clone();
        let hash = secret_hash(secret);
        async move { store.find_credential(kind, &hash).await.unwrap() }
    };
    for (kind, secret, row, who) in [
        (Ticket, "t-ula", &ticket, &ula),
        (Ticket, "t-ula-stale", &stale, &ula),
        (Ticket, "t-root", &root_ticket, &root),
        (Session, "s-ula", &session, &ula),
        (Token, "k-ula-write", &write, &ula),
        (Token, "k-ula-old", &old, &ula),
        (Token, "k-wim", &worker, &wim),
    ] {
        let m = find(kind, secret).await.unwrap_or_else(|| panic!("{secret} not found"));
        assert_eq!((&m.row, &m.associate), (row, who), "{secret}");
    }
    assert!(!find(Ticket, "t-ula-stale").await.unwrap().row.is_live(t0), "an expired ticket is found, not live");
    assert_eq!(find(Token, "t-ula").await, None, "a ticket is no token");
    assert_eq!(find(Session, "t-ula").await, None);
    assert_eq!(find(Ticket, "unknown").await, None);
    assert_eq!(store.find_credential(Ticket, "ab\0cd").await.unwrap(), None, "a NUL is no error, just no match");

    // list_credentials: newest first, all or one associate's.
    let list = |kind, who: Option<i32>| {
        let store = store.clone();
        async move { store.list_credentials(kind, who).await.unwrap() }
    };
    let revoked_extra = CredentialRow { revoked: Some(t0), ..extra.clone() };
    assert_eq!(
        list(Ticket, None).await,
        vec![revoked_extra, root_ticket.clone(), bare.clone(), stale.clone(), ticket.clone()]
    );
    assert_eq!(list(Ticket, Some(root.id)).await, vec![root_ticket.clone()]);
    assert_eq!(list(Token, None).await, vec![worker.clone(), old.clone(), read.clone(), write.clone()]);
    assert_eq!(list(Token, Some(wim.id)).await, vec![worker.clone()]);
    assert_eq!(list(Session, Some(ula.id)).await, vec![session.clone()]);
    assert_eq!(list(Session, Some(root.id)).await, vec![]);
    assert_eq!(list(Token, Some(wim.id + 100)).await, vec![]);
    let (c0, who) = store.credential_changes(0).await.unwrap();
    assert!(c0 > 0, "the revocation above was logged");
    assert_eq!(who, vec![ula.id]);

    // revoke_credentials: by id (owner-checked), by hash, all of one; only live rows count.
    let revoke = |kind, target, at| {
        let store = store.clone();
        async move { store.revoke_credentials(kind, target, at).await.unwrap() }
    };
    let t1 = at(1);
    assert_eq!(revoke(Token, RevokeTarget::Id { id: write.id, owner: Some(wim.id) }, t1).await, 0, "not his");
    assert_eq!(find(Token, "k-ula-write").await.unwrap().row.revoked, None);
    assert_eq!(store.credential_changes(c0).await.unwrap(), (c0, vec![]), "nothing revoked, nothing logged");
    assert_eq!(revoke(Token, RevokeTarget::Id { id: write.id, owner: Some(ula.id) }, t1).await, 1);
    assert_eq!(revoke(Token, RevokeTarget::Id { id: write.id, owner: None }, at(9)).await, 0, "already revoked");
    assert_eq!(revoke(Token, RevokeTarget::Id { id: 999_999, owner: None }, t1).await, 0);
    assert_eq!(revoke(Ticket, RevokeTarget::Hash(secret_hash("t-root")), t1).await, 1);
    assert_eq!(revoke(Ticket, RevokeTarget::Hash(secret_hash("nope")), t1).await, 0);
    assert_eq!(revoke(Ticket, RevokeTarget::Hash("ab\0cd".into()), t1).await, 0);
    assert_eq!(revoke(Session, RevokeTarget::AllOf(wim.id), t1).await, 0);
    let write = CredentialRow { revoked: Some(t1), ..write };
    assert_eq!(find(Token, "k-ula-write").await.unwrap().row, write, "revoked once, at the first time");
    assert!(!write.is_live(t0 + Duration::days(1)));
    assert_eq!(find(Ticket, "t-root").await.unwrap().row.revoked, Some(t1));
    let (c1, who) = store.credential_changes(c0).await.unwrap();
    assert!(c1 > c0);
    assert_eq!(who, vec![ula.id, root.id], "each associate once, in the order of their changes");
    assert_eq!(store.credential_changes(c1).await.unwrap(), (c1, vec![]));
    assert_eq!(store.credential_changes(c1 + 1000).await.unwrap(), (c1 + 1000, vec![]));

    // A password change revokes the tickets and sessions (expired ones too), not the tokens.
    let t2 = at(2);
    let change = |f: fn(&mut AssociateChange)| {
        let mut c = AssociateChange::default();
        f(&mut c);
        c
    };
    let same = store.update_associate(ula.id, change(|c| c.password_hash = Some("hash-new".into())), t2).await;
    assert_eq!(same.unwrap(), ula);
    assert_eq!(store.associate_credentials("ula").await.unwrap().unwrap().password_hash, "hash-new");
    for (kind, secret) in [(Ticket, "t-ula"), (Ticket, "t-ula-stale"), (Ticket, "t-ula-bare"), (Session, "s-ula")] {
        assert_eq!(find(kind, secret).await.unwrap().row.revoked, Some(t2), "{secret}");
    }
    assert_eq!(find(Token, "k-ula-read").await.unwrap().row, read, "tokens outlive a password change");
    assert_eq!(find(Token, "k-ula-old").await.unwrap().row.revoked, None);
    assert_eq!(find(Token, "k-ula-write").await.unwrap().row, write);
    assert_eq!(find(Ticket, "t-root").await.unwrap().row.revoked, Some(t1), "others' are untouched");
    let (c2, who) = store.credential_changes(c1).await.unwrap();
    assert!(c2 > c1);
    assert_eq!(who, vec![ula.id]);

    // A rename shows at once in what finds credentials, and ends none; a taken name is refused.
    let renamed = store.update_associate(ula.id, change(|c| c.name = Some("Ursula".into())), at(3)).await.unwrap();
    let ula = Associate { name: "Ursula".into(), ..ula };
    assert_eq!(renamed, ula);
    let m = find(Token, "k-ula-read").await.unwrap();
    assert_eq!((m.row.associate_name.as_str(), &m.associate), ("Ursula", &ula));
    assert_eq!(store.associate_credentials("ursula").await.unwrap().map(|c| c.associate), Some(ula.clone()));
    let taken = store.update_associate(ula.id, change(|c| c.name = Some("ROOT".into())), at(3)).await;
    assert!(matches!(taken, Err(StoreError::DuplicateName)), "{taken:?}");
    assert_eq!(store.get_associate(ula.id).await.unwrap().as_ref(), Some(&ula));
    assert_eq!(store.update_associate(ula.id, AssociateChange::default(), at(3)).await.unwrap(), ula);
    assert_eq!(store.credential_changes(c2).await.unwrap(), (c2, vec![]), "renames and no-ops end nothing");
    let missing = store.update_associate(wim.id + 100, change(|c| c.role = Some(Role::Admin)), at(3)).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");

    // Role and active flag: logged, and seen by find_credential at once.
    let wim = store.update_associate(wim.id, change(|c| c.role = Some(Role::User)), at(4)).await.unwrap();
    assert_eq!(wim.role, Role::User);
    let m = find(Token, "k-wim").await.unwrap();
    assert_eq!((m.associate.role, m.row.scope), (Role::User, Some(Scope::Worker)), "the token keeps its scope");
    let wim = store.update_associate(wim.id, change(|c| c.active = Some(false)), at(4)).await.unwrap();
    assert!(!wim.active);
    assert_eq!(find(Token, "k-wim").await.unwrap().associate, wim);
    assert_eq!(store.get_associate(wim.id).await.unwrap().as_ref(), Some(&wim));
    let (c3, who) = store.credential_changes(c2).await.unwrap();
    assert!(c3 > c2);
    assert_eq!(who, vec![wim.id]);

    // The last active admin cannot be demoted, disabled or removed; an inactive admin does not count.
    let last_admin = |r: Result<Associate, StoreError>| {
        assert!(matches!(r, Err(StoreError::LastAdmin)), "{r:?}");
    };
    let ann = store.update_associate(ann.id, change(|c| c.role = Some(Role::Worker)), at(5)).await.unwrap();
    last_admin(store.update_associate(root.id, change(|c| c.role = Some(Role::Worker)), at(5)).await);
    last_admin(store.update_associate(root.id, change(|c| c.active = Some(false)), at(5)).await);
    last_admin(
        store
            .update_associate(
                root.id,
                AssociateChange { role: Some(Role::User), name: Some("still-root".into()), ..Default::default() },
                at(5),
            )
            .await,
    );
    let res = store.delete_associate(root.id, at(5)).await;
    assert!(matches!(res, Err(StoreError::LastAdmin)), "{res:?}");
    assert_eq!(store.get_associate(root.id).await.unwrap().as_ref(), Some(&root), "refusals change nothing");
    let kept = store
        .update_associate(
            root.id,
            AssociateChange {
                role: Some(Role::Admin),
                active: Some(true),
                password_hash: Some("h2".into()),
                name: None,
            },
            at(5),
        )
        .await;
    assert_eq!(kept.unwrap(), root, "an admin staying an admin is no removal");
    let ann = store
        .update_associate(
            ann.id,
            AssociateChange { role: Some(Role::Admin), active: Some(false), ..Default::default() },
            at(5),
        )
        .await
        .unwrap();
    last_admin(store.update_associate(root.id, change(|c| c.role = Some(Role::User)), at(5)).await);
    let ann = store.update_associate(ann.id, change(|c| c.active = Some(true)), at(5)).await.unwrap();
    let root = store.update_associate(root.id, change(|c| c.role = Some(Role::User)), at(5)).await.unwrap();
    last_admin(store.update_associate(ann.id, change(|c| c.active = Some(false)), at(5)).await);
    let root = store.update_associate(root.id, change(|c| c.role = Some(Role::Admin)), at(5)).await.unwrap();
    assert_eq!((ann.role, ann.active, root.role, root.active), (Role::Admin, true, Role::Admin, true));
    let (c4, who) = store.credential_changes(c3).await.unwrap();
    assert_eq!(who, vec![ann.id, root.id], "successful changes only");

    // delete_associate: its tickets, tokens and sessions go; its tasks stay.
    let kept_task = store.create_task(task("Export", ula.id, None), t0).await.unwrap();
    store.delete_associate(ula.id, at(6)).await.unwrap();
    assert_eq!(store.get_associate(ula.id).await.unwrap(), None);
    assert!(store.associate_credentials("Ursula").await.unwrap().is_none());
    for kind in [Ticket, Token, Session] {
        assert_eq!(list(kind, Some(ula.id)).await, vec![], "{kind:?}");
    }
    assert_eq!(find(Token, "k-ula-read").await, None);
    assert_eq!(store.get_task(kept_task.id).await.unwrap().as_ref(), Some(&kept_task));
    let (c5, who) = store.credential_changes(c4).await.unwrap();
    assert!(c5 > c4);
    assert_eq!(who, vec![ula.id]);
    let again = store.delete_associate(ula.id, at(6)).await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    assert_eq!(store.list_associates().await.unwrap(), vec![root.clone(), ann.clone(), wim.clone()]);

    // purge_credentials: what expired or was revoked before the cut goes, and older change rows.
    let ann_old = make(cred(Ticket, &ann, "t-ann-old", Some(at(-7200)), None, None)).await;
    let ann_ticket = make(cred(Ticket, &ann, "t-ann", Some(at(3600)), None, None)).await;
    make(cred(Session, &ann, "s-ann-old", Some(at(-7200)), None, None)).await;
    let ann_token = make(cred(Token, &ann, "k-ann", None, Some(Scope::Admin), None)).await;
    let ann_gone = make(cred(Token, &ann, "k-ann-gone", None, Some(Scope::Read), None)).await;
    assert_eq!(revoke(Token, RevokeTarget::Id { id: ann_gone.id, owner: None }, at(7)).await, 1);
    let (c6, _) = store.credential_changes(c5).await.unwrap();
    assert_eq!(store.purge_credentials(at(-3600)).await.unwrap(), 2, "the two that expired two hours ago");
    assert_eq!(list(Ticket, Some(ann.id)).await, vec![ann_ticket.clone()]);
    assert_eq!(list(Session, None).await, vec![]);
    assert_eq!(store.credential_changes(c5).await.unwrap().0, c6, "newer change rows stay");
    assert!(ann_old.id < ann_ticket.id);
    // Cut in two hours: root's revoked ticket, ann's live ticket (it expires before the cut) and
    // ann's revoked token go; ann's and wim's tokens that never expire stay.
    assert_eq!(store.purge_credentials(at(7200)).await.unwrap(), 3);
    assert_eq!(list(Ticket, None).await, vec![]);
    assert_eq!(list(Token, None).await, vec![ann_token.clone(), worker.clone()]);
    assert_eq!(store.credential_changes(0).await.unwrap(), (0, vec![]), "old change rows go too");
    // Change ids are never reused after a purge.
    assert_eq!(revoke(Token, RevokeTarget::AllOf(ann.id), at(8)).await, 1);
    let (c7, who) = store.credential_changes(c6).await.unwrap();
    assert!(c7 > c6);
    assert_eq!(who, vec![ann.id]);
    assert_eq!(store.credential_changes(0).await.unwrap(), (c7, vec![ann.id]));
}

/// Two active admins, each removed at the same moment through a different store (node): every
/// round exactly one removal may win, and one active admin is left.
async fn last_admin_race_story(stores: Vec<Arc<dyn Store>>) {
    let now = micros_now();
    let second = stores[stores.len() - 1].clone();
    let admin = |name: String| NewAssociate { name, password_hash: "h".into(), role: Role::Admin };
    let mut a = stores[0].create_associate(admin("a-0".into()), now).await.unwrap();
    let mut b = stores[0].create_associate(admin("b-0".into()), now).await.unwrap();
    for round in 0..24 {
        let (x, y) = (stores[0].clone(), second.clone());
        let (ra, rb) = match round % 3 {
            0 => {
                let demote = || AssociateChange { role: Some(Role::User), ..Default::default() };
                let (ra, rb) =
                    tokio::join!(x.update_associate(a.id, demote(), now), y.update_associate(b.id, demote(), now));
                (ra.map(|_| ()), rb.map(|_| ()))
            }
            1 => {
                let disable = || AssociateChange { active: Some(false), ..Default::default() };
                let (ra, rb) =
                    tokio::join!(x.update_associate(a.id, disable(), now), y.update_associate(b.id, disable(), now));
                (ra.map(|_| ()), rb.map(|_| ()))
            }
            _ => tokio::join!(x.delete_associate(a.id, now), y.delete_associate(b.id, now)),
        };
        assert!(ra.is_ok() != rb.is_ok(), "round {round}: exactly one may win: {ra:?} {rb:?}");
        let lost = if ra.is_ok() { &rb } else { &ra };
        assert!(matches!(lost, Err(StoreError::LastAdmin)), "round {round}: {lost:?}");
        let admins: Vec<Associate> = stores[0]
            .list_associates()
            .await
            .unwrap()
            .into_iter()
            .filter(|x| x.role == Role::Admin && x.active)
            .collect();
        assert_eq!(admins.len(), 1, "round {round}: {admins:?}");
        // Restore two active admins for the next round.
        for who in [&mut a, &mut b] {
            *who = match stores[0].get_associate(who.id).await.unwrap() {
                Some(_) => {
                    let back = AssociateChange { role: Some(Role::Admin), active: Some(true), ..Default::default() };
                    stores[0].update_associate(who.id, back, now).await.unwrap()
                }
                None => stores[0].create_associate(admin(format!("{}-{round}", &who.name[..1])), now).await.unwrap(),
            };
        }
    }
}

/// 50 concurrent read-change-write cycles on one task, spread over `stores` (nodes): each
/// appends its number to Description. A lost update would drop a number.
async fn concurrent_updates_story(stores: Vec<Arc<dyn Store>>) {
    const WRITERS: usize = 50;
    let now = micros_now();
    let task = stores[0].create_task(task("Counter", 7, Some("")), now).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..WRITERS {
        let store = stores[i % stores.len()].clone();
        handles.push(tokio::spawn(async move {
            store
                .modify_task(
                    task.id,
                    Utc::now(),
                    Actor::default(),
                    Box::new(move |t| {
                        let mut next = t.clone();
                        next.description = Some(format!("{}{i},", t.description.as_deref().unwrap_or("")));
                        Ok(next)
                    }),
                )
                .await
        }));
    }
    let mut versions = Vec::new();
    for h in handles {
        versions.push(h.await.unwrap().unwrap().version);
    }
    versions.sort();
    assert_eq!(versions, (2..=(WRITERS as i64 + 1)).collect::<Vec<_>>(), "each write saw the one before it");
    for store in &stores {
        let stored = store.get_task(task.id).await.unwrap().unwrap();
        let mut seen: Vec<usize> =
            stored.description.unwrap().split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, (0..WRITERS).collect::<Vec<_>>(), "no update lost");
        assert_eq!(stored.version, WRITERS as i64 + 1);
    }
}

/// Edits of several tasks at once, as a PUT load makes them (PostgreSQL writes them in batches):
/// most append their number to the Description, some are refused, one per task moves it to
/// Started. Every refusal answers its own caller only, every other edit lands once (no lost
/// update, one version each, the state move included), and the answer with a task's last
/// version is exactly the stored row.
async fn mixed_concurrent_edits_story(stores: Vec<Arc<dyn Store>>) {
    const TASKS: usize = 6;
    const EDITS: usize = 30;
    let now = micros_now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        tasks.push(stores[0].create_task(task("Counter", 7, Some("")), now).await.unwrap().id);
    }
    let refused = |i: usize| i % 5 == 3;
    let mut handles = Vec::new();
    for i in 0..EDITS {
        for (n, &id) in tasks.iter().enumerate() {
            let store = stores[(i + n) % stores.len()].clone();
            handles.push(tokio::spawn(async move {
                let answer = store
                    .modify_task(
                        id,
                        Utc::now(),
                        Actor::associate(7, "edit"),
                        Box::new(move |t| {
                            if refused(i) {
                                return Err(DomainError::Contended { id: t.id.into() });
                            }
                            let mut next = t.clone();
                            next.description = Some(format!("{}{i},", t.description.as_deref().unwrap_or("")));
                            if i == 7 {
                                next.state = BatchTaskState::Started;
                            }
                            Ok(next)
                        }),
                    )
                    .await;
                (id, i, answer)
            }));
        }
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    for &id in &tasks {
        let mine: Vec<_> = answers.iter().filter(|a| a.0 == id).collect();
        let mut versions = Vec::new();
        let mut last: Option<&Task> = None;
        for (_, i, answer) in &mine {
            if refused(*i) {
                assert!(matches!(answer, Err(StoreError::Rejected(DomainError::Contended { .. }))), "{i}: {answer:?}");
                continue;
            }
            let t = answer.as_ref().unwrap_or_else(|e| panic!("task {id}, edit {i}: {e:?}"));
            assert!(t.description.as_deref().unwrap().split(',').any(|s| s == i.to_string()), "{i} in its answer");
            versions.push(t.version);
            if last.is_none_or(|l| l.version < t.version) {
                last = Some(t);
            }
        }
        let landed = EDITS - (0..EDITS).filter(|&i| refused(i)).count();
        versions.sort();
        assert_eq!(versions, (2..=(landed as i64 + 1)).collect::<Vec<_>>(), "task {id}: one version per edit");
        for store in &stores {
            let stored = store.get_task(id).await.unwrap().unwrap();
            let mut seen: Vec<usize> = stored
                .description
                .as_deref()
                .unwrap()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            seen.sort();
            assert_eq!(seen, (0..EDITS).filter(|&i| !refused(i)).collect::<Vec<_>>(), "task {id}: no update lost");
            assert_eq!(stored.state, BatchTaskState::Started, "task {id}: the state move landed");
            assert_eq!(Some(&stored), last, "task {id}: the last answer is what is stored");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real server on PostgreSQL

#[tokio::test]
async fn http_core_path_runs_on_postgres() {
    let Some(db) = TestPg::create("store_contract::http_core_path_runs_on_postgres").await else { return };
    let url = db.url.clone();
    let app = TestApp::spawn_with(|c| c.database = url).await;

    // Create (with parameters) and get.
    let id = app
        .create(&json!({"Name": "Export", "Description": "nightly", "Context": "ctx", "ParameterObject": {"b": "2", "a": "1"}}))
        .await;
    let t = app.task(id).await;
    assert_eq!(t["Name"], "Export");
    assert_eq!(t["State"], "New");
    assert_eq!(t["ParameterObject"], json!({"b": "2", "a": "1"}));
    assert_eq!(t["DetailsTable"], 205);

    // Put: a state move, then a refused one that changes nothing.
    let res = app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Started", "Response": "r"})).await;
    assert_eq!(res.status(), 200);
    let started: Value = res.json().await.unwrap();
    assert_eq!((started["State"].as_str(), started["StartCount"].as_i64()), (Some("Started"), Some(1)));
    assert_eq!(app.task(id).await, started, "the answer is what is stored");
    let res = app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "New", "Description": "no"})).await;
    assert_eq!(res.status(), 409, "{}", res.text().await.unwrap());
    assert_eq!(app.task(id).await, started);

    // Delete refuses a running task; stop fails it; then delete removes task, blob and link.
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let res = app.request(Method::POST, &format!("/api/v1/BatchTask/{id}/Stop")).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "true");
    assert_eq!(app.task(id).await["State"], "Failed");
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(app.get(&format!("/api/v1/BatchTask/{id}")).await.status(), 404);
    let mut conn = db.connect().await;
    let blobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM binaryobject").fetch_one(&mut conn).await.unwrap();
    let links: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM binaryobjectlink").fetch_one(&mut conn).await.unwrap();
    assert_eq!((blobs, links), (0, 0));

    // List: paging, order and filter through the OData endpoint.
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(app.create(&json!({"Name": format!("L{i}"), "Description": format!("item {i}")})).await);
    }
    let page: Value = app.get("/api/v1/BatchTask?$top=2&$orderby=DefinitionName%20desc").await.json().await.unwrap();
    let got: Vec<i64> = page["value"].as_array().unwrap().iter().map(|r| r["PrimaryKey"].as_i64().unwrap()).collect();
    assert_eq!(got, vec![ids[3], ids[2]]);
    assert!(page["odata.nextLink"].is_string());
    let filtered: Value =
        app.get("/api/v1/BatchTask?$filter=Description%20contains%20'EM%201'").await.json().await.unwrap();
    assert_eq!(filtered["value"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["value"][0]["PrimaryKey"], ids[1]);

    // Text PostgreSQL cannot store (U+0000) is a 400 naming the field on every engine, never a 500.
    let res = app.post_json("/api/v1/BatchTask", &json!({"Name": "X", "Description": "a\u{0}b"})).await;
    crate::helpers::assert_error(res, 400, "ArgumentException", "Description").await;
    let res = app.get("/api/v1/BatchTask?$filter=Description%20eq%20'a%00b'").await;
    crate::helpers::assert_error(res, 400, "ArgumentException", "position 17").await;
    let res = app.client.get(app.url("/api/v1/BatchTask")).basic_auth("ad\u{0}min", Some("x")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app.agent("GetSystemBatchTaskInfosByName", &json!({"TaskName": "L\u{0}"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));

    // The agents' path reads the same store.
    let res = app.agent("GetBatchTaskInfosByState", &json!({"State": "New"})).await;
    assert_eq!(res.status(), 200);
    let tasks: Value = res.json().await.unwrap();
    assert_eq!(tasks.as_array().map(Vec::len), Some(4), "{tasks}");
    drop(app);
}

#[tokio::test]
async fn two_nodes_start_together_on_one_empty_postgres_database() {
    let Some(db) = TestPg::create("store_contract::two_nodes_start_together").await else { return };
    let (u1, u2) = (db.url.clone(), db.url.clone());
    let (a, b) = tokio::join!(TestApp::spawn_with(|c| c.database = u1), TestApp::spawn_with(|c| c.database = u2));
    let id = a.create(&json!({"Name": "Shared"})).await;
    assert_eq!(b.task(id).await["Name"], "Shared", "both nodes serve the same tasks");
    assert_eq!(a.store.count_associates().await.unwrap(), 1, "one admin, created once");
}

/// The runner's store methods: claims under a concurrency limit, fenced renewals and
/// finishes, stop requests, rescue of expired leases, release, events, retention.
async fn runner_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    use batchd::store::runner::{
        Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Finish, FinishOutcome, FinishResult, Progress, StopResult,
    };
    let t0 = micros_now();
    store.upsert_definition(&definition("job", "runs", 0), t0).await.unwrap(); // restarts 2, concurrency 3
    store
        .set_run_policy(
            "job",
            &RunPolicy {
                retry: RetryPolicy {
                    restarts: 2,
                    backoff: std::time::Duration::from_millis(1),
                    max_backoff: std::time::Duration::from_secs(1),
                },
                ..RunPolicy::default()
            },
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        tasks.push(store.create_task(task("job", 1, None), t0).await.unwrap().id);
    }
    let req = |node: &str| ClaimRequest {
        node: node.into(),
        lease: std::time::Duration::from_secs(30),
        names: vec![ClaimName { name: "job".into(), concurrency: Some(3), rate: None }],
        max: 10,
        start: true,
        associate_id: None,
    };
    let claimed = store.claim_tasks(&req("n1"), t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), tasks[..3], "oldest first, up to the limit");
    for c in &claimed {
        assert_eq!(
            (c.task.state, c.task.start_count, c.lease.node.as_str(), c.lease.attempt),
            (BatchTaskState::Started, 1, "n1", 1)
        );
    }
    assert!(store.claim_tasks(&req("n2"), t0).await.unwrap().is_empty(), "the limit holds across nodes");
    let token = |i: usize| claimed[i].lease.token.clone();

    // Renewals and finishes are fenced by the token.
    let lease = std::time::Duration::from_secs(30);
    let beat = |id, token: String| Beat {
        id,
        token,
        progress: Some(Progress { percent: Some(42), ..Progress::default() }),
        renew: true,
    };
    let out =
        store.renew_leases(vec![beat(tasks[0], "stale".into()), beat(tasks[0], token(0))], lease, t0).await.unwrap();
    assert_eq!(out[0], BeatOutcome::Lost);
    assert!(
        matches!(out[1], BeatOutcome::Renewed { state: BatchTaskState::Started, stop_requested_by: None, .. }),
        "{out:?}"
    );
    assert_eq!(store.get_task(tasks[0]).await.unwrap().unwrap().progress_percent, 42);
    let finish = |id, token: String, outcome| Finish {
        id,
        token,
        outcome,
        result: Some("r".into()),
        response: None,
        progress: None,
        actor: Actor::node("n1", "done"),
    };
    let out = store
        .finish_tasks(
            vec![
                finish(tasks[0], "stale".into(), FinishOutcome::Succeeded),
                finish(tasks[0], token(0), FinishOutcome::Succeeded),
            ],
            t0,
        )
        .await
        .unwrap();
    assert_eq!(out, [FinishResult::Lost, FinishResult::Done(BatchTaskState::Succeeded)]);
    let again = store.finish_tasks(vec![finish(tasks[0], token(0), FinishOutcome::Failed { retry: false })], t0).await;
    assert_eq!(again.unwrap(), [FinishResult::Lost], "a finished run's token writes nothing");
    assert_eq!(store.get_task(tasks[0]).await.unwrap().unwrap().state, BatchTaskState::Succeeded);
    let next = store.claim_tasks(&req("n2"), t0).await.unwrap();
    assert_eq!(next.iter().map(|c| c.task.id).collect::<Vec<_>>(), [tasks[3]], "room for one more");

    // A stop of a held run is recorded for its holder; the run failing then is the stop.
    let stop =
        store.request_stop(tasks[1], t0, Actor::associate(1, "stop"), "admin".into(), Box::new(|_| Ok(()))).await;
    assert!(matches!(stop.unwrap(), StopResult::Requested { ref node, .. } if node == "n1"));
    assert_eq!(store.pending_stops("n1").await.unwrap(), [(tasks[1], "admin".to_owned())]);
    let out =
        store.finish_tasks(vec![finish(tasks[1], token(1), FinishOutcome::Failed { retry: true })], t0).await.unwrap();
    assert_eq!(out, [FinishResult::Done(BatchTaskState::Failed)]);
    assert_eq!(store.get_task(tasks[1]).await.unwrap().unwrap().result.as_deref(), Some("Cancelled by admin"));

    // An expired lease writes nothing and is rescued (restarts left: New again).
    let late = t0 + Duration::seconds(60);
    let out = store.finish_tasks(vec![finish(tasks[2], token(2), FinishOutcome::Succeeded)], late).await.unwrap();
    assert_eq!(out, [FinishResult::Lost]);
    let mut rescued = store.rescue_expired("n3", late, 100, std::time::Duration::from_secs(10)).await.unwrap();
    rescued.sort_by_key(|r| r.id);
    assert_eq!(
        rescued.iter().map(|r| (r.id, r.to)).collect::<Vec<_>>(),
        [(tasks[2], BatchTaskState::New), (tasks[3], BatchTaskState::New)]
    );
    let info = store.lease_info(tasks[2]).await.unwrap().unwrap();
    assert_eq!((info.state, info.token), (BatchTaskState::New, None));

    // Release hands a node's leases back without counting the attempt.
    let later = late + Duration::seconds(10);
    let held = store.claim_tasks(&ClaimRequest { max: 1, ..req("n4") }, later).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(store.release_node("n4", later).await.unwrap(), [held[0].task.id]);
    assert_eq!(store.get_task(held[0].task.id).await.unwrap().unwrap().state, BatchTaskState::New);

    // The log: every move, in order; none for an internal task.
    let moves =
        |events: Vec<batchd::store::runner::TaskEvent>| events.iter().map(|e| (e.from, e.to)).collect::<Vec<_>>();
    use BatchTaskState::*;
    assert_eq!(
        moves(store.task_events(tasks[0]).await.unwrap()),
        [
            (None, Some(New)),
            (Some(New), Some(Aquired)),
            (Some(Aquired), Some(Started)),
            (Some(Started), Some(Succeeded))
        ]
    );
    let internal = store.create_task(NewTask { is_internal: true, ..task("quiet", 1, None) }, later).await.unwrap();
    let quiet =
        ClaimRequest { names: vec![ClaimName { name: "quiet".into(), concurrency: None, rate: None }], ..req("n1") };
    let c = store.claim_tasks(&quiet, later).await.unwrap();
    assert_eq!(c.len(), 1);
    let out =
        store.finish_tasks(vec![finish(internal.id, c[0].lease.token.clone(), FinishOutcome::Succeeded)], later).await;
    assert_eq!(out.unwrap(), [FinishResult::Done(Succeeded)]);
    assert!(store.task_events(internal.id).await.unwrap().is_empty());

    // Retention takes finished tasks with their events.
    let removed = store.purge_finished(Succeeded, later + Duration::days(1), 10).await.unwrap();
    assert_eq!(removed, 2);
    assert!(store.get_task(tasks[0]).await.unwrap().is_none());
    assert!(store.task_events(tasks[0]).await.unwrap().is_empty());
}

/// Node rows and the ping: an upsert writes the row whole (the second one of a name replaces it),
/// lists are newest first and bounded, retention removes rows long unseen; stored texts are
/// bounded and freed of U+0000 on both engines.
async fn nodes_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    use batchd::domain::node::{self, NodeRow};
    store.ping(std::time::Duration::from_secs(2)).await.expect("the database answers a ping");
    let now = micros_now();
    let since = node::kept_since(now);
    assert!(store.list_nodes(since, 10).await.unwrap().is_empty(), "no node has written its row yet");
    let row = |name: &str, seen_ago: Duration| NodeRow {
        name: name.into(),
        version: "1.2.3".into(),
        address: "127.0.0.1:8080".into(),
        started: now - Duration::days(3),
        last_seen: now - seen_ago,
        running: 2,
        runner_enabled: true,
        lease: std::time::Duration::from_millis(30_500),
        stopped: None,
    };
    let a = row("node-a", Duration::zero());
    let b = NodeRow { runner_enabled: false, running: 0, ..row("node-b", Duration::minutes(10)) };
    let gone = row("node-gone", Duration::days(2));
    for n in [&a, &b, &gone] {
        store.upsert_node(n).await.unwrap();
    }
    assert_eq!(store.list_nodes(since, 10).await.unwrap(), vec![a.clone(), b.clone()], "newest first, as written");
    assert_eq!(store.list_nodes(since, 1).await.unwrap(), vec![a.clone()], "bounded");

    // A refresh and then a graceful shutdown rewrite the one row of the name.
    let later = NodeRow { last_seen: now + Duration::seconds(1), running: 7, ..a.clone() };
    store.upsert_node(&later).await.unwrap();
    let stopped = NodeRow { stopped: Some(now + Duration::seconds(2)), running: 0, ..later.clone() };
    store.upsert_node(&stopped).await.unwrap();
    let listed = store.list_nodes(since, 10).await.unwrap();
    assert_eq!(listed, vec![stopped.clone(), b.clone()]);
    let status = node::listing(listed, now + Duration::seconds(3));
    let alive: Vec<(&str, bool)> = status.iter().map(|s| (s.row.name.as_str(), s.alive)).collect();
    assert_eq!(alive, [("node-a", false), ("node-b", false)], "stopped, and silent past its lease");

    // Retention removes what is no longer listed, in bounded batches.
    let everything = DateTime::<Utc>::UNIX_EPOCH;
    assert_eq!(store.list_nodes(everything, 10).await.unwrap().len(), 3);
    assert_eq!(store.purge_nodes(since, 10).await.unwrap(), 1);
    assert_eq!(store.purge_nodes(since, 10).await.unwrap(), 0);
    let names: Vec<String> = store.list_nodes(everything, 10).await.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["node-a", "node-b"]);

    // Texts as both engines keep them.
    let odd = NodeRow { name: format!("odd\0{}", "n".repeat(400)), version: "v\0".into(), ..row("", Duration::zero()) };
    store.upsert_node(&odd).await.unwrap();
    let back = store.list_nodes(since, 10).await.unwrap().into_iter().find(|n| n.name.starts_with("odd")).unwrap();
    assert_eq!(back, odd.clone().stored());
    assert_eq!((back.name.chars().count(), back.version.as_str()), (node::TEXT_MAX, "v\u{FFFD}"));
}

/// Pause and resume, the definitions' state and counts, and retry: claims (in batches and on
/// create) skip a paused definition's tasks, its schedule moves on without creating, and a
/// retried task runs again with its run count going on.
async fn scheduling_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    use batchd::domain::run::{CatchUp, Schedule};
    use batchd::store::TaskCounts;
    use batchd::store::runner::{
        ClaimName, ClaimRequest, Finish, FinishOutcome, FinishResult, ScheduleTick, StopResult,
    };
    let t0 = micros_now();
    for name in ["held", "free"] {
        store.upsert_definition(&definition(name, "d", 0), t0).await.unwrap();
    }
    let mut feed = store.feed().subscribe();
    let req = |max| ClaimRequest {
        node: "n1".into(),
        lease: std::time::Duration::from_secs(30),
        names: ["held", "free"].map(|n| ClaimName { name: n.into(), concurrency: None, rate: None }).to_vec(),
        max,
        start: true,
        associate_id: None,
    };

    // Pausing is stored once and told to the feed; pausing again changes nothing.
    assert!(store.set_paused("held", true).await.unwrap());
    assert!(!store.set_paused("held", true).await.unwrap(), "paused already");
    assert!(matches!(store.set_paused("nope", true).await, Err(StoreError::NotFound)));
    let notice = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match feed.next().await {
                Some(n @ batchd::store::feed::Notice::Definition { .. }) => return n,
                Some(_) => continue,
                None => panic!("the feed ended"),
            }
        }
    })
    .await
    .expect("a pause is told to the feed");
    assert_eq!(notice, batchd::store::feed::Notice::Definition { name: "held".into() });

    let held: Vec<i32> = {
        let mut v = Vec::new();
        for owner in [7, 7, 8] {
            v.push(store.create_task(task("held", owner, None), t0).await.unwrap().id);
        }
        v
    };
    let free = store.create_task(task("free", 7, None), t0).await.unwrap().id;
    let claimed = store.claim_tasks(&req(10), t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [free], "a paused definition's tasks wait");
    let (created, lease) = store.create_and_claim(task("held", 7, None), t0, &req(1)).await.unwrap();
    assert!(lease.is_none(), "nor is one claimed in its create");
    assert_eq!(store.get_task(created.id).await.unwrap().unwrap().state, BatchTaskState::New);

    // The state of every definition row, with counts of what the caller may see.
    let statuses = store.definition_statuses(None).await.unwrap();
    let of = |name: &str, list: &[batchd::store::DefinitionStatus]| {
        list.iter().find(|s| s.name == name).cloned().unwrap_or_else(|| panic!("{name} listed"))
    };
    let h = of("held", &statuses);
    assert!(h.paused);
    assert_eq!(h.counts, TaskCounts { new: 4, running: 0, failed: 0 });
    assert_eq!(of("free", &statuses).counts, TaskCounts { new: 0, running: 1, failed: 0 });
    assert!(!of("free", &statuses).paused);
    let mine = store.definition_statuses(Some(8)).await.unwrap();
    assert_eq!(of("held", &mine).counts, TaskCounts { new: 1, running: 0, failed: 0 }, "only owner 8's");
    assert_eq!(of("free", &mine).counts, TaskCounts::default());

    // A paused schedule moves on without creating a task; resumed, it creates again.
    let tick = ScheduleTick {
        name: "held".into(),
        schedule: Schedule::Every(std::time::Duration::from_secs(60)),
        skip_if_active: false,
        catch_up: CatchUp::One,
    };
    let (made, next) = store.schedule_tick(&tick, t0, task("held", 0, None)).await.unwrap();
    assert!(made.is_none(), "paused: nothing created");
    assert_eq!(next, t0 + Duration::seconds(60));
    assert_eq!(of("held", &store.definition_statuses(None).await.unwrap()).next_start, Some(next));
    assert!(store.set_paused("held", false).await.unwrap());
    let later = next + Duration::seconds(1);
    let (made, _) = store.schedule_tick(&tick, later, task("held", 0, None)).await.unwrap();
    assert!(made.is_some(), "resumed: the occurrence creates its task");

    // A cron schedule: its first tick only sets the next occurrence (in its zone), the tick at
    // that time creates the task, and a late tick creates one task, not one per missed time.
    let oslo: chrono_tz::Tz = "Europe/Oslo".parse().unwrap();
    let nightly = batchd::domain::cron::Cron::parse("0 3 * * *", oslo).unwrap();
    let cron_tick = ScheduleTick {
        name: "free".into(),
        schedule: Schedule::Cron(nightly.clone()),
        skip_if_active: false,
        catch_up: CatchUp::One,
    };
    let (made, armed) = store.schedule_tick(&cron_tick, t0, task("free", 0, None)).await.unwrap();
    assert!(made.is_none(), "the first tick arms the schedule");
    assert_eq!(armed, nightly.next_after(t0).unwrap());
    let (made, again) =
        store.schedule_tick(&cron_tick, armed - Duration::seconds(1), task("free", 0, None)).await.unwrap();
    assert!(made.is_none(), "not due yet");
    assert_eq!(again, armed);
    let three_days_late = armed + Duration::days(3);
    let (made, next) = store.schedule_tick(&cron_tick, three_days_late, task("free", 0, None)).await.unwrap();
    let made = made.expect("due: created");
    assert_eq!(next, nightly.next_after(three_days_late).unwrap());
    let (again, _) = store.schedule_tick(&cron_tick, three_days_late, task("free", 0, None)).await.unwrap();
    assert!(again.is_none(), "missed occurrences are not made up for");
    // Out of the way of the claims below.
    store.delete_task(made.id, three_days_late, Actor::default(), Box::new(|_| Ok(()))).await.unwrap();

    // Resumed: the waiting tasks are claimable again, oldest first.
    let claimed = store.claim_tasks(&req(2), later).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), held[..2]);

    // Retry: only a Failed task, under the guard, its run count going on.
    let allow = || -> batchd::store::DeleteGuard { Box::new(|_| Ok(())) };
    let actor = || Actor::associate(1, "retried by admin");
    let refused = store.retry_task(claimed[0].task.id, later, actor(), allow()).await;
    assert!(
        matches!(refused, Err(StoreError::Rejected(DomainError::NotFailed { state: BatchTaskState::Started, .. }))),
        "{refused:?}"
    );
    let f = Finish {
        id: claimed[0].task.id,
        token: claimed[0].lease.token.clone(),
        outcome: FinishOutcome::Failed { retry: false },
        result: Some("exit 1".into()),
        response: None,
        progress: None,
        actor: Actor::node("n1", "failed"),
    };
    assert_eq!(store.finish_tasks(vec![f], later).await.unwrap(), [FinishResult::Done(BatchTaskState::Failed)]);
    let id = claimed[0].task.id;
    let stopped = store.request_stop(held[2], later, actor(), "admin".into(), allow()).await.unwrap();
    assert!(matches!(stopped, StopResult::Failed(_)));
    assert_eq!(of("held", &store.definition_statuses(None).await.unwrap()).counts.failed, 2);
    let forbidden = store
        .retry_task(
            id,
            later,
            actor(),
            Box::new(|_| Err(DomainError::Forbidden { reason: batchd::domain::rights::Reason::MayNotRetryTask })),
        )
        .await;
    assert!(matches!(forbidden, Err(StoreError::Rejected(DomainError::Forbidden { .. }))));
    assert_eq!(store.get_task(id).await.unwrap().unwrap().state, BatchTaskState::Failed, "a refusal writes nothing");
    let before = store.get_task(id).await.unwrap().unwrap();
    let retried = store.retry_task(id, later, actor(), allow()).await.unwrap();
    assert_eq!((retried.state, retried.start_count, retried.result.as_deref()), (BatchTaskState::New, 1, None));
    assert_eq!(retried.version, before.version + 1);
    assert!(matches!(store.retry_task(i32::MAX, later, actor(), allow()).await, Err(StoreError::NotFound)));
    let again = store.claim_tasks(&req(10), later).await.unwrap();
    let run = again.iter().find(|c| c.task.id == id).expect("the retried task is claimed");
    assert_eq!((run.lease.attempt, run.task.start_count), (2, 2), "the run count goes on");
    let moves: Vec<_> = store.task_events(id).await.unwrap().iter().map(|e| (e.from, e.to)).collect();
    use BatchTaskState as S;
    assert_eq!(
        moves,
        [
            (None, Some(S::New)),
            (Some(S::New), Some(S::Aquired)),
            (Some(S::Aquired), Some(S::Started)),
            (Some(S::Started), Some(S::Failed)),
            (Some(S::Failed), Some(S::New)),
            (Some(S::New), Some(S::Aquired)),
            (Some(S::Aquired), Some(S::Started)),
        ],
        "the event log keeps every run"
    );
}

/// `Idempotency-Key` on creates: a repeat replays, another request under the key is refused,
/// the key is the associate's, it expires after its window, and racing creates make one task.
async fn idempotency_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    use batchd::domain::idempotency::{KeyedCreate, WINDOW, expired_before, request_hash};
    use batchd::store::CreatedOnce;
    let t0 = micros_now();
    let new = task("once", 7, Some("d"));
    let keyed = |associate_id: i32, key: &str, new: &NewTask| KeyedCreate {
        associate_id,
        key: key.into(),
        request_hash: request_hash(new),
    };
    let CreatedOnce::Created(first) = store.create_task_once(new.clone(), t0, &keyed(7, "k1", &new)).await.unwrap()
    else {
        panic!("a new key creates")
    };
    assert_eq!(first.name, "once");
    let again = store.create_task_once(new.clone(), t0 + Duration::hours(23), &keyed(7, "k1", &new)).await.unwrap();
    assert_eq!(again, CreatedOnce::Replayed(first.id), "the same request replays");
    let other = task("once", 7, Some("something else"));
    let refused = store.create_task_once(other.clone(), t0, &keyed(7, "k1", &other)).await;
    assert!(matches!(refused, Err(StoreError::Rejected(DomainError::IdempotencyKeyReused))), "{refused:?}");
    let theirs = store.create_task_once(new.clone(), t0, &keyed(8, "k1", &new)).await.unwrap();
    assert!(matches!(theirs, CreatedOnce::Created(ref t) if t.id != first.id), "another associate's key");
    let count = |store: Arc<dyn Store>| async move {
        store.find_tasks(&TaskFilter { name: Some("once".into()), ..TaskFilter::default() }).await.unwrap().len()
    };
    assert_eq!(count(store.clone()).await, 2);
    // Past the window the key is free again.
    let late = t0 + chrono::Duration::from_std(WINDOW).unwrap() + Duration::seconds(1);
    let renewed = store.create_task_once(other.clone(), late, &keyed(7, "k1", &other)).await.unwrap();
    let CreatedOnce::Created(renewed) = renewed else { panic!("an expired key creates again") };
    assert_ne!(renewed.id, first.id);
    assert_eq!(
        store.create_task_once(other.clone(), late, &keyed(7, "k1", &other)).await.unwrap(),
        CreatedOnce::Replayed(renewed.id)
    );

    // Racing creates under one key: one task, every answer its id.
    let racer = task("raced", 9, None);
    let mut joins = Vec::new();
    for _ in 0..8 {
        let (store, racer) = (store.clone(), racer.clone());
        let k = keyed(9, "race", &racer);
        joins.push(tokio::spawn(async move { store.create_task_once(racer, t0, &k).await.unwrap() }));
    }
    let mut ids = Vec::new();
    let mut created = 0;
    for j in joins {
        match j.await.unwrap() {
            CreatedOnce::Created(t) => {
                created += 1;
                ids.push(t.id)
            }
            CreatedOnce::Replayed(id) => ids.push(id),
        }
    }
    assert_eq!(created, 1, "{ids:?}");
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let raced = store.find_tasks(&TaskFilter { name: Some("raced".into()), ..TaskFilter::default() }).await.unwrap();
    assert_eq!(raced.len(), 1);

    // Retention removes what has expired only.
    assert_eq!(store.purge_idempotency_keys(expired_before(t0), 100).await.unwrap(), 0);
    // Keys first used at t0 (associate 8's, the race's) are past their window; associate 7's was
    // used afresh at `late`.
    assert_eq!(store.purge_idempotency_keys(expired_before(late + Duration::seconds(1)), 100).await.unwrap(), 2);
    assert_eq!(store.purge_idempotency_keys(late + Duration::days(2), 100).await.unwrap(), 1);
}

/// `task_stats`: state counts and per-minute figures of finished tasks, for everyone and for one
/// owner (whose system tasks do not count), from `since` on.
async fn stats_story(store: Arc<dyn Store>, _probe: Box<dyn Probe>) {
    use BatchTaskState::{Failed, New, Started, Succeeded};
    let minute = Utc::now().timestamp().div_euclid(60) - 10;
    let t0 = DateTime::from_timestamp(minute * 60, 0).unwrap();
    let at = |s: i64| t0 + Duration::seconds(s);
    let go = |id: i32, when: DateTime<Utc>, state: BatchTaskState| {
        let store = store.clone();
        async move {
            let change = Box::new(move |t: &Task| update(|u| u.state = Patch::Set(state)).apply(t, when));
            store.modify_task(id, when, Actor::default(), change).await.unwrap();
        }
    };
    let new = |name: &str, owner: i32, system: bool, created: DateTime<Utc>| {
        let store = store.clone();
        let new = NewTask { is_system: system, ..task(name, owner, None) };
        async move { store.create_task(new, created).await.unwrap().id }
    };
    // a: waits 2 s, runs 3 s, ends in minute 0. b: waits 1 s, runs 64 s, fails in minute 1.
    let a = new("A", 7, false, at(0)).await;
    go(a, at(2), Started).await;
    go(a, at(5), Succeeded).await;
    let b = new("B", 7, false, at(0)).await;
    go(b, at(1), Started).await;
    go(b, at(65), Failed).await;
    // c: stopped before it started (no wait or run time). d: waits 3 s, runs 16 s.
    let c = new("C", 8, false, at(0)).await;
    go(c, at(10), Failed).await;
    let d = new("D", 8, false, at(1)).await;
    go(d, at(4), Started).await;
    go(d, at(20), Succeeded).await;
    // e: a system task of associate 7. f: still waiting. g: finished two hours earlier.
    let e = new("E", 7, true, at(0)).await;
    go(e, at(1), Started).await;
    go(e, at(2), Succeeded).await;
    new("F", 7, false, at(0)).await;
    let g = new("G", 7, false, at(-7200)).await;
    go(g, at(-7199), Started).await;
    go(g, at(-7198), Succeeded).await;

    let row = |minute: i64, state, finished, started, wait: (i64, i64), run: (i64, i64)| MinuteStats {
        minute: at(minute * 60),
        state,
        finished,
        started,
        wait_ms_total: wait.0,
        wait_ms_max: wait.1,
        run_ms_total: run.0,
        run_ms_max: run.1,
    };
    let all = store.task_stats(t0, None).await.unwrap();
    assert_eq!(all.states, vec![(New, 1), (Succeeded, 4), (Failed, 2)], "every task counts");
    assert_eq!(
        all.minutes,
        vec![
            row(0, Succeeded, 3, 3, (2000 + 3000 + 1000, 3000), (3000 + 16000 + 1000, 16000)),
            row(0, Failed, 1, 0, (0, 0), (0, 0)),
            row(1, Failed, 1, 1, (1000, 1000), (64000, 64000)),
        ],
        "grouped by minute and end state, oldest first; g is before the window"
    );
    let own = store.task_stats(t0, Some(7)).await.unwrap();
    assert_eq!(own.states, vec![(New, 1), (Succeeded, 2), (Failed, 1)], "7's own tasks, not its system task");
    assert_eq!(
        own.minutes,
        vec![row(0, Succeeded, 1, 1, (2000, 2000), (3000, 3000)), row(1, Failed, 1, 1, (1000, 1000), (64000, 64000))]
    );
    let later = store.task_stats(at(60), None).await.unwrap();
    assert_eq!(later.minutes, vec![row(1, Failed, 1, 1, (1000, 1000), (64000, 64000))], "since is inclusive");
    let nobody = store.task_stats(t0, Some(99)).await.unwrap();
    assert_eq!((nobody.states, nobody.minutes), (vec![], vec![]));
}

/// Task dependencies: a task waits (unclaimable, also by claim-on-create) until every task it
/// names has succeeded; a failure or a deletion fails it, naming the dependency, and so on down
/// the chain; a rerun waits for its failed dependency to run again.
async fn dependencies_story(store: Arc<dyn Store>, probe: Box<dyn Probe>) {
    use batchd::store::runner::{ClaimName, ClaimRequest, Finish, FinishOutcome};
    let t0 = micros_now();
    let req = ClaimRequest {
        node: "n1".into(),
        lease: std::time::Duration::from_secs(30),
        names: vec![ClaimName { name: "dep".into(), concurrency: None, rate: None }],
        max: 10,
        start: true,
        associate_id: None,
    };
    let after = |ids: &[i32]| NewTask { after: ids.to_vec(), ..task("dep", 1, None) };
    let finish = |c: &batchd::store::runner::Claimed, outcome| Finish {
        id: c.task.id,
        token: c.lease.token.clone(),
        outcome,
        result: None,
        response: None,
        progress: None,
        actor: Actor::node("n1", "done"),
    };
    let get = |id: i32| {
        let store = store.clone();
        async move { store.get_task(id).await.unwrap().unwrap() }
    };
    let a = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    let b = store.create_task(after(&[a]), t0).await.unwrap().id;
    let c = store.create_task(after(&[b]), t0).await.unwrap().id;
    let d = store.create_task(after(&[a, b]), t0).await.unwrap().id;
    // Claim-on-create leaves a waiting task alone, and the claim takes only `a`.
    let (e, lease) = store.create_and_claim(after(&[a]), t0, &req).await.unwrap();
    assert!(lease.is_none());
    assert_eq!(e.state, BatchTaskState::New);
    let claimed = store.claim_tasks(&req, t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [a]);
    assert!(store.claim_tasks(&req, t0).await.unwrap().is_empty(), "nothing else is due while a runs");
    store.finish_tasks(vec![finish(&claimed[0], FinishOutcome::Succeeded)], t0).await.unwrap();
    // a succeeded: b and e are due; d still waits for b.
    let claimed = store.claim_tasks(&req, t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [b, e.id]);
    let deps = store.task_dependencies(d, None, 100).await.unwrap();
    assert_eq!(deps.after.iter().map(|x| (x.id, x.satisfied)).collect::<Vec<_>>(), [(a, true), (b, false)]);
    let deps = store.task_dependencies(a, None, 2).await.unwrap();
    assert_eq!(deps.before.iter().map(|t| t.id).collect::<Vec<_>>(), [b, d], "the first two by id");
    assert!(deps.more_before);
    assert!(store.task_dependencies(a, Some(99), 100).await.unwrap().before.is_empty(), "another owner's");
    // b fails for good: c and d end Failed naming b, in the same transaction.
    let b_claim = claimed.iter().find(|x| x.task.id == b).unwrap();
    store.finish_tasks(vec![finish(b_claim, FinishOutcome::Failed { retry: false })], t0).await.unwrap();
    for id in [c, d] {
        let t = get(id).await;
        assert_eq!(
            (t.state, t.result.as_deref()),
            (BatchTaskState::Failed, Some(format!("dependency {b} failed").as_str()))
        );
        assert_eq!(t.start_count, 0);
        let last = store.task_events(id).await.unwrap().pop().unwrap();
        assert_eq!(last.reason, Some(format!("dependency {b} failed")));
    }
    // Transitively: a task after c (already failed) is created Failed, naming c.
    let f = store.create_task(after(&[c]), t0).await.unwrap();
    assert_eq!((f.state, f.result.clone()), (BatchTaskState::Failed, Some(format!("dependency {c} failed"))));
    // A rerun of c waits for b to run again: refused, then allowed once b is New.
    let guard = || -> batchd::store::DeleteGuard { Box::new(|_| Ok(())) };
    let refused = store.retry_task(c, t0, Actor::default(), guard()).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Rejected(DomainError::DependencyNotMet { after, .. }) if after == i64::from(b)),
        "{refused:?}"
    );
    store.retry_task(b, t0, Actor::default(), guard()).await.unwrap();
    assert_eq!(store.retry_task(c, t0, Actor::default(), guard()).await.unwrap().state, BatchTaskState::New);
    let claimed = store.claim_tasks(&req, t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [b], "c waits for b again");
    store.finish_tasks(vec![finish(&claimed[0], FinishOutcome::SucceededManualCleanup)], t0).await.unwrap();
    let claimed = store.claim_tasks(&req, t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [c]);
    // A deleted dependency fails its waiting dependent; a rerun of that one is refused.
    let g = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    let h = store.create_task(after(&[g]), t0).await.unwrap().id;
    store.delete_task(g, t0, Actor::default(), guard()).await.unwrap();
    let t = get(h).await;
    assert_eq!((t.state, t.result), (BatchTaskState::Failed, Some(format!("dependency {g} was deleted"))));
    let refused = store.retry_task(h, t0, Actor::default(), guard()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Rejected(DomainError::DependencyNotMet { state: None, .. })), "{refused:?}");
    // An id that does not exist (any more) refuses the create.
    let missing = store.create_task(after(&[g]), t0).await.unwrap_err();
    assert!(matches!(missing, StoreError::Rejected(DomainError::UnknownValue { .. })), "{missing:?}");
    // A move by hand counts too: Failed releases nothing, Succeeded releases.
    let i = store.create_task(NewTask { name: "other".into(), ..task("dep", 1, None) }, t0).await.unwrap().id;
    let j = store.create_task(after(&[i]), t0).await.unwrap().id;
    for to in [BatchTaskState::Started, BatchTaskState::Succeeded] {
        store
            .modify_task(i, t0, Actor::default(), Box::new(move |t| Ok(Task { state: to, ..t.clone() })))
            .await
            .unwrap();
    }
    let claimed = store.claim_tasks(&req, t0).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [j]);
    // A dependency moved to Failed by hand fails its waiting dependent, naming it.
    let k = store.create_task(NewTask { name: "other".into(), ..task("dep", 1, None) }, t0).await.unwrap().id;
    let l = store.create_task(after(&[k]), t0).await.unwrap().id;
    set_state(&store, k, BatchTaskState::Failed).await;
    let t = get(l).await;
    assert_eq!((t.state, t.result), (BatchTaskState::Failed, Some(format!("dependency {k} failed"))));
    assert!(store.claim_tasks(&req, t0).await.unwrap().is_empty(), "l is not claimed");

    // Any move back to New checks the dependencies, not only a finished task's: a waiting task
    // moved on by hand (Started, Unknown) while its dependency failed may not be made New.
    let m = store.create_task(NewTask { name: "other".into(), ..task("dep", 1, None) }, t0).await.unwrap().id;
    let n = store.create_task(after(&[m]), t0).await.unwrap().id;
    let o = store.create_task(after(&[m]), t0).await.unwrap().id;
    set_state(&store, n, BatchTaskState::Started).await;
    set_state(&store, o, BatchTaskState::Unknown).await;
    set_state(&store, m, BatchTaskState::Failed).await;
    for id in [n, o] {
        let r = store
            .modify_task(id, t0, Actor::default(), Box::new(|t| Ok(Task { state: BatchTaskState::New, ..t.clone() })))
            .await;
        assert!(
            matches!(&r, Err(StoreError::Rejected(DomainError::DependencyNotMet { after, .. })) if *after == i64::from(m)),
            "{r:?}"
        );
    }
    // A rescue of a run whose node died, that would make it New while its dependency is failed,
    // ends it Failed naming the dependency (the maintenance loop does not fail).
    probe
        .exec(&format!(
            "UPDATE batchtask SET lease_token = 'gone', lease_node = 'dead', lease_expires = {} WHERE batchtask_id = {n}",
            probe.time_literal(t0 - Duration::seconds(60))
        ))
        .await;
    let rescued = store.rescue_expired("n1", t0, 10, std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(rescued.iter().map(|r| (r.id, r.to)).collect::<Vec<_>>(), [(n, BatchTaskState::Failed)]);
    let t = get(n).await;
    assert_eq!((t.state, t.result), (BatchTaskState::Failed, Some(format!("dependency {m} failed"))));
    let moves: Vec<_> = store.task_events(n).await.unwrap().iter().rev().take(2).map(|e| (e.from, e.to)).collect();
    assert_eq!(
        moves,
        [
            (Some(BatchTaskState::New), Some(BatchTaskState::Failed)),
            (Some(BatchTaskState::Started), Some(BatchTaskState::New))
        ],
    );

    // Bounds: a task with the most dependents takes no more; a chain stops at the deepest.
    let p = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    let max = batchd::domain::dependency::DEPENDENTS_MAX;
    probe.exec(&probe.fake_dependents(p, max - 1)).await;
    let last = store.create_task(after(&[p]), t0).await.unwrap().id;
    let r = store.create_task(after(&[p]), t0).await;
    assert!(
        matches!(&r, Err(StoreError::Rejected(DomainError::TooManyDependents { id, max: m, .. })) if *id == i64::from(p) && *m == max),
        "{r:?}"
    );
    store.delete_task(last, t0, Actor::default(), guard()).await.unwrap();
    store.create_task(after(&[p]), t0).await.unwrap();
    let depth_max = batchd::domain::dependency::DEPTH_MAX;
    let q = store.create_task(task("dep", 1, None), t0).await.unwrap().id;
    probe.exec(&format!("UPDATE batchtask SET after_depth = {} WHERE batchtask_id = {q}", depth_max - 2)).await;
    let r1 = store.create_task(after(&[q]), t0).await.unwrap().id;
    let r2 = store.create_task(after(&[r1, q]), t0).await.unwrap().id;
    let r = store.create_task(after(&[r2]), t0).await;
    assert!(
        matches!(&r, Err(StoreError::Rejected(DomainError::ChainTooDeep { max, .. })) if *max == depth_max),
        "the chain q → r1 → r2 → r3 is one too long: {r:?}"
    );
    store.create_task(after(&[r1]), t0).await.unwrap();

    // The create's ON CONFLICT is for the live-unique key alone: another unique index refusing
    // the row is an error, not taken for a unique task's collision.
    probe.exec("CREATE UNIQUE INDEX test_unique_description ON batchtask (description)").await;
    store.create_task(task("dep", 1, Some("once")), t0).await.unwrap();
    let r = store.create_task(task("dep", 1, Some("once")), t0).await;
    assert!(matches!(&r, Err(StoreError::Backend(_))), "{r:?}");
    let keyed = NewTask { unique_key: Some("dep-k".into()), ..task("dep", 1, Some("once")) };
    let r = store.create_task(keyed, t0).await;
    assert!(matches!(&r, Err(StoreError::Backend(_))), "{r:?}");
    probe.exec("DROP INDEX test_unique_description").await;
}

async fn set_state(store: &Arc<dyn Store>, id: i32, state: BatchTaskState) {
    let t = store
        .modify_task(id, micros_now(), Actor::default(), Box::new(move |t| Ok(Task { state, ..t.clone() })))
        .await
        .unwrap();
    assert_eq!(t.state, state);
}
