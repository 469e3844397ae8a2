//! YAML (and JSON, which YAML reads) into a tree that remembers where every node came from.
//!
//! serde-saphyr parses; its `Spanned` wrapper gives each node's position. The tree is what
//! schema checks walk and what validation findings are located against.

use crate::path::{FieldPath, Seg};
use crate::source::{LineIndex, Loc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A YAML node and its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

/// A mapping key and its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Mapping),
}

/// A mapping's entries in source order, found by name in logarithmic time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    entries: Vec<(Key, Node)>,
    /// Indices into `entries`, ordered by key name (equal names in source order).
    by_name: Vec<usize>,
}

impl Mapping {
    pub fn new(entries: Vec<(Key, Node)>) -> Self {
        let mut by_name: Vec<usize> = (0..entries.len()).collect();
        by_name.sort_by(|a, b| entries[*a].0.name.cmp(&entries[*b].0.name));
        Self { entries, by_name }
    }

    /// The first entry named `name`.
    pub fn get(&self, name: &str) -> Option<&(Key, Node)> {
        let first = self.by_name.partition_point(|i| self.entries[*i].0.name.as_str() < name);
        let i = *self.by_name.get(first)?;
        let entry = &self.entries[i];
        (entry.0.name == name).then_some(entry)
    }
}

impl std::ops::Deref for Mapping {
    type Target = [(Key, Node)];

    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl Value {
    /// The JSON type name of this value, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }
}

/// A YAML syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub loc: Option<Loc>,
}

/// Parses every document of a YAML stream. Empty documents are dropped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    parse_indexed(text, &LineIndex::new(text))
}

/// [`parse_documents`] with the text's line index built already (a [`crate::SourceFile`]'s).
pub fn parse_indexed(text: &str, lines: &LineIndex) -> Result<Vec<Node>, SyntaxError> {
    let at = Locator { text, lines };
    let raw: Vec<Spanned<Raw>> =
        serde_saphyr::from_multiple_with_options(text, options()).map_err(|e| syntax_error(at, &e))?;
    Ok(raw.into_iter().map(|r| Node::from_raw(at, r)).filter(|n| n.value != Value::Null).collect())
}

/// The most documents and nodes one input may hold.
pub const MAX_DOCUMENTS: usize = 100_000;
pub const MAX_NODES: usize = 4_000_000;
/// The deepest nesting of mappings and lists: twice what Kubernetes objects need (a pod
/// template's affinity terms are about 14 deep), and shallow enough that the parser's recursion
/// stays well within a thread's stack (at 60 it overflowed a 2 MiB test thread in a debug build).
pub const MAX_DEPTH: usize = 32;

/// The parser's options: serde-saphyr's defaults (which bound alias expansion, nesting and
/// scalar bytes), with room for a file of ten thousand services rather than its 1,024
/// documents and 250,000 nodes (an input is at most [`crate::load::MAX_INPUT_BYTES`] anyway),
/// and numbers with a leading zero read as octal, as Kubernetes' YAML 1.1 reader does
/// (`defaultMode: 0644` is 420).
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        legacy_octal_numbers: true,
        budget: serde_saphyr::budget! {
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
            max_events: 4 * MAX_NODES,
            max_depth: MAX_DEPTH,
        },
    }
}

/// A text and its line index, to turn the parser's positions into [`Loc`]s.
#[derive(Clone, Copy)]
struct Locator<'a> {
    text: &'a str,
    lines: &'a LineIndex,
}

fn syntax_error(at: Locator<'_>, e: &serde_saphyr::Error) -> SyntaxError {
    let loc = e.location().filter(|l| l.line() > 0).map(|l| location(at, &l));
    let full = e.without_snippet().to_string();
    // saphyr prefixes "error: line L column C: "; the location is reported separately.
    let message = full.strip_prefix("error: ").unwrap_or(&full);
    let message = match message.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest,
        _ => message,
    };
    let message = match message.rsplit_once(" at line ") {
        Some((head, tail))
            if tail.split_once(", column ").is_some_and(|(l, c)| is_num(l) && is_num(c.trim())) =>
        {
            head
        }
        _ => message,
    };
    SyntaxError { message: message.trim().to_owned(), loc }
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn location(at: Locator<'_>, l: &serde_saphyr::Location) -> Loc {
    let span = l.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(off), Some(len)) => {
            let off = usize::try_from(off).unwrap_or(usize::MAX);
            at.lines.loc(at.text, off, usize::try_from(len).unwrap_or(0))
        }
        _ => Loc {
            line: u32::try_from(l.line()).unwrap_or(u32::MAX),
            column: u32::try_from(l.column()).unwrap_or(u32::MAX),
            offset: at.lines.offset_of(at.text, l.line(), l.column()),
            len: 0,
        },
    }
}

impl Node {
    fn from_raw(at: Locator<'_>, raw: Spanned<Raw>) -> Self {
        let loc = location(at, &raw.referenced);
        let value = match raw.value {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(b),
            Raw::Int(i) => Value::Int(i),
            Raw::Float(f) => Value::Float(f),
            Raw::Str(s) => Value::Str(s),
            Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| Node::from_raw(at, i)).collect()),
            Raw::Map(entries) => Value::Map(Mapping::new(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let key = Node::from_raw(at, k);
                        (Key { name: key.scalar_text(), loc: key.loc }, Node::from_raw(at, v))
                    })
                    .collect(),
            )),
        };
        Node { value, loc }
    }

    /// The text of a scalar (used for mapping keys, which may be numbers or booleans in YAML).
    fn scalar_text(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(s) => s.clone(),
            Value::Seq(_) | Value::Map(_) => serde_json::to_string(&self.to_json()).unwrap_or_default(),
        }
    }

    /// The entry for `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key and value for `key`, if this is a mapping that has it.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        match &self.value {
            Value::Map(entries) => entries.get(key).map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The string value of `key`, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match &self.get(key)?.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The location that best shows `path`: the node itself when it exists; for a missing last
    /// field, the closest existing parent.
    pub fn locate(&self, path: &FieldPath) -> Loc {
        let mut node = self;
        let segs = path.segments();
        for (i, seg) in segs.iter().enumerate() {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(_)) => node.entry(k).map(|(key, v)| {
                    // A key with no usable value (`name:`) is best shown by its key.
                    if i + 1 == segs.len() && v.value == Value::Null { (Some(key.loc), v) } else { (None, v) }
                }),
                (Seg::Index(n), Value::Seq(items)) => items.get(*n).map(|v| (None, v)),
                _ => None,
            };
            match next {
                Some((Some(key_loc), _)) => return key_loc,
                Some((None, v)) => node = v,
                None => return node.loc,
            }
        }
        node.loc
    }

    /// The location of the key that ends `path` (for unknown or misplaced fields).
    pub fn locate_key(&self, path: &FieldPath) -> Loc {
        let mut parent = path.clone();
        match parent.pop() {
            Some(Seg::Key(k)) => {
                let mut node = self;
                for seg in parent.segments() {
                    let next = match seg {
                        Seg::Key(k) => node.get(k),
                        Seg::Index(n) => match &node.value {
                            Value::Seq(items) => items.get(*n),
                            _ => None,
                        },
                    };
                    match next {
                        Some(n) => node = n,
                        None => return node.loc,
                    }
                }
                node.entry(&k).map_or(node.loc, |(key, _)| key.loc)
            }
            _ => self.locate(path),
        }
    }

    /// The node as JSON. Keys repeat only if the YAML repeated them, which the parser refuses.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                J::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())
            }
        }
    }
}

/// What serde-saphyr hands us before locations are resolved.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key()? {
            let v = a.next_value()?;
            entries.push((k, v));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_place() {
        let text = "a: 1\nb:\n  - x: \"8080\"\n  - 3.5\n---\n---\nc: ~\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2, "the empty middle document is dropped");
        let x = docs[0].locate(&FieldPath::parse("b[0].x"));
        assert_eq!((x.line, x.column), (3, 8));
        assert_eq!(&text[x.offset..x.offset + x.len], "\"8080\"");
        let missing = docs[0].locate(&FieldPath::parse("b[0].y"));
        assert_eq!((missing.line, missing.column), (3, 5), "a missing field points at its parent");
        let key = docs[0].locate_key(&FieldPath::parse("b"));
        assert_eq!((key.line, key.column), (2, 1));
        assert_eq!(docs[0].to_json(), serde_json::json!({"a": 1, "b": [{"x": "8080"}, 3.5]}));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let ok = format!("a: {}{}\n", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse_documents(&ok).is_ok());
        for depth in [MAX_DEPTH + 1, 200, 5_000] {
            let text = format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
            let e = parse_documents(&text).unwrap_err();
            assert!(
                e.message.contains("budget breached") || e.message.contains("recursion limit"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn a_leading_zero_is_octal_as_in_kubernetes() {
        let docs = parse_documents("defaultMode: 0644\nport: 8080\nzero: 0\n").unwrap();
        assert_eq!(docs[0].to_json(), serde_json::json!({"defaultMode": 420, "port": 8080, "zero": 0}));
    }

    #[test]
    fn json_is_yaml() {
        let docs = parse_documents("{\"a\": [1, {\"b\": null}],\n \"c\": true}").unwrap();
        assert_eq!(docs[0].to_json(), serde_json::json!({"a": [1, {"b": null}], "c": true}));
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse_documents("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(e.loc.map(|l| (l.line, l.column)), Some((2, 4)));
        assert_eq!(e.message, "mapping values are not allowed in this context");
        let e = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.starts_with("duplicate mapping key: a"), "{}", e.message);
        assert_eq!(e.loc.map(|l| l.line), Some(2));
    }
}
