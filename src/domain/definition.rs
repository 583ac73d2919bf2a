//! Task definitions: what runs a task of a given `Name`, and the rules around a run (timeout,
//! restarts with backoff, cancellation, concurrency, schedule). Pure data and pure rules; the
//! runner (src/runner) executes them and the config file (src/runner/settings.rs) fills them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::task::{CancellationBehaviour, Parameters};

/// The built-in definitions, which always exist.
pub const NOOP: &str = "Noop";
pub const SLEEP: &str = "Sleep";

#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub name: String,
    pub description: Option<String>,
    pub runner: RunnerSpec,
    /// A run taking longer is stopped (like a stop request) and counts as a failed attempt.
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// Crashes in a row (the run's lease ran out with no outcome) after which a task ends
    /// `Failed` instead of running again.
    pub rescues: u32,
    /// Default `CancellationBehaviour` of new tasks whose create body names none.
    pub cancellation: CancellationBehaviour,
    /// At most this many tasks of this definition `Aquired` or `Started` at once, across all nodes.
    pub concurrency: Option<u32>,
    /// At most so many starts per period, across all nodes.
    pub rate: Option<super::run::Rate>,
    /// Priority of new tasks whose create names none, and of the schedule's (`0..=9`).
    pub priority: u8,
    /// Recurring: a new task is created this often.
    pub start_interval: Option<Duration>,
    /// Recurring by a cron expression in a time zone (instead of `start_interval`).
    pub cron: Option<super::cron::Cron>,
    /// What the schedule does about occurrences missed while no node ran.
    pub catch_up: super::run::CatchUp,
    /// ParameterObject of the tasks the schedule creates.
    pub parameters: Option<Parameters>,
    /// At most one live task per combination of these ParameterObject values.
    pub unique: Option<super::unique::Unique>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunnerSpec {
    Noop,
    Sleep,
    Command(CommandSpec),
    Http(HttpSpec),
    /// Claimed and run by an outside worker over the API.
    External,
    /// Rust code of a program that embeds batchd.
    Embedded(Embedded),
}

/// A runner written in Rust by a program that embeds batchd as a library: a definition with
/// [`RunnerSpec::Embedded`] put into `Config::definitions`. The config file cannot name one.
pub trait EmbeddedRunner: Send + Sync {
    /// One run of `task`, attempt `attempt` (1-based). `Ok(text)` succeeds and `Err(text)` fails
    /// the attempt (restarts apply); the text becomes `Result`. A stop or a timeout drops the
    /// future; a panic fails the attempt.
    fn run(&self, task: super::Task, attempt: i32) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
}

/// An [`EmbeddedRunner`]; definitions compare it by identity.
#[derive(Clone)]
pub struct Embedded(pub Arc<dyn EmbeddedRunner>);

impl PartialEq for Embedded {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedded(..)")
    }
}

/// A program of the `command` runner.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Set for the program, over what it inherits.
    pub env: Vec<(String, String)>,
    /// Names of server environment variables the program gets too; it starts from a clean
    /// environment otherwise (src/runner/command.rs).
    pub inherit_env: Vec<String>,
    pub working_dir: Option<String>,
}

/// One request of the `http` runner; the templates take placeholders (src/runner/template.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// How values are escaped into `body`.
    pub body_format: BodyFormat,
    /// Redirects followed (at most [`MAX_REDIRECTS`]); with 0 a 3xx answer ends the run as failed.
    pub follow_redirects: u8,
}

/// The most redirects a definition may have the http runner follow.
pub const MAX_REDIRECTS: u8 = 10;

/// The timeout of an http run whose definition names none: a request is never left open forever.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(300);

/// What a body template is, which decides how a value is escaped into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// Placeholders stand inside JSON string literals; values are JSON-string-escaped.
    Json,
    /// `application/x-www-form-urlencoded`; values are form-encoded.
    Form,
    /// Values are pasted as they are.
    #[default]
    Text,
}

impl BodyFormat {
    pub fn parse(word: &str) -> Option<BodyFormat> {
        match word.trim().to_ascii_lowercase().as_str() {
            "json" => Some(BodyFormat::Json),
            "form" => Some(BodyFormat::Form),
            "text" => Some(BodyFormat::Text),
            _ => None,
        }
    }

    /// The format a `Content-Type` names: JSON for `application/json` and `*/*+json`, form for
    /// `application/x-www-form-urlencoded`, text for anything else.
    pub fn from_content_type(content_type: &str) -> BodyFormat {
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "application/json" || (essence.contains('/') && essence.ends_with("+json")) {
            BodyFormat::Json
        } else if essence == "application/x-www-form-urlencoded" {
            BodyFormat::Form
        } else {
            BodyFormat::Text
        }
    }

    /// The `Content-Type` sent when the definition names none.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            BodyFormat::Json => Some("application/json"),
            BodyFormat::Form => Some("application/x-www-form-urlencoded"),
            BodyFormat::Text => None,
        }
    }
}

impl RunnerSpec {
    /// The word used in the config file and in `batchtaskdefinition.runner`.
    pub fn kind(&self) -> &'static str {
        match self {
            RunnerSpec::Noop => "noop",
            RunnerSpec::Sleep => "sleep",
            RunnerSpec::Command(_) => "command",
            RunnerSpec::Http(_) => "http",
            RunnerSpec::External => "external",
            RunnerSpec::Embedded(_) => "embedded",
        }
    }
    /// The timeout of a run whose definition names none.
    pub fn default_timeout(&self) -> Option<Duration> {
        match self {
            RunnerSpec::Http(_) => Some(HTTP_TIMEOUT),
            _ => None,
        }
    }
    /// Run by the server itself (as opposed to external workers).
    pub fn in_process(&self) -> bool {
        !matches!(self, RunnerSpec::External)
    }
}

impl Definition {
    /// A definition with default rules around the given runner.
    pub fn new(name: impl Into<String>, runner: RunnerSpec) -> Definition {
        Definition {
            name: name.into(),
            description: None,
            runner,
            timeout: None,
            retry: RetryPolicy::default(),
            rescues: super::run::DEFAULT_RESCUES,
            cancellation: CancellationBehaviour::CanCancel,
            concurrency: None,
            priority: 0,
            rate: None,
            start_interval: None,
            cron: None,
            catch_up: super::run::CatchUp::One,
            parameters: None,
            unique: None,
        }
    }

    /// The `unique_key` of a new task of this definition with these parameters (`None` when
    /// the definition has no `unique` list).
    pub fn unique_key(&self, params: Option<&Parameters>) -> Option<String> {
        self.unique.as_ref().map(|u| u.key(&self.name, params))
    }

    /// How long a run may take: the definition's timeout, else its runner's default.
    /// The rules the stores keep beside the definition row, for the run rules to read.
    pub fn run_policy(&self) -> super::run::RunPolicy {
        super::run::RunPolicy { retry: self.retry, rescues: self.rescues }
    }

    /// The schedule that creates this definition's tasks, if it has one.
    pub fn schedule(&self) -> Option<super::run::Schedule> {
        match (&self.cron, self.start_interval) {
            (Some(c), _) => Some(super::run::Schedule::Cron(c.clone())),
            (None, Some(i)) => Some(super::run::Schedule::Every(i)),
            (None, None) => None,
        }
    }

    pub fn run_timeout(&self) -> Option<Duration> {
        self.timeout.or_else(|| self.runner.default_timeout())
    }

    pub fn builtins() -> [Definition; 2] {
        let mut noop = Definition::new(NOOP, RunnerSpec::Noop);
        noop.description = Some("built-in: succeeds at once".into());
        let mut sleep = Definition::new(SLEEP, RunnerSpec::Sleep);
        sleep.description = Some("built-in: sleeps ParameterObject.Seconds, reporting progress each second".into());
        [noop, sleep]
    }
}

/// Retries of a failed run: up to `restarts` more runs, the n-th after about
/// `backoff * 2^(n-1)` (capped at `max_backoff`), with jitter so a burst of failures spreads out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub restarts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { restarts: 0, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(600) }
    }
}

impl RetryPolicy {
    /// The delay before the run after failed run number `attempt` (1-based). `jitter` in
    /// `[0, 1)` picks a point in the upper half of the window ("equal jitter"): never less than
    /// half the exponential delay, so the backoff still grows.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.backoff.saturating_mul(1u32 << exp).min(self.max_backoff);
        let jitter = jitter.clamp(0.0, 1.0);
        full.mul_f64(0.5 + 0.5 * jitter)
    }

    /// After failed run number `attempt`: `Some(when)` to run again, `None` when the restarts
    /// are used up.
    pub fn after_failure(&self, attempt: u32, jitter: f64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if attempt > self.restarts {
            return None;
        }
        let d = self.delay(attempt, jitter);
        Some(now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
    }
}

/// Texts stored in `Result`. English on purpose: stored data, not a message to the caller.
pub mod results {
    use std::time::Duration;

    pub fn cancelled(by: &str) -> String {
        format!("Cancelled by {by}")
    }
    pub fn timed_out(after: Duration) -> String {
        format!("Timed out after {}", super::format_duration(after))
    }
    pub fn lease_expired(node: &str) -> String {
        format!("Lease expired: {node} stopped renewing it")
    }
    /// A crashed run put back for another attempt.
    pub fn rescued(node: &str) -> String {
        format!("Rescued: {node} stopped renewing the lease mid-run; running again")
    }
    /// The crash that used up the definition's `rescues`.
    pub fn rescued_out(crashes: u32, node: &str) -> String {
        format!(
            "Rescued {crashes} times in a row: each run's node stopped renewing its lease (last {node}); not run again"
        )
    }
    pub fn panicked(what: &str) -> String {
        format!("The run panicked: {what}")
    }
    pub fn retry_scheduled(attempt: u32, why: &str) -> String {
        format!("Attempt {attempt} failed ({why}); retrying")
    }
}

// Results (and the stores, which write them) format durations from here.
pub use super::duration::format_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_type_names_the_body_format() {
        for (ct, f) in [
            ("application/json", BodyFormat::Json),
            ("Application/JSON; charset=utf-8", BodyFormat::Json),
            ("application/vnd.api+json", BodyFormat::Json),
            ("application/x-www-form-urlencoded", BodyFormat::Form),
            ("text/plain", BodyFormat::Text),
            ("application/jsonl", BodyFormat::Text),
            ("", BodyFormat::Text),
        ] {
            assert_eq!(BodyFormat::from_content_type(ct), f, "{ct}");
        }
        assert_eq!(BodyFormat::parse(" JSON "), Some(BodyFormat::Json));
        assert_eq!(BodyFormat::parse("xml"), None);
    }

    #[test]
    fn backoff_grows_exponentially_with_bounded_jitter() {
        let p = RetryPolicy { restarts: 5, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(10) };
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(10), "capped");
        let now = Utc::now();
        assert!(p.after_failure(5, 0.3, now).is_some());
        assert!(p.after_failure(6, 0.3, now).is_none(), "restarts used up");
    }
}
