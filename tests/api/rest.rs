//! The REST resource `/api/v1/BatchTask`, through real HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

const ALL_PROPERTIES: [&str; 24] = [
    "Id",
    "Name",
    "AssociateId",
    "DetailsTable",
    "DetailsRecord",
    "IsSystemTask",
    "IsInternalTask",
    "ParameterObject",
    "LastStarted",
    "Created",
    "StartCount",
    "DatabaseSerialNumber",
    "Context",
    "Result",
    "State",
    "Description",
    "Response",
    "Request",
    "ProgressDescription",
    "ProgressPercent",
    "FileName",
    "CancellationBehaviour",
    "TableRight",
    "FieldProperties",
];

fn is_rfc3339_with_offset(s: &str) -> bool {
    // 2018-06-22T16:32:48.2902385+02:00
    s.len() == 33
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
        && (s.ends_with(":00") || s.contains('+') || s[19..].contains('-'))
}

#[tokio::test]
async fn create_answers_a_bare_id_and_location_and_get_returns_all_24_properties() {
    let app = TestApp::spawn().await;
    let res = app
        .post_json("/api/v1/BatchTask", &json!({"Name": "Export", "Description": "nightly", "Context": "ctx", "Request": "r",
            "DatabaseSerialNumber": "1305401", "FileName": "out.csv", "ParameterObject": {"ParameterObject1": "ipsum", "n": 5}}))
        .await;
    assert_eq!(res.status(), 200);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["content-type"], "application/json; charset=utf-8");
    let id: i64 = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(location, format!("/api/v1/BatchTask/{id}"));

    let t = app.task(id).await;
    let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ALL_PROPERTIES, "all 24 properties, in SuperOffice's order");
    assert_eq!(t["Id"], id);
    assert_eq!(t["Name"], "Export");
    assert_eq!(t["AssociateId"], 1, "the caller owns it");
    assert_eq!(t["State"], "New");
    assert_eq!(t["StartCount"], 0);
    assert_eq!(t["LastStarted"], Value::Null);
    assert!(is_rfc3339_with_offset(t["Created"].as_str().unwrap()), "{}", t["Created"]);
    assert!(t["Created"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(t["ParameterObject"], json!({"ParameterObject1": "ipsum", "n": "5"}));
    assert_eq!(t["DetailsTable"], 205, "points at the binaryobject table");
    assert!(t["DetailsRecord"].as_i64().unwrap() > 0);
    assert_eq!(t["CancellationBehaviour"], "CanCancel");
    assert_eq!(t["TableRight"], json!({"Mask": "Select, Update, Delete", "Reason": ""}));
    let fp = t["FieldProperties"].as_object().unwrap();
    assert_eq!(fp.len(), 22);
    for (name, prop) in fp {
        let want =
            if ["State", "Description", "Response", "Request"].contains(&name.as_str()) { "Update" } else { "Read" };
        assert_eq!(prop["FieldRight"]["Mask"], want, "{name}");
    }
    assert_eq!(fp["Description"]["FieldLength"], 254);
    assert_eq!(fp["FileName"]["FieldLength"], 260);
    assert_eq!(fp["DetailsTable"]["FieldType"], "System.Int16");
}

#[tokio::test]
async fn parameter_object_is_stored_as_a_linked_blob_and_reads_back_unchanged() {
    let app = TestApp::spawn().await;
    let params = json!({"zeta": "1", "alpha": "two words", "unicode": "æøå ✓", "empty": ""});
    let id = app.create(&json!({"Name": "Blob", "ParameterObject": params})).await;
    assert_eq!(app.task(id).await["ParameterObject"], params, "same keys, same order, same values");

    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let (link_type, owner_table, blob): (i64, i64, Vec<u8>) = conn
        .query_row(
            "SELECT l.linktype, l.ownertable, b.binarydata FROM binaryobjectlink l JOIN binaryobject b USING (binaryobject_id) WHERE l.ownerrecord = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((link_type, owner_table), (6, 243));
    assert_eq!(serde_json::from_slice::<Value>(&blob).unwrap(), params);
}

#[tokio::test]
async fn create_ignores_server_owned_properties_and_reads_camel_case_and_enum_numbers() {
    let app = TestApp::spawn().await;
    let id = app
        .create(&json!({"id": 999, "name": "Camel", "state": "Failed", "startCount": 7, "result": "x", "response": "y",
            "progressPercent": 50, "lastStarted": "2018-06-22T16:32:48.2902385+02:00", "created": "2007-07-11T16:32:48+02:00",
            "cancellationBehaviour": 2, "isInternalTask": true}))
        .await;
    assert_ne!(id, 999);
    let t = app.task(id).await;
    assert_eq!(t["Name"], "Camel");
    assert_eq!(t["State"], "New");
    assert_eq!(t["StartCount"], 0);
    assert_eq!(t["Result"], Value::Null);
    assert_eq!(t["Response"], Value::Null);
    assert_eq!(t["ProgressPercent"], 0);
    assert_eq!(t["LastStarted"], Value::Null);
    assert_eq!(t["CancellationBehaviour"], "CannotCancel");
    assert_eq!(t["IsInternalTask"], true);
}

#[tokio::test]
async fn get_by_state_lists_user_tasks_only_and_all_means_every_state() {
    let app = TestApp::spawn().await;
    let a = app.create(&json!({"Name": "A"})).await;
    let b = app.create(&json!({"Name": "B"})).await;
    let sys = app.create(&json!({"Name": "Sys", "IsSystemTask": true})).await;
    assert_eq!(app.put_json(&format!("/api/v1/BatchTask/{b}"), &json!({"State": "Started"})).await.status(), 200);

    let ids = |v: Value| v.as_array().unwrap().iter().map(|t| t["Id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(app.get("/api/v1/BatchTask/New").await.json().await.unwrap()), vec![a]);
    assert_eq!(ids(app.get("/api/v1/batchtask/started").await.json().await.unwrap()), vec![b]);
    assert_eq!(
        ids(app.get("/api/v1/BatchTask/ALL").await.json().await.unwrap()),
        vec![a, b],
        "system task {sys} excluded"
    );
    assert_eq!(ids(app.get("/api/v1/BatchTask/Succeeded").await.json().await.unwrap()), Vec::<i64>::new());
    let res = app.get("/api/v1/BatchTask/Finished").await;
    assert_error(res, 400, "ArgumentException", "Finished").await;
    let res = app.get("/api/v1/BatchTask/12abc").await;
    assert_error(res, 400, "ArgumentException", "12abc").await;
}

#[tokio::test]
async fn put_changes_only_state_description_response_request() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Kilback Group", "Context": "keep", "Description": "old"})).await;
    let before = app.task(id).await;
    // The seed page's sample request, with a State that may be stored.
    let sample = json!({
        "Id": id, "Name": "Kilback Group", "AssociateId": 627, "DetailsTable": 421, "DetailsRecord": 739,
        "IsSystemTask": false, "IsInternalTask": false,
        "ParameterObject": {"ParameterObject1": "ipsum", "ParameterObject2": "officia"},
        "LastStarted": "2018-06-22T16:32:48.2902385+02:00", "Created": "2007-07-11T16:32:48.2902385+02:00",
        "StartCount": 904, "DatabaseSerialNumber": "1305401", "Context": "veritatis", "Result": "fugit",
        "State": "Started", "Description": "Extended 6th generation monitoring", "Response": "et", "Request": "neque",
        "ProgressDescription": "Triple-buffered content-based analyzer", "ProgressPercent": 640,
        "FileName": "Prohaska, Tremblay and Waelchi", "CancellationBehaviour": "CanCancel"
    });
    let res = app
        .request(Method::PUT, &format!("/api/v1/BatchTask/{id}"))
        .header("Accept", "application/json; charset=utf-8")
        .header("Accept-Language", "fr,de,ru,zh")
        .json(&sample)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    assert_eq!(t["State"], "Started");
    assert_eq!(t["Description"], "Extended 6th generation monitoring");
    assert_eq!(t["Response"], "et");
    assert_eq!(t["Request"], "neque");
    assert_eq!(t["StartCount"], 1, "moving to Started counts a start");
    assert!(t["LastStarted"].is_string());
    for unchanged in [
        "Name",
        "AssociateId",
        "DetailsTable",
        "DetailsRecord",
        "ParameterObject",
        "Created",
        "DatabaseSerialNumber",
        "Context",
        "Result",
        "ProgressDescription",
        "ProgressPercent",
        "FileName",
        "CancellationBehaviour",
    ] {
        assert_eq!(t[unchanged], before[unchanged], "{unchanged} must not change");
    }
    assert_eq!(app.task(id).await, t, "the answer is what is stored");
}

#[tokio::test]
async fn put_absent_keeps_null_clears_and_state_moves_are_enforced() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Moves", "Description": "d", "Request": "q"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let t: Value = app.put_json(&path, &json!({"Description": null})).await.json().await.unwrap();
    assert_eq!(t["Description"], Value::Null);
    assert_eq!(t["Request"], "q");

    let res = app.put_json(&path, &json!({"State": "Succeeded"})).await;
    let body = assert_error(res, 409, "SoConflictException", "New").await;
    assert!(body["ErrorMessage"].as_str().unwrap().contains("Succeeded"));
    for (to, status) in [
        ("Aquired", 200),
        ("Aquired", 200),
        ("New", 200),
        ("Started", 200),
        ("Succeeded", 200),
        ("Started", 409),
        ("New", 200),
    ] {
        let res = app.put_json(&path, &json!({"State": to})).await;
        assert_eq!(res.status(), status, "move to {to}: {}", res.text().await.unwrap());
    }
    let t = app.task(id).await;
    assert_eq!(t["StartCount"], 1);
    let started = app.put_json(&path, &json!({"State": 3})).await;
    assert_eq!(started.status(), 200, "state by number");
    assert_eq!(app.task(id).await["StartCount"], 2);
}

#[tokio::test]
async fn put_rejects_all_unknown_and_id_mismatch_without_changing_anything() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Guarded", "Description": "orig"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let before = app.task(id).await;
    assert_error(
        app.put_json(&path, &json!({"State": "All", "Description": "x"})).await,
        400,
        "ArgumentException",
        "All",
    )
    .await;
    assert_error(app.put_json(&path, &json!({"State": "Unknown"})).await, 400, "ArgumentException", "Unknown").await;
    assert_error(app.put_json(&path, &json!({"State": "Done"})).await, 400, "ArgumentException", "State").await;
    assert_error(app.put_json(&path, &json!({"Id": id + 1, "Description": "x"})).await, 400, "ArgumentException", "Id")
        .await;
    assert_error(
        app.put_json(&path, &json!({"Description": "d".repeat(255)})).await,
        400,
        "ArgumentException",
        "Description",
    )
    .await;
    assert_error(app.put_json(&path, &json!({"Description": {"a": 1}})).await, 400, "ArgumentException", "Description")
        .await;
    assert_error(app.put_json(&path, &json!([1, 2])).await, 400, "ArgumentException", "BatchTaskInfo").await;
    assert_error(
        app.put_json("/api/v1/BatchTask/999999", &json!({"Description": "x"})).await,
        404,
        "SoNotFoundException",
        "999999",
    )
    .await;
    assert_error(
        app.put_json("/api/v1/BatchTask/abc", &json!({"Description": "x"})).await,
        400,
        "ArgumentException",
        "Id",
    )
    .await;
    assert_eq!(app.task(id).await, before, "nothing changed");
    // Id 0 in the body means "not given".
    assert_eq!(app.put_json(&path, &json!({"Id": 0, "Description": "ok"})).await.status(), 200);
}

#[tokio::test]
async fn etag_if_match_and_conditional_get() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "Etag"})).await;
    let path = format!("/api/v1/BatchTask/{id}");
    let res = app.get(&path).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let last_modified = res.headers()["last-modified"].to_str().unwrap().to_owned();
    let res = app.request(Method::GET, &path).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 304);
    let res = app.request(Method::GET, &path).header("If-Modified-Since", &last_modified).send().await.unwrap();
    assert_eq!(res.status(), 304);

    let ok = app
        .request(Method::PUT, &path)
        .header("If-Match", &etag)
        .json(&json!({"Description": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let new_etag = ok.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let stale = app
        .request(Method::PUT, &path)
        .header("If-Match", &etag)
        .json(&json!({"Description": "2"}))
        .send()
        .await
        .unwrap();
    assert_error(stale, 412, "SoPreconditionFailedException", &id.to_string()).await;
    let stale = app.request(Method::DELETE, &path).header("If-Match", &etag).send().await.unwrap();
    assert_eq!(stale.status(), 412);
    let stale = app.request(Method::POST, &format!("{path}/Stop")).header("If-Match", &etag).send().await.unwrap();
    assert_eq!(stale.status(), 412);
    let old = app
        .request(Method::PUT, &path)
        .header("If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")
        .json(&json!({"Description": "3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 412);
    assert_eq!(app.task(id).await["Description"], "1");
}

#[tokio::test]
async fn stop_fails_waiting_tasks_and_refuses_finished_or_uncancellable_ones() {
    let app = TestApp::spawn().await;
    let stop = |id: i64| format!("/api/v1/BatchTask/{id}/Stop");
    let waiting = app.create(&json!({"Name": "S"})).await;
    let res = app.request(Method::POST, &stop(waiting)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "true");
    let t = app.task(waiting).await;
    assert_eq!(t["State"], "Failed");
    assert!(t["Result"].as_str().unwrap().contains("Cancelled by admin"), "{}", t["Result"]);
    // Finished: false.
    assert_eq!(app.request(Method::POST, &stop(waiting)).send().await.unwrap().text().await.unwrap(), "false");
    // CannotCancel: false, nothing happens.
    let fixed = app.create(&json!({"Name": "S", "CancellationBehaviour": "CannotCancel"})).await;
    assert_eq!(app.request(Method::POST, &stop(fixed)).send().await.unwrap().text().await.unwrap(), "false");
    assert_eq!(app.task(fixed).await["State"], "New");
    // CancelWithWarning: stops, with a Warning header.
    let warned = app.create(&json!({"Name": "S", "CancellationBehaviour": "CancelWithWarning"})).await;
    let res = app.request(Method::POST, &stop(warned)).send().await.unwrap();
    assert!(res.headers().get("warning").is_some());
    assert_eq!(res.text().await.unwrap(), "true");
    // A started task ends Failed too.
    let started = app.create(&json!({"Name": "S"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{started}"), &json!({"State": "Started"})).await;
    assert_eq!(
        app.request(Method::POST, &format!("/api/v1/batchtask/{started}/stop/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "true"
    );
    assert_eq!(app.task(started).await["State"], "Failed");
    // Unknown id: 404.
    assert_error(app.request(Method::POST, &stop(424242)).send().await.unwrap(), 404, "SoNotFoundException", "424242")
        .await;
}

#[tokio::test]
async fn delete_removes_task_blob_and_links_but_not_a_running_task() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "D", "ParameterObject": {"k": "v"}})).await;
    let res = app
        .request(Method::DELETE, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "a Content-Type on a bodiless request is ignored");
    assert_error(app.get(&format!("/api/v1/BatchTask/{id}")).await, 404, "SoNotFoundException", &id.to_string()).await;
    let conn = rusqlite::Connection::open(&app.db_path).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM binaryobject"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM binaryobjectlink"), 0);

    let busy = app.create(&json!({"Name": "D"})).await;
    app.put_json(&format!("/api/v1/BatchTask/{busy}"), &json!({"State": "Aquired"})).await;
    let res = app.request(Method::DELETE, &format!("/api/v1/BatchTask/{busy}")).send().await.unwrap();
    assert_error(res, 409, "SoConflictException", "Aquired").await;
    assert_eq!(app.task(busy).await["State"], "Aquired");
    assert_eq!(app.request(Method::DELETE, "/api/v1/BatchTask/777777").send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn odata_list_pages_orders_selects_and_filters() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create(&json!({"Name": format!("L{i}"), "Description": format!("item {i}")})).await);
    }
    app.put_json(&format!("/api/v1/BatchTask/{}", ids[2]), &json!({"State": "Started"})).await;

    let page: Value = app.get("/api/v1/BatchTask?$top=2&$select=DefinitionName,State").await.json().await.unwrap();
    let rows = page["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["PrimaryKey"], ids[0]);
    assert_eq!(rows[0]["EntityName"], "batchtask");
    assert_eq!(rows[0]["DefinitionName"], "L0");
    assert_eq!(rows[0]["State"], 1, "the archive's State column is numeric");
    let next = page["odata.nextLink"].as_str().unwrap();
    assert!(next.contains("%24skip=2") || next.contains("$skip=2"), "{next}");
    let path = &next[app.base.len()..];
    let page2: Value = app.get(path).await.json().await.unwrap();
    assert_eq!(page2["value"][0]["PrimaryKey"], ids[2]);

    let desc: Value = app.get("/api/v1/BatchTask?$orderby=DefinitionName%20desc&$top=1").await.json().await.unwrap();
    assert_eq!(desc["value"][0]["PrimaryKey"], ids[4]);
    assert_eq!(desc["odata.nextLink"].as_str().is_some(), true);
    let last: Value = app.get("/api/v1/BatchTask?$skip=4").await.json().await.unwrap();
    assert_eq!(last["odata.nextLink"], Value::Null);

    let filtered: Value = app
        .get("/api/v1/BatchTask?$filter=State%20eq%20'Started'%20or%20Description%20contains%20'm%204'")
        .await
        .json()
        .await
        .unwrap();
    let got: Vec<i64> =
        filtered["value"].as_array().unwrap().iter().map(|r| r["PrimaryKey"].as_i64().unwrap()).collect();
    assert_eq!(got, vec![ids[2], ids[4]]);

    assert_error(app.get("/api/v1/BatchTask?$select=Nope").await, 400, "ArgumentException", "Nope").await;
    assert_error(app.get("/api/v1/BatchTask?$orderBy=Request").await, 400, "ArgumentException", "Request").await;
    assert_error(app.get("/api/v1/BatchTask?$top=5000").await, 400, "ArgumentException", "$top").await;
    assert_error(app.get("/api/v1/BatchTask?$top=-1").await, 400, "ArgumentException", "$top").await;
    assert_error(app.get("/api/v1/BatchTask?$filter=State%20eq").await, 400, "ArgumentException", "position 8").await;
}

#[tokio::test]
async fn discovery_routing_and_negotiation_leniency() {
    let app = TestApp::spawn().await;
    let res = app.client.get(app.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET /api needs no credentials");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["Version"], "v1");
    assert!(v["v1"].as_str().unwrap().ends_with("/api/v1"));
    let map: Value = app.get("/api/v1").await.json().await.unwrap();
    assert!(map.as_object().unwrap().keys().any(|k| k.ends_with("/api/v1/Agents/Batch/StartBatchJob")));
    assert_eq!(app.client.get(app.url("/api/v1")).send().await.unwrap().status(), 401);

    let res = app.request(Method::POST, "/API/V1/BATCHTASK/").json(&json!({"Name": "Case"})).send().await.unwrap();
    assert_eq!(res.status(), 200, "case-insensitive fixed segments and a trailing slash");
    let id: i64 = res.json().await.unwrap();
    for accept in ["aplication/json", "*/*", "application/json-patch+json", "text/html", ""] {
        let res =
            app.request(Method::GET, &format!("/api/v1/BatchTask/{id}")).header("Accept", accept).send().await.unwrap();
        assert_eq!(res.status(), 200, "{accept}");
        assert_eq!(res.headers()["content-type"], "application/json; charset=utf-8", "{accept}");
    }
    let res = app
        .request(Method::GET, &format!("/api/v1/BatchTask/{id}"))
        .header("Content-Type", "application/bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "Content-Type ignored without a body");
    assert_error(app.get("/api/v1/Nothing").await, 404, "SoNotFoundException", "/api/v1/Nothing").await;
}

#[tokio::test]
async fn path_prefix_is_accepted_in_front_of_api() {
    let app = TestApp::spawn_with(|c| c.path_prefix = "/Cust12345".into()).await;
    let res =
        app.request(Method::POST, "/Cust12345/api/v1/BatchTask").json(&json!({"Name": "P"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["location"].to_str().unwrap().starts_with("/Cust12345/api/v1/BatchTask/"));
    let id: i64 = res.json().await.unwrap();
    assert_eq!(app.get(&format!("/cust12345/api/v1/BatchTask/{id}")).await.status(), 200);
    assert_eq!(app.get(&format!("/api/v1/BatchTask/{id}")).await.status(), 200, "the bare path still works");
}

#[tokio::test]
async fn dates_follow_the_base_zone_and_so_timezone() {
    let app = TestApp::spawn_with(|c| c.base_zone = chrono_tz::Tz::Europe__Oslo).await;
    let id = app.create(&json!({"Name": "Tz"})).await;
    let created = app.task(id).await["Created"].as_str().unwrap().to_owned();
    assert!(created.ends_with("+01:00") || created.ends_with("+02:00"), "{created}");
    let res = app
        .request(Method::GET, &format!("/api/v1/BatchTask/{id}"))
        .header("SO-TimeZone", "US-NY")
        .send()
        .await
        .unwrap();
    let t: Value = res.json().await.unwrap();
    let ny = t["Created"].as_str().unwrap();
    assert!(ny.ends_with("-05:00") || ny.ends_with("-04:00"), "{ny}");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(ny).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&created).unwrap(),
        "same instant"
    );
    let bad = app
        .request(Method::GET, &format!("/api/v1/BatchTask/{id}"))
        .header("SO-TimeZone", "Mars/Base")
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "ArgumentException", "SO-TimeZone").await;
}
