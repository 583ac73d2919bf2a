//! A cache of tasks in front of [`Store::get_task`]: the read behind `GET /api/v1/BatchTask/{id}`
//! answered from memory, without a database round trip.
//!
//! [`CachedStore`] wraps the store, so that every write of this node passes it: each write marks
//! what it may have changed as stale when it returns (or is abandoned), before its answer is
//! sent, so a node always reads its own writes. Other nodes' writes arrive on the change feed
//! (task notices, [`Notice::Resync`]); while the feed may miss notices ([`Feed::session`] is
//! `None`) nothing is served from or put in the cache, and an entry filled before a break in the
//! feed is never served after it. `max_age` bounds what a lost notice could cost.
//!
//! Staleness is checked when an entry is read, not when it is marked: an entry carries the
//! generations it was read under (the whole cache's, its id's stripe, the feed's session), and
//! is served only while all are unchanged. A fill records them *before* its database read, so a
//! write that lands during the read leaves the fill unused (the fill/invalidate race).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::feed::{Feed, Notice, TasksWere};
use super::runner::{
    Actor, Beat, BeatOutcome, ClaimRequest, Claimed, Finish, FinishResult, Lease, LeaseInfo, Rescued, ScheduleTick,
    StopResult, TaskEvent,
};
use super::{
    AssociateCredentials, CreatedOnce, DefinitionRow, DefinitionStatus, DeleteGuard, Dependencies, ListQuery, ListRow,
    NewAssociate, Store, StoreError, TaskChange, TaskFilter, TaskStats, access,
};
use crate::domain::dependency::Ended;
use crate::domain::{Associate, BatchTaskState, NewTask, Task};

/// How much the cache holds and how long an entry may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub entries: usize,
    pub bytes: usize,
    pub max_age: Duration,
}

/// Per-id generations, shared by ids equal modulo this (a write to one marks its neighbours
/// stale too: rare, harmless, and the memory stays fixed).
const STRIPES: usize = 4096;

/// What a fill read under; the entry it makes is served only while these hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    id: i32,
    epoch: u64,
    stripe: u64,
    session: u64,
}

struct Entry {
    task: Task,
    ticket: Ticket,
    at: Instant,
    bytes: usize,
    /// Which fill made it, so that an eviction record of an older fill leaves it alone.
    serial: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<i32, Entry>,
    /// Fill order, oldest first: evicted from the front when over the limits.
    order: VecDeque<(i32, u64)>,
    bytes: usize,
    serial: u64,
}

impl Entries {
    fn remove(&mut self, id: i32) {
        if let Some(e) = self.map.remove(&id) {
            self.bytes -= e.bytes;
        }
    }
}

pub struct TaskCache {
    limits: Limits,
    /// Moved by a write whose tasks are not known one by one, and by a resync.
    epoch: AtomicU64,
    stripes: Box<[AtomicU64]>,
    entries: Mutex<Entries>,
}

/// Memory an entry stands for: the row and its texts.
fn weight(t: &Task) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<Entry>()
        + t.name.len()
        + text(&t.database_serial_number)
        + text(&t.context)
        + text(&t.result)
        + text(&t.description)
        + text(&t.response)
        + text(&t.request)
        + text(&t.progress_description)
        + text(&t.file_name)
        + t.parameters.as_ref().map_or(0, |p| p.0.iter().map(|(k, v)| k.len() + v.len() + 48).sum())
}

impl TaskCache {
    pub fn new(limits: Limits) -> TaskCache {
        TaskCache {
            limits,
            epoch: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            entries: Mutex::default(),
        }
    }

    fn stripe(&self, id: i32) -> &AtomicU64 {
        &self.stripes[(id as u32 as usize) % STRIPES]
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere cannot leave the map inconsistent in a way that matters: at worst
        // an entry is missing.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generations as they are now; `None` while the feed may miss notices (nothing cached).
    pub fn ticket(&self, id: i32, session: Option<u64>) -> Option<Ticket> {
        Some(Ticket { id, epoch: self.epoch.load(SeqCst), stripe: self.stripe(id).load(SeqCst), session: session? })
    }

    /// The task, if cached and not stale, young enough and read in this feed session.
    pub fn get(&self, id: i32, session: Option<u64>, now: Instant) -> Option<Task> {
        let current = self.ticket(id, session)?;
        let mut entries = self.entries();
        let e = entries.map.get(&id)?;
        if e.ticket == current && now.saturating_duration_since(e.at) < self.limits.max_age {
            return Some(e.task.clone());
        }
        entries.remove(id);
        None
    }

    /// Keeps `task` as read under `ticket` (taken before the read), unless something moved
    /// meanwhile: then the read may predate a write, and is not kept.
    pub fn fill(&self, ticket: Ticket, task: &Task, read_at: Instant) {
        let bytes = weight(task);
        if task.id != ticket.id || bytes > self.limits.bytes || self.limits.entries == 0 {
            return;
        }
        let mut entries = self.entries();
        // Checked under the lock only to save keeping a useless entry: `get` checks again.
        if self.ticket(ticket.id, Some(ticket.session)) != Some(ticket) {
            return;
        }
        entries.remove(ticket.id);
        while entries.map.len() >= self.limits.entries || entries.bytes + bytes > self.limits.bytes {
            let Some((id, serial)) = entries.order.pop_front() else { break };
            if entries.map.get(&id).is_some_and(|e| e.serial == serial) {
                entries.remove(id);
            }
        }
        entries.serial += 1;
        let serial = entries.serial;
        entries.order.push_back((ticket.id, serial));
        // Records of replaced or removed entries linger in `order`: drop them before they outgrow the map.
        if entries.order.len() > 2 * self.limits.entries.max(64) {
            let Entries { map, order, .. } = &mut *entries;
            order.retain(|(id, serial)| map.get(id).is_some_and(|e| e.serial == *serial));
        }
        entries.bytes += bytes;
        entries.map.insert(ticket.id, Entry { task: task.clone(), ticket, at: read_at, bytes, serial });
    }

    /// These tasks may have changed.
    pub fn invalidate(&self, ids: &[i32]) {
        for id in ids {
            self.stripe(*id).fetch_add(1, SeqCst);
        }
    }

    /// Any task may have changed.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, SeqCst);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().map.len()
    }
}

/// What a write may have changed, marked stale when the write returns or is dropped half-way
/// (a dropped request future may still have committed).
struct Stale<'a> {
    cache: &'a TaskCache,
    /// `None`: any task.
    ids: Option<Vec<i32>>,
    armed: bool,
}

impl<'a> Stale<'a> {
    fn all(cache: &'a TaskCache) -> Self {
        Stale { cache, ids: None, armed: true }
    }
    fn ids(cache: &'a TaskCache, ids: Vec<i32>) -> Self {
        Stale { cache, ids: Some(ids), armed: true }
    }
    /// The write answered that it changed nothing.
    fn none(mut self) {
        self.armed = false;
    }
    /// The write answered that it changed only these tasks.
    fn only(mut self, ids: impl IntoIterator<Item = i32>) {
        self.ids = Some(ids.into_iter().collect());
    }
}

/// Whether a task that a write left in `state` may have failed tasks waiting for it (the
/// dependency cascade, decided inside the store's transaction; which ones it does not say back).
/// A success only counts its dependents' `waiting_on` down, which no read of a task shows (not
/// its fields, version or `updated`), so only a failure moves another task.
fn may_fail_dependents(state: BatchTaskState) -> bool {
    Ended::of(state) == Some(Ended::Failed)
}

impl Drop for Stale<'_> {
    fn drop(&mut self) {
        if self.armed {
            match &self.ids {
                Some(ids) => self.cache.invalidate(ids),
                None => self.cache.clear(),
            }
        }
    }
}

/// The store with a [`TaskCache`] in front of `get_task`; everything else passes through.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    cache: Arc<TaskCache>,
}

impl CachedStore {
    /// Wraps `inner`, and follows its change feed for other nodes' writes for as long as the
    /// cache lives.
    pub fn wrap(inner: Arc<dyn Store>, limits: Limits) -> Arc<dyn Store> {
        Self::wrap_cache(inner, limits).0
    }

    /// [`CachedStore::wrap`], with the cache itself, to look at what it holds (tests).
    pub fn wrap_cache(inner: Arc<dyn Store>, limits: Limits) -> (Arc<dyn Store>, Arc<TaskCache>) {
        let cache = Arc::new(TaskCache::new(limits));
        // Subscribed before the first read, so that no notice falls between.
        let mut feed = inner.feed().subscribe();
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            while let Some(notice) = feed.next().await {
                let Some(cache) = weak.upgrade() else { return };
                match notice {
                    // A created task was not cached (absence is not): nothing to drop. An id
                    // used again follows its deletion's notice, which did drop it.
                    Notice::Tasks { were: TasksWere::Created, .. } => {}
                    Notice::Tasks { ids, .. } => cache.invalidate(&ids),
                    Notice::Resync => cache.clear(),
                    _ => {}
                }
            }
        });
        (Arc::new(CachedStore { inner, cache: cache.clone() }), cache)
    }

    fn all(&self) -> Stale<'_> {
        Stale::all(&self.cache)
    }
}

#[async_trait]
impl Store for CachedStore {
    fn feed(&self) -> &Feed {
        self.inner.feed()
    }

    async fn get_task(&self, id: i32) -> Result<Option<Task>, StoreError> {
        let session = self.inner.feed().session();
        if let Some(task) = self.cache.get(id, session, Instant::now()) {
            return Ok(Some(task));
        }
        let ticket = self.cache.ticket(id, session);
        // The row is at least as old as the read's start: the max age counts from there.
        let read_at = Instant::now();
        let task = self.inner.get_task(id).await?;
        if let (Some(t), Some(ticket)) = (&task, ticket) {
            self.cache.fill(ticket, t, read_at);
        }
        Ok(task)
    }

    // Every write below starts by marking the whole cache stale (what a write abandoned half-way
    // or failed may have changed), and narrows that to the tasks its answer names when the answer
    // shows it changed no other: the only write to another task is the dependency cascade, and
    // its visible part is failing dependents ([`may_fail_dependents`]), which the store decides
    // inside its transaction and does not tell back. So a write that failed a task, or deleted
    // one, still marks everything. A create changes no other task (its edges and `waiting_on`
    // are not part of a read; a dependency already failed fails only the new task, which has no
    // dependents yet), and its new id is not cached (absence is not): it marks its own id.

    async fn create_task(&self, new: NewTask, now: DateTime<Utc>) -> Result<Task, StoreError> {
        let stale = self.all();
        let created = self.inner.create_task(new, now).await;
        if let Ok(t) = &created {
            stale.only([t.id]);
        }
        created
    }
    async fn tasks_by_id(&self, ids: &[i32]) -> Result<Vec<Task>, StoreError> {
        self.inner.tasks_by_id(ids).await
    }
    async fn find_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        self.inner.find_tasks(filter).await
    }
    async fn modify_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        change: TaskChange,
    ) -> Result<Task, StoreError> {
        let stale = self.all();
        let modified = self.inner.modify_task(id, now, actor, change).await;
        if let Ok(t) = &modified
            && !may_fail_dependents(t.state)
        {
            stale.only([id]);
        }
        modified
    }
    async fn delete_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        guard: DeleteGuard,
    ) -> Result<(), StoreError> {
        let _stale = self.all();
        self.inner.delete_task(id, now, actor, guard).await
    }
    async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<ListRow>, StoreError> {
        self.inner.list_tasks(query).await
    }
    async fn create_associate(&self, new: NewAssociate, now: DateTime<Utc>) -> Result<Associate, StoreError> {
        self.inner.create_associate(new, now).await
    }
    async fn associate_credentials(&self, name: &str) -> Result<Option<AssociateCredentials>, StoreError> {
        self.inner.associate_credentials(name).await
    }
    async fn list_associates(&self) -> Result<Vec<Associate>, StoreError> {
        self.inner.list_associates().await
    }
    async fn count_associates(&self) -> Result<i64, StoreError> {
        self.inner.count_associates().await
    }
    async fn count_tasks_by_state(&self) -> Result<Vec<(BatchTaskState, i64)>, StoreError> {
        self.inner.count_tasks_by_state().await
    }
    async fn upsert_definition(&self, def: &DefinitionRow, now: DateTime<Utc>) -> Result<(), StoreError> {
        let _stale = self.all();
        self.inner.upsert_definition(def, now).await
    }
    async fn get_associate(&self, id: i32) -> Result<Option<Associate>, StoreError> {
        self.inner.get_associate(id).await
    }
    async fn update_associate(
        &self,
        id: i32,
        change: access::AssociateChange,
        now: DateTime<Utc>,
    ) -> Result<Associate, StoreError> {
        // Tasks are not changed; rights are the caller's, checked on every read.
        self.inner.update_associate(id, change, now).await
    }
    async fn delete_associate(&self, id: i32, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.delete_associate(id, now).await
    }
    async fn create_credential(
        &self,
        new: access::NewCredential,
        now: DateTime<Utc>,
    ) -> Result<access::CredentialRow, StoreError> {
        self.inner.create_credential(new, now).await
    }
    async fn find_credential(
        &self,
        kind: access::CredentialKind,
        secret_hash: &str,
    ) -> Result<Option<access::CredentialMatch>, StoreError> {
        self.inner.find_credential(kind, secret_hash).await
    }
    async fn list_credentials(
        &self,
        kind: access::CredentialKind,
        associate_id: Option<i32>,
    ) -> Result<Vec<access::CredentialRow>, StoreError> {
        self.inner.list_credentials(kind, associate_id).await
    }
    async fn revoke_credentials(
        &self,
        kind: access::CredentialKind,
        target: access::RevokeTarget,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.revoke_credentials(kind, target, now).await
    }
    async fn credential_changes(&self, after: i64) -> Result<(i64, Vec<i32>), StoreError> {
        self.inner.credential_changes(after).await
    }
    async fn purge_credentials(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_credentials(before).await
    }
    async fn create_and_claim(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        claim: &ClaimRequest,
    ) -> Result<(Task, Option<Lease>), StoreError> {
        let stale = self.all();
        let created = self.inner.create_and_claim(new, now, claim).await;
        if let Ok((t, _)) = &created {
            stale.only([t.id]);
        }
        created
    }
    async fn claim_tasks(&self, req: &ClaimRequest, now: DateTime<Utc>) -> Result<Vec<Claimed>, StoreError> {
        // A claim starts runs (never ends one): only the claimed tasks change.
        let stale = self.all();
        let claimed = self.inner.claim_tasks(req, now).await;
        if let Ok(claimed) = &claimed {
            stale.only(claimed.iter().map(|c| c.task.id));
        }
        claimed
    }
    async fn renew_leases(
        &self,
        beats: Vec<Beat>,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<BeatOutcome>, StoreError> {
        // A renewal writes progress only, of the tasks it names.
        let _stale = Stale::ids(&self.cache, beats.iter().map(|b| b.id).collect());
        self.inner.renew_leases(beats, lease, now).await
    }
    async fn finish_tasks(&self, finishes: Vec<Finish>, now: DateTime<Utc>) -> Result<Vec<FinishResult>, StoreError> {
        let stale = self.all();
        let ids: Vec<i32> = finishes.iter().map(|f| f.id).collect();
        let finished = self.inner.finish_tasks(finishes, now).await;
        if let Ok(results) = &finished
            && !results.iter().any(|r| matches!(r, FinishResult::Done(s) if may_fail_dependents(*s)))
        {
            stale.only(ids);
        }
        finished
    }
    async fn request_stop(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        by: String,
        guard: DeleteGuard,
    ) -> Result<StopResult, StoreError> {
        let stale = self.all();
        let stopped = self.inner.request_stop(id, now, actor, by, guard).await;
        // Stopped at once is `Failed`: that may fail its dependents.
        if let Ok(StopResult::Requested { .. } | StopResult::Refused(_)) = &stopped {
            stale.only([id]);
        }
        stopped
    }
    async fn lease_info(&self, id: i32) -> Result<Option<LeaseInfo>, StoreError> {
        self.inner.lease_info(id).await
    }
    async fn pending_stops(&self, node: &str) -> Result<Vec<(i32, String)>, StoreError> {
        self.inner.pending_stops(node).await
    }
    async fn rescue_expired(
        &self,
        node: &str,
        now: DateTime<Utc>,
        limit: usize,
        stop_grace: Duration,
    ) -> Result<Vec<Rescued>, StoreError> {
        let stale = self.all();
        let rescued = self.inner.rescue_expired(node, now, limit, stop_grace).await;
        if let Ok(rescued) = &rescued
            && !rescued.iter().any(|r| may_fail_dependents(r.to))
        {
            stale.only(rescued.iter().map(|r| r.id));
        }
        rescued
    }
    async fn release_node(&self, node: &str, now: DateTime<Utc>) -> Result<Vec<i32>, StoreError> {
        // A task handed back may end `Failed` instead (a failed dependency blocks its rerun),
        // and the answer does not say which: any released task marks everything.
        let stale = self.all();
        let released = self.inner.release_node(node, now).await;
        if released.as_ref().is_ok_and(Vec::is_empty) {
            stale.none();
        }
        released
    }
    async fn task_events(&self, id: i32) -> Result<Vec<TaskEvent>, StoreError> {
        self.inner.task_events(id).await
    }
    async fn purge_finished(
        &self,
        state: BatchTaskState,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let stale = self.all();
        let purged = self.inner.purge_finished(state, before, limit).await;
        if purged.as_ref().is_ok_and(|n| *n == 0) {
            stale.none();
        }
        purged
    }
    async fn purge_deleted_events(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_deleted_events(before, limit).await
    }
    async fn schedule_tick(
        &self,
        tick: &ScheduleTick,
        now: DateTime<Utc>,
        new: NewTask,
    ) -> Result<(Option<Task>, DateTime<Utc>), StoreError> {
        // The definition's next start is no task; a created task is a create.
        let stale = self.all();
        let ticked = self.inner.schedule_tick(tick, now, new).await;
        if let Ok((created, _)) = &ticked {
            stale.only(created.iter().map(|t| t.id));
        }
        ticked
    }
    async fn set_run_policy(&self, name: &str, policy: &crate::domain::run::RunPolicy) -> Result<(), StoreError> {
        let _stale = self.all();
        self.inner.set_run_policy(name, policy).await
    }
    async fn set_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let _stale = self.all();
        self.inner.set_paused(name, paused).await
    }
    async fn definition_statuses(&self, owner: Option<i32>) -> Result<Vec<DefinitionStatus>, StoreError> {
        self.inner.definition_statuses(owner).await
    }
    async fn create_task_once(
        &self,
        new: NewTask,
        now: DateTime<Utc>,
        key: &crate::domain::idempotency::KeyedCreate,
    ) -> Result<CreatedOnce, StoreError> {
        let stale = self.all();
        let created = self.inner.create_task_once(new, now, key).await;
        match &created {
            Ok(CreatedOnce::Created(t)) => stale.only([t.id]),
            Ok(CreatedOnce::Replayed(_)) => stale.none(),
            Err(_) => {}
        }
        created
    }
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_idempotency_keys(before, limit).await
    }
    async fn retry_task(
        &self,
        id: i32,
        now: DateTime<Utc>,
        actor: Actor,
        guard: DeleteGuard,
    ) -> Result<Task, StoreError> {
        // A retry makes the task `New` (or refuses): it ends nothing, so no dependent moves.
        let stale = self.all();
        let retried = self.inner.retry_task(id, now, actor, guard).await;
        if let Ok(t) = &retried
            && !may_fail_dependents(t.state)
        {
            stale.only([id]);
        }
        retried
    }
    async fn task_dependencies(
        &self,
        id: i32,
        owner: Option<i32>,
        before_max: usize,
    ) -> Result<Dependencies, StoreError> {
        self.inner.task_dependencies(id, owner, before_max).await
    }
    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        self.inner.ping(within).await
    }
    async fn upsert_node(&self, node: &crate::domain::node::NodeRow) -> Result<(), StoreError> {
        self.inner.upsert_node(node).await
    }
    async fn list_nodes(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::domain::node::NodeRow>, StoreError> {
        self.inner.list_nodes(since, limit).await
    }
    async fn purge_nodes(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.inner.purge_nodes(before, limit).await
    }
    async fn task_stats(&self, since: DateTime<Utc>, owner: Option<i32>) -> Result<TaskStats, StoreError> {
        self.inner.task_stats(since, owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { entries: 3, bytes: 1 << 20, max_age: Duration::from_secs(60) }
    }

    fn task(id: i32, version: i64) -> Task {
        let now = Utc::now();
        Task { created: now, version, updated: now, ..Task::fixture(id, "Noop", 1, BatchTaskState::New) }
    }

    const S: Option<u64> = Some(1);

    #[test]
    fn a_fill_that_straddles_an_invalidation_is_not_served() {
        let now = Instant::now();
        for invalidate in [(|c: &TaskCache| c.invalidate(&[7])) as fn(&TaskCache), |c: &TaskCache| c.clear()] {
            let cache = TaskCache::new(limits());
            // The read starts, a write lands and is marked, then the (old) row arrives.
            let ticket = cache.ticket(7, S).unwrap();
            invalidate(&cache);
            cache.fill(ticket, &task(7, 1), now);
            assert_eq!(cache.get(7, S, now), None, "the fill read before the write");
            // A write marked after the fill was kept also hides it.
            let ticket = cache.ticket(7, S).unwrap();
            cache.fill(ticket, &task(7, 2), now);
            assert_eq!(cache.get(7, S, now).map(|t| t.version), Some(2));
            invalidate(&cache);
            assert_eq!(cache.get(7, S, now), None);
        }
    }

    #[test]
    fn entries_of_another_feed_session_or_too_old_are_not_served() {
        let cache = TaskCache::new(limits());
        let now = Instant::now();
        assert_eq!(cache.ticket(1, None), None, "nothing is cached while the feed may miss notices");
        cache.fill(cache.ticket(1, S).unwrap(), &task(1, 1), now);
        assert!(cache.get(1, S, now).is_some());
        assert_eq!(cache.get(1, None, now), None, "the feed broke");
        cache.fill(cache.ticket(1, S).unwrap(), &task(1, 1), now);
        assert_eq!(cache.get(1, Some(3), now), None, "the feed broke and came back");
        cache.fill(cache.ticket(1, S).unwrap(), &task(1, 1), now);
        assert_eq!(cache.get(1, S, now + Duration::from_secs(60)), None, "past max_age");
    }

    #[test]
    fn a_write_that_changed_nothing_marks_nothing() {
        let cache = TaskCache::new(limits());
        let now = Instant::now();
        cache.fill(cache.ticket(1, S).unwrap(), &task(1, 1), now);
        Stale::all(&cache).none();
        assert!(cache.get(1, S, now).is_some());
        drop(Stale::ids(&cache, vec![2]));
        assert!(cache.get(1, S, now).is_some());
        drop(Stale::all(&cache));
        assert_eq!(cache.get(1, S, now), None);
    }

    #[test]
    fn the_limits_hold_oldest_fill_out_first() {
        let cache = TaskCache::new(limits());
        let now = Instant::now();
        for id in 1..=5 {
            cache.fill(cache.ticket(id, S).unwrap(), &task(id, 1), now);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(2, S, now), None);
        assert!(cache.get(5, S, now).is_some());
        let small = TaskCache::new(Limits { bytes: 2 * weight(&task(1, 1)), ..limits() });
        for id in 1..=3 {
            small.fill(small.ticket(id, S).unwrap(), &task(id, 1), now);
        }
        assert_eq!(small.len(), 2);
        assert!(small.get(1, S, now).is_none() && small.get(3, S, now).is_some());
    }
}
