//! `batchd task watch`: follows a task to its end, with a bar on a terminal and plain lines
//! elsewhere.
//!
//! Where the news comes from is behind [`Updates`]: [`Streaming`] (the server's event stream,
//! `?task=ID`, each event a cue to read the task again) or, where there is no stream (an older
//! server, a proxy that refuses it), [`Polling`] (conditional GETs), without the display changing.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use reqwest::header;
use serde_json::Value;

use batchd::domain::duration::format_duration;

use super::client::{Answer, Client};
use super::{CliError, Exit};

/// A task as last seen.
#[derive(Clone)]
pub struct Snapshot {
    /// The `BatchTaskInfo` as the server sent it.
    pub body: bytes::Bytes,
    pub state: String,
    pub percent: Option<u8>,
    pub description: String,
    pub result: String,
    /// How long it had been running when seen, by the server's clock (its `Date` minus
    /// `LastStarted`), so a client with a skewed clock still shows the right time.
    pub running_for: Option<Duration>,
    pub seen: Instant,
}

impl Snapshot {
    fn from_answer(a: &Answer) -> Result<Snapshot, CliError> {
        let t = a.json()?;
        let text = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let started = t
            .get("LastStarted")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        let state = text("State");
        let mut s = Snapshot {
            body: a.body.clone(),
            percent: t.get("ProgressPercent").and_then(Value::as_u64).map(|p| p.min(100) as u8),
            description: text("ProgressDescription"),
            result: text("Result"),
            running_for: None,
            seen: Instant::now(),
            state,
        };
        s.running_for = started.and_then(|st| running_for(st, &a.headers));
        Ok(s)
    }

    pub fn is_final(&self) -> bool {
        matches!(self.state.as_str(), "Succeeded" | "Failed" | "SucceededManualCleanup")
    }

    fn waiting(&self) -> bool {
        matches!(self.state.as_str(), "New" | "Aquired")
    }
}

/// Now minus `started`, by the local clock unless it is off from the server's `Date` by more
/// than that header's one-second resolution explains.
fn running_for(started: DateTime<Utc>, headers: &header::HeaderMap) -> Option<Duration> {
    let local = Utc::now();
    let server = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .map(DateTime::<Utc>::from);
    let now = match server {
        // `Date` is truncated to the second: its middle is the better guess.
        Some(s) if (local - s).num_milliseconds().abs() > 2000 => s + chrono::TimeDelta::milliseconds(500),
        _ => local,
    };
    Some((now - started).to_std().unwrap_or_default())
}

/// Where news of a task comes from: the task now, then each time it may have changed.
pub(crate) trait Updates {
    async fn next(&mut self) -> Result<Snapshot, CliError>;
}

/// How long the server may be unreachable during a watch (a restart, say) before giving up.
const UNREACHABLE_FOR: Duration = Duration::from_secs(30);

/// [`Updates`] by asking every `interval`, with `If-None-Match` so an unchanged task costs a
/// 304 and no body.
pub struct Polling<'a> {
    client: &'a Client,
    path: String,
    interval: Duration,
    last: Option<(String, Snapshot)>,
    /// Once the server has answered, losing it is taken for a restart and waited out; a server
    /// that never answered is a wrong URL, reported at once.
    answered: bool,
}

impl<'a> Polling<'a> {
    pub fn new(client: &'a Client, id: u32, interval: Duration) -> Polling<'a> {
        Polling { client, path: format!("/api/v1/BatchTask/{id}"), interval, last: None, answered: false }
    }

    async fn ask(&self) -> Result<Answer, CliError> {
        let mut failing_since: Option<Instant> = None;
        loop {
            let conditional: Vec<_> = self.last.iter().map(|(etag, _)| (header::IF_NONE_MATCH, etag.clone())).collect();
            match self.client.send(reqwest::Method::GET, &self.path, None, &conditional).await {
                Err(e)
                    if e.transient && self.answered && failing_since.is_none_or(|t| t.elapsed() < UNREACHABLE_FOR) =>
                {
                    failing_since.get_or_insert_with(Instant::now);
                    tokio::time::sleep(self.interval.max(Duration::from_secs(1))).await;
                }
                other => return other,
            }
        }
    }
}

impl Updates for Polling<'_> {
    async fn next(&mut self) -> Result<Snapshot, CliError> {
        if self.answered {
            tokio::time::sleep(self.interval).await;
        }
        self.read().await
    }
}

impl Polling<'_> {
    /// The task now (a 304 keeps the last snapshot, with the time moved on).
    async fn read(&mut self) -> Result<Snapshot, CliError> {
        let a = self.ask().await?;
        self.answered = true;
        if a.status == reqwest::StatusCode::NOT_MODIFIED
            && let Some((_, last)) = &mut self.last
        {
            // Unchanged: only the time moved on.
            if let Some(r) = last.running_for.as_mut() {
                *r += last.seen.elapsed();
            }
            last.seen = Instant::now();
            return Ok(last.clone());
        }
        let s = Snapshot::from_answer(&a)?;
        let etag = a.headers.get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.last = etag.map(|e| (e, s.clone()));
        Ok(s)
    }
}

/// Longest silence on a stream (the server sends a keep-alive every 15 s) before it is taken
/// for lost and opened again.
const STREAM_SILENCE: Duration = Duration::from_secs(60);

/// [`Updates`] from the event stream: the task is read once the stream is open (so no change
/// falls between), then again after each event about it. A lost stream is opened again with
/// `Last-Event-ID`; when that fails too, [`Polling`] takes over.
pub struct Streaming<'a> {
    reader: Polling<'a>,
    path: String,
    stream: Option<reqwest::Response>,
    buf: Vec<u8>,
    last_event_id: Option<String>,
    started: bool,
    opened: Instant,
}

impl<'a> Streaming<'a> {
    pub fn new(client: &'a Client, id: u32, interval: Duration) -> Streaming<'a> {
        Streaming {
            reader: Polling::new(client, id, interval),
            path: format!("/api/v1/BatchTask/Events/stream?task={id}"),
            stream: None,
            buf: Vec::new(),
            last_event_id: None,
            started: false,
            opened: Instant::now(),
        }
    }

    /// Waits for the next event; `false` when the stream is gone and could not be opened again.
    /// A stream that ends (the server closes each after a while, or restarts) is opened again
    /// with `Last-Event-ID`, unless it ended within a second of opening: then polling takes over.
    async fn next_event(&mut self) -> bool {
        loop {
            let Some(stream) = self.stream.as_mut() else { return false };
            loop {
                if let Some(at) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..at + 2).collect();
                    let text = String::from_utf8_lossy(&block);
                    let mut event = false;
                    for line in text.lines() {
                        if let Some(id) = line.strip_prefix("id:") {
                            self.last_event_id = Some(id.trim().to_owned());
                        } else if line.starts_with("event:") {
                            event = true;
                        }
                    }
                    if event {
                        return true;
                    }
                    continue;
                }
                match tokio::time::timeout(STREAM_SILENCE, stream.chunk()).await {
                    // Bounded: one event is a line of JSON, far below this.
                    Ok(Ok(Some(bytes))) if self.buf.len() + bytes.len() <= 1024 * 1024 => {
                        self.buf.extend_from_slice(&bytes)
                    }
                    _ => break,
                }
            }
            if self.opened.elapsed() < Duration::from_secs(1) {
                self.stream = None;
                return false;
            }
            let last = self.last_event_id.clone();
            self.open(last.as_deref()).await;
        }
    }

    async fn open(&mut self, last_event_id: Option<&str>) {
        self.stream = self.reader.client.open_stream(&self.path, last_event_id).await;
        self.buf.clear();
        self.opened = Instant::now();
    }
}

impl Updates for Streaming<'_> {
    async fn next(&mut self) -> Result<Snapshot, CliError> {
        if !self.started {
            self.started = true;
            self.open(None).await;
            let s = self.reader.read().await?;
            self.reader.answered = true;
            return Ok(s);
        }
        if self.stream.is_some() && self.next_event().await {
            return self.reader.read().await;
        }
        self.reader.next().await
    }
}

/// The running time and the estimate, as shown beside the bar.
#[derive(Clone)]
struct Clock {
    waiting_since: Instant,
    running_for: Option<Duration>,
    seen: Instant,
    percent: Option<u8>,
    waiting: bool,
}

impl Clock {
    fn new() -> Clock {
        let now = Instant::now();
        Clock { waiting_since: now, running_for: None, seen: now, percent: None, waiting: true }
    }

    fn update(&mut self, s: &Snapshot) {
        self.running_for = s.running_for;
        self.seen = s.seen;
        self.percent = s.percent;
        self.waiting = s.waiting();
    }

    fn elapsed(&self, now: Instant) -> Option<Duration> {
        self.running_for.map(|r| r + now.saturating_duration_since(self.seen))
    }

    fn text(&self, now: Instant) -> String {
        if self.waiting {
            return format!("waiting {}", seconds(now.saturating_duration_since(self.waiting_since)));
        }
        let Some(elapsed) = self.elapsed(now) else { return String::new() };
        match self.percent {
            Some(p @ 1..=99) => {
                let left = elapsed.mul_f64(f64::from(100 - p) / f64::from(p));
                format!("{} elapsed, about {} left", seconds(elapsed), seconds(left))
            }
            _ => format!("{} elapsed", seconds(elapsed)),
        }
    }
}

/// Whole seconds: the bar is no stopwatch.
fn seconds(d: Duration) -> String {
    format_duration(Duration::from_secs(d.as_secs()))
}

enum Display {
    Bar { bar: ProgressBar, clock: Arc<Mutex<Clock>> },
    Lines { last: Option<(String, Option<u8>, String)>, clock: Clock },
}

impl Display {
    fn new(id: u32) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display::Lines { last: None, clock: Clock::new() };
        }
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let template = if color {
            "{prefix:.bold} [{bar:30.cyan/blue}] {pos:>3}% {clock:.dim} {wide_msg}"
        } else {
            "{prefix} [{bar:30}] {pos:>3}% {clock} {wide_msg}"
        };
        let clock = Arc::new(Mutex::new(Clock::new()));
        let shown = clock.clone();
        let style = ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("=> ")
            .with_key("clock", move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let text = shown.lock().map(|c| c.text(Instant::now())).unwrap_or_default();
                let _ = w.write_str(&text);
            });
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr()).with_style(style);
        bar.set_prefix(format!("task {id}"));
        // Redrawn between polls, so the elapsed time keeps moving.
        bar.enable_steady_tick(Duration::from_millis(250));
        Display::Bar { bar, clock }
    }

    fn show(&mut self, id: u32, s: &Snapshot) {
        match self {
            Display::Bar { bar, clock } => {
                if let Ok(mut c) = clock.lock() {
                    c.update(s);
                }
                bar.set_prefix(format!("task {id} {}", s.state));
                bar.set_position(s.percent.map_or(0, u64::from));
                bar.set_message(s.description.clone());
            }
            Display::Lines { last, clock } => {
                clock.update(s);
                let now = (s.state.clone(), s.percent, s.description.clone());
                if last.as_ref() == Some(&now) {
                    return;
                }
                let percent = s.percent.map_or_else(String::new, |p| format!(" {p}%"));
                let description = if s.description.is_empty() { String::new() } else { format!(" {}", s.description) };
                eprintln!("task {id}: {}{percent}{description} ({})", s.state, clock.text(Instant::now()));
                *last = Some(now);
            }
        }
    }

    fn finish(self) {
        if let Display::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

/// Follows task `id` until it ends; prints its Result (or, with `json`, the task) on stdout and
/// answers the exit code: Succeeded and SucceededManualCleanup 0, Failed 1.
pub async fn watch(updates: &mut impl Updates, id: u32, json: bool) -> Result<Exit, CliError> {
    let mut display = Display::new(id);
    let last = loop {
        let s = match updates.next().await {
            Ok(s) => s,
            Err(e) => {
                display.finish();
                return Err(e);
            }
        };
        display.show(id, &s);
        if s.is_final() {
            break s;
        }
    };
    display.finish();
    let took = last.running_for.map_or_else(String::new, |r| format!(" after {}", seconds(r)));
    eprintln!("task {id} {}{took}", last.state);
    let mut out = std::io::stdout().lock();
    if json {
        let _ = out.write_all(&last.body);
        let _ = out.write_all(b"\n");
    } else if !last.result.is_empty() {
        let _ = writeln!(out, "{}", last.result);
    }
    let _ = out.flush();
    Ok(if last.state == "Failed" { Exit::TaskFailed } else { Exit::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_scales_the_elapsed_time_by_what_is_left() {
        let now = Instant::now();
        let c = Clock {
            waiting_since: now,
            running_for: Some(Duration::from_secs(10)),
            seen: now,
            percent: Some(25),
            waiting: false,
        };
        assert_eq!(c.text(now), "10s elapsed, about 30s left");
        let done = Clock { percent: Some(100), ..c.clone() };
        assert_eq!(done.text(now), "10s elapsed");
        let waiting = Clock { waiting: true, ..c };
        assert_eq!(waiting.text(now), "waiting 0s");
    }

    /// A scripted source: what an event stream would hand the display.
    struct Scripted(Vec<Snapshot>);
    impl Updates for Scripted {
        async fn next(&mut self) -> Result<Snapshot, CliError> {
            Ok(self.0.remove(0))
        }
    }

    fn snap(state: &str, percent: u8) -> Snapshot {
        Snapshot {
            body: bytes::Bytes::from_static(b"{}"),
            state: state.into(),
            percent: Some(percent),
            description: String::new(),
            result: "r".into(),
            running_for: Some(Duration::from_secs(1)),
            seen: Instant::now(),
        }
    }

    #[tokio::test]
    async fn a_watch_ends_with_the_exit_code_of_the_final_state() {
        let mut ok = Scripted(vec![snap("New", 0), snap("Started", 50), snap("Succeeded", 100)]);
        assert_eq!(watch(&mut ok, 1, false).await.unwrap(), Exit::Ok);
        let mut failed = Scripted(vec![snap("Started", 10), snap("Failed", 10)]);
        assert_eq!(watch(&mut failed, 2, false).await.unwrap(), Exit::TaskFailed);
        let mut cleanup = Scripted(vec![snap("SucceededManualCleanup", 100)]);
        assert_eq!(watch(&mut cleanup, 3, false).await.unwrap(), Exit::Ok);
    }
}
