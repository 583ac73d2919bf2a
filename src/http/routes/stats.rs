//! `GET /api/v1/Stats?minutes=60`: the dashboard's figures, of the tasks the caller may see
//! (users: their own; workers and admins: all). State counts now, and per minute the tasks that
//! finished, by end state, with their queue wait (Created → LastStarted) and run time.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::domain::{BatchTaskState, Caller, DomainError, Expected, Field, time};
use crate::http::AppState;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{Format, XmlWriter};
use crate::store::{MinuteStats, STATS_MAX_MINUTES};

use super::Query;
use super::runner::{json_response, xml_response};

/// The window when `minutes` is not given: the last hour.
const DEFAULT_MINUTES: u32 = 60;

fn minutes(q: &Query) -> Result<u32, ApiError> {
    let Some(v) = q.get("minutes") else { return Ok(DEFAULT_MINUTES) };
    let out_of_range =
        || DomainError::OutOfRange { field: Field::Param("minutes"), min: 1, max: STATS_MAX_MINUTES.into() };
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=STATS_MAX_MINUTES).contains(&n) => Ok(n),
        Ok(_) => Err(out_of_range().into()),
        Err(_) if v.trim().parse::<i64>().is_ok() => Err(out_of_range().into()),
        Err(_) => Err(DomainError::WrongType { field: Field::Param("minutes"), expected: Expected::Integer }.into()),
    }
}

/// Milliseconds on average, over the tasks that started (0 when none did).
fn average(total: i64, count: i64) -> i64 {
    if count > 0 { total / count } else { 0 }
}

/// The figures of one minute, as named on the wire (JSON keys, XML elements).
fn minute_fields(m: &MinuteStats, prefs: &Prefs) -> [(&'static str, Value); 8] {
    [
        ("Minute", json!(time::format(m.minute, prefs.zone))),
        ("State", json!(m.state.name())),
        ("Count", json!(m.finished)),
        ("Started", json!(m.started)),
        ("WaitMsAvg", json!(average(m.wait_ms_total, m.started))),
        ("WaitMsMax", json!(m.wait_ms_max)),
        ("RunMsAvg", json!(average(m.run_ms_total, m.started))),
        ("RunMsMax", json!(m.run_ms_max)),
    ]
}

pub async fn get(
    caller: Caller,
    State(app): State<AppState>,
    prefs: Prefs,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let minutes = minutes(&Query::parse(raw.as_deref()))?;
    let (since, stats) = app.tasks.stats(&caller, minutes).await?;
    // Every stored state, zeros included, so a client need not know which are missing.
    let states: Vec<(BatchTaskState, i64)> = BatchTaskState::STORED
        .into_iter()
        .map(|s| (s, stats.states.iter().find(|(t, _)| *t == s).map_or(0, |(_, n)| *n)))
        .collect();
    Ok(match prefs.format {
        Format::Json => {
            let counts: Map<String, Value> = states.iter().map(|(s, n)| (s.name().to_owned(), json!(n))).collect();
            let finished: Vec<Value> = stats
                .minutes
                .iter()
                .map(|m| Value::Object(minute_fields(m, &prefs).into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
                .collect();
            json_response(&json!({
                "Since": time::format(since, prefs.zone),
                "Minutes": minutes,
                "States": counts,
                "Finished": finished,
            }))
        }
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("Stats");
            x.leaf("Since", &time::format(since, prefs.zone));
            x.leaf("Minutes", &minutes.to_string());
            x.open("States");
            for (s, n) in &states {
                x.open("StateCount");
                x.leaf("State", s.name());
                x.leaf("Count", &n.to_string());
                x.close("StateCount");
            }
            x.close("States");
            x.open("Finished");
            for m in &stats.minutes {
                x.open("MinuteStats");
                for (k, v) in minute_fields(m, &prefs) {
                    match v {
                        Value::String(s) => x.leaf(k, &s),
                        other => x.leaf(k, &other.to_string()),
                    }
                }
                x.close("MinuteStats");
            }
            x.close("Finished");
            xml_response(x)
        }
    })
}
