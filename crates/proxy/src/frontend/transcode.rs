//! HTTP/JSON transcoding: a request whose HTTP method and path match a `google.api.http` rule
//! (the table of `http_rules.rs`, compiled once at startup) becomes a call of that gRPC method,
//! dispatched like any other; the reply goes back as JSON (the proto3 JSON mapping).
//!
//! The request message is assembled as one JSON object (the body, then path variables and query
//! parameters set on top, each converted by its field's type) and parsed once with prost-reflect,
//! so lowerCamelCase and original field names are both accepted and an error names its field.
//! As grpc-gateway's default marshaler, fields the message does not have are ignored (a known
//! field with a value of the wrong type is still a 400 naming it).
//! Errors answer `{"code": <gRPC code>, "message": .., "details": []}` with the HTTP status
//! grpc-gateway uses. Streamed methods (actions only) go through `json_stream.rs`: client
//! streams are a body of JSON values, each made into a message as this module makes one; server
//! streams answer newline-delimited `{"result": ..}` objects.
//!
//! Rules are checked against their method when compiled: path variables, `body` and
//! `response_body` must name fields that exist, a client-streaming method needs a `body`; a
//! rule that fails is left out and returned as a problem (reported to the user function).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use prost::Message as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use serde_json::Value as Json;
use tonic::Status;
use tonic::body::Body;

use super::http_rules::{Binding, BodyTarget, Lookup, RuleProblem, RuleTable};
use super::http_status::{error_json, http_status};
use super::json_stream;
use crate::catalog::Catalog;
use crate::discovery::MAX_MESSAGE_BYTES;
use crate::entities::{Call, Dispatcher};
use crate::protocol::cloudstate::{Metadata, MetadataEntry, metadata_entry};
use crate::protocol::google::api::HttpRule;

/// The `google.api.http` extension of `google.protobuf.MethodOptions`.
pub const HTTP_OPTION: u32 = 72_295_728;

/// Just the `google.api.http` option of a `MethodOptions`, decoded from the options' bytes, so
/// that it is found whether or not the user's descriptors declare the extension.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpOption {
    #[prost(message, optional, tag = "72295728")]
    http: Option<HttpRule>,
}

/// The `google.api.http` rule of a method, if it has one.
pub fn http_rule(method: &MethodDescriptor) -> Option<HttpRule> {
    let bytes = method.options().encode_to_vec();
    HttpOption::decode(bytes.as_slice()).ok()?.http
}

/// The messages and streaming shape of one bound method.
#[derive(Debug, Clone)]
struct Target {
    input: MessageDescriptor,
    output: MessageDescriptor,
    client_streaming: bool,
    server_streaming: bool,
}

impl Target {
    /// Why `binding` cannot serve this method, if it cannot.
    fn check(&self, binding: &Binding) -> Result<(), String> {
        for variable in &binding.template.variables {
            let fields = resolve(&self.input, &variable.field)?;
            if let Some(last) = fields.last() {
                let plain = match last.kind() {
                    Kind::Message(m) => m.full_name().starts_with("google.protobuf."),
                    _ => true,
                };
                if !plain || last.is_map() {
                    return Err(format!(
                        "path variable {:?} is a message or map field; it cannot take a path value",
                        variable.field.join(".")
                    ));
                }
            }
        }
        match &binding.body {
            BodyTarget::Field(path) => {
                resolve(&self.input, path).map_err(|e| format!("body {:?}: {e}", path.join(".")))?;
            }
            BodyTarget::None if self.client_streaming => {
                return Err("a client-streaming method needs a body (\"*\" or a field)".to_string());
            }
            BodyTarget::None | BodyTarget::All => {}
        }
        if let Some(path) = &binding.response_body {
            resolve(&self.output, path).map_err(|e| format!("response_body {:?}: {e}", path.join(".")))?;
        }
        Ok(())
    }
}

/// The compiled rules and the messages they need.
#[derive(Debug, Default)]
pub struct Transcoder {
    table: RuleTable,
    targets: HashMap<(String, String), Target>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A gRPC status as the JSON error grpc-gateway sends.
pub fn error_response(status: &Status) -> Response<Body> {
    error_with(http_status(status.code()), status)
}

fn error_with(http: StatusCode, status: &Status) -> Response<Body> {
    json_response(http, error_json(status).to_string().into_bytes())
}

/// Whether the request says its body is JSON: `application/json` or a `+json` type
/// (`application/merge-patch+json`), parameters (`; charset=utf-8`) allowed. A route that takes
/// a body requires it: other types (`text/plain`, forms) are what a page of any origin may
/// send without a CORS preflight.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else { return false };
    kind == "application" && (subtype == "json" || (subtype.ends_with("+json") && subtype.len() > 5))
}

/// Headers that belong to HTTP itself, not to the application.
fn is_transport_header(key: &str) -> bool {
    matches!(
        key,
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "content-length"
            | "content-type"
            | "accept"
            | "accept-encoding"
            | "user-agent"
            | "http2-settings"
    )
}

/// The request's application headers as CloudState metadata.
fn metadata(headers: &HeaderMap) -> Option<Metadata> {
    let entries: Vec<MetadataEntry> = headers
        .iter()
        .filter(|(key, _)| !is_transport_header(key.as_str()))
        .filter_map(|(key, value)| {
            Some(MetadataEntry {
                key: key.as_str().to_string(),
                value: Some(metadata_entry::Value::StringValue(value.to_str().ok()?.to_string())),
            })
        })
        .collect();
    (!entries.is_empty()).then_some(Metadata { entries })
}

/// A field of `message` by original or lowerCamelCase name.
fn field(message: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    message.get_field_by_name(name).or_else(|| message.get_field_by_json_name(name))
}

/// Resolves a dotted field path: every step but the last must be a singular message field.
fn resolve(message: &MessageDescriptor, path: &[String]) -> Result<Vec<FieldDescriptor>, String> {
    let mut current = message.clone();
    let mut fields = Vec::with_capacity(path.len());
    for (i, name) in path.iter().enumerate() {
        let found =
            field(&current, name).ok_or_else(|| format!("{} has no field {name:?}", current.full_name()))?;
        if i + 1 < path.len() {
            match found.kind() {
                Kind::Message(inner) if !found.is_list() && !found.is_map() => current = inner,
                _ => return Err(format!("field {name:?} of {} is not a message", current.full_name())),
            }
        }
        fields.push(found);
    }
    Ok(fields)
}

/// The JSON value of one path or query text for `field` (proto3 JSON accepts numbers as
/// strings; booleans and enum numbers need converting).
fn scalar(field: &FieldDescriptor, text: &str) -> Result<Json, String> {
    let boolean = |text: &str| match text {
        "true" => Ok(Json::Bool(true)),
        "false" => Ok(Json::Bool(false)),
        other => Err(format!("field {:?} needs true or false, not {other:?}", field.name())),
    };
    match field.kind() {
        Kind::Bool => boolean(text),
        Kind::Enum(_) => Ok(text.parse::<i64>().map_or_else(|_| Json::String(text.to_string()), Json::from)),
        Kind::Message(m) if m.full_name() == "google.protobuf.BoolValue" => boolean(text),
        Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => {
            Ok(Json::String(text.to_string()))
        }
        Kind::Message(m) => Err(format!(
            "field {:?} is a message ({}); it cannot be set from the path or the query",
            field.name(),
            m.full_name()
        )),
        _ => Ok(Json::String(text.to_string())),
    }
}

/// Sets (or, for `append`, appends to) the value at `fields` in `root`, keyed by original names;
/// a value the body gave under the lowerCamelCase name is moved first, so the path wins.
fn insert(root: &mut Json, fields: &[FieldDescriptor], value: Json, append: bool) -> Result<(), String> {
    let mut current = root;
    for (i, field) in fields.iter().enumerate() {
        if current.is_null() {
            *current = Json::Object(serde_json::Map::new());
        }
        let Json::Object(object) = current else {
            return Err(format!("the value holding field {:?} is not a JSON object", field.name()));
        };
        if field.json_name() != field.name()
            && let Some(moved) = object.remove(field.json_name())
        {
            object.insert(field.name().to_string(), moved);
        }
        let slot = object.entry(field.name().to_string()).or_insert(Json::Null);
        if i + 1 == fields.len() {
            if append {
                if !slot.is_array() {
                    *slot = Json::Array(Vec::new());
                }
                if let Json::Array(items) = slot {
                    items.push(value);
                }
            } else {
                *slot = value;
            }
            return Ok(());
        }
        current = slot;
    }
    Ok(())
}

fn starts_with(fields: &[FieldDescriptor], prefix: &[FieldDescriptor]) -> bool {
    fields.len() >= prefix.len() && fields.iter().zip(prefix).all(|(a, b)| a == b)
}

/// Builds the request message of `binding` from the path variables, query and body.
fn request_message(
    input: &MessageDescriptor,
    binding: &Binding,
    variables: &[(Vec<String>, String)],
    query: &str,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let bad = |why: String| Status::invalid_argument(format!("bad request for {}: {why}", input.full_name()));
    let parsed_body = || -> Result<Json, Status> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Json::Null);
        }
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not valid JSON: {e}")))
    };
    let mut root = Json::Null;
    let mut body_fields = None;
    match &binding.body {
        BodyTarget::None => {}
        BodyTarget::All => root = parsed_body()?,
        BodyTarget::Field(path) => {
            let fields = resolve(input, path).map_err(bad)?;
            let value = parsed_body()?;
            if !value.is_null() {
                insert(&mut root, &fields, value, false).map_err(bad)?;
            }
            body_fields = Some(fields);
        }
    }
    let mut bound = Vec::with_capacity(variables.len());
    for (path, text) in variables {
        let fields = resolve(input, path).map_err(bad)?;
        let last = fields.last().ok_or_else(|| bad("an empty field path".to_string()))?;
        let value = scalar(last, text).map_err(bad)?;
        insert(&mut root, &fields, value, false).map_err(bad)?;
        bound.push(fields);
    }
    if binding.body != BodyTarget::All {
        let pairs = super::http_rules::parse_query(query).map_err(|e| bad(format!("query parameter {e}")))?;
        for (key, text) in pairs {
            let path: Vec<String> = key.split('.').map(str::to_string).collect();
            let fields =
                resolve(input, &path).map_err(|e| bad(format!("query parameter {key:?} is unknown: {e}")))?;
            let from_elsewhere = bound.iter().any(|b| starts_with(&fields, b))
                || body_fields.as_ref().is_some_and(|b| starts_with(&fields, b));
            if from_elsewhere {
                continue;
            }
            let last = fields.last().ok_or_else(|| bad(format!("query parameter {key:?} is empty")))?;
            if last.is_map() {
                return Err(bad(format!("query parameter {key:?} names a map field")));
            }
            let value = scalar(last, &text).map_err(bad)?;
            insert(&mut root, &fields, value, last.is_list()).map_err(bad)?;
        }
    }
    if root.is_null() {
        root = Json::Object(serde_json::Map::new());
    }
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(root, &mut track);
    // Unknown fields are ignored, as grpc-gateway's default marshaler does.
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message =
        DynamicMessage::deserialize_with_options(input.clone(), deserializer, &options).map_err(|e| {
            let path = track.path().to_string();
            if path == "." || path == "?" { bad(e.to_string()) } else { bad(format!("field {path}: {e}")) }
        })?;
    Ok(message.encode_to_vec())
}

/// The reply as JSON bytes (only `response_body`'s field if the rule names one).
fn reply_json(
    output: &MessageDescriptor,
    reply: &[u8],
    response_body: Option<&[String]>,
) -> Result<Vec<u8>, Status> {
    let value = reply_value(output, reply, response_body)?;
    serde_json::to_vec(&value).map_err(|e| Status::internal(format!("encoding the reply as JSON: {e}")))
}

/// The reply as a JSON value (only `response_body`'s field if the rule names one).
fn reply_value(
    output: &MessageDescriptor,
    reply: &[u8],
    response_body: Option<&[String]>,
) -> Result<Json, Status> {
    let message = DynamicMessage::decode(output.clone(), reply).map_err(|e| {
        Status::internal(format!("the user function's reply is not a valid {}: {e}", output.full_name()))
    })?;
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| Status::internal(format!("the reply {} has no JSON form: {e}", output.full_name())))?;
    if let Some(path) = response_body {
        let fields = resolve(output, path).map_err(Status::internal)?;
        for field in fields {
            value = match value {
                Json::Object(mut object) => object.remove(field.json_name()).unwrap_or(Json::Null),
                _ => Json::Null,
            };
        }
    }
    Ok(value)
}

impl Transcoder {
    /// Compiles the rules of every served method; bad rules are returned and left out.
    pub fn build(catalog: &Catalog) -> (Self, Vec<RuleProblem>) {
        let mut rules: Vec<(String, String, HttpRule)> = Vec::new();
        let mut targets = HashMap::new();
        for service in catalog.services() {
            let Some(descriptor) = catalog.pool().get_service_by_name(&service.name) else { continue };
            for method in descriptor.methods() {
                let Some(rule) = http_rule(&method) else { continue };
                targets.insert(
                    (service.name.clone(), method.name().to_string()),
                    Target {
                        input: method.input(),
                        output: method.output(),
                        client_streaming: method.is_client_streaming(),
                        server_streaming: method.is_server_streaming(),
                    },
                );
                rules.push((service.name.clone(), method.name().to_string(), rule));
            }
        }
        let (table, problems) =
            RuleTable::compile_with(rules.iter().map(|(s, m, r)| (s.as_str(), m.as_str(), r)), |binding| {
                match targets.get(&(binding.service.clone(), binding.method.clone())) {
                    Some(target) => target.check(binding),
                    None => Err("the method is not served".to_string()),
                }
            });
        (Self { table, targets }, problems)
    }

    /// How many HTTP bindings there are.
    pub fn len(&self) -> usize {
        self.table.bindings().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.bindings().is_empty()
    }

    /// Answers one HTTP request.
    pub async fn handle(&self, dispatcher: Arc<Dispatcher>, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let (binding, variables) = match self.table.find(parts.method.as_str(), path) {
            Lookup::Found(binding, variables) => (binding, variables),
            Lookup::BadValue(_, error) => {
                return error_response(&Status::invalid_argument(format!(
                    "bad request path {path:?}: {error}"
                )));
            }
            Lookup::WrongMethod => {
                let status = Status::unimplemented(format!(
                    "HTTP method {} is not bound for path {path:?}",
                    parts.method
                ));
                return error_with(StatusCode::METHOD_NOT_ALLOWED, &status);
            }
            Lookup::NotFound => {
                return error_response(&Status::not_found(format!(
                    "no HTTP rule matches {} {path:?}",
                    parts.method
                )));
            }
        };
        let Some(target) = self.targets.get(&(binding.service.clone(), binding.method.clone())) else {
            return error_response(&Status::internal(format!(
                "HTTP rule for {}.{} has no method",
                binding.service, binding.method
            )));
        };
        if binding.body != BodyTarget::None && !is_json(&parts.headers) {
            let content_type = parts.headers.get(http::header::CONTENT_TYPE);
            let status = Status::invalid_argument(match content_type {
                None => "the request body must be JSON: the content type is missing, expected \
                         application/json"
                    .to_string(),
                Some(value) => format!(
                    "the request body must be JSON: the content type is {:?}, expected application/json",
                    String::from_utf8_lossy(value.as_bytes())
                ),
            });
            return error_with(StatusCode::UNSUPPORTED_MEDIA_TYPE, &status);
        }
        let metadata = metadata(&parts.headers);
        let query = parts.uri.query().unwrap_or_default().to_string();
        if target.client_streaming {
            let (input, binding_owned) = (target.input.clone(), binding.clone());
            let requests = json_stream::request_stream(body, MAX_MESSAGE_BYTES, move |value| {
                request_message(&input, &binding_owned, &variables, &query, value)
            });
            let (service, method) = (binding.service.as_str(), binding.method.as_str());
            if target.server_streaming {
                return match dispatcher.streamed(service, method, metadata, requests).await {
                    Ok(replies) => self.stream_reply(target, binding, replies).await,
                    Err(status) => error_response(&status),
                };
            }
            let result = dispatcher.streamed_in(service, method, metadata, requests).await;
            return match result
                .and_then(|reply| reply_json(&target.output, &reply, binding.response_body.as_deref()))
            {
                Ok(json) => json_response(StatusCode::OK, json),
                Err(status) => error_response(&status),
            };
        }
        let body = match Limited::new(body, MAX_MESSAGE_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let status = Status::invalid_argument(format!("reading the request body: {error}"));
                let http = if error.is::<http_body_util::LengthLimitError>() {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return error_with(http, &status);
            }
        };
        let payload = match request_message(&target.input, binding, &variables, &query, &body) {
            Ok(payload) => Bytes::from(payload),
            Err(status) => return error_response(&status),
        };
        if target.server_streaming {
            let (service, method) = (binding.service.as_str(), binding.method.as_str());
            return match dispatcher.streamed_out(service, method, metadata, payload).await {
                Ok(replies) => self.stream_reply(target, binding, replies).await,
                Err(status) => error_response(&status),
            };
        }
        let call =
            Call { service: binding.service.clone(), method: binding.method.clone(), payload, metadata };
        let result = dispatcher
            .unary(call, 0)
            .await
            .and_then(|reply| reply_json(&target.output, &reply, binding.response_body.as_deref()));
        match result {
            Ok(json) => json_response(StatusCode::OK, json),
            Err(status) => error_response(&status),
        }
    }

    /// A server stream's replies as newline-delimited JSON.
    async fn stream_reply(
        &self,
        target: &Target,
        binding: &Binding,
        replies: crate::entities::ReplyStream,
    ) -> Response<Body> {
        let (output, response_body) = (target.output.clone(), binding.response_body.clone());
        json_stream::stream_response(replies, move |reply| {
            reply_value(&output, reply, response_body.as_deref())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost_reflect::DescriptorPool;
    use tonic::Code;

    use super::*;
    use crate::protocol::google::api::http_rule::Pattern;

    /// A small schema compiled by protox at test time: nested messages, repeated, enum, bool.
    fn pool() -> DescriptorPool {
        let dir = tempfile::tempdir().expect("temp dir");
        let proto = r#"
            syntax = "proto3";
            package t;
            enum Color { RED = 0; GREEN = 1; }
            message Inner { string id = 1; int64 big = 2; }
            message Req {
                string user_id = 1;
                int32 quantity = 2;
                bool flag = 3;
                Color color = 4;
                repeated string tags = 5;
                Inner inner = 6;
                double ratio = 7;
            }
            message Reply { repeated Inner items = 1; string note = 2; }
            service S { rpc M(Req) returns (Reply); }
        "#;
        std::fs::write(dir.path().join("t.proto"), proto).expect("writes");
        let set = protox::compile(["t.proto"], [dir.path()]).expect("compiles");
        DescriptorPool::from_file_descriptor_set(set).expect("loads")
    }

    fn binding(body: BodyTarget) -> Binding {
        Binding {
            http_method: "POST".into(),
            pattern: "/x".into(),
            template: super::super::http_rules::parse_template("/x").expect("parses"),
            body,
            response_body: None,
            service: "t.S".into(),
            method: "M".into(),
        }
    }

    fn decode(pool: &DescriptorPool, bytes: &[u8]) -> Json {
        let message =
            DynamicMessage::decode(pool.get_message_by_name("t.Req").expect("Req"), bytes).expect("decodes");
        serde_json::to_value(&message).expect("json")
    }

    fn var(path: &str, value: &str) -> (Vec<String>, String) {
        (path.split('.').map(str::to_string).collect(), value.to_string())
    }

    #[test]
    fn body_path_and_query_make_one_message() {
        let pool = pool();
        let input = pool.get_message_by_name("t.Req").expect("Req");
        let body = br#"{"userId": "from-body", "quantity": 3, "inner": {"big": "7"}}"#;
        let bytes =
            request_message(&input, &binding(BodyTarget::All), &[var("user_id", "ann")], "quantity=9", body)
                .expect("builds");
        let json = decode(&pool, &bytes);
        assert_eq!(json["userId"], "ann", "the path wins over the body");
        assert_eq!(json["quantity"], 3, "with body \"*\" the query is not used");
        assert_eq!(json["inner"]["big"], "7");

        let bytes = request_message(
            &input,
            &binding(BodyTarget::Field(vec!["inner".into()])),
            &[var("inner.id", "i1")],
            "flag=true&color=GREEN&tags=a&tags=b&quantity=4&ratio=0.5&inner.big=1",
            br#"{"big": 42}"#,
        )
        .expect("builds");
        let json = decode(&pool, &bytes);
        assert_eq!(json["inner"]["id"], "i1");
        assert_eq!(json["inner"]["big"], "42", "query fields under the body are ignored");
        assert_eq!(json["flag"], true);
        assert_eq!(json["color"], "GREEN");
        assert_eq!(json["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(json["quantity"], 4);
        assert_eq!(json["ratio"], 0.5);
    }

    #[test]
    fn errors_name_the_field() {
        let pool = pool();
        let input = pool.get_message_by_name("t.Req").expect("Req");
        let all = binding(BodyTarget::All);
        let error = request_message(&input, &all, &[], "", br#"{"quantity": "lots"}"#).expect_err("bad");
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().contains("quantity"), "{}", error.message());
        // Unknown fields are ignored, as grpc-gateway does; known ones are still checked.
        let bytes =
            request_message(&input, &all, &[], "", br#"{"nope": 1, "quantity": 2}"#).expect("ignored");
        assert_eq!(decode(&pool, &bytes)["quantity"], 2);
        let error = request_message(&input, &all, &[], "", br#"{"nope": 1, "flag": 3}"#).expect_err("bad");
        assert!(error.message().contains("flag"), "{}", error.message());
        let error = request_message(&input, &all, &[], "", b"{not json").expect_err("syntax");
        assert!(error.message().contains("not valid JSON"), "{}", error.message());
        let none = binding(BodyTarget::None);
        let error = request_message(&input, &none, &[], "bogus=1", b"").expect_err("unknown query");
        assert!(error.message().contains("bogus"), "{}", error.message());
        let error = request_message(&input, &none, &[], "flag=maybe", b"").expect_err("bad bool");
        assert!(error.message().contains("flag"), "{}", error.message());
        let error = request_message(&input, &none, &[], "inner=x", b"").expect_err("message from query");
        assert!(error.message().contains("inner"), "{}", error.message());
    }

    #[test]
    fn replies_as_json_with_defaults_and_response_body() {
        let pool = pool();
        let output = pool.get_message_by_name("t.Reply").expect("Reply");
        let json: Json =
            serde_json::from_slice(&reply_json(&output, &[], None).expect("json")).expect("parses");
        assert_eq!(json, serde_json::json!({"items": [], "note": ""}));
        let mut reply = DynamicMessage::new(output.clone());
        reply.set_field_by_name("note", prost_reflect::Value::String("hi".into()));
        let bytes = reply.encode_to_vec();
        let items = reply_json(&output, &bytes, Some(&["items".to_string()])).expect("json");
        assert_eq!(items, b"[]");
        let error = reply_json(&output, b"\xff\xff", None).expect_err("garbage");
        assert_eq!(error.code(), Code::Internal);
    }

    fn json_body() -> impl Strategy<Value = Vec<u8>> {
        let key = prop_oneof![
            Just("userId".to_string()),
            Just("quantity".to_string()),
            Just("flag".to_string()),
            Just("inner".to_string()),
            Just("tags".to_string()),
            "[a-z]{1,5}",
        ];
        let value = prop_oneof![
            Just("1"),
            Just("-7"),
            Just("\"x\""),
            Just("true"),
            Just("null"),
            Just("[]"),
            Just("{}"),
            Just("1e99"),
            Just("\"NaN\""),
            Just("[\"a\", 2]"),
            Just("{\"big\": \"9\"}"),
        ];
        prop::collection::vec((key, value), 0..5).prop_map(|pairs| {
            let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", fields.join(", ")).into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Whatever the body, query and path value, the answer is a message or a 400.
        #[test]
        fn any_input_gives_a_message_or_invalid_argument(
            body in prop_oneof![prop::collection::vec(any::<u8>(), 0..64), json_body()],
            query in "[a-zA-Z_.=&%0-9+]{0,40}",
            value in "\\PC{0,8}",
            field in prop_oneof![
                Just("user_id"), Just("quantity"), Just("flag"), Just("color"), Just("inner.big"),
                Just("tags"), Just("inner"), Just("nope.x"),
            ],
            target in 0..3usize,
        ) {
            let pool = pool();
            let input = pool.get_message_by_name("t.Req").expect("Req");
            let body_target = match target {
                0 => BodyTarget::None,
                1 => BodyTarget::All,
                _ => BodyTarget::Field(vec!["inner".into()]),
            };
            match request_message(&input, &binding(body_target), &[var(field, &value)], &query, &body) {
                Ok(bytes) => {
                    let _ = decode(&pool, &bytes);
                }
                Err(status) => prop_assert_eq!(status.code(), Code::InvalidArgument),
            }
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(value));
            is_json(&headers)
        };
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/merge-patch+json",
            "application/vnd.api+json ; q=1",
        ] {
            assert!(with(json), "{json}");
        }
        for other in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/+json",
            "application/jsonp",
            "",
        ] {
            assert!(!with(other), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()), "no content type");
    }

    #[test]
    fn reads_the_option_by_its_number() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Declared by google/api/annotations.proto, and by a look-alike in another package:
        // the option is found by field number either way.
        let declared = r#"
            syntax = "proto3";
            package d;
            import "google/api/annotations.proto";
            import "google/protobuf/empty.proto";
            service D {
                rpc M(google.protobuf.Empty) returns (google.protobuf.Empty) {
                    option (google.api.http) = { get: "/d/m", additional_bindings: { post: "/d/m" body: "*" } };
                }
                rpc Plain(google.protobuf.Empty) returns (google.protobuf.Empty);
            }
        "#;
        let lookalike = r#"
            syntax = "proto3";
            package l;
            import "google/protobuf/descriptor.proto";
            import "google/protobuf/empty.proto";
            message Rule { string get = 2; }
            extend google.protobuf.MethodOptions { Rule route = 72295728; }
            service L {
                rpc M(google.protobuf.Empty) returns (google.protobuf.Empty) { option (route).get = "/l/m"; }
            }
        "#;
        std::fs::write(dir.path().join("d.proto"), declared).expect("writes");
        std::fs::write(dir.path().join("l.proto"), lookalike).expect("writes");
        let protos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
        let mut compiler = protox::Compiler::new([dir.path(), protos.as_path()]).expect("compiler");
        compiler.include_imports(true);
        compiler.open_files(["d.proto", "l.proto"]).expect("compiles");
        let pool = DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).expect("loads");
        let methods =
            |service: &str| pool.get_service_by_name(service).expect("service").methods().collect::<Vec<_>>();
        let d = methods("d.D");
        let rule = http_rule(&d[0]).expect("declared option");
        assert_eq!(rule.pattern, Some(Pattern::Get("/d/m".into())));
        assert_eq!(rule.additional_bindings.len(), 1);
        assert!(http_rule(&d[1]).is_none());
        let rule = http_rule(&methods("l.L")[0]).expect("look-alike option");
        assert_eq!(rule.pattern, Some(Pattern::Get("/l/m".into())));
    }
}
