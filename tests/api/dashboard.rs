//! The dashboard: its pages and assets (types, security headers, caching, 404s), the stats
//! endpoint behind its charts, and the whole page driven in chromium (tests/dashboard/).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use batchd::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, ADMIN_PASSWORD, TestApp, assert_error};
use crate::runner::{spawn_runner, wait_state};

const PAGES: &[&str] = &["/", "/login", "/tasks", "/tasks/7", "/definitions", "/nodes", "/tasks?state=New&name=x"];

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn assert_secured(res: &reqwest::Response, what: &str) {
    let csp = header(res, "content-security-policy");
    for part in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
        assert!(csp.contains(part), "{what}: CSP {csp:?} lacks {part:?}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(header(res, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(res, "x-frame-options"), "DENY", "{what}");
}

/// The asset URL the page names for `file` (`/ui/<version>/<file>`).
fn asset_url(page: &str, file: &str) -> String {
    let end = page.find(&format!("/{file}\"")).unwrap_or_else(|| panic!("the page names {file}"));
    let start = page[..end].rfind("\"/ui/").expect("under /ui/") + 1;
    page[start..end + file.len() + 1].to_owned()
}

#[tokio::test]
async fn dashboard_pages_are_html_with_a_strict_policy_and_no_inline_script() {
    let app = TestApp::spawn().await;
    for path in PAGES {
        // No credentials: the page holds no data; its script asks the API, which needs them.
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8", "{path}");
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}: the page always names the current assets");
        assert_secured(&res, path);
        let body = res.text().await.unwrap();
        assert!(body.contains("name=\"UserName\"") && body.contains("name=\"Password\""), "{path}: the login form");
        for (i, _) in body.match_indices("<script") {
            let tag = &body[i..i + body[i..].find('>').unwrap()];
            assert!(tag.contains(" src=\"/ui/"), "{path}: only scripts from this server, none inline: {tag}");
        }
        assert!(!body.contains(" style=") && !body.contains("<style"), "{path}: no inline style");
        assert!(!body.contains("{{version}}"), "{path}: the version is filled in");
    }
}

#[tokio::test]
async fn dashboard_assets_are_versioned_cached_and_self_contained() {
    let app = TestApp::spawn().await;
    let page = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    for (file, kind) in [("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")] {
        let url = asset_url(&page, file);
        let res = app.client.get(app.url(&url)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{url}");
        assert!(header(&res, "content-type").starts_with(kind), "{url}: {}", header(&res, "content-type"));
        assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable", "{url}");
        assert_secured(&res, &url);
        let text = res.text().await.unwrap();
        // Nothing is fetched from elsewhere (the SVG namespace is a name, not a request).
        let outside = text.replace("http://www.w3.org/2000/svg", "");
        assert!(!outside.contains("http://") && !outside.contains("https://"), "{url} names another origin");
        assert!(!text.contains("@import"), "{url}");
        if file == "app.js" {
            for risky in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
                assert!(!text.contains(risky), "the script builds the DOM without {risky}");
            }
            assert!(text.contains("textContent") && text.contains("createElement"));
        }
        // Another version, or a name that is not an asset: the usual 404.
        let other = url.replace("/ui/", "/ui/0");
        let res = app.get(&other).await;
        assert_error(res, 404, "SoNotFoundException", "No endpoint").await;
    }
    let version = asset_url(&page, "app.js").split('/').nth(2).unwrap().to_owned();
    assert_eq!(version.len(), 16, "a 64-bit hash of the assets: {version}");
    for path in [format!("/ui/{version}/nothing.js"), format!("/ui/{version}/../app.js"), "/ui/app.js".into()] {
        let res = app.get(&path).await;
        assert_eq!(res.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn dashboard_paths_that_are_not_pages_are_404() {
    let app = TestApp::spawn().await;
    for path in ["/tasks/abc", "/tasks/7/x", "/tasks/99999999999", "/dashboard", "/nodes/1", "/index.html"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(res, 404, "SoNotFoundException", "No endpoint").await;
    }
    let res = app.client.post(app.url("/tasks")).send().await.unwrap();
    assert_eq!(res.status(), 405, "the pages are GET only");
    let res = app.client.head(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200, "HEAD like GET");
}

/// A page's script (it sends `X-Requested-With`) gets a challenge the browser does not answer
/// with its own password dialog; every other client still gets Basic.
#[tokio::test]
async fn a_scripts_401_does_not_challenge_for_basic() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/api/v1/Session")).header("X-Requested-With", "batchd-dashboard").send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "www-authenticate"), "Session realm=\"batchd\"");
    let res = app.client.get(app.url("/api/v1/Session")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(header(&res, "www-authenticate").starts_with("Basic "), "{}", header(&res, "www-authenticate"));
}

fn sum_finished(stats: &Value, state: &str) -> i64 {
    stats["Finished"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["State"] == state)
        .map(|m| m["Count"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn stats_count_the_callers_tasks_by_state_and_finished_minute() {
    let app = spawn_runner("").await;
    let ann = app.add_associate("ann", Role::User).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(app.create(&json!({"Name": "Noop"})).await);
    }
    let long = app.create(&json!({"Name": "Sleep", "ParameterObject": {"Seconds": "600"}})).await;
    wait_state(&app, long, "Started").await;
    let res = app.request(Method::POST, &format!("/api/v1/BatchTask/{long}/Stop")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let own = app.as_user(&ann).create(&json!({"Name": "Noop"})).await;
    let waiting = app.create(&json!({"Name": "NobodyRunsThis"})).await;
    for id in ids.iter().chain([&own]) {
        wait_state(&app, *id, "Succeeded").await;
    }
    wait_state(&app, long, "Failed").await;

    let res = app.get("/api/v1/Stats").await;
    assert_eq!(res.status(), 200);
    let all: Value = res.json().await.unwrap();
    assert_eq!(all["Minutes"], 60, "the last hour unless asked");
    assert_eq!(all["States"]["Succeeded"], 3, "{all}");
    assert_eq!(all["States"]["Failed"], 1, "{all}");
    assert_eq!(all["States"]["New"], 1, "task {waiting} waits");
    assert_eq!(all["States"]["Started"], 0, "every state is named, zeros too");
    assert_eq!((sum_finished(&all, "Succeeded"), sum_finished(&all, "Failed")), (3, 1), "{all}");
    let failed = all["Finished"].as_array().unwrap().iter().find(|m| m["State"] == "Failed").unwrap();
    assert_eq!(failed["Started"], 1);
    assert!(failed["RunMsMax"].as_i64().unwrap() > 0, "the stopped task ran a while: {failed}");
    let since = chrono::DateTime::parse_from_rfc3339(all["Since"].as_str().unwrap()).unwrap();
    let back = chrono::Utc::now().signed_duration_since(since);
    assert!(back <= chrono::Duration::minutes(60) && back > chrono::Duration::minutes(59), "{since}");
    assert_eq!(since.timestamp() % 60, 0, "windows start on the minute");

    // A user sees the figures of its own tasks only.
    let mine: Value = app.as_user(&ann).get("/api/v1/Stats?minutes=5").await.json().await.unwrap();
    assert_eq!(mine["Minutes"], 5);
    assert_eq!((mine["States"]["Succeeded"].as_i64(), mine["States"]["Failed"].as_i64()), (Some(1), Some(0)), "{mine}");
    assert_eq!(mine["States"]["New"], 0, "the admin's waiting task is not counted");
    assert_eq!((sum_finished(&mine, "Succeeded"), sum_finished(&mine, "Failed")), (1, 0));

    let xml = app.get("/api/v1/Stats?minutes=10&$format=xml").await;
    assert!(header(&xml, "content-type").starts_with("application/xml"));
    let text = xml.text().await.unwrap();
    assert!(text.contains("<Stats") && text.contains("<State>Succeeded</State><Count>3</Count>"), "{text}");

    for bad in ["0", "1441", "-1", "abc", "99999999999"] {
        let res = app.get(&format!("/api/v1/Stats?minutes={bad}")).await;
        assert_error(res, 400, "ArgumentException", "minutes").await;
    }
    let res = app.client.get(app.url("/api/v1/Stats")).send().await.unwrap();
    assert_eq!(res.status(), 401, "credentials needed");
}

/// Debian's chromium at this path, or none.
fn chromium() -> Option<String> {
    let path = std::env::var("BATCHD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    Path::new(&path).exists().then_some(path)
}

fn skip_or_fail(msg: &str) {
    if std::env::var("BATCHD_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!!!! SKIPPED: {msg}\n");
}

/// tests/dashboard/dashboard.mjs in chromium against a live server: login, live list, progress,
/// stop with the warning, stderr tail, start from a definition, bulk delete, rights, session
/// expiry, and that no request leaves the server's origin. Screenshots go to target/screenshots.
#[tokio::test]
async fn dashboard_works_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
    if !dir.join("node_modules/playwright-core").exists() {
        let _ = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&dir)
            .status();
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return skip_or_fail("playwright-core could not be installed (`npm ci --prefix tests/dashboard` failed)");
    }
    let Some(browser) = chromium() else {
        return skip_or_fail("no chromium at /usr/bin/chromium (apt-get install -y chromium, or set BATCHD_CHROMIUM)");
    };
    let app = spawn_runner(
        r#"
[[definition]]
name = "Careful"
runner = "sleep"
cancellation = "CancelWithWarning"

[[definition]]
name = "Broken"
runner = "command"
command = ["/bin/sh", "-c", "echo progress: 50 halfway; echo disk on fire >&2; exit 3"]
"#,
    )
    .await;
    let (user, password) = app.add_associate("ann", Role::User).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("dashboard.mjs")
        .current_dir(&dir)
        .env("BATCHD_URL", &app.base)
        .env("BATCHD_ADMIN", ADMIN)
        .env("BATCHD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BATCHD_USER", &user)
        .env("BATCHD_USER_PASSWORD", &password)
        .env("CHROMIUM", &browser)
        .env("SCREENSHOTS", &shots)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("NO_PROXY", "*")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the browser test ends within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the dashboard test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok ") && stdout.contains("all to"), "{stdout}");
    for shot in ["login", "tasks", "task", "definitions", "nodes"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "screenshot {shot}");
    }
}
