//! Start-up: open the store, make sure someone can log in, serve until told to stop.

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use rand::Rng;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::domain::Role;
use crate::http::answers::Answers;
use crate::http::auth::Authenticator;
use crate::http::{AppState, Shared, app};
use crate::identity::{IdentityService, hash_password, off_thread};
use crate::runner::node::NodeKeeper;
use crate::runner::{Definitions, Runner};
use crate::service::TaskService;
use crate::store::{self, NewAssociate, Store, StoreError};

/// Definitions that always exist.
pub const BUILTIN_DEFINITIONS: [&str; 2] = ["Noop", "Sleep"];

pub struct Server {
    pub state: AppState,
    pub listener: TcpListener,
    pub runner: Runner,
}

/// Creates the first admin when there are no associates: from `BATCHD_ADMIN_USER` /
/// `BATCHD_ADMIN_PASSWORD`, or `admin` with a random password printed once.
pub async fn bootstrap_admin(store: &Arc<dyn Store>, config: &Config) -> anyhow::Result<()> {
    if store.count_associates().await? > 0 {
        return Ok(());
    }
    let name = config.admin_user.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "admin".into());
    let (password, generated) = match config.admin_password.clone().filter(|s| !s.is_empty()) {
        Some(p) => (p, false),
        None => {
            let p: String =
                rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(20).map(char::from).collect();
            (p, true)
        }
    };
    let hash = off_thread(move || hash_password(&password).map(|h| (h, password)))
        .await
        .ok_or_else(|| anyhow::anyhow!("no thread for hashing the admin password"))??;
    match store
        .create_associate(NewAssociate { name: name.clone(), password_hash: hash.0, role: Role::Admin }, Utc::now())
        .await
    {
        Ok(_) => {}
        // Another node sharing the database created the first admin a moment ago.
        Err(StoreError::DuplicateName) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if generated {
        // Printed once, on stderr with the logs: it is never stored in clear.
        eprintln!(
            "\n  batchd: created admin associate '{name}' with password: {}\n  (set BATCHD_ADMIN_PASSWORD to choose it; change it with `batchd associate passwd`)\n",
            hash.1
        );
    } else {
        tracing::info!(%name, "created the admin associate from BATCHD_ADMIN_USER/BATCHD_ADMIN_PASSWORD");
    }
    Ok(())
}

impl Server {
    /// Opens the store, runs migrations, bootstraps the admin, binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Server> {
        if config.access.trust_forwarded_for {
            tracing::warn!(
                "[auth] trust_forwarded_for is deprecated: it lets every client set X-Forwarded-For, -Host and \
                 -Proto; list your proxies in [auth] trusted_proxies instead"
            );
        }
        let mut store = store::open_with(&config.database, &config.postgres).await?;
        if let Some(limits) = config.http.task_cache() {
            store = store::cache::CachedStore::wrap(store, limits);
        }
        bootstrap_admin(&store, &config).await?;
        // -- runner --
        let definitions = Arc::new(Definitions::new(config.definitions.clone()));
        definitions.mirror(&store).await.context("registering task definitions")?;
        config.runner.check_http_tls()?;
        let runner = Runner::new(store.clone(), definitions, config.runner.clone(), config.retention.clone());
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let auth = Arc::new(Authenticator::new(store.clone(), config.credential_cache, config.access.clone()));
        auth.spawn_watcher();
        let definitions = BUILTIN_DEFINITIONS.iter().map(|s| (*s).to_owned()).collect();
        let identity = IdentityService::new(store.clone(), &config.access).notifying(auth.clone());
        let hub = crate::http::hub::Hub::start(store.clone(), config.http.max_stream_subscribers);
        let tasks = TaskService::new(store, config.strict_definitions, definitions).with_runner(runner.clone());
        // Off with the task cache: `task_cache_entries = 0` keeps no task data in memory at all.
        let answers = Arc::new(Answers::new(config.http.task_cache().map_or(0, |l| l.entries)));
        Ok(Server {
            state: AppState::new(Shared {
                config: Arc::new(config),
                tasks,
                identity,
                auth,
                metrics: Arc::default(),
                hub,
                answers,
            }),
            listener,
            runner,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves (and runs tasks) until `shutdown` completes, then finishes in-flight requests and
    /// gives running tasks the grace period before handing their leases back.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let runner = self.runner.clone();
        runner.start().await;
        let address =
            self.listener.local_addr().map_or_else(|_| self.state.config.listen.to_string(), |a| a.to_string());
        let keeper = NodeKeeper::start(&runner, address).await;
        let limits = self.state.config.http.clone();
        let hub = self.state.hub.clone();
        let app = app(self.state);
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            // Open event streams end now: a graceful shutdown waits for every response to end.
            hub.close();
            let _ = signalled.send(());
        };
        let drain = async move {
            if on_signal.await.is_ok() {
                runner.shutdown().await;
                keeper.stop().await;
            }
        };
        let serve = crate::http::serve::serve(self.listener, app, &limits, signal);
        tokio::join!(serve, drain);
        Ok(())
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
