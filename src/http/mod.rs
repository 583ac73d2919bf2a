//! The HTTP layer: routing, content negotiation, authentication, and the one error path.
//!
//! Requests pass through: path normalisation (prefix, case, trailing slash) → error rendering →
//! the router → handlers, which extract a [`auth`] caller and [`context::Prefs`], call the
//! [`crate::service`] layer, and answer through [`format`].

pub mod answers;
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

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::response::Response;
use axum::routing::future::RouteFuture;

use crate::config::Config;
use crate::service::TaskService;

use auth::Authenticator;

/// Everything a handler may need, shared by reference: one reference count for all of it, as
/// axum clones the state for every request (twice for a handler taking `State`), and each count
/// is a cache line the runtime's threads pass between them.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub config: Arc<Config>,
    pub tasks: TaskService,
    pub identity: crate::identity::IdentityService,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<metrics::Metrics>,
    /// The live event stream's fan-out (`GET /api/v1/BatchTask/Events/stream`).
    pub hub: hub::Hub,
    /// Encoded answers of `GET /api/v1/BatchTask/{id}`.
    pub answers: Arc<answers::Answers>,
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
        match fixed_word(seg).filter(|_| caseless) {
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
    !is_caseless(path) || path.split('/').all(|seg| fixed_word(seg).is_none_or(|w| w == seg))
}

/// The fixed word `seg` spells in some letter case, if it is one. Run on every segment of every
/// request: the length is compared first, which rules most words out at once.
fn fixed_word(seg: &str) -> Option<&'static str> {
    let b = seg.as_bytes();
    FIXED_SEGMENTS.iter().copied().find(|w| w.len() == b.len() && w.as_bytes().eq_ignore_ascii_case(b))
}

/// Rewrites the request's path to its [`normalize_path`] form (in place; nothing when it is
/// normal already, the common case).
fn rewrite_path(req: &mut Request, prefix: &str) {
    let path = req.uri().path();
    if is_normal(path, prefix) {
        return;
    }
    let normal = normalize_path(path, prefix);
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
}

/// What every routed answer passes through: the one error path, then the metrics, the log line
/// and the `X-Request-Id` answer header. A layer of the router, so it sees the matched route
/// template. A plain service with its own future, not an axum `from_fn` middleware, which
/// boxes a future and clones the service it wraps on every request.
#[derive(Clone)]
struct FinishLayer(Arc<metrics::Metrics>);

impl<S> tower::Layer<S> for FinishLayer {
    type Service = Finish<S>;
    fn layer(&self, inner: S) -> Finish<S> {
        Finish { inner, metrics: self.0.clone() }
    }
}

#[derive(Clone)]
struct Finish<S> {
    inner: S,
    metrics: Arc<metrics::Metrics>,
}

impl<S> tower::Service<Request> for Finish<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Finishing<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Finishing<S::Future> {
        let timer = metrics::Timer::start(&req);
        let id = request_id(&req);
        let errors = error::Errors::of(&req);
        Finishing { inner: self.inner.call(req), after: Some((timer, id, errors, self.metrics.clone())) }
    }
}

struct Finishing<F> {
    inner: F,
    after: Option<(metrics::Timer, RequestId, error::Errors, Arc<metrics::Metrics>)>,
}

impl<F: Future<Output = Result<Response, Infallible>> + Unpin> Future for Finishing<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // A handler that panics answers a 500 by the one error path, with its log line, metric
        // and request id, instead of a dropped connection. Its future is not polled again.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Pin::new(&mut this.inner).poll(cx)));
        let res = match polled {
            Ok(ready) => {
                let Ok(res) = ready!(ready);
                res
            }
            Err(_) => {
                let id = this.after.as_ref().map(|a| a.1.as_str().to_owned()).unwrap_or_default();
                tracing::error!(request_id = %id, "a request's handler panicked; answered 500");
                axum::response::IntoResponse::into_response(error::ApiError::internal())
            }
        };
        let (timer, id, errors, metrics) = this.after.take().expect("polled after completion");
        let mut res = errors.finish(res);
        timer.finish(&metrics, &res, id.as_str());
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        Poll::Ready(Ok(res))
    }
}

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Longest `X-Request-Id` taken from a client; longer ones are replaced, not cut.
const REQUEST_ID_MAX: usize = 64;

/// A request's id: the client's, or one made here (16 hex digits). Kept inline, as it is
/// at most [`REQUEST_ID_MAX`] visible ASCII characters.
struct RequestId {
    len: u8,
    bytes: [u8; REQUEST_ID_MAX],
}

impl RequestId {
    fn as_str(&self) -> &str {
        // Only visible ASCII is ever put in (see `request_id`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// The client's `X-Request-Id` when it is a plain token (so it is safe in a log line and a
/// header), else a new random one: 16 hex digits.
fn request_id(req: &Request) -> RequestId {
    let mut id = RequestId { len: 0, bytes: [0; REQUEST_ID_MAX] };
    let sent = req.headers().get(REQUEST_ID).map(HeaderValue::as_bytes);
    match sent {
        Some(b) if !b.is_empty() && b.len() <= REQUEST_ID_MAX && b.iter().all(|c| c.is_ascii_graphic()) => {
            id.bytes[..b.len()].copy_from_slice(b);
            id.len = b.len() as u8;
        }
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let n = rand::random::<u64>();
            for (i, byte) in id.bytes[..16].iter_mut().enumerate() {
                *byte = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
            }
            id.len = 16;
        }
    }
    id
}

/// The path rewritten in front of the router: before routing, so that the canonical path is
/// the one routed.
#[derive(Clone)]
pub struct Rewrite {
    router: Router,
    prefix: Arc<str>,
}

impl tower::Service<Request> for Rewrite {
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> RouteFuture<Infallible> {
        rewrite_path(&mut req, &self.prefix);
        tower::Service::call(&mut self.router, req)
    }
}

/// The whole application as one service: [`Rewrite`] and the router, CORS outermost when
/// configured (a preflight is answered before authentication, which it cannot carry).
#[derive(Clone)]
pub enum App {
    Plain(Rewrite),
    Cors(Box<tower_http::cors::Cors<Rewrite>>),
}

// The large variant is the common one: boxing it would cost an allocation a request.
#[allow(clippy::large_enum_variant)]
pub enum AppFuture {
    Plain(RouteFuture<Infallible>),
    Cors(Pin<Box<tower_http::cors::ResponseFuture<RouteFuture<Infallible>>>>),
}

impl App {
    pub fn call(&self, req: Request) -> AppFuture {
        use tower::Service;
        match self {
            App::Plain(r) => AppFuture::Plain(r.clone().call(req)),
            App::Cors(c) => {
                let mut cors: tower_http::cors::Cors<Rewrite> = (**c).clone();
                AppFuture::Cors(Box::pin(cors.call(req)))
            }
        }
    }
}

impl Future for AppFuture {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let res = match self.get_mut() {
            AppFuture::Plain(f) => ready!(Pin::new(f).poll(cx)),
            AppFuture::Cors(f) => ready!(f.as_mut().poll(cx)),
        };
        Poll::Ready(match res {
            Ok(res) => res,
            Err(never) => match never {},
        })
    }
}

/// The whole application: path rewriting in front of the router, CORS outermost.
pub fn app(state: AppState) -> App {
    let prefix: Arc<str> = Arc::from(state.config.path_prefix.trim_end_matches('/'));
    let cors = cors_layer(&state.config.access.cors_origins);
    let finishing = FinishLayer(state.metrics.clone());
    let router = routes::router(state).layer(finishing);
    let rewrite = Rewrite { router, prefix };
    match cors {
        Some(cors) => App::Cors(Box::new(tower::Layer::layer(&cors, rewrite))),
        None => App::Plain(rewrite),
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

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_error_body_and_request_id() {
        use tower::{Layer, Service};
        let handler = tower::service_fn(|_req: super::Request| {
            Box::pin(async {
                if true {
                    panic!("a bug");
                }
                Ok::<super::Response, std::convert::Infallible>(super::Response::default())
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        });
        let mut svc = super::FinishLayer(std::sync::Arc::default()).layer(handler);
        let req = axum::http::Request::builder()
            .uri("/api/v1/BatchTask/1")
            .header("Accept", "application/json")
            .header("X-Request-Id", "req-7")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = svc.call(req).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers().get("x-request-id").unwrap(), "req-7");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("InternalServerException"), "{text}");
        assert!(!text.contains("a bug"), "the panic's text stays out of the answer: {text}");
    }

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
