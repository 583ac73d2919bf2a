//! The official TypeScript client `@superoffice/webapi` (pinned in tests/compat/package.json)
//! drives every BatchAgent method against a real server. The test installs the client with
//! `npm ci` when it is missing; without node or the npm registry it skips loudly, unless
//! BATCHD_REQUIRE_COMPAT=1 (CI), which makes that a failure.

use std::path::Path;
use std::process::Command;

use crate::helpers::{ADMIN, ADMIN_PASSWORD, TestApp};

#[tokio::test]
async fn official_client_batch_agent_works_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    if !dir.join("node_modules/@superoffice/webapi").exists() {
        // One test binary runs this once; install the pinned client from the lock file.
        let _ = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).status();
    }
    if !dir.join("node_modules/@superoffice/webapi").exists() {
        let msg = "SKIPPED: official client could not be installed (`npm ci --prefix tests/compat` failed)";
        if std::env::var("BATCHD_REQUIRE_COMPAT").is_ok_and(|v| v == "1") {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!!!! {msg}\n");
        return;
    }
    let app = TestApp::spawn().await;
    let out = tokio::process::Command::from({
        let mut c = Command::new("node");
        c.arg("batch_agent.mjs")
            .current_dir(&dir)
            .env("BATCHD_URL", &app.base)
            .env("BATCHD_USER", ADMIN)
            .env("BATCHD_PASSWORD", ADMIN_PASSWORD)
            .env("NO_PROXY", "*");
        c
    })
    .output()
    .await
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the official client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok "), "{stdout}");
}
