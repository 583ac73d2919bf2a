//! The single SQLite writer, with group commit.
//!
//! SQLite lets one writer in at a time, and a durable commit costs an fsync. So all writes go
//! to one thread, which takes every job waiting in its queue, runs each in its own savepoint
//! inside one transaction, commits once, and only then answers each caller. A 200 therefore
//! always means "on disk", and concurrent writers share the fsync instead of queueing for it.
//!
//! The writer also hears, through SQLite's update hook, which tasks each transaction inserted,
//! updated or deleted, and hands the lists on once the commit is durable (the change feed's task
//! notices). A job rolled back to its savepoint is still in the lists: a reader finds nothing
//! changed, which costs a read and no event.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync of that file) run on
//! a second thread with its own connection. Left to SQLite's automatic checkpoint they would run
//! inside the writer's commit, and every commit that happened to trigger one, with every caller
//! waiting on it, took 10-25 ms instead of 1. See [`checkpoint`] for how the WAL still gets
//! reused from its start.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::hooks::Action;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most jobs folded into one transaction. Bounds latency for the first job of a big batch.
const MAX_BATCH: usize = 512;

/// Runs inside the transaction (or, given `None`, is skipped because no transaction could begin);
/// returns what to do once the commit's outcome is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Box<dyn FnOnce(Result<(), StoreError>) + Send> + Send>;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Takes over `conn` as the one write connection; `checkpoints` is a second connection to the
    /// same file for the checkpoint thread.
    /// `on_outside_write` is called when another connection (another process: the writer is this
    /// process's only one) has committed to the file since the last look; `on_tasks` after each
    /// commit that touched task rows.
    pub fn start(
        conn: Connection,
        checkpoints: Connection,
        on_outside_write: impl Fn() + Send + 'static,
        on_tasks: impl Fn(TouchedTasks) + Send + 'static,
    ) -> anyhow::Result<Writer> {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
        conn.update_hook(Some(|action: Action, _db: &str, table: &str, rowid: i64| {
            if table == "batchtask" {
                TOUCHED.with(|t| t.borrow_mut().add(action, rowid));
            }
        }));
        let (tx, rx) = mpsc::channel::<Job>();
        let (committed, commits) = mpsc::sync_channel::<()>(1);
        let restart_due = Arc::new(AtomicBool::new(false));
        let due = restart_due.clone();
        thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx, committed, due, on_outside_write, on_tasks))?;
        thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint(checkpoints, commits, restart_due))?;
        Ok(Writer { tx })
    }

    /// Runs `f` in the next group commit and answers after the commit is durable.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = conn.map(|conn| in_savepoint(conn, f));
            // Taken even when the job failed: its events went with its savepoint.
            let written = super::runner::take_written();
            Box::new(move |commit: Result<(), StoreError>| {
                let result = match (outcome, commit) {
                    (Some(Ok(v)), Ok(())) => Ok(v),
                    (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                    (None, Ok(())) => Err(StoreError::Backend("the write was not run".into())),
                };
                if result.is_ok() {
                    crate::domain::run::log_events(&written);
                }
                let _ = reply.send(result);
            })
        });
        self.tx.send(job).map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the writer thread dropped a job".into()))?
    }
}

/// Task rows a transaction inserted, updated and deleted (ids; a row may be in several lists).
#[derive(Debug, Default)]
pub struct TouchedTasks {
    pub created: Vec<i32>,
    pub changed: Vec<i32>,
    pub deleted: Vec<i32>,
}

impl TouchedTasks {
    fn add(&mut self, action: Action, rowid: i64) {
        let Ok(id) = i32::try_from(rowid) else { return };
        match action {
            Action::SQLITE_INSERT => self.created.push(id),
            Action::SQLITE_UPDATE => self.changed.push(id),
            Action::SQLITE_DELETE => self.deleted.push(id),
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.changed.is_empty() && self.deleted.is_empty()
    }
}

thread_local! {
    /// What the writer thread's open transaction touched, filled by the update hook.
    static TOUCHED: std::cell::RefCell<TouchedTasks> = std::cell::RefCell::default();
}

/// Runs one statement from the connection's statement cache (no parsing after the first time).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    exec(conn, "SAVEPOINT job").map_err(super::backend)?;
    // Releases are collected per job: none of an earlier job's may be told as this one's.
    super::deps::drop_released();
    let outcome = f(conn);
    if outcome.is_err() {
        // What the job released is rolled back with it: the feed must not announce it.
        super::deps::drop_released();
        exec(conn, "ROLLBACK TO job").map_err(super::backend)?;
    }
    exec(conn, "RELEASE job").map_err(super::backend)?;
    outcome
}

/// Least time between two checkpoints: under a steady write load the WAL is copied back a few
/// times a second in larger steps rather than after every commit.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// WAL length (pages) past which the WAL should start afresh. SQLite's own automatic checkpoint
/// uses the same figure.
const RESTART_FRAMES: i64 = 1000;

/// Copies committed WAL frames into the database file whenever there are new commits, at most
/// every [`CHECKPOINT_INTERVAL`]. PASSIVE: it never takes the write lock or waits for readers.
///
/// SQLite reuses the WAL from its start only when a write transaction begins with every frame
/// copied, which a concurrent checkpoint under a steady write load never catches. So once the WAL
/// is long, this thread sets `restart_due` and the writer, after its next commit, runs a PASSIVE
/// checkpoint itself, between two transactions: it only copies the frames committed since this
/// one started (a few milliseconds' worth), and the writer's next transaction restarts the WAL.
/// Waiting for the write lock here instead would stall the writer in SQLite's busy handler,
/// which sleeps 1, 2, 5, 10... ms between tries (a 100 ms stall was seen). Ends with the writer.
fn checkpoint(conn: Connection, commits: mpsc::Receiver<()>, restart_due: Arc<AtomicBool>) {
    while commits.recv().is_ok() {
        match passive_checkpoint(&conn) {
            Ok(frames) if frames > RESTART_FRAMES => restart_due.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; it will be retried after the next commit"),
        }
        thread::sleep(CHECKPOINT_INTERVAL);
    }
}

/// Copies what it can of the WAL into the database file; returns the WAL's length in pages.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

/// How often the writer looks whether another process wrote the file (`PRAGMA data_version`,
/// which counts commits by other connections only).
const OUTSIDE_WRITES_POLL: Duration = Duration::from_millis(100);

fn run(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    committed: mpsc::SyncSender<()>,
    restart_due: Arc<AtomicBool>,
    on_outside_write: impl Fn(),
    on_tasks: impl Fn(TouchedTasks),
) {
    let data_version = |conn: &Connection| conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)).ok();
    let mut seen = data_version(&conn);
    let mut looked = Instant::now();
    loop {
        if looked.elapsed() >= OUTSIDE_WRITES_POLL {
            looked = Instant::now();
            let now = data_version(&conn);
            if now != seen {
                seen = now;
                on_outside_write();
            }
        }
        let first = match rx.recv_timeout(OUTSIDE_WRITES_POLL) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "cannot begin a write transaction");
            // Each caller gets the error (a busy or full database says so); none of the jobs ran.
            let error = super::backend(e);
            for job in batch {
                job(None)(Err(error.clone()));
            }
            continue;
        }
        let finishers: Vec<_> = batch.into_iter().map(|job| job(Some(&conn))).collect();
        let commit = exec(&conn, "COMMIT").map_err(super::backend);
        if commit.is_err() {
            let _ = exec(&conn, "ROLLBACK");
        }
        let touched = TOUCHED.with(|t| std::mem::take(&mut *t.borrow_mut()));
        for finish in finishers {
            finish(commit.clone());
        }
        if commit.is_ok() && !touched.is_empty() {
            on_tasks(touched);
        }
        if restart_due.swap(false, Ordering::Relaxed) {
            // Catches up with the checkpoint thread so the next transaction restarts the WAL.
            if let Err(e) = passive_checkpoint(&conn) {
                tracing::warn!(error = %e, "WAL checkpoint in the writer failed");
            }
        }
        // Wakes the checkpoint thread; a wake-up already pending covers this commit too.
        let _ = committed.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_rolled_back_tells_no_release() {
        let conn = Connection::open_in_memory().unwrap();
        exec(&conn, "BEGIN").unwrap();
        let failed: Result<(), StoreError> = in_savepoint(&conn, |_| {
            super::super::deps::note_released_for_test("a");
            Err(StoreError::NotFound)
        });
        assert!(failed.is_err());
        let next = in_savepoint(&conn, |_| Ok(super::super::deps::take_released())).unwrap();
        assert!(next.is_empty(), "the rolled-back job's release leaked into the next job: {next:?}");
        let told = in_savepoint(&conn, |_| {
            super::super::deps::note_released_for_test("b");
            Ok(super::super::deps::take_released())
        })
        .unwrap();
        assert_eq!(told, ["b"]);
    }
}
