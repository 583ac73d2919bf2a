//! The yardstick of bench/http.sh: a bare axum handler answering `GET /` with a short text,
//! on tokio's default multi-threaded runtime, so that batchd's request rates can be read as a
//! fraction of what axum itself does on the same machine in the same run.
//!   cargo run --release --example hello -- 127.0.0.1:18840
use axum::{Router, routing::get};

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18840".into());
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
