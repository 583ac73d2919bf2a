//! The HTTP client of a running server: one place that turns answers into exit codes and
//! one-line messages.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

use super::profile::Credentials;
use super::{CliError, Exit};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

pub struct Client {
    http: reqwest::Client,
    /// The server URL without a trailing slash; a path prefix (`/Cust1`) stays.
    base: String,
    credentials: Option<Credentials>,
}

/// A successful answer (2xx or 304).
pub struct Answer {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<Value, CliError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CliError::new(Exit::Refused, format!("the server answered something that is not JSON: {e}")))
    }
}

/// The server URL, checked: http or https (system roots, or `SSL_CERT_FILE`), no credentials in it.
pub fn server_url(raw: &str) -> Result<reqwest::Url, CliError> {
    let usage = |m: String| CliError::new(Exit::Usage, m);
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| usage(format!("the server URL {:?} is not a URL: {e}", redact_url(raw))))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(usage(
            "the server URL holds credentials: give them in BATCHD_USER and BATCHD_PASSWORD, BATCHD_TOKEN or a profile"
                .into(),
        ));
    }
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(usage(format!("the server URL must start with http:// or https://, not {other}://"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(usage("the server URL must not have a query or a fragment".into()));
    }
    Ok(url)
}

/// `raw` with anything before an `@` hidden (it may be a password), for messages about a bad URL.
fn redact_url(raw: &str) -> String {
    match (raw.find("//"), raw.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}//…{}", &raw[..a], &raw[b..]),
        (_, Some(b)) => format!("…{}", &raw[b..]),
        _ => raw.to_owned(),
    }
}

/// The innermost cause: `connection refused` rather than `error sending request for url (…)`.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    // "Connection refused (os error 111)": the number helps nobody.
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Whether an answer is an event stream to read (else the caller polls).
pub fn is_event_stream(status: StatusCode, headers: &header::HeaderMap) -> bool {
    status == StatusCode::OK
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// The `Message` of an error body (JSON or XML), if it has one.
pub fn error_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let m = v.get("Message").or_else(|| v.get("ErrorMessage")).and_then(Value::as_str)?;
        return Some(one_line(m));
    }
    let start = text.find("<Message>")? + "<Message>".len();
    let end = text[start..].find("</Message>")? + start;
    Some(one_line(&text[start..end]))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Client {
    pub fn new(url: &reqwest::Url, credentials: Option<Credentials>) -> Result<Client, CliError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("batchd-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60));
        // A proxy from the environment is for the outside world, not for this machine.
        let host = url.host_str().unwrap_or("").trim_matches(['[', ']']);
        let loopback = match host.parse::<std::net::IpAddr>() {
            Ok(a) => a.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        };
        if loopback {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| {
            CliError::new(Exit::Unreachable, format!("cannot set up the HTTP client: {}", root_cause(&e)))
        })?;
        Ok(Client { http, base: url.as_str().trim_end_matches('/').to_owned(), credentials })
    }

    /// Sends one request to `path` (from `/api/...`, already escaped) and answers a 2xx or 304;
    /// any other status becomes the matching exit code, with the server's `Message`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(header::HeaderName, String)],
    ) -> Result<Answer, CliError> {
        let mut req =
            self.http.request(method, format!("{}{path}", self.base)).header(header::ACCEPT, "application/json");
        req = match &self.credentials {
            Some(Credentials::Basic { user, password }) => req.basic_auth(user, Some(password)),
            Some(Credentials::Bearer(token)) => req.bearer_auth(token),
            None => req,
        };
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(b) = body {
            req = req.header(header::CONTENT_TYPE, "application/json").body(b.to_string());
        }
        let res = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(Answer { status, headers, body });
        }
        Err(self.refusal(status, &body))
    }

    /// Opens a server-sent event stream at `path`; `None` when the server has none there (an
    /// older server: 404 or 405), answers something else, or cannot be reached, so the caller
    /// falls back to asking.
    pub async fn open_stream(&self, path: &str, last_event_id: Option<&str>) -> Option<reqwest::Response> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .header(header::ACCEPT, "text/event-stream")
            // The client's whole-request timeout would cut a stream; silence is watched per read.
            .timeout(Duration::from_secs(24 * 3600));
        req = match &self.credentials {
            Some(Credentials::Basic { user, password }) => req.basic_auth(user, Some(password)),
            Some(Credentials::Bearer(token)) => req.bearer_auth(token),
            None => req,
        };
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.ok()?;
        is_event_stream(res.status(), res.headers()).then_some(res)
    }

    pub async fn get(&self, path: &str) -> Result<Answer, CliError> {
        self.send(Method::GET, path, None, &[]).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let why = if e.is_timeout() { "no answer in time".to_owned() } else { root_cause(e) };
        CliError {
            transient: true,
            ..CliError::new(Exit::Unreachable, format!("cannot reach the server at {}: {why}", self.base))
        }
    }

    fn refusal(&self, status: StatusCode, body: &[u8]) -> CliError {
        let message = error_message(body);
        let said = |fallback: &str| message.clone().unwrap_or_else(|| fallback.to_owned());
        match status {
            StatusCode::UNAUTHORIZED => {
                let who = match &self.credentials {
                    Some(c) => format!("refused the credentials of {}", c.describe()),
                    None => "needs credentials: set BATCHD_USER and BATCHD_PASSWORD, or BATCHD_TOKEN, or a profile"
                        .to_owned(),
                };
                let detail = message.map_or_else(String::new, |m| format!(" ({m})"));
                CliError::new(Exit::Unreachable, format!("the server at {} {who}{detail}", self.base))
            }
            StatusCode::FORBIDDEN => CliError::new(Exit::Forbidden, format!("forbidden: {}", said("not allowed"))),
            StatusCode::NOT_FOUND => CliError::new(Exit::NotFound, format!("not found: {}", said("no such thing"))),
            _ => CliError::new(
                Exit::Refused,
                format!("the server answered {}: {}", status.as_u16(), said(status.canonical_reason().unwrap_or(""))),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_http_or_https_without_credentials() {
        assert!(server_url("http://127.0.0.1:8080/").is_ok());
        assert!(server_url("http://h/Cust1").is_ok());
        let e = server_url("http://admin:pw@h/").err().unwrap();
        assert!(!e.message.contains("pw"), "{}", e.message);
        assert!(server_url("https://h/").is_ok());
        assert!(server_url("ftp://h/").is_err());
        let e = server_url("not a url with secret@x").err().unwrap();
        assert!(!e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn only_a_200_event_stream_is_read_as_one() {
        let mut h = header::HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        assert!(is_event_stream(StatusCode::OK, &h));
        for status in [StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED, StatusCode::SERVICE_UNAVAILABLE] {
            assert!(!is_event_stream(status, &h), "{status}: poll instead");
        }
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_event_stream(StatusCode::OK, &h), "an older server's 200 for another route");
    }

    #[test]
    fn error_messages_come_from_json_and_xml_bodies() {
        assert_eq!(
            error_message(br#"{"Error":true,"Message":"Task 9 not\nfound"}"#).as_deref(),
            Some("Task 9 not found")
        );
        assert_eq!(error_message(b"<Error><Message>nope</Message></Error>").as_deref(), Some("nope"));
        assert_eq!(error_message(b"").as_deref(), None);
    }
}
