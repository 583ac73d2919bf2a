//! Request bodies of every accepted Content-Type, read into one shape: a `serde_json::Value`.
//! JSON is parsed as is; form bodies become objects (dotted keys nest, repeated keys make lists);
//! XML is read by [`super::xml`] (the root element's content is the value). Anything else is a
//! 415. Bodies over 1 MiB are a 413; bodies slower than `[http] body_read_timeout` a 408.

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
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    let unreadable = |detail: String| ApiError::bad_request(Msg::new(Key::BodyUnreadable).arg("detail", detail));
    match kind {
        BodyKind::Json | BodyKind::JsonPatch | BodyKind::MergePatch => {
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes); // a UTF-8 BOM, as .NET writers send
            serde_json::from_slice(bytes)
                .map(|v| (Some(v), None))
                .map_err(|e| unreadable(format!("invalid JSON ({e})")))
        }
        BodyKind::Form => Ok((Some(form_to_value(bytes)), None)),
        BodyKind::Xml => {
            super::xml::parse(bytes).map(|d| (Some(d.value), Some(d.root))).map_err(|e| unreadable(e.to_string()))
        }
    }
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

/// `a=1&B.c=2&B.d=3&L=1&L=2` → `{"a":"1","B":{"c":"2","d":"3"},"L":["1","2"]}`.
pub fn form_to_value(bytes: &[u8]) -> Value {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        let path: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).collect();
        if path.is_empty() {
            continue;
        }
        insert_path(&mut root, &path, Value::String(value.into_owned()));
    }
    Value::Object(root)
}

fn insert_path(obj: &mut Map<String, Value>, path: &[&str], value: Value) {
    // Keys match case-insensitively, so `batchTaskInfo.Name` and `BatchTaskInfo.State` meet.
    let existing = obj.keys().find(|k| k.eq_ignore_ascii_case(path[0])).cloned();
    let key = existing.unwrap_or_else(|| path[0].to_owned());
    if path.len() == 1 {
        match obj.get_mut(&key) {
            Some(Value::Array(list)) => list.push(value),
            Some(prev) => {
                let first = prev.take();
                *prev = Value::Array(vec![first, value]);
            }
            None => {
                obj.insert(key, value);
            }
        }
        return;
    }
    let child = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    if let Value::Object(m) = child {
        insert_path(m, &path[1..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_nests_dotted_keys_and_lists_repeats() {
        let v = form_to_value(b"Name=x&BatchTaskInfo.Name=a%20b&batchtaskinfo.State=New&L=1&L=2&ParameterObject.k=v");
        assert_eq!(
            v,
            json!({"Name": "x", "BatchTaskInfo": {"Name": "a b", "State": "New"}, "L": ["1", "2"], "ParameterObject": {"k": "v"}})
        );
    }
}
