//! Identity and access: every credential type, each way it can fail, the CLI beside a
//! running server, throttling, timing, app tokens, CORS.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use batchd::domain::Role;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::helpers::{ADMIN, ADMIN_PASSWORD, TestApp, assert_error};

const TASKS: &str = "/api/v1/BatchTask/All";

fn with_auth(app: &TestApp, method: Method, path: &str, authorization: &str) -> RequestBuilder {
    app.client.request(method, app.url(path)).header("Authorization", authorization)
}

async fn get_with(app: &TestApp, authorization: &str) -> Response {
    with_auth(app, Method::GET, TASKS, authorization).send().await.unwrap()
}

/// Logs in with Basic and answers the ticket.
async fn ticket_for(app: &TestApp, name: &str, password: &str) -> String {
    let res = app.client.post(app.url("/api/v1/Ticket")).basic_auth(name, Some(password)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["Ticket"].as_str().unwrap().to_owned()
}

/// Creates an API token over REST as the admin.
async fn token_for(app: &TestApp, body: Value) -> (i64, String) {
    let res = app.post_json("/api/v1/Token", &body).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    (body["TokenId"].as_i64().unwrap(), body["Token"].as_str().unwrap().to_owned())
}

/// Polls until `check` holds, or fails after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the real binary against the test's database, beside the running server.
fn cli(app: &TestApp, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(args)
        .env("BATCHD_DATABASE", format!("sqlite:{}", app.db_path.display()))
        .env_remove("BATCHD_CONFIG")
        .env("BATCHD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run batchd");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "batchd {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file of the database (main and WAL) as bytes: secrets must not be in any of them.
fn database_bytes(app: &TestApp) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.db_path.display());
        if let Ok(b) = std::fs::read(&path) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Missing, malformed, wrong scheme

#[tokio::test]
async fn missing_malformed_and_unknown_schemes_are_401_without_echoing_the_value() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url(TASKS)).send().await.unwrap();
    assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"SuperOffice Username or Ticket\"");
    assert_error(res, 401, "SoAuthenticationException", "Basic, SOTicket or Bearer").await;

    for malformed in ["Basic !!!not-base64", "Basic", "Basic YWJj", "SOTicket", "SOTicket    ", "Bearer", "Bearer "] {
        let res = get_with(&app, malformed).await;
        let body = assert_error(res, 401, "SoAuthenticationException", "").await;
        assert!(!body.to_string().contains("YWJj"), "{body}");
    }
    for wrong in ["Digest username=\"admin\"", "Negotiate abc", "mysecretvalue"] {
        let res = get_with(&app, wrong).await;
        let body = assert_error(res, 401, "SoAuthenticationException", "not supported").await;
        assert!(!body.to_string().contains("mysecretvalue") && !body.to_string().contains("abc"), "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// SOTicket

#[tokio::test]
async fn a_ticket_from_basic_credentials_authenticates_with_any_scheme_case_and_is_stored_hashed() {
    let app = TestApp::spawn().await;
    let res = app.client.post(app.url("/api/v1/ticket")).basic_auth(ADMIN, Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let ticket = body["Ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("7T:"), "{ticket}");
    assert_eq!(body["Associate"], ADMIN);
    assert_eq!(body["Role"], "admin");
    let expires = chrono::DateTime::parse_from_rfc3339(body["Expires"].as_str().unwrap()).unwrap();
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((7.9..=8.0).contains(&hours), "default lifetime 8 h, got {hours}");

    for scheme in ["SOTicket", "SoTicket", "soticket", "SOTICKET"] {
        let res = get_with(&app, &format!("{scheme} {ticket}")).await;
        assert_eq!(res.status(), 200, "{scheme}");
    }
    // Who it is, and how.
    let me: Value = with_auth(&app, Method::GET, "/api/v1/Session", &format!("SOTicket {ticket}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["Authentication"], "SOTicket");
    assert_eq!(me["Associate"], ADMIN);

    // The same login through a JSON body, and the agent-style alias.
    let res = app
        .client
        .post(app.url("/api/v1/Ticket"))
        .json(&json!({"UserName": ADMIN, "Password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .post(app.url("/api/v1/Agents/SoPrincipal/AuthenticateUsernamePassword"))
        .json(&json!({"userName": ADMIN, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["AuthenticationSucceeded"], true);
    let t2 = body["Credentials"]["Ticket"].as_str().unwrap();
    assert_eq!(get_with(&app, &format!("SOTicket {t2}")).await.status(), 200);
    let res = app
        .client
        .post(app.url("/api/v1/Agents/SoPrincipal/AuthenticateUsernamePassword"))
        .json(&json!({"UserName": ADMIN, "Password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["AuthenticationSucceeded"], false);

    // Only hashes reach the database.
    let bytes = database_bytes(&app);
    assert!(!contains(&bytes, &ticket) && !contains(&bytes, &ticket[3..]), "the ticket text is stored");
    assert!(contains(&bytes, &batchd::identity::hash_secret(&ticket)), "its hash is");
}

#[tokio::test]
async fn a_wrong_or_unknown_ticket_is_401_and_the_error_does_not_echo_it() {
    let app = TestApp::spawn().await;
    let fake = "7T:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let body =
        assert_error(get_with(&app, &format!("SOTicket {fake}")).await, 401, "SoAuthenticationException", "").await;
    assert!(!body.to_string().contains("AAAAAAAA"), "{body}");
    // Basic credentials for a ticket must be right.
    let res = app.client.post(app.url("/api/v1/Ticket")).basic_auth(ADMIN, Some("nope")).send().await.unwrap();
    assert_error(res, 401, "SoAuthenticationException", "").await;
    // And only Basic (or a body) buys a ticket.
    let res = app.client.post(app.url("/api/v1/Ticket")).bearer_auth("x").send().await.unwrap();
    assert_error(res, 401, "SoAuthenticationException", "").await;
}

#[tokio::test]
async fn an_expired_ticket_is_401_saying_so() {
    let app = TestApp::spawn_with(|c| c.access.ticket_lifetime = Duration::from_secs(1)).await;
    let ticket = ticket_for(&app, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(get_with(&app, &format!("SOTicket {ticket}")).await.status(), 200);
    eventually(Duration::from_secs(10), "the ticket expires", || async {
        get_with(&app, &format!("SOTicket {ticket}")).await.status() == 401
    })
    .await;
    assert_error(get_with(&app, &format!("SOTicket {ticket}")).await, 401, "SoAuthenticationException", "expired")
        .await;
}

#[tokio::test]
async fn logout_revokes_the_ticket_at_once() {
    let app = TestApp::spawn().await;
    let ticket = ticket_for(&app, ADMIN, ADMIN_PASSWORD).await;
    let other = ticket_for(&app, ADMIN, ADMIN_PASSWORD).await;
    let auth = format!("SOTicket {ticket}");
    assert_eq!(get_with(&app, &auth).await.status(), 200, "cached now");
    let res = with_auth(&app, Method::DELETE, "/api/v1/Ticket", &auth).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_error(get_with(&app, &auth).await, 401, "SoAuthenticationException", "").await;
    assert_eq!(get_with(&app, &format!("SOTicket {other}")).await.status(), 200, "only that ticket ended");
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens

#[tokio::test]
async fn bearer_tokens_enforce_their_scope() {
    let app = TestApp::spawn().await;
    let own = app.create(&json!({"Name": "mine"})).await;
    let (_, read) = token_for(&app, json!({"Scope": "read", "Name": "monitor"})).await;
    let read = format!("Bearer {read}");

    // read: GETs and the read-only agents, with TableRight saying so.
    assert_eq!(get_with(&app, &read).await.status(), 200);
    let t: Value = with_auth(&app, Method::GET, &format!("/api/v1/BatchTask/{own}"), &read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["TableRight"]["Mask"], "Select");
    assert!(t["FieldProperties"].as_object().unwrap().values().all(|f| f["FieldRight"]["Mask"] == "Read"));
    let res = with_auth(&app, Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo", &read)
        .json(&json!({"Id": own}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["Id"], own);
    for (method, path, body) in [
        (Method::POST, "/api/v1/BatchTask".to_owned(), json!({"Name": "x"})),
        (Method::PUT, format!("/api/v1/BatchTask/{own}"), json!({"Description": "x"})),
        (Method::DELETE, format!("/api/v1/BatchTask/{own}"), json!(null)),
        (Method::POST, format!("/api/v1/BatchTask/{own}/Stop"), json!(null)),
        (Method::POST, "/api/v1/Agents/Batch/StartBatchJob".to_owned(), json!({"BatchTaskInfo": {"Name": "x"}})),
        (Method::POST, "/api/v1/Agents/Batch/DeleteBatchTask".to_owned(), json!({"BatchTaskId": own})),
        (Method::POST, "/api/v1/Associate".to_owned(), json!({"Name": "x", "Password": "y"})),
    ] {
        let res = with_auth(&app, method.clone(), &path, &read).json(&body).send().await.unwrap();
        assert_error(res, 403, "SoAccessDeniedException", "read").await;
    }
    assert_eq!(app.task(own).await["Description"], Value::Null, "nothing changed");

    // write (an admin's): acts as a plain user: own tasks only, no associate management.
    let (_, write) = token_for(&app, json!({"Scope": "write"})).await;
    let write = format!("Bearer {write}");
    let user = app.add_associate("olga", Role::User).await;
    let hers = app.as_user(&user).create(&json!({"Name": "hers"})).await;
    let res = with_auth(&app, Method::GET, &format!("/api/v1/BatchTask/{hers}"), &write).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = with_auth(&app, Method::PUT, &format!("/api/v1/BatchTask/{own}"), &write)
        .json(&json!({"Description": "by token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = with_auth(&app, Method::GET, "/api/v1/Associate", &write).send().await.unwrap();
    assert_error(res, 403, "SoAccessDeniedException", "").await;
    let res =
        with_auth(&app, Method::POST, "/api/v1/Token", &write).json(&json!({"Scope": "admin"})).send().await.unwrap();
    assert_error(res, 403, "SoAccessDeniedException", "").await;

    // admin scope keeps the admin's rights.
    let (_, admin) = token_for(&app, json!({"Scope": "admin"})).await;
    let res = with_auth(&app, Method::GET, &format!("/api/v1/BatchTask/{hers}"), &format!("Bearer {admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A scope wider than the associate's role cannot be made.
    let res = app.as_user(&user).send_json(Method::POST, "/api/v1/Token", &json!({"Scope": "worker"})).await;
    assert_error(res, 400, "ArgumentException", "worker").await;
    let res = app.post_json("/api/v1/Token", &json!({"Scope": "everything"})).await;
    assert_error(res, 400, "ArgumentException", "Scope").await;
    let res = app.post_json("/api/v1/Token", &json!({"Scope": "read", "Expires": "soon"})).await;
    assert_error(res, 400, "ArgumentException", "Expires").await;
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_401_and_only_hashes_are_stored() {
    let app = TestApp::spawn().await;
    let (id, token) = token_for(&app, json!({"Scope": "read", "Name": "ci"})).await;
    let auth = format!("Bearer {token}");
    assert_eq!(get_with(&app, &auth).await.status(), 200);
    let listed: Value = app.get("/api/v1/Token").await.json().await.unwrap();
    assert_eq!(listed[0]["TokenId"], id);
    assert_eq!(listed[0]["Scope"], "read");
    assert!(!listed.to_string().contains(&token[7..]), "the list never shows the secret");
    assert!(!contains(&database_bytes(&app), &token));

    let res = app.request(Method::DELETE, &format!("/api/v1/Token/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_error(get_with(&app, &auth).await, 401, "SoAuthenticationException", "").await;
    let res = app.request(Method::DELETE, &format!("/api/v1/Token/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 404, "already revoked");

    let (_, short) = token_for(&app, json!({"Scope": "read", "Expires": "1s"})).await;
    let short = format!("Bearer {short}");
    assert_eq!(get_with(&app, &short).await.status(), 200);
    eventually(Duration::from_secs(10), "the token expires", || async { get_with(&app, &short).await.status() == 401 })
        .await;
    assert_error(get_with(&app, &short).await, 401, "SoAuthenticationException", "expired").await;

    // Users see and revoke only their own tokens.
    let user = app.add_associate("ulla", Role::User).await;
    let res = app.as_user(&user).send_json(Method::POST, "/api/v1/Token", &json!({"Scope": "read"})).await;
    assert_eq!(res.status(), 201);
    let mine: Value = app.as_user(&user).get("/api/v1/Token").await.json().await.unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let res = app.as_user(&user).request(Method::DELETE, &format!("/api/v1/Token/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 404, "the admin's token is not hers");
}

// ---------------------------------------------------------------------------------------------
// Browser sessions

struct Session {
    cookie: String,
    xsrf: String,
}

async fn login(app: &TestApp, name: &str, password: &str) -> (Response, Option<Session>) {
    let res = app
        .client
        .post(app.url("/api/v1/Session"))
        .form(&[("UserName", name), ("Password", password)])
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> =
        res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let find = |n: &str| cookies.iter().find(|c| c.starts_with(&format!("{n}="))).cloned();
    let session = match (find("batchd_session"), find("XSRF-TOKEN")) {
        (Some(s), Some(x)) => {
            assert!(s.contains("HttpOnly") && s.contains("SameSite=Strict"), "{s}");
            assert!(!x.contains("HttpOnly"), "page scripts must read XSRF-TOKEN: {x}");
            let value = |c: &str| c.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
            Some(Session { cookie: format!("batchd_session={}; XSRF-TOKEN={}", value(&s), value(&x)), xsrf: value(&x) })
        }
        _ => None,
    };
    (res, session)
}

#[tokio::test]
async fn a_browser_session_needs_the_xsrf_header_on_every_change() {
    let app = TestApp::spawn().await;
    let (res, s) = login(&app, ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 200);
    let s = s.expect("both cookies set");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["XsrfToken"], s.xsrf.as_str());
    let with_cookie = |m: Method, p: &str| app.client.request(m, app.url(p)).header("Cookie", &s.cookie);

    assert_eq!(with_cookie(Method::GET, TASKS).send().await.unwrap().status(), 200, "reads need no XSRF header");
    let res = with_cookie(Method::POST, "/api/v1/BatchTask").json(&json!({"Name": "x"})).send().await.unwrap();
    assert_error(res, 401, "SoAuthenticationException", "X-XSRF-TOKEN").await;
    let res = with_cookie(Method::POST, "/api/v1/BatchTask")
        .header("X-XSRF-TOKEN", format!("{}x", s.xsrf))
        .json(&json!({"Name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "SoAuthenticationException", "X-XSRF-TOKEN").await;
    let res = with_cookie(Method::POST, "/api/v1/BatchTask")
        .header("X-XSRF-TOKEN", &s.xsrf)
        .json(&json!({"Name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id: i64 = res.json().await.unwrap();
    for (m, p) in
        [(Method::PUT, format!("/api/v1/BatchTask/{id}")), (Method::DELETE, format!("/api/v1/BatchTask/{id}"))]
    {
        let res = with_cookie(m, &p).json(&json!({"Description": "d"})).send().await.unwrap();
        assert_eq!(res.status(), 401, "{p} without XSRF");
    }
    let res = with_cookie(Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo")
        .json(&json!({"Id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "agents are POSTs: they need the header too");

    // A forged XSRF-TOKEN cookie does not help: the header must match the session's token.
    let res = app
        .client
        .post(app.url("/api/v1/BatchTask"))
        .header("Cookie", format!("{}; XSRF-TOKEN=forged", s.cookie.split(';').next().unwrap()))
        .header("X-XSRF-TOKEN", "forged")
        .json(&json!({"Name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // With an Authorization header, the cookie is not consulted.
    let res = with_cookie(Method::GET, TASKS).header("Authorization", "Basic YWRtaW46d3Jvbmc=").send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Logout ends it.
    let res = with_cookie(Method::DELETE, "/api/v1/Session").header("X-XSRF-TOKEN", &s.xsrf).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().contains("Max-Age=0")));
    assert_eq!(with_cookie(Method::GET, TASKS).send().await.unwrap().status(), 401);

    // Wrong password: no cookies.
    let (res, s) = login(&app, ADMIN, "nope").await;
    assert!(s.is_none());
    assert_error(res, 401, "SoAuthenticationException", "").await;
}

#[tokio::test]
async fn an_expired_session_is_401_saying_so() {
    let app = TestApp::spawn_with(|c| c.access.session_lifetime = Duration::from_secs(1)).await;
    let (_, s) = login(&app, ADMIN, ADMIN_PASSWORD).await;
    let s = s.unwrap();
    let get = || app.client.get(app.url(TASKS)).header("Cookie", &s.cookie).send();
    assert_eq!(get().await.unwrap().status(), 200);
    eventually(Duration::from_secs(10), "the session expires", || async { get().await.unwrap().status() == 401 }).await;
    assert_error(get().await.unwrap(), 401, "SoAuthenticationException", "expired").await;
}

#[tokio::test]
async fn a_form_login_with_next_redirects_only_to_local_paths() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (next, want) in [("/dashboard", Some("/dashboard")), ("//evil.example", None), ("https://evil.example", None)] {
        let res = client
            .post(app.url("/api/v1/Session"))
            .form(&[("username", ADMIN), ("password", ADMIN_PASSWORD), ("next", next)])
            .send()
            .await
            .unwrap();
        match want {
            Some(to) => {
                assert_eq!(res.status(), 303);
                assert_eq!(res.headers()["location"], to);
            }
            None => assert_eq!(res.status(), 200, "{next}"),
        }
    }
}

#[tokio::test]
async fn the_login_form_refuses_posts_from_other_sites() {
    let app = TestApp::spawn_with(|c| c.access.cors_origins = vec!["https://app.example.com".into()]).await;
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |headers: Vec<(&'static str, String)>, password: &'static str| {
        let mut req = client.post(app.url("/api/v1/Session")).form(&[("UserName", ADMIN), ("Password", password)]);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let own = app.base.clone();
    let host = own.trim_start_matches("http://").to_owned();
    for foreign in [
        vec![("Origin", "https://evil.example".to_owned())],
        vec![("Origin", "null".to_owned())],
        vec![("Origin", format!("http://{host}.evil.example"))],
        vec![("Origin", format!("https://evil.example/{host}"))],
        vec![("Referer", "https://evil.example/login.html".to_owned())],
        vec![("Referer", "not a url".to_owned())],
        // Origin wins over Referer.
        vec![("Origin", "https://evil.example".to_owned()), ("Referer", format!("{own}/login"))],
    ] {
        let what = format!("{foreign:?}");
        let res = post(foreign, ADMIN_PASSWORD).await.unwrap();
        assert!(res.headers().get("set-cookie").is_none(), "{what}");
        assert_error(res, 403, "SoAccessDeniedException", "another site").await;
    }
    for allowed in [
        vec![("Origin", own.clone())],
        vec![("Origin", own.to_uppercase())],
        vec![("Referer", format!("{own}/login?next=/x"))],
        vec![("Origin", "https://app.example.com".to_owned())],
        vec![],
    ] {
        let what = format!("{allowed:?}");
        let res = post(allowed, ADMIN_PASSWORD).await.unwrap();
        assert_eq!(res.status(), 200, "{what}");
        assert!(res.headers().get("set-cookie").is_some(), "{what}");
    }
    // A foreign form is refused before the password is looked at.
    let res = post(vec![("Origin", "https://evil.example".to_owned())], "wrong").await.unwrap();
    assert_eq!(res.status(), 403);
}

// ---------------------------------------------------------------------------------------------
// SO-AppToken

#[tokio::test]
async fn app_tokens_are_required_for_tickets_and_bearer_when_configured() {
    let app = TestApp::spawn_with(|c| c.access.app_tokens = vec!["app-secret-1".into(), "app-secret-2".into()]).await;
    let ticket = ticket_for(&app, ADMIN, ADMIN_PASSWORD).await;
    let (_, token) = token_for(&app, json!({"Scope": "read"})).await;
    for auth in [format!("SOTicket {ticket}"), format!("Bearer {token}")] {
        let res = get_with(&app, &auth).await;
        assert_error(res, 401, "SoAuthenticationException", "SO-AppToken").await;
        let res =
            with_auth(&app, Method::GET, TASKS, &auth).header("SO-AppToken", "app-secret-3").send().await.unwrap();
        assert_error(res, 401, "SoAuthenticationException", "SO-AppToken").await;
        for good in ["app-secret-1", "app-secret-2"] {
            let res = with_auth(&app, Method::GET, TASKS, &auth).header("SO-AppToken", good).send().await.unwrap();
            assert_eq!(res.status(), 200, "{auth} with {good}");
        }
        // Cached now; still refused without the app token.
        assert_eq!(get_with(&app, &auth).await.status(), 401);
    }
    assert_eq!(app.get(TASKS).await.status(), 200, "Basic needs no app token");
}

// ---------------------------------------------------------------------------------------------
// Associates over REST, and changes taking effect at once

#[tokio::test]
async fn admins_manage_associates_over_rest_and_changes_take_effect_at_once() {
    let app = TestApp::spawn().await;
    let res = app.post_json("/api/v1/Associate", &json!({"Name": "rita", "Password": "pw-1", "Role": "user"})).await;
    assert_eq!(res.status(), 201);
    let rita: Value = res.json().await.unwrap();
    let id = rita["AssociateId"].as_i64().unwrap();
    assert_eq!(rita["Role"], "user");
    assert_eq!(rita["Active"], true);
    let creds = ("rita".to_owned(), "pw-1".to_owned());
    assert_eq!(app.as_user(&creds).get(TASKS).await.status(), 200, "cached now");
    let res = app.as_user(&creds).get("/api/v1/Associate").await;
    assert_error(res, 403, "SoAccessDeniedException", "admin").await;

    // Password change: the cached old password stops working at once, the new one works.
    let res = app.put_json(&format!("/api/v1/Associate/{id}"), &json!({"Password": "pw-2"})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.as_user(&creds).get(TASKS).await.status(), 401);
    let creds = ("rita".to_owned(), "pw-2".to_owned());
    assert_eq!(app.as_user(&creds).get(TASKS).await.status(), 200);

    // Role change: effective at once.
    let res = app.put_json(&format!("/api/v1/Associate/{id}"), &json!({"Role": "admin"})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["Role"], "admin");
    assert_eq!(app.as_user(&creds).get("/api/v1/Associate").await.status(), 200);
    let res = app.put_json(&format!("/api/v1/Associate/{id}"), &json!({"Role": "user", "Active": false})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.as_user(&creds).get(TASKS).await.status(), 401, "disabled");

    // Errors name the field.
    assert_error(
        app.post_json("/api/v1/Associate", &json!({"Name": "RITA", "Password": "x"})).await,
        409,
        "SoConflictException",
        "RITA",
    )
    .await;
    assert_error(
        app.post_json("/api/v1/Associate", &json!({"Name": "a:b", "Password": "x"})).await,
        400,
        "ArgumentException",
        "Name",
    )
    .await;
    assert_error(app.post_json("/api/v1/Associate", &json!({"Name": "x"})).await, 400, "ArgumentException", "Password")
        .await;
    assert_error(
        app.post_json("/api/v1/Associate", &json!({"Name": "x", "Password": "p", "Role": "boss"})).await,
        400,
        "ArgumentException",
        "Role",
    )
    .await;
    assert_error(app.get("/api/v1/Associate/9999").await, 404, "SoNotFoundException", "9999").await;

    // The last active admin cannot be demoted, disabled or removed.
    let admin_id = 1;
    for body in [json!({"Role": "user"}), json!({"Active": false})] {
        let res = app.put_json(&format!("/api/v1/Associate/{admin_id}"), &body).await;
        assert_error(res, 409, "SoConflictException", "admin").await;
    }
    let res = app.request(Method::DELETE, &format!("/api/v1/Associate/{admin_id}")).send().await.unwrap();
    assert_error(res, 409, "SoConflictException", "admin").await;

    let res = app.request(Method::DELETE, &format!("/api/v1/Associate/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let list: Value = app.get("/api/v1/Associate").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_cli_manages_associates_and_tokens_beside_a_running_server() {
    let app = TestApp::spawn().await;
    cli(&app, &["associate", "add", "carl", "--role", "user"], Some("first\n"));
    let carl = ("carl".to_owned(), "first".to_owned());
    assert_eq!(app.as_user(&carl).get(TASKS).await.status(), 200, "carl is cached now");
    let ticket = ticket_for(&app, "carl", "first").await;
    assert_eq!(get_with(&app, &format!("SOTicket {ticket}")).await.status(), 200);

    // Token: printed once on stdout, usable, listed, revoked.
    let out = cli(
        &app,
        &["token", "create", "--associate", "carl", "--scope", "read", "--expires", "30d", "--name", "ci"],
        None,
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("batchd_"), "{token}");
    let bearer = format!("Bearer {token}");
    assert_eq!(get_with(&app, &bearer).await.status(), 200);
    let out = cli(&app, &["token", "list", "--associate", "carl"], None);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("carl") && list.contains("read") && list.contains("live") && !list.contains(&token[7..]),
        "{list}"
    );
    let id = list.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    cli(&app, &["token", "revoke", &id], None);
    eventually(Duration::from_secs(5), "the CLI's revocation reaches the server", || async {
        get_with(&app, &bearer).await.status() == 401
    })
    .await;

    // passwd: the old password (cached) and the ticket stop working within the poll bound.
    cli(&app, &["associate", "passwd", "carl"], Some("second\n"));
    eventually(Duration::from_secs(5), "the new password is in force", || async {
        app.as_user(&carl).get(TASKS).await.status() == 401
    })
    .await;
    assert_eq!(get_with(&app, &format!("SOTicket {ticket}")).await.status(), 401, "tickets end with the password");
    let carl = ("carl".to_owned(), "second".to_owned());
    assert_eq!(app.as_user(&carl).get(TASKS).await.status(), 200);

    // set-role: an admin-only endpoint opens, then closes again.
    cli(&app, &["associate", "set-role", "carl", "admin"], None);
    eventually(Duration::from_secs(5), "carl is admin", || async {
        app.as_user(&carl).get("/api/v1/Associate").await.status() == 200
    })
    .await;
    cli(&app, &["associate", "set-role", "carl", "user"], None);
    eventually(Duration::from_secs(5), "carl is a user again", || async {
        app.as_user(&carl).get("/api/v1/Associate").await.status() == 403
    })
    .await;

    // disable, then remove.
    cli(&app, &["associate", "disable", "carl"], None);
    eventually(Duration::from_secs(5), "carl is disabled", || async {
        app.as_user(&carl).get(TASKS).await.status() == 401
    })
    .await;
    let out = cli(&app, &["associate", "list"], None);
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.contains("carl") && l.contains("no")));
    cli(&app, &["associate", "remove", "carl"], None);
    let out = cli(&app, &["associate", "list"], None);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("carl"));

    // The last admin stays.
    let refused = Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(["associate", "remove", ADMIN])
        .env("BATCHD_DATABASE", format!("sqlite:{}", app.db_path.display()))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("last active admin"));
}

// ---------------------------------------------------------------------------------------------
// Abuse: throttling, timing, CORS

#[tokio::test]
async fn failed_logins_are_throttled_per_address_with_retry_after() {
    let app = TestApp::spawn_with(|c| {
        c.access.failed_logins_per_address = 3;
        c.access.failed_logins_per_name = 100;
    })
    .await;
    let user = app.add_associate("tom", Role::User).await;
    assert_eq!(app.get(TASKS).await.status(), 200, "the admin's credentials are cached now");
    for _ in 0..3 {
        let res = app.client.get(app.url(TASKS)).basic_auth("tom", Some("wrong")).send().await.unwrap();
        assert_eq!(res.status(), 401);
    }
    let res = app.client.get(app.url(TASKS)).basic_auth("tom", Some("wrong")).send().await.unwrap();
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_error(res, 429, "TooManyRequestsException", "").await;
    // Right password or not, the address waits: the answer must not say which.
    let res = app.as_user(&user).get(TASKS).await;
    assert_eq!(res.status(), 429);
    let res = app.client.post(app.url("/api/v1/Ticket")).basic_auth("tom", Some("wrong")).send().await.unwrap();
    assert_eq!(res.status(), 429, "the ticket endpoint shares the throttle");
    let (res, _) = login(&app, "tom", "wrong").await;
    assert_eq!(res.status(), 429, "so does the login form");
    // Credentials verified before the throttle started stay cached and keep working.
    assert_eq!(app.get(TASKS).await.status(), 200);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_name_known_or_not() {
    let app = TestApp::spawn_with(|c| {
        c.access.failed_logins_per_address = 1000;
        c.access.failed_logins_per_name = 2;
        c.access.trusted_proxies = vec![batchd::domain::forwarded::IpNet::parse("127.0.0.1").unwrap()];
    })
    .await;
    app.add_associate("ann", Role::User).await;
    let attempt = |name: &'static str, ip: u8| {
        app.client
            .get(app.url(TASKS))
            .basic_auth(name, Some("wrong"))
            .header("X-Forwarded-For", format!("198.51.100.{ip}"))
            .send()
    };
    for (i, name) in ["ann", "nobody"].into_iter().enumerate() {
        let base = (i as u8) * 10;
        assert_eq!(attempt(name, base + 1).await.unwrap().status(), 401);
        assert_eq!(attempt(name, base + 2).await.unwrap().status(), 401);
        let res = attempt(name, base + 3).await.unwrap();
        assert_eq!(res.status(), 429, "{name}: a new address does not reset the name's count");
        assert!(res.headers().contains_key("retry-after"));
    }
    // Other names are not affected.
    assert_eq!(app.get(TASKS).await.status(), 200);
}

/// A client bound to 127.0.0.`last` (all of 127/8 is loopback): a distinct client address.
fn from_address(last: u8) -> reqwest::Client {
    let ip = std::net::IpAddr::from([127, 0, 0, last]);
    reqwest::Client::builder().no_proxy().local_address(ip).build().unwrap()
}

/// The login form from `client`, with `cookie` if given: the status and the device cookie set.
async fn form_login(
    app: &TestApp,
    client: &reqwest::Client,
    name: &str,
    password: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>) {
    let mut req = client.post(app.url("/api/v1/Session")).form(&[("UserName", name), ("Password", password)]);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let res = req.send().await.unwrap();
    let device = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("batchd_device="))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (res.status().as_u16(), device)
}

#[tokio::test]
async fn failures_from_elsewhere_do_not_lock_out_a_client_that_logged_in_before() {
    let app = TestApp::spawn_with(|c| {
        c.access.failed_logins_per_address = 100;
        c.access.failed_logins_per_name = 10;
        // Long, so no token refills while a loaded machine runs the test (60 s: one every 6 s).
        c.access.failed_login_window = Duration::from_secs(3600);
    })
    .await;
    let (name, password) = app.add_associate("kim", Role::User).await;
    // kim logs in from 127.0.0.2 (a known address now) and from 127.0.0.3 (keeping the cookie).
    assert_eq!(form_login(&app, &from_address(2), &name, &password, None).await.0, 200);
    let (status, device) = form_login(&app, &from_address(3), &name, &password, None).await;
    assert_eq!(status, 200);
    let device = device.expect("a device cookie is set at login");
    let (_, admin_device) = form_login(&app, &from_address(4), ADMIN, ADMIN_PASSWORD, None).await;

    // Someone fails twelve times for kim, from twelve other addresses.
    for last in 10..22 {
        let (status, _) = form_login(&app, &from_address(last), &name, "guess", None).await;
        assert!(status == 401 || status == 429, "{status}");
    }
    // An unknown address waits, right password or not...
    assert_eq!(form_login(&app, &from_address(30), &name, &password, None).await.0, 429);
    // ...as does one with another name's device cookie, or a forged one.
    // One character changed (to another one: the real cookie may end in either letter).
    let other = if device.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{other}", &device[..device.len() - 1]);
    for cookie in [admin_device.unwrap(), forged, "batchd_device=garbage".to_owned()] {
        assert_eq!(form_login(&app, &from_address(31), &name, &password, Some(&cookie)).await.0, 429, "{cookie}");
    }
    // kim's known address gets in, over the form and with Basic; a wrong password there is still
    // checked (401, not 429).
    assert_eq!(form_login(&app, &from_address(2), &name, &password, None).await.0, 200);
    let res = from_address(2).get(app.url(TASKS)).basic_auth(&name, Some(&password)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(form_login(&app, &from_address(2), &name, "typo", None).await.0, 401);
    // So does kim's device cookie, from a new address.
    assert_eq!(form_login(&app, &from_address(32), &name, &password, Some(&device)).await.0, 200);

    // The device's own failures are counted for the device: after ten it waits too.
    for _ in 0..10 {
        assert_eq!(form_login(&app, &from_address(33), &name, "typo", Some(&device)).await.0, 401);
    }
    assert_eq!(form_login(&app, &from_address(33), &name, &password, Some(&device)).await.0, 429);
}

#[tokio::test]
async fn many_clients_logging_in_at_once_as_one_account_are_not_throttled() {
    let app = TestApp::spawn_with(|c| {
        c.access.failed_logins_per_address = 3;
        c.access.failed_logins_per_name = 3;
    })
    .await;
    // Tickets (each one a real argon2 check) and Basic GETs with the same, not yet cached header.
    let mut calls = Vec::new();
    for i in 0..12 {
        let req = if i % 2 == 0 {
            app.client.post(app.url("/api/v1/Ticket")).basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        } else {
            app.client.get(app.url(TASKS)).basic_auth(ADMIN, Some(ADMIN_PASSWORD))
        };
        calls.push(tokio::spawn(req.send()));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn spellings_of_one_credential_are_verified_once() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    let (name, password) = app.add_associate("vera", Role::User).await;
    let b64 = |n: &str| base64::engine::general_purpose::STANDARD.encode(format!("{n}:{password}"));
    let before = app.auth.password_checks();
    let plain = b64(&name);
    for header in [
        format!("Basic {plain}"),
        format!("basic {plain}"),
        format!("BASIC {plain}"),
        format!("Basic {}{plain}", " ".repeat(40)),
        format!("bAsIc\t{plain}  "),
        format!("Basic {}", b64("VERA")),
        format!("Basic {}", b64("Vera")),
    ] {
        assert_eq!(get_with(&app, &header).await.status(), 200, "{header:?}");
    }
    assert_eq!(app.auth.password_checks() - before, 1, "every spelling is the same cached credential");
}

#[tokio::test]
async fn a_full_credential_cache_keeps_the_entries_in_use() {
    let app = TestApp::spawn_with(|c| c.access.credential_cache_entries = 8).await;
    assert_eq!(app.get(TASKS).await.status(), 200);
    let checks = app.auth.password_checks();
    // Three times the capacity of other credentials, the admin's in use all along.
    for _ in 0..24 {
        let ticket = ticket_for(&app, ADMIN, ADMIN_PASSWORD).await;
        assert_eq!(get_with(&app, &format!("SOTicket {ticket}")).await.status(), 200);
        assert_eq!(app.get(TASKS).await.status(), 200);
    }
    assert_eq!(app.auth.password_checks(), checks, "the admin's entry was never evicted");
}

#[tokio::test]
async fn password_checks_are_bounded_per_address_right_or_wrong() {
    let app = TestApp::spawn_with(|c| {
        c.access.password_checks_per_address = 3;
        c.access.failed_login_window = Duration::from_secs(3600);
        c.access.failed_logins_per_address = 1000;
        c.access.failed_logins_per_name = 1000;
    })
    .await;
    assert_eq!(app.get(TASKS).await.status(), 200, "one check; cached now");
    let users: Vec<_> =
        futures_util::future::join_all(["ua", "ub", "uc"].map(|n| app.add_associate(n, Role::User))).await;
    assert_eq!(app.as_user(&users[0]).get(TASKS).await.status(), 200);
    let res = app.client.get(app.url(TASKS)).basic_auth("ub", Some("wrong")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // Three checks made: the fourth, right password or not, waits.
    let res = app.as_user(&users[2]).get(TASKS).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, 429, "TooManyRequestsException", "").await;
    // Cached credentials need no check, and another address has its own bound.
    assert_eq!(app.get(TASKS).await.status(), 200);
    assert_eq!(app.as_user(&users[0]).get(TASKS).await.status(), 200);
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = other.get(app.url(TASKS)).basic_auth(&users[2].0, Some(&users[2].1)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_take_the_same_time() {
    let app = TestApp::spawn_with(|c| {
        c.access.failed_logins_per_address = 0;
        c.access.failed_logins_per_name = 0;
        c.access.password_checks_per_address = 0;
    })
    .await;
    app.add_associate("tina", Role::User).await;
    let time = |name: &'static str| {
        let req = app.client.get(app.url(TASKS)).basic_auth(name, Some("definitely-wrong"));
        async move {
            let started = Instant::now();
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401);
            started.elapsed()
        }
    };
    // Warm up both paths (connections, prepared statements, page cache).
    time("tina").await;
    time("nobody-at-all").await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..25 {
        known.push(time("tina").await);
        unknown.push(time("nobody-at-all").await);
    }
    let (k, u) = (median(known), median(unknown));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    // A skipped hash would make unknown names ~50x faster; noise on a busy machine is far below 2x.
    assert!((0.5..=2.0).contains(&ratio), "unknown {u:?} vs wrong password {k:?} (ratio {ratio:.2})");
    assert!(k > Duration::from_millis(1), "argon2 really ran: {k:?}");
}

#[tokio::test]
async fn cors_is_off_by_default_and_answers_only_configured_origins() {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/BatchTask"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
    };
    let app = TestApp::spawn().await;
    let res = preflight(&app, "https://app.example.com").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = app.request(Method::GET, TASKS).header("Origin", "https://app.example.com").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let app = TestApp::spawn_with(|c| c.access.cors_origins = vec!["https://app.example.com".into()]).await;
    let res = preflight(&app, "https://app.example.com").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let res = preflight(&app, "https://evil.example.com").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = app.request(Method::GET, TASKS).header("Origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example.com");
}

#[tokio::test]
async fn session_info_says_how_the_caller_authenticated() {
    let app = TestApp::spawn().await;
    let me: Value = app.get("/api/v1/Session").await.json().await.unwrap();
    assert_eq!(me["Authentication"], "Basic");
    assert_eq!(me["Role"], "admin");
    let (_, token) = token_for(&app, json!({"Scope": "worker"})).await;
    let me: Value = with_auth(&app, Method::GET, "/api/v1/Session", &format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["Authentication"], "Bearer");
    assert_eq!(me["Scope"], "worker");
    assert_eq!(me["Role"], "worker", "an admin's worker token acts as a worker");
}

/// The change feed on SQLite sees another process's writes: with the change-log poll at a
/// minute, a token the CLI revokes on the same file stops working within a second.
#[tokio::test]
async fn a_revocation_by_the_cli_reaches_the_server_through_the_change_feed() {
    let app = TestApp::spawn_with(|c| c.access.change_poll = Duration::from_secs(60)).await;
    cli(&app, &["associate", "add", "dora", "--role", "user"], Some("pw-dora\n"));
    let out = cli(&app, &["token", "create", "--associate", "dora", "--scope", "read", "--name", "feed"], None);
    let bearer = format!("Bearer {}", String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(get_with(&app, &bearer).await.status(), 200, "the token is cached now");
    let out = cli(&app, &["token", "list", "--associate", "dora"], None);
    let list = String::from_utf8(out.stdout).unwrap();
    let id = list.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let revoked = std::time::Instant::now();
    cli(&app, &["token", "revoke", &id], None);
    eventually(Duration::from_secs(5), "the CLI's revocation reaches the server", || async {
        get_with(&app, &bearer).await.status() == 401
    })
    .await;
    let took = revoked.elapsed();
    assert!(took < Duration::from_secs(2), "seen after {took:?}: the minute-long poll did not do it");
}
