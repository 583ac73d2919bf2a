//! The single SQLite writer, with group commit.
//!
//! SQLite lets one writer in at a time, and a durable commit costs an fsync. So all writes go
//! to one thread, which takes every job waiting in its queue, runs each in its own savepoint
//! inside one transaction, commits once, and only then answers each caller. A 200 therefore
//! always means "on disk", and concurrent writers share the fsync instead of queueing for it.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most jobs folded into one transaction. Bounds latency for the first job of a big batch.
const MAX_BATCH: usize = 512;

/// Runs inside the transaction; returns what to do once the commit's outcome is known.
type Job = Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), String>) + Send> + Send>;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(conn, rx))?;
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
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit: Result<(), String>| {
                let result = match (outcome, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(e)) => Err(StoreError::Backend(e)),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(result);
            })
        });
        self.tx.send(job).map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the writer thread dropped a job".into()))?
    }
}

/// Runs one statement from the connection's statement cache (no parsing after the first time).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    exec(conn, "SAVEPOINT job").map_err(super::backend)?;
    let outcome = f(conn);
    if outcome.is_err() {
        exec(conn, "ROLLBACK TO job").map_err(super::backend)?;
    }
    exec(conn, "RELEASE job").map_err(super::backend)?;
    outcome
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cannot begin a write transaction");
            // Dropping the jobs drops their reply senders: each caller gets an error, none ran.
            drop(batch);
            continue;
        }
        let finishers: Vec<_> = batch.into_iter().map(|job| job(&conn)).collect();
        let commit = exec(&conn, "COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = exec(&conn, "ROLLBACK");
        }
        for finish in finishers {
            finish(commit.clone());
        }
    }
}
