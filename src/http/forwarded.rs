//! Where a request came from and how the client reached us: the client address (for the login
//! throttles) and the scheme and host of absolute URLs (`GET /api`, `GET /api/v1`,
//! `odata.nextLink`). Forwarding headers count only from trusted proxies (the rules are in
//! [`crate::domain::forwarded`]); every URL batchd writes is built here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::config::{AccessConfig, Config};
use crate::domain::forwarded::{self, Claimed, Trust};
use crate::i18n::{Key, Msg};

use super::AppState;
use super::error::ApiError;

/// The TCP peer (unspecified when the server was not started with connection info).
pub fn peer(parts: &Parts) -> IpAddr {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn trust(access: &AccessConfig) -> Trust<'_> {
    Trust { proxies: &access.trusted_proxies, any_peer: access.trust_forwarded_for }
}

/// The client address: the peer, or behind trusted proxies the first address in
/// `X-Forwarded-For`, from the right, that is not one of them.
pub fn client_address(parts: &Parts, access: &AccessConfig) -> IpAddr {
    let entries =
        parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
    trust(access).client_address(peer(parts), entries)
}

/// A forwarded header's value, when the peer may set it.
fn forwarded_value<'h>(headers: &'h HeaderMap, name: &str, trusted: bool) -> Option<&'h str> {
    if !trusted {
        return None;
    }
    // Several header lines are one list; the last entry is the one the nearest proxy wrote.
    headers.get_all(name).iter().next_back().and_then(|v| v.to_str().ok()).map(forwarded::last_value)
}

/// The scheme and host (with port) the client used: `X-Forwarded-Proto`/`-Host` from a trusted
/// proxy when well formed, else `http` and the `Host` header (if valid). No host → `None`.
pub fn external_origin<'h>(
    headers: &'h HeaderMap,
    peer: IpAddr,
    access: &AccessConfig,
) -> (&'static str, Option<&'h str>) {
    let trusted = trust(access).trusts(peer.to_canonical());
    let scheme = forwarded_value(headers, "x-forwarded-proto", trusted).and_then(forwarded::scheme).unwrap_or("http");
    let valid = |h: &&str| forwarded::valid_authority(h);
    let host = forwarded_value(headers, "x-forwarded-host", trusted)
        .filter(valid)
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::trim).filter(valid));
    (scheme, host)
}

/// `path` under the configured prefix: `/Cust1` + `/api/v1/BatchTask/7`.
pub fn local_path(config: &Config, path: &str) -> String {
    format!("{}{path}", config.path_prefix.trim_end_matches('/'))
}

/// `scheme://host[/prefix]`, as the client reached us; only the prefix when no valid host is known.
pub fn base_url(parts: &Parts, config: &Config) -> String {
    match external_origin(&parts.headers, peer(parts), &config.access) {
        (scheme, Some(host)) => format!("{scheme}://{host}{}", local_path(config, "")),
        (_, None) => local_path(config, ""),
    }
}

/// [`base_url`] as an extractor.
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(BaseUrl(base_url(parts, &state.config)))
    }
}

/// Guards a browser form (the login) against other sites: a request whose `Origin` (or, without
/// one, `Referer`) is neither this server nor a configured CORS origin is refused with 403.
/// Requests that carry neither header (non-browser clients) pass.
pub struct FromOwnSite;

impl FromRequestParts<AppState> for FromOwnSite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        // An unreadable value is claimed as "null": refused, like any opaque origin.
        let text = |v: &'_ axum::http::HeaderValue| v.to_str().unwrap_or("null").to_owned();
        let (origin, referer) = (h.get(header::ORIGIN).map(text), h.get(header::REFERER).map(text));
        let claimed = match (&origin, &referer) {
            (Some(o), _) => Claimed::Origin(o),
            (None, Some(r)) => Claimed::Referer(r),
            (None, None) => Claimed::Nothing,
        };
        let access = &state.config.access;
        let (_, host) = external_origin(h, peer(parts), access);
        if forwarded::form_allowed(claimed, host, &access.cors_origins) {
            Ok(FromOwnSite)
        } else {
            Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, Msg::new(Key::CrossSiteForm)))
        }
    }
}
