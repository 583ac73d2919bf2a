//! The live event stream (`GET /api/v1/BatchTask/Events/stream`) on SQLite and PostgreSQL: the
//! order of one task's events, the filters, rights, resumes, keep-alives, the subscriber limit,
//! shutdown, and (PostgreSQL) a change on one node streaming from another.

use std::time::{Duration, Instant};

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::pg::TestPg;

/// Two definitions run by external workers: tasks stay where the test puts them.
const EXT: &str = "[[definition]]\nname = \"ext\"\nrunner = \"external\"\n\n[[definition]]\nname = \"other\"\nrunner = \"external\"\n";

const PATH: &str = "/api/v1/BatchTask/Events/stream";

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A reader of one stream.
pub struct Sse {
    res: reqwest::Response,
    buf: String,
    pub comments: Vec<String>,
    pub retry: Option<u64>,
    pub ended: bool,
}

impl Sse {
    pub async fn open(app: &TestApp, user: &(String, String), query: &str, last: Option<&str>) -> Sse {
        let res = Self::request(app, user, query, last).await;
        assert_eq!(res.status(), 200, "{query}");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Sse { res, buf: String::new(), comments: Vec::new(), retry: None, ended: false }
    }

    pub async fn request(app: &TestApp, user: &(String, String), query: &str, last: Option<&str>) -> reqwest::Response {
        let mut req = app.client.get(app.url(&format!("{PATH}{query}"))).basic_auth(&user.0, Some(&user.1));
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        req.send().await.unwrap()
    }

    /// The next event within `within`; `None` when none came or the stream ended.
    pub async fn next_within(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        self.comments.push(c.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("retry: ") {
                        self.retry = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        assert!(data.is_none(), "one data line per event: {block:?}");
                        data = Some(serde_json::from_str(v).unwrap_or_else(|e| panic!("data is not JSON ({e}): {v}")));
                    } else if !line.is_empty() {
                        panic!("unexpected line {line:?} in {block:?}");
                    }
                }
                if let Some(event) = event {
                    let id = id.unwrap_or_else(|| panic!("an event without id: {block:?}"));
                    return Some(Message { id, event, data: data.expect("an event without data") });
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    pub async fn next(&mut self) -> Message {
        self.next_within(Duration::from_secs(10)).await.expect("an event within 10 s")
    }

    /// Nothing more within a short while.
    pub async fn quiet(&mut self) {
        if let Some(m) = self.next_within(Duration::from_millis(400)).await {
            panic!("unexpected event {m:?}");
        }
    }
}

fn admin(app: &TestApp) -> (String, String) {
    app.user.clone()
}

async fn acquire(app: &TestApp, name: &str) -> String {
    let res = app.post_json("/api/v1/BatchTask/Acquire", &json!({"Names": [name], "Wait": 0})).await;
    assert_eq!(res.status(), 200);
    res.headers()["x-lease-token"].to_str().unwrap().to_owned()
}

async fn heartbeat(app: &TestApp, id: i64, token: &str, body: Value) {
    let res = app
        .request(Method::POST, &format!("/api/v1/BatchTask/{id}/Heartbeat"))
        .header("X-Lease-Token", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

async fn describe(app: &TestApp, id: i64, text: &str) {
    let res = app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"Description": text})).await;
    assert_eq!(res.status(), 200);
}

fn changed(m: &Message) -> Vec<String> {
    let mut keys: Vec<String> = m.data["Changed"].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// Ids increase within a connection; they are compared as the server's seq, which this test
/// (unlike a client) may read.
fn seq(m: &Message) -> u64 {
    m.id.rsplit('-').next().unwrap().parse().unwrap()
}

async fn one_task_in_commit_order(app: &TestApp) {
    let mut all = Sse::open(app, &admin(app), "", None).await;
    let mut named = Sse::open(app, &admin(app), "?name=ext", None).await;
    let id = app.create(&json!({"Name": "ext", "Description": "d"})).await;
    let created = named.next().await;
    assert_eq!(
        (created.event.as_str(), &created.data["Id"], &created.data["Name"]),
        ("created", &json!(id), &json!("ext"))
    );
    assert_eq!(created.data["Task"], app.task(id).await, "the task as GET gives it");
    assert_eq!(named.retry, Some(2000));

    let token = acquire(app, "ext").await;
    let aquired = named.next().await;
    assert_eq!((aquired.event.as_str(), &aquired.data["Changed"]["State"]), ("state", &json!("Aquired")));
    // The first heartbeat starts the run, with progress: one state event says all of it.
    heartbeat(app, id, &token, json!({"ProgressPercent": 30, "ProgressDescription": "a third"})).await;
    let started = named.next().await;
    assert_eq!(started.event, "state");
    assert_eq!(started.data["Changed"]["State"], "Started");
    assert_eq!(changed(&started), ["LastStarted", "ProgressDescription", "ProgressPercent", "StartCount", "State"]);
    assert_eq!(started.data["Changed"]["LastStarted"], app.task(id).await["LastStarted"], "same format as GET");
    // A heartbeat that changes nothing visible says nothing; one with progress says progress.
    heartbeat(app, id, &token, json!({"ProgressPercent": 30, "ProgressDescription": "a third"})).await;
    heartbeat(app, id, &token, json!({"ProgressPercent": 60})).await;
    let progress = named.next().await;
    assert_eq!((progress.event.as_str(), &progress.data["Changed"]), ("progress", &json!({"ProgressPercent": 60})));
    let res = app
        .request(Method::PUT, &format!("/api/v1/BatchTask/{id}"))
        .header("X-Lease-Token", &token)
        .json(&json!({"State": "Succeeded", "Result": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let finished = named.next().await;
    assert_eq!((finished.event.as_str(), &finished.data["Changed"]["State"]), ("state", &json!("Succeeded")));
    assert_eq!(finished.data["Changed"]["Result"], "ok");
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let deleted = named.next().await;
    assert_eq!((deleted.event.as_str(), &deleted.data), ("deleted", &json!({"Id": id, "Name": "ext"})));

    // The unfiltered stream saw the same events, in the same order, with the same ids.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(all.next().await);
    }
    let kinds: Vec<&str> = seen.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(kinds, ["created", "state", "state", "progress", "state", "deleted"]);
    assert!(seen.windows(2).all(|w| seq(&w[0]) < seq(&w[1])), "{seen:?}");
    assert_eq!(seen[5].id, deleted.id);
    all.quiet().await;
}

async fn filters_select_a_task_or_a_definition(app: &TestApp) {
    // Open before the creates, so the hub has the tasks' first versions to compare with.
    let mut watching = Sse::open(app, &admin(app), "", None).await;
    let a = app.create(&json!({"Name": "ext"})).await;
    let b = app.create(&json!({"Name": "other"})).await;
    // Both created events are out before the filtered streams open: they start after them.
    for _ in 0..2 {
        assert_eq!(watching.next().await.event, "created");
    }
    let mut only_a = Sse::open(app, &admin(app), &format!("?task={a}"), None).await;
    let mut only_other = Sse::open(app, &admin(app), "?name=other", None).await;
    let mut both = Sse::open(app, &admin(app), &format!("?task={b}&name=other"), None).await;
    describe(app, b, "b1").await;
    describe(app, a, "a1").await;
    let m = only_a.next().await;
    assert_eq!(
        (m.data["Id"].as_i64(), m.event.as_str(), &m.data["Changed"]),
        (Some(a), "progress", &json!({"Description": "a1"}))
    );
    let m = only_other.next().await;
    assert_eq!((m.data["Id"].as_i64(), &m.data["Changed"]["Description"]), (Some(b), &json!("b1")));
    let m = both.next().await;
    assert_eq!(m.data["Id"].as_i64(), Some(b));
    for s in [&mut only_a, &mut only_other, &mut both] {
        s.quiet().await;
    }
    let none = Sse::open(app, &admin(app), &format!("?task={a}&name=other"), None).await;
    drop(none);

    for (query, needle) in [
        ("?task=abc", "task"),
        ("?task=0", "task"),
        ("?task=99999999999", "task"),
        ("?name=", "name"),
        (&*format!("?name={}", "x".repeat(300)), "name"),
    ] {
        let res = Sse::request(app, &admin(app), query, None).await;
        assert_error(res, 400, "ArgumentException", needle).await;
    }
    let res = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_eq!(res.status(), 401, "credentials needed");
}

async fn users_see_their_own_tasks_only(app: &TestApp) {
    let user = app.add_associate("plain", Role::User).await;
    let other = app.add_associate("neighbour", Role::User).await;
    let mut mine = Sse::open(app, &user, "", None).await;
    let mut peeking = Sse::open(app, &user, "?name=ext", None).await;
    let mut everything = Sse::open(app, &admin(app), "", None).await;
    let admins = app.create(&json!({"Name": "ext"})).await;
    let neighbours = app.as_user(&other).create(&json!({"Name": "ext"})).await;
    let users = app.as_user(&user).create(&json!({"Name": "ext"})).await;
    let m = mine.next().await;
    assert_eq!(
        (m.event.as_str(), m.data["Id"].as_i64()),
        ("created", Some(users)),
        "not the admin's nor the neighbour's"
    );
    assert_eq!(m.data["Task"]["TableRight"]["Mask"], "Select, Update, Delete", "the user's own rights");
    assert_eq!(peeking.next().await.data["Id"].as_i64(), Some(users));
    let ids: Vec<i64> = [everything.next().await, everything.next().await, everything.next().await]
        .iter()
        .map(|m| m.data["Id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [admins, neighbours, users], "admins see all");
    // Deletions: the cache knows whose the task was.
    for id in [admins, neighbours] {
        let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
        assert_eq!(res.status(), 204);
    }
    let res = app.as_user(&user).request(Method::DELETE, &format!("/api/v1/BatchTask/{users}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let m = mine.next().await;
    assert_eq!((m.event.as_str(), m.data["Id"].as_i64()), ("deleted", Some(users)));
    mine.quiet().await;
    for _ in 0..3 {
        assert_eq!(everything.next().await.event, "deleted");
    }
    // A user asking for another's task by id hears nothing of it.
    let theirs = app.create(&json!({"Name": "ext"})).await;
    let mut snooping = Sse::open(app, &user, &format!("?task={theirs}"), None).await;
    describe(app, theirs, "secret").await;
    snooping.quiet().await;
}

async fn a_resume_continues_without_gaps_or_duplicates(app: &TestApp) {
    let mut s = Sse::open(app, &admin(app), "?name=ext", None).await;
    // Edits in quick succession may fold into one event (docs/API.md); a second stream that
    // sees each edit before the next is made keeps them apart, so the resume has two to replay.
    let mut watcher = Sse::open(app, &admin(app), "?name=ext", None).await;
    let id = app.create(&json!({"Name": "ext"})).await;
    assert_eq!(s.next().await.event, "created");
    assert_eq!(watcher.next().await.event, "created");
    describe(app, id, "one").await;
    let one = s.next().await;
    assert_eq!(one.data["Changed"]["Description"], "one");
    assert_eq!(watcher.next().await.id, one.id);
    drop(s);
    for text in ["two", "three"] {
        describe(app, id, text).await;
        assert_eq!(watcher.next().await.data["Changed"]["Description"], text);
    }
    drop(watcher);
    // Another task's change while away: not this stream's.
    let other = app.create(&json!({"Name": "other"})).await;
    describe(app, other, "x").await;
    let mut resumed = Sse::open(app, &admin(app), "?name=ext", Some(&one.id)).await;
    let two = resumed.next().await;
    let three = resumed.next().await;
    assert_eq!(
        (&two.data["Changed"]["Description"], &three.data["Changed"]["Description"]),
        (&json!("two"), &json!("three"))
    );
    assert!(seq(&one) < seq(&two) && seq(&two) < seq(&three));
    resumed.quiet().await;
    describe(app, id, "four").await;
    let four = resumed.next().await;
    assert_eq!(four.data["Changed"]["Description"], "four");
    // Resuming from the newest event replays nothing; the stream goes on live.
    let mut up_to_date = Sse::open(app, &admin(app), "?name=ext", Some(&four.id)).await;
    up_to_date.quiet().await;

    for unknown in ["bogus", "00000000-1", &*format!("{}9", four.id)] {
        let mut s = Sse::open(app, &admin(app), "", Some(unknown)).await;
        let m = s.next().await;
        assert_eq!((m.event.as_str(), &m.data), ("resync", &json!({})), "{unknown}");
        // Its id resumes from now on.
        describe(app, id, unknown).await;
        let next = s.next().await;
        assert_eq!(next.data["Changed"]["Description"], unknown);
        let mut again = Sse::open(app, &admin(app), "", Some(&m.id)).await;
        assert_eq!(again.next().await.id, next.id, "the resync's id is a resume point");
    }
}

/// A server with the external definitions, on SQLite or on `pg`.
async fn spawn(tweak: impl FnOnce(&mut batchd::config::Config), pg: Option<&TestPg>) -> TestApp {
    let url = pg.map(|db| db.url.clone());
    crate::runner::spawn_runner_with(EXT, move |c| {
        if let Some(url) = url {
            c.database = url;
        }
        tweak(c);
    })
    .await
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = super::spawn(|_| {}, None).await;
                    super::$case(&app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::TestPg::create(concat!("stream::postgres::", stringify!($case))).await else { return };
                    let app = super::spawn(|_| {}, Some(&db)).await;
                    super::$case(&app).await;
                    drop(app);
                }
            )*
        }
    };
}

on_both!(
    one_task_in_commit_order,
    filters_select_a_task_or_a_definition,
    users_see_their_own_tasks_only,
    a_resume_continues_without_gaps_or_duplicates,
);

#[tokio::test]
async fn keep_alive_comments_the_limit_and_shutdown_end_streams() {
    let app = spawn(
        |c| {
            c.http.stream_keepalive = Duration::from_millis(200);
            c.http.max_stream_subscribers = 2;
        },
        None,
    )
    .await;
    let mut first = Sse::open(&app, &admin(&app), "", None).await;
    assert!(first.next_within(Duration::from_millis(700)).await.is_none());
    assert!(first.comments.iter().filter(|c| *c == "keep-alive").count() >= 2, "{:?}", first.comments);
    assert_eq!(first.retry, Some(2000));

    let second = Sse::open(&app, &admin(&app), "", None).await;
    let res = Sse::request(&app, &admin(&app), "", None).await;
    assert_eq!(res.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("2"));
    assert_error(res, 503, "ServiceUnavailableException", "2 event streams").await;
    drop(second);
    // The slot is free again once the server sees the connection go (at its next write).
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        let res = Sse::request(&app, &admin(&app), "", None).await;
        if res.status() == 200 {
            break res;
        }
        assert!(Instant::now() < deadline, "the slot of a closed stream was not freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(third);

    // A shutdown ends open streams, so the graceful shutdown does not wait on them.
    let shut = Instant::now();
    drop(app);
    while first.next_within(Duration::from_secs(5)).await.is_some() {}
    assert!(first.ended, "the stream did not end at shutdown");
    assert!(shut.elapsed() < Duration::from_secs(5), "{:?}", shut.elapsed());
}

#[tokio::test]
async fn the_stream_route_leaves_the_task_routes_alone() {
    let app = spawn(|_| {}, None).await;
    // `Events` as a task key is still a task key (not found), and a task's own events still answer.
    let res = app.get("/api/v1/BatchTask/Events").await;
    assert_ne!(res.status(), 200);
    let id = app.create(&json!({"Name": "ext"})).await;
    let res = app.get(&format!("/api/v1/BatchTask/{id}/Events")).await;
    assert_eq!(res.status(), 200);
    // Any letter case of the path, and it is listed in the endpoint map and the OpenAPI document.
    let res = app.get("/API/v1/batchtask/events/STREAM?task=1").await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    drop(res);
    let map: Value = app.get("/api/v1").await.json().await.unwrap();
    assert!(map[app.url(PATH)]["GET"].is_string(), "{map}");
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"][PATH]["get"]["responses"]["200"]["content"]["text/event-stream"].is_object());
}

/// Two nodes on one PostgreSQL database: a change made through node A streams from node B.
#[tokio::test]
async fn a_change_through_one_node_streams_from_the_other_on_postgres() {
    let Some(db) = TestPg::create("stream::a_change_through_one_node_streams_from_the_other").await else { return };
    let a = spawn(|_| {}, Some(&db)).await;
    let b = spawn(|_| {}, Some(&db)).await;
    let mut on_b = Sse::open(&b, &admin(&b), "", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening
    let id = a.create(&json!({"Name": "ext"})).await;
    let m = on_b.next().await;
    assert_eq!((m.event.as_str(), m.data["Id"].as_i64()), ("created", Some(id)));
    describe(&a, id, "from a").await;
    let m = on_b.next().await;
    assert_eq!((m.event.as_str(), &m.data["Changed"]), ("progress", &json!({"Description": "from a"})));
    let res = a.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let m = on_b.next().await;
    assert_eq!((m.event.as_str(), &m.data), ("deleted", &json!({"Id": id, "Name": "ext"})));
}

/// On PostgreSQL an edit's notice is sent after its commit, the ids of many edits in one notice:
/// a burst of edits to several tasks through node A all stream from node B, each task's last
/// Description with them, and nothing streams before its edit was answered.
#[tokio::test]
async fn a_burst_of_edits_through_one_node_all_stream_from_the_other_on_postgres() {
    let Some(db) = TestPg::create("stream::a_burst_of_edits_through_one_node").await else { return };
    let a = spawn(|_| {}, Some(&db)).await;
    let b = spawn(|_| {}, Some(&db)).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(a.create(&json!({"Name": "ext"})).await);
    }
    let mut on_b = Sse::open(&b, &admin(&b), "", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening
    let edits = ids.iter().map(|&id| {
        let a = &a;
        async move {
            for n in 0..4 {
                describe(a, id, &format!("{id}-{n}")).await;
            }
        }
    });
    futures_util::future::join_all(edits).await;
    let mut last: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.iter().any(|id| last.get(id) != Some(&format!("{id}-3"))) {
        assert!(Instant::now() < deadline, "after 10 s, B streamed only {last:?}");
        let Some(m) = on_b.next_within(Duration::from_secs(1)).await else { continue };
        // B's hub first sees a task it has no version of as a `state` event with every
        // property; with the edits' notices folded together that may already be the last one.
        if (m.event == "progress" || m.event == "state")
            && let (Some(id), Some(text)) = (m.data["Id"].as_i64(), m.data["Changed"]["Description"].as_str())
        {
            last.insert(id, text.to_owned());
        }
    }
}

/// An edit's own notice follows its commit, but what the edit does to other tasks (a dependency
/// failed by hand fails its dependent) notifies as any write does: B streams both.
#[tokio::test]
async fn a_dependent_failed_by_an_edit_on_one_node_streams_from_the_other_on_postgres() {
    let Some(db) = TestPg::create("stream::a_dependent_failed_by_an_edit").await else { return };
    let a = spawn(|_| {}, Some(&db)).await;
    let b = spawn(|_| {}, Some(&db)).await;
    let first = a.create(&json!({"Name": "ext"})).await;
    let waiting = a.create(&json!({"Name": "ext", "After": [first]})).await;
    let mut on_b = Sse::open(&b, &admin(&b), "", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening
    let res = a.put_json(&format!("/api/v1/BatchTask/{first}"), &json!({"State": "Failed"})).await;
    assert_eq!(res.status(), 200);
    let mut failed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(failed.contains(&first) && failed.contains(&waiting)) {
        assert!(Instant::now() < deadline, "after 10 s, B streamed Failed only for {failed:?}");
        let Some(m) = on_b.next_within(Duration::from_secs(1)).await else { continue };
        if m.event == "state"
            && m.data["Changed"]["State"] == "Failed"
            && let Some(id) = m.data["Id"].as_i64()
        {
            failed.push(id);
        }
    }
    // The edited task's change is told first, then the dependent its change failed.
    assert_eq!(failed, [first, waiting], "B streamed them in this order");
}
