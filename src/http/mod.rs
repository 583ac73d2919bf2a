//! The HTTP layer: routing, content negotiation, authentication, and the one error path.
//!
//! Requests pass through: path normalisation (prefix, case, trailing slash) → error rendering →
//! the router → handlers, which extract a [`auth`] caller and [`context::Prefs`], call the
//! [`crate::service`] layer, and answer through [`format`].

pub mod apidocs;
pub mod auth;
pub mod body;
pub mod clock;
pub mod conditional;
pub mod context;
pub mod dashboard;
pub mod error;
pub mod format;
pub mod forwarded;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod ratelimit;
pub mod routes;
pub mod serve;
pub mod wire;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::config::Config;
use crate::service::TaskService;

use auth::Authenticator;

/// Everything a handler may need, shared by reference.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub tasks: TaskService,
    pub identity: crate::identity::IdentityService,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<metrics::Metrics>,
    /// The live event stream's fan-out (`GET /api/v1/BatchTask/Events/stream`).
    pub hub: hub::Hub,
}

/// Fixed path segments, in their canonical spelling. Requests may use any letter case.
const FIXED_SEGMENTS: &[&str] = &[
    "api",
    "v1",
    "BatchTask",
    "Agents",
    "Batch",
    "Stop",
    // -- definitions --
    "Definitions",
    // identity and access
    "Associate",
    "Ticket",
    "Token",
    "Session",
    "SoPrincipal",
    "AuthenticateUsernamePassword",
    // -- runner --
    "Acquire",
    "Heartbeat",
    "Events",
    "stream",
    // -- dependencies --
    "Dependencies",
    // -- nodes and health --
    "Nodes",
    // -- stats --
    "Stats",
    "health",
    "live",
    "ready",
    "docs",
];

/// The first segments of the paths whose fixed words may come in any case: the API and the health
/// checks. The dashboard's own pages (`/definitions`, `/nodes`) are spelt as they are.
const CASELESS_ROOTS: &[&str] = &["api", "health"];

/// Whether a path (its prefix removed) spells its fixed words in any case.
fn is_caseless(path: &str) -> bool {
    let first = path.split('/').find(|s| !s.is_empty()).unwrap_or("");
    CASELESS_ROOTS.iter().any(|root| root.eq_ignore_ascii_case(first))
}

/// `/Cust1/API/v1/batchtask/` → `/api/v1/BatchTask` (prefix removed, fixed words canonical under
/// the [`CASELESS_ROOTS`], trailing slash dropped). Other segments (ids, state names, agent
/// methods) are left as sent.
pub fn normalize_path(path: &str, prefix: &str) -> String {
    let mut p = path;
    if !prefix.is_empty() {
        if let Some(head) = p.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) && p[prefix.len()..].starts_with('/') {
                p = &p[prefix.len()..];
            }
        }
    }
    let caseless = is_caseless(p);
    let mut out = String::with_capacity(p.len());
    for seg in p.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        match FIXED_SEGMENTS.iter().find(|w| caseless && w.eq_ignore_ascii_case(seg)) {
            Some(w) => out.push_str(w),
            None => out.push_str(seg),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// True when `normalize_path` would leave `path` as it is (the common case: no allocation).
fn is_normal(path: &str, prefix: &str) -> bool {
    if path.len() > 1 && path.ends_with('/') || path.contains("//") {
        return false;
    }
    if !prefix.is_empty() && path.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix)) {
        return false;
    }
    !is_caseless(path)
        || path.split('/').all(|seg| FIXED_SEGMENTS.iter().all(|w| !w.eq_ignore_ascii_case(seg) || *w == seg))
}

async fn rewrite_path(prefix: axum::extract::State<Arc<str>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_normal(path, &prefix) {
        return next.run(req).await;
    }
    let normal = normalize_path(path, &prefix);
    if normal != path {
        let mut parts = req.uri().clone().into_parts();
        let pq = match req.uri().query() {
            Some(q) => format!("{normal}?{q}"),
            None => normal,
        };
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    next.run(req).await
}

/// What every routed answer passes through: the one error path, then the metrics, the log line
/// and the `X-Request-Id` answer header. A layer of the router, so it sees the matched route
/// template. One layer for all, not several: another axum middleware layer costs about 2,000
/// instructions a request, 3% of a GET (bench/instructions.sh).
async fn finish(
    axum::extract::State(metrics): axum::extract::State<Arc<metrics::Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let timer = metrics::Timer::start(&req);
    let id = request_id(&req);
    let mut res = error::render_errors(req, next).await;
    timer.finish(&metrics, &res, &id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` taken from a client; longer ones are replaced, not cut.
const REQUEST_ID_MAX: usize = 64;

/// The client's `X-Request-Id` when it is a plain token (so it is safe in a log line and a
/// header), else a new random one: 16 hex digits.
fn request_id(req: &Request) -> String {
    let sent = req.headers().get(REQUEST_ID).map(HeaderValue::as_bytes);
    match sent {
        Some(b) if !b.is_empty() && b.len() <= REQUEST_ID_MAX && b.iter().all(|c| c.is_ascii_graphic()) => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => format!("{:016x}", rand::random::<u64>()),
    }
}

/// The whole application as one service: path rewriting in front of the router.
pub fn app(state: AppState) -> Router {
    let prefix: Arc<str> = Arc::from(state.config.path_prefix.trim_end_matches('/'));
    let cors = cors_layer(&state.config.access.cors_origins);
    let finishing = middleware::from_fn_with_state(state.metrics.clone(), finish);
    let router = routes::router(state).layer(finishing);
    // Rewriting must happen before routing, so it wraps the router rather than being a layer of it.
    let app = Router::new().fallback_service(router).layer(middleware::from_fn_with_state(prefix, rewrite_path));
    // CORS outermost: a preflight is answered before authentication, which it cannot carry.
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// CORS for the configured origins (`[auth] cors_origins`); none configured = no CORS headers at
/// all, so browsers keep other sites out. `*` allows any origin but never with cookies.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let headers = [
        "authorization",
        "content-type",
        "accept",
        "accept-language",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "so-apptoken",
        "so-language",
        "so-culture",
        "so-timezone",
        "x-xsrf-token",
        "x-lease-token",
        "x-request-id",
        "idempotency-key",
    ]
    .map(HeaderName::from_static);
    let methods = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let layer = CorsLayer::new()
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers([
            axum::http::header::ETAG,
            axum::http::header::LOCATION,
            axum::http::header::WARNING,
            REQUEST_ID,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return Some(layer.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> =
        origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()).collect();
    Some(layer.allow_origin(AllowOrigin::list(list)).allow_credentials(true))
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn normalizes_prefix_case_and_slashes() {
        assert_eq!(normalize_path("/API/V1/batchtask/", ""), "/api/v1/BatchTask");
        assert_eq!(normalize_path("/Cust123/api/v1/BatchTask/7/STOP", "/Cust123"), "/api/v1/BatchTask/7/Stop");
        assert_eq!(normalize_path("/cust123/api", "/Cust123"), "/api");
        assert_eq!(
            normalize_path("/api/v1/Agents/batch/GetBatchTaskInfo", ""),
            "/api/v1/Agents/Batch/GetBatchTaskInfo"
        );
        assert_eq!(normalize_path("/", ""), "/");
        assert_eq!(normalize_path("/Health/LIVE", ""), "/health/live");
        // The dashboard's pages are not the API: their words keep the case they came in.
        assert_eq!(normalize_path("/definitions", ""), "/definitions");
        assert_eq!(normalize_path("/nodes/", ""), "/nodes");
    }

    #[test]
    fn is_normal_agrees_with_normalize_path() {
        for (path, prefix) in [
            ("/api/v1/BatchTask/1", ""),
            ("/api/v1/batchtask/1", ""),
            ("/api/v1/BatchTask/", ""),
            ("/api//v1", ""),
            ("/", ""),
            ("/Cust1/api", "/Cust1"),
            ("/api/v1/Agents/Batch/GetBatchTaskInfo", "/Cust1"),
            ("/API", ""),
            ("/definitions", ""),
            ("/Definitions", ""),
            ("/health/LIVE", ""),
        ] {
            assert_eq!(super::is_normal(path, prefix), normalize_path(path, prefix) == path, "{path} {prefix}");
        }
    }
}
