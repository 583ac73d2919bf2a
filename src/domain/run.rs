//! The rules of a run's life: who may claim, start, renew, finish, stop, rescue and release a
//! task, what each does to the row, and which events it logs.
//!
//! Every rule is a pure function of the row as loaded (inside the store's transaction), the
//! definition's policy, `now` and, where a backoff is drawn, a jitter value in `[0, 1)`. It answers
//! what the caller is told and, when something is to be written, a [`Change`]: the whole row to
//! store and the events to log with it. The stores only select, lock, load and write
//! (`src/store/sqlite/runner.rs`, `src/store/postgres/runner.rs`), so both engines cannot drift.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::definition::{RetryPolicy, format_duration, results};
use super::task::limits;
use super::{BatchTaskState, CancellationBehaviour, Task};

/// A task row with its runner columns, as a store loads it. Times are instants; each store
/// converts them at its edge, as it does for the task's own columns.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub task: Task,
    pub lease_token: Option<String>,
    pub lease_expires: Option<DateTime<Utc>>,
    pub lease_node: Option<String>,
    /// Runs since the task was last made `New` by hand (1 = first run); a released run is not
    /// counted. A program reads it as `BATCHD_ATTEMPT`.
    pub attempts: i32,
    /// Of those runs, how many failed on their own (an exit code, an error status, a timeout):
    /// what the definition's `restarts` are counted against.
    pub failures: i32,
    /// Crashes in a row: runs whose lease ran out with no outcome (their node died or froze).
    /// Back to 0 when a run ends on its own; the definition's `rescues` bounds it.
    pub rescues: i32,
    /// Not claimable before this (a retry's backoff).
    pub run_after: Option<DateTime<Utc>>,
    pub stop_requested: Option<DateTime<Utc>>,
    pub stop_requested_by: Option<String>,
}

impl RunRow {
    /// The token is this task's live lease.
    pub fn holds(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.task.state.is_active() && self.lease_token.as_deref() == Some(token) && self.lease_live(now)
    }

    fn lease_live(&self, now: DateTime<Utc>) -> bool {
        self.lease_token.is_some() && self.lease_expires.is_some_and(|e| e >= now)
    }

    /// Ends the lease and any stop request with it.
    pub(crate) fn clear_lease(&mut self) {
        self.lease_token = None;
        self.lease_expires = None;
        self.lease_node = None;
        self.stop_requested = None;
        self.stop_requested_by = None;
    }
}

/// Who made a change, for the event log. API writes name the associate, runner writes the node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actor {
    pub associate_id: Option<i32>,
    pub node: Option<String>,
    pub reason: Option<String>,
}

impl Actor {
    pub fn associate(id: i32, reason: impl Into<String>) -> Actor {
        Actor { associate_id: Some(id), node: None, reason: Some(reason.into()) }
    }
    pub fn node(node: &str, reason: impl Into<String>) -> Actor {
        Actor { associate_id: None, node: Some(node.to_owned()), reason: Some(reason.into()) }
    }
    fn because(&self, reason: String) -> Actor {
        Actor { reason: Some(reason), ..self.clone() }
    }
    /// The actor's own reason, or `default`.
    fn reason_or(&self, default: &str) -> String {
        self.reason.clone().unwrap_or_else(|| default.to_owned())
    }
}

/// One entry for the event log, written in the same transaction as the change it records.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub task_id: i32,
    pub at: DateTime<Utc>,
    /// `None`: the task was created.
    pub from: Option<BatchTaskState>,
    /// `None`: the task was deleted.
    pub to: Option<BatchTaskState>,
    pub associate_id: Option<i32>,
    pub node: Option<String>,
    pub reason: Option<String>,
}

/// Longest reason kept in the event log, in characters.
pub const REASON_MAX: usize = 4096;

impl RunEvent {
    /// The event of a move of `task`, or none: `IsInternalTask` tasks keep no log.
    pub fn of(
        task: &Task,
        at: DateTime<Utc>,
        from: Option<BatchTaskState>,
        to: Option<BatchTaskState>,
        actor: &Actor,
    ) -> Option<RunEvent> {
        (!task.is_internal).then(|| RunEvent {
            task_id: task.id,
            at,
            from,
            to,
            associate_id: actor.associate_id,
            node: actor.node.as_deref().map(|n| stored_text(n, limits::NAME)),
            reason: actor.reason.as_deref().map(|r| stored_text(r, REASON_MAX)),
        })
    }
}

/// Writes one log line per event, once the store has committed them; both drivers call it.
/// The reason is already bounded by [`REASON_MAX`]; parameters are never part of an event.
pub fn log_events<'a>(events: impl IntoIterator<Item = &'a RunEvent>) {
    for e in events {
        tracing::info!(
            target: "batchd::task",
            id = e.task_id,
            node = e.node.as_deref(),
            from = e.from.map(BatchTaskState::name),
            to = e.to.map(BatchTaskState::name),
            reason = e.reason.as_deref(),
            "task state change"
        );
    }
}

/// True when [`log_events`] writes anything, so drivers keep events for it only then.
pub fn logging_events() -> bool {
    tracing::enabled!(target: "batchd::task", tracing::Level::INFO)
}

/// Text as both stores keep it: at most `max` characters, and U+0000 (which PostgreSQL text
/// cannot hold, and a program's output may contain) replaced by U+FFFD.
pub fn stored_text(s: &str, max: usize) -> String {
    let cut = match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    };
    if cut.contains('\0') { cut.replace('\0', "\u{FFFD}") } else { cut.to_owned() }
}

fn stored_long(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|t| stored_text(t, limits::LONG_TEXT))
}

/// What a rule decided for one row: the row to write and the events to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The whole row as it is to be stored; `task.version` and `task.updated` included.
    pub row: RunRow,
    pub events: Vec<RunEvent>,
}

/// Builds a [`Change`] as a rule goes: events in order, and the version moved once when a
/// client can see the change.
struct Draft {
    row: RunRow,
    now: DateTime<Utc>,
    events: Vec<RunEvent>,
}

impl Draft {
    fn new(row: RunRow, now: DateTime<Utc>) -> Draft {
        Draft { row, now, events: Vec::new() }
    }
    fn log(&mut self, from: BatchTaskState, to: BatchTaskState, actor: &Actor) {
        self.events.extend(RunEvent::of(&self.row.task, self.now, Some(from), Some(to), actor));
    }
    /// A change a client can see: the version (ETag) and `updated` move.
    fn visible(mut self) -> Change {
        self.row.task.version += 1;
        self.row.task.updated = self.now;
        Change { row: self.row, events: self.events }
    }
    /// Bookkeeping only (a lease renewal, a stop request): the ETag stays.
    fn unseen(self) -> Change {
        Change { row: self.row, events: self.events }
    }
    /// `Aquired → Started`: one more start, when, and fresh progress.
    fn start(&mut self, actor: &Actor) {
        let from = self.row.task.state;
        self.row.task.begin_run(self.now);
        self.log(from, BatchTaskState::Started, actor);
    }
}

/// A definition's rules for its runs, as the store keeps them beside the definition row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPolicy {
    pub retry: RetryPolicy,
    /// After this many crashes in a row the task ends `Failed` instead of running again, so a
    /// task that kills its node cannot take down node after node. At least 1.
    pub rescues: u32,
}

/// Crashes in a row that end a task, unless its definition says otherwise.
pub const DEFAULT_RESCUES: u32 = 3;
/// The most a definition may set: a task crashing its node more often than this is not worth
/// running again.
pub const MAX_RESCUES: u32 = 100;

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy { retry: RetryPolicy::default(), rescues: DEFAULT_RESCUES }
    }
}

impl RunPolicy {
    /// A task with no definition row (its definition was removed): no restarts.
    pub fn undefined() -> RunPolicy {
        RunPolicy { retry: RetryPolicy { restarts: 0, ..RetryPolicy::default() }, ..RunPolicy::default() }
    }

    /// The policy of `task`'s definition among those a store loaded for a batch.
    pub fn of(policies: &HashMap<String, RunPolicy>, task: &Task) -> RunPolicy {
        policies.get(&task.name).copied().unwrap_or_else(RunPolicy::undefined)
    }
}

// ---------------------------------------------------------------------------------------------
// Claims

/// What a claim takes and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimRequest {
    pub node: String,
    pub lease: Duration,
    /// Names that may be claimed, each with its definition's concurrency limit.
    pub names: Vec<ClaimName>,
    pub max: usize,
    /// Move on to `Started` in the same transaction (the server's own runner starts at once;
    /// external workers start with their first heartbeat).
    pub start: bool,
    /// The associate claiming (external workers), for the events.
    pub associate_id: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimName {
    pub name: String,
    /// At most this many tasks of the name `Aquired` or `Started` at once, across all nodes.
    pub concurrency: Option<u32>,
    /// At most this many claims of the name per period, across all nodes.
    pub rate: Option<Rate>,
}

/// What a claim must record for the rate limits: each rate-limited name it claimed tasks of, with
/// its rate and how many it claimed. Names without a rate, or with no task claimed, need nothing.
pub fn starts_to_record<'a>(claimed: &[Claimed], names: &'a [ClaimName]) -> Vec<(&'a str, Rate, usize)> {
    names
        .iter()
        .filter_map(|name| {
            let rate = name.rate?;
            let n = claimed.iter().filter(|c| c.task.name == name.name).count();
            (n > 0).then_some((name.name.as_str(), rate, n))
        })
        .collect()
}

/// A definition's rate limit: at most `count` claims (starts) in any window of `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

/// The most starts a rate may allow per period (the stores keep one row per start in the window).
pub const RATE_MAX_COUNT: u32 = 10_000;
/// The shortest and longest period of a rate.
pub const RATE_MIN_PERIOD: Duration = Duration::from_secs(1);
pub const RATE_MAX_PERIOD: Duration = Duration::from_secs(86_400);

impl Rate {
    /// `COUNT/PERIOD`, as `100/1m` or `5/10s`; the period is a duration (`1h`, `30s`, ...).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, period) = text.split_once('/').ok_or_else(|| "give COUNT/PERIOD, as \"100/1m\"".to_owned())?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|c| (1..=RATE_MAX_COUNT).contains(c))
            .ok_or_else(|| format!("the count must be a whole number from 1 to {RATE_MAX_COUNT}"))?;
        let period = super::duration::parse_duration(period).map_err(|e| format!("the period: {e}"))?;
        if !(RATE_MIN_PERIOD..=RATE_MAX_PERIOD).contains(&period) {
            return Err("the period must be from 1s to 1d".into());
        }
        Ok(Rate { count, period })
    }

    /// Where the window ending at `now` starts: starts after it count.
    pub fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::from_std(self.period).unwrap_or(chrono::Duration::days(1))
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.count, super::duration::format_duration(self.period))
    }
}

impl ClaimName {
    /// How many more may be claimed now (`usize::MAX` when unlimited): `active` of the name are
    /// `Aquired` or `Started`, and `started` were claimed in the rate's window ending now (read
    /// only when the name has a rate).
    pub fn claim_room(&self, active: i64, started: i64) -> usize {
        let rate_room = match self.rate {
            None => usize::MAX,
            Some(r) => usize::try_from(i64::from(r.count) - started).unwrap_or(0),
        };
        self.room(active).min(rate_room)
    }

    /// How many more may be claimed with `active` of the name `Aquired` or `Started` now
    /// (`usize::MAX` when unlimited).
    pub fn room(&self, active: i64) -> usize {
        match self.concurrency {
            None => usize::MAX,
            Some(limit) => usize::try_from(i64::from(limit) - active).unwrap_or(0),
        }
    }
}

/// The names of a claim that may be taken now: a paused definition's tasks stay `New` until it
/// is resumed, on every node (the stores read `paused` inside the claim's transaction).
pub fn unpaused<'a>(names: &'a [ClaimName], paused: &[String]) -> Vec<&'a ClaimName> {
    names.iter().filter(|n| !paused.contains(&n.name)).collect()
}

/// A lease as granted to its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub token: String,
    pub expires: DateTime<Utc>,
    pub node: String,
    /// Run number since the task was last New by a user's hand (1 = first run).
    pub attempt: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub task: Task,
    pub lease: Lease,
}

/// When a lease granted or renewed at `now` runs out.
pub fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(365 * 100))
}

/// `New → Aquired` (and `→ Started` when the claim starts) under the lease `token`. None when
/// the row is not claimable: not `New`, or waiting out a retry's backoff. A batch may share one
/// token: a later claim of any of its tasks gets a new one, so fencing per lease still holds.
pub fn claim(row: RunRow, req: &ClaimRequest, token: &str, now: DateTime<Utc>) -> Option<(Claimed, Change)> {
    if row.task.state != BatchTaskState::New || row.run_after.is_some_and(|r| r > now) {
        return None;
    }
    let mut d = Draft::new(row, now);
    let r = &mut d.row;
    r.lease_token = Some(token.to_owned());
    r.lease_expires = Some(lease_until(now, req.lease));
    r.lease_node = Some(req.node.clone());
    r.attempts += 1;
    r.run_after = None;
    r.stop_requested = None;
    r.stop_requested_by = None;
    r.task.state = BatchTaskState::Aquired;
    let actor = Actor { associate_id: req.associate_id, node: Some(req.node.clone()), reason: None };
    let claimed = actor.because(format!("claimed, attempt {}", d.row.attempts));
    d.log(BatchTaskState::New, BatchTaskState::Aquired, &claimed);
    if req.start {
        d.start(&actor.because("started".into()));
    }
    let change = d.visible();
    let lease = Lease {
        token: token.to_owned(),
        expires: change.row.lease_expires.unwrap_or(now),
        node: req.node.clone(),
        attempt: change.row.attempts,
    };
    Some((Claimed { task: change.row.task.clone(), lease }, change))
}

// ---------------------------------------------------------------------------------------------
// Heartbeats

/// Progress as reported by a run. `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub percent: Option<i16>,
    pub description: Option<String>,
    pub file_name: Option<String>,
}

impl Progress {
    pub fn is_empty(&self) -> bool {
        self.percent.is_none() && self.description.is_none() && self.file_name.is_none()
    }
    /// Later values win.
    pub fn merge(&mut self, later: Progress) {
        if later.percent.is_some() {
            self.percent = later.percent;
        }
        if later.description.is_some() {
            self.description = later.description;
        }
        if later.file_name.is_some() {
            self.file_name = later.file_name;
        }
    }
    /// Writes the reported values into the task: percent clamped to 0–100, texts bounded.
    fn apply(&self, task: &mut Task) {
        if let Some(pc) = self.percent {
            task.progress_percent = pc.clamp(0, 100);
        }
        if let Some(d) = &self.description {
            task.progress_description = Some(stored_text(d, limits::PROGRESS_DESCRIPTION));
        }
        if let Some(f) = &self.file_name {
            task.file_name = Some(stored_text(f, limits::FILE_NAME));
        }
    }
}

/// A lease renewal, optionally carrying progress, fenced by the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    pub id: i32,
    pub token: String,
    pub progress: Option<Progress>,
    /// Renew the lease (progress alone may be flushed without renewing).
    pub renew: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BeatOutcome {
    Renewed {
        expires: DateTime<Utc>,
        state: BatchTaskState,
        /// Who asked the run to stop, if anyone did.
        stop_requested_by: Option<String>,
    },
    /// The token is not (or no longer) the task's lease: the holder must stop without writing.
    Lost,
}

/// Renews the lease and writes the progress, if the token holds the live lease. Progress is
/// visible (the ETag moves); a bare renewal is not.
pub fn renew(row: RunRow, beat: &Beat, lease: Duration, now: DateTime<Utc>) -> (BeatOutcome, Option<Change>) {
    if row.task.id != beat.id || !row.holds(&beat.token, now) {
        return (BeatOutcome::Lost, None);
    }
    let mut d = Draft::new(row, now);
    if beat.renew {
        d.row.lease_expires = Some(lease_until(now, lease));
    }
    let progress = beat.progress.as_ref().filter(|p| !p.is_empty());
    if let Some(p) = progress {
        p.apply(&mut d.row.task);
    }
    let answer = BeatOutcome::Renewed {
        expires: d.row.lease_expires.unwrap_or(now),
        state: d.row.task.state,
        stop_requested_by: d.row.stop_requested_by.clone(),
    };
    let change = match (progress.is_some(), beat.renew) {
        (true, _) => Some(d.visible()),
        (false, true) => Some(d.unseen()),
        (false, false) => None,
    };
    (answer, change)
}

// ---------------------------------------------------------------------------------------------
// Finishes

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishOutcome {
    Succeeded,
    SucceededManualCleanup,
    /// `retry`: counts as a failed attempt, run again if the definition's restarts allow.
    Failed {
        retry: bool,
    },
    /// Hand the task back untouched (shutdown): `New` again, the attempt not counted.
    Release,
    /// Aquired → Started (an external worker saying it began).
    Start,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub id: i32,
    pub token: String,
    pub outcome: FinishOutcome,
    pub result: Option<String>,
    pub response: Option<String>,
    pub progress: Option<Progress>,
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FinishResult {
    /// Written; the task is now in this state (read the task for the rest).
    Done(BatchTaskState),
    /// Stale token or expired lease: nothing was written.
    Lost,
}

/// A finish batch's answers once its `changes` are final: a store turns a run made `New` whose
/// failed dependency blocks it into a failure (`dependency::fail_rerun`), and the answer says
/// the state written. Only `Done(New)` answers can differ; the lookup is built only for them.
pub fn answer_as_written(answers: &mut [FinishResult], finishes: &[Finish], changes: &[Change]) {
    let mut written: Option<HashMap<i32, BatchTaskState>> = None;
    for (answer, f) in answers.iter_mut().zip(finishes) {
        if *answer == FinishResult::Done(BatchTaskState::New) {
            let written =
                written.get_or_insert_with(|| changes.iter().map(|c| (c.row.task.id, c.row.task.state)).collect());
            if let Some(&state) = written.get(&f.id) {
                *answer = FinishResult::Done(state);
            }
        }
    }
}

/// Ends (or starts, or releases) a run, if the token holds the live lease.
pub fn finish(
    row: RunRow,
    f: &Finish,
    policy: &RunPolicy,
    now: DateTime<Utc>,
    jitter: f64,
) -> (FinishResult, Option<Change>) {
    if row.task.id != f.id || !row.holds(&f.token, now) {
        return (FinishResult::Lost, None);
    }
    let mut d = Draft::new(row, now);
    // Ending a run that was never reported as started starts it first, so StartCount is right.
    if d.row.task.state == BatchTaskState::Aquired && f.outcome != FinishOutcome::Release {
        let reason = if f.outcome == FinishOutcome::Start { f.actor.reason_or("started") } else { "started".into() };
        d.start(&f.actor.because(reason));
    }
    if let Some(p) = &f.progress {
        p.apply(&mut d.row.task);
    }
    match f.outcome {
        FinishOutcome::Start => {}
        FinishOutcome::Succeeded | FinishOutcome::SucceededManualCleanup => {
            let to = if f.outcome == FinishOutcome::Succeeded {
                BatchTaskState::Succeeded
            } else {
                BatchTaskState::SucceededManualCleanup
            };
            if f.progress.as_ref().is_none_or(|p| p.percent.is_none()) {
                d.row.task.progress_percent = 100;
            }
            d.row.task.state = to;
            d.row.task.result = stored_long(&f.result);
            d.row.task.response = stored_long(&f.response);
            d.row.run_after = None;
            d.row.rescues = 0;
            d.row.clear_lease();
            d.log(BatchTaskState::Started, to, &f.actor.because(f.actor.reason_or("succeeded")));
        }
        FinishOutcome::Failed { retry } => {
            let why = stored_long(&f.result).unwrap_or_else(|| "failed".into());
            d.row.task.response = stored_long(&f.response);
            d.row.task.result = stored_long(&f.result);
            // A run that fails after a stop was asked is the stop taking effect: no retry, and
            // the Result says who cancelled it.
            let cancelled_by = d.row.stop_requested_by.clone();
            if let Some(by) = &cancelled_by {
                d.row.task.result = Some(results::cancelled(by));
            }
            let to = fail_or_retry(&mut d.row, (retry && cancelled_by.is_none()).then_some(policy), now, jitter, &why);
            let reason = match to {
                BatchTaskState::New => format!(
                    "{}; retry {} of {} after {}",
                    f.actor.reason_or(&why),
                    d.row.failures,
                    policy.retry.restarts,
                    format_duration(d.row.run_after.map_or(Duration::ZERO, |r| (r - now).to_std().unwrap_or_default()))
                ),
                _ => f.actor.reason_or(&why),
            };
            d.log(BatchTaskState::Started, to, &f.actor.because(reason));
        }
        FinishOutcome::Release => {
            let from = d.row.task.state;
            hand_back(&mut d.row);
            d.log(from, BatchTaskState::New, &f.actor.because(f.actor.reason_or("released")));
        }
    }
    let change = d.visible();
    (FinishResult::Done(change.row.task.state), Some(change))
}

/// Ends a run that failed on its own: back to `New` after a backoff while the policy (if any)
/// has restarts left for its failures, else `Failed`. Answers the state it moved to.
fn fail_or_retry(
    row: &mut RunRow,
    policy: Option<&RunPolicy>,
    now: DateTime<Utc>,
    jitter: f64,
    why: &str,
) -> BatchTaskState {
    row.clear_lease();
    row.failures = row.failures.saturating_add(1);
    row.rescues = 0;
    let failure = u32::try_from(row.failures).unwrap_or(0);
    row.run_after = policy.and_then(|p| p.retry.after_failure(failure, jitter, now));
    row.task.state = if row.run_after.is_some() {
        row.task.result = Some(results::retry_scheduled(u32::try_from(row.attempts).unwrap_or(0), why));
        BatchTaskState::New
    } else {
        BatchTaskState::Failed
    };
    row.task.state
}

/// `New` again with the attempt not counted: the run was handed back, not failed.
fn hand_back(row: &mut RunRow) {
    row.clear_lease();
    row.attempts = (row.attempts - 1).max(0);
    row.run_after = None;
    row.task.state = BatchTaskState::New;
}

// ---------------------------------------------------------------------------------------------
// Batches

/// Applies `rule` to each item of a batch in order, each seeing its row as the items before it
/// left it (a beat and then a finish of one task, say). Answers per item, and the changes: one
/// per row, in its last state, with the events of every step in order.
fn in_batch<I, A>(
    rows: Vec<RunRow>,
    items: &[I],
    id: impl Fn(&I) -> i32,
    missing: A,
    mut rule: impl FnMut(RunRow, &I) -> (A, Option<Change>),
) -> (Vec<A>, Vec<Change>)
where
    A: Clone,
{
    let mut rows: HashMap<i32, RunRow> = rows.into_iter().map(|r| (r.task.id, r)).collect();
    // Sized for the batch at once: grown by doubling, a batch of 512 reallocated (and, with the
    // allocator giving freed memory straight back, faulted in) its largest vectors several times.
    let mut changes: Vec<Change> = Vec::with_capacity(items.len());
    let mut index: HashMap<i32, usize> = HashMap::with_capacity(items.len());
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        let Some(row) = rows.get(&id(item)) else {
            answers.push(missing.clone());
            continue;
        };
        let (answer, change) = rule(row.clone(), item);
        if let Some(change) = change {
            let task_id = change.row.task.id;
            rows.insert(task_id, change.row.clone());
            match index.get(&task_id) {
                Some(&i) => {
                    let earlier = std::mem::replace(&mut changes[i], change);
                    changes[i].events.splice(0..0, earlier.events);
                }
                None => {
                    index.insert(task_id, changes.len());
                    changes.push(change);
                }
            }
        }
        answers.push(answer);
    }
    (answers, changes)
}

/// [`renew`] for a batch of beats over the rows they name (a row not loaded is `Lost`).
pub fn renew_batch(
    rows: Vec<RunRow>,
    beats: &[Beat],
    lease: Duration,
    now: DateTime<Utc>,
) -> (Vec<BeatOutcome>, Vec<Change>) {
    in_batch(rows, beats, |b| b.id, BeatOutcome::Lost, |row, beat| renew(row, beat, lease, now))
}

/// [`finish`] for a batch, each row under its definition's policy (by task name;
/// [`RunPolicy::undefined`] for a name not in `policies`).
pub fn finish_batch(
    rows: Vec<RunRow>,
    finishes: &[Finish],
    policies: &HashMap<String, RunPolicy>,
    now: DateTime<Utc>,
    mut jitter: impl FnMut() -> f64,
) -> (Vec<FinishResult>, Vec<Change>) {
    in_batch(
        rows,
        finishes,
        |f| f.id,
        FinishResult::Lost,
        |row, f| {
            let policy = RunPolicy::of(policies, &row.task);
            finish(row, f, &policy, now, jitter())
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Stops

/// What a stop request did.
#[derive(Debug, Clone, PartialEq)]
pub enum StopResult {
    /// Stopped at once (`New`, `Aquired`, or `Started` with no live lease): now `Failed`.
    Failed(Task),
    /// `Started` under a live lease: the request is recorded; the holder stops the run.
    Requested { task: Task, node: String },
    /// Finished already, or `CannotCancel`.
    Refused(Task),
}

/// A stop asked by `by`: refused for a finished or `CannotCancel` task; recorded for the holder
/// of a live lease on a `Started` run (once: asking again changes nothing); else `Failed` at once.
pub fn stop(row: RunRow, by: &str, actor: &Actor, now: DateTime<Utc>) -> (StopResult, Option<Change>) {
    let from = row.task.state;
    if from.is_finished() || row.task.cancellation == CancellationBehaviour::CannotCancel {
        return (StopResult::Refused(row.task), None);
    }
    let by = stored_text(by, limits::NAME);
    let mut d = Draft::new(row, now);
    if from == BatchTaskState::Started && d.row.lease_live(now) {
        let node = d.row.lease_node.clone().unwrap_or_default();
        if d.row.stop_requested.is_some() {
            return (StopResult::Requested { task: d.row.task, node }, None);
        }
        d.row.stop_requested = Some(now);
        d.row.stop_requested_by = Some(by.clone());
        d.log(from, from, &actor.because(format!("stop requested by {by}")));
        let change = d.unseen();
        return (StopResult::Requested { task: change.row.task.clone(), node }, Some(change));
    }
    d.row.clear_lease();
    d.row.run_after = None;
    d.row.task.state = BatchTaskState::Failed;
    d.row.task.result = Some(results::cancelled(&by));
    d.log(from, BatchTaskState::Failed, &actor.because(results::cancelled(&by)));
    let change = d.visible();
    (StopResult::Failed(change.row.task.clone()), Some(change))
}

// ---------------------------------------------------------------------------------------------
// Rescue and release

/// A task the rescuer moved after its lease ran out, or its holder ignored a stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescued {
    pub id: i32,
    pub to: BatchTaskState,
}

/// The rescuer's rule for an `Aquired`/`Started` row, run by node `rescuer`:
/// - a stop was asked and the lease ran out, or the stop is older than `stop_grace` while the
///   run goes on: `Failed`, cancelled by whoever asked (a stop wins over running again);
/// - the lease ran out: the run crashed with its node, which is not the task's failure. The task
///   goes back to `New` at once for another attempt (its restarts untouched), unless this is the
///   policy's `rescues`-th crash in a row: then `Failed`, saying so;
/// - otherwise the row is left alone (None).
pub fn rescue(
    row: RunRow,
    rescuer: &str,
    policy: &RunPolicy,
    now: DateTime<Utc>,
    stop_grace: Duration,
) -> Option<(Rescued, Change)> {
    let from = row.task.state;
    if !from.is_active() {
        return None;
    }
    let expired = row.lease_expires.is_some_and(|e| e < now);
    let stop_overdue =
        from == BatchTaskState::Started && row.stop_requested.is_some_and(|asked| lease_until(asked, stop_grace) < now);
    let holder = row.lease_node.clone().unwrap_or_else(|| "?".into());
    let mut d = Draft::new(row, now);
    let reason = match d.row.stop_requested_by.clone() {
        Some(by) if expired || stop_overdue => {
            d.row.clear_lease();
            d.row.task.state = BatchTaskState::Failed;
            d.row.task.result = Some(results::cancelled(&by));
            format!("{}; {holder} did not end the run in time", results::cancelled(&by))
        }
        _ if expired => {
            d.row.clear_lease();
            d.row.run_after = None;
            d.row.rescues = d.row.rescues.saturating_add(1);
            let crashes = u32::try_from(d.row.rescues).unwrap_or(u32::MAX);
            let why = results::lease_expired(&holder);
            if crashes >= policy.rescues.max(1) {
                d.row.task.state = BatchTaskState::Failed;
                d.row.task.result = Some(results::rescued_out(crashes, &holder));
                d.row.task.result.clone().unwrap_or_default()
            } else {
                d.row.task.state = BatchTaskState::New;
                d.row.task.result = Some(results::rescued(&holder));
                format!("{why}; rescued, crash {crashes} of {} in a row, running again", policy.rescues)
            }
        }
        _ => return None,
    };
    let to = d.row.task.state;
    d.log(from, to, &Actor::node(rescuer, reason));
    let change = d.visible();
    Some((Rescued { id: change.row.task.id, to }, change))
}

/// A node hands back a lease it holds (it restarted, so the run is gone): `New` again, the
/// attempt not counted.
pub fn release(row: RunRow, node: &str, now: DateTime<Utc>) -> Option<Change> {
    let from = row.task.state;
    if !from.is_active() {
        return None;
    }
    let mut d = Draft::new(row, now);
    hand_back(&mut d.row);
    d.log(from, BatchTaskState::New, &Actor::node(node, format!("released: node {node} restarted")));
    Some(d.visible())
}

// ---------------------------------------------------------------------------------------------
// Changes by hand (the API)

/// What a change made through the API (PUT, PATCH, an agent) does to the runner columns.
#[derive(Debug, Clone, PartialEq)]
pub struct ByHand {
    /// The state moved: any lease ends (a runner still holding it is fenced out), with its stop request.
    pub ends_lease: bool,
    /// Back to `New` by hand: the counts of runs, failures and crashes, and any retry's backoff,
    /// start afresh.
    pub resets_attempts: bool,
    pub event: Option<RunEvent>,
}

pub fn by_hand(current: &Task, next: &Task, actor: &Actor, now: DateTime<Utc>) -> ByHand {
    let moved = next.state != current.state;
    ByHand {
        ends_lease: moved,
        resets_attempts: moved && next.state == BatchTaskState::New,
        event: if moved { RunEvent::of(next, now, Some(current.state), Some(next.state), actor) } else { None },
    }
}

/// `Failed → New` by hand (`POST .../Retry`): the task runs again. Unlike a move to `New` by
/// [`by_hand`], the run count goes on (the next run is attempt `attempts + 1`, and `StartCount`
/// keeps counting), and the event log keeps every earlier run. The definition's restarts and
/// rescues start afresh: they bound the runs after this retry, not those before it. A task that
/// is not `Failed` is refused.
pub fn retry(row: RunRow, actor: &Actor, now: DateTime<Utc>) -> Result<Change, super::DomainError> {
    let from = row.task.state;
    if from != BatchTaskState::Failed {
        return Err(super::DomainError::NotFailed { id: row.task.id.into(), state: from });
    }
    let mut d = Draft::new(row, now);
    d.row.clear_lease();
    d.row.failures = 0;
    d.row.rescues = 0;
    d.row.run_after = None;
    d.row.task.state = BatchTaskState::New;
    // The last run's outcome stays readable in the event log; a New task shows none.
    d.row.task.result = None;
    d.row.task.progress_percent = 0;
    d.row.task.progress_description = None;
    let reason = actor.reason_or("retried");
    d.log(from, BatchTaskState::New, &actor.because(reason));
    Ok(d.visible())
}

/// The event of a task's creation by its owner. Its reason names a priority other than the
/// default: the event log is where batchd shows a task's priority (it never changes).
pub fn created(task_id: i32, new: &super::NewTask, now: DateTime<Utc>) -> Option<RunEvent> {
    (!new.is_internal).then(|| RunEvent {
        task_id,
        at: now,
        from: None,
        to: Some(BatchTaskState::New),
        associate_id: Some(new.associate_id),
        node: None,
        reason: Some(match new.priority {
            0 => "created".into(),
            p => format!("created with priority {p}"),
        }),
    })
}

/// The order claims take due tasks in, across names: higher priority first, then oldest (lower
/// id) first. Answers the ids of the first `max` of the `(priority, id)` candidates, in that order.
pub fn claim_order(mut candidates: Vec<(i16, i32)>, max: usize) -> Vec<i32> {
    candidates.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    candidates.into_iter().take(max).map(|(_, id)| id).collect()
}

/// Puts a claimed batch in claim order (`order`: ids as [`claim_order`] answered), so a node
/// starts its tasks in that order.
pub fn in_claim_order(claimed: &mut [Claimed], order: &[i32]) {
    claimed.sort_by_key(|c| order.iter().position(|id| *id == c.task.id));
}

/// The event of a task's deletion (the log outlives the task, for audit; retention removes it).
pub fn deleted(task: &Task, actor: &Actor, now: DateTime<Utc>) -> Option<RunEvent> {
    RunEvent::of(task, now, Some(task.state), None, actor)
}

// ---------------------------------------------------------------------------------------------
// Recurring definitions

/// A recurring definition's next occurrence, created atomically with moving the schedule on.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleTick {
    pub name: String,
    pub schedule: Schedule,
    /// Skip the occurrence while a task of this name is New, Aquired or Started.
    pub skip_if_active: bool,
    /// What a tick does about occurrences missed while no node ran.
    pub catch_up: CatchUp,
}

/// What a schedule does about occurrences missed while no node ran (or while it could not
/// reach the store): `One` creates one task for them all, then goes on at the next
/// occurrence; `None` creates nothing for them and goes on at the next occurrence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CatchUp {
    None,
    #[default]
    One,
}

impl CatchUp {
    pub fn parse(s: &str) -> Option<CatchUp> {
        match s {
            "none" => Some(CatchUp::None),
            "one" => Some(CatchUp::One),
            _ => None,
        }
    }
}

/// An occurrence ticked later than this after its time was missed: nodes tick at the
/// occurrence itself (within a poll interval when the store was briefly unreachable).
pub const MISSED_AFTER: chrono::Duration = chrono::Duration::seconds(60);

/// What makes a recurring definition's tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every so often, from the first tick on.
    Every(Duration),
    /// At the times a cron expression names, in its time zone.
    Cron(super::cron::Cron),
}

impl Schedule {
    /// As `GET /Definitions` shows it: `5m`, or `0 3 * * * Europe/Oslo`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(d) => format_duration(*d),
            Schedule::Cron(c) => c.describe(),
        }
    }
}

/// An occurrence that is due: the schedule moves on to `next` either way; `create` says
/// whether its task is created (not while the definition is paused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub next: DateTime<Utc>,
    pub create: bool,
}

/// What a tick does: `Some(due)` when the occurrence is due now (create its task unless the
/// definition is paused or the occurrence is skipped, and move the schedule to `due.next`);
/// `None` when not due yet. The next occurrence is always in the future: missed ones (no node
/// ran, or the definition was paused) are one task with `CatchUp::One` and none with
/// `CatchUp::None` (an occurrence more than `MISSED_AFTER` late is missed). An interval's first
/// occurrence is its first tick; a cron schedule's first tick only sets its next occurrence,
/// creating nothing.
pub fn schedule_due(
    next_start: Option<DateTime<Utc>>,
    schedule: &Schedule,
    paused: bool,
    catch_up: CatchUp,
    now: DateTime<Utc>,
) -> Option<Due> {
    let missed = catch_up == CatchUp::None && next_start.is_some_and(|n| now - n > MISSED_AFTER);
    match schedule {
        Schedule::Every(interval) => {
            next_occurrence(next_start, *interval, now).map(|next| Due { next, create: !paused && !missed })
        }
        Schedule::Cron(cron) => {
            if next_start.is_some_and(|n| n > now) {
                return None;
            }
            // An expression that never occurs again is parked a century ahead.
            let next = cron.next_after(now).unwrap_or(now + chrono::Duration::days(36_500));
            Some(Due { next, create: next_start.is_some() && !paused && !missed })
        }
    }
}

/// When a schedule next creates a task, as `GET /Definitions` shows it: none while paused;
/// otherwise what the next tick would do: now when it would create (an interval that never ran,
/// or an occurrence due or overdue and caught up), else the occurrence it would move on to (a
/// cron schedule that never ran, or missed occurrences that `CatchUp::None` skips).
pub fn next_run(
    schedule: &Schedule,
    next_start: Option<DateTime<Utc>>,
    paused: bool,
    catch_up: CatchUp,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if paused {
        return None;
    }
    match schedule_due(next_start, schedule, false, catch_up, now) {
        None => next_start,
        Some(due) if due.create => Some(now),
        Some(due) => Some(due.next),
    }
}

fn next_occurrence(next_start: Option<DateTime<Utc>>, interval: Duration, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let due = next_start.unwrap_or(now);
    if due > now {
        return None;
    }
    let step = chrono::Duration::from_std(interval)
        .unwrap_or(chrono::Duration::days(365 * 100))
        .max(chrono::Duration::microseconds(1));
    let next = due + step;
    Some(if next <= now { now + step } else { next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use BatchTaskState as S;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    fn new_row() -> RunRow {
        RunRow {
            task: Task::fixture(7, "Job", 5, S::New),
            lease_token: None,
            lease_expires: None,
            lease_node: None,
            attempts: 0,
            run_after: None,
            stop_requested: None,
            stop_requested_by: None,
            failures: 0,
            rescues: 0,
        }
    }

    fn req(start: bool) -> ClaimRequest {
        ClaimRequest {
            node: "n1".into(),
            lease: Duration::from_secs(1),
            names: vec![],
            max: 1,
            start,
            associate_id: None,
        }
    }

    fn policy(restarts: u32) -> RunPolicy {
        RunPolicy {
            retry: RetryPolicy { restarts, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(8) },
            rescues: 3,
        }
    }

    fn running() -> RunRow {
        claim(new_row(), &req(true), "tok", at(0)).unwrap().1.row
    }

    fn finishing(outcome: FinishOutcome) -> Finish {
        Finish {
            id: 7,
            token: "tok".into(),
            outcome,
            result: None,
            response: None,
            progress: None,
            actor: Actor::node("n1", "because"),
        }
    }

    #[test]
    fn a_claim_takes_only_a_new_task_past_its_backoff() {
        let (claimed, change) = claim(new_row(), &req(true), "tok", at(0)).unwrap();
        assert_eq!(claimed.lease.attempt, 1);
        assert_eq!(claimed.lease.expires, at(1000));
        assert_eq!(change.row.task.state, S::Started);
        assert_eq!(change.row.task.start_count, 1);
        assert_eq!(change.row.task.version, 2, "a claim moves the ETag once");
        let moves: Vec<_> = change.events.iter().map(|e| (e.from, e.to, e.reason.clone().unwrap())).collect();
        assert_eq!(
            moves,
            [
                (Some(S::New), Some(S::Aquired), "claimed, attempt 1".to_owned()),
                (Some(S::Aquired), Some(S::Started), "started".to_owned())
            ]
        );
        assert!(claim(change.row, &req(true), "t2", at(1)).is_none(), "a running task is not claimable");
        let waiting = RunRow { run_after: Some(at(500)), ..new_row() };
        assert!(claim(waiting.clone(), &req(false), "t", at(499)).is_none());
        assert_eq!(claim(waiting, &req(false), "t", at(500)).unwrap().1.row.task.state, S::Aquired);
    }

    #[test]
    fn room_under_a_concurrency_limit() {
        let name = |c| ClaimName { name: "x".into(), concurrency: c, rate: None };
        assert_eq!(name(None).room(1_000), usize::MAX);
        assert_eq!(name(Some(3)).room(1), 2);
        assert_eq!(name(Some(3)).room(5), 0);
    }

    #[test]
    fn room_under_a_rate_and_a_concurrency_limit() {
        let rate = Some(Rate::parse("5/1m").unwrap());
        let name = |c| ClaimName { name: "x".into(), concurrency: c, rate };
        assert_eq!(name(None).claim_room(100, 0), 5);
        assert_eq!(name(None).claim_room(0, 3), 2);
        assert_eq!(name(None).claim_room(0, 7), 0, "more than the rate (a lowered limit): none");
        assert_eq!(name(Some(1)).claim_room(0, 0), 1, "the smaller of the two");
        let free = ClaimName { name: "x".into(), concurrency: None, rate: None };
        assert_eq!(free.claim_room(1_000, 1_000), usize::MAX);
    }

    #[test]
    fn rates_parse_bounded() {
        assert_eq!(Rate::parse("100/1m").unwrap(), Rate { count: 100, period: Duration::from_secs(60) });
        assert_eq!(Rate::parse(" 3 / 10s ").unwrap().describe(), "3/10s");
        for (bad, why) in [
            ("100", "COUNT/PERIOD"),
            ("0/1m", "from 1 to 10000"),
            ("10001/1m", "from 1 to 10000"),
            ("x/1m", "whole number"),
            ("-1/1m", "whole number"),
            ("5/500ms", "from 1s to 1d"),
            ("5/2d", "from 1s to 1d"),
            ("5/soon", "the period"),
        ] {
            let err = Rate::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn only_the_live_lease_renews_and_only_progress_moves_the_etag() {
        let row = running();
        let beat = |token: &str, renew, progress| Beat { id: 7, token: token.into(), progress, renew };
        assert_eq!(renew(row.clone(), &beat("old", true, None), Duration::from_secs(1), at(10)).0, BeatOutcome::Lost);
        assert_eq!(renew(row.clone(), &beat("tok", true, None), Duration::from_secs(1), at(1001)).0, BeatOutcome::Lost);
        let (answer, change) = renew(row.clone(), &beat("tok", true, None), Duration::from_secs(1), at(500));
        assert!(matches!(answer, BeatOutcome::Renewed { expires, .. } if expires == at(1500)));
        assert_eq!(change.unwrap().row.task.version, row.task.version);
        let p = Progress { percent: Some(140), description: Some("a\0b".into()), file_name: None };
        let (_, change) = renew(row.clone(), &beat("tok", false, Some(p)), Duration::from_secs(1), at(500));
        let change = change.unwrap();
        assert_eq!(change.row.task.version, row.task.version + 1);
        assert_eq!(change.row.task.progress_percent, 100);
        assert_eq!(change.row.task.progress_description.as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(change.row.lease_expires, row.lease_expires, "progress alone does not renew");
        assert!(renew(row, &beat("tok", false, None), Duration::from_secs(1), at(500)).1.is_none());
    }

    #[test]
    fn a_finish_answers_the_state_written_when_a_store_fails_its_rerun() {
        let f = finishing(FinishOutcome::Failed { retry: true });
        let (done, change) = finish(running(), &f, &policy(1), at(10), 0.0);
        assert_eq!(done, FinishResult::Done(S::New));
        let mut failed = change.unwrap();
        let mut answers = vec![done.clone()];
        run_answer(&mut answers, &f, &failed);
        assert_eq!(answers, [FinishResult::Done(S::New)], "written as decided");
        failed.row.task.state = S::Failed;
        run_answer(&mut answers, &f, &failed);
        assert_eq!(answers, [FinishResult::Done(S::Failed)], "a store turned the rerun into a failure");
        let mut lost = vec![FinishResult::Lost];
        run_answer(&mut lost, &f, &failed);
        assert_eq!(lost, [FinishResult::Lost]);
    }

    fn run_answer(answers: &mut [FinishResult], f: &Finish, change: &Change) {
        answer_as_written(answers, std::slice::from_ref(f), std::slice::from_ref(change));
    }

    #[test]
    fn a_failure_retries_with_backoff_until_the_restarts_are_used() {
        let f = finishing(FinishOutcome::Failed { retry: true });
        let (done, change) =
            finish(running(), &Finish { result: Some("exit 3".into()), ..f.clone() }, &policy(1), at(10), 0.0);
        assert_eq!(done, FinishResult::Done(S::New));
        let row = change.unwrap().row;
        assert_eq!(row.run_after, Some(at(10 + 500)), "half the first backoff at jitter 0");
        assert!(row.lease_token.is_none());
        // The second run fails too: no restarts left.
        let again = claim(RunRow { run_after: None, ..row }, &req(true), "tok", at(600)).unwrap().1.row;
        let (done, change) = finish(again, &f, &policy(1), at(700), 0.0);
        assert_eq!(done, FinishResult::Done(S::Failed));
        assert_eq!(change.unwrap().events.last().unwrap().reason.as_deref(), Some("because"));
    }

    #[test]
    fn a_failure_after_a_stop_is_the_stop_not_a_retry() {
        let (_, change) = stop(running(), "Ann", &Actor::associate(5, "stop"), at(10));
        let row = change.unwrap().row;
        let (done, change) = finish(row, &finishing(FinishOutcome::Failed { retry: true }), &policy(5), at(20), 0.5);
        assert_eq!(done, FinishResult::Done(S::Failed));
        assert_eq!(change.unwrap().row.task.result.as_deref(), Some("Cancelled by Ann"));
    }

    #[test]
    fn finishing_an_aquired_run_starts_it_first_and_keeps_the_reported_progress() {
        let row = claim(new_row(), &req(false), "tok", at(0)).unwrap().1.row;
        let f = Finish {
            progress: Some(Progress { percent: None, description: Some("done".into()), file_name: None }),
            ..finishing(FinishOutcome::Succeeded)
        };
        let (_, change) = finish(row, &f, &policy(0), at(5), 0.0);
        let change = change.unwrap();
        assert_eq!(change.row.task.start_count, 1);
        assert_eq!(change.row.task.progress_percent, 100);
        assert_eq!(change.row.task.progress_description.as_deref(), Some("done"));
        let moves: Vec<_> = change.events.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(moves, [(Some(S::Aquired), Some(S::Started)), (Some(S::Started), Some(S::Succeeded))]);
    }

    #[test]
    fn a_stale_token_writes_nothing() {
        for outcome in [FinishOutcome::Succeeded, FinishOutcome::Release, FinishOutcome::Start] {
            let f = Finish { token: "other".into(), ..finishing(outcome) };
            assert_eq!(finish(running(), &f, &policy(0), at(5), 0.0), (FinishResult::Lost, None));
        }
    }

    #[test]
    fn a_stop_is_asked_once_of_a_live_run_and_is_immediate_otherwise() {
        let actor = Actor::associate(5, "stop");
        let (answer, change) = stop(running(), "Ann", &actor, at(10));
        assert!(matches!(answer, StopResult::Requested { ref node, .. } if node == "n1"));
        let row = change.unwrap().row;
        assert_eq!(row.task.version, running().task.version, "asking is not visible");
        assert!(stop(row.clone(), "Bob", &actor, at(11)).1.is_none(), "asking twice changes nothing");
        // Past the lease nobody holds the run: the stop is immediate.
        let (answer, _) = stop(row, "Bob", &actor, at(2000));
        assert!(matches!(answer, StopResult::Failed(ref t) if t.result.as_deref() == Some("Cancelled by Bob")));
        let done = RunRow { task: Task { state: S::Succeeded, ..new_row().task }, ..new_row() };
        assert!(matches!(stop(done, "Ann", &actor, at(0)), (StopResult::Refused(_), None)));
    }

    fn rescued(row: RunRow, policy: &RunPolicy, now: DateTime<Utc>) -> Option<(Rescued, Change)> {
        rescue(row, "r", policy, now, Duration::from_secs(5))
    }

    #[test]
    fn a_crashed_run_runs_again_without_spending_a_restart() {
        let live = running();
        assert!(rescued(live.clone(), &policy(0), at(999)).is_none(), "the lease still holds");
        let (r, change) = rescued(live, &policy(0), at(1001)).unwrap();
        assert_eq!(r.to, S::New);
        let row = change.row;
        assert_eq!((row.rescues, row.failures, row.run_after), (1, 0, None), "claimable at once");
        assert!(row.lease_token.is_none());
        let reason = change.events[0].reason.clone().unwrap();
        assert!(reason.starts_with("Lease expired: n1 stopped renewing it; rescued, crash 1 of 3"), "{reason}");
        // The next run is attempt 2, and its own failure still has the restart it had.
        let (claimed, again) = claim(row, &req(true), "t2", at(1002)).unwrap();
        assert_eq!((claimed.lease.attempt, again.row.task.start_count), (2, 2));
        let f = Finish { token: "t2".into(), ..finishing(FinishOutcome::Failed { retry: true }) };
        let (done, change) = finish(again.row, &f, &policy(1), at(1003), 0.0);
        assert_eq!(done, FinishResult::Done(S::New), "restarts count failures, not crashes");
        let row = change.unwrap().row;
        assert_eq!((row.failures, row.rescues), (1, 0), "a run that ends on its own ends the streak");
        assert!(row.task.result.as_deref().unwrap().starts_with("Attempt 2 failed"));
    }

    #[test]
    fn the_rescues_th_crash_in_a_row_fails_the_task() {
        let policy = RunPolicy { rescues: 2, ..policy(5) };
        let mut row = running();
        let (r, change) = rescued(row, &policy, at(1001)).unwrap();
        assert_eq!(r.to, S::New);
        row = claim(change.row, &req(true), "tok", at(2000)).unwrap().1.row;
        let (r, change) = rescued(row, &policy, at(3001)).unwrap();
        assert_eq!(r.to, S::Failed);
        let result = change.row.task.result.unwrap();
        assert!(result.starts_with("Rescued 2 times in a row"), "{result}");
        assert!(result.contains("last n1"), "{result}");
        // A limit of 1 fails the first crash.
        let (r, _) = rescued(running(), &RunPolicy { rescues: 1, ..policy }, at(1001)).unwrap();
        assert_eq!(r.to, S::Failed);
    }

    #[test]
    fn a_stop_asked_before_the_crash_wins() {
        let asked = stop(running(), "Ann", &Actor::default(), at(100)).1.unwrap().row;
        let (r, change) = rescued(asked.clone(), &policy(3), at(1001)).unwrap();
        assert_eq!(r.to, S::Failed);
        assert_eq!(change.row.task.result.as_deref(), Some("Cancelled by Ann"));
        // Ignored past the grace while the holder keeps renewing: failed too.
        let renewed = RunRow { lease_expires: Some(at(60_000)), ..asked };
        assert!(rescued(renewed.clone(), &policy(1), at(5_100)).is_none());
        let (r, change) = rescued(renewed, &policy(1), at(5_101)).unwrap();
        assert_eq!(r.to, S::Failed);
        assert_eq!(change.row.task.result.as_deref(), Some("Cancelled by Ann"));
    }

    #[test]
    fn by_hand_to_new_starts_every_count_afresh() {
        let done = Task { state: S::Failed, ..new_row().task };
        let again = Task { state: S::New, ..done.clone() };
        let b = by_hand(&done, &again, &Actor::associate(5, "again"), at(0));
        assert!(b.ends_lease && b.resets_attempts);
        assert_eq!(b.event.unwrap().to, Some(S::New));
        let same = by_hand(&done, &done, &Actor::default(), at(0));
        assert!(!same.ends_lease && !same.resets_attempts && same.event.is_none());
    }

    #[test]
    fn a_release_hands_the_run_back_uncounted() {
        let change = release(running(), "n1", at(5)).unwrap();
        assert_eq!(change.row.task.state, S::New);
        assert_eq!(change.row.attempts, 0);
        assert!(change.row.lease_token.is_none());
        assert!(release(new_row(), "n1", at(5)).is_none());
    }

    #[test]
    fn internal_tasks_keep_no_events_and_texts_are_bounded() {
        let mut row = new_row();
        row.task.is_internal = true;
        assert!(claim(row, &req(true), "t", at(0)).unwrap().1.events.is_empty());
        assert_eq!(stored_text("abcdef", 3), "abc");
        assert_eq!(stored_text("é\0é", 10), "é\u{FFFD}é");
    }

    #[test]
    fn a_schedule_never_makes_up_for_missed_occurrences() {
        let minute = &Schedule::Every(Duration::from_secs(60));
        let due = |next| Some(Due { next, create: true });
        assert_eq!(schedule_due(Some(at(1)), minute, false, CatchUp::One, at(0)), None);
        assert_eq!(schedule_due(None, minute, false, CatchUp::One, at(0)), due(at(60_000)));
        assert_eq!(schedule_due(Some(at(0)), minute, false, CatchUp::One, at(30_000)), due(at(60_000)));
        assert_eq!(schedule_due(Some(at(0)), minute, false, CatchUp::One, at(600_000)), due(at(660_000)));
    }

    #[test]
    fn a_paused_schedule_moves_on_without_creating() {
        let minute = &Schedule::Every(Duration::from_secs(60));
        assert_eq!(
            schedule_due(Some(at(0)), minute, true, CatchUp::One, at(30_000)),
            Some(Due { next: at(60_000), create: false })
        );
        assert_eq!(schedule_due(Some(at(1)), minute, true, CatchUp::One, at(0)), None);
        assert_eq!(
            next_run(minute, Some(at(60_000)), true, CatchUp::One, at(0)),
            None,
            "a paused schedule creates nothing"
        );
        assert_eq!(next_run(minute, Some(at(60_000)), false, CatchUp::One, at(0)), Some(at(60_000)));
        assert_eq!(next_run(minute, Some(at(0)), false, CatchUp::One, at(5)), Some(at(5)), "overdue: the next tick");
        assert_eq!(next_run(minute, None, false, CatchUp::One, at(5)), Some(at(5)), "never ran: the first tick");
    }

    #[test]
    fn a_cron_schedule_arms_on_its_first_tick_and_never_makes_up() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hourly = &Schedule::Cron(crate::domain::cron::Cron::parse("0 * * * *", chrono_tz::Tz::UTC).unwrap());
        let first = schedule_due(None, hourly, false, CatchUp::One, t("2026-12-03T09:20:00Z"));
        assert_eq!(first, Some(Due { next: t("2026-12-03T10:00:00Z"), create: false }), "armed, nothing created");
        assert_eq!(
            schedule_due(Some(t("2026-12-03T10:00:00Z")), hourly, false, CatchUp::One, t("2026-12-03T09:59:59Z")),
            None
        );
        let due = schedule_due(Some(t("2026-12-03T10:00:00Z")), hourly, false, CatchUp::One, t("2026-12-03T10:00:00Z"));
        assert_eq!(due, Some(Due { next: t("2026-12-03T11:00:00Z"), create: true }));
        let late =
            schedule_due(Some(t("2026-12-03T10:00:00Z")), hourly, false, CatchUp::One, t("2026-12-03T13:30:00Z"));
        assert_eq!(late, Some(Due { next: t("2026-12-03T14:00:00Z"), create: true }), "one task, not four");
        let paused =
            schedule_due(Some(t("2026-12-03T10:00:00Z")), hourly, true, CatchUp::One, t("2026-12-03T10:00:00Z"));
        assert_eq!(paused, Some(Due { next: t("2026-12-03T11:00:00Z"), create: false }));
        assert_eq!(
            next_run(hourly, None, false, CatchUp::One, t("2026-12-03T09:20:00Z")),
            Some(t("2026-12-03T10:00:00Z"))
        );
        assert_eq!(hourly.describe(), "0 * * * * UTC");
    }

    #[test]
    fn catch_up_none_skips_missed_occurrences_and_one_makes_one_task() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hourly = &Schedule::Cron(crate::domain::cron::Cron::parse("0 * * * *", chrono_tz::Tz::UTC).unwrap());
        let slot = Some(t("2026-12-03T10:00:00Z"));
        // Down from 09:50 to 13:30: three occurrences missed.
        let back = t("2026-12-03T13:30:00Z");
        let next = t("2026-12-03T14:00:00Z");
        assert_eq!(schedule_due(slot, hourly, false, CatchUp::One, back), Some(Due { next, create: true }));
        assert_eq!(schedule_due(slot, hourly, false, CatchUp::None, back), Some(Due { next, create: false }));
        // On time (or a moment late), `none` runs the occurrence like `one`.
        let on_time = t("2026-12-03T10:00:00.050Z");
        let next = Some(Due { next: t("2026-12-03T11:00:00Z"), create: true });
        assert_eq!(schedule_due(slot, hourly, false, CatchUp::None, on_time), next);
        let edge = t("2026-12-03T10:00:00Z") + MISSED_AFTER;
        assert!(schedule_due(slot, hourly, false, CatchUp::None, edge).unwrap().create);
        let past = edge + chrono::Duration::milliseconds(1);
        assert!(!schedule_due(slot, hourly, false, CatchUp::None, past).unwrap().create);
        let minute = &Schedule::Every(Duration::from_secs(60));
        assert!(!schedule_due(Some(at(0)), minute, false, CatchUp::None, at(600_000)).unwrap().create);
        assert!(schedule_due(Some(at(0)), minute, false, CatchUp::None, at(30_000)).unwrap().create);
        // What `GET /Definitions` shows while the slots are missed: now, or the next slot.
        assert_eq!(next_run(hourly, slot, false, CatchUp::One, back), Some(back));
        assert_eq!(next_run(hourly, slot, false, CatchUp::None, back), Some(t("2026-12-03T14:00:00Z")));
        assert_eq!(next_run(hourly, slot, false, CatchUp::None, on_time), Some(on_time), "due now");
        assert_eq!(CatchUp::parse("none"), Some(CatchUp::None));
        assert_eq!(CatchUp::parse("all"), None);
        assert_eq!(CatchUp::default(), CatchUp::One);
    }

    /// Ticks a cron schedule at each of its occurrences from `from` to `to`; the instants of
    /// the tasks created.
    fn ticked(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut created = Vec::new();
        let mut next_start = None;
        let mut now = from;
        while now < to {
            let due = schedule_due(next_start, schedule, false, CatchUp::None, now).expect("ticked when due");
            if due.create {
                created.push(now);
            }
            assert!(due.next > now, "the next occurrence is in the future");
            next_start = Some(due.next);
            now = due.next;
        }
        created
    }

    #[test]
    fn ticking_across_the_oslo_dst_changes_runs_each_slot_once() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let oslo: chrono_tz::Tz = "Europe/Oslo".parse().unwrap();
        let at_0230 = Schedule::Cron(crate::domain::cron::Cron::parse("30 2 * * *", oslo).unwrap());
        let spring = ticked(&at_0230, t("2026-03-27T12:00:00Z"), t("2026-03-31T12:00:00Z"));
        // 28th 02:30 CET, 29th in the gap: at its end (03:00 CEST), then 02:30 CEST.
        assert_eq!(
            spring,
            [
                t("2026-03-28T01:30:00Z"),
                t("2026-03-29T01:00:00Z"),
                t("2026-03-30T00:30:00Z"),
                t("2026-03-31T00:30:00Z")
            ]
        );
        let autumn = ticked(&at_0230, t("2026-10-24T12:00:00Z"), t("2026-10-26T12:00:00Z"));
        assert_eq!(autumn, [t("2026-10-25T00:30:00Z"), t("2026-10-26T01:30:00Z")], "25th: the first 02:30 only");
        let quarter = Schedule::Cron(crate::domain::cron::Cron::parse("*/15 * * * *", oslo).unwrap());
        let gap_night = ticked(&quarter, t("2026-03-28T23:00:00Z"), t("2026-03-29T03:00:00Z"));
        // Armed at 00:00 CET; 00:15-01:45 CET (7), the missing hour's one run at 03:00 CEST,
        // 03:15-04:45 CEST (7).
        assert_eq!(gap_night.len(), 7 + 1 + 7);
        assert!(gap_night.contains(&t("2026-03-29T01:00:00Z")) && !gap_night.contains(&t("2026-03-29T00:59:00Z")));
        let overlap_night = ticked(&quarter, t("2026-10-24T22:00:00Z"), t("2026-10-25T03:00:00Z"));
        // Armed at 00:00 CEST; 00:15-02:45 CEST (11); 02:00-02:45 CET again are not new;
        // 03:00-03:45 CET (4).
        assert_eq!(overlap_night.len(), 11 + 4);
        assert!(!overlap_night.contains(&t("2026-10-25T01:00:00Z")), "not the second 02:00");
    }

    proptest::proptest! {
        /// A daily cron schedule in Oslo runs exactly once on every local day of a year, at its
        /// local time, or at 03:00 when that time falls in the spring gap.
        #[test]
        fn a_daily_slot_runs_once_every_local_day(hour in 0u32..24, minute in 0u32..60, start in 0i64..365) {
            let oslo: chrono_tz::Tz = "Europe/Oslo".parse().unwrap();
            let cron = crate::domain::cron::Cron::parse(&format!("{minute} {hour} * * *"), oslo).unwrap();
            let from = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
                + chrono::Duration::days(start);
            let to = from + chrono::Duration::days(366);
            let runs = ticked(&Schedule::Cron(cron), from, to);
            let days: Vec<_> = runs.iter().map(|r| r.with_timezone(&oslo).date_naive()).collect();
            for pair in days.windows(2) {
                proptest::prop_assert_eq!(pair[1], pair[0].succ_opt().unwrap(), "one run a day, none skipped");
            }
            proptest::prop_assert!(runs.len() >= 365);
            for r in &runs {
                let local = r.with_timezone(&oslo).time();
                let wanted = chrono::NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
                let gap_end = chrono::NaiveTime::from_hms_opt(3, 0, 0).unwrap();
                proptest::prop_assert!(local == wanted || (hour == 2 && local == gap_end), "{r}: {local}");
            }
        }
    }

    #[test]
    fn a_retry_runs_a_failed_task_again_and_keeps_counting() {
        let f = finishing(FinishOutcome::Failed { retry: true });
        let failed = finish(running(), &f, &policy(0), at(10), 0.0).1.unwrap().row;
        assert_eq!((failed.task.state, failed.failures, failed.attempts), (S::Failed, 1, 1));
        let change = retry(failed.clone(), &Actor::associate(5, "retried by Ann"), at(20)).unwrap();
        let row = &change.row;
        assert_eq!(row.task.state, S::New);
        assert_eq!((row.attempts, row.failures, row.rescues, row.run_after), (1, 0, 0, None));
        assert_eq!(row.task.start_count, 1, "StartCount is not reset");
        assert_eq!(row.task.result, None);
        assert_eq!(row.task.version, failed.task.version + 1, "visible");
        let ev: Vec<_> = change.events.iter().map(|e| (e.from, e.to, e.reason.clone().unwrap())).collect();
        assert_eq!(ev, [(Some(S::Failed), Some(S::New), "retried by Ann".to_owned())]);
        // The next run is attempt 2, its restarts counted from this retry.
        let (claimed, again) = claim(change.row, &req(true), "t2", at(30)).unwrap();
        assert_eq!((claimed.lease.attempt, again.row.task.start_count), (2, 2));
        let f2 = Finish { token: "t2".into(), ..f };
        assert_eq!(finish(again.row, &f2, &policy(1), at(40), 0.0).0, FinishResult::Done(S::New), "a restart left");
        for state in [S::New, S::Started, S::Succeeded] {
            let row = RunRow { task: Task { state, ..new_row().task }, ..new_row() };
            let refused = retry(row, &Actor::default(), at(0));
            assert_eq!(refused, Err(crate::domain::DomainError::NotFailed { id: 7, state }));
        }
    }
}
