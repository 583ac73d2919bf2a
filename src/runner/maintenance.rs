//! Background upkeep every node does: rescue of expired leases, retention (also of old node
//! rows), recurring tasks.
//! Each is safe to run on several nodes at once: the store decides in one transaction.

use std::time::Duration;

use chrono::Utc;

use crate::domain::run::{CatchUp, Schedule};
use crate::domain::{BatchTaskState, NewTask};
use crate::store::runner::ScheduleTick;

use super::Runner;

pub fn spawn(runner: Runner) {
    tokio::spawn(rescue_loop(runner.clone()));
    tokio::spawn(retention_loop(runner.clone()));
    for def in runner.definitions().all() {
        if let Some(schedule) = def.schedule() {
            tokio::spawn(schedule_loop(runner.clone(), def.name.clone(), schedule, def.catch_up));
        }
    }
}

/// Expired leases are found within one heartbeat of expiring, so a dead node's tasks are back
/// within lease + heartbeat (under the 2 × lease the contract allows).
async fn rescue_loop(runner: Runner) {
    let cfg = runner.config().clone();
    let every = cfg.heartbeat;
    // A holder that saw the stop ends the run within the grace period; allow it a heartbeat and
    // a stop poll on top before failing the task for it.
    let stop_grace = cfg.grace + cfg.heartbeat + cfg.stop_poll;
    loop {
        tokio::time::sleep(every).await;
        loop {
            match runner.store().rescue_expired(runner.node(), Utc::now(), 500, stop_grace).await {
                Ok(rescued) => {
                    for r in &rescued {
                        tracing::info!(id = r.id, to = r.to.name(), "rescued a task whose lease expired");
                    }
                    if rescued.iter().any(|r| r.to == BatchTaskState::New) {
                        runner.wake();
                    }
                    if rescued.len() < 500 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rescuing expired leases failed");
                    break;
                }
            }
        }
    }
}

async fn retention_loop(runner: Runner) {
    let cfg = runner.inner.retention.clone();
    let rules = [
        (BatchTaskState::Succeeded, cfg.succeeded),
        (BatchTaskState::SucceededManualCleanup, cfg.succeeded_manual_cleanup),
        (BatchTaskState::Failed, cfg.failed),
    ];
    let longest = rules.iter().filter_map(|(_, age)| *age).max();
    loop {
        tokio::time::sleep(cfg.interval).await;
        let mut removed = 0usize;
        for (state, age) in rules {
            let Some(age) = age else { continue };
            let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
            loop {
                match runner.store().purge_finished(state, before, cfg.batch).await {
                    Ok(n) => {
                        removed += n;
                        if n < cfg.batch {
                            break;
                        }
                        // Small batches with a pause between: other writes get in.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed");
                        break;
                    }
                }
            }
        }
        if let Some(age) = longest {
            let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
            if let Err(e) = runner.store().purge_deleted_events(before, cfg.batch).await {
                tracing::warn!(error = %e, "removing old event logs failed");
            }
        }
        // Rows of nodes long gone (every restart under a generated name leaves one).
        if let Err(e) = runner.store().purge_nodes(crate::domain::node::kept_since(Utc::now()), cfg.batch).await {
            tracing::warn!(error = %e, "removing old node rows failed");
        }
        // Idempotency keys past their window answer nothing any more.
        let expired = crate::domain::idempotency::expired_before(Utc::now());
        if let Err(e) = runner.store().purge_idempotency_keys(expired, cfg.batch).await {
            tracing::warn!(error = %e, "removing expired idempotency keys failed");
        }
        if removed > 0 {
            tracing::info!(removed, "retention removed finished tasks");
        }
    }
}

async fn schedule_loop(runner: Runner, name: String, schedule: Schedule, catch_up: CatchUp) {
    let description = match &schedule {
        Schedule::Every(interval) => {
            format!("scheduled every {}", crate::domain::definition::format_duration(*interval))
        }
        Schedule::Cron(c) => format!("scheduled: {}", c.describe()),
    };
    let tick = ScheduleTick { name: name.clone(), schedule, skip_if_active: true, catch_up };
    loop {
        let def = runner.definitions().get(&name).cloned();
        let parameters = def.as_ref().and_then(|d| d.parameters.clone());
        let new = NewTask {
            name: name.clone(),
            associate_id: 0,
            is_system: true,
            description: Some(description.clone()),
            unique_key: def.as_ref().and_then(|d| d.unique_key(parameters.as_ref())),
            parameters,
            cancellation: runner.definitions().get(&name).map(|d| d.cancellation).unwrap_or_default(),
            priority: runner.definitions().get(&name).map_or(0, |d| d.priority),
            ..NewTask::default()
        };
        let wait = match runner.store().schedule_tick(&tick, Utc::now(), new).await {
            Ok((created, next)) => {
                if let Some(t) = created {
                    tracing::info!(id = t.id, name = %name, "created a scheduled task");
                    runner.wake();
                }
                (next - Utc::now()).to_std().unwrap_or(Duration::ZERO)
            }
            Err(e) => {
                tracing::warn!(error = %e, name = %name, "scheduling failed");
                runner.config().poll
            }
        };
        // A little jitter keeps nodes from all asking at the same instant; the store decides.
        let jitter = Duration::from_millis(rand::random::<u64>() % 50);
        tokio::time::sleep(wait.max(Duration::from_millis(10)) + jitter).await;
    }
}
