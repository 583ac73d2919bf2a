//! Nodes: the batchd processes sharing a database. Each keeps one row up to date (written at
//! start, refreshed every heartbeat, marked stopped at a graceful shutdown); the rules here say
//! which rows are alive, which are listed and which may go.
//!
//! **Liveness.** A node is alive while it has not stopped and its row was refreshed within its
//! own `lease`. It refreshes every `heartbeat`, at most half a lease, so one late refresh does not
//! make it dead; and a node silent for a lease has renewed none of its leases for as long, so when
//! the list says "not alive" its tasks are due for rescue (within a heartbeat) on the other nodes.
//! The node's own lease is stored in its row, so nodes with different settings judge each other
//! by the right one.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::run::stored_text;

/// How long a dead node stays in the list after it died (stopped, or went silent).
pub const DEAD_LISTED: Duration = Duration::from_secs(3600);
/// Rows last seen longer ago than this are purged by retention. Well past [`DEAD_LISTED`] plus
/// any sensible lease, so no row that could still be listed goes.
pub const ROWS_KEPT: Duration = Duration::from_secs(86_400);
/// The most rows a list reads and answers: a burst of restarts under generated names must not
/// make the answer unbounded.
pub const MAX_LISTED: usize = 1000;
/// Longest name, version and address kept (a configured name is at most 100 characters).
pub const TEXT_MAX: usize = 254;

/// A node's row, as written by the node and read back by any.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub name: String,
    pub version: String,
    /// The address it listens on, as bound.
    pub address: String,
    pub started: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Runs in progress on it when it last refreshed.
    pub running: i64,
    pub runner_enabled: bool,
    /// Its `[runner] lease`: the liveness window.
    pub lease: Duration,
    /// When it shut down gracefully; `None` while running (or after a kill).
    pub stopped: Option<DateTime<Utc>>,
}

/// A listed node with its liveness, as `GET /api/v1/Nodes` answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub row: NodeRow,
    pub alive: bool,
}

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl NodeRow {
    /// The row as stored: texts bounded, times to the microsecond both engines keep.
    pub fn stored(mut self) -> NodeRow {
        self.name = stored_text(&self.name, TEXT_MAX);
        self.version = stored_text(&self.version, TEXT_MAX);
        self.address = stored_text(&self.address, TEXT_MAX);
        self.started = super::time::truncate_micros(self.started);
        self.last_seen = super::time::truncate_micros(self.last_seen);
        self.stopped = self.stopped.map(super::time::truncate_micros);
        self.running = self.running.max(0);
        self
    }

    /// Alive: not stopped, and refreshed within its lease.
    pub fn alive(&self, now: DateTime<Utc>) -> bool {
        self.stopped.is_none() && self.silent_until().is_none_or(|until| now <= until)
    }

    /// One lease after it was last seen; `None` for a lease too long for a date (never).
    fn silent_until(&self) -> Option<DateTime<Utc>> {
        self.last_seen.checked_add_signed(span(self.lease))
    }

    /// When it stopped being alive: its shutdown, else one lease after it was last seen.
    pub fn died_at(&self) -> Option<DateTime<Utc>> {
        self.stopped.or_else(|| self.silent_until())
    }

    /// In the list: alive, or dead for less than [`DEAD_LISTED`].
    pub fn listed(&self, now: DateTime<Utc>) -> bool {
        self.alive(now) || self.died_at().is_none_or(|d| now.signed_duration_since(d) <= span(DEAD_LISTED))
    }
}

/// Rows last seen before this may be purged, and no list reads further back.
pub fn kept_since(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_signed(span(ROWS_KEPT)).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The nodes to list from the rows read: live ones first, then the dead by most recent death;
/// by name within each.
pub fn listing(rows: Vec<NodeRow>, now: DateTime<Utc>) -> Vec<NodeStatus> {
    let mut out: Vec<NodeStatus> =
        rows.into_iter().filter(|r| r.listed(now)).map(|row| NodeStatus { alive: row.alive(now), row }).collect();
    out.sort_by(|a, b| {
        b.alive.cmp(&a.alive).then_with(|| match a.alive {
            true => a.row.name.cmp(&b.row.name),
            false => b.row.died_at().cmp(&a.row.died_at()).then_with(|| a.row.name.cmp(&b.row.name)),
        })
    });
    out.truncate(MAX_LISTED);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn row(name: &str, last_seen: i64) -> NodeRow {
        NodeRow {
            name: name.into(),
            version: "1.0.0".into(),
            address: "127.0.0.1:8080".into(),
            started: at(0),
            last_seen: at(last_seen),
            running: 2,
            runner_enabled: true,
            lease: Duration::from_secs(30),
            stopped: None,
        }
    }

    #[test]
    fn a_node_is_alive_for_one_lease_after_it_was_last_seen() {
        let r = row("a", 100);
        assert!(r.alive(at(100)));
        assert!(r.alive(at(130)), "exactly one lease later: still alive");
        assert!(!r.alive(at(131)));
        assert!(r.alive(at(90)), "seen 'in the future' (another node's clock runs ahead): alive");
        assert_eq!(r.died_at(), Some(at(130)));
        let short = NodeRow { lease: Duration::from_secs(2), ..r.clone() };
        assert!(!short.alive(at(103)), "judged by its own lease");
    }

    #[test]
    fn a_stopped_node_is_dead_at_once_and_listed_for_an_hour() {
        let r = NodeRow { stopped: Some(at(100)), ..row("a", 100) };
        assert!(!r.alive(at(100)));
        assert_eq!(r.died_at(), Some(at(100)));
        assert!(r.listed(at(100 + 3600)));
        assert!(!r.listed(at(100 + 3601)));
    }

    #[test]
    fn the_list_holds_the_live_and_the_recently_dead_live_ones_first() {
        let now = at(10_000);
        let rows = vec![
            row("zeta", 9_990),                                            // alive
            row("alpha", 9_999),                                           // alive
            row("old", 10_000 - 3600 - 31),                                // died over an hour ago
            row("recent", 10_000 - 100),                                   // died 70 s ago
            NodeRow { stopped: Some(at(9_000)), ..row("stopped", 9_000) }, // stopped 1000 s ago
        ];
        let list = listing(rows, now);
        let names: Vec<(&str, bool)> = list.iter().map(|n| (n.row.name.as_str(), n.alive)).collect();
        assert_eq!(names, [("alpha", true), ("zeta", true), ("recent", false), ("stopped", false)]);
    }

    #[test]
    fn rows_are_kept_a_day_and_stored_bounded() {
        assert_eq!(kept_since(at(86_400)), at(0));
        let long = NodeRow { name: "n".repeat(1000), running: -1, ..row("x", 0) }.stored();
        assert_eq!((long.name.chars().count(), long.running), (TEXT_MAX, 0));
        let huge = NodeRow { lease: Duration::MAX, ..row("x", 0) };
        assert!(huge.alive(at(1_000_000)), "a lease too long for a date does not wrap");
    }
}
