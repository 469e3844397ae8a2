//! A Rust model user function for streamed actions (`streams.model.Streams`, compiled with
//! protox at run time, with `google.api.http` rules): serves `EntityDiscovery` and the
//! `ActionProtocol` calls, and records what it saw. Used by `action_streams.rs` (gRPC clients)
//! and `http_streams.rs` (HTTP/JSON clients).

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use prost::Message as _;
use prost_types::Any;
use stead_proxy::protocol::cloudstate::action::action_protocol_server::{
    ActionProtocol, ActionProtocolServer,
};
use stead_proxy::protocol::cloudstate::action::{ActionCommand, ActionResponse, action_response};
use stead_proxy::protocol::cloudstate::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use stead_proxy::protocol::cloudstate::{
    Entity, EntitySpec, Failure, Forward, ProxyInfo, Reply, ServiceInfo, SideEffect, UserFunctionError,
    metadata_entry,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// The streaming service.
pub const SERVICE: &str = "streams.model.Streams";
/// Its message.
pub const MSG: &str = "streams.model.Msg";
const PROTO: &str = r#"
syntax = "proto3";
package streams.model;
import "google/api/annotations.proto";
message Msg { string text = 1; }
service Streams {
    rpc Unary(Msg) returns (Msg) { option (google.api.http) = { post: "/unary" body: "*" }; }
    rpc Collect(stream Msg) returns (Msg) { option (google.api.http) = { post: "/collect" body: "*" }; }
    rpc Expand(Msg) returns (stream Msg) {
        option (google.api.http) = {
            get: "/expand/{text}"
            additional_bindings { post: "/expand" body: "*" response_body: "text" }
        };
    }
    rpc Echo(stream Msg) returns (stream Msg) { option (google.api.http) = { post: "/echo" body: "*" }; }
    // Invalid rules: reported to the user function and left out, the good ones still served.
    rpc BadPattern(Msg) returns (Msg) { option (google.api.http) = { get: "bad/no-slash" }; }
    rpc BadField(Msg) returns (Msg) { option (google.api.http) = { get: "/bad/{colour}" }; }
    rpc BadStream(stream Msg) returns (Msg) { option (google.api.http) = { get: "/bad/stream" }; }
}
"#;

/// `streams.model.Msg`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    /// The text.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// A message with `text`.
pub fn msg(text: &str) -> Msg {
    Msg { text: text.into() }
}

fn any(text: &str) -> Any {
    Any { type_url: format!("type.googleapis.com/{MSG}"), value: msg(text).encode_to_vec() }
}

fn text_of(payload: Option<&Any>) -> String {
    payload.and_then(|p| Msg::decode(p.value.as_slice()).ok()).map(|m| m.text).unwrap_or_default()
}

fn descriptors() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("streams.proto"), PROTO).expect("writes the proto");
    let proto_dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/proto"));
    let mut compiler = protox::Compiler::new([dir.path(), proto_dir]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_files(["streams.proto"]).expect("the proto compiles");
    compiler.encode_file_descriptor_set()
}

fn reply(text: &str) -> ActionResponse {
    ActionResponse {
        response: Some(action_response::Response::Reply(Reply { payload: Some(any(text)), metadata: None })),
        side_effects: vec![],
    }
}

fn failure(description: &str) -> ActionResponse {
    ActionResponse {
        response: Some(action_response::Response::Failure(Failure {
            command_id: 0,
            description: description.into(),
            restart: false,
        })),
        side_effects: vec![],
    }
}

fn effect(text: &str, synchronous: bool) -> SideEffect {
    SideEffect {
        service_name: SERVICE.into(),
        command_name: "Unary".into(),
        payload: Some(any(text)),
        synchronous,
        metadata: None,
    }
}

/// The model's answer to one streamed text: `fail` fails, `effect` answers nothing but asks
/// for a side effect, `sync` replies after a synchronous side effect, `fwd` forwards to `Unary`,
/// anything else is echoed with `prefix`.
fn answer(prefix: &str, text: &str) -> ActionResponse {
    match text {
        "fail" => failure("failed on purpose"),
        "effect" => ActionResponse { response: None, side_effects: vec![effect("from-effect", false)] },
        "sync" => ActionResponse { side_effects: vec![effect("from-sync", true)], ..reply("after-sync") },
        "fwd" => ActionResponse {
            response: Some(action_response::Response::Forward(Forward {
                service_name: SERVICE.into(),
                command_name: "Unary".into(),
                payload: Some(any("forwarded")),
                metadata: None,
            })),
            side_effects: vec![],
        },
        other => reply(&format!("{prefix}{other}")),
    }
}

/// What the model saw, in order; `reportError` messages apart.
#[derive(Clone, Default)]
pub struct Model {
    log: Arc<Mutex<Vec<String>>>,
    reports: Arc<Mutex<Vec<String>>>,
}

impl Model {
    /// The `reportError` messages received.
    pub fn reports(&self) -> Vec<String> {
        self.reports.lock().expect("reports lock").clone()
    }

    fn record(&self, line: String) {
        self.log.lock().expect("log lock").push(line);
    }

    /// Everything recorded, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Records one streamed-in command, showing which fields are set.
    fn record_command(&self, call: &str, command: &ActionCommand) {
        let metadata: Vec<String> = command
            .metadata
            .iter()
            .flat_map(|m| &m.entries)
            .filter_map(|e| match &e.value {
                Some(metadata_entry::Value::StringValue(v)) => Some(format!("{}={v}", e.key)),
                _ => None,
            })
            .collect();
        self.record(format!(
            "{call} service={:?} name={:?} payload={:?} metadata={metadata:?}",
            command.service_name,
            command.name,
            command.payload.as_ref().map(|p| text_of(Some(p)))
        ));
    }
}

#[tonic::async_trait]
impl EntityDiscovery for Model {
    async fn discover(&self, _: Request<ProxyInfo>) -> Result<Response<EntitySpec>, Status> {
        Ok(Response::new(EntitySpec {
            proto: descriptors(),
            entities: vec![Entity {
                entity_type: "cloudstate.action.ActionProtocol".into(),
                service_name: SERVICE.into(),
                persistence_id: String::new(),
                passivation_strategy: None,
            }],
            service_info: Some(ServiceInfo {
                protocol_major_version: 0,
                protocol_minor_version: 2,
                ..Default::default()
            }),
        }))
    }

    async fn report_error(&self, request: Request<UserFunctionError>) -> Result<Response<()>, Status> {
        self.reports.lock().expect("reports lock").push(request.into_inner().message);
        Ok(Response::new(()))
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ActionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ActionProtocol for Model {
    async fn handle_unary(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ActionResponse>, Status> {
        let command = request.into_inner();
        let text = text_of(command.payload.as_ref());
        self.record(format!("unary {text}"));
        Ok(Response::new(reply(&format!("unary:{text}"))))
    }

    /// `Collect`: joins the texts with `,`; `fail` fails; `hold` waits for the proxy to cancel.
    async fn handle_streamed_in(
        &self,
        request: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ActionResponse>, Status> {
        let mut commands = request.into_inner();
        let model = self.clone();
        let (mut done, result) = tokio::sync::oneshot::channel();
        // In a task of its own, so that the model sees the cancellation even when the server
        // drops the handler.
        tokio::spawn(async move {
            let mut texts = Vec::new();
            loop {
                match commands.message().await {
                    Ok(Some(command)) => {
                        model.record_command("in", &command);
                        if command.payload.is_some() {
                            texts.push(text_of(command.payload.as_ref()));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        model.record("in cancelled".into());
                        return;
                    }
                }
            }
            if texts.iter().any(|t| t == "hold") {
                // Never answers: the handler is dropped when the proxy cancels the call.
                done.closed().await;
                model.record("in cancelled".into());
                return;
            }
            let response = if texts.iter().any(|t| t == "fail") {
                failure("collect failed on purpose")
            } else {
                ActionResponse {
                    side_effects: vec![effect("after-collect", true)],
                    ..reply(&texts.join(","))
                }
            };
            let _ = done.send(response);
        });
        result.await.map(Response::new).map_err(|_| Status::cancelled("the stream was cancelled"))
    }

    type handleStreamedOutStream = ResponseStream;

    /// `Expand`: one answer per `,`-separated part; `hang` waits until the proxy cancels.
    async fn handle_streamed_out(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ResponseStream>, Status> {
        let command = request.into_inner();
        self.record_command("out", &command);
        let text = text_of(command.payload.as_ref());
        let (sender, receiver) = mpsc::channel(16);
        let model = self.clone();
        tokio::spawn(async move {
            for part in text.split(',') {
                if part == "hang" {
                    sender.closed().await;
                    model.record("out cancelled".into());
                    return;
                }
                if part == "abort" {
                    let _ = sender.send(Err(Status::resource_exhausted("user function gave up"))).await;
                    return;
                }
                if sender.send(Ok(answer("out:", part))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type handleStreamedStream = ResponseStream;

    /// `Echo`: one answer per message, as it comes; ends when the client's stream ends.
    async fn handle_streamed(
        &self,
        request: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut commands = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let model = self.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = commands.message() => next,
                    () = sender.closed() => {
                        model.record("echo cancelled".into());
                        return;
                    }
                };
                match next {
                    Ok(Some(command)) => {
                        model.record_command("echo", &command);
                        if command.payload.is_some() {
                            let text = text_of(command.payload.as_ref());
                            if sender.send(Ok(answer("echo:", &text))).await.is_err() {
                                model.record("echo cancelled".into());
                                return;
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(_) => {
                        model.record("echo cancelled".into());
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Serves `model` on a loopback port (until the test's runtime ends); returns its address.
pub async fn serve(model: Model) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(EntityDiscoveryServer::new(model.clone()))
            .add_service(ActionProtocolServer::new(model))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    addr
}
