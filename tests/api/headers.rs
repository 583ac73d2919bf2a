//! SO-TimeZone, SO-Language / Accept-Language, Content-Language and SO-Culture, over HTTP.

use batchd::domain::zones::CODES;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.request(Method::GET, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn every_zone_code_and_id_converts_output_dates() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Z"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Started"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let utc: Value = app.task(id).await;
    let created: DateTime<Utc> = utc["Created"].as_str().unwrap().parse().unwrap();
    assert!(utc["Created"].as_str().unwrap().ends_with("+00:00"), "no header: the base zone, UTC");
    let mut spellings: Vec<(String, chrono_tz::Tz)> = Vec::new();
    for (code, num, zone) in CODES {
        spellings.push(((*code).to_owned(), *zone));
        spellings.push((code.to_ascii_lowercase(), *zone));
        spellings.push((format!("{code}, includeTZOffset"), *zone));
        if let Some(n) = num {
            spellings.push((n.to_string(), *zone));
        }
    }
    spellings.push(("Europe/Oslo".into(), chrono_tz::Tz::Europe__Oslo));
    spellings.push((
        "america/argentina/buenos_aires,includeTZOffset".into(),
        chrono_tz::Tz::America__Argentina__Buenos_Aires,
    ));
    for (header, zone) in spellings {
        let t: Value = get_with(&app, &path, &[("SO-TimeZone", &header)]).await.json().await.unwrap();
        let text = t["Created"].as_str().unwrap_or_else(|| panic!("{header}: {t}"));
        let offset = created.with_timezone(&zone).format("%:z").to_string();
        assert!(text.ends_with(&offset), "{header}: {text} should carry {offset}");
        assert_eq!(text.parse::<DateTime<Utc>>().unwrap(), created, "{header}: same instant");
        let started: DateTime<Utc> = t["LastStarted"].as_str().unwrap().parse().unwrap();
        let started_offset = started.with_timezone(&zone).format("%:z").to_string();
        assert!(t["LastStarted"].as_str().unwrap().ends_with(&started_offset), "{header}");
    }
    for bad in ["Mars/Olympus", "XX", "999", "NO, bogus", "", "NO,,x"] {
        let res = get_with(&app, &path, &[("SO-TimeZone", bad)]).await;
        assert_error(res, 400, "ArgumentException", "SO-TimeZone").await;
    }
}

#[tokio::test]
async fn local_dates_in_filters_are_read_in_the_request_zone() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Local"})).await;
    let created: DateTime<Utc> = app.task(id).await["Created"].as_str().unwrap().parse().unwrap();
    // The creation instant written as New York wall time without an offset: a minute before it
    // the task is "after", a minute after it the task is "before", only when read in New York.
    let ny = chrono_tz::Tz::America__New_York;
    let wall = |d: DateTime<Utc>| d.with_timezone(&ny).format("%Y-%m-%dT%H:%M:%S").to_string();
    let minute = chrono::Duration::minutes(1);
    let count = |filter: String, zone: &'static str| {
        let app = &app;
        async move {
            let path = format!(
                "/api/v1/BatchTask?$filter={}",
                percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
            );
            let v: Value = get_with(app, &path, &[("SO-TimeZone", zone)]).await.json().await.unwrap();
            v["value"].as_array().unwrap().len()
        }
    };
    assert_eq!(count(format!("registeredDate ge '{}'", wall(created - minute)), "US-NY").await, 1);
    assert_eq!(count(format!("registeredDate ge '{}'", wall(created + minute)), "US-NY").await, 0);
    // Read in UTC, New York wall time is 4 or 5 hours earlier than the instant: always "after".
    assert_eq!(count(format!("registeredDate ge '{}'", wall(created + minute)), "UTC").await, 1);
    // An explicit offset wins over the header.
    let explicit = (created + minute).to_rfc3339();
    assert_eq!(count(format!("registeredDate ge '{explicit}'"), "US-NY").await, 0);
}

#[tokio::test]
async fn messages_come_in_the_asked_language_and_say_which() {
    let app = TestApp::spawn().await;
    type Case = (&'static [(&'static str, &'static str)], &'static str, &'static str);
    let cases: [Case; 12] = [
        (&[], "en", "BatchTask id 424242 not found."),
        (&[("Accept-Language", "nb-NO")], "nb", "BatchTask med id 424242 finnes ikke."),
        (&[("Accept-Language", "no")], "nb", "finnes ikke"),
        (&[("Accept-Language", "sv-SE,en;q=0.5")], "sv", "hittades inte"),
        (&[("Accept-Language", "en;q=0.3, da;q=0.8")], "da", "blev ikke fundet"),
        (&[("Accept-Language", "de-CH")], "de", "wurde nicht gefunden"),
        (&[("Accept-Language", "ru, fr;q=0.1")], "fr", "introuvable"),
        (&[("Accept-Language", "nl")], "nl", "niet gevonden"),
        (&[("Accept-Language", "zh, ja")], "en", "not found"),
        (&[("Accept-Language", "de"), ("SO-Language", "sv")], "sv", "hittades inte"),
        (&[("Accept-Language", "de"), ("SO-Language", "*")], "en", "not found"),
        (&[("Accept-Language", "fr"), ("SO-Language", "x")], "en", "not found"),
    ];
    for (headers, lang, needle) in cases {
        let res = get_with(&app, "/api/v1/BatchTask/424242", headers).await;
        assert_eq!(res.headers()["content-language"], lang, "{headers:?}");
        assert_error(res, 404, "SoNotFoundException", needle).await;
    }
    // Type words, reasons and agents' answers are translated too; field names are not.
    let res = app
        .request(Method::POST, "/api/v1/BatchTask")
        .header("SO-Language", "fr")
        .json(&json!({"Name": "x", "DetailsTable": "many"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "ArgumentException", "DetailsTable doit être un nombre entier.").await;
    let res = app
        .request(Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo")
        .header("Accept-Language", "de")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-language"], "de");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["Message"], "Die Anfrage ist ungültig.");
    assert_eq!(v["MessageDetail"], "Der Parameter 'Id' ist erforderlich.");
    let alice = app.add_associate("alice", batchd::domain::Role::User).await;
    let res = app
        .as_user(&alice)
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Accept-Language", "nl")
        .json(&json!({"Name": "x", "IsSystemTask": true}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "SoAccessDeniedException", "Toegang geweigerd: alleen workers en beheerders").await;
}

#[tokio::test]
async fn successes_carry_content_language_too() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "L"})).await;
    for (path, lang) in [(format!("/api/v1/BatchTask/{id}"), "sv"), ("/api/v1/BatchTask".to_owned(), "da")] {
        let res = get_with(&app, &path, &[("Accept-Language", lang)]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-language"], lang);
    }
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(res.headers().get("content-language").is_none(), "no body, no language");
}

#[tokio::test]
async fn so_culture_is_validated_and_changes_no_number_or_date() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "C", "Description": "1.5"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Started"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let neutral: Value = app.task(id).await;
    for culture in ["nb-NO", "en-US", "sv", "de-DE", "fr_FR", "ar-SA", "zh-Hans-CN", ""] {
        let res = get_with(&app, &path, &[("SO-Culture", culture), ("Accept-Language", "de")]).await;
        assert_eq!(res.status(), 200, "{culture}");
        assert_eq!(res.json::<Value>().await.unwrap(), neutral, "{culture}: culture-neutral numbers and dates");
        let list = get_with(&app, "/api/v1/BatchTask?$select=StartCount,LastStarted", &[("SO-Culture", culture)]).await;
        let v: Value = list.json().await.unwrap();
        assert_eq!(v["value"][0]["StartCount"], 1, "{culture}");
    }
    for bad in ["xx-YY", "english", "nb-NO-oslo", "42", "de-DE;q=1"] {
        for (method, p) in
            [(Method::GET, path.clone()), (Method::DELETE, path.clone()), (Method::GET, "/api/v1/BatchTask".into())]
        {
            let res = app.request(method.clone(), &p).header("SO-Culture", bad).send().await.unwrap();
            assert_error(res, 400, "ArgumentException", "SO-Culture").await;
        }
    }
    assert_eq!(app.get(&path).await.status(), 200, "the refused DELETE deleted nothing");
}

/// `GET /api`'s `v1`, the endpoint map's keys and a list page's `odata.nextLink`, with `headers`,
/// from `client`.
async fn absolute_urls(app: &TestApp, client: &reqwest::Client, headers: &[(&str, &str)]) -> Vec<String> {
    let send = |path: &str| {
        let mut req = client.get(app.url(path)).basic_auth(&app.user.0, Some(&app.user.1));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let v: Value = send("/api").await.unwrap().json().await.unwrap();
    let map: Value = send("/api/v1").await.unwrap().json().await.unwrap();
    let page: Value = send("/api/v1/BatchTask?$top=1").await.unwrap().json().await.unwrap();
    let first_key = map.as_object().unwrap().keys().next().unwrap().clone();
    vec![
        v["v1"].as_str().unwrap().to_owned(),
        first_key,
        page["odata.nextLink"].as_str().unwrap().to_owned(),
        page["odata.metadata"].as_str().unwrap().to_owned(),
    ]
}

fn all_start_with(urls: &[String], base: &str) -> bool {
    urls.iter().all(|u| u.starts_with(&format!("{base}/api/v1")))
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let app = TestApp::spawn().await;
    app.create(&json!({"Name": "a"})).await;
    app.create(&json!({"Name": "b"})).await;
    let evil =
        [("Host", "batchd.example:8080"), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "javascript")];
    let urls = absolute_urls(&app, &app.client, &evil).await;
    assert!(all_start_with(&urls, "http://batchd.example:8080"), "{urls:?}");
    // A Host that is no host gives paths without one.
    let urls = absolute_urls(&app, &app.client, &[("Host", "evil.example/x?")]).await;
    assert!(all_start_with(&urls, ""), "{urls:?}");
}

#[tokio::test]
async fn forwarding_headers_count_from_trusted_proxies_when_well_formed() {
    let app = TestApp::spawn_with(|c| {
        c.access.trusted_proxies = vec![batchd::domain::forwarded::IpNet::parse("127.0.0.1/32").unwrap()];
        c.access.failed_logins_per_address = 2;
        c.access.failed_logins_per_name = 1000;
        c.access.failed_login_window = std::time::Duration::from_secs(3600);
    })
    .await;
    app.create(&json!({"Name": "a"})).await;
    app.create(&json!({"Name": "b"})).await;
    let host = ("Host", "batchd.internal:8080");
    let urls = absolute_urls(
        &app,
        &app.client,
        &[host, ("X-Forwarded-Host", "api.example.com"), ("X-Forwarded-Proto", "https")],
    )
    .await;
    assert!(all_start_with(&urls, "https://api.example.com"), "{urls:?}");
    let urls = absolute_urls(&app, &app.client, &[host, ("X-Forwarded-Host", "a.example, b.example:8443")]).await;
    assert!(all_start_with(&urls, "http://b.example:8443"), "the nearest proxy's value: {urls:?}");
    let long = format!("{}.example", "a".repeat(300));
    for (proto, fwd_host) in [
        ("javascript", "evil.example/x"),
        ("https:", "ev il"),
        ("ftp", "evil.example:99999"),
        ("http://x", long.as_str()),
        ("", "\"><script>"),
    ] {
        let urls =
            absolute_urls(&app, &app.client, &[host, ("X-Forwarded-Host", fwd_host), ("X-Forwarded-Proto", proto)])
                .await;
        assert!(all_start_with(&urls, "http://batchd.internal:8080"), "{proto} {fwd_host}: {urls:?}");
    }
    // Another peer (127.0.0.2 is loopback too, but not listed) is not a proxy.
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let urls =
        absolute_urls(&app, &other, &[host, ("X-Forwarded-Host", "api.example.com"), ("X-Forwarded-Proto", "https")])
            .await;
    assert!(all_start_with(&urls, "http://batchd.internal:8080"), "{urls:?}");

    // The client address: the proxy's X-Forwarded-For entry counts; another peer's does not.
    let wrong = |client: &reqwest::Client, xff: &str| {
        client
            .get(app.url("/api/v1/BatchTask/All"))
            .basic_auth("nobody", Some("x"))
            .header("X-Forwarded-For", xff)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(wrong(&app.client, "198.51.100.1").await.unwrap().status(), 401);
    }
    assert_eq!(wrong(&app.client, "198.51.100.1").await.unwrap().status(), 429);
    assert_eq!(wrong(&app.client, "198.51.100.2").await.unwrap().status(), 401, "another client behind the proxy");
    assert_eq!(wrong(&other, "198.51.100.3").await.unwrap().status(), 401);
    assert_eq!(wrong(&other, "198.51.100.4").await.unwrap().status(), 401);
    assert_eq!(wrong(&other, "198.51.100.5").await.unwrap().status(), 429, "an unlisted peer is counted itself");
}

// -- conditional requests (RFC 9110 §13; docs/API.md, Preconditions) --

/// The task's ETag and Last-Modified, as a GET shows them.
async fn validators(app: &TestApp, path: &str) -> (String, DateTime<Utc>) {
    let res = app.get(path).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let lm = res.headers()["last-modified"].to_str().unwrap();
    let lm = DateTime::parse_from_rfc2822(lm).unwrap().with_timezone(&Utc);
    (etag, lm)
}

fn weak(etag: &str) -> String {
    format!("W/{etag}")
}

/// An instant in the three HTTP-date forms (RFC 9110 §5.6.7).
fn http_dates(t: DateTime<Utc>) -> [(&'static str, String); 3] {
    [
        ("IMF-fixdate", t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        ("RFC 850", t.format("%A, %d-%b-%y %H:%M:%S GMT").to_string()),
        ("asctime", t.format("%a %b %e %H:%M:%S %Y").to_string()),
    ]
}

async fn put_with(app: &TestApp, path: &str, headers: &[(&str, &str)], description: &str) -> reqwest::Response {
    let mut req = app.request(Method::PUT, path).json(&json!({"Description": description}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn if_match_compares_strongly_and_takes_lists_and_any() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "IfMatch"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let (etag, _) = validators(&app, &path).await;

    let res = put_with(&app, &path, &[("If-Match", &weak(&etag))], "weak").await;
    assert_error(res, 412, "SoPreconditionFailedException", &id.to_string()).await;
    assert_eq!(app.task(id).await["Description"], Value::Null, "a weak tag never matches If-Match");

    let stale = format!("\"{id}-999\"");
    let res = put_with(&app, &path, &[("If-Match", &format!("{stale}, {}", weak(&etag)))], "x").await;
    assert_eq!(res.status(), 412, "a list of a stale and a weak tag");
    let res = put_with(&app, &path, &[("If-Match", &format!("{stale}, \"a,b\", {etag}"))], "listed").await;
    assert_eq!(res.status(), 200, "the current tag anywhere in the list");
    let (etag, _) = validators(&app, &path).await;
    // Two field lines are one list.
    let res = app
        .request(Method::PUT, &path)
        .header("If-Match", &stale)
        .header("If-Match", &etag)
        .json(&json!({"Description": "two lines"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(put_with(&app, &path, &[("If-Match", "*")], "any").await.status(), 200);
    assert_eq!(app.task(id).await["Description"], "any");

    // The other writes compare the same way.
    let (etag, _) = validators(&app, &path).await;
    let stop = format!("{path}/Stop");
    for (method, p) in [(Method::POST, stop.as_str()), (Method::DELETE, path.as_str())] {
        let res = app.request(method.clone(), p).header("If-Match", weak(&etag)).send().await.unwrap();
        assert_eq!(res.status(), 412, "{method} {p}");
    }
    let update = json!({"BatchTaskInfo": {"Id": id, "Description": "agent"}});
    let res = app
        .request(Method::POST, "/api/v1/Agents/Batch/UpdateBatchTask")
        .header("If-Match", weak(&etag))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412, "agent UpdateBatchTask");
    let res = app
        .request(Method::POST, "/api/v1/Agents/Batch/UpdateBatchTask")
        .header("If-Match", &etag)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.task(id).await["Description"], "agent");
}

#[tokio::test]
async fn an_unreadable_if_match_is_a_400_that_names_it_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "BadIfMatch", "Description": "kept"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let (etag, _) = validators(&app, &path).await;
    let bare = etag.trim_matches('"').to_owned();
    for bad in [bare.as_str(), "\"open", "w/\"1-1\"", "*, \"1-1\"", &format!("{etag}, {bare}")] {
        let res = put_with(&app, &path, &[("If-Match", bad)], "changed").await;
        assert_error(res, 400, "ArgumentException", "If-Match").await;
        let res = app
            .request(Method::PATCH, &path)
            .header("Content-Type", "application/merge-patch+json")
            .header("If-Match", bad)
            .body(r#"{"Description":"changed"}"#)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "ArgumentException", "If-Match").await;
        for (method, p) in [(Method::POST, format!("{path}/Stop")), (Method::DELETE, path.clone())] {
            let res = app.request(method, &p).header("If-Match", bad).send().await.unwrap();
            assert_error(res, 400, "ArgumentException", "If-Match").await;
        }
        let res = app
            .request(Method::POST, "/api/v1/Agents/Batch/UpdateBatchTask")
            .header("If-Match", bad)
            .json(&json!({"BatchTaskInfo": {"Id": id, "Description": "changed"}}))
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "ArgumentException", "If-Match").await;
    }
    let t = app.task(id).await;
    assert_eq!((t["Description"].as_str(), t["State"].as_str()), (Some("kept"), Some("New")));
    let res = app
        .request(Method::PUT, &path)
        .header("If-Match", "nope")
        .header("Accept-Language", "de")
        .json(&json!({"Description": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "ArgumentException", "If-Match muss * oder eine Liste").await;
}

#[tokio::test]
async fn if_none_match_compares_weakly_and_takes_lists_and_any() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "IfNoneMatch"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let (etag, _) = validators(&app, &path).await;
    let other = format!("\"{id}-999\"");
    for (value, status) in [
        (etag.clone(), 304),
        (weak(&etag), 304),
        ("*".to_owned(), 304),
        (format!("{other}, {}", weak(&etag)), 304),
        (format!("junk, {etag}"), 304),
        (other.clone(), 200),
        (format!("{other}, W/{other}"), 200),
        ("junk".to_owned(), 200),
    ] {
        let res = get_with(&app, &path, &[("If-None-Match", &value)]).await;
        assert_eq!(res.status(), status, "If-None-Match: {value}");
        if status == 304 {
            assert_eq!(res.headers()["etag"], etag.as_str(), "a 304 names the current ETag");
        }
    }
    let res = app.request(Method::HEAD, &path).header("If-None-Match", weak(&etag)).send().await.unwrap();
    assert_eq!(res.status(), 304, "HEAD too");
}

#[tokio::test]
async fn a_write_whose_if_none_match_matches_is_a_412() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "WriteIfNoneMatch"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let (etag, _) = validators(&app, &path).await;
    let other = format!("\"{id}-999\"");
    for value in ["*".to_owned(), etag.clone(), weak(&etag), format!("{other}, {etag}")] {
        let res = put_with(&app, &path, &[("If-None-Match", &value)], "no").await;
        assert_error(res, 412, "SoPreconditionFailedException", "If-None-Match").await;
        for (method, p) in [(Method::POST, format!("{path}/Stop")), (Method::DELETE, path.clone())] {
            let res = app.request(method.clone(), &p).header("If-None-Match", &value).send().await.unwrap();
            assert_eq!(res.status(), 412, "{method} {p} If-None-Match: {value}");
        }
        let res = app
            .request(Method::POST, "/api/v1/Agents/Batch/UpdateBatchTask")
            .header("If-None-Match", &value)
            .json(&json!({"BatchTaskInfo": {"Id": id, "Description": "no"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 412, "agent UpdateBatchTask If-None-Match: {value}");
    }
    let t = app.task(id).await;
    assert_eq!((&t["Description"], t["State"].as_str()), (&Value::Null, Some("New")), "nothing was written");
    // If-Match is evaluated first: a stale one fails as stale whatever If-None-Match says.
    let res = put_with(&app, &path, &[("If-Match", &other), ("If-None-Match", &other)], "x").await;
    assert_error(res, 412, "SoPreconditionFailedException", "If-Match").await;
    let res = put_with(&app, &path, &[("If-Match", &etag), ("If-None-Match", &etag)], "x").await;
    assert_error(res, 412, "SoPreconditionFailedException", "If-None-Match").await;
    let res = put_with(&app, &path, &[("If-Match", &etag), ("If-None-Match", &other)], "yes").await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.task(id).await["Description"], "yes");
}

#[tokio::test]
async fn if_modified_since_takes_all_three_date_forms() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Ims"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let (_, lm) = validators(&app, &path).await;
    let second = chrono::Duration::seconds(1);
    for ((form, same), (_, before)) in http_dates(lm).into_iter().zip(http_dates(lm - second)) {
        assert_eq!(get_with(&app, &path, &[("If-Modified-Since", &same)]).await.status(), 304, "{form}: {same}");
        assert_eq!(get_with(&app, &path, &[("If-Modified-Since", &before)]).await.status(), 200, "{form}: {before}");
    }
    // Not a date, or a list of them: ignored (RFC 9110 §13.1.3).
    let same = http_dates(lm)[0].1.clone();
    for junk in ["yesterday", "1994-11-06T08:49:37Z", &format!("{same}, {same}")] {
        assert_eq!(get_with(&app, &path, &[("If-Modified-Since", junk)]).await.status(), 200, "{junk}");
    }
}

#[tokio::test]
async fn if_unmodified_since_takes_all_three_date_forms() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Ius"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let second = chrono::Duration::seconds(1);
    for form in 0..3 {
        let (_, lm) = validators(&app, &path).await;
        let (name, before) = http_dates(lm - second)[form].clone();
        let res = put_with(&app, &path, &[("If-Unmodified-Since", &before)], "late").await;
        assert_error(res, 412, "SoPreconditionFailedException", &id.to_string()).await;
        let (_, same) = http_dates(lm)[form].clone();
        let res = put_with(&app, &path, &[("If-Unmodified-Since", &same)], name).await;
        assert_eq!(res.status(), 200, "{name}: {same}");
        assert_eq!(app.task(id).await["Description"], name);
        // The next write must not land in the same second as this one, or `lm - 1s` still holds.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    // Not a date: ignored, as RFC 9110 §13.1.4 requires (If-Match is the header to rely on).
    assert_eq!(put_with(&app, &path, &[("If-Unmodified-Since", "last week")], "ignored").await.status(), 200);
}

#[tokio::test]
async fn conditionals_are_evaluated_in_rfc_9110_order() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Order"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let (etag, lm) = validators(&app, &path).await;
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let stale = format!("\"{id}-999\"");

    // If-Match decides; If-Unmodified-Since is then not read.
    let res = put_with(&app, &path, &[("If-Match", &etag), ("If-Unmodified-Since", old)], "1").await;
    assert_eq!(res.status(), 200, "a matching If-Match wins over a failing If-Unmodified-Since");
    let (etag, lm2) = validators(&app, &path).await;
    let res = put_with(&app, &path, &[("If-Match", &stale), ("If-Unmodified-Since", future)], "2").await;
    assert_eq!(res.status(), 412, "a failing If-Match is not saved by If-Unmodified-Since");

    // If-None-Match decides; If-Modified-Since is then not read.
    let same = http_dates(lm2)[0].1.clone();
    let res = get_with(&app, &path, &[("If-None-Match", &stale), ("If-Modified-Since", &same)]).await;
    assert_eq!(res.status(), 200, "a non-matching If-None-Match wins over If-Modified-Since");
    let res = get_with(&app, &path, &[("If-None-Match", &etag), ("If-Modified-Since", old)]).await;
    assert_eq!(res.status(), 304);

    // On a GET, If-Match and If-Unmodified-Since come first and fail with 412.
    let res = get_with(&app, &path, &[("If-Match", &stale), ("If-None-Match", &etag)]).await;
    assert_error(res, 412, "SoPreconditionFailedException", &id.to_string()).await;
    let res = get_with(&app, &path, &[("If-Unmodified-Since", old)]).await;
    assert_eq!(res.status(), 412);
    let res = get_with(&app, &path, &[("If-Match", &etag), ("If-None-Match", &etag)]).await;
    assert_eq!(res.status(), 304);

    // If-Modified-Since is for GET and HEAD only: a write ignores it.
    let res = put_with(&app, &path, &[("If-Modified-Since", future)], "3").await;
    assert_eq!(res.status(), 200);
    assert!(lm <= lm2);
}

#[tokio::test]
async fn every_refusal_reason_comes_in_the_asked_language() {
    let app = TestApp::spawn().await;
    let alice = app.add_associate("alice", batchd::domain::Role::User).await;
    let user = app.as_user(&alice);
    let res = user.request(Method::GET, "/metrics").header("Accept-Language", "de").send().await.unwrap();
    assert_error(res, 403, "SoAccessDeniedException", "Zugriff verweigert: die Metriken zählen alle Aufgaben").await;
    let res = user
        .request(Method::POST, "/api/v1/BatchTask")
        .header("Accept-Language", "fr")
        .json(&json!({"Name": "x", "IsInternalTask": true}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "SoAccessDeniedException", "créer des tâches avec IsInternalTask").await;
    let res = user
        .request(Method::POST, "/api/v1/BatchTask/Acquire")
        .header("Accept-Language", "sv")
        .json(&json!({"Names": ["Resize"]}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "SoAccessDeniedException", "endast arbetar- och administratörsmedarbetare").await;
}
