//! The conformance suite's model user function (after CloudState's TCK model services), written
//! in Rust with tonic. It answers discovery, serves `EventSourced` and `ValueEntity`, and
//! RECORDS every message exchanged with the proxy, per stream, so tests can assert the exact
//! protocol traffic as the TCK's interceptor does.
//!
//! Behaviour (one `Request{id, actions}` per command, actions applied in order):
//! - `emit{value}` (event sourced): an event `Persisted{value}`, appended to the string state;
//!   a snapshot `Persisted{state}` whenever the sequence number crosses a multiple of 5;
//! - `update{value}` / `delete` (value entity): the state action; the state becomes value / "";
//! - `forward{id}`: forward to the second service's `Call` with `Request{id}`;
//! - `effect{id, synchronous}`: a side effect to the second service's `Call` with `Request{id}`;
//! - `fail{message, restart}`: the client action is a failure. The model still sends the
//!   command's events, state action and side effects in that reply (and an event-sourced model
//!   applies its events locally), so the suite checks that the proxy discards them. With
//!   `stream_failure` the model sends the stream's `Failure{command_id}` message instead.
//!
//! The reply is `Response{message: state}`. The second services (`...Two`) reply with an empty
//! `Response`; the configured services have a passivation timeout of 100 ms.

#![allow(dead_code, non_camel_case_types, clippy::all, clippy::pedantic)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use prost::Message as _;
use prost_types::Any;
use stead_proxy::protocol::cloudstate::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use stead_proxy::protocol::cloudstate::eventsourced::event_sourced_server::{
    EventSourced, EventSourcedServer,
};
use stead_proxy::protocol::cloudstate::eventsourced::{
    EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in,
    event_sourced_stream_out,
};
use stead_proxy::protocol::cloudstate::valueentity::value_entity_server::{ValueEntity, ValueEntityServer};
use stead_proxy::protocol::cloudstate::valueentity::{
    ValueEntityAction, ValueEntityDelete, ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut,
    ValueEntityUpdate, value_entity_action, value_entity_stream_in, value_entity_stream_out,
};
use stead_proxy::protocol::cloudstate::{
    ClientAction, Entity, EntityPassivationStrategy, EntitySpec, Failure, Forward, ProxyInfo, Reply,
    ServiceInfo, SideEffect, TimeoutPassivationStrategy, UserFunctionError, client_action,
    entity_passivation_strategy,
};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

/// The model's services, in package `tck.model`.
pub const ES_MODEL: &str = "tck.model.EventSourcedTckModel";
/// The event-sourced forward and side-effect target.
pub const ES_TWO: &str = "tck.model.EventSourcedTwo";
/// Event sourced, passivated after 100 ms.
pub const ES_CONFIGURED: &str = "tck.model.EventSourcedConfigured";
/// The value entity model.
pub const VE_MODEL: &str = "tck.model.ValueEntityTckModel";
/// The value-entity forward and side-effect target.
pub const VE_TWO: &str = "tck.model.ValueEntityTwo";
/// Value entity, passivated after 100 ms.
pub const VE_CONFIGURED: &str = "tck.model.ValueEntityConfigured";
/// The configured services' passivation timeout, in milliseconds.
pub const PASSIVATION_MS: i64 = 100;

const PROTO: &str = r#"
syntax = "proto3";
package tck.model;
import "cloudstate/entity_key.proto";
import "google/api/annotations.proto";

message Request {
    string id = 1 [(.cloudstate.entity_key) = true];
    repeated RequestAction actions = 2;
}
message RequestAction {
    oneof action {
        Emit emit = 1;
        Forward forward = 2;
        Effect effect = 3;
        Fail fail = 4;
        Update update = 5;
        Delete delete = 6;
    }
}
message Emit { string value = 1; }
message Forward { string id = 1; }
message Effect { string id = 1; bool synchronous = 2; }
message Fail { string message = 1; bool restart = 2; bool stream_failure = 3; }
message Update { string value = 1; }
message Delete {}
message Response { string message = 1; }
message Persisted { string value = 1; }

service EventSourcedTckModel {
    rpc Process(Request) returns (Response) {
        option (google.api.http) = { post: "/tck/model/eventsourced/{id}", body: "*" };
    }
}
service EventSourcedTwo { rpc Call(Request) returns (Response); }
service EventSourcedConfigured { rpc Call(Request) returns (Response); }
service ValueEntityTckModel {
    rpc Process(Request) returns (Response) {
        option (google.api.http) = { post: "/tck/model/valueentity/{id}", body: "*" };
    }
}
service ValueEntityTwo { rpc Call(Request) returns (Response); }
service ValueEntityConfigured { rpc Call(Request) returns (Response); }
"#;

/// The model's `FileDescriptorSet` (with its imports and the `entity_key` options).
pub fn descriptors() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("tck_model.proto"), PROTO).expect("writes the model proto");
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let mut compiler =
        protox::Compiler::new([dir.path(), std::path::Path::new(proto_dir)]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_files(["tck_model.proto"]).expect("the model proto compiles");
    compiler.encode_file_descriptor_set()
}

/// `tck.model.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, repeated, tag = "2")]
    pub actions: Vec<RequestAction>,
}

/// `tck.model.RequestAction`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestAction {
    #[prost(oneof = "Action", tags = "1, 2, 3, 4, 5, 6")]
    pub action: Option<Action>,
}

/// The `action` oneof.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Action {
    #[prost(message, tag = "1")]
    Emit(Value),
    #[prost(message, tag = "2")]
    Forward(Target),
    #[prost(message, tag = "3")]
    Effect(Effect),
    #[prost(message, tag = "4")]
    Fail(Fail),
    #[prost(message, tag = "5")]
    Update(Value),
    #[prost(message, tag = "6")]
    Delete(Empty),
}

/// `Emit`, `Update`, `Persisted`: one string.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub value: String,
}

/// `Forward`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Target {
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `Effect`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Effect {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub synchronous: bool,
}

/// `Fail`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Fail {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(bool, tag = "2")]
    pub restart: bool,
    /// Send the failure as the stream's `Failure` message instead of a reply's client action.
    #[prost(bool, tag = "3")]
    pub stream_failure: bool,
}

/// `Delete`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `tck.model.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `Any` of a model message.
pub fn any(name: &str, message: &impl prost::Message) -> Any {
    Any { type_url: format!("type.googleapis.com/tck.model.{name}"), value: message.encode_to_vec() }
}

/// `Any(Persisted{value})`.
pub fn persisted(value: &str) -> Any {
    any("Persisted", &Value { value: value.into() })
}

/// `Any(Request{id})`.
pub fn request_any(request: &Request) -> Any {
    any("Request", request)
}

/// `Any(Response{message})`.
pub fn response_any(message: &str) -> Any {
    any("Response", &Response { message: message.into() })
}

fn decode_persisted(any: Option<&Any>) -> String {
    any.and_then(|a| Value::decode(a.value.as_slice()).ok()).map(|v| v.value).unwrap_or_default()
}

/// One message exchanged on an entity stream: `In` from the proxy, `Out` from the model.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    EsIn(event_sourced_stream_in::Message),
    EsOut(event_sourced_stream_out::Message),
    VeIn(value_entity_stream_in::Message),
    VeOut(value_entity_stream_out::Message),
}

/// One `handle` stream, as the model saw it.
#[derive(Clone, Debug, Default)]
pub struct StreamLog {
    /// From the stream's init.
    pub service: String,
    /// From the stream's init.
    pub entity_id: String,
    /// Every message, in order.
    pub messages: Vec<Msg>,
    /// The proxy ended the stream.
    pub closed: bool,
}

/// Everything the model recorded.
#[derive(Debug, Default)]
pub struct Log {
    /// Every `discover` call.
    pub discovery: Vec<ProxyInfo>,
    /// Every `reportError` call.
    pub errors: Vec<String>,
    /// Every stream, in the order they were opened.
    pub streams: Vec<StreamLog>,
}

/// The model user function; clones share one [`Log`].
#[derive(Clone, Debug, Default)]
pub struct Model {
    log: Arc<Mutex<Log>>,
    descriptors: Arc<Vec<u8>>,
}

impl Model {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The streams opened for `service` and `entity_id`, in order.
    pub fn streams(&self, service: &str, entity_id: &str) -> Vec<StreamLog> {
        self.log()
            .streams
            .iter()
            .filter(|s| s.service == service && s.entity_id == entity_id)
            .cloned()
            .collect()
    }

    /// Every stream, in order.
    pub fn all_streams(&self) -> Vec<StreamLog> {
        self.log().streams.clone()
    }

    /// The `discover` calls.
    pub fn discovery(&self) -> Vec<ProxyInfo> {
        self.log().discovery.clone()
    }

    /// The `reportError` calls.
    pub fn errors(&self) -> Vec<String> {
        self.log().errors.clone()
    }

    fn open_stream(&self) -> usize {
        let mut log = self.log();
        log.streams.push(StreamLog::default());
        log.streams.len() - 1
    }

    fn record(&self, stream: usize, message: Msg) {
        let mut log = self.log();
        let entry = &mut log.streams[stream];
        match &message {
            Msg::EsIn(event_sourced_stream_in::Message::Init(init)) => {
                entry.service = init.service_name.clone();
                entry.entity_id = init.entity_id.clone();
            }
            Msg::VeIn(value_entity_stream_in::Message::Init(init)) => {
                entry.service = init.service_name.clone();
                entry.entity_id = init.entity_id.clone();
            }
            _ => {}
        }
        entry.messages.push(message);
    }

    fn close(&self, stream: usize) {
        self.log().streams[stream].closed = true;
    }
}

/// What one command's actions amount to.
#[derive(Default)]
struct Outcome {
    events: Vec<Any>,
    state_action: Option<value_entity_action::Action>,
    side_effects: Vec<SideEffect>,
    forward: Option<Forward>,
    failure: Option<Fail>,
    /// The state after the actions.
    state: String,
}

fn run_actions(actions: &[RequestAction], state: &str, second: &str) -> Outcome {
    let mut outcome = Outcome { state: state.to_string(), ..Outcome::default() };
    let target = |id: &str| request_any(&Request { id: id.into(), actions: vec![] });
    for action in actions.iter().filter_map(|a| a.action.as_ref()) {
        match action {
            Action::Emit(v) => {
                outcome.events.push(persisted(&v.value));
                outcome.state.push_str(&v.value);
            }
            Action::Update(v) => {
                outcome.state_action = Some(value_entity_action::Action::Update(ValueEntityUpdate {
                    value: Some(persisted(&v.value)),
                }));
                outcome.state = v.value.clone();
            }
            Action::Delete(_) => {
                outcome.state_action = Some(value_entity_action::Action::Delete(ValueEntityDelete {}));
                outcome.state = String::new();
            }
            Action::Forward(t) => {
                outcome.forward = Some(Forward {
                    service_name: second.into(),
                    command_name: "Call".into(),
                    payload: Some(target(&t.id)),
                    metadata: None,
                });
            }
            Action::Effect(e) => outcome.side_effects.push(SideEffect {
                service_name: second.into(),
                command_name: "Call".into(),
                payload: Some(target(&e.id)),
                synchronous: e.synchronous,
                metadata: None,
            }),
            Action::Fail(f) => outcome.failure = Some(f.clone()),
        }
    }
    outcome
}

fn client_action(command_id: i64, outcome: &Outcome) -> ClientAction {
    let action = match (&outcome.failure, &outcome.forward) {
        (Some(f), _) => client_action::Action::Failure(Failure {
            command_id,
            description: f.message.clone(),
            restart: f.restart,
        }),
        (None, Some(forward)) => client_action::Action::Forward(forward.clone()),
        (None, None) => client_action::Action::Reply(Reply {
            payload: Some(response_any(&outcome.state)),
            metadata: None,
        }),
    };
    ClientAction { action: Some(action) }
}

fn stream_failure(command_id: i64, outcome: &Outcome) -> Option<Failure> {
    let fail = outcome.failure.as_ref().filter(|f| f.stream_failure)?;
    Some(Failure { command_id, description: fail.message.clone(), restart: fail.restart })
}

/// An event-sourced entity of the model.
#[derive(Default)]
struct EsEntity {
    service: String,
    state: String,
    sequence: i64,
}

impl EsEntity {
    fn handle(
        &mut self,
        message: event_sourced_stream_in::Message,
    ) -> Option<event_sourced_stream_out::Message> {
        match message {
            event_sourced_stream_in::Message::Init(init) => {
                self.service = init.service_name;
                if let Some(snapshot) = init.snapshot {
                    self.sequence = snapshot.snapshot_sequence;
                    self.state = decode_persisted(snapshot.snapshot.as_ref());
                }
                None
            }
            event_sourced_stream_in::Message::Event(event) => {
                self.sequence = event.sequence;
                self.state.push_str(&decode_persisted(event.payload.as_ref()));
                None
            }
            event_sourced_stream_in::Message::Command(command) => {
                let request = command
                    .payload
                    .as_ref()
                    .and_then(|p| Request::decode(p.value.as_slice()).ok())
                    .unwrap_or_default();
                let actions = if self.service == ES_TWO { &[][..] } else { &request.actions[..] };
                let outcome = run_actions(actions, &self.state, ES_TWO);
                if let Some(failure) = stream_failure(command.id, &outcome) {
                    return Some(event_sourced_stream_out::Message::Failure(failure));
                }
                let before = self.sequence;
                // The model applies its events whatever the client action (see the module doc).
                self.sequence += outcome.events.len() as i64;
                self.state = outcome.state.clone();
                let snapshot = (!outcome.events.is_empty() && before / 5 != self.sequence / 5)
                    .then(|| persisted(&self.state));
                let client_action = if self.service == ES_TWO {
                    ClientAction {
                        action: Some(client_action::Action::Reply(Reply {
                            payload: Some(response_any("")),
                            metadata: None,
                        })),
                    }
                } else {
                    client_action(command.id, &outcome)
                };
                Some(event_sourced_stream_out::Message::Reply(EventSourcedReply {
                    command_id: command.id,
                    client_action: Some(client_action),
                    side_effects: outcome.side_effects,
                    events: outcome.events,
                    snapshot,
                }))
            }
        }
    }
}

/// A value entity of the model.
#[derive(Default)]
struct VeEntity {
    service: String,
    state: String,
}

impl VeEntity {
    fn handle(
        &mut self,
        message: value_entity_stream_in::Message,
    ) -> Option<value_entity_stream_out::Message> {
        match message {
            value_entity_stream_in::Message::Init(init) => {
                self.service = init.service_name;
                self.state = decode_persisted(init.state.as_ref().and_then(|s| s.value.as_ref()));
                None
            }
            value_entity_stream_in::Message::Command(command) => {
                let request = command
                    .payload
                    .as_ref()
                    .and_then(|p| Request::decode(p.value.as_slice()).ok())
                    .unwrap_or_default();
                let actions = if self.service == VE_TWO { &[][..] } else { &request.actions[..] };
                let outcome = run_actions(actions, &self.state, VE_TWO);
                if let Some(failure) = stream_failure(command.id, &outcome) {
                    return Some(value_entity_stream_out::Message::Failure(failure));
                }
                if outcome.failure.is_none() {
                    self.state = outcome.state.clone();
                }
                let client_action = if self.service == VE_TWO {
                    ClientAction {
                        action: Some(client_action::Action::Reply(Reply {
                            payload: Some(response_any("")),
                            metadata: None,
                        })),
                    }
                } else {
                    client_action(command.id, &outcome)
                };
                Some(value_entity_stream_out::Message::Reply(ValueEntityReply {
                    command_id: command.id,
                    client_action: Some(client_action),
                    side_effects: outcome.side_effects,
                    state_action: outcome.state_action.map(|a| ValueEntityAction { action: Some(a) }),
                }))
            }
        }
    }
}

fn entity(entity_type: &str, service: &str, persistence_id: &str, passivation_ms: Option<i64>) -> Entity {
    Entity {
        entity_type: entity_type.into(),
        service_name: service.into(),
        persistence_id: persistence_id.into(),
        passivation_strategy: passivation_ms.map(|timeout| EntityPassivationStrategy {
            strategy: Some(entity_passivation_strategy::Strategy::Timeout(TimeoutPassivationStrategy {
                timeout,
            })),
        }),
    }
}

#[tonic::async_trait]
impl EntityDiscovery for Model {
    async fn discover(&self, request: GrpcRequest<ProxyInfo>) -> Result<GrpcResponse<EntitySpec>, Status> {
        self.log().discovery.push(request.into_inner());
        let es = "cloudstate.eventsourced.EventSourced";
        let ve = "cloudstate.valueentity.ValueEntity";
        Ok(GrpcResponse::new(EntitySpec {
            proto: self.descriptors.to_vec(),
            entities: vec![
                entity(es, ES_MODEL, "event-sourced-tck-model", None),
                entity(es, ES_TWO, "event-sourced-tck-model-2", None),
                entity(es, ES_CONFIGURED, "event-sourced-configured", Some(PASSIVATION_MS)),
                entity(ve, VE_MODEL, "value-entity-tck-model", None),
                entity(ve, VE_TWO, "value-entity-tck-model-2", None),
                entity(ve, VE_CONFIGURED, "value-entity-configured", Some(PASSIVATION_MS)),
            ],
            service_info: Some(ServiceInfo {
                service_name: "tck-model".into(),
                support_library_name: "stead-tck-model".into(),
                protocol_major_version: 0,
                protocol_minor_version: 2,
                ..ServiceInfo::default()
            }),
        }))
    }

    async fn report_error(
        &self,
        request: GrpcRequest<UserFunctionError>,
    ) -> Result<GrpcResponse<()>, Status> {
        self.log().errors.push(request.into_inner().message);
        Ok(GrpcResponse::new(()))
    }
}

type OutStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One entity stream of the model: every message in and out is recorded, `step` answers (or not)
/// each incoming message. Shared by the event-sourced and value-entity services, whose streams
/// differ only in their message types.
fn entity_stream<In, M, O, Out>(
    model: &Model,
    mut incoming: Streaming<In>,
    unwrap: fn(In) -> Option<M>,
    mut step: impl FnMut(M) -> Option<O> + Send + 'static,
    record_in: fn(M) -> Msg,
    record_out: fn(O) -> Msg,
    wrap: fn(O) -> Out,
) -> OutStream<Out>
where
    In: prost::Message + Default + Send + 'static,
    M: Clone + Send + 'static,
    O: Clone + Send + 'static,
    Out: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let model = model.clone();
    let stream = model.open_stream();
    tokio::spawn(async move {
        while let Ok(Some(message)) = incoming.message().await {
            let Some(message) = unwrap(message) else { break };
            model.record(stream, record_in(message.clone()));
            if let Some(out) = step(message) {
                model.record(stream, record_out(out.clone()));
                if tx.send(Ok(wrap(out))).await.is_err() {
                    break;
                }
            }
        }
        model.close(stream);
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl EventSourced for Model {
    type handleStream = OutStream<EventSourcedStreamOut>;

    async fn handle(
        &self,
        request: GrpcRequest<Streaming<EventSourcedStreamIn>>,
    ) -> Result<GrpcResponse<Self::handleStream>, Status> {
        let mut entity = EsEntity::default();
        Ok(GrpcResponse::new(entity_stream(
            self,
            request.into_inner(),
            |m| m.message,
            move |m| entity.handle(m),
            Msg::EsIn,
            Msg::EsOut,
            |out| EventSourcedStreamOut { message: Some(out) },
        )))
    }
}

#[tonic::async_trait]
impl ValueEntity for Model {
    type handleStream = OutStream<ValueEntityStreamOut>;

    async fn handle(
        &self,
        request: GrpcRequest<Streaming<ValueEntityStreamIn>>,
    ) -> Result<GrpcResponse<Self::handleStream>, Status> {
        let mut entity = VeEntity::default();
        Ok(GrpcResponse::new(entity_stream(
            self,
            request.into_inner(),
            |m| m.message,
            move |m| entity.handle(m),
            Msg::VeIn,
            Msg::VeOut,
            |out| ValueEntityStreamOut { message: Some(out) },
        )))
    }
}

/// Serves a fresh model on a loopback port; returns it (for its log) and its address.
pub async fn serve() -> (Model, SocketAddr) {
    let model = Model { log: Arc::default(), descriptors: Arc::new(descriptors()) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let addr = listener.local_addr().expect("local address");
    let server = model.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(EntityDiscoveryServer::new(server.clone()))
            .add_service(EventSourcedServer::new(server.clone()))
            .add_service(ValueEntityServer::new(server))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    (model, addr)
}
