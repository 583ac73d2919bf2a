//! Upgrades: a node that finds the schema newer than its own migrations refuses to start, and
//! says which version it found and which it knows, on both engines.

use batchd::store::postgres::PostgresStore;

use crate::pg::TestPg;

/// The newest migration this build carries for `engine` (`sqlite` or `postgres`).
fn newest_known(engine: &str) -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(engine);
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.split('_').next()?.parse::<i64>().ok())
        .max()
        .unwrap()
}

fn assert_names_both(e: &str, found: i64, known: i64) {
    assert!(
        e.contains(&format!("schema is at version {found}")) && e.contains(&format!("knows (up to {known})")),
        "{e}"
    );
}

#[tokio::test]
async fn sqlite_refuses_a_schema_newer_than_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    let url = format!("sqlite:{}", path.display());
    drop(batchd::store::open(&url).await.expect("a fresh database migrates"));
    drop(batchd::store::open(&url).await.expect("and opens again"));
    let known = newest_known("sqlite");
    let future = known + 1;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("INSERT INTO _batchd_migrations (version, applied) VALUES (?, 0)", [future]).unwrap();
    drop(conn);
    let e = match batchd::store::open(&url).await {
        Ok(_) => panic!("a newer schema must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert_names_both(&e, future, known);

    // The binary exits non-zero with the same words.
    let out = std::process::Command::new(crate::process::batchd_bin())
        .args(["serve", "--database", &url, "--listen", "127.0.0.1:0"])
        .env_remove("BATCHD_CONFIG")
        .env_remove("BATCHD_DATABASE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_names_both(&String::from_utf8_lossy(&out.stderr), future, known);
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_it_knows() {
    let Some(db) = TestPg::create("upgrade::postgres_refuses_a_schema_newer_than_it_knows").await else { return };
    let store = PostgresStore::open(&db.url).await.expect("a fresh database migrates");
    store.pool().close().await;
    let known = newest_known("postgres");
    let future = known + 1;
    let mut conn = db.connect().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer batchd', true, '\\x00', 0)",
    )
    .bind(future)
    .execute(&mut conn)
    .await
    .unwrap();
    let e = match batchd::store::open(&db.url).await {
        Ok(_) => panic!("a newer schema must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert_names_both(&e, future, known);
    // No migration lock is left held for the nodes that do know the schema.
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(held, 0);
}
