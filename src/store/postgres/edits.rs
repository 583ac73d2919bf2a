//! Group commit of the edits by hand that move no state (a PUT of a Description, say).
//!
//! A durable commit costs a WAL flush, and PostgreSQL on this kind of disk does about 11,000 of
//! them a second however many clients ask; one commit per edit caps edits there. So edits are
//! queued to a few writers. A writer takes what waits in its queue (at most [`MAX_BATCH`]),
//! reads those rows in one statement, decides each edit in queue order with its own
//! [`TaskChange`] (a second edit of a task in the batch is decided on the first one's result),
//! writes every row that changed in ONE guarded statement (its own transaction, one commit), and
//! only then answers each caller and hands the ids to the after-commit notices. A 200 still means
//! "durable": nothing is answered before its commit returned.
//!
//! What the writer does not do itself it hands back to the caller, which takes the locked path
//! (`runner::modify_task`, under the row lock): an edit that moves the state (events, leases,
//! rerun and unique checks, the cascade), and the edits of a row that another write changed
//! between the batch's read and its write (the guard on version and state matched nothing). A
//! refusal answers its own caller only (one decided on the row an earlier edit of the batch left
//! stands only once that row is written; else it is decided again on the stored row). When the statement is refused as a whole (a deadlock
//! with a locked batch, a value the database will not take) nothing was written, and each edit
//! takes the locked path alone, so one bad edit fails alone; when the connection is lost the
//! write may have committed, and every caller of the batch gets the error (a 503), as a single
//! edit's caller would.
//!
//! Tasks are spread over the writers by id, so two writers never race each other on one row,
//! and the next batch of a writer forms in its queue while its commit is in flight. The queues
//! are bounded: a caller waits for room (backpressure), memory does not grow.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tokio::sync::{mpsc, oneshot};

use super::runner::{self, Edited};
use super::{ListenerGuard, backend, notices, select_tasks};
use crate::domain::Task;
use crate::store::runner::Actor;
use crate::store::{StoreError, TaskChange};

/// Most edits in one batch: bounds the statement's arrays and the first caller's wait.
const MAX_BATCH: usize = 256;
/// Edits waiting per writer; past that a caller waits for room.
const QUEUE: usize = 4 * MAX_BATCH;
/// Writers, each with one connection of its own (outside the request pool). One beat two, four
/// and eight on a 2-core machine (docs/BENCHMARKS.md): the next batch forms in the queue while
/// one commits, and more writers split the batches smaller, which costs the database more CPU
/// a PUT than the overlap of their commits gains.
const WRITERS: usize = 1;

/// Longest a writer's statement waits for a row lock another session holds.
const WRITER_LOCK_TIMEOUT: &str = "250ms";
/// Longest a writer's statement runs.
const WRITER_STATEMENT_TIMEOUT: &str = "5s";

/// One edit by hand, as [`crate::store::Store::modify_task`] was given it (`now` at storage
/// precision).
pub(super) struct Edit {
    pub id: i32,
    pub now: DateTime<Utc>,
    pub actor: Actor,
    pub change: TaskChange,
}

/// A writer's answer to an edit.
pub(super) enum Outcome {
    /// Written and committed, refused, or failed with its batch.
    Done(Result<Box<Task>, StoreError>),
    /// Not written: the caller takes the locked path.
    Locked,
}

struct Job {
    edit: Arc<Edit>,
    reply: oneshot::Sender<Outcome>,
}

/// The writers' queues; the writers end with it.
pub(super) struct Writers {
    queues: Vec<mpsc::Sender<Job>>,
    _writers: Vec<ListenerGuard>,
}

impl Writers {
    /// The writers, on connections of their own to `pool`'s server, with its settings.
    pub(super) fn start(pool: &PgPool, notices: notices::Deferred) -> Writers {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(WRITERS as u32)
            .acquire_timeout(pool.options().get_acquire_timeout())
            // A writer that waited on one row's lock would hold up every edit of the node: past
            // these a statement is refused (rolled back) and its edits take the locked path alone.
            .connect_lazy_with(
                (*pool.connect_options())
                    .clone()
                    .options([("lock_timeout", WRITER_LOCK_TIMEOUT), ("statement_timeout", WRITER_STATEMENT_TIMEOUT)]),
            );
        let (queues, writers) = (0..WRITERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                (tx, ListenerGuard(tokio::spawn(run(pool.clone(), notices.clone(), rx))))
            })
            .unzip();
        Writers { queues, _writers: writers }
    }

    /// Queues `edit` and waits for its outcome.
    pub(super) async fn edit(&self, edit: Arc<Edit>) -> Outcome {
        // A task's edits always go to the same writer: they are decided in the order queued.
        let queue = &self.queues[edit.id.unsigned_abs() as usize % self.queues.len()];
        let (reply, answer) = oneshot::channel();
        if queue.send(Job { edit, reply }).await.is_err() {
            return Outcome::Locked;
        }
        answer.await.unwrap_or_else(|_| Outcome::Done(Err(StoreError::Backend("the edit writer stopped".into()))))
    }
}

/// One writer: batch after batch, for as long as its queue is open.
async fn run(pool: PgPool, notices: notices::Deferred, mut queue: mpsc::Receiver<Job>) {
    // Kept between batches (no ping per batch); dropped after an error, so the next batch asks
    // the pool for a fresh, pinged one.
    let mut conn: Option<PoolConnection<Postgres>> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A caller that has gone (its request dropped) is not written for: it was not answered.
        batch.retain(|j: &Job| !j.reply.is_closed());
        if !batch.is_empty() {
            write_batch(&pool, &mut conn, &notices, std::mem::take(&mut batch)).await;
        }
    }
}

/// What became of one edit while the batch was decided.
enum Decided {
    Answer(Result<Task, StoreError>),
    /// Refused on the row an earlier edit of the batch left: an answer only once that row is
    /// written, else decided again on the stored row.
    RefusedAfter(i32, StoreError),
    Locked,
    /// To be written: the row as it will be stored.
    Written(Task),
}

async fn write_batch(
    pool: &PgPool,
    conn: &mut Option<PoolConnection<Postgres>>,
    notices: &notices::Deferred,
    batch: Vec<Job>,
) {
    let mut ids: Vec<i32> = batch.iter().map(|j| j.edit.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let (mut c, loaded) = match load(pool, conn.take(), &ids).await {
        Ok(loaded) => loaded,
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Outcome::Done(Err(e.clone())));
            }
            return;
        }
    };
    let base: HashMap<i32, Task> = loaded.into_iter().map(|t| (t.id, t)).collect();
    // Each task as the edits so far left it, and the last associate who edited it.
    let mut current: HashMap<i32, (Task, Option<i32>)> = HashMap::new();
    let decided: Vec<Decided> = batch
        .iter()
        .map(|job| {
            let edit = &job.edit;
            let after = current.get(&edit.id).map(|c| &c.0);
            let Some(row) = after.or_else(|| base.get(&edit.id)) else {
                return Decided::Answer(Err(StoreError::NotFound));
            };
            // A rule that panics fails its own edit, not the writer and the rest of the batch.
            let next = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (edit.change)(row))) {
                Ok(next) => next,
                Err(_) => return Decided::Answer(Err(StoreError::Backend("an edit's rule panicked".into()))),
            };
            match next {
                Err(refused) if after.is_some() => Decided::RefusedAfter(edit.id, refused.into()),
                Err(refused) => Decided::Answer(Err(refused.into())),
                Ok(next) if next.state != row.state => Decided::Locked,
                Ok(next) => {
                    // Never before the row's last change: edits queued in one order may carry their clocks
                    // in another, and Last-Modified must not go back.
                    let stored = runner::as_edited(row, &next, edit.now.max(row.updated));
                    let who = edit.actor.associate_id.or_else(|| current.get(&edit.id).and_then(|c| c.1));
                    current.insert(edit.id, (stored.clone(), who));
                    Decided::Written(stored)
                }
            }
        })
        .collect();
    let edited: Vec<Edited> =
        current.iter().map(|(id, (stored, who))| Edited { base: &base[id], stored, who: *who }).collect();
    let written: Result<HashSet<i32>, sqlx::Error> = if edited.is_empty() {
        Ok(HashSet::new())
    } else {
        // Armed before the statement: if this task is dropped while it is in flight, it may
        // still commit, and other nodes must hear of it.
        let mut notice = notices::OnDrop::all(notices, edited.iter().map(|e| e.base.id).collect());
        let written = runner::write_edits(&mut c, &edited).await.map(HashSet::from_iter);
        match &written {
            Ok(ids) => notice.retain(ids),
            // Refused by the server: the statement was rolled back, nothing to tell.
            Err(e) if refused(e) => notice.disarm(),
            Err(_) => {}
        }
        written
    };
    drop(edited);
    // A connection that failed is not kept: the next batch takes a fresh one.
    if written.is_ok() {
        *conn = Some(c);
    }
    let written = written.map_err(|e| (refused(&e), backend(e)));
    for (job, decided) in batch.into_iter().zip(decided) {
        let outcome = match decided {
            Decided::Answer(a) => Outcome::Done(a.map(Box::new)),
            Decided::RefusedAfter(id, refused) => match &written {
                Ok(ids) if ids.contains(&id) => Outcome::Done(Err(refused)),
                _ => Outcome::Locked,
            },
            Decided::Locked => Outcome::Locked,
            Decided::Written(task) => match &written {
                Ok(ids) if ids.contains(&task.id) => Outcome::Done(Ok(Box::new(task))),
                // Another write came between: decided again under the row lock.
                Ok(_) => Outcome::Locked,
                Err((true, _)) => Outcome::Locked,
                Err((false, e)) => Outcome::Done(Err(e.clone())),
            },
        };
        let _ = job.reply.send(outcome);
    }
}

/// The rows, on the writer's connection (or a fresh one from the pool), and that connection. A
/// read changes nothing, so a read that lost its connection is tried once more on a fresh one.
async fn load(
    pool: &PgPool,
    mut conn: Option<PoolConnection<Postgres>>,
    ids: &[i32],
) -> Result<(PoolConnection<Postgres>, Vec<Task>), StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut c = match conn.take() {
            Some(c) => c,
            None => pool.acquire().await.map_err(backend)?,
        };
        match select_tasks(&mut *c, ids).await {
            Ok(rows) => return Ok((c, rows)),
            Err(e @ StoreError::Unavailable(_)) if tries < 2 => {
                tracing::debug!(error = %e, "an edit batch's read lost its connection; trying once more");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The server refused the statement, which was therefore rolled back (an autocommit statement
/// commits only when it succeeds): a deadlock, a value it would not take. Not a lost connection
/// or a server shutting down, after which the commit may have happened.
fn refused(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            !(code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}
