//! Per-request preferences read from headers: response format (Accept), language
//! (SO-Language over Accept-Language) and time zone (SO-TimeZone over the base zone).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono_tz::Tz;

use crate::domain::zones;
use crate::i18n::{Key, Lang, Msg};

use super::AppState;
use super::error::ApiError;
use super::format::Format;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prefs {
    pub format: Format,
    pub lang: Lang,
    pub zone: Tz,
}

impl Prefs {
    /// Format and language only; never fails (used to render errors).
    pub fn from_headers(headers: &HeaderMap) -> Prefs {
        Prefs { format: Format::negotiate(headers), lang: language(headers), zone: Tz::UTC }
    }

    /// Like [`Prefs::from_headers`], with `$format` in the query string overriding `Accept`.
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Prefs {
        Prefs { format: Format::choose(headers, query), lang: language(headers), zone: Tz::UTC }
    }
}

// Named once: looking a header up by a `&str` parses the name on every request.
pub const SO_LANGUAGE: HeaderName = HeaderName::from_static("so-language");
const SO_TIMEZONE: HeaderName = HeaderName::from_static("so-timezone");
const SO_CULTURE: HeaderName = HeaderName::from_static("so-culture");

/// `SO-Language` wins over `Accept-Language`; `*` or `x` means "no translation" (English).
pub fn language(headers: &HeaderMap) -> Lang {
    language_from(headers.get(SO_LANGUAGE), headers.get(axum::http::header::ACCEPT_LANGUAGE))
}

/// [`language`] from the two header values.
pub fn language_from(so_language: Option<&HeaderValue>, accept_language: Option<&HeaderValue>) -> Lang {
    if let Some(v) = so_language.and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if v == "*" || v.eq_ignore_ascii_case("x") {
            return Lang::En;
        }
        if let Some(l) = Lang::from_tag(v) {
            return l;
        }
    }
    if let Some(v) = accept_language.and_then(|v| v.to_str().ok()) {
        let mut best: Option<(f32, Lang)> = None;
        for item in v.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            if tag == "*" || tag.eq_ignore_ascii_case("x") {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, Lang::En));
                }
                continue;
            }
            if let Some(l) = Lang::from_tag(tag) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        if let Some((_, l)) = best {
            return l;
        }
    }
    Lang::En
}

/// What reading the preferences may answer: 400 for an unknown `SO-TimeZone` or `SO-Culture`.
pub const PREFS_STATUSES: [u16; 1] = [400];

impl FromRequestParts<AppState> for Prefs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut prefs = Prefs::from_request(&parts.headers, parts.uri.query());
        prefs.zone = state.config.base_zone;
        if let Some(v) = parts.headers.get(SO_TIMEZONE) {
            let text = v.to_str().unwrap_or("");
            let spec = zones::parse_header(text).ok_or_else(|| {
                ApiError::bad_request(
                    Msg::new(Key::FieldUnknownValue)
                        .arg("field", "SO-TimeZone")
                        .arg("value", text.chars().take(40).collect::<String>()),
                )
            })?;
            prefs.zone = spec.zone;
        }
        if let Some(v) = parts.headers.get(SO_CULTURE) {
            let text = v.to_str().unwrap_or("\u{FFFD}");
            if !crate::i18n::culture::is_known(text) {
                return Err(ApiError::bad_request(
                    Msg::new(Key::FieldUnknownValue)
                        .arg("field", "SO-Culture")
                        .arg("value", text.chars().take(40).collect::<String>()),
                ));
            }
        }
        Ok(prefs)
    }
}
