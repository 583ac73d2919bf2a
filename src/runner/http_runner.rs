//! The `http` runner: one request to a configured URL; a 2xx status is success.
//!
//! Templates (URL, header values, body) take `{id}`, `{name}`, `{attempt}`, `{request}` and
//! `{<ParameterObject key>}`. Values put into the URL are percent-encoded. Without a `body`
//! template the task's `Request` is sent (if any).

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::task::limits;

use super::exec::{Completed, Ctx, Ended, RunEnd};

/// Fills `{placeholders}`. `encode` percent-encodes substituted values (for URLs).
pub fn fill(template: &str, ctx: &Ctx, encode: bool) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let key = after.find('}').map(|end| (&after[..end], end));
        // Only `{word}` is a placeholder; other braces (JSON bodies) are text.
        let Some((key, end)) =
            key.filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || "_-. ".contains(c)))
        else {
            out.push('{');
            rest = after;
            continue;
        };
        let value = match key {
            "id" => Some(ctx.task.id.to_string()),
            "name" => Some(ctx.task.name.clone()),
            "attempt" => Some(ctx.attempt.to_string()),
            "request" => Some(ctx.task.request.clone().unwrap_or_default()),
            k => ctx.param(k).map(str::to_owned),
        };
        match value {
            Some(v) if encode => out.extend(utf8_percent_encode(&v, NON_ALPHANUMERIC)),
            Some(v) => out.push_str(&v),
            None => return Err(format!("no value for {{{key}}} (not in ParameterObject)")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars { s.to_owned() } else { s.chars().take(max_chars).collect() }
}

pub async fn run(ctx: &mut Ctx, method: &str, url: &str, headers: &[(String, String)], body: Option<&str>) -> RunEnd {
    let prepared = (|| -> Result<reqwest::RequestBuilder, String> {
        let url = fill(url, ctx, true).map_err(|e| format!("url: {e}"))?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
        let mut req = ctx.http.request(method, &url);
        for (k, v) in headers {
            req = req.header(k, fill(v, ctx, false).map_err(|e| format!("header {k}: {e}"))?);
        }
        let body = match body {
            Some(b) => Some(fill(b, ctx, false).map_err(|e| format!("body: {e}"))?),
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
        let res = req.send().await?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, text))
    };
    let outcome = tokio::select! {
        r = call => r,
        cause = ctx.stopped() => return RunEnd::Stopped(cause),
    };
    match outcome {
        Ok((status, text)) => RunEnd::Completed(Completed {
            state: if status.is_success() { Ended::Succeeded } else { Ended::Failed },
            result: format!("HTTP {}", status.as_u16()),
            response: (!text.is_empty()).then(|| cut(&text, limits::LONG_TEXT)),
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
            RunEnd::Completed(Completed::failed(format!("{what}: {}", error_chain(&e))))
        }
    }
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
