//! Prometheus metrics: `GET /metrics` in the text exposition format (version 0.0.4).
//!
//! Every answered request is counted and timed by route template (`/api/v1/BatchTask/{key}`,
//! never the raw path, so the number of series stays bounded), method and status. Task counts by
//! state are read from the store when scraped. The endpoint needs a `worker` or `admin`
//! credential, like every other view of all tasks; Prometheus sends one with
//! `authorization: {type: Bearer, credentials: <token>}` (a `read` token of such an associate).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};

use crate::domain::{BatchTaskState, Caller};
use crate::http::AppState;
use crate::http::error::ApiError;

/// Upper bounds (seconds) of the request-duration histogram's buckets.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Series {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative; summed on output).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// The server's counters, shared by all requests.
pub struct Metrics {
    started: Instant,
    /// By route template, then (method, status): looked up by the template as the router has
    /// it, so that a request copies no string (a route's first request adds its entry).
    requests: Mutex<ByRoute>,
}

/// Route template → (method, status, histogram).
type ByRoute = HashMap<String, Vec<(&'static str, u16, Histogram)>>;

impl Default for Metrics {
    fn default() -> Self {
        Metrics { started: Instant::now(), requests: Mutex::new(HashMap::new()) }
    }
}

impl Metrics {
    fn observe(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock");
        let by_route = match requests.get_mut(route) {
            Some(v) => v,
            None => requests.entry(route.to_owned()).or_default(),
        };
        let h = match by_route.iter().position(|(m, s, _)| *m == method && *s == status) {
            Some(i) => &mut by_route[i].2,
            None => {
                by_route.push((method, status, Histogram::default()));
                &mut by_route.last_mut().expect("just pushed").2
            }
        };
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum_seconds += seconds;
    }

    /// The text exposition of the request series, the task counts and the uptime.
    pub fn render(&self, tasks: &[(BatchTaskState, i64)]) -> String {
        let mut out = String::new();
        let requests = self.requests.lock().expect("metrics lock");
        let mut series: Vec<(Series, &Histogram)> = requests
            .iter()
            .flat_map(|(route, v)| {
                v.iter().map(|(method, status, h)| (Series { route: route.clone(), method, status: *status }, h))
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str(
            "# HELP batchd_http_requests_total HTTP requests answered, by route template, method and status.\n",
        );
        out.push_str("# TYPE batchd_http_requests_total counter\n");
        for (s, h) in &series {
            let _ = writeln!(out, "batchd_http_requests_total{{{}}} {}", labels(s), h.count);
        }
        out.push_str("# HELP batchd_http_request_duration_seconds Time from routing to the answer's headers.\n");
        out.push_str("# TYPE batchd_http_request_duration_seconds histogram\n");
        for (s, h) in &series {
            let labels = labels(s);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "batchd_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "batchd_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "batchd_http_request_duration_seconds_sum{{{labels}}} {}", h.sum_seconds);
            let _ = writeln!(out, "batchd_http_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        drop(requests);
        out.push_str("# HELP batchd_tasks Tasks in the store, by state.\n# TYPE batchd_tasks gauge\n");
        for state in BatchTaskState::ALL_NAMES {
            let n = tasks.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "batchd_tasks{{state=\"{}\"}} {n}", state.name());
        }
        out.push_str(
            "# HELP batchd_uptime_seconds Seconds since the server started.\n# TYPE batchd_uptime_seconds gauge\n",
        );
        let _ = writeln!(out, "batchd_uptime_seconds {}", self.started.elapsed().as_secs_f64());
        out.push_str("# HELP batchd_build_info The running version.\n# TYPE batchd_build_info gauge\n");
        let _ = writeln!(out, "batchd_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        out
    }
}

/// Route templates and method names contain no `"` or `\`, so they need no escaping.
fn labels(s: &Series) -> String {
    format!("route=\"{}\",method=\"{}\",status=\"{}\"", s.route, s.method, s.status)
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Times one request from routing to its answer; see [`super::finish`].
pub struct Timer {
    started: Instant,
    /// The template (a reference-counted string of the router's), `None` when no route matched.
    route: Option<MatchedPath>,
    method: &'static str,
}

impl Timer {
    pub fn start(req: &Request) -> Timer {
        let route = req.extensions().get::<MatchedPath>().cloned();
        Timer { started: Instant::now(), route, method: method_label(req.method()) }
    }

    /// Counts the request and writes its one log line. The route is the template, never the
    /// path as sent: no query string, ids or anything else a client put in the URL.
    pub fn finish(self, metrics: &Metrics, res: &Response, request_id: &str) {
        let seconds = self.started.elapsed().as_secs_f64();
        let status = res.status().as_u16();
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        tracing::info!(
            target: "batchd::request",
            method = self.method,
            route,
            status,
            latency_ms = (seconds * 1e6).round() / 1e3,
            request_id,
            "request"
        );
        metrics.observe(route, self.method, status, seconds);
    }
}

/// `GET /metrics`
pub async fn serve(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let tasks = app.tasks.count_by_state(&caller).await?;
    let mut body = app.metrics.render(&tasks);
    body.push_str(
        "# HELP batchd_password_checks_total Passwords verified with argon2 (cache misses of Basic and logins).\n\
         # TYPE batchd_password_checks_total counter\n",
    );
    let _ = writeln!(body, "batchd_password_checks_total {}", app.auth.password_checks());
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
