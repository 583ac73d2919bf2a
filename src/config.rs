//! Configuration: defaults, then the TOML file (`--config`), then the environment
//! (`BATCHD_<TABLE>_<KEY>`), then flags ([`layers`]). Every key is documented in
//! `batchd.example.toml`; docs/config.md has the layers, `config show` and `config check`.

pub mod check;
pub mod layers;
pub mod schema;
pub mod show;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono_tz::Tz;
use serde::Deserialize;

#[derive(Clone)]
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
    /// Log lines on stderr; `None`: pretty on a terminal, json otherwise.
    pub log_format: Option<LogFormat>,
    // -- identity and access --
    pub access: AccessConfig,
    // -- runner --
    pub runner: crate::runner::settings::RunnerConfig,
    pub retention: crate::runner::settings::RetentionConfig,
    /// Task definitions, the built-ins included (see `batchd.example.toml`).
    pub definitions: Vec<crate::domain::definition::Definition>,
    /// Connection limits and timeouts.
    pub http: HttpConfig,
    /// PostgreSQL pool and timeouts (unused on SQLite).
    pub postgres: PostgresConfig,
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
            log_format: None,
            access: AccessConfig::default(),
            runner: Default::default(),
            retention: Default::default(),
            definitions: crate::runner::settings::default_definitions(),
            http: HttpConfig::default(),
            postgres: PostgresConfig::default(),
        }
    }
}

/// The database URL's password and the admin password stay out of `{:?}`.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &crate::redact::redact_url(&self.database))
            .field("path_prefix", &self.path_prefix)
            .field("base_zone", &self.base_zone)
            .field("strict_definitions", &self.strict_definitions)
            .field("credential_cache", &self.credential_cache)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &self.admin_password.as_ref().map(|_| crate::redact::MASK))
            .field("log_format", &self.log_format)
            .field("access", &self.access)
            .field("runner", &self.runner)
            .field("retention", &self.retention)
            .field("definitions", &self.definitions)
            .field("http", &self.http)
            .field("postgres", &self.postgres)
            .finish()
    }
}

/// The file's shape. Everything optional: missing keys keep their defaults.
/// No `Debug`: it holds the database URL and app tokens as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    pub path_prefix: Option<String>,
    pub base_timezone: Option<String>,
    pub strict_definitions: Option<bool>,
    /// The first admin (see [`Config::admin_user`]); usually from the environment.
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
    pub log_format: Option<String>,
    pub auth: Option<AuthFileConfig>,
    // -- runner --
    pub runner: Option<crate::runner::settings::RunnerFile>,
    pub retention: Option<crate::runner::settings::RetentionFile>,
    #[serde(default)]
    pub definition: Vec<crate::runner::settings::DefinitionFile>,
    pub http: Option<HttpFile>,
    pub postgres: Option<PostgresFile>,
}

/// No `Debug`: it holds the database URL and app tokens as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFileConfig {
    pub credential_cache_seconds: Option<u64>,
    // -- identity and access --
    pub ticket_lifetime: Option<String>,
    pub session_lifetime: Option<String>,
    pub app_tokens: Option<Vec<String>>,
    pub secure_cookies: Option<bool>,
    pub failed_logins_per_address: Option<u32>,
    pub failed_logins_per_name: Option<u32>,
    pub failed_login_window_seconds: Option<u64>,
    pub password_checks_per_address: Option<u32>,
    pub credential_cache_entries: Option<usize>,
    pub device_lifetime: Option<String>,
    pub trust_forwarded_for: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub cors_origins: Option<Vec<String>>,
    pub change_poll_millis: Option<u64>,
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object a line, for collectors.
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" => Some(LogFormat::Pretty),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

impl Config {
    /// Defaults overlaid with the file at `path`, if any (no environment, no flags: see
    /// [`layers::Sources`] for those).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        layers::Sources::file_only(path).resolve().map(|e| e.config)
    }

    /// The defaults with every key `file` sets applied, each checked.
    pub(crate) fn build(file: FileConfig) -> anyhow::Result<Config> {
        let mut cfg = Config::default();
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
        cfg.admin_user = file.admin_user;
        cfg.admin_password = file.admin_password;
        if let Some(f) = file.log_format {
            cfg.log_format =
                Some(LogFormat::parse(&f).with_context(|| format!("log_format = {f:?}: use pretty or json"))?);
        }
        if let Some(auth) = file.auth {
            if let Some(secs) = auth.credential_cache_seconds {
                cfg.credential_cache = Duration::from_secs(secs);
            }
            cfg.access.apply(auth)?;
        }
        // -- runner --
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
        if let Some(p) = file.postgres {
            p.apply(&mut cfg.postgres)?;
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
    /// Event streams (`GET /api/v1/BatchTask/Events/stream`) open at once; past it, 503.
    pub max_stream_subscribers: usize,
    /// How often an idle event stream sends a `: keep-alive` comment.
    pub stream_keepalive: Duration,
    /// Tasks kept in memory for `GET /api/v1/BatchTask/{id}` (`crate::store::cache`); 0 = none.
    pub task_cache_entries: usize,
    /// Their size at most, in bytes.
    pub task_cache_bytes: usize,
    /// Longest a cached task is served: the bound on a lost change notice (another node's write).
    pub task_cache_max_age: Duration,
}

impl HttpConfig {
    const MAX_TASK_CACHE_ENTRIES: usize = 10_000_000;
    const MAX_TASK_CACHE_BYTES: usize = 1 << 40;
    const MAX_TASK_CACHE_AGE: Duration = Duration::from_secs(3600);

    /// The task cache's limits, `None` when it is off.
    pub fn task_cache(&self) -> Option<crate::store::cache::Limits> {
        (self.task_cache_entries > 0 && self.task_cache_bytes > 0).then_some(crate::store::cache::Limits {
            entries: self.task_cache_entries,
            bytes: self.task_cache_bytes,
            max_age: self.task_cache_max_age,
        })
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_stream_subscribers: 10_000,
            stream_keepalive: Duration::from_secs(15),
            task_cache_entries: 10_000,
            task_cache_bytes: 64 << 20,
            task_cache_max_age: Duration::from_secs(1),
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
    #[serde(default)]
    pub max_stream_subscribers: Option<usize>,
    #[serde(default)]
    pub stream_keepalive: Option<crate::runner::settings::DurationValue>,
    pub task_cache_entries: Option<usize>,
    pub task_cache_bytes: Option<usize>,
    pub task_cache_max_age: Option<crate::runner::settings::DurationValue>,
}

impl HttpFile {
    fn apply(self, cfg: &mut HttpConfig) -> anyhow::Result<()> {
        for (slot, value, key) in [
            (&mut cfg.header_read_timeout, self.header_read_timeout, "http.header_read_timeout"),
            (&mut cfg.keep_alive_timeout, self.keep_alive_timeout, "http.keep_alive_timeout"),
            (&mut cfg.body_read_timeout, self.body_read_timeout, "http.body_read_timeout"),
            (&mut cfg.stream_keepalive, self.stream_keepalive, "http.stream_keepalive"),
            (&mut cfg.task_cache_max_age, self.task_cache_max_age, "http.task_cache_max_age"),
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
        if let Some(n) = self.max_stream_subscribers {
            cfg.max_stream_subscribers = n;
        }
        if let Some(n) = self.task_cache_entries {
            let max = HttpConfig::MAX_TASK_CACHE_ENTRIES;
            anyhow::ensure!(n <= max, "http.task_cache_entries must be at most {max} (0 turns the cache off)");
            cfg.task_cache_entries = n;
        }
        if let Some(n) = self.task_cache_bytes {
            let max = HttpConfig::MAX_TASK_CACHE_BYTES;
            anyhow::ensure!(n <= max, "http.task_cache_bytes must be at most {max} (0 turns the cache off)");
            cfg.task_cache_bytes = n;
        }
        let age = cfg.task_cache_max_age;
        anyhow::ensure!(
            age <= HttpConfig::MAX_TASK_CACHE_AGE,
            "http.task_cache_max_age must be at most 1h, not {}s",
            age.as_secs()
        );
        Ok(())
    }
}

/// The PostgreSQL pool (`[postgres]` in the file; docs/postgres.md, Pool and timeouts).
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    /// Connections this node keeps at most.
    pub pool_size: u32,
    /// Longest wait for a connection: to open one (TCP, TLS, login) or for a busy pool to free
    /// one. Past it a request is answered 503, and start-up fails.
    pub connect_timeout: Duration,
    /// The server cancels a statement running longer (`None`: the server's own setting).
    pub statement_timeout: Option<Duration>,
    /// A connection unused this long is closed (`None`: kept).
    pub idle_timeout: Option<Duration>,
}

impl PostgresConfig {
    pub const MAX_POOL_SIZE: u32 = 1000;
    const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
    const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
    const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_secs(86_400);
    const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            pool_size: crate::store::postgres::DEFAULT_POOL_SIZE,
            connect_timeout: crate::store::postgres::ACQUIRE_TIMEOUT,
            statement_timeout: None,
            // sqlx's own default.
            idle_timeout: Some(Duration::from_secs(600)),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresFile {
    pub pool_size: Option<u32>,
    pub connect_timeout: Option<crate::runner::settings::DurationValue>,
    pub statement_timeout: Option<crate::runner::settings::DurationValue>,
    pub idle_timeout: Option<crate::runner::settings::DurationValue>,
}

impl PostgresFile {
    fn apply(self, cfg: &mut PostgresConfig) -> anyhow::Result<()> {
        if let Some(n) = self.pool_size {
            anyhow::ensure!(
                (1..=PostgresConfig::MAX_POOL_SIZE).contains(&n),
                "postgres.pool_size must be between 1 and {}",
                PostgresConfig::MAX_POOL_SIZE
            );
            cfg.pool_size = n;
        }
        if let Some(v) = self.connect_timeout {
            let d = v.get("postgres.connect_timeout")?;
            anyhow::ensure!(
                (PostgresConfig::MIN_CONNECT_TIMEOUT..=PostgresConfig::MAX_CONNECT_TIMEOUT).contains(&d),
                "postgres.connect_timeout must be between 100ms and 5m"
            );
            cfg.connect_timeout = d;
        }
        if let Some(v) = self.statement_timeout {
            cfg.statement_timeout = v.get_optional("postgres.statement_timeout")?;
            if let Some(d) = cfg.statement_timeout {
                // PostgreSQL counts it in whole milliseconds, and 0 would mean "no limit".
                anyhow::ensure!(
                    d >= Duration::from_millis(1) && d <= PostgresConfig::MAX_STATEMENT_TIMEOUT,
                    "postgres.statement_timeout must be between 1ms and 1d, or \"off\""
                );
            }
        }
        if let Some(v) = self.idle_timeout {
            cfg.idle_timeout = v.get_optional("postgres.idle_timeout")?;
            if let Some(d) = cfg.idle_timeout {
                anyhow::ensure!(
                    d >= PostgresConfig::MIN_IDLE_TIMEOUT && d <= crate::domain::duration::MAX_DURATION,
                    "postgres.idle_timeout must be at least 1s, or \"never\""
                );
            }
        }
        Ok(())
    }
}

// -- identity and access --

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
    /// The window of the failed-login and password-check throttles.
    pub failed_login_window: Duration,
    /// Password (argon2) checks one client address may cause per window, right or wrong, before
    /// 429 (0 = no limit): each costs ~19 MiB and tens of milliseconds of a core.
    pub password_checks_per_address: u32,
    /// Verified credentials kept in memory at most; a full cache forgets the least recently
    /// used first.
    pub credential_cache_entries: usize,
    /// How long a client that logged in stays known (its address, its device cookie): known
    /// clients are not held to the per-name limit (`device_lifetime = "30d"`).
    pub device_lifetime: Duration,
    /// Deprecated: believe forwarding headers from any peer (only the last `X-Forwarded-For`
    /// entry). `trusted_proxies` names the proxies instead.
    pub trust_forwarded_for: bool,
    /// Peers (addresses or CIDR blocks) whose `X-Forwarded-For`, `-Host` and `-Proto` count.
    pub trusted_proxies: Vec<crate::domain::forwarded::IpNet>,
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
            password_checks_per_address: 60,
            credential_cache_entries: 10_000,
            device_lifetime: Duration::from_secs(30 * 24 * 3600),
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
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
            .field("password_checks_per_address", &self.password_checks_per_address)
            .field("credential_cache_entries", &self.credential_cache_entries)
            .field("device_lifetime", &self.device_lifetime)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("trusted_proxies", &self.trusted_proxies)
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
        if let Some(v) = f.password_checks_per_address {
            self.password_checks_per_address = v;
        }
        if let Some(v) = f.credential_cache_entries {
            anyhow::ensure!(v > 0, "[auth] credential_cache_entries must be at least 1");
            self.credential_cache_entries = v;
        }
        if let Some(v) = f.device_lifetime {
            self.device_lifetime = duration("device_lifetime", &v)?;
            anyhow::ensure!(!self.device_lifetime.is_zero(), "[auth] device_lifetime must be longer than 0");
        }
        if let Some(v) = f.trust_forwarded_for {
            self.trust_forwarded_for = v;
        }
        if let Some(v) = f.trusted_proxies {
            self.trusted_proxies = v
                .iter()
                .map(|s| {
                    crate::domain::forwarded::IpNet::parse(s).with_context(|| {
                        format!("[auth] trusted_proxies: {s:?} is not an address or a CIDR block like 10.0.0.0/8")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batchd.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path))
    }

    #[test]
    fn the_auth_keys_parse_and_refuse_bad_values() {
        let cfg = load_text(
            "[auth]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"fd00::/8\"]\n\
             password_checks_per_address = 5\ncredential_cache_entries = 100\ndevice_lifetime = \"2d\"\n",
        )
        .unwrap();
        let a = &cfg.access;
        assert_eq!(a.trusted_proxies.len(), 3);
        assert!(a.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
        assert_eq!((a.password_checks_per_address, a.credential_cache_entries), (5, 100));
        assert_eq!(a.device_lifetime, Duration::from_secs(2 * 86400));
        let d = AccessConfig::default();
        assert!(d.trusted_proxies.is_empty() && !d.trust_forwarded_for);
        assert_eq!((d.password_checks_per_address, d.credential_cache_entries), (60, 10_000));
        for bad in [
            "[auth]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "[auth]\ntrusted_proxies = [\"proxy.example\"]\n",
            "[auth]\ncredential_cache_entries = 0\n",
            "[auth]\ndevice_lifetime = \"soon\"\n",
            "[auth]\ndevice_lifetime = \"0s\"\n",
        ] {
            assert!(load_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_duration_key_takes_the_one_grammar() {
        let cfg = load_text(
            "[auth]\nticket_lifetime = \"1h30m\"\nsession_lifetime = \"2w\"\n\
             [http]\nheader_read_timeout = \"1.5s\"\nbody_read_timeout = 45\n",
        )
        .unwrap();
        assert_eq!(cfg.access.ticket_lifetime, Duration::from_secs(5400));
        assert_eq!(cfg.access.session_lifetime, Duration::from_secs(14 * 86_400));
        assert_eq!(cfg.http.header_read_timeout, Duration::from_millis(1500));
        assert_eq!(cfg.http.body_read_timeout, Duration::from_secs(45));
        // Too long is an error, never an overflow panic.
        for bad in [
            "[auth]\nticket_lifetime = \"99999999999999999999w\"\n",
            "[http]\nbody_read_timeout = \"36501d\"\n",
            "[http]\nbody_read_timeout = 1e30\n",
        ] {
            assert!(load_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_postgres_table_parses_with_bounds() {
        let d = PostgresConfig::default();
        assert_eq!((d.pool_size, d.connect_timeout, d.statement_timeout), (16, Duration::from_secs(5), None));
        let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/batchd.example.toml"));
        assert_eq!(Config::load(Some(example)).unwrap().postgres, d, "the example shows the defaults");
        let cfg = load_text(
            "[postgres]\npool_size = 40\nconnect_timeout = \"2s\"\nstatement_timeout = \"1m30s\"\nidle_timeout = \"never\"\n",
        )
        .unwrap();
        let p = &cfg.postgres;
        assert_eq!((p.pool_size, p.connect_timeout), (40, Duration::from_secs(2)));
        assert_eq!((p.statement_timeout, p.idle_timeout), (Some(Duration::from_secs(90)), None));
        let cfg = load_text("[postgres]\nstatement_timeout = \"off\"\nidle_timeout = 60\n").unwrap();
        assert_eq!((cfg.postgres.statement_timeout, cfg.postgres.idle_timeout), (None, Some(Duration::from_secs(60))));
        for bad in [
            "[postgres]\npool_size = 0\n",
            "[postgres]\npool_size = 1001\n",
            "[postgres]\npool_size = -1\n",
            "[postgres]\nconnect_timeout = \"10ms\"\n",
            "[postgres]\nconnect_timeout = \"1h\"\n",
            "[postgres]\nstatement_timeout = \"0s\"\n",
            "[postgres]\nstatement_timeout = \"500us\"\n",
            "[postgres]\nstatement_timeout = \"2d\"\n",
            "[postgres]\nidle_timeout = \"100ms\"\n",
            "[postgres]\nmax_connections = 5\n",
        ] {
            assert!(load_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_shows_no_password() {
        let cfg = Config {
            database: "postgres://u:SECRET@db/x".into(),
            admin_password: Some("ADMINPW".into()),
            ..Config::default()
        };
        let text = format!("{cfg:?}");
        assert!(!text.contains("SECRET") && !text.contains("ADMINPW"), "{text}");
        assert!(text.contains("postgres://u:***@db/x"), "{text}");
    }
}
