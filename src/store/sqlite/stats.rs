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
    // The end states as the partial index `batchtask_finished` names them (migration 0012), word
    // for word so that the planner uses it; `finished_range_is_the_end_states` keeps it honest.
    let minutes = conn
        .prepare_cached(
            "SELECT updated / 60000000 AS minute, state, COUNT(*), COUNT(laststarted), \
             COALESCE(SUM(laststarted - registered), 0), COALESCE(MAX(laststarted - registered), 0), \
             COALESCE(SUM(updated - laststarted), 0), COALESCE(MAX(updated - laststarted), 0) \
             FROM batchtask WHERE state BETWEEN 4 AND 6 AND updated >= ?1 \
             AND (?2 IS NULL OR (associate_id = ?2 AND is_system = 0)) \
             GROUP BY minute, state ORDER BY minute, state",
        )?
        .query_map(params![micros(since), owner], |r| {
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

#[cfg(test)]
mod tests {
    #[test]
    fn finished_range_is_the_end_states() {
        assert_eq!(crate::store::sql::finished_state_numbers(), [4, 5, 6]);
    }
}
