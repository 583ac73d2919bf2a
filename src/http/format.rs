//! Response formats: JSON (the default for anything not asking for XML) and XML
//! (`application/xml`, `text/xml`), chosen from `Accept` with q-values.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

use super::wire::{Prop, TaskView, field_properties_json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case("application/xml") || media.eq_ignore_ascii_case("text/xml") {
                best_xml = best_xml.max(q);
            } else {
                best_json = best_json.max(q);
            }
        }
        if best_xml > 0.0 && best_xml > best_json { Format::Xml } else { Format::Json }
    }

    /// `$format=xml|json` in the query string overrides `Accept` (SuperOffice's OData lists honour
    /// it; batchd honours it everywhere, errors included, so one URL answers in one format).
    pub fn from_query(query: Option<&str>) -> Option<Format> {
        let query = query?;
        form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k.eq_ignore_ascii_case("$format")).last().and_then(
            |(_, v)| match v.trim().to_ascii_lowercase().as_str() {
                "xml" | "application/xml" | "text/xml" => Some(Format::Xml),
                "json" | "application/json" | "text/json" => Some(Format::Json),
                _ => None,
            },
        )
    }

    /// `$format` if given and known, else `Accept`.
    pub fn choose(headers: &HeaderMap, query: Option<&str>) -> Format {
        Format::from_query(query).unwrap_or_else(|| Format::negotiate(headers))
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
/// DataContractSerializer writes primitives (`<int>`, `<boolean>`) in this namespace and its
/// reader insists on it, so a .NET client reading our answer with `ReadAsAsync<int>` needs it.
const SERIALIZATION_NS: &str = "http://schemas.microsoft.com/2003/10/Serialization/";

pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> XmlWriter {
        // A task with its FieldProperties is about 7 KB: start big enough to rarely regrow.
        let mut out = String::with_capacity(8 * 1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        XmlWriter { out }
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
    /// A primitive root (`<int>`, `<boolean>`) in the DataContract serialization namespace.
    pub fn primitive_root(&mut self, name: &str, text: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xmlns=\"");
        self.out.push_str(SERIALIZATION_NS);
        self.out.push_str("\">");
        escape_into(&mut self.out, text);
        self.close(name);
    }
    /// A nil root: what DataContractSerializer writes for a null object.
    pub fn nil_root(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xmlns:i=\"");
        self.out.push_str(XSI);
        self.out.push_str("\" i:nil=\"true\"/>");
    }
    pub fn raw(&mut self, xml: &str) {
        self.out.push_str(xml);
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
    // Most values need no escaping: copy them whole. 0xEF may start U+FFFE/U+FFFF.
    let special = |b: &u8| {
        matches!(b, b'<' | b'>' | b'&' | b'"' | b'\'' | b'\r' | 0xEF) || (*b < 0x20 && *b != b'\t' && *b != b'\n')
    };
    if !text.as_bytes().iter().any(special) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A reader turns a raw CR (and CRLF) into LF; a reference keeps it, as .NET writes it.
            '\r' => out.push_str("&#13;"),
            // XML 1.0 cannot carry most control characters (nor U+FFFE/U+FFFF), not even as
            // character references: write the replacement character rather than break the document.
            c if ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push('\u{FFFD}')
            }
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
        Prop::FieldProperties(updatable) => x.raw(field_properties_xml(name, updatable)),
    });
}

/// The FieldProperties element, built once per variant from the same cached JSON, so the two
/// formats cannot drift and an XML list does not rebuild it for every task.
fn field_properties_xml(name: &str, updatable: bool) -> &'static str {
    static CACHE: OnceLock<[String; 2]> = OnceLock::new();
    debug_assert_eq!(name, "FieldProperties");
    let cache = CACHE.get_or_init(|| {
        let build = |updatable: bool| {
            let v: serde_json::Value =
                serde_json::from_str(field_properties_json(updatable).get()).expect("static JSON");
            let mut x = XmlWriter { out: String::new() };
            x.open("FieldProperties");
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
            x.close("FieldProperties");
            x.out
        };
        [build(false), build(true)]
    });
    &cache[usize::from(updatable)]
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
        Payload::Int(i) => x.primitive_root("int", &i.to_string()),
        Payload::Bool(b) => x.primitive_root("boolean", if *b { "true" } else { "false" }),
        // Only GetBatchTaskInfo and UpdateBatchTask answer null, both typed BatchTaskInfo.
        Payload::Null => x.nil_root("BatchTaskInfo"),
        // ASP.NET Web API's HttpError in XML: <Error><Message/><MessageDetail/></Error>.
        Payload::Invalid { message, detail } => {
            x.open("Error");
            x.leaf("Message", message);
            x.leaf("MessageDetail", detail);
            x.close("Error");
        }
    }
    x.finish()
}

/// The OData list in XML: root `ODataSlimResponse` with `odata.metadata`, `odata.nextLink` and
/// `value`, which holds one `<row>` per archive row; columns are child elements named as in JSON,
/// null values are `i:nil="true"`, numbers and dates are their JSON text.
pub fn odata_xml(
    metadata: &str,
    next_link: Option<&str>,
    rows: &[serde_json::Map<String, serde_json::Value>],
) -> Vec<u8> {
    let mut x = XmlWriter::new();
    x.open_root("ODataSlimResponse");
    x.leaf("odata.metadata", metadata);
    match next_link {
        Some(link) => x.leaf("odata.nextLink", link),
        None => x.nil("odata.nextLink"),
    }
    x.open("value");
    for row in rows {
        x.open("row");
        for (k, v) in row {
            match v {
                serde_json::Value::Null => x.nil(k),
                serde_json::Value::String(s) => x.leaf(k, s),
                other => x.leaf(k, &other.to_string()),
            }
        }
        x.close("row");
    }
    x.close("value");
    x.close("ODataSlimResponse");
    x.finish()
}
