//! Probes for orchestrators and load balancers, with no credentials: `GET /health/live` (the
//! process answers) and `GET /health/ready` (and its database answers, within
//! [`crate::service::PING_WITHIN`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::i18n::{Key, Msg};

use super::runner::json_response;

/// 200 while the process serves requests. It asks nothing of the database: a restart would not
/// bring an unreachable database back.
pub async fn live() -> Response {
    json_response(&json!({"Status": "Live"}))
}

/// 200 when the database answers; else 503 with `Retry-After` and the usual error body, so a
/// balancer sends requests elsewhere until it does.
pub async fn ready(State(app): State<AppState>) -> Result<Response, ApiError> {
    if let Err(e) = app.tasks.ping().await {
        // Any failure is "not ready": a probe needs no finer answer, the log has the cause.
        tracing::warn!(error = %e, "not ready: the database did not answer");
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::new(Key::StorageUnavailable)));
    }
    Ok(json_response(&json!({"Status": "Ready", "Database": "Available"})))
}
