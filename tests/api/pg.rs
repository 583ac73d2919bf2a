//! A fresh PostgreSQL database per test, on the server `BATCHD_TEST_PG` names
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Unset: PostgreSQL tests print a loud SKIPPED line and pass. `BATCHD_REQUIRE_PG=1` (CI) turns
//! an unset variable or an unreachable server into a failure, so a green run there means the
//! PostgreSQL tests really ran.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub struct TestPg {
    /// URL of the fresh database, for `store::open` or `Config::database`.
    pub url: String,
    server_url: String,
    name: String,
}

fn required() -> bool {
    std::env::var("BATCHD_REQUIRE_PG").is_ok_and(|v| v == "1")
}

fn skip(test: &str, why: &str) -> Option<TestPg> {
    if required() {
        panic!("BATCHD_REQUIRE_PG=1 but {why}: PostgreSQL test {test} cannot run");
    }
    // Straight to stderr: libtest captures `eprintln!` of passing tests, and this must be seen.
    let line =
        format!("\n**** SKIPPED {test}: {why} (set BATCHD_TEST_PG=postgres://user@host:port/db to run it) ****\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

/// `postgres://u@h:p/db?x=y` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

impl TestPg {
    /// Creates `batchd_test_<random>`; `None` (after a SKIPPED line) when no server is configured.
    pub async fn create(test: &str) -> Option<TestPg> {
        let Ok(server_url) = std::env::var("BATCHD_TEST_PG") else {
            return skip(test, "BATCHD_TEST_PG is not set");
        };
        let connect = tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(&server_url)).await;
        let mut conn = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return skip(test, &format!("PostgreSQL at {server_url} is unreachable ({e})")),
            Err(_) => return skip(test, &format!("PostgreSQL at {server_url} did not answer in 15 s")),
        };
        let name = format!("batchd_test_{:016x}", rand::random::<u64>());
        // The name is ours (hex digits), never input.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        Some(TestPg { url: with_database(&server_url, &name), server_url, name })
    }

    /// A plain connection to the test database, to look at rows the Store API does not show.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect to the test database")
    }
}

impl Drop for TestPg {
    /// Drops the database even when the test panicked. `WITH (FORCE)` ends the store's pooled
    /// connections; a thread of its own because the test's runtime may be shutting down.
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let mut conn = PgConnection::connect(&server_url).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

#[test]
fn database_is_replaced_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(with_database("postgresql://u:p@h/db?sslmode=disable", "x"), "postgresql://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
}
