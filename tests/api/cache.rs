//! The task cache behind `GET /api/v1/BatchTask/{id}` (src/store/cache.rs): a node reads its own
//! writes at once, whatever wrote (an edit, a stop, a retry, a deletion, a worker's progress, a
//! dependency's end); another PostgreSQL node's writes arrive by the change feed; while the feed
//! is down nothing stale is served; rights and ETags are checked on every read as before.

use std::time::{Duration, Instant};

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::pg::TestPg;
use crate::runner::spawn_runner_with;

const DEFS: &str = "[[definition]]\nname = \"ext\"\nrunner = \"external\"\n";

/// A node whose cached tasks would be served for a minute: only an invalidation explains a
/// fresh answer.
async fn node(pg: Option<&str>, name: &'static str) -> TestApp {
    let url = pg.map(str::to_owned);
    spawn_runner_with(DEFS, move |c| {
        if let Some(url) = url {
            c.database = url;
        }
        c.runner.node = Some(name.into());
        c.http.task_cache_max_age = Duration::from_secs(60);
    })
    .await
}

fn path(id: i64) -> String {
    format!("/api/v1/BatchTask/{id}")
}

async fn get(app: &TestApp, id: i64) -> (u16, Value) {
    let res = app.get(&path(id)).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn ok(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Every write path, each followed at once by a GET (cached just before) that must show it.
async fn own_writes_are_read_at_once(app: &TestApp) {
    let worker = app.add_associate("worker1", Role::Worker).await;
    let w = app.as_user(&worker);
    for round in 0..15 {
        // An edit, then its ETag: 304 for the new one, 200 for the old.
        let id = app.create(&json!({"Name": "Export", "Description": "v0"})).await;
        let before = app.get(&path(id)).await;
        let old_etag = before.headers()["etag"].to_str().unwrap().to_owned();
        let put = app.put_json(&path(id), &json!({"Description": format!("v{round}")})).await;
        let new_etag = put.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(get(app, id).await.1["Description"], format!("v{round}"), "round {round}: an edit");
        let res = app.request(Method::GET, &path(id)).header("If-None-Match", &new_etag).send().await.unwrap();
        assert_eq!(res.status(), 304, "round {round}");
        let res = app.request(Method::GET, &path(id)).header("If-None-Match", &old_etag).send().await.unwrap();
        assert_eq!(res.status(), 200, "round {round}: the old ETag is not current");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), new_etag);

        // A dependent, then a stop of what it waits for: both fail, the dependent by the cascade.
        let dependent = app.create(&json!({"Name": "Export", "After": [id]})).await;
        assert_eq!(get(app, dependent).await.1["State"], "New");
        assert_eq!(app.request(Method::POST, &format!("{}/Stop", path(id))).send().await.unwrap().status(), 200);
        assert_eq!(get(app, id).await.1["State"], "Failed", "round {round}: a stop");
        assert_eq!(get(app, dependent).await.1["State"], "Failed", "round {round}: the dependency's end");

        // A retry, then a deletion.
        ok(app.request(Method::POST, &format!("{}/Retry", path(id))).send().await.unwrap()).await;
        assert_eq!(get(app, id).await.1["State"], "New", "round {round}: a retry");
        assert_eq!(app.request(Method::DELETE, &path(id)).send().await.unwrap().status(), 204);
        assert_eq!(get(app, id).await.0, 404, "round {round}: a deletion");

        // A worker's claim, progress and end.
        let ext = app.create(&json!({"Name": "ext"})).await;
        assert_eq!(get(app, ext).await.1["State"], "New");
        let res = w.send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": ["ext"], "Wait": 0})).await;
        let claim = ok(res).await;
        let token = claim["LeaseToken"].as_str().unwrap().to_owned();
        assert_eq!(claim["Task"]["Id"], ext);
        assert_eq!(get(app, ext).await.1["State"], "Aquired", "round {round}: a claim");
        // Heartbeats closer than a second apart are answered without a write (PROGRESS_SPACING):
        // a second one, a second later, in the first rounds only.
        let beats: &[i64] = if round < 2 { &[10, 60] } else { &[10] };
        for (n, percent) in beats.iter().copied().enumerate() {
            if n > 0 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            let res = w
                .request(Method::POST, &format!("{}/Heartbeat", path(ext)))
                .header("X-Lease-Token", &token)
                .json(&json!({"ProgressPercent": percent}))
                .send()
                .await
                .unwrap();
            ok(res).await;
            let t = get(app, ext).await.1;
            assert_eq!((t["State"].as_str(), t["ProgressPercent"].as_i64()), (Some("Started"), Some(percent)));
        }
        let res = w
            .request(Method::PUT, &path(ext))
            .header("X-Lease-Token", &token)
            .json(&json!({"State": "Succeeded", "Response": "done"}))
            .send()
            .await
            .unwrap();
        ok(res).await;
        let t = get(app, ext).await.1;
        assert_eq!((t["State"].as_str(), t["Response"].as_str()), (Some("Succeeded"), Some("done")), "round {round}");
    }
}

#[tokio::test]
async fn a_node_reads_its_own_writes_at_once_on_sqlite() {
    own_writes_are_read_at_once(&node(None, "a").await).await;
}

#[tokio::test]
async fn a_node_reads_its_own_writes_at_once_on_postgres() {
    let Some(db) = TestPg::create("cache::a_node_reads_its_own_writes_at_once_on_postgres").await else { return };
    own_writes_are_read_at_once(&node(Some(&db.url), "a").await).await;
}

/// Polls node `app` until task `id` answers as `ok` says, for at most `limit`.
async fn seen_within(app: &TestApp, id: i64, limit: Duration, ok: impl Fn(u16, &Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let (status, t) = get(app, id).await;
        if ok(status, &t) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "task {id} still {status} {t} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn another_postgres_nodes_writes_reach_the_cache_by_the_feed() {
    let Some(db) = TestPg::create("cache::another_postgres_nodes_writes_reach_the_cache_by_the_feed").await else {
        return;
    };
    let a = node(Some(&db.url), "a").await;
    let b = node(Some(&db.url), "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening
    for round in 0..10 {
        let id = a.create(&json!({"Name": "Export", "Description": "old"})).await;
        assert_eq!(get(&b, id).await.1["Description"], "old");
        assert_eq!(get(&b, id).await.1["Description"], "old", "cached now");
        ok(a.put_json(&path(id), &json!({"Description": format!("new {round}")})).await).await;
        // The cache would serve "old" for a minute: only the notice explains a quick change.
        let want = format!("new {round}");
        seen_within(&b, id, Duration::from_secs(3), |s, t| s == 200 && t["Description"] == want.as_str()).await;
        // A stop on B, read on A (both caches).
        assert_eq!(get(&a, id).await.1["State"], "New");
        assert_eq!(b.request(Method::POST, &format!("{}/Stop", path(id))).send().await.unwrap().status(), 200);
        seen_within(&a, id, Duration::from_secs(3), |s, t| s == 200 && t["State"] == "Failed").await;
        assert_eq!(a.request(Method::DELETE, &path(id)).send().await.unwrap().status(), 204);
        seen_within(&b, id, Duration::from_secs(3), |s, _| s == 404).await;
    }
}

#[tokio::test]
async fn the_default_max_age_bounds_a_lost_notice_on_postgres() {
    let Some(db) = TestPg::create("cache::the_default_max_age_bounds_a_lost_notice_on_postgres").await else {
        return;
    };
    let a = TestApp::spawn_with(|c| c.database = db.url.clone()).await;
    let b = TestApp::spawn_with(|c| c.database = db.url.clone()).await;
    let id = a.create(&json!({"Name": "Export", "Description": "old"})).await;
    assert_eq!(get(&b, id).await.1["Description"], "old");
    // A write the feed does not tell (as by a node that died between its commit and its notice).
    let mut conn = db.connect().await;
    sqlx::query("SET batchd.task_notices = 'after_commit'").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE batchtask SET description = 'new', updatedcount = updatedcount + 1 WHERE batchtask_id = $1")
        .bind(id as i32)
        .execute(&mut conn)
        .await
        .unwrap();
    let took = seen_within(&b, id, Duration::from_secs(5), |_, t| t["Description"] == "new").await;
    assert!(took <= Duration::from_millis(1500), "served stale for {took:?}, past the 1 s max age");
}

/// A PATCH decides on the stored task, not on a cached copy: a copy a moment behind another
/// node's write (here one the feed never tells) must not refuse the new ETag with a 412.
#[tokio::test]
async fn a_patch_checks_its_precondition_on_the_stored_task_on_postgres() {
    let Some(db) = TestPg::create("cache::a_patch_checks_its_precondition_on_the_stored_task").await else {
        return;
    };
    let b = node(Some(&db.url), "b").await;
    let id = b.create(&json!({"Name": "ext", "Description": "old"})).await;
    assert_eq!(get(&b, id).await.1["Description"], "old");
    let mut conn = db.connect().await;
    sqlx::query("SET batchd.task_notices = 'after_commit'").execute(&mut conn).await.unwrap();
    let version: i64 = sqlx::query_scalar(
        "UPDATE batchtask SET description = 'new', updatedcount = updatedcount + 1 WHERE batchtask_id = $1 \
         RETURNING updatedcount::bigint",
    )
    .bind(id as i32)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(get(&b, id).await.1["Description"], "old", "the cached copy is the old one (60 s max age)");
    let res = b
        .request(reqwest::Method::PATCH, &path(id))
        .header("Content-Type", "application/merge-patch+json")
        .header("If-Match", format!("\"{id}-{version}\""))
        .body(json!({"Response": "patched"}).to_string())
        .send()
        .await
        .unwrap();
    let t = ok(res).await;
    assert_eq!((&t["Description"], &t["Response"]), (&json!("new"), &json!("patched")));
}

#[tokio::test]
async fn with_the_feed_down_no_stale_task_is_served_on_postgres() {
    let Some(db) = TestPg::create("cache::with_the_feed_down_no_stale_task_is_served_on_postgres").await else {
        return;
    };
    let a = node(Some(&db.url), "a").await;
    let b = node(Some(&db.url), "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = a.create(&json!({"Name": "Export", "Description": "v0"})).await;
    assert_eq!(get(&b, id).await.1["Description"], "v0");
    let mut admin = db.connect().await;
    for round in 1..=10 {
        let session = b.store.feed().session();
        assert!(session.is_some(), "round {round}: the feed is up");
        // Ends every listener (both nodes'): their notices are lost until they listen again.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'",
        )
        .execute(&mut admin)
        .await
        .unwrap();
        let start = Instant::now();
        while b.store.feed().session() == session {
            assert!(start.elapsed() < Duration::from_secs(3), "round {round}: the listener never noticed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Read on B, write on A, read on B, while B's listener is (or just was) away.
        let _ = get(&b, id).await;
        ok(a.put_json(&path(id), &json!({"Description": format!("v{round}")})).await).await;
        assert_eq!(get(&b, id).await.1["Description"], format!("v{round}"), "round {round}");
        // Back up: cached again, and told again.
        let start = Instant::now();
        while b.store.feed().session().is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "round {round}: the listener never came back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn a_cached_task_is_shown_only_to_who_may_see_it(app: &TestApp) {
    let alice = app.add_associate("alice", Role::User).await;
    let bob = app.add_associate("bob", Role::User).await;
    let admin_task = app.create(&json!({"Name": "Export"})).await;
    let alices = app.as_user(&alice).create(&json!({"Name": "Export"})).await;
    for _ in 0..3 {
        // Cached by whoever may see it, then asked for by someone who may not.
        assert_eq!(get(app, admin_task).await.0, 200);
        assert_eq!(get(app, alices).await.0, 200);
        for (who, id) in [(&alice, admin_task), (&bob, admin_task), (&bob, alices)] {
            let res = app.as_user(who).get(&path(id)).await;
            assert_error(res, 404, "SoNotFoundException", &id.to_string()).await;
        }
        assert_eq!(app.as_user(&alice).get(&path(alices)).await.status(), 200);
        // XML and the field properties come from the same cached task, per caller.
        let xml = app.as_user(&alice).request(Method::GET, &path(alices)).header("Accept", "application/xml");
        let text = xml.send().await.unwrap().text().await.unwrap();
        assert!(text.contains(&format!("<Id>{alices}</Id>")), "{text}");
    }
}

#[tokio::test]
async fn a_cached_task_is_shown_only_to_who_may_see_it_on_sqlite() {
    a_cached_task_is_shown_only_to_who_may_see_it(&node(None, "a").await).await;
}

#[tokio::test]
async fn a_cached_task_is_shown_only_to_who_may_see_it_on_postgres() {
    let Some(db) = TestPg::create("cache::a_cached_task_is_shown_only_to_who_may_see_it_on_postgres").await else {
        return;
    };
    a_cached_task_is_shown_only_to_who_may_see_it(&node(Some(&db.url), "a").await).await;
}

/// The same through the store itself, on tokio's one-thread test runtime: a cached read after a
/// write runs before the feed's consumer can, so only the write's own marking can explain a
/// fresh answer (on PostgreSQL the notice often arrives first over HTTP).
async fn the_stores_own_writes_mark_the_cache(store: std::sync::Arc<dyn batchd::store::Store>) {
    use batchd::domain::{NewTask, Task};
    use batchd::store::runner::Actor;
    let limits = batchd::store::cache::Limits { entries: 100, bytes: 1 << 20, max_age: Duration::from_secs(60) };
    let store = batchd::store::cache::CachedStore::wrap(store, limits);
    let now = chrono::Utc::now;
    for round in 0..20 {
        let new = NewTask { name: "Export".into(), associate_id: 1, ..NewTask::default() };
        let id = store.create_task(new, now()).await.unwrap().id;
        let read = store.get_task(id).await.unwrap().unwrap();
        assert_eq!(store.get_task(id).await.unwrap(), Some(read.clone()), "cached");
        let want = format!("round {round}");
        let d = want.clone();
        let change = Box::new(move |t: &Task| Ok(Task { description: Some(d.clone()), ..t.clone() }));
        store.modify_task(id, now(), Actor::default(), change).await.unwrap();
        let t = store.get_task(id).await.unwrap().unwrap();
        assert_eq!((t.description.as_deref(), t.version), (Some(want.as_str()), read.version + 1), "round {round}");
        store.delete_task(id, now(), Actor::default(), Box::new(|_| Ok(()))).await.unwrap();
        assert_eq!(store.get_task(id).await.unwrap(), None, "round {round}: deleted");
    }
}

#[tokio::test]
async fn the_stores_own_writes_mark_the_cache_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    the_stores_own_writes_mark_the_cache(batchd::store::open(&url).await.unwrap()).await;
}

#[tokio::test]
async fn the_stores_own_writes_mark_the_cache_on_postgres() {
    let Some(db) = TestPg::create("cache::the_stores_own_writes_mark_the_cache_on_postgres").await else { return };
    the_stores_own_writes_mark_the_cache(batchd::store::open(&db.url).await.unwrap()).await;
}

/// A heartbeat that repeats its progress moves the ETag and nothing else a trigger compared
/// before migration 0017: another node must still hear of it.
#[tokio::test]
async fn a_version_only_change_reaches_another_postgres_node() {
    let Some(db) = TestPg::create("cache::a_version_only_change_reaches_another_postgres_node").await else { return };
    let a = node(Some(&db.url), "a").await;
    let b = node(Some(&db.url), "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker = a.add_associate("worker1", Role::Worker).await;
    let w = a.as_user(&worker);
    let id = a.create(&json!({"Name": "ext"})).await;
    let res = w.send_json(Method::POST, "/api/v1/BatchTask/Acquire", &json!({"Names": ["ext"], "Wait": 0})).await;
    let token = ok(res).await["LeaseToken"].as_str().unwrap().to_owned();
    let beat = || {
        w.request(Method::POST, &format!("{}/Heartbeat", path(id)))
            .header("X-Lease-Token", &token)
            .json(&json!({"ProgressPercent": 10}))
            .send()
    };
    ok(beat().await.unwrap()).await;
    let etag = |res: &reqwest::Response| res.headers()["etag"].to_str().unwrap().to_owned();
    let first = etag(&b.get(&path(id)).await);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a second apart, so it is written
    ok(beat().await.unwrap()).await;
    let now = etag(&a.get(&path(id)).await);
    assert_ne!(now, first, "the repeated progress moved the ETag");
    let start = Instant::now();
    while etag(&b.get(&path(id)).await) != now {
        assert!(start.elapsed() < Duration::from_secs(3), "node B still answers ETag {first}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A runner's claim and finishes of one task mark only that task: another task's entry stays
/// (also one waiting for it, until it ends), while a failure that fails a dependent drops the
/// dependent's entry. On the one-thread runtime, as above.
async fn a_runners_writes_mark_only_what_they_changed(store: std::sync::Arc<dyn batchd::store::Store>) {
    use batchd::domain::{BatchTaskState as S, NewTask, Task};
    use batchd::store::runner::{ClaimName, ClaimRequest, Finish, FinishOutcome, FinishResult};
    let limits = batchd::store::cache::Limits { entries: 100, bytes: 1 << 20, max_age: Duration::from_secs(60) };
    let (store, cache) = batchd::store::cache::CachedStore::wrap_cache(store, limits);
    let now = chrono::Utc::now;
    let claim = ClaimRequest {
        node: "n".into(),
        lease: Duration::from_secs(60),
        names: vec![ClaimName { name: "m".into(), concurrency: None, rate: None }],
        max: 1,
        start: false,
        associate_id: None,
    };
    let finish = |id: i32, token: &str, outcome| Finish {
        id,
        token: token.to_owned(),
        outcome,
        result: None,
        response: None,
        progress: None,
        actor: batchd::store::runner::Actor::default(),
    };
    let new = |name: &str, after: Vec<i32>| NewTask { name: name.into(), associate_id: 1, after, ..NewTask::default() };
    // The stored row, past the cache.
    let stored = async |id: i32| -> Task { store.tasks_by_id(&[id]).await.unwrap().pop().unwrap() };
    // Many rounds: on PostgreSQL the feed's notice of the dependent sometimes lands first.
    for (round, fail) in (0..24).map(|round| (round, round % 2 == 1)) {
        let a = store.create_task(new("m", vec![]), now()).await.unwrap().id;
        let other = store.create_task(new("Export", vec![]), now()).await.unwrap().id;
        let dependent = store.create_task(new("Export", vec![a]), now()).await.unwrap().id;
        // SQLite's feed tells of the dependent's edges written after its insert: let it drop
        // the entry before the fill, not after.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cached_other = store.get_task(other).await.unwrap().unwrap();
        let cached_dependent = store.get_task(dependent).await.unwrap().unwrap();
        let unchanged = |what: &str, id: i32, cached: &Task| {
            let entry = cache.get(id, store.feed().session(), Instant::now());
            assert_eq!(entry.as_ref(), Some(cached), "round {round}: {what} of task {a} left task {id} cached");
        };

        let claimed = store.claim_tasks(&claim, now()).await.unwrap();
        assert_eq!(claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(), [a], "round {round}");
        assert_eq!(store.get_task(a).await.unwrap().unwrap().state, S::Aquired, "round {round}: a claim");
        unchanged("a claim", other, &cached_other);
        unchanged("a claim", dependent, &cached_dependent);
        let token = claimed[0].lease.token.clone();
        let r = store.finish_tasks(vec![finish(a, &token, FinishOutcome::Start)], now()).await.unwrap();
        assert_eq!(r, [FinishResult::Done(S::Started)]);
        assert_eq!(store.get_task(a).await.unwrap().unwrap().state, S::Started, "round {round}: a start");
        unchanged("a start", other, &cached_other);
        unchanged("a start", dependent, &cached_dependent);

        let outcome = if fail { FinishOutcome::Failed { retry: false } } else { FinishOutcome::Succeeded };
        let end = if fail { S::Failed } else { S::Succeeded };
        let r = store.finish_tasks(vec![finish(a, &token, outcome)], now()).await.unwrap();
        assert_eq!(r, [FinishResult::Done(end)], "round {round}");
        assert_eq!(store.get_task(a).await.unwrap().unwrap().state, end, "round {round}: an end");
        if fail {
            let t = store.get_task(dependent).await.unwrap().unwrap();
            let want = format!("dependency {a} failed");
            assert_eq!((t.state, t.result.as_deref()), (S::Failed, Some(want.as_str())), "round {round}: the cascade");
            assert_eq!(t, stored(dependent).await, "round {round}");
        } else {
            unchanged("a success", other, &cached_other);
            // A success only counted the dependent's wait down: nothing a read shows. (Its entry
            // may still go: SQLite's feed tells of every row updated.)
            assert_eq!(stored(dependent).await, cached_dependent, "round {round}: the success changed nothing visible");
        }
    }
}

#[tokio::test]
async fn a_runners_writes_mark_only_what_they_changed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("c.db").display());
    a_runners_writes_mark_only_what_they_changed(batchd::store::open(&url).await.unwrap()).await;
}

#[tokio::test]
async fn a_runners_writes_mark_only_what_they_changed_on_postgres() {
    let Some(db) = TestPg::create("cache::a_runners_writes_mark_only_what_they_changed_on_postgres").await else {
        return;
    };
    a_runners_writes_mark_only_what_they_changed(batchd::store::open(&db.url).await.unwrap()).await;
}

/// One task as four kinds of reader see it (src/http/answers.rs keeps each one's encoded answer):
/// the admin in JSON, the admin in XML, the admin in another time zone, and a worker (who may not
/// delete another's task: other TableRight). Each as (Description, State, Created).
async fn views(app: &TestApp, worker: &(String, String), id: i64) -> Vec<(String, String, String)> {
    let json = |t: Value| {
        let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
        (s("Description"), s("State"), s("Created"))
    };
    let admin = ok(app.get(&path(id)).await).await;
    let oslo = ok(app.request(Method::GET, &path(id)).header("SO-TimeZone", "Europe/Oslo").send().await.unwrap()).await;
    let own = ok(app.as_user(worker).get(&path(id)).await).await;
    let xml = app.request(Method::GET, &path(id)).header("Accept", "application/xml").send().await.unwrap();
    assert_eq!(xml.status(), 200);
    let xml = xml.text().await.unwrap();
    let leaf = |name: &str| {
        let open = format!("<{name}>");
        let from = xml.find(&open).map_or(xml.len(), |i| i + open.len());
        xml[from..].split('<').next().unwrap_or_default().to_owned()
    };
    assert_eq!(own["TableRight"]["Mask"], "Select, Update");
    vec![json(admin), (leaf("Description"), leaf("State"), leaf("Created")), json(oslo), json(own)]
}

/// Every view of the task shows `description` and `state` (and the Oslo one its own zone).
fn all_show(views: &[(String, String, String)], description: &str, state: &str, what: &str) {
    for (i, (d, s, created)) in views.iter().enumerate() {
        assert_eq!((d.as_str(), s.as_str()), (description, state), "{what}: view {i}");
        assert_eq!(created.ends_with("+01:00"), i == 2, "{what}: view {i} in its zone: {created}");
    }
}

/// A kept answer is never served for a changed task: each view is read twice (kept), then the
/// task changes (an edit here, the runner, another node's edit), and every view shows it at once.
async fn kept_answers_show_every_change(a: &TestApp, b: Option<&TestApp>) {
    let owner = a.add_associate("owner1", Role::User).await;
    let worker = a.add_associate("worker1", Role::Worker).await;
    let id = a.as_user(&owner).create(&json!({"Name": "Export", "Description": "v0"})).await;
    let mut description = "v0".to_owned();
    for round in 1..=5 {
        for _ in 0..2 {
            all_show(&views(a, &worker, id).await, &description, "New", "kept");
        }
        description = format!("v{round}");
        ok(a.put_json(&path(id), &json!({"Description": description})).await).await;
        all_show(&views(a, &worker, id).await, &description, "New", &format!("round {round}: an edit"));
        let Some(b) = b else { continue };
        all_show(&views(a, &worker, id).await, &description, "New", "kept");
        description = format!("w{round}");
        ok(b.put_json(&path(id), &json!({"Description": description})).await).await;
        let want = description.clone();
        seen_within(a, id, Duration::from_secs(3), |s, t| s == 200 && t["Description"] == want.as_str()).await;
        all_show(&views(a, &worker, id).await, &description, "New", &format!("round {round}: another node's edit"));
    }
    // The runner's writes: a run, started and then ended by this node's runner. The views are
    // read one after another: once one shows the end, every view read after it must.
    let body = json!({"Name": "Sleep", "Description": "nap", "ParameterObject": {"Seconds": "1"}});
    let id = a.as_user(&owner).create(&body).await;
    seen_within(a, id, Duration::from_secs(10), |_, t| t["State"] != "New").await;
    let start = Instant::now();
    let (mut ended, mut running) = (false, false);
    loop {
        let v = views(a, &worker, id).await;
        for (i, (d, s, created)) in v.iter().enumerate() {
            assert_eq!(d, "nap", "the runner: view {i}");
            assert_eq!(created.ends_with("+01:00"), i == 2, "the runner: view {i} in its zone: {created}");
            if ended {
                assert_eq!(s, "Succeeded", "the runner: view {i}, read after the end was shown");
            }
            if s == "Succeeded" {
                ended = true;
            } else {
                running = true;
            }
        }
        if v.iter().all(|(_, s, _)| s == "Succeeded") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the run did not end: {v:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running, "the run was read before its end");
}

#[tokio::test]
async fn kept_answers_show_every_change_on_sqlite() {
    kept_answers_show_every_change(&node(None, "a").await, None).await;
}

#[tokio::test]
async fn kept_answers_show_every_change_on_postgres() {
    let Some(db) = TestPg::create("cache::kept_answers_show_every_change_on_postgres").await else { return };
    let a = node(Some(&db.url), "a").await;
    let b = node(Some(&db.url), "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening
    kept_answers_show_every_change(&a, Some(&b)).await;
}
