//! Connecting to PostgreSQL: TLS as `sslmode`/`sslrootcert` ask (checked in `pg_stat_ssl` by the
//! server itself), certificate failures that stop start-up with a clear error and no password,
//! and the `[postgres]` pool settings reaching each connection.
//!
//! The machine's server has `ssl = on` with Debian's snakeoil certificate: self-signed, for
//! `localhost` only.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batchd::config::PostgresConfig;
use batchd::store::postgres::PostgresStore;
use sqlx::PgPool;

use crate::pg::TestPg;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// Put in the URLs' userinfo: trust auth never asks for it, so only a leak would show it.
const PASSWORD: &str = "pw-Zq81-never-shown";

/// `url` with its host replaced by `host`, `PASSWORD` in its userinfo and `query` as its query.
fn url_for(url: &str, host: &str, query: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let rest = rest.split('?').next().unwrap_or(rest);
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (user, hostport) = authority.rsplit_once('@').unwrap_or(("postgres", authority));
    let user = user.split(':').next().unwrap_or(user);
    let port = hostport.rsplit_once(':').map_or("5432", |(_, p)| p);
    format!("{scheme}://{user}:{PASSWORD}@{host}:{port}/{path}?{query}")
}

async fn ssl_in_use(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(pool).await.unwrap()
}

fn snakeoil_present(test: &str) -> bool {
    let there = std::path::Path::new(SNAKEOIL).exists();
    if !there {
        assert!(std::env::var("BATCHD_REQUIRE_PG").as_deref() != Ok("1"), "{test}: {SNAKEOIL} is missing");
        eprintln!("**** SKIPPED {test}: {SNAKEOIL} is missing ****");
    }
    there
}

/// A CA that signed nothing the server has.
fn unrelated_ca(dir: &std::path::Path) -> String {
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let path = dir.join("unrelated-ca.pem");
    std::fs::write(&path, ca.cert.pem()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn verify_full_to_localhost_is_tls_and_each_sslmode_is_honoured() {
    let test = "pg_connect::verify_full_to_localhost_is_tls_and_each_sslmode_is_honoured";
    let Some(db) = TestPg::create(test).await else { return };
    if !snakeoil_present(test) {
        return;
    }
    let url = url_for(&db.url, "localhost", &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"));
    let store = PostgresStore::open(&url).await.expect("verify-full against the server's own certificate");
    assert!(ssl_in_use(store.pool()).await, "verify-full is TLS");
    // Seen from another connection, as the server lists batchd's: every one of them is TLS.
    let mut other = db.connect().await;
    let (tls, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = 'batchd' AND a.datname = current_database()",
    )
    .fetch_one(&mut other)
    .await
    .unwrap();
    assert!(tls >= 1 && plain == 0, "batchd's connections: {tls} TLS, {plain} plain");
    store.pool().close().await;

    // verify-ca checks the chain but not the name: 127.0.0.1 is not in the certificate.
    let host = "127.0.0.1";
    for (query, tls) in [
        (format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}"), true),
        // No longer "TLS not built in": encrypted, the certificate not checked, as libpq does.
        ("sslmode=require".to_owned(), true),
        ("sslmode=prefer".to_owned(), true),
        ("sslmode=disable".to_owned(), false),
    ] {
        let store =
            PostgresStore::open(&url_for(&db.url, host, &query)).await.unwrap_or_else(|e| panic!("{query}: {e:#}"));
        assert_eq!(ssl_in_use(store.pool()).await, tls, "{query}");
        store.pool().close().await;
    }
}

#[tokio::test]
async fn a_certificate_that_fails_verification_stops_start_up_and_says_so() {
    let test = "pg_connect::a_certificate_that_fails_verification_stops_start_up_and_says_so";
    let Some(db) = TestPg::create(test).await else { return };
    if !snakeoil_present(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wrong = unrelated_ca(dir.path());
    for (host, query, also) in [
        ("localhost", format!("sslmode=verify-full&sslrootcert={wrong}"), "UnknownIssuer"),
        ("localhost", format!("sslmode=verify-ca&sslrootcert={wrong}"), "UnknownIssuer"),
        // libpq's rule: `require` with a root certificate verifies the chain.
        ("localhost", format!("sslmode=require&sslrootcert={wrong}"), "verify-ca"),
        // The right CA, but the certificate is for localhost only.
        ("127.0.0.1", format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"), "host name"),
    ] {
        let url = url_for(&db.url, host, &query);
        let e = match batchd::store::open(&url).await {
            Ok(_) => panic!("{query} to {host} must fail"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains("certificate verification failed") && e.contains(also), "{query}: {e}");
        assert!(!e.contains(PASSWORD) && e.contains(":***@"), "the URL is shown redacted: {e}");
    }

    // The real binary: exits non-zero at start, and the message says why.
    let url = url_for(&db.url, "localhost", &format!("sslmode=verify-full&sslrootcert={wrong}"));
    let mut child = Command::new(crate::process::batchd_bin())
        .arg("serve")
        .env("BATCHD_LISTEN", "127.0.0.1:0")
        .env("BATCHD_DATABASE", &url)
        .env_remove("BATCHD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("batchd serve kept running with a certificate it cannot verify");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("certificate verification failed"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[tokio::test]
async fn the_postgres_settings_reach_the_pool_and_every_connection() {
    let Some(db) = TestPg::create("pg_connect::the_postgres_settings_reach_the_pool_and_every_connection").await else {
        return;
    };
    let cfg = PostgresConfig {
        pool_size: 3,
        connect_timeout: Duration::from_secs(2),
        statement_timeout: Some(Duration::from_millis(300)),
        idle_timeout: Some(Duration::from_secs(30)),
    };
    let store = PostgresStore::open_with(&db.url, &cfg).await.expect("opens; migrations are not cut short");
    let pool = store.pool();
    assert_eq!(pool.options().get_max_connections(), 3);
    assert_eq!(pool.options().get_acquire_timeout(), Duration::from_secs(2));
    assert_eq!(pool.options().get_idle_timeout(), Some(Duration::from_secs(30)));
    // The connection that migrated went back to the pool with the configured timeout restored.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(pool.acquire().await.unwrap());
    }
    for c in &mut conns {
        let shown: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(&mut **c).await.unwrap();
        assert_eq!(shown, "300ms");
    }
    let slow = sqlx::query("SELECT pg_sleep(2)").execute(&mut *conns[0]).await.unwrap_err();
    let code = slow.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {slow}");
    // All three are out: a fourth waits connect_timeout, then fails.
    let started = Instant::now();
    assert!(pool.acquire().await.is_err());
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
}
