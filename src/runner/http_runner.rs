//! The `http` runner: one request to a configured URL; a 2xx status is success.
//!
//! Templates (URL, header values, body) take `{id}`, `{name}`, `{attempt}`, `{request}` and
//! `{<ParameterObject key>}`, each value escaped for where it lands (src/runner/template.rs).
//! Without a `body` template the task's `Request` is sent (if any). Redirects are followed only
//! as far as the definition's `follow_redirects`; an unfollowed 3xx fails the run. The response
//! body is read up to the `Response` limit and the rest left unread.
//!
//! `https://` URLs are checked against the system's roots (`/etc/ssl/certs`, or `SSL_CERT_FILE`
//! / `SSL_CERT_DIR` instead when set) plus `[runner] ca_file`; a certificate that fails is named
//! as such in `Result`.

use crate::domain::definition::HttpSpec;
use crate::domain::task::limits;

use super::exec::{Completed, Ctx, Ended, RunEnd};
use super::output::{Rest, clip};
use super::template::{Target, fill};

/// The most of a response body read: what `Response` can hold (its limit is in characters, and
/// a character is at least a byte).
const RESPONSE_BYTES: usize = limits::LONG_TEXT;

/// The value of a placeholder for this run.
fn value(ctx: &Ctx, key: &str) -> Option<String> {
    match key {
        "id" => Some(ctx.task.id.to_string()),
        "name" => Some(ctx.task.name.clone()),
        "attempt" => Some(ctx.attempt.to_string()),
        "request" => Some(ctx.task.request.clone().unwrap_or_default()),
        k => ctx.param(k).map(str::to_owned),
    }
}

pub async fn run(ctx: &mut Ctx, spec: &HttpSpec) -> RunEnd {
    let prepared = (|| -> Result<reqwest::RequestBuilder, String> {
        let value = |k: &str| value(ctx, k);
        let url = fill(&spec.url, Target::Url, value).map_err(|e| format!("url: {e}"))?;
        let method = reqwest::Method::from_bytes(spec.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let mut req = ctx.http.request(method, &url);
        for (k, v) in &spec.headers {
            req = req.header(k, fill(v, Target::Header, value).map_err(|e| format!("header {k}: {e}"))?);
        }
        let body = match &spec.body {
            Some(b) => Some(fill(b, Target::Body(spec.body_format), value).map_err(|e| format!("body: {e}"))?),
            None => ctx.task.request.clone(),
        };
        if let Some(b) = body {
            req = req.body(b);
        }
        Ok(req)
    })();
    let req = match prepared {
        Ok(r) => r,
        Err(e) => return RunEnd::Completed(Completed::failed(e)),
    };
    let call = async {
        let mut res = req.send().await?;
        let status = res.status();
        let length = res.content_length();
        // Streamed, and no further than the Response limit: a huge or endless body is never held.
        let mut head: Vec<u8> = Vec::with_capacity(length.map_or(0, |l| l.min(RESPONSE_BYTES as u64) as usize));
        let mut rest = Rest::None;
        while let Some(chunk) = res.chunk().await? {
            let room = RESPONSE_BYTES - head.len();
            if chunk.len() > room {
                head.extend_from_slice(&chunk[..room]);
                rest = match length {
                    Some(l) => Rest::Bytes(l.saturating_sub(head.len() as u64)),
                    None => Rest::Unknown,
                };
                break;
            }
            head.extend_from_slice(&chunk);
        }
        Ok::<_, reqwest::Error>((status, head, rest))
    };
    let outcome = tokio::select! {
        r = call => r,
        cause = ctx.stopped() => return RunEnd::Stopped(cause),
    };
    match outcome {
        Ok((status, head, rest)) => RunEnd::Completed(Completed {
            state: if status.is_success() { Ended::Succeeded } else { Ended::Failed },
            result: if status.is_redirection() {
                format!("HTTP {} (redirect not followed)", status.as_u16())
            } else {
                format!("HTTP {}", status.as_u16())
            },
            response: (!head.is_empty()).then(|| clip(&head, rest, limits::LONG_TEXT)),
            file_name: None,
            detail: None,
        }),
        Err(e) => {
            let what = if e.is_connect() {
                "cannot connect"
            } else if e.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            // The chain says "invalid peer certificate: UnknownIssuer"; this says what to fix.
            let text = match crate::tls::certificate_error(&e) {
                Some(cause) => format!(
                    "{what}: certificate verification failed: {cause}: {}{} ({})",
                    crate::tls::certificate_hint(cause),
                    if matches!(cause, rustls::CertificateError::UnknownIssuer) {
                        " (trust it with [runner] ca_file)"
                    } else {
                        ""
                    },
                    error_chain(&e)
                ),
                None => format!("{what}: {}", error_chain(&e)),
            };
            RunEnd::Completed(Completed::failed(text))
        }
    }
}

/// A client following at most `redirects` redirects (none: a 3xx is the answer), trusting the
/// system's roots and `ca`'s.
pub(super) fn client(redirects: u8, ca: Option<&super::settings::CaFile>) -> reqwest::Result<reqwest::Client> {
    let policy = match redirects {
        0 => reqwest::redirect::Policy::none(),
        n => reqwest::redirect::Policy::limited(usize::from(n)),
    };
    let mut builder = reqwest::Client::builder().no_proxy().redirect(policy);
    for cert in ca.map_or(&[][..], |c| &c.certs[..]) {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder.build()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
