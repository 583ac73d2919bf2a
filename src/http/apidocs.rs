//! `GET /api/docs`: the API reference as one HTML page, rendered here from the OpenAPI document
//! value ([`super::openapi::document`]), so the page and the document cannot disagree. It needs
//! nothing from elsewhere: no script at all, one inline style allowed by its hash in a strict
//! Content-Security-Policy. Every text from the document is escaped.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:70em;margin:0 auto;padding:1em 2em;color:#222}\
h2{border-bottom:1px solid #ccc;margin-top:2em}\
section.op{border:1px solid #ddd;border-radius:4px;margin:1em 0;padding:.3em 1em}\
.verb{display:inline-block;min-width:4.5em;font-weight:bold;font-family:monospace}\
.path{font-family:monospace;font-size:1.05em}\
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left;vertical-align:top}\
pre{background:#f6f6f6;padding:.5em;overflow:auto;max-height:30em;font-size:13px}\
details summary{cursor:pointer;color:#036}nav a{margin-right:.8em}";

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A schema as a short name (`BatchTaskInfo`, `array of Node`) or, inline, its JSON.
fn schema_html(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if schema.get("type").and_then(Value::as_str) == Some("array")
        && let Some(items) = schema.get("items").filter(|i| i.get("$ref").is_some())
    {
        return format!("array of {}", schema_html(items));
    }
    let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
    format!("<details><summary>schema</summary><pre>{}</pre></details>", escape(&pretty))
}

fn content_html(out: &mut String, content: &Value) {
    if let Some(types) = content.as_object() {
        for (media, v) in types {
            let _ = write!(out, "<div><code>{}</code> ", escape(media));
            if let Some(s) = v.get("schema") {
                out.push_str(&schema_html(s));
            }
            out.push_str("</div>");
        }
    }
}

fn security_html(op: &Value, global: &Value) -> String {
    let list = op.get("security").unwrap_or(global);
    let Some(list) = list.as_array() else { return String::new() };
    if list.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = list
        .iter()
        .map(|req| match req.as_object() {
            Some(m) if m.is_empty() => "none".to_owned(),
            Some(m) => m.keys().map(|k| escape(k)).collect::<Vec<_>>().join(" + "),
            None => String::new(),
        })
        .collect();
    names.join(" or ")
}

/// The whole page for `doc`.
pub fn render(doc: &Value) -> String {
    let info = &doc["info"];
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} API reference</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head><body>\
         <h1>{title} {version}</h1><p>{description}</p>\
         <p>The same description as JSON: <a href=\"openapi.json\">/api/openapi.json</a> (OpenAPI {openapi}).</p>\
         <nav><a href=\"#operations\">Operations</a><a href=\"#schemas\">Schemas</a><a href=\"#security\">Credentials</a></nav>",
        title = escape(text(info, "title")),
        version = escape(text(info, "version")),
        description = escape(text(info, "description")),
        openapi = escape(text(doc, "openapi")),
    );
    out.push_str("<h2 id=\"operations\">Operations</h2>");
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (verb, op) in item.as_object().into_iter().flatten() {
            let _ = write!(
                out,
                "<section class=\"op\"><h3><span class=\"verb\">{}</span> <span class=\"path\">{}</span></h3><p>{}</p>",
                escape(&verb.to_ascii_uppercase()),
                escape(path),
                escape(text(op, "summary")),
            );
            if let Some(d) = op.get("description").and_then(Value::as_str) {
                let _ = write!(out, "<p>{}</p>", escape(d));
            }
            let _ = write!(out, "<p>Credentials: {}</p>", security_html(op, &doc["security"]));
            if let Some(params) = op.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) {
                out.push_str("<table><tr><th>Parameter</th><th>In</th><th>Schema</th><th></th></tr>");
                for p in params {
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(text(p, "name")),
                        if p["required"] == true { " (required)" } else { "" },
                        escape(text(p, "in")),
                        schema_html(&p["schema"]),
                        escape(text(p, "description")),
                    );
                }
                out.push_str("</table>");
            }
            if let Some(body) = op.get("requestBody") {
                let _ = write!(out, "<h4>Body{}</h4>", if body["required"] == true { " (required)" } else { "" });
                content_html(&mut out, &body["content"]);
            }
            out.push_str("<h4>Answers</h4><table>");
            for (code, res) in op["responses"].as_object().into_iter().flatten() {
                let _ = write!(out, "<tr><td>{}</td><td>{}", escape(code), escape(text(res, "description")));
                if let Some(c) = res.get("content") {
                    content_html(&mut out, c);
                }
                out.push_str("</td></tr>");
            }
            out.push_str("</table></section>");
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
        let _ = write!(out, "<h3 id=\"schema-{0}\">{0}</h3><pre>{1}</pre>", escape(name), escape(&pretty));
    }
    out.push_str("<h2 id=\"security\">Credentials</h2><table>");
    for (name, scheme) in doc["components"]["securitySchemes"].as_object().into_iter().flatten() {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{} {}</td><td>{}</td></tr>",
            escape(name),
            escape(text(scheme, "type")),
            escape(scheme.get("scheme").or(scheme.get("name")).and_then(Value::as_str).unwrap_or("")),
            escape(text(scheme, "description")),
        );
    }
    out.push_str("</table></body></html>\n");
    out
}

/// No scripts, nothing from elsewhere, and only this page's own style.
fn content_security_policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

pub async fn serve() -> Response {
    static PAGE: OnceLock<(String, String)> = OnceLock::new();
    let (page, csp) = PAGE.get_or_init(|| (render(&super::openapi::document()), content_security_policy()));
    let mut res = page.clone().into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_from_the_document_are_escaped() {
        let doc = json!({"info": {"title": "<script>alert(1)</script>", "version": "1", "description": "a & b"},
            "openapi": "3.0.3", "security": [],
            "paths": {"/x/{id}": {"get": {"summary": "\"quoted\" 'single'", "parameters": [], "responses": {"200": {"description": "<b>"}}}}},
            "components": {"schemas": {"S": {"description": "</pre><script>"}}, "securitySchemes": {}}});
        let page = render(&doc);
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&quot;quoted&quot; &#39;single&#39;"));
        assert!(page.contains("a &amp; b"));
    }
}
