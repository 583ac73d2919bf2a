//! External workers over the API: acquire (with long-polling), heartbeat (progress, lease
//! renewal, stop requests) and finish, all fenced by the lease token. Only `worker` and `admin`
//! associates may call these.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::rights::Reason;
use crate::domain::{BatchTaskState, Caller, DomainError, Role};
use crate::store::StoreError;
use crate::store::runner::{
    Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Claimed, Finish, FinishOutcome, FinishResult, Progress,
};

use super::{ExternalLease, PROGRESS_SPACING, Runner};

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatAnswer {
    pub expires: DateTime<Utc>,
    pub state: BatchTaskState,
    pub stop_requested_by: Option<String>,
}

/// What a worker says when it finishes (PUT with `X-Lease-Token`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerFinish {
    pub state: BatchTaskState,
    pub result: Option<String>,
    pub response: Option<String>,
    pub progress: Option<Progress>,
}

fn require_worker(caller: &Caller) -> Result<(), StoreError> {
    match caller.role {
        Role::Worker | Role::Admin => Ok(()),
        Role::User => Err(DomainError::Forbidden { reason: Reason::OnlyWorkersMayRunTasks }.into()),
    }
}

fn stale(id: i32) -> StoreError {
    DomainError::LeaseStale { id: id.into() }.into()
}

impl Runner {
    /// Claims the oldest `New` task of one of `names` for an external worker, waiting up to
    /// `wait` for one to appear.
    pub async fn acquire(
        &self,
        caller: &Caller,
        names: &[String],
        wait: Duration,
    ) -> Result<Option<Claimed>, StoreError> {
        require_worker(caller)?;
        let mut claim_names = Vec::new();
        for n in names {
            match self.inner.defs.get(n) {
                Some(d) if d.runner.in_process() => {
                    return Err(DomainError::NotExternal { name: n.clone() }.into());
                }
                Some(d) => claim_names.push(ClaimName { name: n.clone(), concurrency: d.concurrency, rate: d.rate }),
                // A name with no definition waits for an external worker (docs/API.md).
                None => claim_names.push(ClaimName { name: n.clone(), concurrency: None, rate: None }),
            }
        }
        claim_names.dedup();
        let req = ClaimRequest {
            node: self.inner.node.clone(),
            lease: self.inner.cfg.lease,
            names: claim_names,
            max: 1,
            start: false,
            associate_id: Some(caller.associate_id),
        };
        let deadline = tokio::time::Instant::now() + wait.min(self.inner.cfg.max_acquire_wait);
        loop {
            // Listen before looking, so a create between the two is not missed.
            let woken = self.inner.wake_external.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let mut claimed = self.store().claim_tasks(&req, Utc::now()).await?;
            if let Some(c) = claimed.pop() {
                self.inner.external.lock().expect("external").insert(
                    c.task.id,
                    ExternalLease {
                        token: c.lease.token.clone(),
                        last_write: Instant::now(),
                        pending: Progress::default(),
                    },
                );
                return Ok(Some(c));
            }
            if self.closing() || tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            // Tasks created on other nodes are seen by polling.
            let poll = tokio::time::Instant::now() + self.inner.cfg.poll.min(Duration::from_millis(500));
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(poll.min(deadline)) => {}
            }
        }
    }

    /// Renews the lease and records progress. Heartbeats closer than a second apart are
    /// answered without a write; their progress is written by the next flush.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        id: i32,
        token: &str,
        progress: Option<Progress>,
    ) -> Result<HeartbeatAnswer, StoreError> {
        require_worker(caller)?;
        let info = self.store().lease_info(id).await?.ok_or(StoreError::NotFound)?;
        let live = info.state.is_active()
            && info.token.as_deref() == Some(token)
            && info.expires.is_some_and(|e| e >= Utc::now());
        if !live {
            self.inner.external.lock().expect("external").remove(&id);
            return Err(stale(id));
        }
        if info.state == BatchTaskState::Started {
            let mut ext = self.inner.external.lock().expect("external");
            if let Some(e) = ext.get_mut(&id).filter(|e| e.token == token && e.last_write.elapsed() < PROGRESS_SPACING)
            {
                if let Some(p) = progress {
                    e.pending.merge(p);
                }
                return Ok(HeartbeatAnswer {
                    expires: info.expires.unwrap_or_else(Utc::now),
                    state: info.state,
                    stop_requested_by: info.stop_requested_by,
                });
            }
        }
        let pending = self
            .inner
            .external
            .lock()
            .expect("external")
            .get_mut(&id)
            .filter(|e| e.token == token)
            .map(|e| std::mem::take(&mut e.pending));
        let mut progress_all = pending.unwrap_or_default();
        if let Some(p) = progress {
            progress_all.merge(p);
        }
        let progress = (!progress_all.is_empty()).then_some(progress_all);
        let now = Utc::now();
        if info.state == BatchTaskState::Aquired {
            // The first heartbeat says the work has begun.
            let start = Finish {
                id,
                token: token.to_owned(),
                outcome: FinishOutcome::Start,
                result: None,
                response: None,
                progress: progress.clone(),
                actor: Actor {
                    associate_id: Some(caller.associate_id),
                    node: Some(self.inner.node.clone()),
                    reason: Some(format!("started by worker {}", caller.name)),
                },
            };
            let r = self.store().finish_tasks(vec![start], now).await?;
            if !matches!(r.first(), Some(FinishResult::Done(_))) {
                return Err(stale(id));
            }
        }
        let beat = Beat { id, token: token.to_owned(), progress, renew: true };
        let outcome = self.store().renew_leases(vec![beat], self.inner.cfg.lease, now).await?;
        match outcome.into_iter().next() {
            Some(BeatOutcome::Renewed { expires, state, stop_requested_by }) => {
                self.inner.external.lock().expect("external").insert(
                    id,
                    ExternalLease { token: token.to_owned(), last_write: Instant::now(), pending: Progress::default() },
                );
                Ok(HeartbeatAnswer { expires, state, stop_requested_by })
            }
            _ => {
                self.inner.external.lock().expect("external").remove(&id);
                Err(stale(id))
            }
        }
    }

    /// Ends (or starts, or hands back) a run under a lease.
    pub async fn finish_external(
        &self,
        caller: &Caller,
        id: i32,
        token: &str,
        finish: WorkerFinish,
    ) -> Result<crate::domain::Task, StoreError> {
        require_worker(caller)?;
        let outcome = match finish.state {
            BatchTaskState::Succeeded => FinishOutcome::Succeeded,
            BatchTaskState::SucceededManualCleanup => FinishOutcome::SucceededManualCleanup,
            BatchTaskState::Failed => FinishOutcome::Failed { retry: true },
            BatchTaskState::New => FinishOutcome::Release,
            BatchTaskState::Started => FinishOutcome::Start,
            other => return Err(DomainError::StateNotAllowed { state: other }.into()),
        };
        let pending =
            self.inner.external.lock().expect("external").remove(&id).filter(|e| e.token == token).map(|e| e.pending);
        let mut progress = pending.unwrap_or_default();
        if let Some(p) = finish.progress {
            progress.merge(p);
        }
        let reason = match &outcome {
            FinishOutcome::Release => format!("released by worker {}", caller.name),
            FinishOutcome::Start => format!("started by worker {}", caller.name),
            _ => match &finish.result {
                Some(r) => format!("{} by worker {}: {}", finish.state.name(), caller.name, r),
                None => format!("{} by worker {}", finish.state.name(), caller.name),
            },
        };
        let f = Finish {
            id,
            token: token.to_owned(),
            outcome: outcome.clone(),
            result: finish.result,
            response: finish.response,
            progress: (!progress.is_empty()).then_some(progress),
            actor: Actor {
                associate_id: Some(caller.associate_id),
                node: Some(self.inner.node.clone()),
                reason: Some(reason),
            },
        };
        let r = self.store().finish_tasks(vec![f], Utc::now()).await?;
        match r.into_iter().next() {
            Some(FinishResult::Done(state)) => {
                let task = self.store().get_task(id).await?.ok_or(StoreError::NotFound)?;
                if state == BatchTaskState::New {
                    self.wake();
                }
                if outcome == FinishOutcome::Start {
                    self.inner.external.lock().expect("external").insert(
                        id,
                        ExternalLease {
                            token: token.to_owned(),
                            last_write: Instant::now(),
                            pending: Progress::default(),
                        },
                    );
                }
                Ok(task)
            }
            _ => Err(stale(id)),
        }
    }
}
