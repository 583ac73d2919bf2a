//! Conditional request headers (RFC 9110 §13.1) read into the service's [`Precondition`]. The
//! service evaluates them against the stored task (inside the write transaction for writes), so
//! only parsed values cross over: entity-tags checked against the `headers` crate's grammar,
//! dates in the three HTTP-date forms through `httpdate`.
//!
//! Unreadable values, decided once here (docs/API.md, Preconditions):
//! - `If-Match` that is not `*` or a list of entity-tags → 400. A write must not go ahead on a
//!   condition nobody can read, and a 412 would tell the client the task changed when its own
//!   header is at fault.
//! - `If-None-Match`: members that are not entity-tags never match, as in the `headers` crate.
//! - Dates that are not dates, or more than one: ignored, as RFC 9110 §13.1.3 and §13.1.4 require.

use axum::http::{HeaderMap, HeaderName, header};
use chrono::{DateTime, Utc};

use crate::i18n::{Key, Msg};
use crate::service::{EntityTag, EntityTags, Precondition};

use super::error::ApiError;

/// What the conditional headers may answer on a write: 400 for an unreadable `If-Match`, 412 when
/// the condition fails. A read also answers 304 (see `Freshness`).
pub const STATUSES: [u16; 2] = [400, 412];

/// The request's conditional headers.
pub fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let if_match = match list(headers, &header::IF_MATCH) {
        None => None,
        Some(members) => Some(
            strict_tags(&members)
                .ok_or_else(|| ApiError::bad_request(Msg::new(Key::EntityTagsInvalid).arg("header", "If-Match")))?,
        ),
    };
    Ok(Precondition {
        if_match,
        if_unmodified_since: date(headers, &header::IF_UNMODIFIED_SINCE),
        if_none_match: list(headers, &header::IF_NONE_MATCH).map(|members| lenient_tags(&members)),
        if_modified_since: date(headers, &header::IF_MODIFIED_SINCE),
    })
}

/// The request's conditional headers as an extractor, read from the request's own header map
/// (not a copy of it); an unreadable one is kept for the handler to answer where it reads them.
pub struct Conditions(pub Result<Precondition, ApiError>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Conditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Conditions(precondition(&parts.headers)))
    }
}

/// The members of a comma-separated header over all its field lines; `None` when absent. A comma
/// inside quotes does not split (`"a,b"` is one entity-tag), and empty members do not count
/// (RFC 9110 §5.6.1.2).
fn list(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<String>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut members = Vec::new();
    for line in lines {
        // obs-text is allowed in an entity-tag; lossy text keeps it a non-quote, so the split
        // and the grammar check still hold (and no such tag is ever a task's).
        let text = String::from_utf8_lossy(line.as_bytes());
        let (mut quoted, mut start) = (false, 0);
        for (i, c) in text.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    members.push(text[start..i].to_owned());
                    start = i + 1;
                }
                _ => {}
            }
        }
        members.push(text[start..].to_owned());
    }
    members = members.into_iter().map(|m| m.trim_matches([' ', '\t']).to_owned()).filter(|m| !m.is_empty()).collect();
    Some(members)
}

/// `*` alone, or every member an entity-tag; anything else is not a condition.
fn strict_tags(members: &[String]) -> Option<EntityTags> {
    if let [only] = members
        && only == "*"
    {
        return Some(EntityTags::Any);
    }
    members.iter().map(|m| entity_tag(m)).collect::<Option<Vec<_>>>().map(EntityTags::List)
}

/// `*` alone, or the members that are entity-tags.
fn lenient_tags(members: &[String]) -> EntityTags {
    if let [only] = members
        && only == "*"
    {
        return EntityTags::Any;
    }
    EntityTags::List(members.iter().filter_map(|m| entity_tag(m)).collect())
}

/// `"3-7"` or `W/"3-7"`, by the `headers` crate's entity-tag grammar (RFC 9110 §8.8.3).
fn entity_tag(member: &str) -> Option<EntityTag> {
    let parsed: headers::ETag = member.parse().ok()?;
    let weak = parsed.is_weak();
    let opaque = if weak { &member[2..] } else { member };
    Some(EntityTag { weak, opaque: opaque.to_owned() })
}

/// A date header with exactly one field line: IMF-fixdate, RFC 850 or asctime (RFC 9110
/// §5.6.7), or, as this server read it before, an RFC 5322 date with a numeric zone (`+0000`).
fn date(headers: &HeaderMap, name: &HeaderName) -> Option<DateTime<Utc>> {
    let mut lines = headers.get_all(name).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else { return None };
    let text = line.to_str().ok()?.trim();
    match httpdate::parse_http_date(text) {
        Ok(t) => Some(DateTime::<Utc>::from(t)),
        Err(_) => DateTime::parse_from_rfc2822(text).ok().map(|d| d.with_timezone(&Utc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use headers::HeaderMapExt;
    use proptest::prelude::*;

    fn map(name: HeaderName, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name.clone(), HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn tag(weak: bool, opaque: &str) -> EntityTag {
        EntityTag { weak, opaque: opaque.to_owned() }
    }

    #[test]
    fn if_match_lists_any_and_weak_tags() {
        let pre = |lines: &[&str]| precondition(&map(header::IF_MATCH, lines)).map(|p| p.if_match);
        assert_eq!(pre(&["*"]).unwrap(), Some(EntityTags::Any));
        assert_eq!(
            pre(&["\"1-2\", W/\"1-3\"", "\"a,b\""]).unwrap(),
            Some(EntityTags::List(vec![tag(false, "\"1-2\""), tag(true, "\"1-3\""), tag(false, "\"a,b\"")]))
        );
        assert_eq!(pre(&[" , \"1-2\" ,, "]).unwrap(), Some(EntityTags::List(vec![tag(false, "\"1-2\"")])));
        assert_eq!(pre(&[""]).unwrap(), Some(EntityTags::List(vec![])), "an empty list matches nothing");
        assert_eq!(precondition(&HeaderMap::new()).unwrap().if_match, None);
        for bad in ["1-2", "\"1-2", "w/\"1-2\"", "\"1-2\", *", "W/1-2", "\"a\"b\""] {
            assert!(pre(&[bad]).is_err(), "{bad}");
        }
        assert!(pre(&["*", "*"]).is_err(), "`*` is the whole field or nothing");
    }

    #[test]
    fn if_none_match_skips_what_is_not_a_tag() {
        let pre = |v: &str| precondition(&map(header::IF_NONE_MATCH, &[v])).unwrap().if_none_match;
        assert_eq!(pre("*"), Some(EntityTags::Any));
        assert_eq!(pre("junk, W/\"1-2\""), Some(EntityTags::List(vec![tag(true, "\"1-2\"")])));
        assert_eq!(pre("*, \"1-2\""), Some(EntityTags::List(vec![tag(false, "\"1-2\"")])));
    }

    #[test]
    fn dates_in_all_three_forms_and_the_old_numeric_zone() {
        let want = DateTime::parse_from_rfc3339("1994-11-06T08:49:37Z").unwrap().with_timezone(&Utc);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 09:49:37 +0100",
        ] {
            for name in [header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE] {
                assert_eq!(date(&map(name.clone(), &[text]), &name), Some(want), "{name}: {text}");
            }
        }
        let name = header::IF_UNMODIFIED_SINCE;
        for bad in ["yesterday", "Sun, 06 Nov 1994 25:49:37 GMT", "1994-11-06T08:49:37Z", ""] {
            assert_eq!(date(&map(name.clone(), &[bad]), &name), None, "{bad}");
        }
        let two = map(name.clone(), &["Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"]);
        assert_eq!(date(&two, &name), None, "a list of dates is ignored");
    }

    #[test]
    fn last_modified_as_written_reads_back() {
        let t = DateTime::parse_from_rfc3339("2024-02-29T23:59:59Z").unwrap().with_timezone(&Utc);
        let h = map(header::IF_MODIFIED_SINCE, &[&crate::domain::time::http_date(t)]);
        assert_eq!(date(&h, &header::IF_MODIFIED_SINCE), Some(t));
    }

    fn task(version: i64) -> crate::domain::Task {
        let mut t = crate::domain::Task::fixture(3, "T", 1, crate::domain::BatchTaskState::New);
        t.version = version;
        t
    }

    /// A member, valid or not, from a small alphabet so that tags often equal the task's.
    fn member() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<bool>(), 6i64..9).prop_map(|(weak, v)| format!("{}\"3-{v}\"", if weak { "W/" } else { "" })),
            Just("*".to_owned()),
            Just("3-7".to_owned()),
            Just("\"a,b\"".to_owned()),
        ]
    }

    proptest! {
        /// Where both read a header, the service decides as the `headers` crate's typed headers do.
        #[test]
        fn decisions_agree_with_the_headers_crate(members in prop::collection::vec(member(), 0..4), version in 6i64..9) {
            let value = members.join(", ");
            let task = task(version);
            let etag: headers::ETag = task.etag().parse().unwrap();

            let h = map(header::IF_MATCH, &[&value]);
            let typed = h.typed_get::<headers::IfMatch>().unwrap();
            match precondition(&h) {
                Ok(pre) => prop_assert_eq!(pre.check(&task).is_ok(), typed.precondition_passes(&etag), "If-Match: {}", value),
                // Refused outright: the crate, which skips bad members, must not pass it on them alone.
                Err(_) => prop_assert!(members.iter().any(|m| entity_tag(m).is_none())),
            }

            let h = map(header::IF_NONE_MATCH, &[&value]);
            let typed = h.typed_get::<headers::IfNoneMatch>().unwrap();
            let pre = precondition(&h).unwrap();
            let fresh = pre.check_read(&task).unwrap();
            prop_assert_eq!(fresh == crate::service::Freshness::Changed, typed.precondition_passes(&etag), "If-None-Match: {}", value);
            prop_assert_eq!(pre.check(&task).is_ok(), typed.precondition_passes(&etag), "write, If-None-Match: {}", value);
        }
    }
}
