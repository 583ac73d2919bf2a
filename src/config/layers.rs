//! Where settings come from, lowest first: the built-in defaults, the file (`--config`), the
//! environment (`BATCHD_<TABLE>_<KEY>`), the flags. figment merges the layers and remembers
//! which one each value came from; the merged table is read as the file structs and applied over
//! the defaults, so every key of the file can be set from any layer with the same rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};

use super::schema::{self, Kind};
use super::{Config, FileConfig};

/// A config file larger than this is refused unread (every real one is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The inputs of one resolution.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// `BATCHD_…` variables (others are ignored, as are `BATCHD_…` names that are no key).
    pub env: Vec<(String, String)>,
    pub flags: Vec<Flag>,
}

/// A flag that sets a key: `--listen` sets `listen`.
#[derive(Debug, Clone)]
pub struct Flag {
    pub flag: &'static str,
    pub key: &'static str,
    pub value: String,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: Option<usize> },
    Env(String),
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line: Some(line) } => write!(f, "file {}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One key of the effective configuration, as written (before defaults are turned into the
/// typed [`Config`]). `value` is `None` for a key that is not set and has no default value.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: String,
    pub value: Option<toml::Value>,
    pub origin: Origin,
}

/// The typed configuration and every key with its origin.
pub struct Effective {
    pub config: Config,
    pub settings: Vec<Setting>,
    /// `BATCHD_…` variables that set nothing but are spelt nearly like a key's: (variable, the
    /// key's variable). Warned about, never an error.
    pub misspelt: Vec<(String, String)>,
}

impl Sources {
    /// The file at `path`, if any, over the defaults: no environment, no flags.
    pub fn file_only(path: Option<&Path>) -> Sources {
        Sources { file: path.map(Path::to_owned), ..Sources::default() }
    }

    /// The process's `BATCHD_…` variables.
    pub fn process_env() -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("BATCHD_"))
            .collect()
    }

    pub fn resolve(&self) -> anyhow::Result<Effective> {
        let mut figment = Figment::new();
        let mut lines = HashMap::new();
        if let Some(path) = &self.file {
            let text = read_file(path)?;
            // Parsed by `toml` first for its message (line, column and the line itself).
            toml::from_str::<toml::Table>(&text).with_context(|| format!("parsing config file {}", path.display()))?;
            lines = super::check::key_lines(&text);
            let data = Toml::string(&text)
                .data()
                .map_err(|e| anyhow::anyhow!("parsing config file {}: {e}", path.display()))?;
            figment =
                figment.merge(Layer { meta: Metadata::named(FILE).source(figment::Source::File(path.clone())), data });
        }
        let env_table = self.env_table()?;
        figment = figment.merge(Layer::of(ENV, &env_table)?);
        let flag_table = self.flag_table()?;
        figment = figment.merge(Layer::of(FLAG, &flag_table)?);

        let file: FileConfig = figment.extract().map_err(|e| self.explain(e))?;
        let merged: toml::Table = figment.extract().map_err(|e| self.explain(e))?;
        let settings = self.settings(&figment, &merged, &lines);
        let config = Config::build(file).map_err(|e| with_origin(e, &settings))?;
        Ok(Effective { config, settings, misspelt: self.misspelt() })
    }

    fn env_table(&self) -> anyhow::Result<toml::Table> {
        let vars: HashMap<&str, &str> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut table = toml::Table::new();
        for key in schema::env_keys() {
            if let Some(text) = vars.get(key.var.as_str()) {
                let value = value_from_text(&key.kind, text).map_err(|e| anyhow::anyhow!("{}: {e}", key.var))?;
                insert(&mut table, &key.key, value);
            }
        }
        Ok(table)
    }

    fn misspelt(&self) -> Vec<(String, String)> {
        // Variables batchd reads that are no key: the CLI's, and those it sets for programs.
        const OTHERS: [&str; 10] = [
            "BATCHD_CONFIG",
            "BATCHD_LOG",
            "BATCHD_SERVER",
            "BATCHD_TOKEN",
            "BATCHD_USER",
            "BATCHD_PASSWORD",
            "BATCHD_PROFILE",
            "BATCHD_TASK_ID",
            "BATCHD_TASK_NAME",
            "BATCHD_ATTEMPT",
        ];
        const OTHER_PREFIXES: [&str; 4] = ["BATCHD_PARAM_", "BATCHD_TEST_", "BATCHD_REQUIRE_", "BATCHD_FAULTS_"];
        let keys = schema::env_keys();
        self.env
            .iter()
            .map(|(var, _)| var)
            .filter(|var| !keys.iter().any(|k| &k.var == *var))
            .filter(|var| !OTHERS.contains(&var.as_str()) && !OTHER_PREFIXES.iter().any(|p| var.starts_with(p)))
            .filter_map(|var| {
                let (score, near) = keys
                    .iter()
                    .map(|k| (strsim::jaro_winkler(var, &k.var), &k.var))
                    .max_by(|a, b| a.0.total_cmp(&b.0))?;
                (score >= 0.93).then(|| (var.clone(), near.clone()))
            })
            .collect()
    }

    fn flag_table(&self) -> anyhow::Result<toml::Table> {
        let mut table = toml::Table::new();
        for flag in &self.flags {
            let kind = schema::env_keys()
                .iter()
                .find(|k| k.key == flag.key)
                .map(|k| &k.kind)
                .with_context(|| format!("{} sets {}, which is no configuration key", flag.flag, flag.key))?;
            let value = value_from_text(kind, &flag.value).map_err(|e| anyhow::anyhow!("{}: {e}", flag.flag))?;
            insert(&mut table, flag.key, value);
        }
        Ok(table)
    }

    /// A figment error as "KEY (from WHERE): what is wrong".
    fn explain(&self, e: figment::Error) -> anyhow::Error {
        let lines: Vec<String> = e
            .into_iter()
            .map(|e| {
                let key = e.path.join(".");
                let origin = match e.metadata.as_ref().map(|m| m.name.as_ref()) {
                    Some(FILE) => self.file.as_ref().map(|p| format!(" (file {})", p.display())),
                    Some(ENV) => Some(format!(" (env {})", schema::env_var(&key))),
                    Some(FLAG) => self.flags.iter().find(|f| f.key == key).map(|f| format!(" (flag {})", f.flag)),
                    _ => None,
                };
                let kind = if is_secret_key(&key) { secret_safe(&e.kind) } else { e.kind.to_string() };
                if key.is_empty() {
                    format!("{kind}{}", origin.unwrap_or_default())
                } else {
                    format!("{key}{}: {kind}", origin.unwrap_or_default())
                }
            })
            .collect();
        anyhow::anyhow!("{}", lines.join("; "))
    }

    fn settings(&self, figment: &Figment, merged: &toml::Table, lines: &HashMap<String, usize>) -> Vec<Setting> {
        let defaults = shown_defaults();
        schema::env_keys()
            .iter()
            .map(|k| match lookup(merged, &k.key) {
                Some(value) => {
                    let origin = match figment.find_metadata(&k.key).map(|m| m.name.as_ref()) {
                        Some(ENV) => Origin::Env(k.var.clone()),
                        Some(FLAG) => {
                            Origin::Flag(self.flags.iter().rev().find(|f| f.key == k.key).map_or("", |f| f.flag))
                        }
                        _ => Origin::File {
                            path: self.file.clone().unwrap_or_default(),
                            line: lines.get(&k.key).copied(),
                        },
                    };
                    Setting { key: k.key.clone(), value: Some(value.clone()), origin }
                }
                None => {
                    Setting { key: k.key.clone(), value: lookup(defaults, &k.key).cloned(), origin: Origin::Default }
                }
            })
            .collect()
    }
}

/// A key whose value is never printed, in errors or by `config show`: the database URL (its
/// password) and every key named for a secret (`admin_password`, `app_tokens`); not keys that
/// are only about one (`password_checks_per_address`).
pub fn is_secret_key(key: &str) -> bool {
    let name = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    key == "database"
        || ["password", "passwd", "token", "tokens", "secret", "secrets", "_key", "_keys"]
            .iter()
            .any(|w| name.ends_with(w))
}

/// What figment says is wrong, without the value it found.
fn secret_safe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind as K;
    match kind {
        K::InvalidType(_, expected) => format!("invalid type: expected {expected} (the value is not shown)"),
        K::InvalidValue(_, expected) => format!("invalid value: expected {expected} (the value is not shown)"),
        _ => "invalid value (not shown)".into(),
    }
}

/// A rule's message names its key but not where the value came from: add the origin of the
/// longest key the message names, when that is not the file (whose path the reader has).
fn with_origin(e: anyhow::Error, settings: &[Setting]) -> anyhow::Error {
    let message = format!("{e:#}");
    let named = settings
        .iter()
        .filter(|s| matches!(s.origin, Origin::Env(_) | Origin::Flag(_)))
        .filter(|s| message.contains(s.key.rsplit('.').next().unwrap_or(&s.key)))
        .max_by_key(|s| s.key.len());
    match named {
        Some(s) => anyhow::anyhow!("{message} (from {})", s.origin),
        None => e,
    }
}

const FILE: &str = "file";
const ENV: &str = "environment";
const FLAG: &str = "flag";

fn read_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("reading config file {}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_FILE_BYTES,
        "config file {}: larger than {} KiB",
        path.display(),
        MAX_FILE_BYTES >> 10
    );
    Ok(text)
}

/// The defaults as `config show` prints them: the values of `batchd.example.toml`, which shows
/// the defaults (a test holds it to that), without its example `[[definition]]` tables.
fn shown_defaults() -> &'static toml::Table {
    static DEFAULTS: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(|| {
        let mut t: toml::Table = toml::from_str(EXAMPLE).unwrap_or_default();
        t.remove("definition");
        t
    })
}

pub(crate) const EXAMPLE: &str = include_str!("../../batchd.example.toml");

/// One layer: a name figment tags its values with, and its data.
struct Layer {
    meta: Metadata,
    data: Map<Profile, Dict>,
}

impl Layer {
    fn of(name: &'static str, table: &toml::Table) -> anyhow::Result<Layer> {
        let data = Serialized::defaults(table).data().map_err(|e| anyhow::anyhow!("the {name} layer: {e}"))?;
        Ok(Layer { meta: Metadata::named(name), data })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.meta.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(self.data.clone())
    }
}

fn insert(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts = dotted.split('.').peekable();
    let mut table = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), value);
            return;
        }
        let entry = table.entry(part.to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = entry else { return };
        table = inner;
    }
}

pub(crate) fn lookup<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let (first, rest) = match dotted.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (dotted, None),
    };
    let value = table.get(first)?;
    match (rest, value) {
        (None, v) => Some(v),
        (Some(rest), toml::Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

/// A variable's or a flag's text as the value its key holds. Lists: a TOML array
/// (`["a", "b"]`) or the items separated by commas (`a,b`); tables and arrays of tables: a TOML
/// or JSON value; a number-or-text (a duration) is a number when it reads as one.
pub fn value_from_text(kind: &Kind, text: &str) -> Result<toml::Value, String> {
    let t = text.trim();
    match kind {
        Kind::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err("use true or false".into()),
        },
        Kind::Int { min, max } => match t.parse::<i64>() {
            Ok(n) if (*min..=*max).contains(&i128::from(n)) => Ok(toml::Value::Integer(n)),
            _ => Err(format!("use a whole number from {min} to {}", (*max).min(i128::from(i64::MAX)))),
        },
        Kind::Float => t.parse::<f64>().map(toml::Value::Float).map_err(|_| "use a number".into()),
        Kind::Text => Ok(toml::Value::String(text.to_owned())),
        Kind::NumberOrText => Ok(match (t.parse::<i64>(), t.parse::<f64>()) {
            (Ok(n), _) => toml::Value::Integer(n),
            (_, Ok(f)) if f.is_finite() => toml::Value::Float(f),
            _ => toml::Value::String(t.to_owned()),
        }),
        Kind::List(inner)
            if !matches!(**inner, Kind::Table(_) | Kind::List(_) | Kind::Map(_)) && !t.starts_with('[') =>
        {
            if t.is_empty() {
                return Ok(toml::Value::Array(Vec::new()));
            }
            t.split(',')
                .map(|item| value_from_text(inner, item.trim()))
                .collect::<Result<_, _>>()
                .map(toml::Value::Array)
        }
        Kind::List(_) | Kind::Map(_) | Kind::Table(_) | Kind::Any => structured(t, kind),
    }
}

/// A TOML value (`[{ name = "x", runner = "noop" }]`) or, failing that, JSON.
fn structured(text: &str, kind: &Kind) -> Result<toml::Value, String> {
    if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("value = {text}"))
        && let Some(v) = t.remove("value")
    {
        return Ok(v);
    }
    serde_json::from_str::<toml::Value>(text)
        .map_err(|_| format!("use {} written as a TOML or JSON value", kind.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_environment_sets_keys_with_underscores_by_their_table() {
        let sources = Sources {
            env: vars(&[
                ("BATCHD_HTTP_MAX_CONNECTIONS", "77"),
                ("BATCHD_RETENTION_SUCCEEDED_MANUAL_CLEANUP", "never"),
                ("BATCHD_AUTH_CORS_ORIGINS", "https://a.example, https://b.example"),
                ("BATCHD_STRICT_DEFINITIONS", "true"),
                ("BATCHD_DEFINITION", r#"[{ name = "e", runner = "external" }]"#),
                ("BATCHD_NOT_A_KEY", "ignored"),
            ]),
            ..Sources::default()
        };
        let eff = sources.resolve().unwrap();
        let c = &eff.config;
        assert_eq!(c.http.max_connections, 77);
        assert_eq!(c.retention.succeeded_manual_cleanup, None);
        assert_eq!(c.access.cors_origins, ["https://a.example", "https://b.example"]);
        assert!(c.strict_definitions);
        assert!(c.definitions.iter().any(|d| d.name == "e"));
        let origin = |key: &str| eff.settings.iter().find(|s| s.key == key).map(|s| s.origin.to_string());
        assert_eq!(origin("http.max_connections").as_deref(), Some("env BATCHD_HTTP_MAX_CONNECTIONS"));
        assert_eq!(origin("http.keep_alive_timeout").as_deref(), Some("default"));
    }

    #[test]
    fn a_misspelt_variable_is_pointed_out_and_others_of_batchd_are_not() {
        let env = vars(&[
            ("BATCHD_HTTP_MAX_CONECTIONS", "5"),
            ("BATCHD_RUNER_LEASE", "5s"),
            ("BATCHD_LOG", "debug"),
            ("BATCHD_PASSWORD", "x"),
            ("BATCHD_TEST_PG", "postgres://x"),
            ("BATCHD_HTTP_MAX_CONNECTIONS", "6"),
        ]);
        let eff = Sources { env, ..Sources::default() }.resolve().unwrap();
        assert_eq!(
            eff.misspelt,
            [
                ("BATCHD_HTTP_MAX_CONECTIONS".to_owned(), "BATCHD_HTTP_MAX_CONNECTIONS".to_owned()),
                ("BATCHD_RUNER_LEASE".to_owned(), "BATCHD_RUNNER_LEASE".to_owned()),
            ]
        );
    }

    #[test]
    fn a_bad_variable_is_named_in_the_error() {
        for (var, value) in [
            ("BATCHD_HTTP_MAX_CONNECTIONS", "many"),
            ("BATCHD_HTTP_MAX_CONNECTIONS", "0"),
            ("BATCHD_RUNNER_ENABLED", "maybe"),
        ] {
            let e = Sources { env: vars(&[(var, value)]), ..Sources::default() }.resolve().err().expect(var);
            let text = format!("{e:#}");
            assert!(text.contains(var) || text.contains("http.max_connections"), "{var}={value}: {text}");
        }
    }

    #[test]
    fn the_example_shows_the_defaults() {
        let mut example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        example.remove("definition");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("defaults.toml");
        std::fs::write(&path, toml_text(&example)).unwrap();
        let from_example = Sources::file_only(Some(&path)).resolve().unwrap().config;
        assert_eq!(format!("{from_example:?}"), format!("{:?}", Config::default()));
    }

    /// Every key is in the example: set to its default, or, without one, on a commented line
    /// (`# node = …`) in its table; every key of a `[[definition]]` is named in it.
    #[test]
    fn the_example_names_every_key() {
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let mut commented: Vec<String> = Vec::new();
        let mut table = String::new();
        for line in EXAMPLE.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix('[').filter(|_| !line.starts_with("[[")) {
                table = rest.split(']').next().unwrap_or("").to_owned();
            } else if line.starts_with("[[") {
                table = String::new();
            } else if let Some(rest) = line.strip_prefix('#')
                && let Some((name, _)) = rest.trim().split_once(" = ")
            {
                commented.push(if table.is_empty() { name.to_owned() } else { format!("{table}.{name}") });
            }
        }
        for k in schema::env_keys() {
            assert!(
                lookup(&example, &k.key).is_some() || commented.contains(&k.key),
                "{} is missing from batchd.example.toml",
                k.key
            );
        }
        let Some(Kind::List(def)) = schema::file().field("definition").map(|f| &f.kind) else { panic!() };
        let Kind::Table(fields) = &**def else { panic!() };
        for f in fields {
            assert!(
                EXAMPLE.contains(&format!("{} ", f.name)),
                "definition key {} is missing from batchd.example.toml",
                f.name
            );
        }
    }

    #[test]
    fn docs_config_md_names_every_variable() {
        let docs = include_str!("../../docs/config.md");
        for k in schema::env_keys() {
            assert!(docs.contains(&format!("`{}`", k.var)), "docs/config.md does not name {}", k.var);
        }
    }

    /// Enough of a TOML writer for the test above: top-level scalars, then one level of tables.
    fn toml_text(t: &toml::Table) -> String {
        let scalar = |v: &toml::Value| serde_json::to_string(v).unwrap();
        let mut out = String::new();
        for (k, v) in t.iter().filter(|(_, v)| !v.is_table()) {
            out.push_str(&format!("{k} = {}\n", scalar(v)));
        }
        for (k, v) in t.iter().filter_map(|(k, v)| v.as_table().map(|t| (k, t))) {
            out.push_str(&format!("[{k}]\n"));
            for (k, v) in v {
                out.push_str(&format!("{k} = {}\n", scalar(v)));
            }
        }
        out
    }
}
