//! Node rows and the health ping on PostgreSQL, the twins of `src/store/sqlite/nodes.rs`. Each
//! node writes only its own row, so the upsert needs no lock beyond the row's own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use crate::domain::node::NodeRow;
use crate::store::StoreError;

use super::{backend, read_twice};

/// `SELECT 1` on a pooled connection, within `within` (the pool's own wait for a connection is
/// longer). A connection lost since it was pooled is replaced once, as for any read.
pub async fn ping(pool: &PgPool, within: Duration) -> Result<(), StoreError> {
    let once = || async {
        sqlx::query("SELECT 1").execute(pool).await.map_err(backend)?;
        Ok(())
    };
    match tokio::time::timeout(within, read_twice(once)).await {
        Ok(answer) => answer,
        Err(_) => Err(StoreError::Unavailable(format!("no answer to a ping within {within:?}"))),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub async fn upsert(pool: &PgPool, n: &NodeRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO node (name, version, address, started, last_seen, running, runner_enabled, lease_ms, stopped) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, address = excluded.address, \
         started = excluded.started, last_seen = excluded.last_seen, running = excluded.running, \
         runner_enabled = excluded.runner_enabled, lease_ms = excluded.lease_ms, stopped = excluded.stopped",
    )
    .bind(&n.name)
    .bind(&n.version)
    .bind(&n.address)
    .bind(n.started)
    .bind(n.last_seen)
    .bind(n.running)
    .bind(n.runner_enabled)
    .bind(ms(n.lease))
    .bind(n.stopped)
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub async fn list(pool: &PgPool, since: DateTime<Utc>, limit: usize) -> Result<Vec<NodeRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, version, address, started, last_seen, running, runner_enabled, lease_ms, stopped FROM node \
         WHERE last_seen >= $1 ORDER BY last_seen DESC, name LIMIT $2",
    )
    .bind(since)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok(NodeRow {
                name: r.try_get(0)?,
                version: r.try_get(1)?,
                address: r.try_get(2)?,
                started: r.try_get(3)?,
                last_seen: r.try_get(4)?,
                running: r.try_get(5)?,
                runner_enabled: r.try_get(6)?,
                lease: Duration::from_millis(u64::try_from(r.try_get::<i64, _>(7)?).unwrap_or(0)),
                stopped: r.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(backend)
}

pub async fn purge(pool: &PgPool, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
    let done = sqlx::query("DELETE FROM node WHERE name IN (SELECT name FROM node WHERE last_seen < $1 LIMIT $2)")
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(pool)
        .await
        .map_err(backend)?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
}
