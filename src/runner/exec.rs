//! One run of one task: picks the runner kind and reports how the run ended.

use std::time::Duration;

use tokio::sync::watch;

use crate::domain::Task;
use crate::domain::definition::{Definition, Embedded, RunnerSpec};
use crate::domain::task::limits;
use crate::store::runner::Progress;

use super::output::{Rest, clip};
use super::{Runner, StopCause};

/// What a run gets: the task, a way to report progress, and the stop signal.
pub struct Ctx {
    pub task: Task,
    pub attempt: i32,
    pub grace: Duration,
    pub stop: watch::Receiver<Option<StopCause>>,
    pub runner: Runner,
    pub http: reqwest::Client,
}

impl Ctx {
    /// Completes when the run is told to stop, with the reason.
    pub async fn stopped(&mut self) -> StopCause {
        let cause = self.stop.wait_for(Option::is_some).await.map(|c| c.clone());
        match cause {
            Ok(c) => c.unwrap_or(StopCause::LeaseLost),
            // The runner dropped the sender: nobody will ever stop this run.
            Err(_) => std::future::pending().await,
        }
    }
    /// The stop reason, if one was given already.
    pub fn stop_requested(&self) -> Option<StopCause> {
        self.stop.borrow().clone()
    }
    pub fn progress(&self, p: Progress) {
        self.runner.report_progress(self.task.id, p);
    }
    pub fn param(&self, key: &str) -> Option<&str> {
        let p = self.task.parameters.as_ref()?;
        p.get(key).or_else(|| p.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    SucceededManualCleanup,
    Failed,
}

/// A run that ran to its own end.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub state: Ended,
    /// Stored in `Result`.
    pub result: String,
    /// Stored in `Response`.
    pub response: Option<String>,
    pub file_name: Option<String>,
    /// Extra detail for the event log (stderr tail).
    pub detail: Option<String>,
}

impl Completed {
    pub fn ok(result: impl Into<String>) -> Completed {
        Completed { state: Ended::Succeeded, result: result.into(), response: None, file_name: None, detail: None }
    }
    pub fn failed(result: impl Into<String>) -> Completed {
        Completed { state: Ended::Failed, result: result.into(), response: None, file_name: None, detail: None }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Completed(Completed),
    Stopped(StopCause),
}

pub async fn run(mut ctx: Ctx, def: &Definition) -> RunEnd {
    // A stop that came before the run began (a shutdown, a quick stop) ends it at once.
    if let Some(cause) = ctx.stop_requested() {
        return RunEnd::Stopped(cause);
    }
    // Each kind's future is boxed: an async enum is as big as its largest variant (the HTTP
    // client's), and thousands of small Sleep runs must not each pay for it.
    match &def.runner {
        RunnerSpec::Noop => RunEnd::Completed(Completed::ok("ok")),
        RunnerSpec::Sleep => Box::pin(super::builtin::sleep(&mut ctx)).await,
        RunnerSpec::Command(spec) => Box::pin(super::command::run(&mut ctx, spec)).await,
        RunnerSpec::Http(spec) => Box::pin(super::http_runner::run(&mut ctx, spec)).await,
        RunnerSpec::Embedded(e) => Box::pin(embedded(&mut ctx, e)).await,
        // Never claimed by this node's runner.
        RunnerSpec::External => RunEnd::Stopped(StopCause::Shutdown),
    }
}

async fn embedded(ctx: &mut Ctx, runner: &Embedded) -> RunEnd {
    let run = runner.0.run(ctx.task.clone(), ctx.attempt);
    tokio::select! {
        r = run => {
            let (text, state) = match r {
                Ok(text) => (text, Ended::Succeeded),
                Err(text) => (text, Ended::Failed),
            };
            let result = clip(text.as_bytes(), Rest::None, limits::LONG_TEXT);
            RunEnd::Completed(Completed { state, result, response: None, file_name: None, detail: None })
        }
        cause = ctx.stopped() => RunEnd::Stopped(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<'a, Fut: std::future::Future>(_: fn(Ctx, &'a Definition) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_run_future_stays_small() {
        // Allocated for every running task: 10,000 running tasks must stay far under 100 MB.
        let size = future_size(run);
        assert!(size < 1024, "the run future is {size} bytes");
    }
}
