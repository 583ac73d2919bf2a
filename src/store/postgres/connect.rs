//! Opening the pool: connect options from the URL and `[postgres]`, TLS as libpq reads
//! `sslmode`/`sslrootcert`, start-up errors that say what went wrong, and migrations that refuse a
//! schema newer than this binary.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{PgConnection, PgPool};

use crate::config::PostgresConfig;

/// The most of an `sslrootcert` file read: a CA bundle is kilobytes, the system's ~200 KiB.
const ROOT_CERT_BYTES: u64 = 4 << 20;

/// The pool, with its first connection made (so a bad URL, password or certificate fails here).
pub(super) async fn pool(url: &str, cfg: &PostgresConfig) -> anyhow::Result<PgPool> {
    let options = options(url, cfg)?;
    PgPoolOptions::new()
        .max_connections(cfg.pool_size.max(1))
        // sqlx pings each pooled connection before handing it out (its default, kept): a round
        // trip more per request, but a connection PostgreSQL terminated (a restart, an admin's
        // pg_terminate_backend) is dropped there instead of failing a read with a 503. Skipping
        // the ping for busy connections failed `faults::terminated_postgres_connections…`: a
        // read is tried only twice (`read_twice`), and after a terminate-all every pooled
        // connection is dead, so the second try may draw a dead one too.
        // A batch of thousands of rows (claims, beats, finishes) grows a connection's read and
        // write buffers to its size, and sqlx keeps them; back in the pool they shrink to 8 KiB
        // again (nothing is reallocated when they are that size already).
        .after_release(|conn, _| {
            Box::pin(async move {
                sqlx::Connection::shrink_buffers(conn);
                Ok(true)
            })
        })
        .acquire_timeout(cfg.connect_timeout)
        .idle_timeout(cfg.idle_timeout)
        .connect_with(options.clone())
        .await
        .map_err(|e| explain(e, &options, root_cert_of(url).is_some()))
}

/// The connect options: the URL's (and the `PG*` variables'), then batchd's own settings.
fn options(url: &str, cfg: &PostgresConfig) -> anyhow::Result<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("batchd");
    let root_cert = root_cert_of(url);
    if matches!(options.get_ssl_mode(), PgSslMode::Require) && root_cert.is_some() {
        // libpq: `require` with a root certificate verifies the chain, as `verify-ca` does.
        options = options.ssl_mode(PgSslMode::VerifyCa);
    }
    if matches!(options.get_ssl_mode(), PgSslMode::VerifyCa | PgSslMode::VerifyFull)
        && let Some(path) = &root_cert
    {
        check_root_cert(path)?;
    }
    // A server or role may default to `off`; batchd answers only after durable commits.
    options = options.options([("synchronous_commit", "on"), ("client_min_messages", "warning")]);
    if let Some(t) = cfg.statement_timeout {
        // Whole milliseconds, PostgreSQL's unit; at least 1 (validated), since 0 means none.
        options = options.options([("statement_timeout", t.as_millis().max(1).to_string())]);
    }
    Ok(options)
}

/// `sslrootcert` as the URL, else `PGSSLROOTCERT`, gives it (the places sqlx reads it from).
fn root_cert_of(url: &str) -> Option<String> {
    let query = url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or(q));
    let in_url = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| matches!(k.as_ref(), "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
            .map(|(_, v)| v.into_owned())
            .last()
    });
    in_url.or_else(|| std::env::var("PGSSLROOTCERT").ok()).filter(|v| !v.is_empty())
}

/// A root certificate that cannot be read or holds no certificate fails start-up here, named,
/// rather than as a bare I/O error on every connection.
fn check_root_cert(path: &str) -> anyhow::Result<()> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    anyhow::ensure!(
        path != "system",
        "sslrootcert=system is not supported: leave sslrootcert out to trust the built-in public roots"
    );
    // Inline PEM is sqlx's extension; a path is libpq's form.
    let pem = if path.trim_start().starts_with("-----BEGIN") {
        path.as_bytes().to_vec()
    } else {
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(ROOT_CERT_BYTES + 1).read_to_end(&mut pem))
            .with_context(|| format!("sslrootcert {path}: cannot be read"))?;
        anyhow::ensure!(pem.len() as u64 <= ROOT_CERT_BYTES, "sslrootcert {path}: larger than 4 MiB");
        pem
    };
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.with_context(|| format!("sslrootcert {path}: not a PEM certificate file"))?;
        count += 1;
    }
    anyhow::ensure!(count > 0, "sslrootcert {path}: holds no PEM certificate");
    Ok(())
}

/// A connect error, with a certificate failure said in so many words: rustls's own text
/// ("invalid peer certificate: UnknownIssuer") does not say what to fix.
fn explain(e: sqlx::Error, options: &PgConnectOptions, has_root_cert: bool) -> anyhow::Error {
    let mode = match options.get_ssl_mode() {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    };
    let host = options.get_host();
    if let Some(cause) = crate::tls::certificate_error(&e) {
        use rustls::CertificateError as C;
        let fix = match cause {
            C::UnknownIssuer | C::BadSignature if has_root_cert => {
                "; sslrootcert must name the CA that signed the server's certificate"
            }
            C::UnknownIssuer | C::BadSignature => {
                "; set sslrootcert to the CA that signed the server's certificate (the built-in public roots do not \
                 include it)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "; connect by a name the certificate is issued for, or use sslmode=verify-ca"
            }
            _ => "",
        };
        return anyhow::anyhow!(
            "certificate verification failed for the PostgreSQL server {host} (sslmode={mode}): {}: {cause}{fix}",
            crate::tls::certificate_hint(cause)
        );
    }
    match crate::tls::rustls_error(&e) {
        Some(tls) => anyhow::anyhow!("TLS with the PostgreSQL server {host} failed (sslmode={mode}): {tls}"),
        None => anyhow::Error::new(e),
    }
}

/// Applies the embedded migrations, after making sure the schema is not newer than they are.
///
/// sqlx alone would fail a newer schema with "migration 6 was previously applied but is missing
/// in the resolved migrations"; this names both versions and what to do.
pub(super) async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let migrator = sqlx::migrate!("./migrations/postgres");
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let mut conn = pool.acquire().await.context("connecting to migrate")?;
    // Waiting for another node's migration (sqlx's advisory lock) and a long DDL statement must
    // not be cut short by `[postgres] statement_timeout`; RESET restores the connection's own.
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    let mut outcome = match newest_applied(&mut conn).await? {
        Some(found) if found > known => Err(too_new(found, known)),
        _ => migrator.run(&mut *conn).await.map_err(anyhow::Error::new),
    };
    if let Err(e) = &outcome
        && matches!(e.downcast_ref(), Some(sqlx::migrate::MigrateError::VersionMissing(_)))
        && let Ok(Some(found)) = newest_applied(&mut conn).await
        && found > known
    {
        // A newer node migrated between the check and the run.
        outcome = Err(too_new(found, known));
    }
    if outcome.is_ok() {
        sqlx::query("RESET statement_timeout").execute(&mut *conn).await?;
    } else {
        // The migrator's advisory lock may still be held: the connection must not be reused.
        let _ = conn.detach();
    }
    outcome
}

fn too_new(found: i64, known: i64) -> anyhow::Error {
    anyhow::anyhow!(
        "the database schema is at version {found}, newer than this batchd knows (up to {known}): a newer \
         batchd has upgraded it. Run that version or a later one here; migrations are never undone \
         (docs/postgres.md, Upgrades)"
    )
}

/// The newest migration recorded, if sqlx's table exists yet.
async fn newest_applied(conn: &mut PgConnection) -> anyhow::Result<Option<i64>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(None);
    }
    Ok(sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations").fetch_one(&mut *conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_certificate_is_read_from_the_url() {
        assert_eq!(
            root_cert_of("postgres://h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").as_deref(),
            Some("/etc/ca.pem")
        );
        assert_eq!(root_cert_of("postgres://h/db?ssl-root-cert=/a.pem#x").as_deref(), Some("/a.pem"));
    }

    #[test]
    fn require_with_a_root_certificate_verifies_the_chain_as_libpq_does() {
        let cfg = PostgresConfig::default();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap().cert.pem()).unwrap();
        let url = format!("postgres://h/db?sslmode=require&sslrootcert={}", ca.display());
        assert!(matches!(options(&url, &cfg).unwrap().get_ssl_mode(), PgSslMode::VerifyCa));
        assert!(matches!(options("postgres://h/db?sslmode=require", &cfg).unwrap().get_ssl_mode(), PgSslMode::Require));
        for (url, says) in [
            ("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "cannot be read"),
            (&format!("postgres://h/db?sslmode=verify-ca&sslrootcert={}", dir.path().display()), "cannot be read"),
            ("postgres://h/db?sslmode=verify-full&sslrootcert=system", "not supported"),
            ("postgres://h/db?sslmode=verify-everything", "ssl_mode"),
        ] {
            let e = format!("{:#}", options(url, &cfg).unwrap_err());
            assert!(e.contains(says), "{url}: {e}");
        }
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = options(&format!("postgres://h/db?sslmode=verify-full&sslrootcert={}", empty.display()), &cfg);
        assert!(format!("{:#}", e.unwrap_err()).contains("holds no PEM certificate"));
    }

    #[test]
    fn the_statement_timeout_goes_into_the_startup_options() {
        let cfg =
            PostgresConfig { statement_timeout: Some(std::time::Duration::from_millis(1500)), ..Default::default() };
        let o = options("postgres://h/db", &cfg).unwrap();
        let startup = o.get_options().unwrap_or_default();
        assert!(startup.contains("statement_timeout=1500"), "{startup}");
        assert!(startup.contains("synchronous_commit=on"), "{startup}");
        let none = options("postgres://h/db", &PostgresConfig::default()).unwrap();
        assert!(!none.get_options().unwrap_or_default().contains("statement_timeout"));
    }
}
