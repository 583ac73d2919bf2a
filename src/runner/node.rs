//! This node's row in `node`: written when the server starts serving, refreshed every heartbeat
//! (one upsert), and marked stopped after a graceful shutdown. A killed node just stops being
//! seen; `crate::domain::node` says when that makes it dead.

use chrono::Utc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::domain::node::NodeRow;

use super::Runner;

/// Keeps the row fresh until [`NodeKeeper::stop`].
pub struct NodeKeeper {
    runner: Runner,
    card: NodeRow,
    stop: oneshot::Sender<()>,
    refresher: JoinHandle<()>,
}

/// The row as of now: what changes between refreshes is the time and the running count.
fn current(runner: &Runner, card: &NodeRow) -> NodeRow {
    NodeRow {
        last_seen: Utc::now(),
        running: i64::try_from(runner.running_count()).unwrap_or(i64::MAX),
        ..card.clone()
    }
}

async fn write(runner: &Runner, row: &NodeRow) {
    if let Err(e) = runner.store().upsert_node(row).await {
        // The next heartbeat tries again; meanwhile other nodes may see this one as late.
        tracing::warn!(error = %e, node = %row.name, "refreshing this node's row failed");
    }
}

impl NodeKeeper {
    /// Writes the row at once (so the node is listed as soon as it serves), then every heartbeat.
    /// `address` is the address the server listens on.
    pub async fn start(runner: &Runner, address: String) -> NodeKeeper {
        let now = Utc::now();
        let cfg = runner.config();
        let card = NodeRow {
            name: runner.node().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            address,
            started: now,
            last_seen: now,
            running: 0,
            runner_enabled: cfg.enabled,
            lease: cfg.lease,
            stopped: None,
        };
        write(runner, &card).await;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let refresher = {
            let (runner, card) = (runner.clone(), card.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(runner.config().heartbeat);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await; // the first tick is immediate: written above
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = &mut stopped => return,
                    }
                    // Not raced against the stop: a refresh landing after the stopped row would
                    // make a stopped node look alive for a lease.
                    write(&runner, &current(&runner, &card)).await;
                }
            })
        };
        NodeKeeper { runner: runner.clone(), card, stop, refresher }
    }

    /// After a graceful shutdown: the row says the node stopped, so it is listed dead at once.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.refresher.await;
        let mut row = current(&self.runner, &self.card);
        row.stopped = Some(row.last_seen);
        write(&self.runner, &row).await;
        tracing::info!(node = %row.name, "marked this node stopped");
    }
}
