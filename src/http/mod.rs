//! The HTTP layer: routing, content negotiation, authentication, and the one error path.
//!
//! Requests pass through: path normalisation (prefix, case, trailing slash) → error rendering →
//! the router → handlers, which extract a [`auth`] caller and [`context::Prefs`], call the
//! [`crate::service`] layer, and answer through [`format`].

pub mod auth;
pub mod body;
pub mod context;
pub mod error;
pub mod format;
pub mod routes;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::Uri;
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
    pub auth: Arc<Authenticator>,
}

/// Fixed path segments, in their canonical spelling. Requests may use any letter case.
const FIXED_SEGMENTS: &[&str] = &[
    "api",
    "v1",
    "BatchTask",
    "Agents",
    "Batch",
    "Stop",
    // -- runner (issue 5) --
    "Acquire",
    "Heartbeat",
    "Events",
];

/// `/Cust1/API/v1/batchtask/` → `/api/v1/BatchTask` (prefix removed, fixed words canonical,
/// trailing slash dropped). Other segments (ids, state names, agent methods) are left as sent.
pub fn normalize_path(path: &str, prefix: &str) -> String {
    let mut p = path;
    if !prefix.is_empty() {
        if let Some(head) = p.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) && p[prefix.len()..].starts_with('/') {
                p = &p[prefix.len()..];
            }
        }
    }
    let mut out = String::with_capacity(p.len());
    for seg in p.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        match FIXED_SEGMENTS.iter().find(|w| w.eq_ignore_ascii_case(seg)) {
            Some(w) => out.push_str(w),
            None => out.push_str(seg),
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

async fn rewrite_path(prefix: axum::extract::State<Arc<str>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
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

/// The whole application as one service: path rewriting in front of the router.
pub fn app(state: AppState) -> Router {
    let prefix: Arc<str> = Arc::from(state.config.path_prefix.trim_end_matches('/'));
    let router = routes::router(state).layer(middleware::from_fn(error::render_errors));
    // Rewriting must happen before routing, so it wraps the router rather than being a layer of it.
    Router::new().fallback_service(router).layer(middleware::from_fn_with_state(prefix, rewrite_path))
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
    }
}
