//! Response formats: JSON (the default for anything not asking for XML) and XML
//! (`application/xml`, `text/xml`), chosen from `Accept` with q-values.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::wire::{Prop, TaskView, field_properties_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// Picks the most preferred of JSON and XML in `Accept`. Unknown, misspelt, `*/*` and patch
    /// types count as JSON; ties go to JSON.
    pub fn negotiate(headers: &HeaderMap) -> Format {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Format::Json;
        };
        let mut best_xml: f32 = -1.0;
        let mut best_json: f32 = -1.0;
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            if media == "application/xml" || media == "text/xml" {
                best_xml = best_xml.max(q);
            } else {
                best_json = best_json.max(q);
            }
        }
        if best_xml > 0.0 && best_xml > best_json { Format::Xml } else { Format::Json }
    }

    pub fn content_type(self) -> HeaderValue {
        match self {
            Format::Json => HeaderValue::from_static("application/json; charset=utf-8"),
            Format::Xml => HeaderValue::from_static("application/xml; charset=utf-8"),
        }
    }
}

/// Something every endpoint can answer, in either format.
pub enum Payload<'a> {
    Task(TaskView<'a>),
    Tasks(Vec<TaskView<'a>>),
    Int(i64),
    Bool(bool),
    Null,
    /// The agents' "request is invalid" answer.
    Invalid {
        message: String,
        detail: String,
    },
}

pub fn render(format: Format, payload: &Payload<'_>) -> Vec<u8> {
    match format {
        Format::Json => render_json(payload),
        Format::Xml => render_xml(payload),
    }
}

fn render_json(payload: &Payload<'_>) -> Vec<u8> {
    let r = match payload {
        Payload::Task(t) => serde_json::to_vec(t),
        Payload::Tasks(ts) => serde_json::to_vec(ts),
        Payload::Int(i) => serde_json::to_vec(i),
        Payload::Bool(b) => serde_json::to_vec(b),
        Payload::Null => Ok(b"null".to_vec()),
        Payload::Invalid { message, detail } => {
            serde_json::to_vec(&serde_json::json!({"Message": message, "MessageDetail": detail}))
        }
    };
    r.expect("wire values always serialise")
}

/// Builds the response for `payload` with status 200.
pub fn respond(format: Format, payload: &Payload<'_>) -> Response {
    let body = render(format, payload);
    (StatusCode::OK, [(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

pub fn error_body(format: Format, error_type: &str, message: &str) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(&serde_json::json!({
            "Error": true,
            "ErrorType": error_type,
            "ErrorMessage": message,
            "Message": message,
            "ErrorSource": "batchd",
        }))
        .expect("static shape"),
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open("Error");
            x.leaf("Error", "true");
            x.leaf("ErrorType", error_type);
            x.leaf("ErrorMessage", message);
            x.leaf("Message", message);
            x.leaf("ErrorSource", "batchd");
            x.close("Error");
            x.finish()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// XML

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> XmlWriter {
        XmlWriter { out: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>") }
    }
    pub fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }
    /// The root element, declaring the `i:` prefix used for nil values.
    pub fn open_root(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xmlns:i=\"");
        self.out.push_str(XSI);
        self.out.push_str("\">");
    }
    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }
    pub fn leaf(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_into(&mut self.out, text);
        self.close(name);
    }
    pub fn nil(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" i:nil=\"true\"/>");
    }
    pub fn finish(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

impl Default for XmlWriter {
    fn default() -> Self {
        Self::new()
    }
}

pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters, even escaped: write them as
            // character references of the replacement character rather than break the document.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

pub(crate) fn write_task(x: &mut XmlWriter, view: &TaskView<'_>) {
    view.for_each(|name, prop| match prop {
        Prop::Int(i) => x.leaf(name, &i.to_string()),
        Prop::Bool(b) => x.leaf(name, if b { "true" } else { "false" }),
        Prop::Text(Some(t)) => x.leaf(name, t),
        Prop::Date(Some(d)) => x.leaf(name, &d),
        Prop::Text(None) | Prop::Date(None) | Prop::Dict(None) => x.nil(name),
        Prop::Dict(Some(p)) => {
            x.open(name);
            for (k, v) in &p.0 {
                x.open("StringKeyValuePair");
                x.leaf("Key", k);
                x.leaf("Value", v);
                x.close("StringKeyValuePair");
            }
            x.close(name);
        }
        Prop::Enum(e) => x.leaf(name, e),
        Prop::TableRight(r) => {
            x.open(name);
            x.leaf("Mask", &r.flag_names().join(" "));
            x.leaf("Reason", "");
            x.close(name);
        }
        Prop::FieldProperties(updatable) => {
            // Rebuilt from the same cached JSON so the two formats cannot drift.
            let v: serde_json::Value =
                serde_json::from_str(field_properties_json(updatable).get()).expect("static JSON");
            x.open(name);
            for (field, fp) in v.as_object().expect("object") {
                x.open("FieldPropertyDictionaryKeyValuePair");
                x.leaf("Key", field);
                x.open("Value");
                x.open("FieldRight");
                x.leaf("Mask", fp["FieldRight"]["Mask"].as_str().unwrap_or(""));
                x.leaf("Reason", "");
                x.close("FieldRight");
                x.leaf("FieldType", fp["FieldType"].as_str().unwrap_or(""));
                x.leaf("FieldLength", &fp["FieldLength"].to_string());
                x.close("Value");
                x.close("FieldPropertyDictionaryKeyValuePair");
            }
            x.close(name);
        }
    });
}

fn render_xml(payload: &Payload<'_>) -> Vec<u8> {
    let mut x = XmlWriter::new();
    match payload {
        Payload::Task(t) => {
            x.open_root("BatchTaskInfo");
            write_task(&mut x, t);
            x.close("BatchTaskInfo");
        }
        Payload::Tasks(ts) => {
            x.open_root("ArrayOfBatchTaskInfo");
            for t in ts {
                x.open("BatchTaskInfo");
                write_task(&mut x, t);
                x.close("BatchTaskInfo");
            }
            x.close("ArrayOfBatchTaskInfo");
        }
        Payload::Int(i) => x.leaf("int", &i.to_string()),
        Payload::Bool(b) => x.leaf("boolean", if *b { "true" } else { "false" }),
        Payload::Null => {
            x.open_root("BatchTaskInfo");
            x.close("BatchTaskInfo");
            // An empty answer in XML is a nil root.
            x = XmlWriter::new();
            x.out.push_str(&format!("<BatchTaskInfo xmlns:i=\"{XSI}\" i:nil=\"true\"/>"));
        }
        Payload::Invalid { message, detail } => {
            x.open("Error");
            x.leaf("Message", message);
            x.leaf("MessageDetail", detail);
            x.close("Error");
        }
    }
    x.finish()
}
