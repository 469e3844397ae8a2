//! The `google.api.http` rule table: path templates parsed and matched, compiled once at
//! startup from the user's method options. Pure (no IO, no descriptors): the transcoder in
//! `transcode.rs` turns a match into a request message.
//!
//! Template grammar (from `google/api/http.proto`):
//! `Template = "/" Segments [ ":" Verb ]`, `Segments = Segment { "/" Segment }`,
//! `Segment = "*" | "**" | LITERAL | Variable`, `Variable = "{" FieldPath [ "=" Segments ] "}"`,
//! `FieldPath = IDENT { "." IDENT }`. `**` (zero or more segments) may only come last.
//!
//! Architecture invariant: parsing and matching never panic, whatever the input (property
//! tests below feed arbitrary and mutated strings).

use crate::protocol::google::api::{HttpRule, http_rule};

/// Why a template or a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The template does not follow the grammar.
    #[error("path template {template:?} is invalid: {why}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A rule without a pattern (none of get, put, post, delete, patch, custom).
    #[error("it has no pattern (none of get, put, post, delete, patch or custom is set)")]
    NoPattern,
    /// The binding does not fit the method's messages (checked by the caller of
    /// [`RuleTable::compile_with`]).
    #[error("{http_method} {pattern:?}: {why}")]
    Binding {
        /// The HTTP method.
        http_method: String,
        /// The template as written.
        pattern: String,
        /// What is wrong.
        why: String,
    },
}

/// A method's rule (or one of its additional bindings) that is left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the google.api.http rule of {method} is left out: {error}")]
pub struct RuleProblem {
    /// `service.Method`.
    pub method: String,
    /// What is wrong.
    pub error: RuleError,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this (percent-encoded) text.
    Literal(String),
    /// `*`: any one segment.
    Any,
    /// `**`: zero or more segments (only last).
    Rest,
}

/// A field bound to a run of segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The field path (`a.b.c`).
    pub field: Vec<String>,
    /// The first segment index.
    pub start: usize,
    /// One past the last segment index; `None` when the run ends with `**`.
    pub end: Option<usize>,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The segments, variables flattened in.
    pub segments: Vec<Segment>,
    /// The variables.
    pub variables: Vec<Variable>,
    /// The verb after `:`, if any.
    pub verb: Option<String>,
}

/// Bound path variables: field path and (decoded) value.
pub type Bindings = Vec<(Vec<String>, String)>;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|rest| rest.chars().next())
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// A run of characters up to one of `stops` (or the end).
    fn take_until(&mut self, stops: &[char]) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| stops.contains(&c)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or_default()
    }
}

fn template_error(template: &str, why: &'static str) -> RuleError {
    RuleError::Template { template: template.to_string(), why }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `Segments`; `nested` is true inside a variable (stops at `}`, no variables).
fn parse_segments(p: &mut Parser<'_>, nested: bool, out: &mut Template) -> Result<(), &'static str> {
    loop {
        match p.peek() {
            Some('*') => {
                p.pos += 1;
                if p.eat('*') {
                    out.segments.push(Segment::Rest);
                } else {
                    out.segments.push(Segment::Any);
                }
            }
            Some('{') => {
                if nested {
                    return Err("variables cannot nest");
                }
                p.pos += 1;
                let path = p.take_until(&['=', '}', '/', '{', ':']);
                let field: Vec<String> = path.split('.').map(str::to_string).collect();
                if !field.iter().all(|part| is_ident(part)) {
                    return Err("a variable's field path must be identifiers joined by dots");
                }
                let start = out.segments.len();
                if p.eat('=') {
                    parse_segments(p, true, out)?;
                    if out.segments.len() == start {
                        return Err("a variable's segments are empty");
                    }
                } else {
                    out.segments.push(Segment::Any);
                }
                if !p.eat('}') {
                    return Err("a variable is not closed by '}'");
                }
                let end = (out.segments.last() != Some(&Segment::Rest)).then_some(out.segments.len());
                out.variables.push(Variable { field, start, end });
            }
            Some('/' | ':' | '}') | None => return Err("a segment is empty"),
            Some(_) => {
                let literal = p.take_until(&['/', ':', '{', '}', '*']);
                if literal.is_empty() {
                    return Err("a segment is empty");
                }
                out.segments.push(Segment::Literal(literal.to_string()));
            }
        }
        match p.peek() {
            Some('/') => {
                p.pos += 1;
            }
            Some('}') if nested => return Ok(()),
            Some(':') if !nested => return Ok(()),
            None => return Ok(()),
            Some(_) => return Err("a segment holds a reserved character ('*', '{' or '}')"),
        }
    }
}

/// Parses a path template.
pub fn parse_template(text: &str) -> Result<Template, RuleError> {
    let mut p = Parser { text, pos: 0 };
    if !p.eat('/') {
        return Err(template_error(text, "it does not start with '/'"));
    }
    let mut out = Template { segments: Vec::new(), variables: Vec::new(), verb: None };
    // `/` alone: the root, no segments.
    if text == "/" {
        return Ok(out);
    }
    parse_segments(&mut p, false, &mut out).map_err(|why| template_error(text, why))?;
    if p.eat(':') {
        let verb = p.rest();
        if verb.is_empty() || verb.contains(['/', '{', '}', '*', ':']) {
            return Err(template_error(text, "the verb after ':' is not a plain literal"));
        }
        out.verb = Some(verb.to_string());
    } else if !p.rest().is_empty() {
        return Err(template_error(text, "unexpected text at the end"));
    }
    if let Some(rest) = out.segments.iter().position(|s| *s == Segment::Rest)
        && rest + 1 != out.segments.len()
    {
        return Err(template_error(text, "'**' must be the last segment"));
    }
    let mut seen: Vec<&Vec<String>> = Vec::new();
    for variable in &out.variables {
        if seen.contains(&&variable.field) {
            return Err(template_error(text, "a field is bound twice"));
        }
        seen.push(&variable.field);
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-escaped text whose bytes are not UTF-8 (`%ff`, or the overlong `%C0%AF`): decoding
/// it lossily would make different texts one (`/carts/%ff%fe` and `/carts/%C0%AF`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} does not percent-decode to UTF-8 text")]
pub struct NotUtf8 {
    /// The text as it came, still encoded.
    pub text: String,
}

/// A path variable whose value is not UTF-8 text once decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path variable {field}: {source}")]
pub struct PathValueError {
    /// The variable's field path (`a.b`).
    pub field: String,
    /// Its value.
    pub source: NotUtf8,
}

/// Percent-decodes `text`; `keep_slash` leaves `%2F` encoded (multi-segment variables), and
/// `plus_is_space` applies the form encoding of query strings. Invalid escapes stay as they are;
/// bytes that are not UTF-8 once decoded are an error.
pub fn percent_decode(text: &str, keep_slash: bool, plus_is_space: bool) -> Result<String, NotUtf8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            let decoded = hi * 16 + lo;
            if keep_slash && decoded == b'/' {
                out.extend_from_slice(bytes.get(i..i + 3).unwrap_or_default());
            } else {
                out.push(decoded);
            }
            i += 3;
            continue;
        }
        out.push(if plus_is_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8(out).map_err(|_| NotUtf8 { text: text.to_string() })
}

/// A query string's `key=value` pairs, decoded, in order (empty keys left out); a key or value
/// that is not UTF-8 once decoded is an error.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, NotUtf8> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, false, true)?;
        if !key.is_empty() {
            pairs.push((key, percent_decode(value, false, true)?));
        }
    }
    Ok(pairs)
}

impl Template {
    /// The variables bound by `path` (percent-encoded, without the query), if it matches (by
    /// its encoded text); an error if a variable's value is not UTF-8 text once decoded.
    pub fn matches(&self, path: &str) -> Option<Result<Bindings, PathValueError>> {
        let path = match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => path,
        };
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if self.segments.is_empty() {
            return (parts == [""]).then(|| Ok(Vec::new()));
        }
        let has_rest = self.segments.last() == Some(&Segment::Rest);
        let fixed = self.segments.len() - usize::from(has_rest);
        if parts.len() < fixed || (!has_rest && parts.len() != fixed) {
            return None;
        }
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(literal) if literal != part => return None,
                Segment::Any if part.is_empty() => return None,
                _ => {}
            }
        }
        let mut bindings = Vec::with_capacity(self.variables.len());
        for variable in &self.variables {
            let end = variable.end.unwrap_or(parts.len());
            let run = parts.get(variable.start..end)?;
            let value = if run.len() == 1 && variable.end.is_some() {
                percent_decode(run.first()?, false, false)
            } else {
                percent_decode(&run.join("/"), true, false)
            };
            match value {
                Ok(value) => bindings.push((variable.field.clone(), value)),
                Err(source) => return Some(Err(PathValueError { field: variable.field.join("."), source })),
            }
        }
        Some(Ok(bindings))
    }

    /// How specific the template is: literal segments count most, `**` least.
    fn specificity(&self) -> (usize, usize, bool) {
        let literals = self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        let rest = self.segments.last() == Some(&Segment::Rest);
        (literals, self.segments.len(), !rest)
    }
}

/// Where the request body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTarget {
    /// No body; every field not in the path comes from the query string.
    None,
    /// `body: "*"`: the whole request message (the query string is not used).
    All,
    /// `body: "field"`: that field; the other fields come from the path and the query.
    Field(Vec<String>),
}

/// One HTTP binding of a method.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The HTTP method (upper case; a custom rule's kind as given).
    pub http_method: String,
    /// The template as written.
    pub pattern: String,
    /// The parsed template.
    pub template: Template,
    /// Where the body goes.
    pub body: BodyTarget,
    /// The reply field sent back instead of the whole reply, if any.
    pub response_body: Option<Vec<String>>,
    /// The full service name.
    pub service: String,
    /// The method name.
    pub method: String,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A binding and its path variables.
    Found(&'a Binding, Bindings),
    /// The binding for this path, but a variable's value is not UTF-8 text.
    BadValue(&'a Binding, PathValueError),
    /// The path matches bindings of other HTTP methods only.
    WrongMethod,
    /// No binding has this path.
    NotFound,
}

/// Every binding, most specific first.
#[derive(Debug, Default, Clone)]
pub struct RuleTable {
    bindings: Vec<Binding>,
}

fn field_path(text: &str) -> Option<Vec<String>> {
    (!text.is_empty()).then(|| text.split('.').map(str::to_string).collect())
}

fn binding(service: &str, method: &str, rule: &HttpRule) -> Result<Binding, RuleError> {
    let (http_method, pattern) = match &rule.pattern {
        Some(http_rule::Pattern::Get(p)) => ("GET".to_string(), p.clone()),
        Some(http_rule::Pattern::Put(p)) => ("PUT".to_string(), p.clone()),
        Some(http_rule::Pattern::Post(p)) => ("POST".to_string(), p.clone()),
        Some(http_rule::Pattern::Delete(p)) => ("DELETE".to_string(), p.clone()),
        Some(http_rule::Pattern::Patch(p)) => ("PATCH".to_string(), p.clone()),
        Some(http_rule::Pattern::Custom(c)) => (c.kind.clone(), c.path.clone()),
        None => return Err(RuleError::NoPattern),
    };
    let template = parse_template(&pattern)?;
    let body = match rule.body.as_str() {
        "" => BodyTarget::None,
        "*" => BodyTarget::All,
        field => BodyTarget::Field(field_path(field).unwrap_or_default()),
    };
    Ok(Binding {
        http_method,
        pattern,
        template,
        body,
        response_body: field_path(&rule.response_body),
        service: service.to_string(),
        method: method.to_string(),
    })
}

impl RuleTable {
    /// Compiles `(service, method, rule)` triples (a rule's `additional_bindings` too, one level
    /// deep as the annotation defines). Bad rules are returned and left out.
    pub fn compile<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str, &'a HttpRule)>,
    ) -> (Self, Vec<RuleProblem>) {
        Self::compile_with(rules, |_| Ok(()))
    }

    /// As [`RuleTable::compile`], with `check` refusing bindings that parse but do not fit
    /// their method (the reason becomes a [`RuleError::Binding`]).
    pub fn compile_with<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str, &'a HttpRule)>,
        mut check: impl FnMut(&Binding) -> Result<(), String>,
    ) -> (Self, Vec<RuleProblem>) {
        let mut bindings = Vec::new();
        let mut problems = Vec::new();
        for (service, method, rule) in rules {
            for rule in std::iter::once(rule).chain(&rule.additional_bindings) {
                let checked = binding(service, method, rule).and_then(|b| match check(&b) {
                    Ok(()) => Ok(b),
                    Err(why) => Err(RuleError::Binding {
                        http_method: b.http_method.clone(),
                        pattern: b.pattern.clone(),
                        why,
                    }),
                });
                match checked {
                    Ok(b) => bindings.push(b),
                    Err(error) => problems.push(RuleProblem { method: format!("{service}.{method}"), error }),
                }
            }
        }
        bindings.sort_by_key(|b| std::cmp::Reverse(b.template.specificity()));
        (Self { bindings }, problems)
    }

    /// Every binding.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The binding for an HTTP method and (percent-encoded) path.
    pub fn find(&self, http_method: &str, path: &str) -> Lookup<'_> {
        let mut wrong_method = false;
        for binding in &self.bindings {
            if let Some(bindings) = binding.template.matches(path) {
                if binding.http_method == http_method {
                    return match bindings {
                        Ok(bindings) => Lookup::Found(binding, bindings),
                        Err(error) => Lookup::BadValue(binding, error),
                    };
                }
                wrong_method = true;
            }
        }
        if wrong_method { Lookup::WrongMethod } else { Lookup::NotFound }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::protocol::google::api::CustomHttpPattern;

    fn vars(bindings: &Bindings) -> Vec<(String, String)> {
        bindings.iter().map(|(f, v)| (f.join("."), v.clone())).collect()
    }

    fn pair(f: &str, v: &str) -> (String, String) {
        (f.to_string(), v.to_string())
    }

    fn bound(t: &Template, path: &str) -> Bindings {
        t.matches(path).unwrap_or_else(|| panic!("{path} matches")).expect("decodes")
    }

    #[test]
    fn parses_literals_variables_and_verbs() {
        let t = parse_template("/cart/{user_id}/items/add").expect("parses");
        assert_eq!(t.segments.len(), 4);
        assert_eq!(t.variables, vec![Variable { field: vec!["user_id".into()], start: 1, end: Some(2) }]);
        let t = parse_template("/v1/{name=shelves/*/books/*}:publish").expect("parses");
        assert_eq!(t.verb.as_deref(), Some("publish"));
        assert_eq!(t.variables[0].start, 1);
        assert_eq!(t.variables[0].end, Some(5));
        let t = parse_template("/files/{path=**}").expect("parses");
        assert_eq!(t.variables[0].end, None);
        let t = parse_template("/a/{msg.sub.id}").expect("parses");
        assert_eq!(t.variables[0].field, vec!["msg", "sub", "id"]);
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "",
            "cart",
            "/a//b",
            "/a/",
            "/{",
            "/{}",
            "/{a=}",
            "/{a={b}}",
            "/**/a",
            "/a/{x}/{x}",
            "/a:",
            "/a:b/c",
            "/{1a}",
            "/a*b",
            "/a}",
        ] {
            assert!(parse_template(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn matches_and_binds() {
        let t = parse_template("/cart/{user_id}/items/{product_id}/remove").expect("parses");
        let b = bound(&t, "/cart/ann/items/an%20apple/remove");
        assert_eq!(vars(&b), vec![pair("user_id", "ann"), pair("product_id", "an apple")]);
        assert!(t.matches("/cart/ann/items/x").is_none());
        assert!(t.matches("/cart//items/x/remove").is_none(), "a variable needs a segment");

        let t = parse_template("/v1/{name=shelves/*/books/*}:publish").expect("parses");
        let b = bound(&t, "/v1/shelves/1/books/a%2Fb:publish");
        assert_eq!(vars(&b), vec![pair("name", "shelves/1/books/a%2Fb")]);
        assert!(t.matches("/v1/shelves/1/books/2").is_none(), "the verb is required");

        let t = parse_template("/files/{path=**}").expect("parses");
        assert_eq!(vars(&bound(&t, "/files/a/b/c")), vec![pair("path", "a/b/c")]);
        assert_eq!(vars(&bound(&t, "/files")), vec![pair("path", "")]);

        let t = parse_template("/").expect("parses");
        assert!(t.matches("/").is_some());
        assert!(t.matches("/a").is_none());
    }

    #[test]
    fn values_that_are_not_utf8_once_decoded_are_errors_not_replaced() {
        let t = parse_template("/carts/{user_id}").expect("parses");
        // Lossy decoding made both of these the same U+FFFD text, so the same entity.
        for path in ["/carts/%ff%fe", "/carts/%C0%AF", "/carts/%e2%82", "/carts/ok%80"] {
            let error = t.matches(path).expect("the path matches").expect_err("not UTF-8");
            let encoded = path.trim_start_matches("/carts/");
            assert_eq!(
                error.to_string(),
                format!("path variable user_id: {encoded:?} does not percent-decode to UTF-8 text")
            );
        }
        assert_eq!(vars(&bound(&t, "/carts/%E2%82%AC")), vec![pair("user_id", "€")]);
        let t = parse_template("/files/{path=**}").expect("parses");
        assert!(matches!(t.matches("/files/a/%ff"), Some(Err(PathValueError { .. }))));
        let error = parse_query("a=1&b=%ff").expect_err("not UTF-8");
        assert_eq!(error, NotUtf8 { text: "%ff".into() });
        assert!(parse_query("%C0%AF=1").is_err(), "keys too");
    }

    #[test]
    fn decodes_queries() {
        assert_eq!(
            parse_query("a=1&b.c=x+y&&d&e=%41%2").expect("UTF-8"),
            vec![pair("a", "1"), pair("b.c", "x y"), pair("d", ""), pair("e", "A%2")]
        );
    }

    fn rule(pattern: http_rule::Pattern, body: &str) -> HttpRule {
        HttpRule { pattern: Some(pattern), body: body.into(), ..HttpRule::default() }
    }

    #[test]
    fn table_prefers_specific_templates_and_knows_methods() {
        let mut get = rule(http_rule::Pattern::Get("/carts/{user_id}".into()), "");
        get.additional_bindings.push(HttpRule {
            pattern: Some(http_rule::Pattern::Get("/carts/{user_id}/items".into())),
            response_body: "items".into(),
            ..HttpRule::default()
        });
        let special = rule(http_rule::Pattern::Get("/carts/special".into()), "");
        let custom = rule(
            http_rule::Pattern::Custom(CustomHttpPattern {
                kind: "OPTIONS".into(),
                path: "/carts/{id}".into(),
            }),
            "",
        );
        let bad = rule(http_rule::Pattern::Post("no-slash".into()), "*");
        let empty = HttpRule::default();
        let (table, problems) = RuleTable::compile([
            ("S", "Get", &get),
            ("S", "Special", &special),
            ("S", "Options", &custom),
            ("S", "Bad", &bad),
            ("S", "Empty", &empty),
        ]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0].to_string(),
            "the google.api.http rule of S.Bad is left out: path template \"no-slash\" is invalid: \
             it does not start with '/'"
        );
        assert_eq!(problems[1], RuleProblem { method: "S.Empty".into(), error: RuleError::NoPattern });
        assert_eq!(table.bindings().len(), 4);
        let (checked, problems) = RuleTable::compile_with([("S", "Get", &get)], |b| match b.response_body {
            Some(_) => Err("no response body here".to_string()),
            None => Ok(()),
        });
        assert_eq!(checked.bindings().len(), 1);
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "the google.api.http rule of S.Get is left out: GET \"/carts/{user_id}/items\": \
                 no response body here"
            ]
        );
        match table.find("GET", "/carts/special") {
            Lookup::Found(b, _) => assert_eq!(b.method, "Special"),
            other => panic!("{other:?}"),
        }
        match table.find("GET", "/carts/ann/items") {
            Lookup::Found(b, vars) => {
                assert_eq!(b.method, "Get");
                assert_eq!(b.response_body, Some(vec!["items".to_string()]));
                assert_eq!(vars, vec![(vec!["user_id".to_string()], "ann".to_string())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(table.find("OPTIONS", "/carts/x"), Lookup::Found(b, _) if b.method == "Options"));
        assert!(matches!(table.find("DELETE", "/carts/ann"), Lookup::WrongMethod));
        assert!(matches!(table.find("GET", "/nothing"), Lookup::NotFound));
        assert!(matches!(table.find("GET", "/carts/%ff%fe"), Lookup::BadValue(b, _) if b.method == "Get"));
    }

    fn template_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just("*".to_string()),
            Just("**".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("=".to_string()),
            Just(":".to_string()),
            Just(".".to_string()),
            "[a-z_]{1,4}",
            "\\PC{0,3}",
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn parsing_and_matching_never_panic(template in template_text(), path in template_text()) {
            if let Ok(t) = parse_template(&template) {
                let _ = t.matches(&path);
                let _ = t.matches(&template);
            }
            let _ = parse_query(&path);
            let _ = percent_decode(&path, true, true);
        }

        #[test]
        fn arbitrary_text_never_panics(template in "\\PC{0,40}", path in "\\PC{0,40}") {
            if let Ok(t) = parse_template(&template) {
                let _ = t.matches(&path);
            }
        }

        #[test]
        fn a_filled_template_matches_its_own_values(
            literals in prop::collection::vec("[a-z]{1,5}", 1..4),
            values in prop::collection::vec("[a-zA-Z0-9 /%]{1,6}", 1..4),
        ) {
            let mut template = String::new();
            let mut path = String::new();
            for (i, literal) in literals.iter().enumerate() {
                template.push_str(&format!("/{literal}/{{f{i}}}"));
                let value = values.get(i % values.len()).cloned().unwrap_or_default();
                let encoded: String = value.bytes().map(|b| format!("%{b:02X}")).collect();
                path.push_str(&format!("/{literal}/{encoded}"));
            }
            let t = parse_template(&template).expect("a generated template parses");
            let bindings = t.matches(&path).expect("its own path matches").expect("decodes");
            for (i, (field, value)) in bindings.iter().enumerate() {
                prop_assert_eq!(field, &vec![format!("f{i}")]);
                prop_assert_eq!(value, values.get(i % values.len()).expect("value"));
            }
        }
    }
}
