//! Configuration: defaults, then the TOML file (`--config`), then environment and flags.
//! Every key is documented in `batchd.example.toml`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono_tz::Tz;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: String,
    /// Accepted in front of `/api` (e.g. `/Cust12345`); empty for none.
    pub path_prefix: String,
    /// Zone for dates when a request names none.
    pub base_zone: Tz,
    /// Refuse to create tasks whose Name has no definition.
    pub strict_definitions: bool,
    /// How long a verified credential is trusted without hashing again.
    pub credential_cache: Duration,
    /// First admin, created when there are no associates (`BATCHD_ADMIN_USER`/`_PASSWORD`).
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    // -- identity and access (issue 4) --
    // -- runner (issue 5) --
    pub runner: crate::runner::settings::RunnerConfig,
    pub retention: crate::runner::settings::RetentionConfig,
    /// Task definitions, the built-ins included (see `batchd.example.toml`).
    pub definitions: Vec<crate::domain::definition::Definition>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            database: "sqlite:batchd.db".into(),
            path_prefix: String::new(),
            base_zone: Tz::UTC,
            strict_definitions: false,
            credential_cache: Duration::from_secs(60),
            admin_user: None,
            admin_password: None,
            runner: Default::default(),
            retention: Default::default(),
            definitions: crate::runner::settings::default_definitions(),
        }
    }
}

/// The file's shape. Everything optional: missing keys keep their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub path_prefix: Option<String>,
    pub base_timezone: Option<String>,
    pub strict_definitions: Option<bool>,
    pub auth: Option<AuthFileConfig>,
    // -- runner (issue 5) --
    pub runner: Option<crate::runner::settings::RunnerFile>,
    pub retention: Option<crate::runner::settings::RetentionFile>,
    #[serde(default)]
    pub definition: Vec<crate::runner::settings::DefinitionFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFileConfig {
    pub credential_cache_seconds: Option<u64>,
}

impl Config {
    /// Defaults overlaid with the file at `path`, if any.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut cfg = Config::default();
        let Some(path) = path else { return Ok(cfg) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        let file: FileConfig =
            toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
        if let Some(l) = file.listen {
            cfg.listen = l.parse().with_context(|| format!("listen = {l:?} is not an address like 127.0.0.1:8080"))?;
        }
        if let Some(d) = file.database {
            cfg.database = d;
        }
        if let Some(p) = file.path_prefix {
            cfg.path_prefix = normalize_prefix(&p);
        }
        if let Some(z) = file.base_timezone {
            cfg.base_zone = crate::domain::zones::parse_zone(&z)
                .with_context(|| format!("base_timezone = {z:?} is not a known zone"))?;
        }
        if let Some(s) = file.strict_definitions {
            cfg.strict_definitions = s;
        }
        if let Some(secs) = file.auth.and_then(|a| a.credential_cache_seconds) {
            cfg.credential_cache = Duration::from_secs(secs);
        }
        // -- runner (issue 5) --
        if let Some(r) = file.runner {
            r.apply(&mut cfg.runner)?;
        }
        if let Some(r) = file.retention {
            r.apply(&mut cfg.retention)?;
        }
        cfg.definitions = crate::runner::settings::build_definitions(file.definition)?;
        Ok(cfg)
    }
}

/// `Cust1/` → `/Cust1`; empty stays empty.
pub fn normalize_prefix(p: &str) -> String {
    let t = p.trim().trim_matches('/');
    if t.is_empty() { String::new() } else { format!("/{t}") }
}
