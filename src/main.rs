//! The `batchd` command: `serve`, the administration commands that work beside a server, and
//! the task commands that are clients of one (src/cli/).

mod cli;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, CommandFactory, Parser, Subcommand};

use batchd::config::LogFormat;
use batchd::config::layers::{Flag, Sources};
use batchd::domain::Role;
use batchd::domain::access::{Scope, parse_duration};
use batchd::identity::{AssociateEdit, AssociateRequest, IdentityError, IdentityService, Principal, TokenRequest};
use batchd::server::{Server, shutdown_signal};
use batchd::store;

/// mimalloc rather than glibc malloc: cheaper for the request path's many small allocations, and
/// it gives freed large blocks (argon2's 19 MiB per login) back to the OS instead of keeping them
/// in per-thread arenas, so a burst of logins does not pin memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own settings (mimalloc.h of v3, the version the `mimalloc` crate builds without its
// `v2` feature; the numbers are v3's).
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
/// `mi_option_purge_delay`: how long freed memory stays with the process before it goes back to
/// the OS. mimalloc's 10 ms (100 ms in its arenas) only pass when the freeing thread allocates
/// again, so a quiet node kept its start-up and burst peaks for seconds (idle RSS 45 MiB instead of
/// 26; 104 MiB with 10,000 Sleep runs instead of 70, docs/BENCHMARKS.md).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
/// `mi_option_allow_thp`: mimalloc asks for transparent huge pages on its arena.
const MI_OPTION_ALLOW_THP: std::ffi::c_int = 43;

/// Gives freed memory back at once, unless `MIMALLOC_PURGE_DELAY` says otherwise; and keeps the
/// heap in 4 KiB pages, unless `MIMALLOC_ALLOW_THP` says otherwise.
fn configure_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option; mimalloc reads options atomically.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // mimalloc madvises its 1 GiB arena MADV_HUGEPAGE, so where THP is `always` or `madvise`
        // (the distributions' defaults) every 2 MiB region the heap touches becomes resident
        // whole at its first touch, however little of it is used: an idle node on PostgreSQL
        // held 15-16 MiB of anonymous memory for under 1 MiB of live heap, 7 MiB with this
        // (docs/BENCHMARKS.md). The arena is mapped before `main`, so the option alone is too
        // late: the process-wide switch (what mimalloc does itself when the option is 0 at its
        // start) also stops huge pages in the regions already mapped.
        // The switch is inherited by children: the command runner turns it back on in the programs
        // it starts, unless batchd itself was started with it set.
        // SAFETY: sets an integer option; prctl with PR_{GET,SET}_THP_DISABLE only reads and sets
        // a flag of this process (an error, e.g. an old kernel, leaves THP as it was).
        unsafe {
            mi_option_set(MI_OPTION_ALLOW_THP, 0);
            if libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 0
                && libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
            {
                batchd::runner::THP_OFF_FOR_BATCHD_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[derive(Parser)]
#[command(
    name = "batchd",
    version,
    about = "A batch-task server that speaks SuperOffice's Batch API",
    after_long_help = cli::EXIT_CODES
)]
struct Cli {
    /// Log lines on stderr: pretty for people, json (one object a line) for collectors.
    /// Default: BATCHD_LOG_FORMAT, else the config file's `log_format`, else pretty when stderr
    /// is a terminal, json otherwise.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// The subscriber for `format` on stderr, filtered by `BATCHD_LOG` (default `info`). The
/// first call wins.
fn init_logs(format: Option<LogFormat>) {
    let terminal = std::io::stderr().is_terminal();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATCHD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A closed stderr must not take the server down (the internal-error report would panic).
        .log_internal_errors(false)
        .with_env_filter(filter);
    match format.unwrap_or(if terminal { LogFormat::Pretty } else { LogFormat::Json }) {
        LogFormat::Pretty => drop(builder.with_ansi(terminal).try_init()),
        // Fields at the top level and no span context: one flat object a line is what collectors
        // index without configuration.
        LogFormat::Json => drop(
            builder
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init(),
        ),
    }
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Database URL: sqlite:PATH (created if missing) or postgres://... Wins over
    /// BATCHD_DATABASE and the file's `database`.
    #[arg(long)]
    database: Option<String>,
    /// TOML configuration file (see batchd.example.toml).
    #[arg(long, env = "BATCHD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on. Wins over BATCHD_LISTEN and the file's `listen`.
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The configuration: what it is in effect and where each value came from, or whether a
    /// file is good (docs/config.md).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage associates (users).
    Associate {
        #[command(subcommand)]
        command: AssociateCommand,
    },
    /// Manage API tokens (`Authorization: Bearer ...`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Tasks on a running server: start, get, list, events, watch, stop, rm.
    Task(cli::TaskArgs),
    /// Task definitions of a running server.
    Definition(cli::DefinitionArgs),
    /// Print a shell completion script (e.g. `batchd completions bash > /etc/bash_completion.d/batchd`).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `batchd man | man -l -`.
    Man,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults < file < environment < flags), each value with
    /// where it came from; secrets are masked.
    Show {
        /// As `serve --listen`.
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        db: DbArgs,
        /// text: TOML with each origin as a comment; json: {"KEY": {"value", "source", "env"}}.
        #[arg(long, value_enum, default_value = "text")]
        output: ShowOutput,
    },
    /// Check a config file: every unknown key, wrong type and value out of range, with its line.
    #[command(
        after_long_help = "Exit codes:\n  0  the file is good\n  1  the file has problems (each printed on stdout)\n  2  usage: the file cannot be read, or bad arguments"
    )]
    Check {
        file: PathBuf,
        /// text: FILE:LINE: KEY: message a line; json: {"file", "problems": [{"line", "key", "message"}]}.
        #[arg(long, value_enum, default_value = "text")]
        output: ShowOutput,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ShowOutput {
    Text,
    Json,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once (it is stored only as a hash).
    Create {
        /// The associate the token acts for.
        #[arg(long)]
        associate: String,
        /// read, write, worker or admin (see docs/auth.md).
        #[arg(long)]
        scope: String,
        /// Lifetime such as 30d, 12h, 2w; never expires when left out.
        #[arg(long)]
        expires: Option<String>,
        /// A label to tell tokens apart.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this associate's.
        #[arg(long)]
        associate: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by id.
    Revoke {
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum AssociateCommand {
    /// Add an associate; the password is read from stdin.
    Add {
        name: String,
        /// Give the admin role.
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// Role: user, worker or admin.
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List associates.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set a new password, read from stdin. Ends the associate's tickets and sessions.
    Passwd {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Change the role: user, worker or admin.
    SetRole {
        name: String,
        role: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Stop an associate from logging in (every credential is refused); its tasks stay.
    Disable {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Let a disabled associate log in again.
    Enable {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove an associate with its tickets, tokens and sessions; its tasks stay.
    Remove {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// The identity service over the configured store. The CLI acts as the operator
/// ([`Principal::Operator`]): whoever can run it has the database anyway.
async fn identity(db: &DbArgs) -> anyhow::Result<IdentityService> {
    let cfg = load_config(db, None)?.config;
    Ok(IdentityService::new(store::open(&cfg.database).await?, &cfg.access))
}

fn change_error(e: IdentityError, name: &str) -> anyhow::Error {
    match e {
        IdentityError::LastAdmin => {
            anyhow::anyhow!("refused: {name:?} is the last active admin; make another admin first")
        }
        other => other.into(),
    }
}

async fn change_associate(db: &DbArgs, name: &str, edit: AssociateEdit, done: &str) -> anyhow::Result<()> {
    let ids = identity(db).await?;
    let a = ids.associate_named(name).await?;
    ids.update_associate(Principal::Operator, a.id, edit).await.map_err(|e| change_error(e, &a.name))?;
    // A running server drops its cached credentials for this associate within one poll interval.
    println!("{done} {} (id {})", a.name, a.id);
    Ok(())
}

async fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { associate, scope, expires, name, db } => {
            let scope =
                Scope::parse(&scope).with_context(|| format!("--scope {scope:?}: use read, write, worker or admin"))?;
            let lifetime = match &expires {
                Some(e) => Some(
                    parse_duration(e)
                        .with_context(|| format!("--expires {e:?}: use a duration like 30d, 12h or 2w"))?,
                ),
                None => None,
            };
            let request = TokenRequest { scope, lifetime, label: name, associate: Some(associate) };
            let t = identity(&db).await?.create_token(Principal::Operator, request).await?;
            eprintln!(
                "created token {} for {} (scope {}, expires {}); it is shown only this once:",
                t.row.id,
                t.row.associate_name,
                scope.as_str(),
                t.row.expires.map_or_else(|| "never".to_owned(), |e| e.to_rfc3339())
            );
            println!("{}", t.secret);
        }
        TokenCommand::List { associate, db } => {
            let ids = identity(&db).await?;
            let owner = match associate {
                Some(n) => Some(ids.associate_named(&n).await?.id),
                None => None,
            };
            let now = Utc::now();
            println!("{:>6}  {:<16}  {:<6}  {:<8}  {:<25}  NAME", "ID", "ASSOCIATE", "SCOPE", "STATE", "EXPIRES");
            for t in ids.list_tokens(Principal::Operator, owner).await? {
                let state = if t.revoked.is_some() {
                    "revoked"
                } else if t.is_live(now) {
                    "live"
                } else {
                    "expired"
                };
                println!(
                    "{:>6}  {:<16}  {:<6}  {:<8}  {:<25}  {}",
                    t.id,
                    t.associate_name,
                    t.scope.map_or("", Scope::as_str),
                    state,
                    t.expires.map_or_else(|| "never".to_owned(), |e| e.to_rfc3339()),
                    t.name.unwrap_or_default()
                );
            }
        }
        TokenCommand::Revoke { id, db } => {
            identity(&db).await?.revoke_token(Principal::Operator, &id.to_string()).await?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// The global `--log-format`, for [`load_config`] to layer.
static LOG_FORMAT_FLAG: std::sync::OnceLock<Option<LogFormat>> = std::sync::OnceLock::new();

/// Defaults < `--config` file < `BATCHD_…` variables < flags, and the logs set up as it says.
fn load_config(db: &DbArgs, listen: Option<String>) -> anyhow::Result<batchd::config::layers::Effective> {
    let mut flags = Vec::new();
    if let Some(l) = listen {
        flags.push(Flag { flag: "--listen", key: "listen", value: l });
    }
    if let Some(d) = &db.database {
        flags.push(Flag { flag: "--database", key: "database", value: d.clone() });
    }
    if let Some(f) = LOG_FORMAT_FLAG.get().copied().flatten() {
        let value = if f == LogFormat::Json { "json" } else { "pretty" };
        flags.push(Flag { flag: "--log-format", key: "log_format", value: value.into() });
    }
    let sources = Sources { file: db.config.clone(), env: Sources::process_env(), flags };
    let effective = sources.resolve()?;
    init_logs(effective.config.log_format);
    for (var, near) in &effective.misspelt {
        tracing::warn!("{var} is no setting and is ignored; did you mean {near}?");
    }
    Ok(effective)
}

/// `text` on stdout; a reader that went away (`| head`) is not an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `config check FILE`: 0 good, 1 problems (printed), 2 unreadable.
fn config_check(file: &std::path::Path, output: ShowOutput) -> ExitCode {
    let problems = match batchd::config::check::check_file(file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let text = match output {
        ShowOutput::Json => format!("{}\n", serde_json::json!({ "file": file, "problems": problems })),
        ShowOutput::Text => problems.iter().map(|p| format!("{}\n", p.render(file))).collect(),
    };
    if let Err(e) = print_out(&text) {
        eprintln!("Error: {e:#}");
    }
    if problems.is_empty() {
        eprintln!("{}: good", file.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("{}: {} problem(s)", file.display(), problems.len());
        ExitCode::FAILURE
    }
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "the password is empty: give it on stdin, e.g. `echo secret | batchd associate add NAME`"
    );
    Ok(password)
}

fn main() -> ExitCode {
    configure_allocator();
    let result = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from);
    match result.and_then(|rt| rt.block_on(run())) {
        Ok(code) => code,
        Err(e) => {
            // As `fn main() -> anyhow::Result<()>` reports it.
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let _ = LOG_FORMAT_FLAG.set(cli.log_format);
    // Commands that load the configuration set up the logs from it; the others here.
    if !matches!(cli.command, Command::Serve { .. } | Command::Associate { .. } | Command::Token { .. }) {
        let from_env = std::env::var("BATCHD_LOG_FORMAT").ok().and_then(|v| LogFormat::parse(&v));
        init_logs(cli.log_format.or(from_env));
    }
    match cli.command {
        Command::Serve { listen, db } => {
            let cfg = load_config(&db, listen)?.config;
            let server = Server::build(cfg).await?;
            tracing::info!(addr = %server.local_addr()?, "batchd is listening");
            server.run(shutdown_signal()).await?;
        }
        Command::Associate { command } => match command {
            AssociateCommand::Add { name, admin, role, db } => {
                // Checked before the password is asked for.
                batchd::identity::check_name(&name)?;
                let role = match (admin, role) {
                    (true, _) => Role::Admin,
                    (false, Some(r)) => {
                        Role::parse(&r).with_context(|| format!("--role {r:?}: use user, worker or admin"))?
                    }
                    (false, None) => Role::User,
                };
                let password = read_password()?;
                let ids = identity(&db).await?;
                let a = ids
                    .create_associate(Principal::Operator, AssociateRequest { name, password, role, active: None })
                    .await?;
                println!("added associate {} (id {}, role {})", a.name, a.id, a.role.as_str());
            }
            AssociateCommand::List { db } => {
                println!("{:>6}  {:<8}  {:<6}  NAME", "ID", "ROLE", "ACTIVE");
                for a in identity(&db).await?.list_associates(Principal::Operator).await? {
                    println!(
                        "{:>6}  {:<8}  {:<6}  {}",
                        a.id,
                        a.role.as_str(),
                        if a.active { "yes" } else { "no" },
                        a.name
                    );
                }
            }
            AssociateCommand::Passwd { name, db } => {
                let ids = identity(&db).await?;
                let a = ids.associate_named(&name).await?;
                let password = read_password()?;
                let edit = AssociateEdit { password: Some(password), ..Default::default() };
                ids.update_associate(Principal::Operator, a.id, edit).await.map_err(|e| change_error(e, &a.name))?;
                println!("changed the password of {} (id {})", a.name, a.id);
            }
            AssociateCommand::SetRole { name, role, db } => {
                let role = Role::parse(&role).with_context(|| format!("role {role:?}: use user, worker or admin"))?;
                let edit = AssociateEdit { role: Some(role), ..Default::default() };
                change_associate(&db, &name, edit, &format!("role {} for", role.as_str())).await?;
            }
            AssociateCommand::Disable { name, db } => {
                let edit = AssociateEdit { active: Some(false), ..Default::default() };
                change_associate(&db, &name, edit, "disabled").await?;
            }
            AssociateCommand::Enable { name, db } => {
                let edit = AssociateEdit { active: Some(true), ..Default::default() };
                change_associate(&db, &name, edit, "enabled").await?;
            }
            AssociateCommand::Remove { name, db } => {
                let ids = identity(&db).await?;
                let a = ids.associate_named(&name).await?;
                ids.delete_associate(Principal::Operator, a.id).await.map_err(|e| change_error(e, &a.name))?;
                println!("removed {} (id {}); its tasks stay", a.name, a.id);
            }
        },
        Command::Token { command } => token_command(command).await?,
        Command::Config { command: ConfigCommand::Show { listen, db, output } } => {
            let settings = load_config(&db, listen)?.settings;
            let text = match output {
                ShowOutput::Text => batchd::config::show::text(&settings),
                ShowOutput::Json => format!("{:#}\n", batchd::config::show::json(&settings)),
            };
            print_out(&text)?;
        }
        Command::Config { command: ConfigCommand::Check { file, output } } => return Ok(config_check(&file, output)),
        // The task commands print their own one-line errors and choose their exit codes.
        Command::Task(args) => return Ok(cli::task(args).await),
        Command::Definition(args) => return Ok(cli::definition(args).await),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "batchd", &mut std::io::stdout());
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}
