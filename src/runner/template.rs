//! The http runner's templates: `{placeholder}`s in the URL, header values and body, and how a
//! value is escaped for where it lands, so that no value can change the structure around it.
//!
//! - URL: percent-encoded (every byte but ASCII letters and digits).
//! - Header value: as it is (a value with CR, LF or another control character fails the run).
//! - Body, by its [`BodyFormat`]: JSON-string-escaped (`json`), form-encoded (`form`), as it is
//!   (`text`). In a JSON body a placeholder must stand inside a string literal; only `{id}` and
//!   `{attempt}`, always integers, may stand alone. Outside string literals other braces are
//!   JSON's own. A JSON template must be JSON once filled, checked when the config is loaded.
//!
//! A placeholder is `{key}` where the key is letters, digits, `_`, `-`, `.` and spaces; other
//! braces are text.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::definition::BodyFormat;

/// Where a filled-in value lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Url,
    Header,
    Body(BodyFormat),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("no value for {{{0}}} (not in ParameterObject)")]
    Missing(String),
    #[error(
        "{{{0}}} must stand inside a JSON string literal (\"…{{{0}}}…\"); only {{id}} and {{attempt}} may stand alone"
    )]
    OutsideString(String),
    #[error("not JSON once its placeholders are filled in: {0}")]
    NotJson(String),
}

/// Placeholders that are always integers, so they may stand outside a JSON string.
const NUMERIC: [&str; 2] = ["id", "attempt"];

enum Piece<'a> {
    Text(&'a str),
    Slot(&'a str),
}

/// `{key}` at the start of `s`: the key and the length of the placeholder.
fn placeholder(s: &str) -> Option<(&str, usize)> {
    let after = s.strip_prefix('{')?;
    let end = after.find('}')?;
    let key = &after[..end];
    let ok = !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || "_-. ".contains(c));
    ok.then_some((key, end + 2))
}

/// Splits a template into text and placeholders. In JSON, only placeholders inside string
/// literals count (and `{id}`/`{attempt}` anywhere); a key-like `{word}` outside is an error.
fn pieces(template: &str, json: bool) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut in_string = false;
    let mut i = 0;
    let bytes = template.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'"' if json => in_string = !in_string,
            // An escape inside a string: the next character is not a quote or a brace.
            b'\\' if json && in_string => i += 1,
            b'{' => {
                if let Some((key, len)) = placeholder(&template[i..]) {
                    let counts = !json || in_string || NUMERIC.contains(&key);
                    if counts {
                        out.push(Piece::Text(&template[text_start..i]));
                        out.push(Piece::Slot(key));
                        i += len;
                        text_start = i;
                        continue;
                    }
                    if key.chars().any(char::is_alphanumeric) {
                        return Err(TemplateError::OutsideString(key.to_owned()));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push(Piece::Text(&template[text_start..]));
    Ok(out)
}

fn escape(value: &str, target: Target, out: &mut String) {
    match target {
        Target::Url => out.extend(utf8_percent_encode(value, NON_ALPHANUMERIC)),
        Target::Body(BodyFormat::Json) => {
            let quoted = serde_json::Value::from(value).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
        Target::Body(BodyFormat::Form) => out.extend(form_urlencoded::byte_serialize(value.as_bytes())),
        Target::Header | Target::Body(BodyFormat::Text) => out.push_str(value),
    }
}

/// Fills the placeholders of `template` with `value(key)`, escaped for `target`.
pub fn fill(template: &str, target: Target, value: impl Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    let json = target == Target::Body(BodyFormat::Json);
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template, json)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Slot(key) => match value(key) {
                Some(v) => escape(&v, target, &mut out),
                None => return Err(TemplateError::Missing(key.to_owned())),
            },
        }
    }
    Ok(out)
}

/// Placeholders every run fills in itself; the others name ParameterObject keys.
const BUILT_IN: [&str; 4] = ["id", "name", "attempt", "request"];

/// The ParameterObject keys a definition's templates reference, in first-use order, each once:
/// what a caller must put in ParameterObject. Only names: never the templates themselves, which
/// may hold secrets.
pub fn parameter_names(spec: &crate::domain::definition::RunnerSpec) -> Vec<String> {
    use crate::domain::definition::RunnerSpec;
    let RunnerSpec::Http(h) = spec else { return Vec::new() };
    let mut parts: Vec<(&str, bool)> = vec![(h.url.as_str(), false)];
    parts.extend(h.headers.iter().map(|(_, v)| (v.as_str(), false)));
    if let Some(b) = &h.body {
        parts.push((b.as_str(), h.body_format == BodyFormat::Json));
    }
    let mut out: Vec<String> = Vec::new();
    for (template, json) in parts {
        // A template that does not parse was refused at start-up; it names nothing here.
        for piece in pieces(template, json).unwrap_or_default() {
            if let Piece::Slot(key) = piece
                && !BUILT_IN.contains(&key)
                && !out.iter().any(|k| k == key)
            {
                out.push(key.to_owned());
            }
        }
    }
    out
}

/// Checks a body template when the config is loaded: a JSON one must have its placeholders
/// inside strings and be JSON once filled.
pub fn check_body(template: &str, format: BodyFormat) -> Result<(), TemplateError> {
    if format != BodyFormat::Json {
        return Ok(());
    }
    let sample = |key: &str| Some(if NUMERIC.contains(&key) { "1".to_owned() } else { String::new() });
    let filled = fill(template, Target::Body(format), sample)?;
    serde_json::from_str::<serde::de::IgnoredAny>(&filled).map_err(|e| TemplateError::NotJson(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(key: &str) -> Option<String> {
        match key {
            "id" => Some("7".into()),
            "Contact" => Some(r#"1", "admin": true, "x": ""#.into()),
            "Text" => Some("a&b=c d/é\n\"\\".into()),
            _ => None,
        }
    }

    #[test]
    fn a_value_is_escaped_for_where_it_lands() {
        let json = Target::Body(BodyFormat::Json);
        let body = fill(r#"{"task": {id}, "contact": "{Contact}", "note": "x {Text} y"}"#, json, values).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3, "{body}");
        assert_eq!(v["contact"], r#"1", "admin": true, "x": ""#);
        assert_eq!(v["note"], "x a&b=c d/é\n\"\\ y");
        assert_eq!(v["task"], 7);

        let form = fill("a={Text}&b=1", Target::Body(BodyFormat::Form), values).unwrap();
        assert_eq!(form, "a=a%26b%3Dc+d%2F%C3%A9%0A%22%5C&b=1");
        assert_eq!(fill("/x/{Text}", Target::Url, values).unwrap(), "/x/a%26b%3Dc%20d%2F%C3%A9%0A%22%5C");
        assert_eq!(fill("k {Text}", Target::Header, values).unwrap(), "k a&b=c d/é\n\"\\");
        assert_eq!(fill("{Text}", Target::Body(BodyFormat::Text), values).unwrap(), "a&b=c d/é\n\"\\");
    }

    #[test]
    fn json_braces_are_json_and_strings_are_followed_through_escapes() {
        let json = Target::Body(BodyFormat::Json);
        // `{ }` and `{"a": 1}` are objects; `\"` does not end the string; `{x y}` in a string is a placeholder.
        let t = r#"{"o": { }, "p": {"a": 1}, "s": "q\"{Text}\\", "n": {id}}"#;
        let body = fill(t, json, values).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["s"], "q\"a&b=c d/é\n\"\\\\");
        assert_eq!(fill(r#"{"a": "{Nope}"}"#, json, values), Err(TemplateError::Missing("Nope".into())));
    }

    #[test]
    fn a_definition_names_the_parameters_its_templates_reference() {
        use crate::domain::definition::{HttpSpec, RunnerSpec};
        let spec = RunnerSpec::Http(HttpSpec {
            method: "POST".into(),
            url: "https://x.test/{Tenant}/tasks/{id}?q={Query}".into(),
            headers: vec![("Authorization".into(), "Bearer {Token}".into()), ("X-T".into(), "{Tenant}".into())],
            body: Some(r#"{"n": {attempt}, "c": "{Contact}", "r": "{request}"}"#.into()),
            body_format: BodyFormat::Json,
            follow_redirects: 0,
        });
        assert_eq!(parameter_names(&spec), ["Tenant", "Query", "Token", "Contact"]);
        assert!(parameter_names(&RunnerSpec::Noop).is_empty());
    }

    #[test]
    fn a_json_template_is_checked_when_loaded() {
        assert_eq!(check_body(r#"{"task": {id}, "c": "{Contact}"}"#, BodyFormat::Json), Ok(()));
        assert_eq!(
            check_body(r#"{"c": {Contact}}"#, BodyFormat::Json),
            Err(TemplateError::OutsideString("Contact".into()))
        );
        assert_eq!(
            check_body(r#"{"r": {request}}"#, BodyFormat::Json),
            Err(TemplateError::OutsideString("request".into()))
        );
        assert!(matches!(check_body(r#"{"a": "{Contact}""#, BodyFormat::Json), Err(TemplateError::NotJson(_))));
        assert_eq!(check_body(r#"{"c": {Contact}}"#, BodyFormat::Text), Ok(()), "text is not checked");
    }
}
