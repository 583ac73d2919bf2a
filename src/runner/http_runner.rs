//! The `http` runner: one request to a configured URL; a 2xx status is success.
//!
//! Templates (URL, header values, body) take `{id}`, `{name}`, `{attempt}`, `{request}` and
//! `{<ParameterObject key>}`, each value escaped for where it lands (src/runner/template.rs).
//! Without a `body` template the task's `Request` is sent (if any).

use crate::domain::definition::HttpSpec;
use crate::domain::task::limits;

use super::exec::{Completed, Ctx, Ended, RunEnd};
use super::template::{Target, fill};

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

fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars { s.to_owned() } else { s.chars().take(max_chars).collect() }
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
