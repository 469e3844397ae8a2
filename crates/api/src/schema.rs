//! Structural checks of a YAML tree against a type's JSON schema: unknown fields (with a "did you
//! mean"), wrong types, missing required fields, values outside an enum, integers out of range.
//!
//! Serde stops at the first problem; this walk reports every one, each at its own field. Schemas come
//! from schemars (our types and k8s-openapi's), so the checks follow the types exactly.

use crate::path::{FieldPath, Seg};
use crate::source::Loc;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Value};
use serde_json::{Map, Value as J};

/// A structural problem in a document.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    pub path: FieldPath,
    pub loc: Loc,
    pub message: String,
    pub help: Option<String>,
}

/// Checks `node` against `schema` (a root schema with its `$defs`).
pub fn check(node: &Node, schema: &J) -> Vec<Issue> {
    let mut walker = Walker { root: schema, issues: Vec::new() };
    walker.node(node, schema, &mut FieldPath::root(), 0);
    walker.issues
}

struct Walker<'a> {
    root: &'a J,
    issues: Vec<Issue>,
}

/// Deeper than any real manifest; stops a recursive schema from recursing forever.
const MAX_DEPTH: usize = 64;

impl<'a> Walker<'a> {
    fn resolve(&self, mut schema: &'a J) -> &'a J {
        for _ in 0..MAX_DEPTH {
            let Some(reference) = schema.get("$ref").and_then(J::as_str) else { break };
            let target = reference
                .strip_prefix("#/$defs/")
                .and_then(|n| self.root.get("$defs")?.get(n))
                .or_else(|| {
                    reference
                        .strip_prefix("#/definitions/")
                        .and_then(|n| self.root.get("definitions")?.get(n))
                });
            match target {
                Some(t) => schema = t,
                None => break,
            }
        }
        schema
    }

    fn issue(&mut self, path: &FieldPath, loc: Loc, message: String, help: Option<String>) {
        self.issues.push(Issue { path: path.clone(), loc, message, help });
    }

    fn node(&mut self, node: &Node, schema: &'a J, path: &mut FieldPath, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let schema = self.resolve(schema);
        let Some(obj) = schema.as_object() else { return }; // `true`: anything goes
        if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&J::Bool(true))
            && !obj.contains_key("properties")
        {
            return;
        }
        if obj.get("x-kubernetes-int-or-string") == Some(&J::Bool(true)) {
            if !matches!(node.value, Value::Int(_) | Value::Str(_) | Value::Float(_) | Value::Null) {
                let found = node.value.type_name();
                self.issue(path, node.loc, format!("expected an integer or a string, found {found}"), None);
            }
            return;
        }
        for all in obj.get("allOf").and_then(J::as_array).into_iter().flatten() {
            self.node(node, all, path, depth + 1);
        }
        if let Some(alternatives) = obj.get("anyOf").or_else(|| obj.get("oneOf")).and_then(J::as_array) {
            self.alternatives(node, alternatives, path, depth);
            return;
        }
        if !self.type_matches(node, obj, path) {
            return;
        }
        if let Some(allowed) = obj.get("enum").and_then(J::as_array) {
            self.enumeration(node, allowed, path);
        }
        match &node.value {
            Value::Map(entries) => self.object(node, entries, obj, path, depth),
            Value::Seq(items) => {
                if let Some(item_schema) = obj.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        self.node(item, item_schema, path, depth + 1);
                        path.pop();
                    }
                }
            }
            Value::Int(i) => self.range(node, *i, obj, path),
            _ => {}
        }
    }

    fn alternatives(&mut self, node: &Node, alternatives: &'a [J], path: &mut FieldPath, depth: usize) {
        let fits = alternatives.iter().find(|alt| {
            let alt = self.resolve(alt);
            match alt.get("type") {
                None => true,
                Some(t) => types_of(t).iter().any(|t| value_has_type(&node.value, t)),
            }
        });
        match fits {
            Some(alt) => self.node(node, alt, path, depth + 1),
            None => {
                let mut names: Vec<&str> = alternatives
                    .iter()
                    .flat_map(|a| self.resolve(a).get("type").map(types_of).unwrap_or_default())
                    .filter(|t| *t != "null")
                    .collect();
                names.dedup();
                let expected = names.join(" or ");
                let found = node.value.type_name();
                self.issue(path, node.loc, format!("expected {}, found {found}", article(&expected)), None);
            }
        }
    }

    /// Reports and returns false when the node's type is not the schema's.
    fn type_matches(&mut self, node: &Node, obj: &Map<String, J>, path: &FieldPath) -> bool {
        let Some(t) = obj.get("type") else { return true };
        let types = types_of(t);
        if node.value == Value::Null || types.iter().any(|t| value_has_type(&node.value, t)) {
            return true;
        }
        let expected = types.iter().filter(|t| **t != "null").copied().collect::<Vec<_>>().join(" or ");
        let found = match &node.value {
            Value::Str(s) if s.len() <= 40 => format!("string {s:?}"),
            other => other.type_name().to_owned(),
        };
        let help = match (&node.value, expected.as_str()) {
            (Value::Str(s), "integer") if s.trim().parse::<i64>().is_ok() => {
                Some(format!("write {} without quotes", s.trim()))
            }
            (Value::Int(i), "string") => Some(format!("quote it: \"{i}\"")),
            (Value::Bool(b), "string") => Some(format!("quote it: \"{b}\"")),
            (Value::Map(_), "array") => Some("start each item with `- `".to_owned()),
            _ => None,
        };
        self.issue(path, node.loc, format!("expected {}, found {found}", article(&expected)), help);
        false
    }

    fn enumeration(&mut self, node: &Node, allowed: &[J], path: &FieldPath) {
        let value = node.to_json();
        if value.is_null() || allowed.contains(&value) {
            return;
        }
        let names: Vec<String> =
            allowed.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
        let shown = match &node.value {
            Value::Str(s) => s.clone(),
            _ => value.to_string(),
        };
        let help = did_you_mean(&shown, names.iter().map(String::as_str));
        self.issue(
            path,
            node.loc,
            format!("unsupported value {shown:?}: expected one of {}", names.join(", ")),
            help,
        );
    }

    fn range(&mut self, node: &Node, i: i64, obj: &Map<String, J>, path: &FieldPath) {
        let (lo, hi) = match obj.get("format").and_then(J::as_str) {
            Some("int32") => (i64::from(i32::MIN), i64::from(i32::MAX)),
            Some("uint16") => (0, i64::from(u16::MAX)),
            Some("uint32") => (0, i64::from(u32::MAX)),
            Some("uint8") => (0, i64::from(u8::MAX)),
            _ => (i64::MIN, i64::MAX),
        };
        let lo = obj.get("minimum").and_then(J::as_i64).map_or(lo, |m| m.max(lo));
        let hi = obj.get("maximum").and_then(J::as_i64).map_or(hi, |m| m.min(hi));
        if i < lo || i > hi {
            self.issue(path, node.loc, format!("{i} is out of range: must be between {lo} and {hi}"), None);
        }
    }

    fn object(
        &mut self,
        node: &Node,
        entries: &[(crate::yaml::Key, Node)],
        obj: &'a Map<String, J>,
        path: &mut FieldPath,
        depth: usize,
    ) {
        let properties = obj.get("properties").and_then(J::as_object);
        let additional = obj.get("additionalProperties");
        for (key, value) in entries {
            path.push(Seg::Key(key.name.clone()));
            match (properties.and_then(|p| p.get(&key.name)), additional) {
                (Some(prop), _) => self.node(value, prop, path, depth + 1),
                (None, Some(J::Bool(false))) | (None, None) if properties.is_some() => {
                    let known = properties.into_iter().flat_map(|p| p.keys().map(String::as_str));
                    let help = did_you_mean(&key.name, known);
                    self.issue(path, key.loc, format!("unknown field {:?}", key.name), help);
                }
                (None, Some(extra)) if extra.is_object() => self.node(value, extra, path, depth + 1),
                _ => {}
            }
            path.pop();
        }
        for required in obj.get("required").and_then(J::as_array).into_iter().flatten().filter_map(J::as_str)
        {
            let present = entries.iter().find(|(k, _)| k.name == required);
            match present {
                None => {
                    self.issue(
                        &path.key(required),
                        node.loc,
                        format!("missing required field {required:?}"),
                        None,
                    );
                }
                Some((key, v)) if v.value == Value::Null => {
                    self.issue(
                        &path.key(required),
                        key.loc,
                        format!("required field {required:?} has no value"),
                        None,
                    );
                }
                Some(_) => {}
            }
        }
    }
}

fn types_of(t: &J) -> Vec<&str> {
    match t {
        J::String(s) => vec![s.as_str()],
        J::Array(ts) => ts.iter().filter_map(J::as_str).collect(),
        _ => Vec::new(),
    }
}

fn value_has_type(v: &Value, t: &str) -> bool {
    matches!(
        (t, v),
        ("null", Value::Null)
            | ("boolean", Value::Bool(_))
            | ("integer", Value::Int(_))
            | ("number", Value::Int(_) | Value::Float(_))
            | ("string", Value::Str(_))
            | ("array", Value::Seq(_))
            | ("object", Value::Map(_))
    )
}

fn article(expected: &str) -> String {
    match expected {
        "" => "a value".to_owned(),
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "integer" | "object or string" | "array or string" => format!("an {expected}"),
        e if e.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {e}"),
        e => format!("a {e}"),
    }
}
