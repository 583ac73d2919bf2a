//! `GET /metrics`: request counts and durations by route template, tasks by state, access.

use batchd::domain::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

/// The value of the sample line `name{labels}` (labels exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_tasks_by_state() {
    let app = TestApp::spawn().await;
    let a = app.create(&json!({"Name": "M", "Description": "one"})).await;
    let b = app.create(&json!({"Name": "M", "Description": "two"})).await;
    for id in [a, b, a] {
        assert_eq!(app.get(&format!("/api/v1/BatchTask/{id}")).await.status(), 200);
    }
    assert_eq!(app.get("/api/v1/BatchTask/999999").await.status(), 404);
    let res = app.put_json(&format!("/api/v1/BatchTask/{b}"), &json!({"State": "Failed"})).await;
    assert_eq!(res.status(), 200);

    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();

    // Ids never become labels: every GET of a task is one series per status.
    let ok = r#"route="/api/v1/BatchTask/{key}",method="GET",status="200""#;
    assert_eq!(sample(&text, &format!("batchd_http_requests_total{{{ok}}}")), Some(3.0), "{text}");
    let missing = r#"route="/api/v1/BatchTask/{key}",method="GET",status="404""#;
    assert_eq!(sample(&text, &format!("batchd_http_requests_total{{{missing}}}")), Some(1.0), "{text}");
    let created = r#"route="/api/v1/BatchTask",method="POST",status="200""#;
    assert_eq!(sample(&text, &format!("batchd_http_requests_total{{{created}}}")), Some(2.0), "{text}");
    assert!(!text.contains("BatchTask/999999"), "raw paths must not become labels");

    // The histogram is cumulative and ends at the count.
    let mut last = 0.0;
    for line in text.lines().filter(|l| l.starts_with(&format!("batchd_http_request_duration_seconds_bucket{{{ok}"))) {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v >= last, "buckets must not decrease: {line}");
        last = v;
    }
    assert_eq!(last, 3.0);
    assert_eq!(sample(&text, &format!("batchd_http_request_duration_seconds_count{{{ok}}}")), Some(3.0));

    assert_eq!(sample(&text, r#"batchd_tasks{state="New"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"batchd_tasks{state="Failed"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"batchd_tasks{state="Started"}"#), Some(0.0), "{text}");
    assert!(sample(&text, "batchd_uptime_seconds").is_some());
    assert!(sample(&text, "batchd_password_checks_total").is_some_and(|n| n >= 1.0), "{text}");
}

#[tokio::test]
async fn metrics_need_a_worker_or_admin() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let user = app.add_associate("metrics-user", Role::User).await;
    assert_eq!(app.as_user(&user).request(Method::GET, "/metrics").send().await.unwrap().status(), 403);
    let worker = app.add_associate("metrics-worker", Role::Worker).await;
    assert_eq!(app.as_user(&worker).request(Method::GET, "/metrics").send().await.unwrap().status(), 200);
    // What the README tells Prometheus to use: a read token of an admin.
    let res = app.post_json("/api/v1/Token", &json!({"Scope": "read", "Name": "prometheus"})).await;
    assert_eq!(res.status(), 201);
    let token = res.json::<serde_json::Value>().await.unwrap()["Token"].as_str().unwrap().to_owned();
    let res = app.client.get(app.url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("batchd_tasks{state=\"New\"}"));
}
