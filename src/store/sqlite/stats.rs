//! The dashboard's figures on SQLite (times are microseconds since the epoch), the twin of
//! `src/store/postgres/stats.rs`.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::store::{TaskStats, sql};

use super::micros;

pub(super) fn task_stats(conn: &Connection, since: DateTime<Utc>, owner: Option<i32>) -> rusqlite::Result<TaskStats> {
    let states: Vec<(i64, i64)> = conn
        .prepare_cached(
            "SELECT state, COUNT(*) FROM batchtask WHERE (?1 IS NULL OR (associate_id = ?1 AND is_system = 0)) \
             GROUP BY state ORDER BY state",
        )?
        .query_map([owner], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let [a, b, c] = sql::finished_state_numbers();
    let minutes = conn
        .prepare_cached(
            "SELECT updated / 60000000 AS minute, state, COUNT(*), COUNT(laststarted), \
             COALESCE(SUM(laststarted - registered), 0), COALESCE(MAX(laststarted - registered), 0), \
             COALESCE(SUM(updated - laststarted), 0), COALESCE(MAX(updated - laststarted), 0) \
             FROM batchtask WHERE state IN (?1, ?2, ?3) AND updated >= ?4 \
             AND (?5 IS NULL OR (associate_id = ?5 AND is_system = 0)) \
             GROUP BY minute, state ORDER BY minute, state",
        )?
        .query_map(params![a, b, c, micros(since), owner], |r| {
            Ok(sql::minute_stats([
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ]))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(TaskStats { states: sql::states_with_counts(states), minutes })
}
