//! The change feed: what changed, told to every consumer (the runner's claim and stop loops, the
//! credential cache) so that they re-read at once instead of waiting for their next poll.
//!
//! A notice is small and says only what to re-read: a definition, a node, or which tasks were
//! created, changed or deleted (for the live event stream, `crate::http::hub`). Consumers never learn the engine: on
//! PostgreSQL the notices come from `LISTEN batchd`, raised by triggers in the same transaction as
//! the change (`migrations/postgres/0007_feed.sql`), or for edits by hand right after their commit
//! (`postgres/notices.rs`), so every node hears every node's changes; on
//! SQLite the store tells its own process. Polling stays as the fallback: a notice missed (a lost
//! connection, a lagging consumer) is a [`Notice::Resync`], and the next poll catches the rest.

use tokio::sync::broadcast;

/// The PostgreSQL channel the notices travel on.
pub const CHANNEL: &str = "batchd";

/// Longest payload accepted from the channel: PostgreSQL's own limit.
const MAX_PAYLOAD: usize = 8000;

/// What happened to the tasks a [`Notice::Tasks`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksWere {
    Created,
    /// A row was written; whether anything visible changed is for the reader to find out (on
    /// PostgreSQL the trigger leaves out writes that changed only lease columns).
    Changed,
    Deleted,
}

impl TasksWere {
    fn letter(self) -> char {
        match self {
            TasksWere::Created => 'c',
            TasksWere::Changed => 'u',
            TasksWere::Deleted => 'd',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Tasks of this definition became `New` (created, run again by hand, rescued, handed back).
    New { name: String },
    /// A stop was asked of a run that `node` holds.
    Stop { node: String },
    /// A definition was paused or resumed: its tasks may be claimable again.
    Definition { name: String },
    /// Associates or credentials changed: re-read the credential change log.
    Credentials,
    /// These tasks were created, changed or deleted (ids in no particular order; one commit may
    /// send several notices).
    Tasks { were: TasksWere, ids: std::sync::Arc<[i32]> },
    /// Notices may have been missed: re-read everything.
    Resync,
}

impl Notice {
    /// The channel payload, as the triggers write it.
    pub fn encode(&self) -> String {
        match self {
            Notice::New { name } => format!("new:{name}"),
            Notice::Stop { node } => format!("stop:{node}"),
            Notice::Definition { name } => format!("def:{name}"),
            Notice::Credentials => "cred".into(),
            Notice::Tasks { were, ids } => {
                let mut out = format!("tasks:{}:", were.letter());
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&id.to_string());
                }
                out
            }
            Notice::Resync => "resync".into(),
        }
    }

    /// A payload from the channel; an unknown or oversized one is a [`Notice::Resync`] (a newer
    /// node may say more than this one understands).
    pub fn decode(payload: &str) -> Notice {
        if payload.len() > MAX_PAYLOAD {
            return Notice::Resync;
        }
        match payload.split_once(':') {
            Some(("new", name)) => Notice::New { name: name.to_owned() },
            Some(("stop", node)) => Notice::Stop { node: node.to_owned() },
            Some(("def", name)) => Notice::Definition { name: name.to_owned() },
            Some(("tasks", rest)) => decode_tasks(rest).unwrap_or(Notice::Resync),
            _ if payload == "cred" => Notice::Credentials,
            _ => Notice::Resync,
        }
    }
}

/// `c:1,2,3` (created), `u:…` (changed) or `d:…` (deleted).
fn decode_tasks(rest: &str) -> Option<Notice> {
    let (letter, ids) = rest.split_once(':')?;
    let were = [TasksWere::Created, TasksWere::Changed, TasksWere::Deleted]
        .into_iter()
        .find(|w| letter.len() == 1 && letter.starts_with(w.letter()))?;
    let ids = ids.split(',').map(|id| id.parse::<i32>().ok()).collect::<Option<Vec<i32>>>()?;
    Some(Notice::Tasks { were, ids: ids.into() })
}

/// One process's end of the feed: stores send, consumers subscribe.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Notice>,
    /// Whether notices arrive now, and since when: odd while they do, even while they may be
    /// missed; moved on at each change, so a consumer can tell "still the same unbroken stretch".
    session: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Notices a slow consumer may fall behind by before it is told to resync.
const BACKLOG: usize = 1024;

/// An in-process feed (SQLite: the store tells its own process): it cannot miss a notice, so it
/// is connected from the start and stays so.
impl Default for Feed {
    fn default() -> Self {
        Feed { tx: broadcast::channel(BACKLOG).0, session: std::sync::Arc::new(1.into()) }
    }
}

impl Feed {
    /// A feed fed from elsewhere (PostgreSQL's `LISTEN`): not connected until its listener says
    /// [`Feed::connected`].
    pub fn remote() -> Self {
        Feed { tx: broadcast::channel(BACKLOG).0, session: std::sync::Arc::new(0.into()) }
    }

    /// The listener hears every notice from now on.
    pub fn connected(&self) {
        self.move_session(|s| s % 2 == 0);
    }

    /// The listener lost its connection: notices may be missed until [`Feed::connected`].
    pub fn disconnected(&self) {
        self.move_session(|s| s % 2 == 1);
    }

    fn move_session(&self, when: impl Fn(u64) -> bool) {
        use std::sync::atomic::Ordering::SeqCst;
        let _ = self.session.fetch_update(SeqCst, SeqCst, |s| when(s).then_some(s.wrapping_add(1)));
    }

    /// The stretch of time during which every notice arrives, `None` while notices may be
    /// missed. Two equal answers mean no notice was missed in between (a consumer that keeps up).
    pub fn session(&self) -> Option<u64> {
        let s = self.session.load(std::sync::atomic::Ordering::SeqCst);
        (s % 2 == 1).then_some(s)
    }

    pub fn send(&self, notice: Notice) {
        // No subscriber is fine: nobody needs telling.
        let _ = self.tx.send(notice);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription { rx: self.tx.subscribe() }
    }
}

pub struct Subscription {
    rx: broadcast::Receiver<Notice>,
}

impl Subscription {
    /// The next notice; `None` once the feed is gone. A consumer that fell behind gets
    /// [`Notice::Resync`] for what it missed.
    pub async fn next(&mut self) -> Option<Notice> {
        match self.rx.recv().await {
            Ok(n) => Some(n),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Notice::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// A notice already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<Notice> {
        match self.rx.try_recv() {
            Ok(n) => Some(n),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Notice::Resync),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_ones_resync() {
        for n in [
            Notice::New { name: "Export: daily".into() },
            Notice::Stop { node: "host-1-ab12".into() },
            Notice::Definition { name: "Export: daily".into() },
            Notice::Credentials,
            Notice::Tasks { were: TasksWere::Created, ids: vec![7].into() },
            Notice::Tasks { were: TasksWere::Changed, ids: vec![1, 2, 2147483647].into() },
            Notice::Tasks { were: TasksWere::Deleted, ids: vec![9, 8].into() },
            Notice::Resync,
        ] {
            assert_eq!(Notice::decode(&n.encode()), n);
        }
        assert_eq!(Notice::decode("later:kind"), Notice::Resync);
        assert_eq!(Notice::decode(&format!("new:{}", "x".repeat(8001))), Notice::Resync);
        for bad in ["tasks:x:1", "tasks:c:", "tasks:c:1,,2", "tasks:u:1,a", "tasks:cu:1", "tasks:d:99999999999"] {
            assert_eq!(Notice::decode(bad), Notice::Resync, "{bad}");
        }
    }

    #[test]
    fn a_remote_feed_is_connected_only_between_connects_and_losses() {
        assert!(Feed::default().session().is_some(), "in-process: never misses");
        let feed = Feed::remote();
        assert_eq!(feed.session(), None);
        feed.connected();
        let first = feed.session().expect("connected");
        feed.connected();
        assert_eq!(feed.session(), Some(first), "connected twice is one stretch");
        feed.disconnected();
        assert_eq!(feed.session(), None);
        feed.disconnected();
        feed.connected();
        assert!(feed.session().is_some_and(|s| s != first), "a new stretch after a loss");
    }

    #[tokio::test]
    async fn a_lagging_consumer_is_told_to_resync() {
        let feed = Feed::default();
        let mut sub = feed.subscribe();
        for _ in 0..BACKLOG + 5 {
            feed.send(Notice::Credentials);
        }
        assert_eq!(sub.next().await, Some(Notice::Resync));
    }
}
