//! The node list (`GET /api/v1/Nodes`) and the health probes on SQLite: one node, then two
//! sharing the file, one of which shuts down. The PostgreSQL cases with real processes (`kill -9`,
//! an unreachable database) are in `faults.rs`.

use std::time::{Duration, Instant};

use batchd::domain::Role;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error};

async fn nodes(app: &TestApp) -> Vec<Value> {
    let res = app.get("/api/v1/Nodes").await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn address(app: &TestApp) -> &str {
    app.base.trim_start_matches("http://")
}

/// `2024-05-01T10:00:00.1234567+00:00`: the API's date format, with an offset.
fn is_api_date(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 33 && chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

#[tokio::test]
async fn the_node_list_shows_this_node_alive_to_admins_only() {
    let app = TestApp::spawn().await;
    let list = nodes(&app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let me = &list[0];
    let keys: Vec<&str> = me.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = ["Name", "Version", "Address", "Started", "LastSeen", "Running", "RunnerEnabled", "Alive"];
    want.sort_unstable();
    let mut keys = keys.clone();
    keys.sort_unstable();
    assert_eq!(keys, want, "{me}");
    assert!(!me["Name"].as_str().unwrap().is_empty(), "{me}");
    assert_eq!(me["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(me["Address"], address(&app), "the address it listens on");
    assert!(is_api_date(&me["Started"]) && is_api_date(&me["LastSeen"]), "{me}");
    assert_eq!(
        (me["Running"].as_i64(), &me["RunnerEnabled"], &me["Alive"]),
        (Some(0), &Value::Bool(true), &Value::Bool(true))
    );

    // Dates follow SO-TimeZone like every other date.
    let res = app.request(Method::GET, "/api/v1/Nodes").header("SO-TimeZone", "Asia/Kolkata").send().await.unwrap();
    let zoned: Vec<Value> = res.json().await.unwrap();
    assert!(zoned[0]["Started"].as_str().unwrap().ends_with("+05:30"), "{}", zoned[0]);

    let xml = app.request(Method::GET, "/api/v1/Nodes").header("Accept", "application/xml").send().await.unwrap();
    assert_eq!(xml.status(), 200);
    let text = xml.text().await.unwrap();
    assert!(text.contains("<ArrayOfNode") && text.contains("<Alive>true</Alive>"), "{text}");

    for role in [Role::User, Role::Worker] {
        let creds = app.add_associate(&format!("{role:?}").to_lowercase(), role).await;
        let res = app.as_user(&creds).get("/api/v1/Nodes").await;
        assert_error(res, 403, "SoAccessDeniedException", "only admins may list the nodes").await;
    }
    let anonymous = app.client.get(app.url("/api/v1/nodes")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "any case, and credentials needed");
}

#[tokio::test]
async fn nodes_sharing_a_sqlite_file_see_each_other_and_a_shutdown_at_once() {
    let first = TestApp::spawn().await;
    let url = format!("sqlite:{}", first.db_path.display());
    let second = TestApp::spawn_with(|c| c.database = url).await;
    let list = nodes(&first).await;
    let alive: Vec<(&str, bool)> =
        list.iter().map(|n| (n["Address"].as_str().unwrap(), n["Alive"].as_bool().unwrap())).collect();
    assert_eq!(alive.len(), 2, "{list:?}");
    assert!(alive.contains(&(address(&first), true)) && alive.contains(&(address(&second), true)), "{list:?}");
    assert_ne!(list[0]["Name"], list[1]["Name"], "generated names differ");

    // A graceful shutdown marks the row stopped: listed, not alive, long before its lease ends.
    let gone = address(&second).to_owned();
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = nodes(&first).await;
        let entry = list.iter().find(|n| n["Address"] == gone.as_str()).expect("a stopped node stays listed");
        if entry["Alive"] == false {
            assert_eq!(entry["Running"], 0, "{entry}");
            assert_eq!(list[0]["Address"], address(&first), "the live node comes first: {list:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the stopped node still looks alive: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_probes_need_no_credentials_and_discovery_says_the_database_answers() {
    let app = TestApp::spawn().await;
    for path in ["/health/live", "/health/ready", "/Health/Ready/"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["Status"] == "Live" || body["Status"] == "Ready", "{path}: {body}");
    }
    let res = app.client.get(app.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["Database"], "Available", "{body}");
    for kept in ["Version", "v1", "Product", "ProductVersion", "NetServer"] {
        assert!(body[kept].is_string(), "{kept} is still answered: {body}");
    }
    // The endpoint map lists the node list.
    let map: Value = app.get("/api/v1").await.json().await.unwrap();
    assert!(map[app.url("/api/v1/Nodes")]["GET"].is_string(), "{map}");
}
