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
