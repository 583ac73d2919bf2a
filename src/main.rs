//! The `batchd` command: `serve`, and the administration commands that work beside a server.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Parser, Subcommand};

use batchd::config::Config;
use batchd::domain::{Role, associate::valid_associate_name};
use batchd::http::auth::hash_password;
use batchd::server::{Server, shutdown_signal};
use batchd::store::{self, NewAssociate, StoreError};

#[derive(Parser)]
#[command(name = "batchd", version, about = "A batch-task server that speaks SuperOffice's Batch API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Database URL: sqlite:PATH (created if missing) or postgres://...
    #[arg(long, env = "BATCHD_DATABASE")]
    database: Option<String>,
    /// TOML configuration file (see batchd.example.toml).
    #[arg(long, env = "BATCHD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BATCHD_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage associates (users).
    Associate {
        #[command(subcommand)]
        command: AssociateCommand,
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
}

fn load_config(db: &DbArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(db.config.as_deref())?;
    if let Some(d) = &db.database {
        cfg.database = d.clone();
    }
    cfg.admin_user = std::env::var("BATCHD_ADMIN_USER").ok();
    cfg.admin_password = std::env::var("BATCHD_ADMIN_PASSWORD").ok();
    Ok(cfg)
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr must not take the server down (the internal-error report would panic).
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATCHD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, db } => {
            let mut cfg = load_config(&db)?;
            if let Some(l) = listen {
                cfg.listen =
                    l.parse().with_context(|| format!("--listen {l:?} is not an address like 127.0.0.1:8080"))?;
            }
            let server = Server::build(cfg).await?;
            tracing::info!(addr = %server.local_addr()?, "batchd is listening");
            server.run(shutdown_signal()).await?;
        }
        Command::Associate { command } => match command {
            AssociateCommand::Add { name, admin, role, db } => {
                anyhow::ensure!(
                    valid_associate_name(&name),
                    "{name:?} is not a valid associate name (1-100 characters, no ':')"
                );
                let role = match (admin, role) {
                    (true, _) => Role::Admin,
                    (false, Some(r)) => {
                        Role::parse(&r).with_context(|| format!("--role {r:?}: use user, worker or admin"))?
                    }
                    (false, None) => Role::User,
                };
                let password = read_password()?;
                let store = store::open(&load_config(&db)?.database).await?;
                let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await??;
                match store
                    .create_associate(NewAssociate { name: name.clone(), password_hash: hash, role }, Utc::now())
                    .await
                {
                    Ok(a) => println!("added associate {} (id {}, role {})", a.name, a.id, a.role.as_str()),
                    Err(StoreError::Conflict { .. }) => {
                        anyhow::bail!("an associate named {name:?} already exists")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            AssociateCommand::List { db } => {
                let store = store::open(&load_config(&db)?.database).await?;
                println!("{:>6}  {:<8}  {:<6}  NAME", "ID", "ROLE", "ACTIVE");
                for a in store.list_associates().await? {
                    println!(
                        "{:>6}  {:<8}  {:<6}  {}",
                        a.id,
                        a.role.as_str(),
                        if a.active { "yes" } else { "no" },
                        a.name
                    );
                }
            }
        },
    }
    Ok(())
}
