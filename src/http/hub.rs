//! The live event stream's hub, one per node: it listens to the change feed's task notices,
//! re-reads the tasks they name in batches, tells what changed by comparing each with the version
//! it last saw (a bounded cache; the comparison is [`wire::changed_properties`]), numbers the
//! resulting events, keeps the latest in a bounded ring for `Last-Event-ID` resumes, and hands
//! each to the subscribers that may see it, through a bounded queue each.
//!
//! Bounds and what happens past them:
//! - a subscriber whose queue is full is dropped and told `resync` (it reconnects and re-lists);
//! - a resume token older than the ring, from another process (its epoch differs) or from a time
//!   when this hub was not recording gets `resync` first;
//! - a task not in the cache: a change to it is sent with every property as changed (the hub
//!   cannot know which did), and its deletion, whose owner is unknown then, is sent only to callers
//!   who see every task (admins, workers), with a null `Name`.
//!
//! With nobody subscribed for [`RECORD_AFTER_LAST`], the hub reads nothing: notices are dropped and
//! the ring is emptied (a later resume gets `resync`), so an unwatched node pays nothing but the
//! notices.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::domain::rights::{can_see, list_owner};
use crate::domain::{Caller, Task};
use crate::store::feed::{Notice, TasksWere};
use crate::store::{MAX_TASKS_BY_ID, Store};

use super::wire;

/// Events kept for resumes.
pub const RING: usize = 4096;
/// Events a subscriber may fall behind by before it is dropped with `resync`. A claim or finish
/// batch makes hundreds of events at once; tokio's channel allocates its slots as they fill, so
/// an idle subscriber costs none of this.
pub const QUEUE: usize = 4096;
/// Task versions kept to compare the next one with.
pub const CACHE: usize = 8192;
/// How long the hub keeps recording after the last subscriber left, so that a client
/// reconnecting (EventSource waits `retry`, 2 s) resumes without a `resync`.
pub const RECORD_AFTER_LAST: Duration = Duration::from_secs(60);
/// Notices folded into one round of reads at most.
const MAX_NOTICES_PER_ROUND: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    /// State changed (and maybe more).
    State,
    /// Something visible changed, not State.
    Progress,
    Deleted,
    Resync,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::State => "state",
            EventKind::Progress => "progress",
            EventKind::Deleted => "deleted",
            EventKind::Resync => "resync",
        }
    }
}

/// One numbered event, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    /// 0 for `resync`.
    pub id: i32,
    /// The task after the change; for `deleted`, as last seen (`None` when it was not cached).
    pub task: Option<Arc<Task>>,
    /// For `state` and `progress`: the properties that changed.
    pub changed: Vec<&'static str>,
}

impl Event {
    /// An event before [`Hub::publish`] numbers it.
    fn unnumbered(kind: EventKind, id: i32, task: Option<Arc<Task>>, changed: Vec<&'static str>) -> Event {
        Event { seq: 0, kind, id, task, changed }
    }
}

/// What a subscriber asked for, and who it is.
#[derive(Debug, Clone)]
pub struct Interest {
    pub caller: Caller,
    pub task: Option<i32>,
    pub name: Option<String>,
}

impl Interest {
    /// Whether this subscriber gets `event`: its filters, then the caller's rights
    /// (`rights::can_see`; for a deletion of a task not cached, `rights::list_owner`).
    pub fn wants(&self, event: &Event) -> bool {
        if event.kind == EventKind::Resync {
            return true;
        }
        if self.task.is_some_and(|t| t != event.id) {
            return false;
        }
        match &event.task {
            Some(task) => self.name.as_ref().is_none_or(|n| *n == task.name) && can_see(&self.caller, task),
            None => self.name.is_none() && list_owner(&self.caller).is_none(),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("{max} streams are open already")]
    Full { max: usize },
}

struct Subscriber {
    key: u64,
    interest: Interest,
    tx: mpsc::Sender<Arc<Event>>,
    /// Set (to the seq it was dropped at, plus one) when its queue overflowed.
    lagged: Arc<AtomicU64>,
}

struct Ring {
    /// Seq the next event gets.
    next_seq: u64,
    /// A resume from seq `s` is served when `first_resumable <= s + 1 <= next_seq`.
    first_resumable: u64,
    events: VecDeque<Arc<Event>>,
    subscribers: Vec<Subscriber>,
    next_key: u64,
    /// When the last subscriber left (`None` while there are some, or before the first).
    idle_since: Option<Instant>,
}

struct Inner {
    store: Arc<dyn Store>,
    epoch: String,
    max_subscribers: usize,
    open: AtomicUsize,
    ring: Mutex<Ring>,
    closed: watch::Sender<bool>,
    recording: AtomicBool,
}

/// The per-node hub; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// One subscriber's end: the events to replay first, then the live ones.
pub struct Subscription {
    hub: Hub,
    key: u64,
    pub replay: Vec<Arc<Event>>,
    rx: mpsc::Receiver<Arc<Event>>,
    lagged: Arc<AtomicU64>,
    closed: watch::Receiver<bool>,
}

/// What a subscription yields next.
pub enum Next {
    Event(Arc<Event>),
    /// The queue overflowed: send `resync` with this seq as its id, then end.
    Lagged(u64),
    /// The server is shutting down.
    Closed,
}

impl Hub {
    /// A hub over `store`'s feed; its reading loop runs until [`Hub::close`].
    pub fn start(store: Arc<dyn Store>, max_subscribers: usize) -> Hub {
        let hub = Hub {
            inner: Arc::new(Inner {
                store,
                epoch: format!("{:08x}", rand::random::<u32>()),
                max_subscribers,
                open: AtomicUsize::new(0),
                ring: Mutex::new(Ring {
                    next_seq: 1,
                    first_resumable: 1,
                    events: VecDeque::new(),
                    subscribers: Vec::new(),
                    next_key: 0,
                    idle_since: None,
                }),
                closed: watch::channel(false).0,
                recording: AtomicBool::new(false),
            }),
        };
        let feed = hub.inner.store.feed().subscribe();
        tokio::spawn(hub.clone().run(feed));
        hub
    }

    /// Ends every stream (at server shutdown: a graceful shutdown waits for open responses).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// The resume token of an event.
    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.inner.epoch)
    }

    /// A new subscriber; `last_event_id` resumes after that event, or starts with `resync` when it
    /// cannot be resumed.
    pub fn subscribe(&self, interest: Interest, last_event_id: Option<&str>) -> Result<Subscription, SubscribeError> {
        let max = self.inner.max_subscribers;
        if self.inner.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.inner.open.fetch_sub(1, Ordering::AcqRel);
            return Err(SubscribeError::Full { max });
        }
        let resume_from = last_event_id.map(|id| self.parse_id(id));
        let (tx, rx) = mpsc::channel(QUEUE);
        let lagged = Arc::new(AtomicU64::new(0));
        let mut ring = self.inner.ring.lock().expect("hub ring");
        let replay = match resume_from {
            None => Vec::new(),
            Some(Some(after)) if ring.first_resumable <= after + 1 && after < ring.next_seq => {
                ring.events.iter().filter(|e| e.seq > after && interest.wants(e)).cloned().collect()
            }
            // Unknown, too old, or from another process: whatever came before is lost to it.
            Some(_) => vec![Arc::new(Event {
                seq: ring.next_seq - 1,
                kind: EventKind::Resync,
                id: 0,
                task: None,
                changed: Vec::new(),
            })],
        };
        let key = ring.next_key;
        ring.next_key += 1;
        ring.subscribers.push(Subscriber { key, interest, tx, lagged: lagged.clone() });
        ring.idle_since = None;
        self.inner.recording.store(true, Ordering::Relaxed);
        drop(ring);
        Ok(Subscription { hub: self.clone(), key, replay, rx, lagged, closed: self.inner.closed.subscribe() })
    }

    /// The seq of an id this process gave out, if it is one.
    fn parse_id(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.trim().split_once('-')?;
        if epoch != self.inner.epoch {
            return None;
        }
        seq.parse().ok()
    }

    fn leave(&self, key: u64) {
        let mut ring = self.inner.ring.lock().expect("hub ring");
        ring.subscribers.retain(|s| s.key != key);
        if ring.subscribers.is_empty() {
            ring.idle_since = Some(Instant::now());
        }
        drop(ring);
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether events are worth making: somebody listens, or left recently enough to resume.
    fn recording(&self) -> bool {
        let mut ring = self.inner.ring.lock().expect("hub ring");
        let on = !ring.subscribers.is_empty() || ring.idle_since.is_some_and(|t| t.elapsed() < RECORD_AFTER_LAST);
        if !on && self.inner.recording.swap(false, Ordering::Relaxed) {
            // A gap: no resume may bridge it.
            ring.events.clear();
            ring.next_seq += 1;
            ring.first_resumable = ring.next_seq;
        }
        on
    }

    /// Numbers the events (their `seq` is set here), keeps them in the ring and hands them to the
    /// subscribers that want them.
    fn publish(&self, made: Vec<Event>) {
        if made.is_empty() {
            return;
        }
        let mut ring = self.inner.ring.lock().expect("hub ring");
        for mut event in made {
            let seq = ring.next_seq;
            ring.next_seq += 1;
            event.seq = seq;
            let event = Arc::new(event);
            ring.events.push_back(event.clone());
            if ring.events.len() > RING {
                ring.events.pop_front();
                ring.first_resumable = ring.events.front().map_or(ring.next_seq, |e| e.seq);
            }
            ring.subscribers.retain(|s| {
                if !s.interest.wants(&event) {
                    return !s.tx.is_closed();
                }
                match s.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.lagged.store(seq + 1, Ordering::Release);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
    }

    async fn run(self, mut feed: crate::store::feed::Subscription) {
        let mut closed = self.inner.closed.subscribe();
        let mut cache = Cache::default();
        loop {
            let first = tokio::select! {
                n = feed.next() => n,
                _ = closed.wait_for(|c| *c) => return,
            };
            let Some(first) = first else { return };
            let mut round = Round::default();
            round.add(first);
            while round.notices < MAX_NOTICES_PER_ROUND {
                match feed.try_next() {
                    Some(n) => round.add(n),
                    None => break,
                }
            }
            if !self.recording() {
                for id in &round.deleted {
                    cache.remove(*id);
                }
                continue;
            }
            let made = self.read_round(&round, &mut cache).await;
            self.publish(made);
        }
    }

    /// Re-reads the tasks a round of notices named and answers the events, in the order the ids
    /// were first named.
    async fn read_round(&self, round: &Round, cache: &mut Cache) -> Vec<Event> {
        let mut made = Vec::new();
        if round.resync {
            made.push(Event::unnumbered(EventKind::Resync, 0, None, Vec::new()));
        }
        let to_read: Vec<i32> = round.order.iter().copied().filter(|id| !round.deleted.contains(id)).collect();
        let mut read: HashMap<i32, Task> = HashMap::with_capacity(to_read.len());
        for chunk in to_read.chunks(MAX_TASKS_BY_ID) {
            match self.inner.store.tasks_by_id(chunk).await {
                Ok(tasks) => read.extend(tasks.into_iter().map(|t| (t.id, t))),
                Err(e) => {
                    tracing::warn!(error = %e, "the event stream could not re-read changed tasks");
                    if !round.resync {
                        made.insert(0, Event::unnumbered(EventKind::Resync, 0, None, Vec::new()));
                    }
                    // The cache may now be behind: those tasks are compared afresh next time.
                    for id in chunk {
                        cache.remove(*id);
                    }
                }
            }
        }
        for id in &round.order {
            if round.deleted.contains(id) {
                let last = cache.remove(*id);
                made.push(Event::unnumbered(EventKind::Deleted, *id, last, Vec::new()));
                continue;
            }
            // Gone without its deletion notice yet: that notice will say so.
            let Some(task) = read.remove(id) else { continue };
            let task = Arc::new(task);
            let event = match cache.get(*id) {
                Some(old) => {
                    let changed = wire::changed_properties(old, &task);
                    let kind = if changed.contains(&"State") { EventKind::State } else { EventKind::Progress };
                    (!changed.is_empty()).then_some((kind, changed))
                }
                None if round.created.contains(id) => Some((EventKind::Created, Vec::new())),
                None => Some((EventKind::State, wire::PROPERTIES.iter().map(|(n, _, _)| *n).collect())),
            };
            cache.put(task.clone());
            if let Some((kind, changed)) = event {
                made.push(Event::unnumbered(kind, *id, Some(task), changed));
            }
        }
        made
    }
}

impl Subscription {
    /// The next live event (after [`Subscription::replay`]).
    pub async fn next(&mut self) -> Next {
        if *self.closed.borrow() {
            return Next::Closed;
        }
        tokio::select! {
            e = self.rx.recv() => match e {
                Some(e) => Next::Event(e),
                None => match self.lagged.load(Ordering::Acquire) {
                    0 => Next::Closed,
                    at => Next::Lagged(at - 1),
                },
            },
            _ = self.closed.wait_for(|c| *c) => Next::Closed,
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(self.key);
    }
}

/// The ids a round of notices named.
#[derive(Default)]
struct Round {
    notices: usize,
    order: Vec<i32>,
    seen: HashSet<i32>,
    created: HashSet<i32>,
    deleted: HashSet<i32>,
    resync: bool,
}

impl Round {
    fn add(&mut self, notice: Notice) {
        self.notices += 1;
        match notice {
            Notice::Tasks { were, ids } => {
                for id in ids.iter().copied() {
                    if self.seen.insert(id) {
                        self.order.push(id);
                    }
                    match were {
                        TasksWere::Created => {
                            self.created.insert(id);
                        }
                        TasksWere::Deleted => {
                            self.deleted.insert(id);
                        }
                        TasksWere::Changed => {}
                    }
                }
            }
            Notice::Resync => self.resync = true,
            Notice::New { .. } | Notice::Stop { .. } | Notice::Definition { .. } | Notice::Credentials => {}
        }
    }
}

/// The task versions last seen, oldest dropped first past [`CACHE`].
#[derive(Default)]
struct Cache {
    tasks: HashMap<i32, Arc<Task>>,
    order: VecDeque<i32>,
}

impl Cache {
    fn get(&self, id: i32) -> Option<&Arc<Task>> {
        self.tasks.get(&id)
    }

    fn put(&mut self, task: Arc<Task>) {
        if self.tasks.insert(task.id, task.clone()).is_none() {
            self.order.push_back(task.id);
        }
        while self.tasks.len() > CACHE {
            match self.order.pop_front() {
                Some(old) => {
                    self.tasks.remove(&old);
                }
                None => break,
            }
        }
        // Ids of removed tasks linger in `order`; keep it bounded too.
        if self.order.len() > 2 * CACHE {
            let tasks = &self.tasks;
            self.order.retain(|id| tasks.contains_key(id));
        }
    }

    fn remove(&mut self, id: i32) -> Option<Arc<Task>> {
        self.tasks.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BatchTaskState, Role};

    fn event(kind: EventKind, task: Option<Task>) -> Event {
        Event { seq: 1, kind, id: task.as_ref().map_or(7, |t| t.id), task: task.map(Arc::new), changed: Vec::new() }
    }

    #[test]
    fn subscribers_get_what_their_filters_and_rights_allow() {
        let user = Caller::new(10, "u", Role::User);
        let admin = Caller::new(1, "a", Role::Admin);
        let mine = Task::fixture(7, "Sleep", 10, BatchTaskState::New);
        let theirs = Task::fixture(8, "Sleep", 11, BatchTaskState::New);
        let all = |caller: &Caller| Interest { caller: caller.clone(), task: None, name: None };
        let e = |t: &Task| event(EventKind::State, Some(t.clone()));
        assert!(all(&user).wants(&e(&mine)));
        assert!(!all(&user).wants(&e(&theirs)));
        assert!(all(&admin).wants(&e(&theirs)));
        assert!(!Interest { task: Some(8), ..all(&admin) }.wants(&e(&mine)));
        assert!(Interest { name: Some("Sleep".into()), ..all(&admin) }.wants(&e(&mine)));
        assert!(!Interest { name: Some("sleep".into()), ..all(&admin) }.wants(&e(&mine)), "names are exact");
        // A deletion whose owner is unknown goes to those who see everything, only.
        let unknown = event(EventKind::Deleted, None);
        assert!(all(&admin).wants(&unknown) && !all(&user).wants(&unknown));
        assert!(!Interest { name: Some("Sleep".into()), ..all(&admin) }.wants(&unknown));
        assert!(all(&user).wants(&event(EventKind::Resync, None)));
    }

    fn hub(max: usize) -> (Hub, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(dir.path().join("h.db").to_str().unwrap()).unwrap();
        (Hub::start(Arc::new(store), max), dir)
    }

    fn admin() -> Interest {
        Interest { caller: Caller::new(1, "a", Role::Admin), task: None, name: None }
    }

    fn changes(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let t = Task::fixture(i as i32 + 1, "n", 1, BatchTaskState::New);
                Event::unnumbered(EventKind::Progress, t.id, Some(Arc::new(t)), vec!["ProgressPercent"])
            })
            .collect()
    }

    async fn seqs(sub: &mut Subscription, n: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..n {
            match sub.next().await {
                Next::Event(e) => out.push(e.seq),
                _ => panic!("ended after {out:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn a_resume_replays_what_followed_and_an_unknown_or_lost_point_is_a_resync() {
        let (hub, _dir) = hub(10);
        let mut first = hub.subscribe(admin(), None).unwrap();
        assert!(first.replay.is_empty());
        hub.publish(changes(3));
        let got = seqs(&mut first, 3).await;
        assert_eq!(got, [1, 2, 3]);
        let resumed = hub.subscribe(admin(), Some(&hub.event_id(1))).unwrap();
        assert_eq!(resumed.replay.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3], "no gap, no duplicate");
        let at_end = hub.subscribe(admin(), Some(&hub.event_id(3))).unwrap();
        assert!(at_end.replay.is_empty());
        for unknown in ["bogus".to_owned(), "0000zzzz-1".to_owned(), hub.event_id(99), format!("x{}", hub.event_id(1))]
        {
            let s = hub.subscribe(admin(), Some(&unknown)).unwrap();
            let kinds: Vec<_> = s.replay.iter().map(|e| (e.kind, e.seq)).collect();
            assert_eq!(kinds, [(EventKind::Resync, 3)], "{unknown}: resync, resumable from the newest event");
        }
        // Past the ring, the oldest events are gone: resuming before them is a resync too.
        hub.publish(changes(RING));
        let s = hub.subscribe(admin(), Some(&hub.event_id(2))).unwrap();
        assert_eq!(s.replay[0].kind, EventKind::Resync);
        let s = hub.subscribe(admin(), Some(&hub.event_id(3))).unwrap();
        assert_eq!(s.replay.len(), RING, "the ring starts right after event 3");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_dropped_with_a_resync_and_the_limit_holds() {
        let (hub, _dir) = hub(2);
        let mut slow = hub.subscribe(admin(), None).unwrap();
        let _other = hub.subscribe(admin(), None).unwrap();
        assert_eq!(hub.subscribe(admin(), None).err(), Some(SubscribeError::Full { max: 2 }));
        hub.publish(changes(QUEUE + 5));
        assert_eq!(seqs(&mut slow, QUEUE).await.len(), QUEUE, "the queue is delivered first");
        match slow.next().await {
            Next::Lagged(seq) => assert_eq!(seq, QUEUE as u64 + 1, "resumable from the event it missed"),
            _ => panic!("expected a lag"),
        }
        drop(slow);
        assert_eq!(hub.open_streams(), 1);
        let mut again = hub.subscribe(admin(), None).unwrap();
        hub.close();
        assert!(matches!(again.next().await, Next::Closed));
    }

    #[test]
    fn the_cache_keeps_the_newest_versions_within_its_bound() {
        let mut cache = Cache::default();
        for id in 0..(CACHE as i32 + 10) {
            cache.put(Arc::new(Task::fixture(id, "n", 1, BatchTaskState::New)));
        }
        assert_eq!(cache.tasks.len(), CACHE);
        assert!(cache.get(0).is_none() && cache.get(CACHE as i32 + 9).is_some());
        for id in 0..(3 * CACHE as i32) {
            cache.put(Arc::new(Task::fixture(100_000 + id, "n", 1, BatchTaskState::New)));
            cache.remove(100_000 + id);
        }
        assert!(cache.order.len() <= 2 * CACHE + 1);
    }
}
