//! The OData list `GET /api/v1/BatchTask`: every operator against rows whose answers are known,
//! paging, XML, and hostile input, which must always be a 4xx with the error body, never a 500.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

/// What must be escaped in a query value; parentheses and letters stay as they are, so the
/// hostile inputs below fit in a URL (at most 64 KiB, an `http::Uri` limit).
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'\'')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']')
    .add(b';')
    .add(b'=');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY).to_string()
}

async fn list(app: &TestApp, query: &str) -> Value {
    let res = app.get(&format!("/api/v1/BatchTask?{query}")).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{query}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn keys(app: &TestApp, filter: &str) -> Vec<i64> {
    let v = list(app, &format!("$filter={}&$top=1000", encode(filter))).await;
    v["value"].as_array().unwrap().iter().map(|r| r["PrimaryKey"].as_i64().unwrap()).collect()
}

/// Five tasks with known columns: names A..E, StartCount 0..4 (by moving to Started and back).
async fn seed(app: &TestApp) -> Vec<i64> {
    let mut ids = Vec::new();
    for (i, (name, desc)) in
        [("Alpha", "first one"), ("Beta", "it's quoted"), ("Gamma", "100% sure"), ("Delta", "under_score"), ("Eps", "")]
            .into_iter()
            .enumerate()
    {
        let id = app.create(&json!({"Name": name, "Description": desc, "Request": format!("r{i}")})).await;
        for _ in 0..i {
            app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Started"})).await;
            app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Failed"})).await;
            app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "New"})).await;
        }
        ids.push(id);
    }
    app.put_json(&format!("/api/v1/BatchTask/{}", ids[4]), &json!({"Description": null})).await;
    app.put_json(&format!("/api/v1/BatchTask/{}", ids[0]), &json!({"State": "Started"})).await;
    ids
}

#[tokio::test]
async fn every_operator_selects_the_rows_it_should() {
    let app = TestApp::spawn().await;
    let ids = seed(&app).await;
    let pick = |idx: &[usize]| idx.iter().map(|i| ids[*i]).collect::<Vec<_>>();
    // StartCount: Alpha 1 (started now), Beta 1, Gamma 2, Delta 3, Eps 4.
    for (filter, want) in [
        ("StartCount eq 1", pick(&[0, 1])),
        ("StartCount ne 1", pick(&[2, 3, 4])),
        ("StartCount lt 2", pick(&[0, 1])),
        ("StartCount le 2", pick(&[0, 1, 2])),
        ("StartCount gt 2", pick(&[3, 4])),
        ("StartCount ge 3", pick(&[3, 4])),
        ("StartCount = 2", pick(&[2])),
        ("StartCount <> 2 and StartCount != 1", pick(&[3, 4])),
        ("StartCount between (2, 3)", pick(&[2, 3])),
        ("State eq 'Started'", pick(&[0])),
        ("State eq Started or State eq 3", pick(&[0])),
        ("State oneOf (1, 'Started')", pick(&[0, 1, 2, 3, 4])),
        ("State notOneOf (New)", pick(&[0])),
        ("DefinitionName eq 'Gamma'", pick(&[2])),
        ("DefinitionName begins 'al'", pick(&[0])),
        ("DefinitionName notBegins 'a'", pick(&[1, 2, 3, 4])),
        ("Description contains 'quote'", pick(&[1])),
        ("Description contains 'it''s'", pick(&[1])),
        ("Description contains \"it's\"", pick(&[1])),
        ("Description contains '%'", pick(&[2])),
        ("Description contains '_'", pick(&[3])),
        ("Description notContains 'o'", pick(&[2, 4])),
        ("Description eq null", pick(&[4])),
        ("Description ne null", pick(&[0, 1, 2, 3])),
        ("Description endsWith 'one'", pick(&[0])),
        ("startswith(DefinitionName, 'De')", pick(&[3])),
        ("substringof('sure', Description)", pick(&[2])),
        ("Request oneOf ('r1', 'r3')", pick(&[1, 3])),
        ("(StartCount eq 1 or StartCount eq 4) and not DefinitionName eq 'Beta'", pick(&[0, 4])),
        ("StartCount eq 1 or StartCount eq 4 and DefinitionName eq 'Beta'", pick(&[0, 1])),
        ("registeredDate ge '2000-01-01' and registeredDate lt '2999-01-01T00:00:00Z'", pick(&[0, 1, 2, 3, 4])),
        ("registeredDate lt '2000-01-01'", vec![]),
        ("LastStarted eq null", vec![]),
        ("updatedDate after '2000-01-01T00:00:00+02:00'", pick(&[0, 1, 2, 3, 4])),
        ("registeredBy associateIsOneOf (1)", pick(&[0, 1, 2, 3, 4])),
        ("batchTaskId oneOf (999999)", vec![]),
    ] {
        assert_eq!(keys(&app, filter).await, want, "{filter}");
    }
}

#[tokio::test]
async fn select_order_top_skip_and_next_link() {
    let app = TestApp::spawn().await;
    let ids = seed(&app).await;
    let v =
        list(&app, "$select=DefinitionName,StartCount,registeredDate&$orderBy=StartCount%20desc,DefinitionName&$top=2")
            .await;
    let rows = v["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["PrimaryKey"], ids[4]);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["PrimaryKey", "EntityName", "DefinitionName", "StartCount", "registeredDate"]);
    // Follow nextLink to the end: every row once, in order.
    let mut seen = Vec::new();
    let mut next = Some("/api/v1/BatchTask?$orderBy=StartCount%20desc&$top=2".to_owned());
    while let Some(path) = next {
        let page: Value = app.get(&path).await.json().await.unwrap();
        seen.extend(page["value"].as_array().unwrap().iter().map(|r| r["PrimaryKey"].as_i64().unwrap()));
        next = page["odata.nextLink"].as_str().map(|s| s[app.base.len()..].to_owned());
    }
    assert_eq!(seen, vec![ids[4], ids[3], ids[2], ids[0], ids[1]]);
    // Definition columns sort too (they join the definition table).
    let v = list(&app, "$orderBy=DefinitionDescription,DefinitionTimeOut%20desc&$select=DefinitionDescription").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 5);
    let v = list(&app, "$skip=4000000000").await;
    assert_eq!(v["value"], json!([]));
}

#[tokio::test]
async fn the_list_in_xml() {
    let app = TestApp::spawn().await;
    let ids = seed(&app).await;
    let res = app
        .request(Method::GET, "/api/v1/BatchTask?$top=2&$select=DefinitionName,Description,LastStarted")
        .header("Accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc = batchd::http::xml::parse(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(doc.root, "ODataSlimResponse");
    let rows = doc.value["value"]["row"].as_array().unwrap();
    assert_eq!(rows[0]["PrimaryKey"], ids[0].to_string());
    assert_eq!(rows[0]["DefinitionName"], "Alpha");
    assert_eq!(rows[1]["LastStarted"].as_str().map(|s| s.len()), Some(33));
    assert!(doc.value["odata.nextLink"].as_str().unwrap().contains("skip=2"));
}

#[tokio::test]
async fn hostile_filters_are_client_errors_never_server_errors() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    // The longest text a URL can carry (http::Uri stops at 64 KiB); longer is tested below.
    let long = "x".repeat(60 * 1024);
    let deep = format!("{}StartCount eq 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let many_ors = vec!["StartCount eq 1"; 500].join(" or ");
    let many_values = (0..5000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let hostile: Vec<String> = vec![
        "'".into(),
        "''".into(),
        "\"".into(),
        "Description eq 'unterminated".into(),
        "Description eq '1'; DROP TABLE batchtask; --'".into(),
        "Description eq '' OR 1=1 --".into(),
        "1=1".into(),
        "Description eq 'a' union select * from associate".into(),
        "batchtask_id eq 1".into(),
        "t.state eq 1".into(),
        "State eq 1; DELETE FROM batchtask".into(),
        "State eq (SELECT 1)".into(),
        "State eq 99999999999999999999999".into(),
        "State eq -".into(),
        "State eq 1.5".into(),
        "State eq 'Bogus'".into(),
        "StartCount eq 'abc'".into(),
        "StartCount contains 'x'".into(),
        "registeredDate eq 'yesterday'".into(),
        "registeredDate eq 5".into(),
        "registeredDate gt '2024-02-30'".into(),
        "Description eq".into(),
        "and".into(),
        "or or or".into(),
        "not".into(),
        "()".into(),
        "(StartCount eq 1".into(),
        "StartCount eq 1)".into(),
        "StartCount oneOf ()".into(),
        "StartCount oneOf (1,".into(),
        "StartCount between (1)".into(),
        "startswith(".into(),
        "startswith(Description".into(),
        "substringof(Description, 'x')".into(),
        "\u{0}".into(),
        "Description eq '\u{0}'".into(),
        "Ω≈ç√ eq '☃'".into(),
        "$filter eq 1".into(),
        "Description eq 'x' and".into(),
        format!("Description eq '{long}"),
        format!("{long} eq 1"),
        format!("Description eq {long}"),
        deep,
        "not ".repeat(5000) + "StartCount eq 1",
        many_ors,
        format!("StartCount oneOf ({many_values})"),
    ];
    for f in &hostile {
        let res = app.get(&format!("/api/v1/BatchTask?$filter={}", encode(f))).await;
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 400, "filter {:?} → {status} {body}", f.chars().take(80).collect::<String>());
        assert_eq!(body["ErrorType"], "ArgumentException");
        let msg = body["ErrorMessage"].as_str().unwrap();
        assert!(msg.contains("$filter") && msg.contains("position"), "{msg}");
        assert!(msg.len() < 400, "the message clips what it quotes: {} chars", msg.len());
    }
    // Valid but odd input is answered, safely bound.
    for f in [
        format!("Description eq '{long}'"),
        "Description contains '''; DROP TABLE batchtask; --'".into(),
        "Description eq '\\' or Description eq '%'".into(),
        "DefinitionName begins '%' or DefinitionName begins '_'".into(),
        vec!["StartCount eq 1"; 100].join(" or "),
        format!("{}StartCount eq 1{}", "(".repeat(30), ")".repeat(30)),
    ] {
        let v = list(&app, &format!("$filter={}", encode(&f))).await;
        assert!(v["value"].is_array());
    }
    assert_eq!(keys(&app, "Description contains '''; DROP TABLE batchtask; --'").await, Vec::<i64>::new());
    assert_eq!(list(&app, "").await["value"].as_array().unwrap().len(), 5, "nothing was dropped");
    // A 100 KiB filter does not fit in a request line hyper accepts: a 4xx, never a 500.
    let path = format!("/api/v1/BatchTask?$filter=Description%20eq%20%27{}%27", "x".repeat(100 * 1024));
    let status = raw_get(&app, &path).await;
    assert!((400..500).contains(&status), "a 100 KiB URL is refused as a client error, got {status}");
    // The other parameters are just as safe.
    for q in [
        "$orderBy=StartCount;DROP",
        "$orderBy=StartCount%20sideways",
        "$orderBy=Request",
        "$select=*",
        "$select=Description,(SELECT%201)",
        "$top=1e3",
        "$top=99999999999",
        "$skip=-1",
        "$skip=x",
    ] {
        assert_error(app.get(&format!("/api/v1/BatchTask?{q}")).await, 400, "ArgumentException", "$").await;
    }
}

/// A GET over a raw socket, for requests reqwest refuses to build; returns the status code.
async fn raw_get(app: &TestApp, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = base64_basic(&app.user.0, &app.user.1);
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n");
    // The server may answer and close before it has read everything: ignore write errors.
    let _ = stream.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head:.200}"))
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test]
async fn errors_say_where_and_what_was_expected_in_the_callers_language() {
    let app = TestApp::spawn().await;
    let res = app.get(&format!("/api/v1/BatchTask?$filter={}", encode("StartCount gt"))).await;
    assert_error(res, 400, "ArgumentException", "at position 13 a whole number was expected, but found the end").await;
    let res = app
        .request(Method::GET, &format!("/api/v1/BatchTask?$filter={}", encode("Nope eq 1")))
        .header("Accept-Language", "de")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-language"], "de");
    assert_error(res, 400, "ArgumentException", "an Position 0 wurde").await;
}
