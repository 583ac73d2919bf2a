//! What a task's definition or parameters cannot make the runner do: break out of a body
//! template, see the server's environment, hold unbounded output, follow redirects unasked, or
//! leave a task Started after its run panicked.

use std::time::Duration;

use serde_json::{Value, json};

use crate::runner::{hook_server, spawn_runner, wait_task};

fn ended(t: &Value) -> bool {
    matches!(t["State"].as_str(), Some("Succeeded" | "SucceededManualCleanup" | "Failed"))
}

// ---- values in body templates --------------------------------------------------------------

#[tokio::test]
async fn a_parameter_cannot_break_out_of_a_json_body_string() {
    let (base, mut seen) = hook_server().await;
    // The template of batchd.example.toml; its Content-Type makes the body JSON.
    let defs = format!(
        r#"[[definition]]
name = "notify"
runner = "http"
url = "{base}/hooks/{{id}}"
headers = {{ "Content-Type" = "application/json" }}
body = "{{\"task\": {{id}}, \"contact\": \"{{ContactId}}\"}}"
"#
    );
    let app = spawn_runner(&defs).await;
    for hostile in [r#"1", "admin": true, "x": ""#, "line\nbreak \\ \"q\" \u{1} \u{2028} ünï </script>"] {
        let id = app.create(&json!({"Name": "notify", "ParameterObject": {"ContactId": hostile}})).await;
        let t = wait_task(&app, id, Duration::from_secs(20), ended).await;
        assert_eq!(t["State"], "Succeeded", "{t}");
        let (_, _, body) = seen.recv().await.unwrap();
        let sent: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        let keys: Vec<&String> = sent.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["task", "contact"], "the value changed the body's structure: {body}");
        assert_eq!(sent["contact"], hostile, "{body}");
        assert_eq!(sent["task"], id);
    }
}

#[tokio::test]
async fn a_parameter_cannot_add_fields_to_a_form_body() {
    let (base, mut seen) = hook_server().await;
    let defs = format!(
        r#"[[definition]]
name = "form"
runner = "http"
url = "{base}/form"
headers = {{ "Content-Type" = "application/x-www-form-urlencoded" }}
body = "contact={{ContactId}}&role=user"
"#
    );
    let app = spawn_runner(&defs).await;
    let hostile = "1&role=admin =%+ü";
    let id = app.create(&json!({"Name": "form", "ParameterObject": {"ContactId": hostile}})).await;
    let t = wait_task(&app, id, Duration::from_secs(20), ended).await;
    assert_eq!(t["State"], "Succeeded", "{t}");
    let (_, _, body) = seen.recv().await.unwrap();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(pairs, [("contact".to_owned(), hostile.to_owned()), ("role".to_owned(), "user".to_owned())], "{body}");
}
