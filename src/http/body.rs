//! Request bodies of every accepted Content-Type, read into one shape: a `serde_json::Value`.
//! JSON is parsed as is; form bodies become objects (dotted keys nest, repeated keys make lists);
//! XML is read by [`super::xml`] (the root element's content is the value). Anything else is a
//! 415. Bodies over 1 MiB are a 413; bodies slower than `[http] body_read_timeout` a 408.
//!
//! No value read from a body, or built from one (a patched task document), nests deeper than
//! [`MAX_DEPTH`]: building, cloning, comparing, serialising and dropping a `Value` all recurse
//! once per level, so an unbounded depth is a stack overflow that aborts the process. Each
//! reader refuses a deeper body before it builds the level past the limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::i18n::{Key, Msg};

use super::AppState;
use super::error::ApiError;

pub const MAX_BODY: usize = 1024 * 1024;

/// Deepest nesting of a value read from a body: the containers (objects and arrays) on its
/// deepest path, the outermost counting as one (`{"a":[1]}` is 2). A BatchTaskInfo body needs 4
/// (`FieldProperties.State.FieldRight`), an XML agent call 5; ParameterObject is flat.
pub const MAX_DEPTH: usize = 32;

/// The one refusal of a body nested deeper than [`MAX_DEPTH`].
pub fn too_deep() -> ApiError {
    ApiError::bad_request(Msg::new(Key::BodyTooDeep).arg("max", MAX_DEPTH))
}

/// How large and how deep a value is (see [`extent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Its length as compact JSON, escapes not counted (a number counts as 8).
    pub size: usize,
    /// Containers on its deepest path, as [`MAX_DEPTH`] counts them.
    pub depth: usize,
}

/// Measures `v` without recursing, and stops as soon as the size passes `max_size` (`None`), so
/// measuring costs no more than `max_size` allows, however large `v` is.
pub fn extent(v: &Value, max_size: usize) -> Option<Extent> {
    let mut out = Extent { size: 0, depth: 0 };
    let mut todo: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, above)) = todo.pop() {
        out.size += match v {
            Value::Null => 4,
            Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                out.depth = out.depth.max(above + 1);
                todo.extend(a.iter().map(|c| (c, above + 1)));
                a.len() + 2
            }
            Value::Object(m) => {
                out.depth = out.depth.max(above + 1);
                todo.extend(m.values().map(|c| (c, above + 1)));
                m.keys().map(|k| k.len() + 4).sum::<usize>() + 2
            }
        };
        if out.size > max_size {
            return None;
        }
    }
    Some(out)
}

/// The kinds of body batchd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Xml,
    JsonPatch,
    MergePatch,
}

pub const SUPPORTED: &str = "application/json, text/json, application/xml, text/xml, application/x-www-form-urlencoded, \
     application/json-patch+json or application/merge-patch+json";

/// What reading a body may answer instead of the operation: 400 unreadable, 408 too slow, 413 too
/// large, 415 a type not in [`SUPPORTED`].
pub const STATUSES: [u16; 4] = [400, 408, 413, 415];

pub fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Ok(match media.as_str() {
        "" | "application/json" | "text/json" => BodyKind::Json,
        "application/x-www-form-urlencoded" => BodyKind::Form,
        "application/xml" | "text/xml" => BodyKind::Xml,
        "application/json-patch+json" => BodyKind::JsonPatch,
        "application/merge-patch+json" => BodyKind::MergePatch,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Msg::new(Key::UnsupportedMediaType).arg("type", truncate(ct)).arg("supported", SUPPORTED),
            ));
        }
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

/// A request body read as a value, with the kind it came as. `value` is `None` for an empty body.
/// `root` is the XML root element's local name (agents use it to tell a wrapper from a parameter).
#[derive(Debug, Clone)]
pub struct Body {
    pub kind: BodyKind,
    pub value: Option<Value>,
    pub root: Option<String>,
}

/// The body, whole: a 413 past [`MAX_BODY`], a 408 when it takes longer than `deadline`
/// (`[http] body_read_timeout`) to arrive.
pub async fn read_bytes(req: Request, deadline: Duration) -> Result<(HeaderMap, Bytes), ApiError> {
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Msg::new(Key::BodyTooLarge).arg("max", MAX_BODY));
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if len > MAX_BODY as u64 {
            return Err(too_large());
        }
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let read = async {
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                ApiError::bad_request(
                    Msg::new(Key::BodyUnreadable).arg("detail", "the connection broke while sending it"),
                )
            })?;
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let buf = tokio::time::timeout(deadline, read).await.map_err(|_| {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, Msg::new(Key::BodyTimeout).arg("seconds", deadline.as_secs_f64()))
    })??;
    Ok((parts.headers, Bytes::from(buf)))
}

pub fn parse(kind: BodyKind, bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    parse_with_root(kind, bytes).map(|(v, _)| v)
}

/// Like [`parse`], also giving the XML root element's name.
pub fn parse_with_root(kind: BodyKind, bytes: &[u8]) -> Result<(Option<Value>, Option<String>), ApiError> {
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    match kind {
        // A form with no fields is an object with none, as `{}` is.
        BodyKind::Form if blank => return Ok((Some(Value::Object(serde_json::Map::new())), None)),
        // White space alone is what a pretty-printer leaves of an empty XML document.
        BodyKind::Xml if blank => return Ok((None, None)),
        // JSON: no bytes is no body; white space alone is not JSON.
        _ if bytes.is_empty() => return Ok((None, None)),
        _ => {}
    }
    let unreadable = |detail: String| ApiError::bad_request(Msg::new(Key::BodyUnreadable).arg("detail", detail));
    match kind {
        BodyKind::Json | BodyKind::JsonPatch | BodyKind::MergePatch => {
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // a UTF-8 BOM, as .NET writers send
            check_json_depth(bytes)?;
            serde_json::from_slice(bytes)
                .map(|v| (Some(v), None))
                .map_err(|e| unreadable(format!("invalid JSON ({e})")))
        }
        BodyKind::Form => Ok((Some(form_to_value(bytes)?), None)),
        BodyKind::Xml => super::xml::parse(bytes).map(|d| (Some(d.value), Some(d.root))).map_err(|e| match e {
            super::xml::XmlError::TooDeep => too_deep(),
            e => unreadable(e.to_string()),
        }),
    }
}

/// Refuses JSON nested deeper than [`MAX_DEPTH`] before any value is built (serde_json's own
/// limit, 128, is too deep for what is done with the value afterwards). Brackets inside strings
/// are text; anything else wrong with the JSON is left for the parser to name.
fn check_json_depth(bytes: &[u8]) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let kind = body_kind(req.headers())?;
        let (_, bytes) = read_bytes(req, state.config.http.body_read_timeout).await?;
        let (value, root) = parse_with_root(kind, &bytes)?;
        Ok(Body { kind, value, root })
    }
}

/// `a=1&B.c=2&B.d=3&L=1&L=2` → `{"a":"1","B":{"c":"2","d":"3"},"L":["1","2"]}`. A key nesting
/// the value deeper than [`MAX_DEPTH`] is refused.
pub fn form_to_value(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        // One more segment than the limit is enough to refuse; the rest is not even split.
        let path: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).take(MAX_DEPTH + 1).collect();
        if path.is_empty() {
            continue;
        }
        insert_path(&mut root, &path, Value::String(value.into_owned()))?;
    }
    Ok(Value::Object(root))
}

/// Stores `value` under `path` in the body object (which is level 1: each segment after the
/// first is one level more). A loop, not recursion, so no key can exhaust the stack.
fn insert_path(root: &mut Map<String, Value>, path: &[&str], value: Value) -> Result<(), ApiError> {
    if path.len() > MAX_DEPTH {
        return Err(too_deep());
    }
    // Keys match case-insensitively, so `batchTaskInfo.Name` and `BatchTaskInfo.State` meet.
    let matching = |obj: &Map<String, Value>, seg: &str| {
        obj.keys().find(|k| k.eq_ignore_ascii_case(seg)).cloned().unwrap_or_else(|| seg.to_owned())
    };
    let (last, parents) = path.split_last().expect("a path has a segment");
    let mut obj = root;
    for seg in parents {
        let key = matching(obj, seg);
        let child = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        obj = child.as_object_mut().expect("an object was just put there");
    }
    let key = matching(obj, last);
    match obj.get_mut(&key) {
        Some(Value::Array(list)) => list.push(value),
        Some(prev) => {
            // A repeat makes a list at the value's level; what the value held moves one deeper.
            let held = extent(prev, usize::MAX).map_or(0, |e| e.depth);
            if path.len() + 1 + held > MAX_DEPTH {
                return Err(too_deep());
            }
            let first = prev.take();
            *prev = Value::Array(vec![first, value]);
        }
        None => {
            obj.insert(key, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_nests_dotted_keys_and_lists_repeats() {
        let v = form_to_value(b"Name=x&BatchTaskInfo.Name=a%20b&batchtaskinfo.State=New&L=1&L=2&ParameterObject.k=v");
        assert_eq!(
            v.unwrap(),
            json!({"Name": "x", "BatchTaskInfo": {"Name": "a b", "State": "New"}, "L": ["1", "2"], "ParameterObject": {"k": "v"}})
        );
    }

    #[test]
    fn nesting_is_bounded_in_every_reader() {
        let depth = |v: &Value| extent(v, usize::MAX).unwrap().depth;
        let key = |n: usize| vec!["k"; n].join(".");
        assert_eq!(depth(&form_to_value(format!("{}=1", key(MAX_DEPTH)).as_bytes()).unwrap()), MAX_DEPTH);
        let list = form_to_value(format!("{0}=1&{0}=2", key(MAX_DEPTH - 1)).as_bytes()).unwrap();
        assert_eq!(depth(&list), MAX_DEPTH);
        for bad in [
            format!("{}=1", key(MAX_DEPTH + 1)),
            format!("{}=1", key(100_000)),
            format!("{0}=1&{0}=2", key(MAX_DEPTH)),
            format!("a.{}=1&a=2", key(MAX_DEPTH - 1)),
        ] {
            assert_eq!(form_to_value(bad.as_bytes()).unwrap_err().msg, too_deep().msg, "{}", &bad[..40.min(bad.len())]);
        }
        let json = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(depth(&parse(BodyKind::Json, json(MAX_DEPTH).as_bytes()).unwrap().unwrap()), MAX_DEPTH);
        assert!(parse(BodyKind::JsonPatch, json(MAX_DEPTH + 1).as_bytes()).is_err());
        let in_text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(99), "{".repeat(99));
        assert!(parse(BodyKind::Json, in_text.as_bytes()).unwrap().is_some(), "brackets in strings are text");
    }

    #[test]
    fn extent_measures_and_stops_at_the_budget() {
        let v = json!({"ab": [1, "xyz", null, true]});
        assert_eq!(extent(&v, usize::MAX), Some(Extent { size: 2 + 6 + 6 + 8 + 5 + 4 + 5, depth: 2 }));
        assert_eq!(extent(&v, 10), None);
        assert_eq!(extent(&json!("s"), 3), Some(Extent { size: 3, depth: 0 }));
    }
}
