//! The runner's part of the config file: `[runner]`, `[retention]` and `[[definition]]` tables.
//! Every key is documented in `batchd.example.toml` and docs/runner.md.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::domain::definition::{
    BodyFormat, CommandSpec, Definition, HttpSpec, MAX_REDIRECTS, RetryPolicy, RunnerSpec,
};
use crate::domain::duration::{from_secs_f64, parse_duration};
use crate::domain::run::MAX_RESCUES;
use crate::domain::{CancellationBehaviour, Parameters};

/// How this node runs tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// Run tasks on this node. When false the node only serves the API (external workers still work).
    pub enabled: bool,
    /// This node's name in leases and events. Must be unique among live nodes. When set, leases
    /// this name still holds at start-up (left by a killed predecessor) are released at once.
    pub node: Option<String>,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// Between SIGTERM and SIGKILL on stop, timeout and shutdown.
    pub grace: Duration,
    /// Tasks this node runs at once.
    pub max_running: usize,
    /// Tasks claimed per claim transaction.
    pub claim_batch: usize,
    /// How often to look for tasks created on other nodes (local creates wake the runner at once).
    pub poll: Duration,
    /// How often to look for stop requests made on other nodes.
    pub stop_poll: Duration,
    /// Longest `Wait` an `Acquire` call may ask for.
    pub max_acquire_wait: Duration,
    /// An idle node claims a new task in the transaction that creates it (saves a commit of
    /// latency). Off: new tasks always go through the claim loop.
    pub claim_on_create: bool,
    /// Certificates the http runner trusts besides the system's roots (`ca_file`).
    pub ca_file: Option<CaFile>,
}

/// A PEM bundle of extra roots for https runs, read and parsed when the config is.
#[derive(Clone)]
pub struct CaFile {
    pub path: std::path::PathBuf,
    pub certs: Vec<reqwest::Certificate>,
}

/// The most of a `ca_file` read: a bundle of every public root is ~200 KiB.
const CA_FILE_BYTES: u64 = 4 << 20;

impl CaFile {
    pub fn load(path: &std::path::Path) -> anyhow::Result<CaFile> {
        use std::io::Read;
        let shown = path.display();
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(CA_FILE_BYTES + 1).read_to_end(&mut pem))
            .with_context(|| format!("runner.ca_file {shown}: cannot be read"))?;
        anyhow::ensure!(pem.len() as u64 <= CA_FILE_BYTES, "runner.ca_file {shown}: larger than 4 MiB");
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("runner.ca_file {shown}: not a PEM certificate bundle"))?;
        anyhow::ensure!(!certs.is_empty(), "runner.ca_file {shown}: holds no PEM certificate");
        Ok(CaFile { path: path.to_owned(), certs })
    }
}

/// The path says which bundle; the certificates are its contents.
impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaFile({}, {} certificates)", self.path.display(), self.certs.len())
    }
}

impl PartialEq for CaFile {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.certs.len() == other.certs.len()
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            enabled: true,
            node: None,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            grace: Duration::from_secs(10),
            max_running: 512,
            claim_batch: 256,
            poll: Duration::from_secs(1),
            stop_poll: Duration::from_millis(500),
            max_acquire_wait: Duration::from_secs(60),
            claim_on_create: true,
            ca_file: None,
        }
    }
}

/// Removal of finished tasks. `None` keeps them forever.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    pub succeeded: Option<Duration>,
    pub succeeded_manual_cleanup: Option<Duration>,
    pub failed: Option<Duration>,
    pub interval: Duration,
    /// Tasks removed per transaction, so a big purge never holds the writer for long.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            succeeded: Some(Duration::from_secs(7 * 86_400)),
            succeeded_manual_cleanup: Some(Duration::from_secs(7 * 86_400)),
            failed: Some(Duration::from_secs(30 * 86_400)),
            interval: Duration::from_secs(60),
            batch: 200,
        }
    }
}

/// A duration in the file: `"30s"`, `"5m"`, `"500ms"`, or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    pub fn get(&self, key: &str) -> anyhow::Result<Duration> {
        match self {
            DurationValue::Seconds(s) => from_secs_f64(*s).with_context(|| format!("{key} = {s} is not a duration")),
            DurationValue::Text(t) => {
                parse_duration(t).with_context(|| format!("{key} = {t:?} is not a duration like \"30s\" or \"5m\""))
            }
        }
    }
    /// `"never"`/`"off"` → None.
    pub(crate) fn get_optional(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        if let DurationValue::Text(t) = self
            && matches!(t.trim().to_ascii_lowercase().as_str(), "never" | "off" | "forever")
        {
            return Ok(None);
        }
        self.get(key).map(Some)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerFile {
    pub enabled: Option<bool>,
    pub node: Option<String>,
    pub lease: Option<DurationValue>,
    pub heartbeat: Option<DurationValue>,
    pub grace: Option<DurationValue>,
    pub max_running: Option<usize>,
    pub claim_batch: Option<usize>,
    pub poll: Option<DurationValue>,
    pub stop_poll: Option<DurationValue>,
    pub max_acquire_wait: Option<DurationValue>,
    pub claim_on_create: Option<bool>,
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    pub succeeded: Option<DurationValue>,
    pub succeeded_manual_cleanup: Option<DurationValue>,
    pub failed: Option<DurationValue>,
    pub interval: Option<DurationValue>,
    pub batch: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionFile {
    pub name: String,
    pub description: Option<String>,
    pub runner: String,
    // command
    pub command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub inherit_env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    // http
    pub method: Option<String>,
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub body_format: Option<String>,
    pub follow_redirects: Option<u8>,
    // rules
    pub timeout: Option<DurationValue>,
    pub restarts: Option<u32>,
    pub backoff: Option<DurationValue>,
    pub max_backoff: Option<DurationValue>,
    pub rescues: Option<u32>,
    pub cancellation: Option<String>,
    pub concurrency: Option<u32>,
    /// Priority of the tasks whose create names none (0 to 9, higher first).
    pub priority: Option<u8>,
    /// At most COUNT starts per PERIOD across all nodes: `"100/1m"`.
    pub rate: Option<String>,
    pub start_interval: Option<DurationValue>,
    /// Recurring by a five-field cron expression instead (src/domain/cron.rs), read in `time_zone`.
    pub cron: Option<String>,
    /// IANA name (or SuperOffice code) of the zone `cron` is read in; UTC when left out.
    pub time_zone: Option<String>,
    /// Occurrences missed while no node ran: "one" task for them all (the default) or "none".
    pub catch_up: Option<String>,
    pub parameters: Option<BTreeMap<String, String>>,
    /// At most one live task per combination of these ParameterObject values.
    pub unique: Option<Vec<String>>,
}

impl RunnerFile {
    pub fn apply(self, cfg: &mut RunnerConfig) -> anyhow::Result<()> {
        if let Some(v) = self.enabled {
            cfg.enabled = v;
        }
        if let Some(n) = self.node {
            anyhow::ensure!(!n.trim().is_empty() && n.len() <= 100, "runner.node must be 1 to 100 characters");
            cfg.node = Some(n);
        }
        let set = |slot: &mut Duration, v: Option<DurationValue>, key: &str| -> anyhow::Result<()> {
            if let Some(v) = v {
                *slot = v.get(key)?;
            }
            Ok(())
        };
        set(&mut cfg.lease, self.lease, "runner.lease")?;
        set(&mut cfg.heartbeat, self.heartbeat, "runner.heartbeat")?;
        set(&mut cfg.grace, self.grace, "runner.grace")?;
        set(&mut cfg.poll, self.poll, "runner.poll")?;
        set(&mut cfg.stop_poll, self.stop_poll, "runner.stop_poll")?;
        set(&mut cfg.max_acquire_wait, self.max_acquire_wait, "runner.max_acquire_wait")?;
        if let Some(n) = self.max_running {
            cfg.max_running = n;
        }
        if let Some(n) = self.claim_batch {
            cfg.claim_batch = n;
        }
        if let Some(b) = self.claim_on_create {
            cfg.claim_on_create = b;
        }
        if let Some(p) = self.ca_file {
            cfg.ca_file = Some(CaFile::load(&p)?);
        }
        cfg.validate()
    }
}

impl RunnerConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.lease >= Duration::from_millis(100), "runner.lease must be at least 100ms");
        anyhow::ensure!(
            self.heartbeat > Duration::ZERO && self.heartbeat * 2 <= self.lease,
            "runner.heartbeat must be more than 0 and at most half of runner.lease (a late heartbeat would lose the lease)"
        );
        anyhow::ensure!(self.max_running >= 1, "runner.max_running must be at least 1");
        anyhow::ensure!((1..=10_000).contains(&self.claim_batch), "runner.claim_batch must be between 1 and 10000");
        anyhow::ensure!(self.poll > Duration::ZERO, "runner.poll must be more than 0");
        anyhow::ensure!(self.stop_poll > Duration::ZERO, "runner.stop_poll must be more than 0");
        Ok(())
    }

    /// Builds an http runner client once, so roots rustls cannot use (`ca_file`, the system's,
    /// `SSL_CERT_FILE`) fail start-up rather than every run.
    pub fn check_http_tls(&self) -> anyhow::Result<()> {
        super::http_runner::client(0, self.ca_file.as_ref()).map(drop).map_err(|e| {
            let file = self.ca_file.as_ref().map(|c| format!(" (runner.ca_file {})", c.path.display()));
            anyhow::anyhow!("the http runner's TLS roots{} cannot be used: {e}", file.unwrap_or_default())
        })
    }

    /// The node name: configured, else `host-pid-random` (unique per process).
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.node {
            return n.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "batchd".into());
        let tag: u16 = rand::random();
        format!("{host}-{}-{tag:04x}", std::process::id())
    }
}

impl RetentionFile {
    pub fn apply(self, cfg: &mut RetentionConfig) -> anyhow::Result<()> {
        if let Some(v) = self.succeeded {
            cfg.succeeded = v.get_optional("retention.succeeded")?;
        }
        if let Some(v) = self.succeeded_manual_cleanup {
            cfg.succeeded_manual_cleanup = v.get_optional("retention.succeeded_manual_cleanup")?;
        }
        if let Some(v) = self.failed {
            cfg.failed = v.get_optional("retention.failed")?;
        }
        if let Some(v) = self.interval {
            cfg.interval = v.get("retention.interval")?;
            anyhow::ensure!(cfg.interval > Duration::ZERO, "retention.interval must be more than 0");
        }
        if let Some(b) = self.batch {
            anyhow::ensure!((1..=10_000).contains(&b), "retention.batch must be between 1 and 10000");
            cfg.batch = b;
        }
        Ok(())
    }
}

impl DefinitionFile {
    pub fn into_definition(self) -> anyhow::Result<Definition> {
        let name = self.name.trim().to_owned();
        let ctx = |key: &str| format!("definition {name:?}: {key}");
        anyhow::ensure!(
            !name.is_empty() && name.chars().count() <= 254,
            "a definition name must be 1 to 254 characters"
        );
        let kind = self.runner.trim().to_ascii_lowercase();
        let has_command_keys =
            self.command.is_some() || self.env.is_some() || self.inherit_env.is_some() || self.working_dir.is_some();
        let has_http_keys = self.method.is_some()
            || self.url.is_some()
            || self.headers.is_some()
            || self.body.is_some()
            || self.body_format.is_some()
            || self.follow_redirects.is_some();
        let runner = match kind.as_str() {
            "command" => {
                anyhow::ensure!(
                    !has_http_keys,
                    "{}",
                    ctx("method/url/headers/body/body_format/follow_redirects belong to runner = \"http\"")
                );
                let mut cmd =
                    self.command.with_context(|| ctx("runner = \"command\" needs command = [program, args...]"))?;
                anyhow::ensure!(!cmd.is_empty() && !cmd[0].trim().is_empty(), "{}", ctx("command must name a program"));
                let program = cmd.remove(0);
                let inherit_env = self.inherit_env.unwrap_or_default();
                for name in &inherit_env {
                    anyhow::ensure!(
                        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{}",
                        ctx(&format!("inherit_env: {name:?} is not a variable name (A-Z, a-z, 0-9, _)"))
                    );
                    // The server's own settings hold its secrets (BATCHD_ADMIN_PASSWORD,
                    // BATCHD_DATABASE); batchd sets the BATCHD_ variables a program gets itself.
                    anyhow::ensure!(
                        !name.to_ascii_uppercase().starts_with("BATCHD_"),
                        "{}",
                        ctx(&format!("inherit_env: {name} is the server's own setting and is never passed on"))
                    );
                }
                RunnerSpec::Command(CommandSpec {
                    program,
                    args: cmd,
                    env: self.env.unwrap_or_default().into_iter().collect(),
                    inherit_env,
                    working_dir: self.working_dir,
                })
            }
            "http" => {
                anyhow::ensure!(
                    !has_command_keys,
                    "{}",
                    ctx("command/env/inherit_env/working_dir belong to runner = \"command\"")
                );
                let url = self.url.with_context(|| ctx("runner = \"http\" needs url"))?;
                anyhow::ensure!(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "{}",
                    ctx("url must start with http:// or https://")
                );
                let method = self.method.unwrap_or_else(|| "POST".into()).trim().to_ascii_uppercase();
                anyhow::ensure!(
                    http::Method::from_bytes(method.as_bytes()).is_ok(),
                    "{}",
                    ctx(&format!("method {method:?} is not an HTTP method"))
                );
                for k in self.headers.iter().flat_map(|h| h.keys()) {
                    anyhow::ensure!(
                        http::HeaderName::from_bytes(k.as_bytes()).is_ok(),
                        "{}",
                        ctx(&format!("headers: {k:?} is not a header name"))
                    );
                }
                let mut headers: Vec<(String, String)> = self.headers.unwrap_or_default().into_iter().collect();
                let content_type =
                    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone());
                let body_format = match &self.body_format {
                    Some(f) => {
                        anyhow::ensure!(self.body.is_some(), "{}", ctx("body_format describes body, which is missing"));
                        BodyFormat::parse(f)
                            .with_context(|| ctx(&format!("body_format = {f:?}: use json, form or text")))?
                    }
                    None => content_type.as_deref().map_or(BodyFormat::Text, BodyFormat::from_content_type),
                };
                if let Some(body) = &self.body {
                    super::template::check_body(body, body_format)
                        .map_err(|e| anyhow::anyhow!(ctx(&format!("body: {e}"))))?;
                    if let (None, Some(ct)) = (&content_type, body_format.content_type()) {
                        headers.push(("Content-Type".into(), ct.into()));
                    }
                }
                let follow_redirects = self.follow_redirects.unwrap_or(0);
                anyhow::ensure!(
                    follow_redirects <= MAX_REDIRECTS,
                    "{}",
                    ctx(&format!("follow_redirects must be 0 to {MAX_REDIRECTS}"))
                );
                RunnerSpec::Http(HttpSpec { method, url, headers, body: self.body, body_format, follow_redirects })
            }
            "external" | "noop" | "sleep" => {
                anyhow::ensure!(
                    !has_command_keys && !has_http_keys,
                    "{}",
                    ctx(&format!("runner = \"{kind}\" takes no command or http keys"))
                );
                match kind.as_str() {
                    "external" => RunnerSpec::External,
                    "noop" => RunnerSpec::Noop,
                    _ => RunnerSpec::Sleep,
                }
            }
            other => bail!("{}", ctx(&format!("runner = {other:?}: use command, http, external, noop or sleep"))),
        };
        let mut def = Definition::new(name.clone(), runner);
        def.description = self.description;
        if let Some(t) = self.timeout {
            def.timeout = Some(t.get(&ctx("timeout"))?).filter(|d| !d.is_zero());
            anyhow::ensure!(
                def.timeout.is_some() || def.runner.default_timeout().is_none(),
                "{}",
                ctx("timeout = 0: this runner's runs always have a timeout (leave the key out for the default)")
            );
        }
        let mut retry = RetryPolicy::default();
        if let Some(r) = self.restarts {
            retry.restarts = r;
        }
        if let Some(b) = self.backoff {
            retry.backoff = b.get(&ctx("backoff"))?;
        }
        if let Some(b) = self.max_backoff {
            retry.max_backoff = b.get(&ctx("max_backoff"))?;
        }
        anyhow::ensure!(retry.backoff <= retry.max_backoff, "{}", ctx("backoff must not exceed max_backoff"));
        def.retry = retry;
        if let Some(r) = self.rescues {
            anyhow::ensure!(
                (1..=MAX_RESCUES).contains(&r),
                "{}",
                ctx(&format!("rescues = {r}: crashes in a row that end the task, from 1 to {MAX_RESCUES}"))
            );
            def.rescues = r;
        }
        if let Some(c) = self.cancellation {
            def.cancellation = CancellationBehaviour::parse(&c).with_context(|| {
                ctx(&format!("cancellation = {c:?}: use CanCancel, CancelWithWarning or CannotCancel"))
            })?;
        }
        if let Some(c) = self.concurrency {
            anyhow::ensure!(c >= 1, "{}", ctx("concurrency must be at least 1 (leave it out for no limit)"));
            def.concurrency = Some(c);
        }
        if let Some(p) = self.priority {
            let max = crate::domain::task::PRIORITY_MAX;
            anyhow::ensure!(
                p <= max,
                "{}",
                ctx(&format!("priority = {p}: from 0 (the default) to {max}, higher first"))
            );
            def.priority = p;
        }
        if let Some(r) = self.rate {
            let rate = crate::domain::run::Rate::parse(&r)
                .map_err(|e| anyhow::anyhow!("{}", ctx(&format!("rate = {r:?}: {e}"))))?;
            def.rate = Some(rate);
        }
        if let Some(i) = self.start_interval {
            let d = i.get(&ctx("start_interval"))?;
            anyhow::ensure!(d >= Duration::from_millis(100), "{}", ctx("start_interval must be at least 100ms"));
            def.start_interval = Some(d);
        }
        match (self.cron, self.time_zone) {
            (Some(expr), zone) => {
                anyhow::ensure!(def.start_interval.is_none(), "{}", ctx("give start_interval or cron, not both"));
                let zone = match zone {
                    Some(z) => crate::domain::zones::parse_zone(&z)
                        .with_context(|| ctx(&format!("time_zone = {z:?} is not a known time zone")))?,
                    None => chrono_tz::Tz::UTC,
                };
                let cron = crate::domain::cron::Cron::parse(&expr, zone)
                    .map_err(|e| anyhow::anyhow!("{}", ctx(&format!("cron = {expr:?}: {e}"))))?;
                def.cron = Some(cron);
            }
            (None, Some(_)) => anyhow::bail!("{}", ctx("time_zone is the zone of cron, which is missing")),
            (None, None) => {}
        }
        if let Some(c) = self.catch_up {
            anyhow::ensure!(
                def.schedule().is_some(),
                "{}",
                ctx("catch_up is about a schedule: give start_interval or cron")
            );
            def.catch_up = crate::domain::run::CatchUp::parse(&c)
                .with_context(|| ctx(&format!("catch_up = {c:?}: use \"one\" or \"none\"")))?;
        }
        def.parameters = self.parameters.map(|p| Parameters(p.into_iter().collect()));
        if let Some(u) = self.unique {
            let unique = crate::domain::unique::Unique::parse(u)
                .map_err(|e| anyhow::anyhow!("{}", ctx(&format!("unique: {e}"))))?;
            def.unique = Some(unique);
        }
        Ok(def)
    }
}

/// Turns the file's `[[definition]]` tables into definitions, adding the built-ins. A file
/// definition named `Noop` or `Sleep` may change the built-in's rules (timeout, concurrency, ...)
/// but must keep its runner.
pub fn build_definitions(files: Vec<DefinitionFile>) -> anyhow::Result<Vec<Definition>> {
    let mut out: Vec<Definition> = Vec::new();
    let mut seen = HashSet::new();
    for f in files {
        let def = f.into_definition()?;
        anyhow::ensure!(seen.insert(def.name.clone()), "definition {:?} is defined twice", def.name);
        out.push(def);
    }
    for builtin in Definition::builtins() {
        match out.iter().find(|d| d.name == builtin.name) {
            Some(d) => anyhow::ensure!(
                d.runner == builtin.runner,
                "definition {:?} is built in; its runner must stay {:?}",
                d.name,
                builtin.runner.kind()
            ),
            None => out.push(builtin),
        }
    }
    Ok(out)
}

/// Parses `[[definition]]` tables from TOML text (as in the config file). Handy for tests.
pub fn parse_definitions(toml_text: &str) -> anyhow::Result<Vec<Definition>> {
    #[derive(Deserialize)]
    struct Wrapper {
        #[serde(default)]
        definition: Vec<DefinitionFile>,
    }
    let w: Wrapper = toml::from_str(toml_text).context("parsing [[definition]] tables")?;
    build_definitions(w.definition)
}

/// Built-in definitions only.
pub fn default_definitions() -> Vec<Definition> {
    Definition::builtins().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_runner_kind_and_rejects_mistakes() {
        let defs = parse_definitions(
            r#"
            [[definition]]
            name = "report"
            runner = "command"
            command = ["/bin/sh", "-c", "echo hi"]
            env = { A = "1" }
            inherit_env = ["AWS_PROFILE"]
            timeout = "10m"
            restarts = 3
            backoff = "2s"
            cancellation = "CancelWithWarning"
            concurrency = 2
            start_interval = "30s"

            [[definition]]
            name = "hook"
            runner = "http"
            url = "http://localhost:9/x/{id}"
            headers = { "X-Key" = "k" }

            [[definition]]
            name = "outside"
            runner = "external"

            [[definition]]
            name = "Sleep"
            runner = "sleep"
            concurrency = 5
            "#,
        )
        .unwrap();
        assert_eq!(defs.len(), 5, "Noop added, Sleep overridden");
        let r = &defs[0];
        assert_eq!(r.timeout, Some(Duration::from_secs(600)));
        assert_eq!(r.retry.restarts, 3);
        assert_eq!(r.cancellation, CancellationBehaviour::CancelWithWarning);
        assert!(
            matches!(&r.runner, RunnerSpec::Command(c) if c.program == "/bin/sh" && c.args.len() == 2 && c.inherit_env == ["AWS_PROFILE"])
        );
        assert!(
            matches!(&defs[1].runner, RunnerSpec::Http(h) if h.method == "POST" && h.body_format == BodyFormat::Text)
        );
        assert_eq!(defs[3].concurrency, Some(5));

        for bad in [
            "[[definition]]\nname = \"x\"\nrunner = \"command\"",
            "[[definition]]\nname = \"x\"\nrunner = \"http\"\nurl = \"ftp://a\"",
            "[[definition]]\nname = \"x\"\nrunner = \"rocket\"",
            "[[definition]]\nname = \"x\"\nrunner = \"external\"\ncommand = [\"a\"]",
            "[[definition]]\nname = \"Noop\"\nrunner = \"external\"",
            "[[definition]]\nname = \"x\"\nrunner = \"noop\"\ncancellation = \"Maybe\"",
            "[[definition]]\nname = \"x\"\nrunner = \"noop\"\ntimeout = \"soon\"",
            "[[definition]]\nname = \"x\"\nrunner = \"noop\"\n[[definition]]\nname = \"x\"\nrunner = \"noop\"",
            "[[definition]]\nname = \"x\"\nrunner = \"noop\"\nsurprise = 1",
            "[[definition]]\nname = \"x\"\nrunner = \"http\"\nurl = \"http://a\"\nbody = \"{}\"\nbody_format = \"xml\"",
            "[[definition]]\nname = \"x\"\nrunner = \"http\"\nurl = \"http://a\"\nbody_format = \"json\"",
            "[[definition]]\nname = \"x\"\nrunner = \"command\"\ncommand = [\"a\"]\nbody_format = \"json\"",
            "[[definition]]\nname = \"x\"\nrunner = \"http\"\nurl = \"http://a\"\nfollow_redirects = 11",
            "[[definition]]\nname = \"x\"\nrunner = \"http\"\nurl = \"http://a\"\ntimeout = 0",
            "[[definition]]\nname = \"x\"\nrunner = \"noop\"\nfollow_redirects = 1",
            "[[definition]]\nname = \"x\"\nrunner = \"command\"\ncommand = [\"a\"]\ninherit_env = [\"BATCHD_ADMIN_PASSWORD\"]",
            "[[definition]]\nname = \"x\"\nrunner = \"command\"\ncommand = [\"a\"]\ninherit_env = [\"A=B\"]",
            "[[definition]]\nname = \"x\"\nrunner = \"http\"\nurl = \"http://a\"\ninherit_env = [\"HOME\"]",
        ] {
            assert!(parse_definitions(bad).is_err(), "should fail: {bad}");
        }
    }

    #[test]
    fn a_body_format_comes_from_the_key_or_the_content_type_and_json_bodies_are_checked() {
        let http = |extra: &str| {
            parse_definitions(&format!("[[definition]]\nname = \"h\"\nrunner = \"http\"\nurl = \"http://a\"\n{extra}"))
                .map(|d| match &d[0].runner {
                    RunnerSpec::Http(h) => h.clone(),
                    other => panic!("{other:?}"),
                })
        };
        let h = http("headers = { \"content-type\" = \"application/json; charset=utf-8\" }\nbody = '{\"a\": \"{X}\"}'")
            .unwrap();
        assert_eq!(h.body_format, BodyFormat::Json);
        assert_eq!(h.headers.len(), 1, "the named Content-Type stays alone");
        let h = http("body = 'a={X}'\nbody_format = \"form\"").unwrap();
        assert_eq!(h.body_format, BodyFormat::Form);
        assert_eq!(h.headers, [("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned())]);
        let h = http(
            "headers = { \"Content-Type\" = \"application/json\" }\nbody = '{\"a\": {X}}'\nbody_format = \"text\"",
        )
        .unwrap();
        assert_eq!(h.body_format, BodyFormat::Text, "the key wins: pasted as it is");
        let e = http("headers = { \"Content-Type\" = \"application/json\" }\nbody = '{\"a\": {X}}'").unwrap_err();
        assert!(format!("{e:#}").contains("must stand inside a JSON string"), "{e:#}");
        let e = http("body = '{\"a\": \"{X}\"'\nbody_format = \"json\"").unwrap_err();
        assert!(format!("{e:#}").contains("not JSON"), "{e:#}");
    }
}
