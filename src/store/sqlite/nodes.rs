//! Node rows and the health ping on SQLite. Nodes sharing one file (several processes on one
//! host) each keep their row, as on PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::domain::node::NodeRow;
use crate::store::StoreError;

use super::{BUSY_TIMEOUT, backend, from_micros, micros};

/// Reads the migration log, so the answer comes from the file and not only from the library.
/// A writer of another process holding the file is waited for `within` at most.
pub(super) fn ping(conn: &Connection, within: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(within)?;
    let answer = conn.query_row("SELECT max(version) FROM _batchd_migrations", [], |r| r.get::<_, Option<i64>>(0));
    // The connection goes back to the pool: its usual wait again.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    answer.map(|_| ())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn upsert(conn: &Connection, n: &NodeRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO node (name, version, address, started, last_seen, running, runner_enabled, lease_ms, stopped) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, address = excluded.address, \
         started = excluded.started, last_seen = excluded.last_seen, running = excluded.running, \
         runner_enabled = excluded.runner_enabled, lease_ms = excluded.lease_ms, stopped = excluded.stopped",
    )
    .and_then(|mut s| {
        s.execute(params![
            n.name,
            n.version,
            n.address,
            micros(n.started),
            micros(n.last_seen),
            n.running,
            n.runner_enabled,
            ms(n.lease),
            n.stopped.map(micros),
        ])
    })
    .map_err(backend)?;
    Ok(())
}

pub(super) fn list(conn: &Connection, since: DateTime<Utc>, limit: usize) -> rusqlite::Result<Vec<NodeRow>> {
    let mut s = conn.prepare_cached(
        "SELECT name, version, address, started, last_seen, running, runner_enabled, lease_ms, stopped FROM node \
         WHERE last_seen >= ? ORDER BY last_seen DESC, name LIMIT ?",
    )?;
    let rows = s.query_map(params![micros(since), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        Ok(NodeRow {
            name: r.get(0)?,
            version: r.get(1)?,
            address: r.get(2)?,
            started: from_micros(r.get(3)?),
            last_seen: from_micros(r.get(4)?),
            running: r.get(5)?,
            runner_enabled: r.get(6)?,
            lease: Duration::from_millis(u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0)),
            stopped: r.get::<_, Option<i64>>(8)?.map(from_micros),
        })
    })?;
    rows.collect()
}

pub(super) fn purge(conn: &Connection, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
    conn.prepare_cached("DELETE FROM node WHERE name IN (SELECT name FROM node WHERE last_seen < ? LIMIT ?)")
        .and_then(|mut s| s.execute(params![micros(before), i64::try_from(limit).unwrap_or(i64::MAX)]))
        .map_err(backend)
}
