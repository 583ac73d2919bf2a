//! The dashboard's figures on PostgreSQL, the twin of `src/store/sqlite/stats.rs`: the same
//! grouping, with times turned into microseconds so both engines round alike.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::{StoreError, TaskStats, sql};

use super::{backend, read_twice};

/// One grouped row, as `sql::minute_stats` reads it.
type MinuteRow = (i64, i64, i64, i64, i64, i64, i64, i64);

/// Microseconds of a `timestamptz` (or of the difference of two) as a bigint.
const US: &str = "* 1000000)::bigint";

pub async fn task_stats(pool: &PgPool, since: DateTime<Utc>, owner: Option<i32>) -> Result<TaskStats, StoreError> {
    let [a, b, c] = sql::finished_state_numbers();
    let minutes_sql = format!(
        "SELECT floor(extract(epoch FROM updated) / 60)::bigint AS minute, state::bigint, COUNT(*), COUNT(laststarted), \
         COALESCE(SUM((extract(epoch FROM laststarted - registered) {US}), 0)::bigint, \
         COALESCE(MAX((extract(epoch FROM laststarted - registered) {US}), 0)::bigint, \
         COALESCE(SUM((extract(epoch FROM updated - laststarted) {US}), 0)::bigint, \
         COALESCE(MAX((extract(epoch FROM updated - laststarted) {US}), 0)::bigint \
         FROM batchtask WHERE state IN ($1, $2, $3) AND updated >= $4 \
         AND ($5::integer IS NULL OR (associate_id = $5 AND NOT is_system)) \
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let once = || async {
        let states: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM batchtask WHERE ($1::integer IS NULL OR (associate_id = $1 AND NOT is_system)) \
             GROUP BY state ORDER BY state",
        )
        .bind(owner)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
        let rows: Vec<MinuteRow> = sqlx::query_as(sqlx::AssertSqlSafe(minutes_sql.as_str()))
            .bind(a)
            .bind(b)
            .bind(c)
            .bind(since)
            .bind(owner)
            .fetch_all(pool)
            .await
            .map_err(backend)?;
        Ok(TaskStats {
            states: sql::states_with_counts(states.into_iter().map(|(s, n)| (i64::from(s), n))),
            minutes: rows
                .into_iter()
                .map(|(m, s, f, st, wt, wm, rt, rm)| sql::minute_stats([m, s, f, st, wt, wm, rt, rm]))
                .collect(),
        })
    };
    read_twice(once).await
}
