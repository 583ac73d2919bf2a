//! The runner: batchd executes the tasks it stores (docs/API.md, docs/runner.md).
//!
//! One [`Runner`] per server process (a "node"). Its loops:
//! - **claim**: takes the oldest `New` tasks this node can run, in batches (`New → Aquired →
//!   Started` in one transaction), when woken by a local create or every `poll` for other nodes'
//!   creates. An idle node claims a task in the very transaction that creates it.
//! - **finish**: run outcomes are queued and written in batches, each fenced by the run's lease token.
//! - **beat**: renews the leases of running tasks every `heartbeat` and flushes coalesced
//!   progress (at most one write per task per second), in one transaction per tick.
//! - **stop poll**: notices stop requests made on other nodes; local ones arrive in-process.
//! - **maintenance**: rescues expired leases, applies retention, creates recurring tasks.
//!
//! Every write after a claim names the lease token; the store ignores it when the token is no
//! longer the task's lease, so a paused or partitioned runner cannot overwrite a newer run.

pub mod settings;

mod builtin;
mod command;
pub use command::THP_OFF_FOR_BATCHD_ONLY;
mod exec;
mod http_runner;
mod maintenance;
pub mod node;
mod output;
mod template;
pub use template::parameter_names;
pub mod workers;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::FutureExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::store::feed::Notice;

use crate::domain::Task;
use crate::domain::definition::{Definition, RunnerSpec, results};
use crate::store::runner::{Actor, Beat, BeatOutcome, ClaimName, ClaimRequest, Finish, FinishOutcome, Lease, Progress};
use crate::store::{DefinitionRow, Store, StoreError};

use settings::{RetentionConfig, RunnerConfig};

/// The definitions this server knows, by name.
#[derive(Debug, Default)]
pub struct Definitions {
    by_name: HashMap<String, Arc<Definition>>,
    list: Vec<Arc<Definition>>,
}

impl Definitions {
    pub fn new(defs: Vec<Definition>) -> Definitions {
        let list: Vec<Arc<Definition>> = defs.into_iter().map(Arc::new).collect();
        let by_name = list.iter().map(|d| (d.name.clone(), d.clone())).collect();
        Definitions { by_name, list }
    }
    pub fn get(&self, name: &str) -> Option<&Arc<Definition>> {
        self.by_name.get(name)
    }
    pub fn all(&self) -> &[Arc<Definition>] {
        &self.list
    }
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|d| d.name.clone()).collect()
    }
    fn claim_names(&self, in_process: bool) -> Vec<ClaimName> {
        self.list
            .iter()
            .filter(|d| d.runner.in_process() == in_process)
            .map(|d| ClaimName { name: d.name.clone(), concurrency: d.concurrency, rate: d.rate })
            .collect()
    }

    /// Mirrors every definition into `batchtaskdefinition`.
    pub async fn mirror(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        for d in &self.list {
            store
                .upsert_definition(
                    &DefinitionRow {
                        name: d.name.clone(),
                        description: d.description.clone(),
                        runner: d.runner.kind().into(),
                        timeout_seconds: d.run_timeout().map_or(0, |t| t.as_secs().try_into().unwrap_or(i64::MAX)),
                        restarts: i32::try_from(d.retry.restarts).unwrap_or(i32::MAX),
                        start_interval_seconds: d
                            .start_interval
                            .map_or(0, |t| t.as_secs().max(1).try_into().unwrap_or(i64::MAX)),
                        cancellation: d.cancellation,
                        concurrency: d.concurrency.map(|c| i32::try_from(c).unwrap_or(i32::MAX)),
                    },
                    Utc::now(),
                )
                .await?;
            store.set_run_policy(&d.name, &d.run_policy()).await?;
        }
        Ok(())
    }
}

/// Why a run is being stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopCause {
    /// A stop request (`POST .../Stop`), by this associate.
    Cancelled { by: String },
    /// The definition's timeout passed.
    Timeout(Duration),
    /// The lease is gone (expired, or the task was changed by hand): stop without writing.
    LeaseLost,
    /// The server is shutting down and the grace period is over: hand the task back.
    Shutdown,
}

/// Progress of a running task, waiting to be written (coalesced).
#[derive(Debug)]
struct ProgressCell {
    pending: Progress,
    last_write: Option<Instant>,
}

/// A run in progress on this node.
struct RunningTask {
    id: i32,
    token: String,
    stop: watch::Sender<Option<StopCause>>,
    progress: Mutex<ProgressCell>,
    last_renew: Mutex<Instant>,
    /// The local slot; freed when the run's outcome is written.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl RunningTask {
    fn stop(&self, cause: StopCause) {
        self.stop.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(cause);
                true
            } else {
                false
            }
        });
    }
}

/// An external worker's lease as last written, for coalescing its heartbeats.
#[derive(Debug)]
struct ExternalLease {
    token: String,
    last_write: Instant,
    pending: Progress,
}

struct FinishJob {
    finish: Finish,
}

struct Inner {
    store: Arc<dyn Store>,
    defs: Arc<Definitions>,
    cfg: RunnerConfig,
    retention: RetentionConfig,
    node: String,
    /// Wakes the claim loop: a local create, a freed slot, a task back to New.
    wake: Notify,
    /// There may be claimable tasks (set by creates that were not claimed at once, retries,
    /// releases, rescues, and a full claim batch). A freed slot alone does not warrant a claim.
    backlog: AtomicBool,
    /// Wakes long-polling `Acquire` calls.
    wake_external: Notify,
    slots: Arc<Semaphore>,
    running: Mutex<HashMap<i32, Arc<RunningTask>>>,
    external: Mutex<HashMap<i32, ExternalLease>>,
    finisher: mpsc::UnboundedSender<FinishJob>,
    finish_rx: Mutex<Option<mpsc::UnboundedReceiver<FinishJob>>>,
    /// No more claims (shutdown).
    closing: AtomicBool,
    closed: Notify,
    in_process: Vec<ClaimName>,
    /// One client per redirect limit in use: reqwest sets the redirect policy per client.
    http: HashMap<u8, reqwest::Client>,
    started: AtomicBool,
}

/// Handle to this node's runner. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

/// A panic's message (`panic!` gives a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    output::cut(&text, PANIC_TEXT_CHARS)
}

/// The most of a panic message kept in `Result` and the log.
const PANIC_TEXT_CHARS: usize = 1024;

/// An HTTP client following at most `redirects` redirects (none: a 3xx is the answer).
fn http_client(redirects: u8, ca: Option<&settings::CaFile>) -> reqwest::Client {
    // The same roots built a client at start-up (`RunnerConfig::check_http_tls`).
    http_runner::client(redirects, ca).expect("the http runner's TLS roots were checked at start-up")
}

/// How long the finish loop waits for more outcomes when other local runs may end with the first
/// (a millisecond is the timer's grain; a finish write takes several).
const FINISH_GATHER: Duration = Duration::from_millis(1);

/// The smallest unit of progress write spacing per task.
const PROGRESS_SPACING: Duration = Duration::from_secs(1);

impl Runner {
    pub fn new(store: Arc<dyn Store>, defs: Arc<Definitions>, cfg: RunnerConfig, retention: RetentionConfig) -> Runner {
        let (finisher, finish_rx) = mpsc::unbounded_channel();
        let node = cfg.node_name();
        let in_process = defs.claim_names(true);
        let http = defs
            .all()
            .iter()
            .filter_map(|d| match &d.runner {
                RunnerSpec::Http(h) => Some(h.follow_redirects),
                _ => None,
            })
            .chain([0])
            .map(|n| (n, http_client(n, cfg.ca_file.as_ref())))
            .collect();
        Runner {
            inner: Arc::new(Inner {
                store,
                slots: Arc::new(Semaphore::new(cfg.max_running)),
                defs,
                node,
                retention,
                wake: Notify::new(),
                backlog: AtomicBool::new(true),
                wake_external: Notify::new(),
                running: Mutex::new(HashMap::new()),
                external: Mutex::new(HashMap::new()),
                finisher,
                finish_rx: Mutex::new(Some(finish_rx)),
                closing: AtomicBool::new(false),
                closed: Notify::new(),
                in_process,
                http,
                started: AtomicBool::new(false),
                cfg,
            }),
        }
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.cfg
    }
    pub fn definitions(&self) -> &Arc<Definitions> {
        &self.inner.defs
    }
    fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
    fn closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Starts the loops. Call once, from inside the runtime.
    pub async fn start(&self) {
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.inner.cfg.node.is_some() {
            // A configured name is this node's identity across restarts: whatever it still holds
            // was left by a killed predecessor and is not running any more.
            match self.store().release_node(&self.inner.node, Utc::now()).await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(node = %self.inner.node, count = ids.len(), "released leases left by a previous run");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not release leases left by a previous run"),
            }
        }
        let rx = self.inner.finish_rx.lock().expect("finish rx").take();
        if let Some(rx) = rx {
            tokio::spawn(self.clone().finish_loop(rx));
        }
        tokio::spawn(self.clone().beat_loop());
        tokio::spawn(self.clone().stop_poll_loop());
        tokio::spawn(self.clone().feed_loop());
        if self.inner.cfg.enabled && !self.inner.in_process.is_empty() {
            tokio::spawn(self.clone().claim_loop());
        }
        maintenance::spawn(self.clone());
        tracing::info!(node = %self.inner.node, enabled = self.inner.cfg.enabled, "runner started");
    }

    /// Wakes the claim loop and long-polling workers (a task became claimable).
    pub fn wake(&self) {
        self.inner.backlog.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        self.inner.wake_external.notify_waiters();
    }

    /// A claim request for this node's own runs.
    fn local_claim(&self, max: usize) -> ClaimRequest {
        ClaimRequest {
            node: self.inner.node.clone(),
            lease: self.inner.cfg.lease,
            names: self.inner.in_process.clone(),
            max,
            start: true,
            associate_id: None,
        }
    }

    /// When this node would run a new task of `name` at once: a slot for it and the claim to
    /// make in the create transaction.
    pub fn reserve_for_create(&self, name: &str) -> Option<(OwnedSemaphorePermit, ClaimRequest)> {
        let cfg = &self.inner.cfg;
        if !cfg.enabled
            || !cfg.claim_on_create
            || self.closing()
            || !self.inner.in_process.iter().any(|n| n.name == name)
        {
            return None;
        }
        let permit = self.inner.slots.clone().try_acquire_owned().ok()?;
        let mut req = self.local_claim(1);
        req.names.retain(|n| n.name == name);
        Some((permit, req))
    }

    /// Runs a task claimed (and started) for this node.
    pub fn dispatch(&self, task: Task, lease: Lease, permit: OwnedSemaphorePermit) {
        let Some(def) = self.inner.defs.get(&task.name).cloned() else {
            // Claimable names come from the definitions, so this cannot happen; hand it back.
            tracing::error!(id = task.id, name = %task.name, "claimed a task with no definition");
            self.queue_finish(Finish {
                id: task.id,
                token: lease.token,
                outcome: FinishOutcome::Release,
                result: None,
                response: None,
                progress: None,
                actor: Actor::node(&self.inner.node, "no definition on this node"),
            });
            drop(permit);
            return;
        };
        let (stop_tx, stop_rx) = watch::channel(None);
        let rt = Arc::new(RunningTask {
            id: task.id,
            token: lease.token.clone(),
            stop: stop_tx,
            progress: Mutex::new(ProgressCell { pending: Progress::default(), last_write: None }),
            last_renew: Mutex::new(Instant::now()),
            permit: Mutex::new(Some(permit)),
        });
        self.inner.running.lock().expect("running").insert(task.id, rt.clone());
        if self.closing() {
            rt.stop(StopCause::Shutdown);
        }
        tokio::spawn(self.clone().supervise(task, lease, def, rt, stop_rx));
    }

    /// Runs one task to its end and queues the outcome.
    async fn supervise(
        self,
        task: Task,
        lease: Lease,
        def: Arc<Definition>,
        rt: Arc<RunningTask>,
        stop_rx: watch::Receiver<Option<StopCause>>,
    ) {
        let timer = def.run_timeout().map(|t| {
            let rt = rt.clone();
            tokio::spawn(async move {
                tokio::time::sleep(t).await;
                rt.stop(StopCause::Timeout(t));
            })
        });
        let ctx = exec::Ctx {
            task,
            attempt: lease.attempt,
            grace: self.inner.cfg.grace,
            stop: stop_rx,
            runner: self.clone(),
            http: self.http_client(&def),
        };
        let id = ctx.task.id;
        // A panic must not leave the task Started, its lease renewed and its slot held: it ends
        // the attempt as failed, like any failure, so restarts apply and the slot is freed.
        let end = match AssertUnwindSafe(exec::run(ctx, &def)).catch_unwind().await {
            Ok(end) => end,
            Err(payload) => {
                let what = panic_text(payload.as_ref());
                tracing::error!(id, name = %def.name, panic = %what, "the run panicked; its attempt failed");
                exec::RunEnd::Completed(exec::Completed::failed(results::panicked(&what)))
            }
        };
        if let Some(t) = timer {
            t.abort();
        }
        let progress = {
            let mut cell = rt.progress.lock().expect("progress");
            std::mem::take(&mut cell.pending)
        };
        let progress = (!progress.is_empty()).then_some(progress);
        let node = self.inner.node.clone();
        let finish = |outcome, result: Option<String>, response, reason: String| Finish {
            id,
            token: lease.token.clone(),
            outcome,
            result,
            response,
            progress: progress.clone(),
            actor: Actor::node(&node, reason),
        };
        let f = match end {
            exec::RunEnd::Completed(c) => {
                let mut reason = c.result.clone();
                if let Some(detail) = &c.detail {
                    reason = format!("{reason}; {detail}");
                }
                let outcome = match c.state {
                    exec::Ended::Succeeded => FinishOutcome::Succeeded,
                    exec::Ended::SucceededManualCleanup => FinishOutcome::SucceededManualCleanup,
                    exec::Ended::Failed => FinishOutcome::Failed { retry: true },
                };
                let mut f = finish(outcome, Some(c.result), c.response, reason);
                if let Some(file) = c.file_name {
                    f.progress.get_or_insert_with(Progress::default).file_name = Some(file);
                }
                Some(f)
            }
            exec::RunEnd::Stopped(StopCause::Cancelled { by }) => {
                let text = results::cancelled(&by);
                Some(finish(FinishOutcome::Failed { retry: false }, Some(text.clone()), None, text))
            }
            exec::RunEnd::Stopped(StopCause::Timeout(d)) => {
                let text = results::timed_out(d);
                Some(finish(FinishOutcome::Failed { retry: true }, Some(text.clone()), None, text))
            }
            exec::RunEnd::Stopped(StopCause::Shutdown) => Some(finish(
                FinishOutcome::Release,
                None,
                None,
                format!("released: node {node} shut down before the run ended"),
            )),
            exec::RunEnd::Stopped(StopCause::LeaseLost) => None,
        };
        match f {
            Some(f) => self.queue_finish(f),
            None => self.forget(id, &lease.token),
        }
    }

    /// The client for a definition's runs (its redirect limit).
    fn http_client(&self, def: &Definition) -> reqwest::Client {
        let redirects = match &def.runner {
            RunnerSpec::Http(h) => h.follow_redirects,
            _ => 0,
        };
        // Every definition's limit has a client from `new`; building one is the fallback.
        self.inner
            .http
            .get(&redirects)
            .cloned()
            .unwrap_or_else(|| http_client(redirects, self.inner.cfg.ca_file.as_ref()))
    }

    fn queue_finish(&self, finish: Finish) {
        if let Err(e) = self.inner.finisher.send(FinishJob { finish }) {
            // Only when the finish loop is gone (runtime ending); the lease will expire.
            self.forget(e.0.finish.id, &e.0.finish.token);
        }
    }

    /// Drops a run from the local table and frees its slot.
    fn forget(&self, id: i32, token: &str) {
        if self.release_slot(id, token) {
            self.inner.wake.notify_one();
        }
    }

    /// [`Runner::forget`] without waking the claim loop (the caller wakes it once for a batch);
    /// true when the run was this node's.
    fn release_slot(&self, id: i32, token: &str) -> bool {
        let removed = {
            let mut running = self.inner.running.lock().expect("running");
            match running.get(&id) {
                Some(rt) if rt.token == token => running.remove(&id),
                _ => None,
            }
        };
        let Some(rt) = removed else { return false };
        rt.permit.lock().expect("permit").take();
        if self.closing() && self.inner.running.lock().expect("running").is_empty() {
            self.inner.closed.notify_waiters();
        }
        true
    }

    async fn finish_loop(self, mut rx: mpsc::UnboundedReceiver<FinishJob>) {
        const MAX: usize = 2048;
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, MAX).await > 0 {
            // Quick runs claimed together end together, but the first outcome wakes this loop
            // alone: written at once it would take a transaction of its own, and the rest would
            // wait for it. While other local runs are in flight, give them a moment to join.
            if batch.len() < MAX && self.running_count() > batch.len() {
                tokio::time::sleep(FINISH_GATHER).await;
                while batch.len() < MAX {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
            let finishes: Vec<Finish> = batch.iter().map(|j| j.finish.clone()).collect();
            let mut tries = 0;
            // While the database is only unreachable (a restart, a failover), keep trying for as
            // long as the leases could still be valid: past that the write would be fenced off.
            let keep_trying_until = Instant::now() + self.inner.cfg.lease;
            let results = loop {
                match self.store().finish_tasks(finishes.clone(), Utc::now()).await {
                    Ok(r) => break Some(r),
                    Err(e)
                        if tries < 5
                            || matches!(e, StoreError::Unavailable(_)) && Instant::now() < keep_trying_until =>
                    {
                        tries += 1;
                        tracing::warn!(error = %e, tries, "writing run outcomes failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100 * tries.min(10))).await;
                    }
                    Err(e) => {
                        // The leases will expire and the rescuer will take the tasks back.
                        tracing::error!(error = %e, count = finishes.len(), "giving up writing run outcomes");
                        break None;
                    }
                }
            };
            let mut requeued = false;
            let mut freed = false;
            for (i, job) in batch.drain(..).enumerate() {
                if let Some(crate::store::runner::FinishResult::Lost) = results.as_ref().and_then(|r| r.get(i)) {
                    tracing::info!(id = job.finish.id, "run outcome not written: the lease was lost");
                }
                if matches!(job.finish.outcome, FinishOutcome::Failed { retry: true } | FinishOutcome::Release) {
                    requeued = true;
                }
                freed |= self.release_slot(job.finish.id, &job.finish.token);
            }
            // One wake-up for the whole batch, after every slot is free: woken per slot, the claim
            // loop would claim a few tasks at a time, a transaction each.
            if requeued {
                self.wake();
            } else if freed {
                self.inner.wake.notify_one();
            }
        }
    }

    async fn claim_loop(self) {
        let batch = self.inner.cfg.claim_batch;
        let poll = self.inner.cfg.poll;
        let mut last_look = Instant::now();
        loop {
            if self.closing() {
                return;
            }
            // Look when told there may be work, and every `poll` for other nodes' creates.
            let due = self.inner.backlog.swap(false, Ordering::AcqRel) || last_look.elapsed() >= poll;
            let free = self.inner.slots.available_permits();
            if due && free == 0 {
                self.inner.backlog.store(true, Ordering::Release); // look again when a slot frees
            } else if due {
                last_look = Instant::now();
                let want = free.min(batch);
                match self.store().claim_tasks(&self.local_claim(want), Utc::now()).await {
                    Ok(claimed) => {
                        let got = claimed.len();
                        for c in claimed {
                            // The slots were free when asked; only creates take slots meanwhile,
                            // and they hold one each. Wait for one rather than overrun.
                            let permit = match self.inner.slots.clone().try_acquire_owned() {
                                Ok(p) => p,
                                Err(_) => match self.inner.slots.clone().acquire_owned().await {
                                    Ok(p) => p,
                                    Err(_) => return,
                                },
                            };
                            self.dispatch(c.task, c.lease, permit);
                        }
                        if got == want {
                            self.inner.backlog.store(true, Ordering::Release); // more may be waiting
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming tasks failed");
                        self.inner.backlog.store(true, Ordering::Release);
                    }
                }
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(poll.saturating_sub(last_look.elapsed()).max(Duration::from_millis(1))) => {}
            }
        }
    }

    /// Renews leases and flushes coalesced progress, for local runs and external workers.
    async fn beat_loop(self) {
        let tick = self.inner.cfg.heartbeat.min(PROGRESS_SPACING);
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let heartbeat = self.inner.cfg.heartbeat;
            let mut beats = Vec::new();
            let mut local = Vec::new();
            {
                let running = self.inner.running.lock().expect("running");
                for rt in running.values() {
                    let renew = rt.last_renew.lock().expect("renew").elapsed() >= heartbeat;
                    let progress = {
                        let mut cell = rt.progress.lock().expect("progress");
                        let due = cell.last_write.is_none_or(|w| now.duration_since(w) >= PROGRESS_SPACING);
                        if due && !cell.pending.is_empty() {
                            cell.last_write = Some(now);
                            Some(std::mem::take(&mut cell.pending))
                        } else {
                            None
                        }
                    };
                    if renew || progress.is_some() {
                        beats.push(Beat { id: rt.id, token: rt.token.clone(), progress, renew });
                        local.push(Some(rt.clone()));
                    }
                }
            }
            {
                let mut ext = self.inner.external.lock().expect("external");
                let lease = self.inner.cfg.lease;
                ext.retain(|_, e| now.duration_since(e.last_write) < lease);
                for (id, e) in ext.iter_mut() {
                    if !e.pending.is_empty() && now.duration_since(e.last_write) >= PROGRESS_SPACING {
                        beats.push(Beat {
                            id: *id,
                            token: e.token.clone(),
                            progress: Some(std::mem::take(&mut e.pending)),
                            renew: true,
                        });
                        e.last_write = now;
                        local.push(None);
                    }
                }
            }
            if beats.is_empty() {
                continue;
            }
            let ids: Vec<i32> = beats.iter().map(|b| b.id).collect();
            match self.store().renew_leases(beats, self.inner.cfg.lease, Utc::now()).await {
                Ok(outcomes) => {
                    for ((outcome, rt), id) in outcomes.into_iter().zip(local).zip(ids) {
                        match (outcome, rt) {
                            (BeatOutcome::Renewed { stop_requested_by, .. }, Some(rt)) => {
                                *rt.last_renew.lock().expect("renew") = now;
                                if let Some(by) = stop_requested_by {
                                    rt.stop(StopCause::Cancelled { by });
                                }
                            }
                            (BeatOutcome::Lost, Some(rt)) => {
                                tracing::warn!(id = rt.id, "lease lost; stopping the run without writing");
                                rt.stop(StopCause::LeaseLost);
                            }
                            (BeatOutcome::Lost, None) => {
                                self.inner.external.lock().expect("external").remove(&id);
                            }
                            (BeatOutcome::Renewed { .. }, None) => {}
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing leases failed"),
            }
        }
    }

    /// Stop requests made on other nodes reach this one by the change feed, and within
    /// `stop_poll` when a notice was missed.
    async fn stop_poll_loop(self) {
        loop {
            tokio::time::sleep(self.inner.cfg.stop_poll).await;
            self.deliver_stops().await;
        }
    }

    /// Reads the stops asked of this node's runs and stops them.
    async fn deliver_stops(&self) {
        if self.inner.running.lock().expect("running").is_empty() {
            return;
        }
        match self.store().pending_stops(&self.inner.node).await {
            Ok(stops) => {
                for (id, by) in stops {
                    self.notify_stop(id, &by);
                }
            }
            Err(e) => tracing::warn!(error = %e, "polling stop requests failed"),
        }
    }

    /// Acts on the change feed at once: new work wakes the claim loop and waiting workers, a stop
    /// asked of this node's run reaches it. Every loop still polls, for what the feed misses.
    async fn feed_loop(self) {
        let mut feed = self.store().feed().subscribe();
        while let Some(notice) = feed.next().await {
            if self.closing() {
                return;
            }
            match notice {
                // A resumed definition's waiting tasks are claimable again.
                Notice::New { .. } | Notice::Definition { .. } => self.wake(),
                Notice::Stop { node } if node == self.inner.node => self.deliver_stops().await,
                Notice::Stop { .. } | Notice::Credentials | Notice::Tasks { .. } => {}
                Notice::Resync => {
                    self.wake();
                    self.deliver_stops().await;
                }
            }
        }
    }

    /// A stop was requested for task `id`: stop its run if this node has it.
    pub fn notify_stop(&self, id: i32, by: &str) {
        let rt = self.inner.running.lock().expect("running").get(&id).cloned();
        if let Some(rt) = rt {
            rt.stop(StopCause::Cancelled { by: by.to_owned() });
        }
    }

    /// Task `id` was moved out of `Aquired`/`Started` by hand: its lease is gone.
    pub fn lease_revoked(&self, id: i32) {
        let rt = self.inner.running.lock().expect("running").get(&id).cloned();
        if let Some(rt) = rt {
            rt.stop(StopCause::LeaseLost);
        }
        self.inner.external.lock().expect("external").remove(&id);
    }

    /// Records progress of a local run; written by the beat loop.
    fn report_progress(&self, id: i32, p: Progress) {
        let rt = self.inner.running.lock().expect("running").get(&id).cloned();
        if let Some(rt) = rt {
            rt.progress.lock().expect("progress").pending.merge(p);
        }
    }

    /// Number of runs in progress on this node.
    pub fn running_count(&self) -> usize {
        self.inner.running.lock().expect("running").len()
    }

    /// SIGTERM: stop claiming, give running tasks the grace period, then hand their leases back.
    pub async fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        self.inner.wake_external.notify_waiters();
        let grace = self.inner.cfg.grace;
        let count = self.running_count();
        if count > 0 {
            tracing::info!(count, grace = ?grace, "waiting for running tasks before shutting down");
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let waiter = self.inner.closed.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable();
            if self.running_count() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                break;
            }
        }
        let left: Vec<Arc<RunningTask>> = self.inner.running.lock().expect("running").values().cloned().collect();
        if !left.is_empty() {
            tracing::info!(count = left.len(), "grace period over: stopping runs and releasing their leases");
            for rt in &left {
                rt.stop(StopCause::Shutdown);
            }
            // Processes get SIGKILL at once now; wait for the releases to be written.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let waiter = self.inner.closed.notified();
                tokio::pin!(waiter);
                waiter.as_mut().enable();
                if self.running_count() == 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                    tracing::warn!(count = self.running_count(), "some runs did not end; their leases will expire");
                    break;
                }
            }
        }
    }
}
