//! Request and response formats: XML in (plain and DataContract-style), XML out checked by reading
//! it back, and the same call made in JSON, XML and form bodies answering the same on every
//! endpoint.

use batchd::http::xml;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, assert_error};

const ARRAYS_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Properties that differ between two tasks created the same way (DetailsRecord points at the
/// task's own ParameterObject blob).
const PER_TASK: [&str; 5] = ["Id", "Created", "LastStarted", "Result", "DetailsRecord"];

fn without_identity(mut task: Value) -> Value {
    for p in PER_TASK {
        task.as_object_mut().unwrap().remove(p);
    }
    task
}

/// JSON as the XML reader sees it: scalars as their text, masks space-separated.
fn as_xml_sees_it(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(a) => Value::Array(a.iter().map(as_xml_sees_it).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("Mask", Value::String(s)) => Value::String(s.replace(", ", " ")),
                        _ => as_xml_sees_it(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn send(app: &TestApp, method: Method, path: &str, ctype: &str, accept: &str, body: String) -> reqwest::Response {
    app.request(method, path).header("Content-Type", ctype).header("Accept", accept).body(body).send().await.unwrap()
}

async fn ok_json(res: reqwest::Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The same task in real-world XML shapes: the reference JSON is the first entry's meaning.
fn create_samples() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "plain, no namespace",
            "application/xml",
            "<BatchTaskInfo><Name>Sample</Name><Description>a &amp; b &lt;c&gt;</Description>\
             <IsSystemTask>false</IsSystemTask><ParameterObject><StringKeyValuePair><Key>k1</Key><Value>v1</Value>\
             </StringKeyValuePair><StringKeyValuePair><Key>k2</Key><Value/></StringKeyValuePair></ParameterObject>\
             <CancellationBehaviour>CannotCancel</CancellationBehaviour></BatchTaskInfo>"
                .into(),
        ),
        (
            "DataContract: default namespace, i:nil, every property, server fields ignored",
            "application/xml; charset=utf-8",
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?>
<BatchTaskInfo xmlns:i="{XSI}" xmlns="http://schemas.datacontract.org/2004/07/SuperOffice.CRM.Services">
  <Id>0</Id>
  <Name>Sample</Name>
  <AssociateId>0</AssociateId>
  <DetailsTable>0</DetailsTable>
  <DetailsRecord>0</DetailsRecord>
  <IsSystemTask>false</IsSystemTask>
  <IsInternalTask>false</IsInternalTask>
  <ParameterObject>
    <StringKeyValuePair><Key>k1</Key><Value>v1</Value></StringKeyValuePair>
    <StringKeyValuePair><Key>k2</Key><Value></Value></StringKeyValuePair>
  </ParameterObject>
  <LastStarted i:nil="true"/>
  <Created>0001-01-01T00:00:00</Created>
  <StartCount>0</StartCount>
  <DatabaseSerialNumber i:nil="true"/>
  <Context i:nil="true"/>
  <Result i:nil="true"/>
  <State>Unknown</State>
  <Description>a &amp; b &lt;c&gt;</Description>
  <Response i:nil="true"/>
  <Request i:nil="true"/>
  <ProgressDescription i:nil="true"/>
  <ProgressPercent>0</ProgressPercent>
  <FileName i:nil="true"/>
  <CancellationBehaviour>CannotCancel</CancellationBehaviour>
  <TableRight i:nil="true"/>
  <FieldProperties i:nil="true"/>
</BatchTaskInfo>"#
            ),
        ),
        (
            "SOAP-style prefixes on every element, enum by number",
            "text/xml",
            "<b:BatchTaskInfo xmlns:b=\"http://www.superoffice.net/ws/crm/NetServer/Services88\">\
             <b:Name>Sample</b:Name><b:Description>a &amp; b &lt;c&gt;</b:Description>\
             <b:ParameterObject><b:StringKeyValuePair><b:Key>k1</b:Key><b:Value>v1</b:Value></b:StringKeyValuePair>\
             <b:StringKeyValuePair><b:Key>k2</b:Key><b:Value/></b:StringKeyValuePair></b:ParameterObject>\
             <b:CancellationBehaviour>2</b:CancellationBehaviour></b:BatchTaskInfo>"
                .into(),
        ),
        (
            "BOM, utf-16 declaration (as .NET writes to a string), CRLF, comment, CDATA",
            "text/xml; charset=utf-8",
            "\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-16\"?>\r\n<!-- from a .NET client -->\r\n\
             <BatchTaskInfo>\r\n  <Name>Sample</Name>\r\n  <Description><![CDATA[a & b <c>]]></Description>\r\n\
             <ParameterObject><StringKeyValuePair><Key>k1</Key><Value>v1</Value></StringKeyValuePair>\
             <StringKeyValuePair><Key>k2</Key><Value i:nil=\"true\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"/>\
             </StringKeyValuePair></ParameterObject>\r\n  <CancellationBehaviour>cannotcancel</CancellationBehaviour>\r\n\
             </BatchTaskInfo>"
                .into(),
        ),
        (
            "camelCase names and a plain element dictionary",
            "application/xml",
            "<batchTaskInfo><name>Sample</name><description>a &amp; b &#60;c&#x3E;</description>\
             <parameterObject><k1>v1</k1><k2></k2></parameterObject>\
             <cancellationBehaviour>CannotCancel</cancellationBehaviour></batchTaskInfo>"
                .into(),
        ),
    ]
}

#[tokio::test]
async fn xml_samples_create_the_same_task_as_json() {
    let app = TestApp::spawn().await;
    let reference = app
        .create(&json!({"Name": "Sample", "Description": "a & b <c>", "IsSystemTask": false,
            "ParameterObject": {"k1": "v1", "k2": ""}, "CancellationBehaviour": "CannotCancel"}))
        .await;
    let want = without_identity(app.task(reference).await);
    for (label, ctype, body) in create_samples() {
        let res = send(&app, Method::POST, "/api/v1/BatchTask", ctype, "application/json", body).await;
        let id = ok_json(res).await.as_i64().unwrap_or_else(|| panic!("{label}: not an id"));
        assert_eq!(without_identity(app.task(id).await), want, "{label}");
    }
}

#[tokio::test]
async fn bad_xml_is_a_400_that_says_why_never_a_500() {
    let app = TestApp::spawn().await;
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\
                <BatchTaskInfo><Name>&lol2;</Name></BatchTaskInfo>";
    let deep = "<a>".repeat(100) + &"</a>".repeat(100);
    let many = format!("<BatchTaskInfo>{}</BatchTaskInfo>", "<x/>".repeat(100_001));
    let external = "<!DOCTYPE x SYSTEM \"file:///etc/passwd\"><BatchTaskInfo><Name>x</Name></BatchTaskInfo>";
    for (body, needle) in [
        (bomb.to_owned(), "DOCTYPE"),
        (external.to_owned(), "DOCTYPE"),
        ("<BatchTaskInfo><Name>&custom;</Name></BatchTaskInfo>".to_owned(), "custom"),
        (deep, "deeper"),
        (many, "elements"),
        ("<BatchTaskInfo><Name>x</Name>".to_owned(), "ends inside"),
        ("<BatchTaskInfo><Name>x</Nam></BatchTaskInfo>".to_owned(), "XML"),
        ("<a/><b/>".to_owned(), "second root"),
        ("not xml at all".to_owned(), "outside the root"),
        ("\u{FF}\u{FE}<".to_owned(), "XML"),
    ] {
        let res = send(&app, Method::POST, "/api/v1/BatchTask", "application/xml", "application/json", body).await;
        assert_error(res, 400, "ArgumentException", needle).await;
    }
    // Well-formed XML that is not a task names the problem like JSON would.
    let res =
        send(&app, Method::POST, "/api/v1/BatchTask", "application/xml", "application/json", "<int>5</int>".into())
            .await;
    assert_error(res, 400, "ArgumentException", "BatchTaskInfo").await;
    let res = send(
        &app,
        Method::POST,
        "/api/v1/BatchTask",
        "application/xml",
        "application/json",
        "<BatchTaskInfo><Name>x</Name><IsSystemTask>maybe</IsSystemTask></BatchTaskInfo>".into(),
    )
    .await;
    assert_error(res, 400, "ArgumentException", "IsSystemTask").await;
    // Errors come back in XML when XML is asked for.
    let res = send(&app, Method::POST, "/api/v1/BatchTask", "application/xml", "application/xml", "<a>".into()).await;
    assert_eq!(res.status(), 400);
    let doc = xml::parse(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(doc.root, "Error");
    assert_eq!(doc.value["ErrorType"], "ArgumentException");
}

#[tokio::test]
async fn xml_output_reads_back_as_the_json_output() {
    let app = TestApp::spawn().await;
    let id = app
        .create(&json!({"Name": "Out", "Description": "tab\tcr\r\nlf\n & <x> \"q\" 'a' ✓ \u{1F600}",
            "ParameterObject": {"a": "1", "": "empty key", "sp ace": " padded "}, "Request": ""}))
        .await;
    app.put_json(&format!("/api/v1/BatchTask/{id}"), &json!({"State": "Started"})).await;
    let bare = app.create(&json!({"Name": "Bare"})).await;
    for (path, root) in [
        (format!("/api/v1/BatchTask/{id}"), "BatchTaskInfo"),
        (format!("/api/v1/BatchTask/{bare}"), "BatchTaskInfo"),
        ("/api/v1/BatchTask/All".to_owned(), "ArrayOfBatchTaskInfo"),
        ("/api/v1/BatchTask/Failed".to_owned(), "ArrayOfBatchTaskInfo"),
    ] {
        for zone in ["UTC", "NO", "US-NY"] {
            let json: Value =
                ok_json(app.request(Method::GET, &path).header("SO-TimeZone", zone).send().await.unwrap()).await;
            let res = app.request(Method::GET, &path).header("Accept", "application/xml").header("SO-TimeZone", zone);
            let res = res.send().await.unwrap();
            assert_eq!(res.headers()["content-type"], "application/xml; charset=utf-8");
            let doc = xml::parse(&res.bytes().await.unwrap()).unwrap();
            assert_eq!(doc.root, root, "{path}");
            assert_eq!(doc.value, as_xml_sees_it(&json), "{path} in {zone}");
        }
    }
    // The bare answers of agents and POST.
    for (method, path, body, root) in [
        (Method::POST, "/api/v1/BatchTask", json!({"Name": "X"}), "int"),
        (Method::POST, "/api/v1/Agents/Batch/StopBatchJob", json!({"Id": bare}), "boolean"),
        (Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo", json!({"Id": 999_999}), "BatchTaskInfo"),
        (Method::POST, "/api/v1/Agents/Batch/GetBatchTaskInfo", json!({}), "Error"),
    ] {
        let res = app.request(method, path).header("Accept", "text/xml").json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        let doc = xml::parse(text.as_bytes()).unwrap();
        assert_eq!(doc.root, root, "{text}");
        if root == "int" || root == "boolean" {
            // What DataContractSerializer writes and insists on reading.
            assert!(text.contains("xmlns=\"http://schemas.microsoft.com/2003/10/Serialization/\""), "{text}");
        }
        if root == "BatchTaskInfo" {
            assert_eq!(doc.value, Value::Null, "{text}");
            assert!(text.contains("i:nil=\"true\""), "{text}");
        }
        if root == "Error" {
            assert_eq!(doc.value["Message"], "The request is invalid.", "{text}");
            assert!(doc.value["MessageDetail"].as_str().unwrap().contains("Id"), "{text}");
        }
    }
}

#[tokio::test]
async fn a_task_written_in_xml_reads_back_identically_in_json_and_the_reverse() {
    let app = TestApp::spawn().await;
    let body = json!({"Name": "Both ways", "Description": "d & <d>", "Context": "ctx", "Request": "req",
        "DatabaseSerialNumber": "SN1", "ParameterObject": {"x": "1", "y": "two words"}, "FileName": "f.txt"});
    let from_json = app.create(&body).await;
    // Write the JSON-made task's XML back as a new task: the server's own XML is valid input.
    let xml_out = app
        .request(Method::GET, &format!("/api/v1/BatchTask/{from_json}"))
        .header("Accept", "application/xml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = send(&app, Method::POST, "/api/v1/BatchTask", "application/xml", "application/json", xml_out).await;
    let from_xml = ok_json(res).await.as_i64().unwrap();
    assert_eq!(without_identity(app.task(from_xml).await), without_identity(app.task(from_json).await));
    // And an update written in XML reads back in JSON as the JSON update would.
    let put = |id: i64| format!("/api/v1/BatchTask/{id}");
    let res = send(
        &app,
        Method::PUT,
        &put(from_xml),
        "application/xml",
        "application/xml",
        "<BatchTaskInfo><State>Started</State><Response>r &amp; r</Response><Description i:nil=\"true\" \
         xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"/></BatchTaskInfo>"
            .into(),
    )
    .await;
    assert_eq!(res.status(), 200);
    app.put_json(&put(from_json), &json!({"State": "Started", "Response": "r & r", "Description": null})).await;
    assert_eq!(without_identity(app.task(from_xml).await), without_identity(app.task(from_json).await));
}

/// One agent parameter, written in each body format.
#[derive(Clone)]
enum P {
    Int(i64),
    Text(&'static str),
    Ints(Vec<i64>),
    Task(Vec<(&'static str, String)>),
}

fn json_body(params: &[(&str, P)]) -> String {
    let mut m = Map::new();
    for (name, p) in params {
        let v = match p {
            P::Int(i) => json!(i),
            P::Text(t) => json!(t),
            P::Ints(v) => json!(v),
            P::Task(props) => Value::Object(props.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()),
        };
        m.insert((*name).to_owned(), v);
    }
    Value::Object(m).to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `<Method>` wrapper; `namespaced` writes it the way a .NET DataContract client does.
fn xml_body(method: &str, params: &[(&str, P)], namespaced: bool) -> String {
    let mut out = if namespaced {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><{method} xmlns:i=\"{XSI}\" \
             xmlns=\"http://www.superoffice.net/ws/crm/NetServer/Services88\">"
        )
    } else {
        format!("<{method}>")
    };
    for (name, p) in params {
        match p {
            P::Int(i) => out.push_str(&format!("<{name}>{i}</{name}>")),
            P::Text(t) => out.push_str(&format!("<{name}>{}</{name}>", escape(t))),
            P::Ints(v) if namespaced => {
                out.push_str(&format!("<{name} xmlns:a=\"{ARRAYS_NS}\">"));
                for i in v {
                    out.push_str(&format!("<a:int>{i}</a:int>"));
                }
                out.push_str(&format!("</{name}>"));
            }
            P::Ints(v) => {
                out.push_str(&format!("<{name}>"));
                for i in v {
                    out.push_str(&format!("<int>{i}</int>"));
                }
                out.push_str(&format!("</{name}>"));
            }
            P::Task(props) => {
                out.push_str(&format!("<{name}>"));
                for (k, v) in props {
                    out.push_str(&format!("<{k}>{}</{k}>", escape(v)));
                }
                out.push_str(&format!("</{name}>"));
            }
        }
    }
    out.push_str(&format!("</{method}>"));
    out
}

/// Form bodies cannot say "empty list", so such calls are skipped in that format.
fn form_body(params: &[(&str, P)]) -> Option<String> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (name, p) in params {
        match p {
            P::Int(i) => {
                s.append_pair(name, &i.to_string());
            }
            P::Text(t) => {
                s.append_pair(name, t);
            }
            P::Ints(v) if v.is_empty() => return None,
            P::Ints(v) => {
                for i in v {
                    s.append_pair(name, &i.to_string());
                }
            }
            P::Task(props) => {
                for (k, v) in props {
                    s.append_pair(&format!("{name}.{k}"), v);
                }
            }
        }
    }
    Some(s.finish())
}

/// Calls an agent method with the same parameters in JSON, plain XML, DataContract XML and form
/// bodies, and returns the four answers (status, JSON body or null).
async fn agent_in_every_format(app: &TestApp, method: &str, params: &[(&str, P)]) -> Vec<(String, u16, Value)> {
    let path = format!("/api/v1/Agents/Batch/{method}");
    let mut bodies = vec![
        ("json", "application/json", json_body(params)),
        ("xml", "application/xml", xml_body(method, params, false)),
        ("xml+ns", "text/xml", xml_body(method, params, true)),
    ];
    if let Some(f) = form_body(params) {
        bodies.push(("form", "application/x-www-form-urlencoded", f));
    }
    let mut out = Vec::new();
    for (label, ctype, body) in bodies {
        let res = send(app, Method::POST, &path, ctype, "application/json", body).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        out.push((label.to_owned(), status, value));
    }
    out
}

fn assert_all_equal(method: &str, answers: &[(String, u16, Value)]) {
    let (_, status, first) = &answers[0];
    for (label, s, v) in answers {
        assert_eq!((s, v), (status, first), "{method} in {label} differs from JSON");
    }
}

#[tokio::test]
async fn every_agent_answers_the_same_in_json_xml_and_form() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for (name, desc) in [("Report", "one"), ("Report", "two"), ("Export", "three")] {
        ids.push(app.create(&json!({"Name": name, "Description": desc})).await);
    }
    app.put_json(&format!("/api/v1/BatchTask/{}", ids[1]), &json!({"State": "Started"})).await;
    let sys = app.create(&json!({"Name": "Report", "IsSystemTask": true})).await;

    // Read-only methods: identical answers.
    let reads: Vec<(&str, Vec<(&str, P)>)> = vec![
        ("GetBatchTaskInfo", vec![("Id", P::Int(ids[0]))]),
        ("GetBatchTaskInfo", vec![("Id", P::Int(424_242))]),
        ("GetBatchTaskInfo", vec![]),
        ("GetBatchTaskInfosByAssociates", vec![("AssociateIds", P::Ints(vec![1]))]),
        ("GetBatchTaskInfosByAssociates", vec![("AssociateIds", P::Ints(vec![0, -1]))]),
        ("GetBatchTaskInfosByAssociates", vec![("AssociateIds", P::Ints(vec![]))]),
        ("GetBatchTaskInfosByState", vec![("State", P::Text("Started"))]),
        ("GetBatchTaskInfosByState", vec![("State", P::Text("All"))]),
        ("GetBatchTaskInfosByNameAndState", vec![("Name", P::Text("Report")), ("State", P::Text("New"))]),
        ("GetBatchTaskInfosByNameAndAssociates", vec![("Name", P::Text("Report")), ("AssociateIds", P::Ints(vec![1]))]),
        ("GetBatchTaskInfosByAssociatesAndState", vec![("AssociateIds", P::Ints(vec![1])), ("State", P::Int(1))]),
        ("GetAllBatchTaskInfosByName", vec![("TaskName", P::Text("Report"))]),
        ("GetAllBatchTaskInfosByNameAndState", vec![("TaskName", P::Text("Report")), ("State", P::Text("new"))]),
        ("GetSystemBatchTaskInfosByName", vec![("TaskName", P::Text("Report"))]),
        ("GetSystemBatchTaskInfosByNameAndState", vec![("TaskName", P::Text("Report")), ("State", P::Text("All"))]),
    ];
    for (method, params) in &reads {
        let answers = agent_in_every_format(&app, method, params).await;
        assert_all_equal(method, &answers);
    }
    let system = agent_in_every_format(&app, "GetSystemBatchTaskInfosByName", &[("TaskName", P::Text("Report"))]).await;
    assert_eq!(system[0].2[0]["Id"], sys, "the comparison is not vacuous");

    // StartBatchJob: every format creates the same task.
    let task = P::Task(vec![("Name", "Made".into()), ("Description", "x & y".into()), ("Context", "c".into())]);
    let made = agent_in_every_format(&app, "StartBatchJob", &[("BatchTaskInfo", task)]).await;
    let created: Vec<Value> = tasks_of(&app, made.iter().map(|(_, s, v)| (*s, v.as_i64().unwrap()))).await;
    for t in &created {
        assert_eq!(without_identity(t.clone()), without_identity(created[0].clone()));
    }
    // A bare <BatchTaskInfo> is the parameter itself.
    let res = send(
        &app,
        Method::POST,
        "/api/v1/Agents/Batch/StartBatchJob",
        "application/xml",
        "application/json",
        "<BatchTaskInfo><Name>Made</Name><Description>x &amp; y</Description><Context>c</Context></BatchTaskInfo>"
            .into(),
    )
    .await;
    let bare = ok_json(res).await.as_i64().unwrap();
    assert_eq!(without_identity(app.task(bare).await), without_identity(created[0].clone()));

    // Methods that change one task: each format acts on its own task, with the same outcome.
    let fresh: Vec<i64> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(app.create(&json!({"Name": "Target", "Description": "before"})).await);
        }
        v
    };
    let formats = ["json", "xml", "xml+ns", "form"];
    for (i, format) in formats.iter().enumerate() {
        let id = fresh[i];
        let params = [(
            "BatchTaskInfo",
            P::Task(vec![("Id", id.to_string()), ("State", "Started".into()), ("Response", "done".into())]),
        )];
        let answers = agent_in_every_format_only(&app, "UpdateBatchTask", &params, format).await;
        assert_eq!(answers.1["Id"], id, "{format}");
        assert_eq!((answers.1["State"].as_str(), answers.1["Response"].as_str()), (Some("Started"), Some("done")));
        let stop = agent_in_every_format_only(&app, "StopBatchJob", &[("Id", P::Int(id))], format).await;
        assert_eq!(stop, (200, json!(true)), "{format}");
    }
    for (i, format) in formats.iter().enumerate() {
        let deleted = if i % 2 == 0 {
            agent_in_every_format_only(&app, "DeleteBatchTask", &[("BatchTaskId", P::Int(fresh[i]))], format).await
        } else {
            agent_in_every_format_only(&app, "DeleteBatchTasks", &[("BatchTaskIds", P::Ints(vec![fresh[i]]))], format)
                .await
        };
        assert_eq!(deleted.0, 204, "{format}");
        assert_eq!(app.get(&format!("/api/v1/BatchTask/{}", fresh[i])).await.status(), 404, "{format}");
    }
}

/// One format only (for calls that change state).
async fn agent_in_every_format_only(app: &TestApp, method: &str, params: &[(&str, P)], format: &str) -> (u16, Value) {
    let path = format!("/api/v1/Agents/Batch/{method}");
    let (ctype, body) = match format {
        "json" => ("application/json", json_body(params)),
        "xml" => ("application/xml", xml_body(method, params, false)),
        "xml+ns" => ("text/xml", xml_body(method, params, true)),
        _ => ("application/x-www-form-urlencoded", form_body(params).unwrap()),
    };
    let res = send(app, Method::POST, &path, ctype, "application/json", body).await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

async fn tasks_of(app: &TestApp, ids: impl Iterator<Item = (u16, i64)>) -> Vec<Value> {
    let mut out = Vec::new();
    for (status, id) in ids {
        assert_eq!(status, 200);
        out.push(app.task(id).await);
    }
    out
}

#[tokio::test]
async fn rest_create_and_update_agree_across_json_xml_and_form() {
    let app = TestApp::spawn().await;
    let bodies = [
        ("application/json", r#"{"Name":"Tri","Description":"d","ParameterObject":{"k":"v"}}"#.to_owned()),
        (
            "application/xml",
            "<BatchTaskInfo><Name>Tri</Name><Description>d</Description><ParameterObject><StringKeyValuePair>\
             <Key>k</Key><Value>v</Value></StringKeyValuePair></ParameterObject></BatchTaskInfo>"
                .to_owned(),
        ),
        ("application/x-www-form-urlencoded", "Name=Tri&Description=d&ParameterObject.k=v".to_owned()),
    ];
    let updates = [
        ("application/json", r#"{"State":"Started","Request":"q"}"#.to_owned()),
        ("text/xml", "<BatchTaskInfo><State>3</State><Request>q</Request></BatchTaskInfo>".to_owned()),
        ("application/x-www-form-urlencoded", "State=Started&Request=q".to_owned()),
    ];
    let mut tasks = Vec::new();
    for ((ctype, body), (utype, update)) in bodies.into_iter().zip(updates) {
        let id = ok_json(send(&app, Method::POST, "/api/v1/BatchTask", ctype, "application/json", body).await)
            .await
            .as_i64()
            .unwrap();
        let path = format!("/api/v1/BatchTask/{id}");
        let answer = ok_json(send(&app, Method::PUT, &path, utype, "application/json", update).await).await;
        assert_eq!(answer, app.task(id).await, "{utype}: the answer is what is stored");
        tasks.push(without_identity(answer));
    }
    assert_eq!(tasks[0], tasks[1]);
    assert_eq!(tasks[0], tasks[2]);
    assert_eq!(tasks[0]["StartCount"], 1);
}

#[tokio::test]
async fn format_query_parameter_overrides_accept() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"Name": "F"})).await;
    let res = app.request(Method::GET, "/api/v1/BatchTask?$format=xml").send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/xml; charset=utf-8");
    let doc = xml::parse(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(doc.root, "ODataSlimResponse");
    let row = &doc.value["value"]["row"];
    assert_eq!(row["PrimaryKey"], id.to_string());
    assert_eq!(row["DefinitionName"], "F");
    assert_eq!(doc.value["odata.nextLink"], Value::Null);
    let res = app.request(Method::GET, "/api/v1/BatchTask?$format=JSON").header("Accept", "application/xml").send();
    let res = res.await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/json; charset=utf-8");
    // Errors follow $format too.
    let res = app.request(Method::GET, "/api/v1/BatchTask?$format=xml&$top=x").send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(xml::parse(&res.bytes().await.unwrap()).unwrap().root, "Error");
}
