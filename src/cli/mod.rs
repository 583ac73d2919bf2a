//! `batchd task …` and `batchd definition …`: HTTP clients of a running server, unlike the
//! associate and token commands, which open the database.

mod client;
mod profile;
mod render;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value};

use client::{Client, DEFAULT_SERVER};

/// The exit codes, for every `--help` that can end with them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done (with --watch and watch: the task Succeeded or SucceededManualCleanup)
  1  the task Failed (--watch and watch)
  2  usage: bad arguments, or a bad profile or one others may read
  3  the server is unreachable, or refused the credentials (401)
  4  not found: no such task (or associate)
  5  forbidden: the credentials are good but may not do this (403)
  6  the server refused or failed the request otherwise (400, 409, 412, 5xx), or a stop that
     did not take effect

Server: --server, else BATCHD_SERVER, else the profile's `server`, else http://127.0.0.1:8080.
Credentials (never a flag): BATCHD_TOKEN (Bearer), else BATCHD_USER and BATCHD_PASSWORD, else
the profile's token, else its user and password. The profile is BATCHD_PROFILE, else
~/.config/batchd/profile.toml (TOML: server, user, password, token); one that holds a secret
must not be readable by others (chmod 600).";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    TaskFailed = 1,
    Usage = 2,
    /// Unreachable, or the credentials refused: either way the server cannot be used as it is.
    Unreachable = 3,
    NotFound = 4,
    Forbidden = 5,
    Refused = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// A failure: printed as one line, ending the command with its code.
#[derive(Debug)]
pub struct CliError {
    pub code: Exit,
    pub message: String,
    /// The server could not be reached (not: it answered no); a watch may try again.
    pub transient: bool,
}

impl CliError {
    pub fn new(code: Exit, message: impl Into<String>) -> CliError {
        CliError { code, message: message.into(), transient: false }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables that fit the terminal.
    Table,
    /// The API's JSON as it comes, for jq.
    Json,
}

#[derive(Args)]
pub struct ClientArgs {
    /// The server's URL (http only; a path prefix like /Cust1 may follow the port).
    /// [default: BATCHD_SERVER, else the profile's, else http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// How to print answers.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Args)]
#[command(after_long_help = EXIT_CODES)]
pub struct TaskArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Args)]
pub struct WatchArgs {
    /// How often to ask the server for news when it has no event stream (at least 100ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Start a task; prints its id alone, or with --watch follows it and prints its Result.
    #[command(after_long_help = EXIT_CODES)]
    Start {
        /// The definition to run (see `batchd definition list`).
        name: String,
        /// A ParameterObject entry; repeat for more.
        #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Claim order, 0 to 9, higher first (default: the definition's priority).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=9))]
        priority: Option<u8>,
        /// Wait for this task to succeed first (fails if it fails); repeat for more.
        #[arg(long = "after", value_name = "ID")]
        after: Vec<u32>,
        /// Follow the task to its end, as `batchd task watch` does (exit 0 or 1 by its outcome).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        watch_args: WatchArgs,
    },
    /// Show a task.
    #[command(after_long_help = EXIT_CODES)]
    Get { id: u32 },
    /// List tasks, newest first.
    #[command(after_long_help = EXIT_CODES)]
    List {
        /// Only tasks in this state.
        #[arg(long, value_name = "STATE", value_parser = parse_state)]
        state: Option<&'static str>,
        /// Only tasks of this definition.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Only tasks of this associate: an id, `me`, or a name (names need an admin).
        #[arg(long, value_name = "ASSOCIATE")]
        owner: Option<String>,
        /// At most this many (the server's limit is 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// A task's state changes: when, from, to, by whom, why.
    #[command(after_long_help = EXIT_CODES)]
    Events { id: u32 },
    /// The tasks a task waits for (AFTER) and those waiting for it (BEFORE).
    #[command(after_long_help = EXIT_CODES)]
    Deps { id: u32 },
    /// Follow a task with a progress bar (plain lines when not on a terminal) until it ends;
    /// prints its Result, and exits 0 when it succeeded, 1 when it failed.
    #[command(after_long_help = EXIT_CODES)]
    Watch {
        id: u32,
        #[command(flatten)]
        watch_args: WatchArgs,
    },
    /// Ask a task to stop (a running one ends Failed).
    #[command(after_long_help = EXIT_CODES)]
    Stop { id: u32 },
    /// Delete a task that has finished or not started.
    #[command(visible_alias = "delete")]
    #[command(after_long_help = EXIT_CODES)]
    Rm { id: u32 },
    /// Run a Failed task again: back to New, its run count and event log kept.
    #[command(after_long_help = EXIT_CODES)]
    Retry { id: u32 },
    /// Stop, delete or retry every task a filter matches (at most 1000; see docs/scheduling.md).
    #[command(after_long_help = EXIT_CODES)]
    Bulk {
        #[arg(value_enum)]
        action: BulkAction,
        /// An OData $filter, as `GET /api/v1/BatchTask` takes, e.g. "State eq 'Failed'".
        #[arg(long, value_name = "FILTER")]
        filter: Option<String>,
        /// Only tasks in this state (joined to --filter with `and`).
        #[arg(long, value_name = "STATE", value_parser = parse_state)]
        state: Option<&'static str>,
        /// Only tasks of this definition (joined to --filter with `and`).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Count the matches only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BulkAction {
    Stop,
    Delete,
    Retry,
}

impl BulkAction {
    fn word(self) -> &'static str {
        match self {
            BulkAction::Stop => "Stop",
            BulkAction::Delete => "Delete",
            BulkAction::Retry => "Retry",
        }
    }
}

#[derive(Args)]
#[command(after_long_help = EXIT_CODES)]
pub struct DefinitionArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: DefinitionCommand,
}

#[derive(Subcommand)]
pub enum DefinitionCommand {
    /// The definitions the server runs: name, runner, limits.
    #[command(after_long_help = EXIT_CODES)]
    List,
    /// Admins: pause a definition on every node; its New tasks wait, running ones finish.
    #[command(after_long_help = EXIT_CODES)]
    Pause { name: String },
    /// Admins: resume a paused definition.
    #[command(after_long_help = EXIT_CODES)]
    Resume { name: String },
}

/// A definition's name as one path segment.
fn name_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn parse_param(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{raw:?} is not KEY=VALUE")),
    }
}

const STATES: [&str; 7] = ["New", "Aquired", "Started", "Succeeded", "Failed", "SucceededManualCleanup", "Unknown"];

fn parse_state(raw: &str) -> Result<&'static str, String> {
    STATES
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(raw.trim()))
        .ok_or_else(|| format!("{raw:?} is not a state: use one of {}", STATES.join(", ")))
}

fn parse_interval(raw: &str) -> Result<Duration, String> {
    let d = batchd::domain::duration::parse_duration(raw).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("at least 100ms".into());
    }
    Ok(d)
}

/// `'text'` in the OData filter language: a quote is doubled.
fn filter_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The client for `args`, from the flags, the environment and the profile.
fn connect(args: &ClientArgs) -> Result<Client, CliError> {
    let profile = profile::load_profile(&env)?;
    let server = args
        .server
        .clone()
        .or_else(|| env("BATCHD_SERVER").filter(|s| !s.is_empty()))
        .or_else(|| profile.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let url = client::server_url(&server)?;
    Client::new(&url, profile::credentials(&env, &profile)?)
}

/// Runs a task command and answers its exit code; errors are printed here, in one line.
pub async fn task(args: TaskArgs) -> ExitCode {
    finish(run_task(args).await)
}

pub async fn definition(args: DefinitionArgs) -> ExitCode {
    finish(run_definition(args).await)
}

fn finish(r: Result<Exit, CliError>) -> ExitCode {
    match r {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code.into()
        }
    }
}

async fn run_definition(args: DefinitionArgs) -> Result<Exit, CliError> {
    let c = connect(&args.client)?;
    match args.command {
        DefinitionCommand::List => {
            let a = c.get("/api/v1/Definitions").await?;
            match args.client.output {
                Output::Json => render::raw(&a),
                Output::Table => render::definitions(&a.json()?),
            }
        }
        DefinitionCommand::Pause { ref name } | DefinitionCommand::Resume { ref name } => {
            let (verb, done) = match &args.command {
                DefinitionCommand::Pause { .. } => ("Pause", "paused"),
                _ => ("Resume", "resumed"),
            };
            let name = name.clone();
            let path = format!("/api/v1/Definitions/{}/{verb}", name_segment(&name));
            let a = c.send(Method::POST, &path, None, &[]).await?;
            let changed = a.json()?.as_bool() == Some(true);
            match args.client.output {
                Output::Json => render::raw(&a),
                Output::Table if changed => println!("{name}: {done}"),
                Output::Table => println!("{name}: {done} already"),
            }
        }
    }
    Ok(Exit::Ok)
}

async fn run_task(args: TaskArgs) -> Result<Exit, CliError> {
    let c = connect(&args.client)?;
    let json = args.client.output == Output::Json;
    match args.command {
        TaskCommand::Start { name, params, description, priority, after, watch, watch_args } => {
            let mut body = Map::new();
            body.insert("Name".into(), Value::from(name));
            if !params.is_empty() {
                let mut dict = Map::new();
                for (k, v) in params {
                    if dict.insert(k.clone(), Value::from(v)).is_some() {
                        return Err(CliError::new(Exit::Usage, format!("-p {k}=… is given twice")));
                    }
                }
                body.insert("ParameterObject".into(), Value::Object(dict));
            }
            if let Some(d) = description {
                body.insert("Description".into(), Value::from(d));
            }
            if let Some(p) = priority {
                body.insert("Priority".into(), Value::from(p));
            }
            if !after.is_empty() {
                body.insert("After".into(), Value::from(after));
            }
            let a = c.send(Method::POST, "/api/v1/BatchTask", Some(&Value::Object(body)), &[]).await?;
            let id = a
                .json()?
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| CliError::new(Exit::Refused, "the server answered the start without a task id"))?;
            if !watch {
                println!("{id}");
                return Ok(Exit::Ok);
            }
            eprintln!("started task {id}");
            watch::watch(&mut watch::Streaming::new(&c, id, watch_args.interval), id, json).await
        }
        TaskCommand::Get { id } => {
            let a = c.get(&format!("/api/v1/BatchTask/{id}")).await?;
            if json {
                render::raw(&a)
            } else {
                render::task(&a.json()?)
            }
            Ok(Exit::Ok)
        }
        TaskCommand::List { state, name, owner, limit } => {
            let mut tests = Vec::new();
            if let Some(s) = state {
                tests.push(format!("State eq {}", filter_text(s)));
            }
            if let Some(n) = &name {
                tests.push(format!("DefinitionName eq {}", filter_text(n)));
            }
            if let Some(o) = &owner {
                tests.push(format!("registeredBy eq {}", owner_id(&c, o).await?));
            }
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair(
                "$select",
                "batchTaskId,DefinitionName,State,ProgressPercent,ProgressDescription,registeredBy,registeredDate,Description",
            );
            if !tests.is_empty() {
                q.append_pair("$filter", &tests.join(" and "));
            }
            q.append_pair("$orderBy", "batchTaskId desc");
            q.append_pair("$top", &limit.to_string());
            let a = c.get(&format!("/api/v1/BatchTask?{}", q.finish())).await?;
            if json {
                render::raw(&a);
            } else {
                let list = a.json()?;
                render::task_list(&list);
                if list.get("odata.nextLink").is_some_and(|n| !n.is_null()) {
                    eprintln!("(more than {limit}: raise --limit or narrow the list)");
                }
            }
            Ok(Exit::Ok)
        }
        TaskCommand::Events { id } => {
            let a = c.get(&format!("/api/v1/BatchTask/{id}/Events")).await?;
            if json {
                render::raw(&a)
            } else {
                render::events(&a.json()?)
            }
            Ok(Exit::Ok)
        }
        TaskCommand::Deps { id } => {
            let a = c.get(&format!("/api/v1/BatchTask/{id}/Dependencies")).await?;
            if json {
                render::raw(&a)
            } else {
                render::dependencies(&a.json()?)
            }
            Ok(Exit::Ok)
        }
        TaskCommand::Watch { id, watch_args } => {
            watch::watch(&mut watch::Streaming::new(&c, id, watch_args.interval), id, json).await
        }
        TaskCommand::Stop { id } => {
            let a = c.send(Method::POST, &format!("/api/v1/BatchTask/{id}/Stop"), None, &[]).await?;
            let stopped = a.json()?.as_bool() == Some(true);
            if json {
                render::raw(&a);
            } else if stopped {
                println!("task {id}: stop requested");
            }
            if stopped {
                Ok(Exit::Ok)
            } else {
                Err(CliError::new(
                    Exit::Refused,
                    format!("task {id} was not stopped: it has ended or cannot be cancelled"),
                ))
            }
        }
        TaskCommand::Retry { id } => {
            let a = c.send(Method::POST, &format!("/api/v1/BatchTask/{id}/Retry"), None, &[]).await?;
            if json {
                render::raw(&a)
            } else {
                render::task(&a.json()?)
            }
            Ok(Exit::Ok)
        }
        TaskCommand::Bulk { action, filter, state, name, dry_run } => {
            let mut tests: Vec<String> = filter.iter().map(|f| format!("({f})")).collect();
            if let Some(s) = state {
                tests.push(format!("State eq {}", filter_text(s)));
            }
            if let Some(n) = &name {
                tests.push(format!("DefinitionName eq {}", filter_text(n)));
            }
            if tests.is_empty() {
                return Err(CliError::new(Exit::Usage, "say which tasks: --filter, --state or --name"));
            }
            let body = serde_json::json!({"Action": action.word(), "Filter": tests.join(" and "), "DryRun": dry_run});
            let a = c.send(Method::POST, "/api/v1/BatchTask/Bulk", Some(&body), &[]).await?;
            if json {
                render::raw(&a);
            } else {
                let v = a.json()?;
                let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
                if dry_run {
                    println!("{} tasks match", n("Matched"));
                } else {
                    println!("{}: {} of {} matching tasks", action.word(), n("Done"), n("Matched"));
                }
            }
            Ok(Exit::Ok)
        }
        TaskCommand::Rm { id } => {
            c.send(Method::DELETE, &format!("/api/v1/BatchTask/{id}"), None, &[]).await?;
            if !json {
                println!("removed task {id}");
            }
            Ok(Exit::Ok)
        }
    }
}

/// `--owner`: an associate id as it is, `me` from the session, a name from the associate list
/// (which only admins may read).
async fn owner_id(c: &Client, owner: &str) -> Result<i64, CliError> {
    let owner = owner.trim();
    if let Ok(id) = owner.parse::<i64>() {
        return Ok(id);
    }
    let id = |v: &Value| v.get("AssociateId").and_then(Value::as_i64);
    if owner.eq_ignore_ascii_case("me") {
        let me = c.get("/api/v1/Session").await?.json()?;
        return id(&me).ok_or_else(|| CliError::new(Exit::Refused, "the server did not say who you are"));
    }
    let all = match c.get("/api/v1/Associate").await {
        Ok(a) => a.json()?,
        Err(e) if e.code == Exit::Forbidden => {
            return Err(CliError::new(
                Exit::Forbidden,
                format!("--owner {owner:?}: only admins may look up names; give the associate id"),
            ));
        }
        Err(e) => return Err(e),
    };
    all.as_array()
        .into_iter()
        .flatten()
        .find(|a| a.get("Name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case(owner)))
        .and_then(id)
        .ok_or_else(|| CliError::new(Exit::NotFound, format!("not found: no associate named {owner:?}")))
}
