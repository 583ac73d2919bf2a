//! Task-change notices raised after the commit instead of inside it.
//!
//! PostgreSQL serialises every committing transaction that has called `pg_notify` on one
//! cluster-wide lock, held through its WAL flush: with the notice inside the write, durable edits
//! by hand commit one at a time (measured: 32 clients, 11,000 updates/s without a notice,
//! 400/s with one). The edits therefore ask their trigger to stay quiet (`SET LOCAL
//! batchd.task_notices = 'after_commit'`, read by `batchd_notify_tasks_changed`) and hand the ids
//! here once committed; one background task sends them, many ids a notice, in a transaction of
//! its own that writes nothing and so flushes nothing. The notice then follows the commit by a
//! round trip; it never precedes it.
//!
//! Bounds: at most [`MAX_PENDING`] ids wait; past that, or when sending fails, the notice becomes
//! `resync` (every consumer re-reads), so nothing is lost silently while the process lives. A
//! process that dies between a commit and its notice leaves the live stream's subscribers
//! without that change until their next resync, as any lost notice does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::store::feed::{CHANNEL, Notice, TasksWere};

/// The statement that opens an edit whose task notice is sent after its commit.
pub(super) const BEGIN_QUIET: &str = "BEGIN; SET LOCAL batchd.task_notices = 'after_commit'";

/// Most ids waiting to be told; more are told as one `resync`.
const MAX_PENDING: usize = 65_536;
/// Ids a notice: PostgreSQL's payload limit is 8000 bytes (as the triggers' batches).
const PER_NOTICE: usize = 700;

#[derive(Default)]
struct Pending {
    ids: Vec<i32>,
    /// Ids were dropped or a send failed: tell `resync`.
    resync: bool,
}

#[derive(Default)]
struct Inner {
    pending: Mutex<Pending>,
    wake: tokio::sync::Notify,
}

/// The sending end: [`Deferred::changed_all`] after a commit.
#[derive(Clone, Default)]
pub(super) struct Deferred(Arc<Inner>);

/// The notice of an edit that may commit: sent when dropped, so that a request abandoned while
/// its statement or COMMIT is in flight (the server commits it anyway) still tells the other
/// nodes and their caches. Disarmed only by an answer that proves nothing was written.
pub(super) struct OnDrop<'a> {
    notices: &'a Deferred,
    ids: Vec<i32>,
}

impl<'a> OnDrop<'a> {
    pub(super) fn new(notices: &'a Deferred, id: i32) -> OnDrop<'a> {
        OnDrop { notices, ids: vec![id] }
    }

    /// The notice of a batch of edits of these tasks.
    pub(super) fn all(notices: &'a Deferred, ids: Vec<i32>) -> OnDrop<'a> {
        OnDrop { notices, ids }
    }

    /// Only these of the tasks were written.
    pub(super) fn retain(&mut self, written: &std::collections::HashSet<i32>) {
        self.ids.retain(|id| written.contains(id));
    }

    /// Further tasks the edit changed, told after the first.
    pub(super) fn extend(&mut self, ids: impl IntoIterator<Item = i32>) {
        self.ids.extend(ids);
    }

    /// Nothing was written: no notice.
    pub(super) fn disarm(&mut self) {
        self.ids.clear();
    }
}

impl Drop for OnDrop<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.notices.changed_all(std::mem::take(&mut self.ids));
        }
    }
}

impl Deferred {
    /// The tasks were changed by a committed transaction that raised no notice for them; they
    /// are told in this order (an edit's task before the dependents its change failed).
    pub(super) fn changed_all(&self, ids: impl IntoIterator<Item = i32>) {
        {
            let mut p = self.0.pending.lock().expect("task notices");
            for id in ids {
                if p.ids.len() < MAX_PENDING {
                    p.ids.push(id);
                } else {
                    p.resync = true;
                }
            }
        }
        self.0.wake.notify_one();
    }

    /// Sends what waits, for as long as the store lives (the caller aborts it).
    pub(super) async fn run(self, pool: PgPool) {
        let mut pause = Duration::from_millis(50);
        loop {
            self.0.wake.notified().await;
            loop {
                let (mut ids, resync) = {
                    let mut p = self.0.pending.lock().expect("task notices");
                    (std::mem::take(&mut p.ids), std::mem::take(&mut p.resync))
                };
                if ids.is_empty() && !resync {
                    break;
                }
                // Each id once, where it first came: the order the commits told them.
                let mut seen = std::collections::HashSet::with_capacity(ids.len());
                ids.retain(|id| seen.insert(*id));
                let payloads = payloads(&ids, resync);
                let sent = sqlx::query(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS n (p, i) ORDER BY i",
                )
                .bind(CHANNEL)
                .bind(&payloads)
                .execute(&pool)
                .await;
                match sent {
                    Ok(_) => pause = Duration::from_millis(50),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot send task notices; consumers will resync");
                        self.0.pending.lock().expect("task notices").resync = true;
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }
}

/// The channel payloads for these ids (distinct, in order), or one `resync`.
fn payloads(ids: &[i32], resync: bool) -> Vec<String> {
    if resync {
        return vec![Notice::Resync.encode()];
    }
    ids.chunks(PER_NOTICE).map(|c| Notice::Tasks { were: TasksWere::Changed, ids: c.into() }.encode()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_batch_ids_and_decode_back() {
        let ids: Vec<i32> = (1..=1500).collect();
        let out = payloads(&ids, false);
        assert_eq!(out.len(), 3);
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() < 8000);
            match Notice::decode(p) {
                Notice::Tasks { were: TasksWere::Changed, ids } => back.extend_from_slice(&ids),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, ids);
        assert_eq!(Notice::decode(&payloads(&ids, true)[0]), Notice::Resync);
    }

    #[test]
    fn a_full_queue_turns_into_resync() {
        let d = Deferred::default();
        for id in 0..(MAX_PENDING as i32 + 5) {
            d.changed_all([id]);
        }
        let p = d.0.pending.lock().unwrap();
        assert_eq!(p.ids.len(), MAX_PENDING);
        assert!(p.resync);
    }
}
