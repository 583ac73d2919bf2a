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
    pub access: AccessConfig,
    // -- runner (issue 5) --
    pub runner: crate::runner::settings::RunnerConfig,
    pub retention: crate::runner::settings::RetentionConfig,
    /// Task definitions, the built-ins included (see `batchd.example.toml`).
    pub definitions: Vec<crate::domain::definition::Definition>,
    /// Connection limits and timeouts.
    pub http: HttpConfig,
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
            access: AccessConfig::default(),
            runner: Default::default(),
            retention: Default::default(),
            definitions: crate::runner::settings::default_definitions(),
            http: HttpConfig::default(),
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
    pub http: Option<HttpFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFileConfig {
    pub credential_cache_seconds: Option<u64>,
    // -- identity and access (issue 4) --
    pub ticket_lifetime: Option<String>,
    pub session_lifetime: Option<String>,
    pub app_tokens: Option<Vec<String>>,
    pub secure_cookies: Option<bool>,
    pub failed_logins_per_address: Option<u32>,
    pub failed_logins_per_name: Option<u32>,
    pub failed_login_window_seconds: Option<u64>,
    pub trust_forwarded_for: Option<bool>,
    pub cors_origins: Option<Vec<String>>,
    pub change_poll_millis: Option<u64>,
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
        if let Some(auth) = file.auth {
            if let Some(secs) = auth.credential_cache_seconds {
                cfg.credential_cache = Duration::from_secs(secs);
            }
            cfg.access.apply(auth)?;
        }
        // -- runner (issue 5) --
        if let Some(r) = file.runner {
            r.apply(&mut cfg.runner)?;
        }
        if let Some(r) = file.retention {
            r.apply(&mut cfg.retention)?;
        }
        cfg.definitions = crate::runner::settings::build_definitions(file.definition)?;
        if let Some(h) = file.http {
            h.apply(&mut cfg.http)?;
        }
        Ok(cfg)
    }
}

/// `Cust1/` → `/Cust1`; empty stays empty.
pub fn normalize_prefix(p: &str) -> String {
    let t = p.trim().trim_matches('/');
    if t.is_empty() { String::new() } else { format!("/{t}") }
}

/// Connection limits and timeouts (`[http]` in the file; see docs/DECISIONS.md, Connections).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// How long a request head may take: from accept for the first request, from its first
    /// byte for later ones on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for the next request's first byte.
    pub keep_alive_timeout: Duration,
    /// How long a request body may take to arrive, whole (408 after that).
    pub body_read_timeout: Duration,
    /// Connections open at once; at most the open-file limit less a reserve (see
    /// `crate::http::serve::connection_cap`). Beyond it, new clients wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub header_read_timeout: Option<crate::runner::settings::DurationValue>,
    pub keep_alive_timeout: Option<crate::runner::settings::DurationValue>,
    pub body_read_timeout: Option<crate::runner::settings::DurationValue>,
    pub max_connections: Option<usize>,
}

impl HttpFile {
    fn apply(self, cfg: &mut HttpConfig) -> anyhow::Result<()> {
        for (slot, value, key) in [
            (&mut cfg.header_read_timeout, self.header_read_timeout, "http.header_read_timeout"),
            (&mut cfg.keep_alive_timeout, self.keep_alive_timeout, "http.keep_alive_timeout"),
            (&mut cfg.body_read_timeout, self.body_read_timeout, "http.body_read_timeout"),
        ] {
            if let Some(v) = value {
                *slot = v.get(key)?;
                anyhow::ensure!(!slot.is_zero(), "{key} must be more than 0");
            }
        }
        if let Some(n) = self.max_connections {
            anyhow::ensure!(n > 0, "http.max_connections must be at least 1");
            cfg.max_connections = n;
        }
        Ok(())
    }
}

// -- identity and access (issue 4) --

/// Tickets, tokens, sessions, app tokens, login throttling and CORS (`[auth]` in the file).
#[derive(Clone)]
pub struct AccessConfig {
    /// How long an SOTicket lives (`ticket_lifetime = "8h"`).
    pub ticket_lifetime: Duration,
    /// How long a browser session lives (`session_lifetime = "8h"`).
    pub session_lifetime: Duration,
    /// When not empty, SOTicket and Bearer requests must carry one of these in `SO-AppToken`.
    pub app_tokens: Vec<String>,
    /// Adds `Secure` to the cookies: set it when clients reach batchd over HTTPS.
    pub secure_cookies: bool,
    /// Failed logins one client address may make per window before 429 (0 = no limit).
    pub failed_logins_per_address: u32,
    /// Failed logins against one associate name per window before 429 (0 = no limit).
    pub failed_logins_per_name: u32,
    pub failed_login_window: Duration,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy).
    pub trust_forwarded_for: bool,
    /// Origins allowed to call the API from a browser; empty = CORS off; `*` = any (no cookies).
    pub cors_origins: Vec<String>,
    /// How often the server looks for credential changes made by other processes (the CLI).
    pub change_poll: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            ticket_lifetime: Duration::from_secs(8 * 3600),
            session_lifetime: Duration::from_secs(8 * 3600),
            app_tokens: Vec::new(),
            secure_cookies: false,
            failed_logins_per_address: 20,
            failed_logins_per_name: 10,
            failed_login_window: Duration::from_secs(60),
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
            change_poll: Duration::from_secs(1),
        }
    }
}

/// Secrets stay out of `{:?}` (and so out of any log line that prints the config).
impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("ticket_lifetime", &self.ticket_lifetime)
            .field("session_lifetime", &self.session_lifetime)
            .field("app_tokens", &format_args!("[{} redacted]", self.app_tokens.len()))
            .field("secure_cookies", &self.secure_cookies)
            .field("failed_logins_per_address", &self.failed_logins_per_address)
            .field("failed_logins_per_name", &self.failed_logins_per_name)
            .field("failed_login_window", &self.failed_login_window)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("cors_origins", &self.cors_origins)
            .field("change_poll", &self.change_poll)
            .finish()
    }
}

impl AccessConfig {
    fn apply(&mut self, f: AuthFileConfig) -> anyhow::Result<()> {
        use crate::domain::access::parse_duration;
        let duration = |key: &str, v: &str| {
            parse_duration(v).with_context(|| format!("[auth] {key} = {v:?} is not a duration like \"8h\" or \"30d\""))
        };
        if let Some(v) = f.ticket_lifetime {
            self.ticket_lifetime = duration("ticket_lifetime", &v)?;
        }
        if let Some(v) = f.session_lifetime {
            self.session_lifetime = duration("session_lifetime", &v)?;
        }
        if let Some(v) = f.app_tokens {
            anyhow::ensure!(v.iter().all(|t| !t.trim().is_empty()), "[auth] app_tokens: an entry is empty");
            self.app_tokens = v;
        }
        if let Some(v) = f.secure_cookies {
            self.secure_cookies = v;
        }
        if let Some(v) = f.failed_logins_per_address {
            self.failed_logins_per_address = v;
        }
        if let Some(v) = f.failed_logins_per_name {
            self.failed_logins_per_name = v;
        }
        if let Some(v) = f.failed_login_window_seconds {
            anyhow::ensure!(v > 0, "[auth] failed_login_window_seconds must be at least 1");
            self.failed_login_window = Duration::from_secs(v);
        }
        if let Some(v) = f.trust_forwarded_for {
            self.trust_forwarded_for = v;
        }
        if let Some(v) = f.cors_origins {
            for o in &v {
                anyhow::ensure!(
                    o == "*" || o.starts_with("http://") || o.starts_with("https://"),
                    "[auth] cors_origins: {o:?} is not an origin like https://app.example.com or *"
                );
            }
            self.cors_origins = v;
        }
        if let Some(v) = f.change_poll_millis {
            anyhow::ensure!(v >= 10, "[auth] change_poll_millis must be at least 10");
            self.change_poll = Duration::from_millis(v);
        }
        Ok(())
    }
}
