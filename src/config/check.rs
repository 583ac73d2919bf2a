//! `batchd config check FILE`: every bad key of a config file with its line. Unknown keys and
//! wrong types come from the file's shape ([`super::schema`]); values out of range from the same
//! rules the server loads with, each key tried on its own so one mistake does not hide another.

use std::collections::HashMap;
use std::path::Path;

use super::layers;
use super::schema::{self, Kind};
use super::{Config, FileConfig};

/// One bad key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    /// 1-based; `None` when no line can be named (a rule across keys that names none of them).
    pub line: Option<usize>,
    /// The dotted key (`http.max_connections`, `definition[2].timeout`), empty for the file.
    pub key: String,
    pub message: String,
}

impl Problem {
    /// `FILE:LINE: KEY: message`, as compilers write it.
    pub fn render(&self, file: &Path) -> String {
        let line = self.line.map(|l| format!(":{l}")).unwrap_or_default();
        let key = if self.key.is_empty() { String::new() } else { format!(" {}:", self.key) };
        format!("{}{line}:{key} {}", file.display(), self.message)
    }
}

/// Checks the file at `path`. `Err` only when it cannot be read.
pub fn check_file(path: &Path) -> anyhow::Result<Vec<Problem>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading config file {}: {e}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= layers::MAX_FILE_BYTES,
        "config file {}: larger than {} KiB",
        path.display(),
        layers::MAX_FILE_BYTES >> 10
    );
    Ok(check_text(&text))
}

/// Every problem of a config file's text, in line order.
pub fn check_text(text: &str) -> Vec<Problem> {
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start));
            return vec![Problem { line, key: String::new(), message: format!("not TOML: {}", e.message()) }];
        }
    };
    let lines = key_lines(text);
    let mut walk = Walk { lines: &lines, problems: Vec::new(), leaves: Vec::new(), definitions: Vec::new() };
    walk.table(&table, schema::file(), "");
    let Walk { mut problems, leaves, definitions, .. } = walk;

    // Each key alone over the defaults; one that fails alone is tried again with the other
    // good keys of its table, so a rule between two keys (heartbeat and lease) does not blame a
    // key that is right together with its neighbours.
    let alone_bad: Vec<(&Leaf, String)> =
        leaves.iter().filter_map(|leaf| try_keys(&[leaf]).err().map(|e| (leaf, e))).collect();
    for (leaf, message) in &alone_bad {
        let neighbours: Vec<&Leaf> = leaves
            .iter()
            .filter(|l| (l.table == leaf.table && !alone_bad.iter().any(|(b, _)| b.key == l.key)) || l.key == leaf.key)
            .collect();
        if try_keys(&neighbours).is_err() {
            problems.push(Problem {
                line: lines.get(&leaf.key).copied(),
                key: leaf.key.clone(),
                message: message.clone(),
            });
        }
    }
    for (index, def) in &definitions {
        let mut t = toml::Table::new();
        t.insert("definition".into(), toml::Value::Array(vec![toml::Value::Table(def.clone())]));
        if let Err(message) = build(t) {
            let key = format!("definition[{index}]");
            problems.push(Problem { line: lines.get(&key).copied(), key, message });
        }
    }
    if problems.is_empty()
        && let Err(message) = build(table)
    {
        // A rule across keys: point at the first key the message names.
        let named = schema::env_keys().iter().find(|k| message.contains(&k.key));
        let key = named.map(|k| k.key.clone()).unwrap_or_default();
        problems.push(Problem { line: lines.get(&key).copied(), key, message });
    }
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    problems
}

/// A key whose value has the right type, to be tried against the value rules.
struct Leaf {
    /// The top-level table it is in (`""` for top-level keys).
    table: String,
    key: String,
    value: toml::Value,
}

struct Walk<'a> {
    lines: &'a HashMap<String, usize>,
    problems: Vec<Problem>,
    leaves: Vec<Leaf>,
    /// Each `[[definition]]` without a bad key: its index and its table.
    definitions: Vec<(usize, toml::Table)>,
}

impl Walk<'_> {
    fn problem(&mut self, key: String, message: String) {
        let line = self.lines.get(&key).copied();
        self.problems.push(Problem { line, key, message });
    }

    /// The keys of `table`, whose shape is `kind`.
    fn table(&mut self, table: &toml::Table, kind: &Kind, prefix: &str) {
        self.table_into(table, kind, prefix, None);
    }

    /// [`Walk::table`]; with `keep`, the good keys go there instead of to the leaves (the keys
    /// of one `[[definition]]`, tried together).
    fn table_into(&mut self, table: &toml::Table, kind: &Kind, prefix: &str, mut keep: Option<&mut toml::Table>) {
        for (name, value) in table {
            let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            let Some(field) = kind.field(name) else {
                let message = unknown_key_message(name, kind, prefix);
                self.problem(key, message);
                continue;
            };
            match (&field.kind, value) {
                (Kind::Table(_), toml::Value::Table(inner)) if keep.is_none() => self.table(inner, &field.kind, &key),
                (Kind::List(inner), toml::Value::Array(items))
                    if matches!(**inner, Kind::Table(_)) && keep.is_none() =>
                {
                    for (i, item) in items.iter().enumerate() {
                        let item_key = format!("{key}[{i}]");
                        match item {
                            toml::Value::Table(t) => {
                                let mut good = toml::Table::new();
                                let before = self.problems.len();
                                self.table_into(t, inner, &item_key, Some(&mut good));
                                if self.problems.len() == before {
                                    self.definitions.push((i, good));
                                }
                            }
                            other => self.problem(item_key, format!("expected a table, found {}", other.type_str())),
                        }
                    }
                }
                (k, v) => match mismatch(k, v, layers::is_secret_key(&key)) {
                    Some(message) => self.problem(key, message),
                    None => match keep.as_deref_mut() {
                        Some(keep) => {
                            keep.insert(name.clone(), value.clone());
                        }
                        None => {
                            let top = if prefix.is_empty() { String::new() } else { prefix.to_owned() };
                            self.leaves.push(Leaf { table: top, key, value: value.clone() });
                        }
                    },
                },
            }
        }
    }
}

/// "unknown key", with the nearest known key of the same table, or the table where a key of
/// that name belongs.
fn unknown_key_message(name: &str, kind: &Kind, prefix: &str) -> String {
    let place = match prefix {
        "" => "at the top level".to_owned(),
        // A table of an array of tables: `definition[0]`.
        p if p.ends_with(']') => format!("in {p}"),
        p => format!("in [{p}]"),
    };
    let mut message = format!("unknown key {name:?} {place}");
    let Kind::Table(fields) = kind else { return message };
    let nearest = fields
        .iter()
        .map(|f| (strsim::jaro_winkler(name, f.name), f.name))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, near)) = nearest {
        message.push_str(&format!("; did you mean {near:?}?"));
    } else if let Some(k) = schema::env_keys().iter().find(|k| k.key.rsplit('.').next() == Some(name)) {
        let (table, _) = k.key.rsplit_once('.').unwrap_or(("", name));
        let table = if table.is_empty() { "the top level".to_owned() } else { format!("[{table}]") };
        message.push_str(&format!("; did you mean {name:?} in {table}?"));
    }
    message
}

/// What is wrong with the type of `value` for a key that holds `kind`, if anything; the value
/// itself is not quoted when it is a `secret`.
fn mismatch(kind: &Kind, value: &toml::Value, secret: bool) -> Option<String> {
    use toml::Value as V;
    let fits = match (kind, value) {
        (Kind::Bool, V::Boolean(_)) | (Kind::Text, V::String(_)) | (Kind::Any, _) => true,
        (Kind::Int { min, max }, V::Integer(n)) => {
            if !(*min..=*max).contains(&i128::from(*n)) {
                let n = if secret { "the value".to_owned() } else { n.to_string() };
                return Some(format!("{n} is out of range: expected {}", kind.describe()));
            }
            true
        }
        (Kind::Float, V::Float(_) | V::Integer(_)) => true,
        (Kind::NumberOrText, V::Float(_) | V::Integer(_) | V::String(_)) => true,
        (Kind::List(inner), V::Array(items)) => {
            return items
                .iter()
                .enumerate()
                .find_map(|(i, item)| mismatch(inner, item, secret).map(|m| format!("item {i}: {m}")));
        }
        (Kind::Map(inner), V::Table(t)) => {
            return t.iter().find_map(|(k, v)| mismatch(inner, v, secret).map(|m| format!("{k}: {m}")));
        }
        (Kind::Table(_), V::Table(_)) => true,
        _ => false,
    };
    let found = if secret { format!("a {}", value.type_str()) } else { describe_value(value) };
    (!fits).then(|| format!("expected {}, found {found}", kind.describe()))
}

fn describe_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        toml::Value::Integer(n) => format!("the integer {n}"),
        toml::Value::Boolean(b) => format!("{b}"),
        other => format!("a {}", other.type_str()),
    }
}

/// `leaves` alone over the defaults, through the rules the server loads with.
fn try_keys(leaves: &[&Leaf]) -> Result<(), String> {
    let mut t = toml::Table::new();
    for leaf in leaves {
        insert(&mut t, &leaf.key, leaf.value.clone());
    }
    build(t)
}

fn insert(t: &mut toml::Table, dotted: &str, value: toml::Value) {
    match dotted.split_once('.') {
        None => {
            t.insert(dotted.to_owned(), value);
        }
        Some((first, rest)) => {
            let inner = t.entry(first.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = inner {
                insert(inner, rest, value);
            }
        }
    }
}

fn build(t: toml::Table) -> Result<(), String> {
    let file: FileConfig = toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
    Config::build(file).map(drop).map_err(|e| format!("{e:#}"))
}

/// The 1-based line of every key of a TOML text, dotted (`http.max_connections`), and of each
/// table of an array of tables (`definition[0]`, at its header) and their keys.
pub fn key_lines(text: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    if let Ok(doc) = toml_edit::ImDocument::parse(text) {
        table_lines(text, doc.as_table(), "", &mut out);
    }
    out
}

fn table_lines(text: &str, table: &dyn toml_edit::TableLike, prefix: &str, out: &mut HashMap<String, usize>) {
    for (name, item) in table.iter() {
        let key = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") };
        let key_span = table.key(name).and_then(toml_edit::Key::span);
        if let Some(span) = key_span.clone().or_else(|| item.span()) {
            out.insert(key.clone(), line_of(text, span.start));
        }
        if let Some(aot) = item.as_array_of_tables() {
            for (i, t) in aot.iter().enumerate() {
                let item_key = format!("{key}[{i}]");
                if let Some(span) = t.span() {
                    out.insert(item_key.clone(), line_of(text, span.start));
                }
                table_lines(text, t, &item_key, out);
            }
        } else if let Some(array) = item.as_array() {
            for (i, v) in array.iter().enumerate() {
                if let Some(t) = v.as_inline_table() {
                    let item_key = format!("{key}[{i}]");
                    if let Some(span) = v.span() {
                        out.insert(item_key.clone(), line_of(text, span.start));
                    }
                    table_lines(text, t, &item_key, out);
                }
            }
        } else if let Some(t) = item.as_table_like() {
            table_lines(text, t, &key, out);
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_key_is_named_with_its_line() {
        let text = "\
listen = \"127.0.0.1:8080\"
lissen = \"x\"
[http]
max_conections = 5
body_read_timeout = true
[postgres]
pool_size = 5000
[[definition]]
name = \"d\"
runner = \"rocket\"
";
        let problems = check_text(text);
        let found: Vec<(Option<usize>, &str)> = problems.iter().map(|p| (p.line, p.key.as_str())).collect();
        assert_eq!(
            found,
            [
                (Some(2), "lissen"),
                (Some(4), "http.max_conections"),
                (Some(5), "http.body_read_timeout"),
                (Some(7), "postgres.pool_size"),
                (Some(8), "definition[0]"),
            ],
            "{problems:#?}"
        );
        assert!(problems[0].message.contains("did you mean \"listen\""), "{:?}", problems[0]);
        assert!(problems[1].message.contains("did you mean \"max_connections\""), "{:?}", problems[1]);
        assert!(problems[2].message.contains("expected a number or a string"), "{:?}", problems[2]);
        assert!(problems[3].message.contains("between 1 and 1000"), "{:?}", problems[3]);
        assert!(problems[4].message.contains("rocket"), "{:?}", problems[4]);
    }

    #[test]
    fn keys_right_together_are_not_blamed_and_the_example_is_good() {
        assert_eq!(check_text("[runner]\nlease = \"2s\"\nheartbeat = \"1s\"\n"), []);
        let wrong = check_text("[runner]\nlease = \"2s\"\nheartbeat = \"5s\"\n");
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(wrong[0].message.contains("heartbeat"), "{wrong:?}");
        assert_eq!(check_text(layers::EXAMPLE), [], "batchd.example.toml is a good file");
        let syntax = check_text("a = 1\nb = = 2\n");
        assert_eq!(syntax.len(), 1);
        assert_eq!(syntax[0].line, Some(2), "{syntax:?}");
    }

    #[test]
    fn a_key_in_the_wrong_table_is_pointed_to_its_table() {
        let p = check_text("pool_size = 4\n");
        assert!(p[0].message.contains("in [postgres]"), "{p:?}");
    }

    #[test]
    fn lines_of_keys_and_tables() {
        let lines = key_lines("a = 1\n\n[http]\nmax_connections = 3\n[[definition]]\nname = \"x\"\n");
        assert_eq!(lines.get("a"), Some(&1));
        assert_eq!(lines.get("http.max_connections"), Some(&4));
        assert_eq!(lines.get("definition[0]"), Some(&5));
        assert_eq!(lines.get("definition[0].name"), Some(&6));
    }
}
