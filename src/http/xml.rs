//! XML request bodies, read into the same `serde_json::Value` shape the JSON path produces, so
//! every handler reads one shape whatever the Content-Type.
//!
//! The reader accepts what .NET clients send: DataContract documents with a default namespace,
//! `xmlns:i` and `i:nil="true"`, and prefixed array items (`<a:int>` in the Serialization/Arrays
//! namespace), as well as plain unnamespaced XML. Namespaces are ignored: elements are matched by
//! local name. Values are text; the lenient property reader turns `"5"` and `"true"` into numbers
//! and booleans, as it does for form bodies.
//!
//! How an element becomes a value (first rule that applies):
//! 1. `nil="true"` (any prefix) → `null`.
//! 2. A list: its name starts with `ArrayOf`, or it is a list parameter (`AssociateIds`,
//!    `BatchTaskIds`, `After`) that is the root, a child of the root or a child of a
//!    `BatchTaskInfo` → an array of its children's values, whatever the children are called; a
//!    list written as bare text (`<After>12</After>`) is that one item. Deeper down (inside a
//!    `ParameterObject`, say) those names are ordinary keys, so a parameter called `After` keeps
//!    its value.
//! 3. No child elements → its text (`""` when empty), except that an empty dictionary
//!    (`ParameterObject`, `FieldProperties`) or object (`BatchTaskInfo`, `TableRight`) is `{}`.
//! 4. Every child is a key/value pair (it has exactly the children `Key` and `Value`, as in
//!    `StringKeyValuePair`, `KeyValueOfstringstring` or `FieldPropertyDictionaryKeyValuePair`)
//!    → an object `{Key: Value}`.
//! 5. Otherwise an object keyed by child name; a name that repeats collects its values in an
//!    array (so a list with two or more items needs no declaration, but a one-item list does).
//!
//! Safety: no DTD is accepted (so no entity can expand), only the five predefined entities and
//! character references are, elements nest at most [`MAX_DEPTH`] deep and so does the value they
//! become (a repeated name's list is a level of its own), and a document has at most
//! [`MAX_ELEMENTS`] elements. The body limit (1 MiB) bounds the rest.

use std::collections::HashMap;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

pub use super::body::MAX_DEPTH;

/// Most elements in one document.
pub const MAX_ELEMENTS: usize = 100_000;

/// Parameters that are lists even with one item, where parameters are: the root, its children and
/// a `BatchTaskInfo`'s children.
const LIST_NAMES: [&str; 3] = ["AssociateIds", "BatchTaskIds", "After"];
/// Elements that are dictionaries (pairs) or objects even when empty.
const OBJECT_NAMES: [&str; 4] = ["ParameterObject", "FieldProperties", "BatchTaskInfo", "TableRight"];

/// A document read: its root element's local name and the value of the root element.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlDoc {
    pub root: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("invalid XML at byte {position}: {detail}")]
    Invalid { position: u64, detail: String },
    /// Elements, or the value they make, nest deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

#[derive(Debug, Default)]
struct Node {
    name: String,
    nil: bool,
    text: String,
    children: Vec<Node>,
}

fn is_nil(start: &BytesStart<'_>) -> Result<bool, String> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute ({e})"))?;
        if attr.key.local_name().as_ref() == "nil" {
            let v = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad attribute value ({e})"))?;
            let v = v.trim();
            return Ok(v == "true" || v == "1");
        }
    }
    Ok(false)
}

/// The text of `bytes` as UTF-8, honouring a UTF-8 or UTF-16 byte-order mark. The encoding named in
/// the XML declaration is not trusted: .NET writes `utf-16` there when it serialises to a string
/// that is then sent as UTF-8.
fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, XmlError> {
    let bad = |detail: &str| XmlError::Invalid { position: 0, detail: detail.into() };
    let utf16 = |chunks: std::slice::ChunksExact<'_, u8>, big: bool| {
        let units: Vec<u16> = chunks
            .map(|c| if big { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
            .collect();
        String::from_utf16(&units).map_err(|_| bad("the UTF-16 text is not valid"))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest.chunks_exact(2), false).map(Into::into);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest.chunks_exact(2), true).map(Into::into);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes)
        .map(Into::into)
        .map_err(|e| XmlError::Invalid { position: e.valid_up_to() as u64, detail: "the text is not UTF-8".into() })
}

/// Reads a whole XML document.
pub fn parse(bytes: &[u8]) -> Result<XmlDoc, XmlError> {
    let text = decode(bytes)?;
    let mut reader = Reader::from_str(&text);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.trim_text(false);
    cfg.expand_empty_elements = false;

    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let position = reader.buffer_position();
        let fail = |detail: String| XmlError::Invalid { position, detail };
        let event = reader.read_event().map_err(|e| fail(e.to_string()))?;
        match event {
            Event::Start(ref s) | Event::Empty(ref s) => {
                if root.is_some() {
                    return Err(fail("a second root element".into()));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(fail(format!("more than {MAX_ELEMENTS} elements")));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = s.local_name().as_ref().to_owned();
                // quick-xml lets `<>` through as an element with an empty name (found by fuzzing).
                if name.is_empty() {
                    return Err(fail("an element without a name".into()));
                }
                let node = Node { name, nil: is_nil(s).map_err(&fail)?, ..Node::default() };
                if matches!(event, Event::Start(_)) {
                    stack.push(node);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => root = Some(node),
                    }
                }
            }
            Event::End(_) => {
                // check_end_names guarantees the names match.
                let node = stack.pop().ok_or_else(|| fail("an end tag without a start tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(fail("text outside the root element".into())),
                }
            }
            Event::CData(c) => {
                let content = c.into_inner();
                match stack.last_mut() {
                    Some(node) => node.text.push_str(&content),
                    None => return Err(fail("CDATA outside the root element".into())),
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(|e| fail(e.to_string()))? {
                    Some(c) => c,
                    None => match &*r {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(fail(format!(
                                "the entity '&{};' is not defined (only the five XML entities are)",
                                other.chars().take(40).collect::<String>()
                            )));
                        }
                    },
                };
                match stack.last_mut() {
                    Some(node) => node.text.push(ch),
                    None => return Err(fail("a reference outside the root element".into())),
                }
            }
            Event::DocType(_) => return Err(fail("a DOCTYPE (DTDs are not accepted)".into())),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(fail(format!("the document ends inside <{}>", stack[stack.len() - 1].name)));
                }
                break;
            }
        }
    }
    let root = root.ok_or(XmlError::Invalid { position: 0, detail: "no root element".into() })?;
    let name = root.name.clone();
    Ok(XmlDoc { root: name, value: to_value(root, 0, Lists::Here)? })
}

fn named(list: &[&str], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Whether an element's name may make it a list parameter ([`LIST_NAMES`]): only where
/// parameters are, so that deeper keys of the same name stay what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lists {
    /// The root, its children, and a `BatchTaskInfo`'s children.
    Here,
    Not,
}

impl Lists {
    /// What the children of `node` (read with `self`) are.
    fn below(self, above: usize, node: &str) -> Lists {
        if above == 0 || node.eq_ignore_ascii_case("BatchTaskInfo") { Lists::Here } else { Lists::Not }
    }
}

fn is_list(name: &str, lists: Lists) -> bool {
    (lists == Lists::Here && named(&LIST_NAMES, name))
        || name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("ArrayOf"))
}

/// A `<X><Key>k</Key><Value>v</Value></X>` element.
fn pair(node: &Node) -> Option<(&Node, &Node)> {
    if node.nil || node.children.len() != 2 {
        return None;
    }
    let key = node.children.iter().find(|c| c.name.eq_ignore_ascii_case("Key"))?;
    let value = node.children.iter().find(|c| c.name.eq_ignore_ascii_case("Value"))?;
    Some((key, value))
}

/// Converts an element by the rules in the module comment; `above` is how many containers hold
/// the value. A container past [`MAX_DEPTH`] is refused before its content is converted. The
/// recursion is bounded by the parser's element depth.
fn to_value(node: Node, above: usize, lists: Lists) -> Result<Value, XmlError> {
    let container = || if above < MAX_DEPTH { Ok(above + 1) } else { Err(XmlError::TooDeep) };
    if node.nil {
        return Ok(Value::Null);
    }
    let inner = lists.below(above, &node.name);
    if is_list(&node.name, lists) {
        let level = container()?;
        if node.children.is_empty() && !node.text.trim().is_empty() {
            return Ok(Value::Array(vec![Value::String(node.text)]));
        }
        return node
            .children
            .into_iter()
            .map(|c| to_value(c, level, Lists::Not))
            .collect::<Result<_, _>>()
            .map(Value::Array);
    }
    if node.children.is_empty() {
        if named(&OBJECT_NAMES, &node.name) && node.text.trim().is_empty() {
            container()?;
            return Ok(Value::Object(Map::new()));
        }
        return Ok(Value::String(node.text));
    }
    let level = container()?;
    if node.children.iter().all(|c| pair(c).is_some()) {
        let mut map = Map::new();
        for child in node.children {
            let Node { children, .. } = child;
            let (mut key, mut value) = (None, None);
            for part in children {
                if part.name.eq_ignore_ascii_case("Key") {
                    key = Some(part);
                } else {
                    value = Some(part);
                }
            }
            if let (Some(k), Some(v)) = (key, value) {
                let k = if k.nil { String::new() } else { k.text };
                map.insert(k, to_value(v, level, Lists::Not)?);
            }
        }
        return Ok(Value::Object(map));
    }
    // A name that repeats collects its values in a list, a level of its own, in the place of
    // the name's first element.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for child in &node.children {
        *counts.entry(child.name.as_str()).or_default() += 1;
    }
    let listed: Vec<bool> = node.children.iter().map(|c| counts[c.name.as_str()] > 1).collect();
    drop(counts);
    if level >= MAX_DEPTH && listed.contains(&true) {
        return Err(XmlError::TooDeep);
    }
    let mut map = Map::new();
    for (child, listed) in node.children.into_iter().zip(listed) {
        let name = child.name.clone();
        if listed {
            let value = to_value(child, level + 1, inner)?;
            if let Value::Array(items) = map.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                items.push(value);
            }
        } else {
            map.insert(name, to_value(child, level, inner)?);
        }
    }
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(s: &str) -> Value {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}")).value
    }

    #[test]
    fn plain_and_namespaced_task_documents_read_alike() {
        let plain = "<BatchTaskInfo><Name>Export</Name><Description>a &amp; b</Description>\
                     <IsSystemTask>false</IsSystemTask><ParameterObject><StringKeyValuePair><Key>k</Key>\
                     <Value>v</Value></StringKeyValuePair></ParameterObject><Result/></BatchTaskInfo>";
        let dc = r#"<?xml version="1.0" encoding="utf-16"?>
            <BatchTaskInfo xmlns:i="http://www.w3.org/2001/XMLSchema-instance"
                xmlns="http://schemas.datacontract.org/2004/07/SuperOffice.CRM.Services">
              <Name>Export</Name>
              <Description>a &amp; b</Description>
              <IsSystemTask>false</IsSystemTask>
              <ParameterObject>
                <StringKeyValuePair><Key>k</Key><Value>v</Value></StringKeyValuePair>
              </ParameterObject>
              <Result></Result>
            </BatchTaskInfo>"#;
        let want = json!({"Name": "Export", "Description": "a & b", "IsSystemTask": "false",
            "ParameterObject": {"k": "v"}, "Result": ""});
        assert_eq!(read(plain), want);
        assert_eq!(read(dc), want);
    }

    #[test]
    fn nil_lists_and_wrappers() {
        let doc = parse(
            br#"<DeleteBatchTasks xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
                  <BatchTaskIds xmlns:a="http://schemas.microsoft.com/2003/10/Serialization/Arrays">
                    <a:int>1</a:int>
                  </BatchTaskIds>
                  <Other i:nil="true"/>
                </DeleteBatchTasks>"#,
        )
        .unwrap();
        assert_eq!(doc.root, "DeleteBatchTasks");
        assert_eq!(doc.value, json!({"BatchTaskIds": ["1"], "Other": null}));
        assert_eq!(read("<AssociateIds/>"), json!([]));
        assert_eq!(read("<x><int>1</int><int>2</int><int>3</int></x>"), json!({"int": ["1", "2", "3"]}));
        assert_eq!(read("<ArrayOfint><int>4</int></ArrayOfint>"), json!(["4"]));
        assert_eq!(read("<ParameterObject/>"), json!({}));
        assert_eq!(read("<x><![CDATA[<a>]]>&#65;&#x42;</x>"), json!("<a>AB"));
    }

    #[test]
    fn list_parameters_are_lists_only_where_parameters_are() {
        // A one-item list written as bare text is that item, not an empty list.
        assert_eq!(read("<BatchTaskInfo><After>12</After></BatchTaskInfo>"), json!({"After": ["12"]}));
        assert_eq!(read("<BatchTaskInfo><After> </After></BatchTaskInfo>"), json!({"After": []}));
        assert_eq!(
            read("<StartBatchJob><BatchTaskInfo><After><int>3</int></After></BatchTaskInfo></StartBatchJob>"),
            json!({"BatchTaskInfo": {"After": ["3"]}})
        );
        assert_eq!(
            read("<DeleteBatchTasks><BatchTaskIds>7</BatchTaskIds></DeleteBatchTasks>"),
            json!({"BatchTaskIds": ["7"]})
        );
        // Inside a ParameterObject (or any deeper object) the names are ordinary keys.
        assert_eq!(
            read("<BatchTaskInfo><ParameterObject><After>x</After><BatchTaskIds/></ParameterObject></BatchTaskInfo>"),
            json!({"ParameterObject": {"After": "x", "BatchTaskIds": ""}})
        );
        assert_eq!(read("<r><a><After><v>1</v></After></a></r>"), json!({"a": {"After": {"v": "1"}}}));
        // ArrayOf… is a .NET list type wherever it is.
        assert_eq!(read("<r><a><ArrayOfint><int>1</int></ArrayOfint></a></r>"), json!({"a": {"ArrayOfint": ["1"]}}));
    }

    #[test]
    fn refuses_dtds_unknown_entities_and_deep_nesting() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><x>&lol;</x>"#;
        assert!(parse(bomb.as_bytes()).unwrap_err().to_string().contains("DOCTYPE"));
        assert!(parse(b"<x>&lol;</x>").unwrap_err().to_string().contains("lol"));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()).unwrap_err(), XmlError::TooDeep);
        for bad in ["", "<a>", "<a></b>", "<a/><b/>", "text", "<a>&#0;</a>", "<a x='1></a>", "<>]</>", "<a><></></a>"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_of_repeated_names_count_as_levels() {
        let depth = |v: &Value| crate::http::body::extent(v, usize::MAX).unwrap().depth;
        // Each <a> holds two <a>s: an object and a list per element level.
        let nest = |n: usize| (0..n).fold("x".to_owned(), |inner, _| format!("<a>{inner}</a><a/>"));
        let v = read(&format!("<r>{}</r>", nest(MAX_DEPTH / 2)));
        assert_eq!(depth(&v), MAX_DEPTH);
        assert_eq!(parse(format!("<r>{}</r>", nest(MAX_DEPTH / 2 + 1)).as_bytes()), Err(XmlError::TooDeep));
        // An empty object counts as a container too.
        let v = read(&format!("{}<ParameterObject/>{}", "<a><b/>".repeat(MAX_DEPTH - 1), "</a>".repeat(MAX_DEPTH - 1)));
        assert_eq!(depth(&v), MAX_DEPTH);
        // Many repeated names are read in one pass.
        let many: String = (0..20_000).map(|i| format!("<n{i}/><n{i}/>")).collect();
        assert_eq!(read(&format!("<r>{many}</r>"))["n7"], json!(["", ""]));
    }

    #[test]
    fn reads_utf16_with_a_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "<Id>7</Id>".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(parse(&bytes).unwrap().value, json!("7"));
    }
}
