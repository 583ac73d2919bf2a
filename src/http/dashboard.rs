//! The dashboard: one HTML page for every dashboard path (the script picks the view from the
//! path) and its script and style sheet, all compiled into the binary. No CDN, no build step.
//!
//! Assets live under `/ui/<version>/`, where the version is a hash of their bytes: they are
//! cached for a year (`immutable`) and a new binary with other assets changes every URL. The page
//! itself is `no-cache`, so a browser always learns the current version. Every answer carries a
//! strict Content-Security-Policy: only this origin's script and styles, no inline script, no
//! framing; the script builds the DOM with `textContent`, so task text cannot become markup.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("dashboard/index.html");

/// The files under `/ui/<version>/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("dashboard/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("dashboard/app.css")),
    ("icon.svg", "image/svg+xml", include_bytes!("dashboard/icon.svg")),
];

/// `default-src 'self'` and nothing inline; `connect-src 'self'` covers fetch and EventSource.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The assets' version: FNV-1a (64 bits) over every asset and the page, as 16 hex digits.
pub static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for bytes in ASSETS.iter().map(|(_, _, b)| *b).chain([INDEX.as_bytes()]) {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
});

/// The page with its asset URLs pointing at this version.
static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("{{version}}", &ASSET_VERSION));

fn secured(mut res: Response, cache: &'static str) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    res
}

/// The page, for `/`, `/login`, `/tasks`, `/definitions`, `/nodes`. It needs no credentials:
/// it holds no data, and its script asks the API (which does) once loaded.
pub async fn page() -> Response {
    let res = (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE.as_str()).into_response();
    secured(res, "no-cache")
}

/// `/tasks/{id}`: the page, when the id is a task id (digits); else 404 like an unknown path.
pub async fn task_page(Path(id): Path<String>) -> Response {
    if id.is_empty() || id.len() > 10 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return not_found();
    }
    page().await
}

/// `/ui/{version}/{file}`: an asset of this version; other versions and names are 404.
pub async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|(name, _, _)| *name == file);
    match found {
        Some((_, content_type, bytes)) if version == *ASSET_VERSION => {
            let res = (StatusCode::OK, [(header::CONTENT_TYPE, *content_type)], *bytes).into_response();
            secured(res, "public, max-age=31536000, immutable")
        }
        _ => not_found(),
    }
}

/// A bare 404: the one error path (`http::error`) turns it into the usual "no endpoint" body.
fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}
