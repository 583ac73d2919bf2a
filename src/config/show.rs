//! `batchd config show`: the effective configuration, each key with where its value came from,
//! as TOML-like text or JSON, with every secret masked.

use crate::redact::{MASK, redact_url};

use super::layers::Setting;

/// The settings as TOML: top-level keys, then each table, then the arrays of tables; each line
/// ends with its origin as a comment.
pub fn text(settings: &[Setting]) -> String {
    let mut out =
        String::from("# The effective configuration: each value and where it came from; secrets are masked.\n");
    let shown: Vec<(Setting, toml::Value)> = settings.iter().map(|s| (s.clone(), shown_value(s))).collect();
    let is_array_of_tables =
        |v: &toml::Value| matches!(v, toml::Value::Array(a) if !a.is_empty() && a.iter().all(toml::Value::is_table));
    for (s, v) in shown.iter().filter(|(s, v)| !s.key.contains('.') && !is_array_of_tables(v)) {
        line(&mut out, &s.key, s, v);
    }
    let mut tables: Vec<&str> = Vec::new();
    for (s, _) in &shown {
        if let Some((table, _)) = s.key.split_once('.')
            && !tables.contains(&table)
        {
            tables.push(table);
        }
    }
    for table in tables {
        out.push_str(&format!("\n[{table}]\n"));
        for (s, v) in shown.iter().filter(|(s, _)| s.key.split_once('.').is_some_and(|(t, _)| t == table)) {
            line(&mut out, s.key.split_once('.').map_or(&s.key, |(_, k)| k), s, v);
        }
    }
    for (s, v) in shown.iter().filter(|(s, v)| !s.key.contains('.') && is_array_of_tables(v)) {
        let toml::Value::Array(items) = v else { continue };
        for item in items {
            out.push_str(&format!("\n[[{}]]  # {}\n", s.key, s.origin));
            // The name first: it says which definition this is.
            let mut fields: Vec<(&String, &toml::Value)> = item.as_table().into_iter().flatten().collect();
            fields.sort_by_key(|(k, _)| k.as_str() != "name");
            for (k, v) in fields {
                out.push_str(&format!("{} = {}\n", bare_or_quoted(k), inline(v)));
            }
        }
    }
    out
}

fn line(out: &mut String, name: &str, s: &Setting, v: &toml::Value) {
    let left = if s.value.is_some() { format!("{name} = {}", inline(v)) } else { format!("# {name} (not set)") };
    out.push_str(&format!("{left:<44} # {}\n", s.origin));
}

/// `{"key": {"value": …, "source": "…", "env": "BATCHD_…"}, …}`, in the order of the file
/// structs' fields.
pub fn json(settings: &[Setting]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for s in settings {
        let value = match &s.value {
            Some(_) => serde_json::to_value(shown_value(s)).unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        };
        let env = super::schema::env_var(&s.key);
        map.insert(s.key.clone(), serde_json::json!({ "value": value, "source": s.origin.to_string(), "env": env }));
    }
    serde_json::Value::Object(map)
}

/// The value with its secrets masked.
fn shown_value(s: &Setting) -> toml::Value {
    let Some(v) = &s.value else { return toml::Value::String(String::new()) };
    if s.key == "database" {
        return map_strings(v, &|t| redact_url(t));
    }
    if super::layers::is_secret_key(&s.key) {
        return map_strings(v, &|_| MASK.to_owned());
    }
    match v {
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            toml::Value::Array(items.iter().map(redact_table_value).collect())
        }
        other => other.clone(),
    }
}

/// A table inside an array of tables (a `[[definition]]`): URLs without passwords, and secret
/// values of headers, environment and parameters masked.
fn redact_table_value(v: &toml::Value) -> toml::Value {
    let toml::Value::Table(t) = v else { return v.clone() };
    let mut out = toml::Table::new();
    for (k, v) in t {
        let shown = match (k.as_str(), v) {
            (_, toml::Value::Table(inner)) => {
                let mut masked = toml::Table::new();
                for (name, value) in inner {
                    let secret = looks_secret(name) || value.as_str().is_some_and(looks_like_credential);
                    let value = if secret { map_strings(value, &|_| MASK.to_owned()) } else { value.clone() };
                    masked.insert(name.clone(), value);
                }
                toml::Value::Table(masked)
            }
            ("url", _) => map_strings(v, &|u| redact_query(&redact_url(u))),
            (name, _) if super::layers::is_secret_key(name) => map_strings(v, &|_| MASK.to_owned()),
            _ => v.clone(),
        };
        out.insert(k.clone(), shown);
    }
    toml::Value::Table(out)
}

fn map_strings(v: &toml::Value, f: &dyn Fn(&str) -> String) -> toml::Value {
    match v {
        toml::Value::String(s) => toml::Value::String(f(s)),
        toml::Value::Array(items) => toml::Value::Array(items.iter().map(|i| map_strings(i, f)).collect()),
        toml::Value::Table(t) => toml::Value::Table(t.iter().map(|(k, v)| (k.clone(), map_strings(v, f))).collect()),
        other => other.clone(),
    }
}

/// A free name (a header, a variable, a parameter) that says its value is a secret: passwords,
/// tokens, keys, credentials, cookies. Broad on purpose: masking a harmless value costs little.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "auth", "credential", "cookie", "key", "session", "signature"]
        .iter()
        .any(|w| n.contains(w))
}

/// A value that reads as a credential whatever its name: an authorization scheme and its
/// secret, or a long run of letters and digits (an API key).
fn looks_like_credential(value: &str) -> bool {
    let v = value.trim();
    let lower = v.to_ascii_lowercase();
    let scheme = ["bearer ", "basic ", "token ", "digest ", "negotiate ", "apikey ", "key "]
        .iter()
        .any(|s| lower.starts_with(s));
    let keyish = v.len() >= 20
        && !v.contains(char::is_whitespace)
        && v.chars().any(|c| c.is_ascii_digit())
        && v.chars().any(|c| c.is_ascii_alphabetic());
    scheme || keyish
}

/// Query parameters whose names look secret (`?token=…`, `&api_key=…`) masked.
fn redact_query(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_owned() };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if looks_secret(name) => format!("{name}={MASK}"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{base}?{}", parts.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A TOML inline value.
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => {
            let t = f.to_string();
            if t.contains(['.', 'e', 'E']) || !f.is_finite() { t } else { format!("{t}.0") }
        }
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => format!("[{}]", items.iter().map(inline).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(t) => {
            let fields: Vec<String> = t.iter().map(|(k, v)| format!("{} = {}", bare_or_quoted(k), inline(v))).collect();
            if fields.is_empty() { "{}".into() } else { format!("{{ {} }}", fields.join(", ")) }
        }
    }
}

fn bare_or_quoted(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_owned()
    } else {
        serde_json::to_string(key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layers::Origin;

    fn setting(key: &str, value: toml::Value) -> Setting {
        Setting { key: key.into(), value: Some(value), origin: Origin::Default }
    }

    #[test]
    fn secrets_are_masked_and_the_rest_is_kept() {
        let def: toml::Value = toml::from_str::<toml::Table>(
            r#"d = { name = "n", url = "https://u:pw1@h/x?token=tk1&a=1", headers = { Authorization = "Bearer bt1", "X-Plain" = "Basic b64secret", Accept = "text/plain" }, env = { DB_PASSWORD = "envpw" } }"#,
        )
        .unwrap()
        .remove("d")
        .unwrap();
        let settings = [
            setting("database", "postgres://u:dbpw@h/db".into()),
            setting("admin_password", "adminpw".into()),
            setting("auth.app_tokens", toml::Value::Array(vec!["apptok".into()])),
            setting("definition", toml::Value::Array(vec![def])),
        ];
        let text = text(&settings);
        let json = json(&settings).to_string();
        for secret in ["pw1", "tk1", "bt1", "b64secret", "envpw", "dbpw", "adminpw", "apptok"] {
            assert!(!text.contains(secret) && !json.contains(secret), "{secret} shown:\n{text}\n{json}");
        }
        for kept in ["text/plain", "a=1", "postgres://u:***@h/db", "name = \"n\""] {
            assert!(text.contains(kept), "{kept} missing:\n{text}");
        }
    }
}
