//! The conformance suite, modelled on CloudState's TCK for event-sourced entities and value
//! entities: a client drives the model user function (`common/tck_model.rs`) through the proxy,
//! and every test asserts the exact protocol messages the model recorded on each entity stream
//! (what the proxy sent, what the model answered, which streams were opened and closed).
//! Sections follow the TCK's list; each test runs against its own proxy and model, on
//! loopback, with the in-memory store unless it says otherwise.

mod common;
#[path = "common/tck_model.rs"]
mod model;

use std::future::Future;
use std::time::Duration;

use model::{
    Action, ES_CONFIGURED, ES_MODEL, ES_TWO, Effect, Empty, Fail, Model, Msg, Request, RequestAction,
    Response, StreamLog, Target, VE_CONFIGURED, VE_MODEL, VE_TWO, Value, persisted, request_any,
    response_any,
};
use stead_proxy::StoreConfig;
use stead_proxy::protocol::cloudstate::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot, event_sourced_stream_in,
    event_sourced_stream_out,
};
use stead_proxy::protocol::cloudstate::valueentity::{
    ValueEntityAction, ValueEntityDelete, ValueEntityInit, ValueEntityInitState, ValueEntityReply,
    ValueEntityUpdate, value_entity_action, value_entity_stream_in, value_entity_stream_out,
};
use stead_proxy::protocol::cloudstate::{
    ClientAction, Command, Failure, Forward, Reply, SideEffect, client_action,
};
use tonic::transport::Channel;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one test body under the suite's timeout.
async fn within(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("the test finishes within 30 s");
}

/// A model, a proxy in front of it, and a client channel to the proxy.
struct Tck {
    model: Model,
    proxy: common::RunningProxy,
    channel: Channel,
}

impl Tck {
    async fn start() -> Self {
        let (model, user) = model::serve().await;
        Self::start_on(model, user, StoreConfig::Memory).await
    }

    async fn start_on(model: Model, user: std::net::SocketAddr, store: StoreConfig) -> Self {
        let proxy = common::start_proxy(user, store).await;
        wait_for(Duration::from_secs(20), "the proxy to become ready", || async {
            common::http_get(proxy.health, "/ready").await.0 == 200
        })
        .await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connects to the proxy");
        Tck { model, proxy, channel }
    }

    async fn stop(self) {
        drop(self.channel);
        self.proxy.stop().await.expect("the proxy stops cleanly");
    }

    /// Calls `service` (its `Process` or `Call` method) for entity `id` with `actions`.
    async fn call(&self, service: &str, id: &str, actions: Vec<Action>) -> Result<String, tonic::Status> {
        let request = request(id, actions);
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::try_from(format!("/{service}/{}", method(service)))
            .expect("a valid path");
        let codec = tonic_prost::ProstCodec::<Request, Response>::default();
        let response = grpc.unary(tonic::Request::new(request), path, codec).await?;
        Ok(response.into_inner().message)
    }

    async fn ok(&self, service: &str, id: &str, actions: Vec<Action>) -> String {
        self.call(service, id, actions).await.unwrap_or_else(|s| panic!("{service} {id} failed: {s:?}"))
    }

    fn streams(&self, service: &str, id: &str) -> Vec<StreamLog> {
        self.model.streams(service, id)
    }

    /// The only stream of `service`/`id`.
    fn stream(&self, service: &str, id: &str) -> StreamLog {
        let streams = self.streams(service, id);
        assert_eq!(streams.len(), 1, "one stream for {service}/{id}: {streams:#?}");
        streams.into_iter().next().unwrap_or_default()
    }

    /// Waits until `count` streams of `service`/`id` exist and all are closed (passivated).
    async fn wait_closed(&self, service: &str, id: &str, count: usize) {
        wait_for(Duration::from_secs(10), "the entity's streams to close", || async {
            let streams = self.streams(service, id);
            streams.len() == count && streams.iter().all(|s| s.closed)
        })
        .await;
    }

    /// Waits until the first stream of `service`/`id` is closed: the proxy opens the new stream
    /// of a restarted entity without waiting for the model to see the old one end.
    async fn wait_first_closed(&self, service: &str, id: &str) {
        wait_for(Duration::from_secs(10), "the first stream to close", || async {
            self.streams(service, id).first().is_some_and(|s| s.closed)
        })
        .await;
    }

    /// Waits until every stream of `service`/`id` is closed, however many there were: on a
    /// loaded machine the 100 ms passivation may also fall between two of a test's commands.
    async fn wait_all_closed(&self, service: &str, id: &str) -> usize {
        wait_for(Duration::from_secs(10), "the entity's streams to close", || async {
            let streams = self.streams(service, id);
            !streams.is_empty() && streams.iter().all(|s| s.closed)
        })
        .await;
        self.streams(service, id).len()
    }

    /// The newest stream of `service`/`id`.
    fn last_stream(&self, service: &str, id: &str) -> StreamLog {
        self.streams(service, id).pop().unwrap_or_else(|| panic!("no stream for {service}/{id}"))
    }

    /// Waits until `service`/`id` has a stream whose messages are `expected`.
    async fn wait_stream(&self, service: &str, id: &str, expected: &[Msg]) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if self.streams(service, id).first().is_some_and(|s| s.messages == expected) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if waited.is_err() {
            panic!("{service}/{id}: expected {expected:#?}, got {:#?}", self.streams(service, id));
        }
    }
}

async fn wait_for<F: Future<Output = bool>>(limit: Duration, what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn method(service: &str) -> &'static str {
    if service.ends_with("TckModel") { "Process" } else { "Call" }
}

fn request(id: &str, actions: Vec<Action>) -> Request {
    Request {
        id: id.into(),
        actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect(),
    }
}

fn emit(value: &str) -> Action {
    Action::Emit(Value { value: value.into() })
}
fn update(value: &str) -> Action {
    Action::Update(Value { value: value.into() })
}
fn delete() -> Action {
    Action::Delete(Empty {})
}
fn forward(id: &str) -> Action {
    Action::Forward(Target { id: id.into() })
}
fn effect(id: &str, synchronous: bool) -> Action {
    Action::Effect(Effect { id: id.into(), synchronous })
}
fn fail(message: &str) -> Action {
    Action::Fail(Fail { message: message.into(), restart: false, stream_failure: false })
}
fn fail_restart(message: &str) -> Action {
    Action::Fail(Fail { message: message.into(), restart: true, stream_failure: false })
}
/// A failure sent as the stream's `Failure` message.
fn fail_message(message: &str, restart: bool) -> Action {
    Action::Fail(Fail { message: message.into(), restart, stream_failure: true })
}
fn es_failure(command_id: i64, description: &str, restart: bool) -> Msg {
    Msg::EsOut(event_sourced_stream_out::Message::Failure(Failure {
        command_id,
        description: description.into(),
        restart,
    }))
}
fn ve_failure(command_id: i64, description: &str, restart: bool) -> Msg {
    Msg::VeOut(value_entity_stream_out::Message::Failure(Failure {
        command_id,
        description: description.into(),
        restart,
    }))
}

// ---- expected protocol messages ----

fn command(id: i64, service: &str, entity: &str, actions: Vec<Action>) -> Command {
    Command {
        entity_id: entity.into(),
        id,
        name: method(service).into(),
        payload: Some(request_any(&request(entity, actions))),
        streamed: false,
        metadata: None,
    }
}

fn reply_action(message: &str) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Reply(Reply {
            payload: Some(response_any(message)),
            metadata: None,
        })),
    }
}

fn failure_action(command_id: i64, description: &str, restart: bool) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Failure(Failure {
            command_id,
            description: description.into(),
            restart,
        })),
    }
}

fn forward_action(second: &str, id: &str) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Forward(Forward {
            service_name: second.into(),
            command_name: "Call".into(),
            payload: Some(request_any(&request(id, vec![]))),
            metadata: None,
        })),
    }
}

fn side_effect(second: &str, id: &str, synchronous: bool) -> SideEffect {
    SideEffect {
        service_name: second.into(),
        command_name: "Call".into(),
        payload: Some(request_any(&request(id, vec![]))),
        synchronous,
        metadata: None,
    }
}

fn es_init(service: &str, entity: &str, snapshot: Option<(i64, &str)>) -> Msg {
    Msg::EsIn(event_sourced_stream_in::Message::Init(EventSourcedInit {
        service_name: service.into(),
        entity_id: entity.into(),
        snapshot: snapshot.map(|(sequence, state)| EventSourcedSnapshot {
            snapshot_sequence: sequence,
            snapshot: Some(persisted(state)),
        }),
    }))
}

fn es_event(sequence: i64, value: &str) -> Msg {
    Msg::EsIn(event_sourced_stream_in::Message::Event(EventSourcedEvent {
        sequence,
        payload: Some(persisted(value)),
    }))
}

fn es_command(id: i64, service: &str, entity: &str, actions: Vec<Action>) -> Msg {
    Msg::EsIn(event_sourced_stream_in::Message::Command(command(id, service, entity, actions)))
}

fn es_reply(
    command_id: i64,
    action: ClientAction,
    events: &[&str],
    snapshot: Option<&str>,
    side_effects: Vec<SideEffect>,
) -> Msg {
    Msg::EsOut(event_sourced_stream_out::Message::Reply(EventSourcedReply {
        command_id,
        client_action: Some(action),
        side_effects,
        events: events.iter().map(|e| persisted(e)).collect(),
        snapshot: snapshot.map(persisted),
    }))
}

/// The messages of a plain command to the second event-sourced service.
fn es_two_stream(entity: &str) -> Vec<Msg> {
    vec![
        es_init(ES_TWO, entity, None),
        es_command(1, ES_TWO, entity, vec![]),
        es_reply(1, reply_action(""), &[], None, vec![]),
    ]
}

fn ve_init(service: &str, entity: &str, state: Option<&str>) -> Msg {
    Msg::VeIn(value_entity_stream_in::Message::Init(ValueEntityInit {
        service_name: service.into(),
        entity_id: entity.into(),
        state: state.map(|s| ValueEntityInitState { value: Some(persisted(s)) }),
    }))
}

fn ve_command(id: i64, service: &str, entity: &str, actions: Vec<Action>) -> Msg {
    Msg::VeIn(value_entity_stream_in::Message::Command(command(id, service, entity, actions)))
}

enum State<'a> {
    Keep,
    Update(&'a str),
    Delete,
}

fn ve_reply(command_id: i64, action: ClientAction, state: State<'_>, side_effects: Vec<SideEffect>) -> Msg {
    let state_action = match state {
        State::Keep => None,
        State::Update(value) => {
            Some(value_entity_action::Action::Update(ValueEntityUpdate { value: Some(persisted(value)) }))
        }
        State::Delete => Some(value_entity_action::Action::Delete(ValueEntityDelete {})),
    };
    Msg::VeOut(value_entity_stream_out::Message::Reply(ValueEntityReply {
        command_id,
        client_action: Some(action),
        side_effects,
        state_action: state_action.map(|a| ValueEntityAction { action: Some(a) }),
    }))
}

fn ve_two_stream(entity: &str) -> Vec<Msg> {
    vec![
        ve_init(VE_TWO, entity, None),
        ve_command(1, VE_TWO, entity, vec![]),
        ve_reply(1, reply_action(""), State::Keep, vec![]),
    ]
}

// ==== Proxy ====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_discovery_announces_protocol_and_entity_types() {
    within(async {
        let tck = Tck::start().await;
        let discovery = tck.model.discovery();
        assert_eq!(discovery.len(), 1, "discover is called once: {discovery:?}");
        let info = &discovery[0];
        assert_eq!((info.protocol_major_version, info.protocol_minor_version), (0, 2));
        assert!(!info.proxy_name.is_empty() && !info.proxy_version.is_empty(), "{info:?}");
        for entity_type in ["cloudstate.eventsourced.EventSourced", "cloudstate.valueentity.ValueEntity"] {
            assert!(info.supported_entity_types.iter().any(|t| t == entity_type), "{info:?}");
        }
        assert!(tck.model.all_streams().is_empty(), "no entity is activated before a command");
        assert!(tck.model.errors().is_empty(), "{:?}", tck.model.errors());
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_server_reflection_lists_the_model_services() {
    use stead_proxy::protocol::grpc::reflection::v1;
    use v1::server_reflection_request::MessageRequest as Ask;
    use v1::server_reflection_response::MessageResponse as Tell;
    within(async {
        let tck = Tck::start().await;
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(tck.channel.clone());
        let ask = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(Ask::ListServices(String::new())),
        };
        let mut answers =
            client.server_reflection_info(tokio_stream::iter([ask])).await.expect("answers").into_inner();
        let answer = answers.message().await.expect("an answer").and_then(|a| a.message_response);
        let Some(Tell::ListServicesResponse(list)) = answer else { panic!("a service list: {answer:?}") };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for service in [ES_MODEL, ES_TWO, ES_CONFIGURED, VE_MODEL, VE_TWO, VE_CONFIGURED] {
            assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
        }
        assert!(tck.model.all_streams().is_empty(), "reflection activates no entity");
        drop(answers);
        tck.stop().await;
    })
    .await;
}

// ==== Event sourced ====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_initial_empty_state() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_MODEL, "e", vec![]).await, "");
        let stream = tck.stream(ES_MODEL, "e");
        assert_eq!(
            stream.messages,
            vec![
                es_init(ES_MODEL, "e", None),
                es_command(1, ES_MODEL, "e", vec![]),
                es_reply(1, reply_action(""), &[], None, vec![]),
            ]
        );
        assert!(!stream.closed);
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_single_emitted_event_and_command_ids_increase() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_MODEL, "e", vec![emit("A")]).await, "A");
        assert_eq!(tck.ok(ES_MODEL, "e", vec![]).await, "A");
        assert_eq!(
            tck.stream(ES_MODEL, "e").messages,
            vec![
                es_init(ES_MODEL, "e", None),
                es_command(1, ES_MODEL, "e", vec![emit("A")]),
                es_reply(1, reply_action("A"), &["A"], None, vec![]),
                es_command(2, ES_MODEL, "e", vec![]),
                es_reply(2, reply_action("A"), &[], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_multiple_emitted_events_and_snapshots() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_MODEL, "e", vec![emit("A"), emit("B"), emit("C")]).await, "ABC");
        assert_eq!(tck.ok(ES_MODEL, "e", vec![emit("D"), emit("E")]).await, "ABCDE");
        assert_eq!(tck.ok(ES_MODEL, "e", vec![emit("F")]).await, "ABCDEF");
        assert_eq!(
            tck.stream(ES_MODEL, "e").messages,
            vec![
                es_init(ES_MODEL, "e", None),
                es_command(1, ES_MODEL, "e", vec![emit("A"), emit("B"), emit("C")]),
                es_reply(1, reply_action("ABC"), &["A", "B", "C"], None, vec![]),
                es_command(2, ES_MODEL, "e", vec![emit("D"), emit("E")]),
                es_reply(2, reply_action("ABCDE"), &["D", "E"], Some("ABCDE"), vec![]),
                es_command(3, ES_MODEL, "e", vec![emit("F")]),
                es_reply(3, reply_action("ABCDEF"), &["F"], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_rehydration_after_passivation_with_events_only() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_CONFIGURED, "p", vec![emit("A"), emit("B")]).await, "AB");
        tck.wait_closed(ES_CONFIGURED, "p", 1).await;
        assert_eq!(tck.ok(ES_CONFIGURED, "p", vec![emit("C")]).await, "ABC");
        let streams = tck.streams(ES_CONFIGURED, "p");
        assert_eq!(streams.len(), 2, "{streams:#?}");
        assert_eq!(
            streams[1].messages,
            vec![
                es_init(ES_CONFIGURED, "p", None),
                es_event(1, "A"),
                es_event(2, "B"),
                es_command(1, ES_CONFIGURED, "p", vec![emit("C")]),
                es_reply(1, reply_action("ABC"), &["C"], None, vec![]),
            ],
            "a new stream starts its command ids at 1"
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_initial_snapshot_and_events_after_passivation() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(ES_CONFIGURED, "p", vec![emit("A"), emit("B"), emit("C")]).await;
        tck.ok(ES_CONFIGURED, "p", vec![emit("D"), emit("E"), emit("F")]).await;
        tck.ok(ES_CONFIGURED, "p", vec![emit("G")]).await;
        let before = tck.wait_all_closed(ES_CONFIGURED, "p").await;
        let snapshot_taken = tck.streams(ES_CONFIGURED, "p").iter().flat_map(|s| s.messages.clone()).any(|m| {
            matches!(m, Msg::EsOut(event_sourced_stream_out::Message::Reply(r)) if r.snapshot == Some(persisted("ABCDEF")))
        });
        assert!(snapshot_taken, "the model snapshotted at 6");
        assert_eq!(tck.ok(ES_CONFIGURED, "p", vec![]).await, "ABCDEFG");
        let streams = tck.streams(ES_CONFIGURED, "p");
        assert_eq!(streams.len(), before + 1);
        assert_eq!(
            streams[before].messages,
            vec![
                es_init(ES_CONFIGURED, "p", Some((6, "ABCDEF"))),
                es_event(7, "G"),
                es_command(1, ES_CONFIGURED, "p", vec![]),
                es_reply(1, reply_action("ABCDEFG"), &[], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_passivation_timeout() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(ES_CONFIGURED, "idle", vec![]).await;
        // Closed by the proxy after 100 ms without commands, with nothing else sent.
        tck.wait_closed(ES_CONFIGURED, "idle", 1).await;
        assert_eq!(tck.stream(ES_CONFIGURED, "idle").messages.len(), 3);
        // The unconfigured service keeps its stream (the proxy's default is 30 s).
        tck.ok(ES_MODEL, "busy", vec![]).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!tck.stream(ES_MODEL, "busy").closed);
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_forward_to_second_service() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_MODEL, "f", vec![forward("other")]).await, "", "the second service's reply");
        assert_eq!(
            tck.stream(ES_MODEL, "f").messages,
            vec![
                es_init(ES_MODEL, "f", None),
                es_command(1, ES_MODEL, "f", vec![forward("other")]),
                es_reply(1, forward_action(ES_TWO, "other"), &[], None, vec![]),
            ]
        );
        assert_eq!(tck.stream(ES_TWO, "other").messages, es_two_stream("other"));
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_forward_with_emitted_events_and_snapshot() {
    within(async {
        let tck = Tck::start().await;
        let actions = vec![emit("A"), emit("B"), emit("C"), emit("D"), emit("E"), forward("other")];
        assert_eq!(tck.ok(ES_MODEL, "f", actions.clone()).await, "");
        assert_eq!(tck.ok(ES_MODEL, "f", vec![]).await, "ABCDE", "the events were persisted");
        assert_eq!(
            tck.stream(ES_MODEL, "f").messages,
            vec![
                es_init(ES_MODEL, "f", None),
                es_command(1, ES_MODEL, "f", actions),
                es_reply(
                    1,
                    forward_action(ES_TWO, "other"),
                    &["A", "B", "C", "D", "E"],
                    Some("ABCDE"),
                    vec![]
                ),
                es_command(2, ES_MODEL, "f", vec![]),
                es_reply(2, reply_action("ABCDE"), &[], None, vec![]),
            ]
        );
        assert_eq!(tck.stream(ES_TWO, "other").messages, es_two_stream("other"));
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_reply_with_side_effect_to_second_service() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_MODEL, "s", vec![emit("A"), effect("other", false)]).await, "A");
        assert_eq!(
            tck.stream(ES_MODEL, "s").messages,
            vec![
                es_init(ES_MODEL, "s", None),
                es_command(1, ES_MODEL, "s", vec![emit("A"), effect("other", false)]),
                es_reply(1, reply_action("A"), &["A"], None, vec![side_effect(ES_TWO, "other", false)]),
            ]
        );
        // Asynchronous: carried out after the reply.
        tck.wait_stream(ES_TWO, "other", &es_two_stream("other")).await;
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_synchronous_side_effect_is_done_before_the_reply() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(ES_MODEL, "s", vec![effect("other", true)]).await, "");
        // No waiting: a synchronous side effect completes before the client's reply.
        assert_eq!(tck.stream(ES_TWO, "other").messages, es_two_stream("other"));
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_forward_and_side_effect_to_second_service() {
    within(async {
        let tck = Tck::start().await;
        let actions = vec![effect("effected", true), forward("forwarded")];
        assert_eq!(tck.ok(ES_MODEL, "s", actions.clone()).await, "");
        assert_eq!(
            tck.stream(ES_MODEL, "s").messages,
            vec![
                es_init(ES_MODEL, "s", None),
                es_command(1, ES_MODEL, "s", actions),
                es_reply(
                    1,
                    forward_action(ES_TWO, "forwarded"),
                    &[],
                    None,
                    vec![side_effect(ES_TWO, "effected", true)]
                ),
            ]
        );
        assert_eq!(tck.stream(ES_TWO, "effected").messages, es_two_stream("effected"));
        assert_eq!(tck.stream(ES_TWO, "forwarded").messages, es_two_stream("forwarded"));
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_reply_with_multiple_side_effects_events_and_snapshot() {
    within(async {
        let tck = Tck::start().await;
        let mut actions: Vec<Action> = ["A", "B", "C", "D", "E"].iter().map(|v| emit(v)).collect();
        actions.extend([effect("one", true), effect("two", false), effect("three", true)]);
        assert_eq!(tck.ok(ES_MODEL, "m", actions.clone()).await, "ABCDE");
        let effects = vec![
            side_effect(ES_TWO, "one", true),
            side_effect(ES_TWO, "two", false),
            side_effect(ES_TWO, "three", true),
        ];
        assert_eq!(
            tck.stream(ES_MODEL, "m").messages,
            vec![
                es_init(ES_MODEL, "m", None),
                es_command(1, ES_MODEL, "m", actions),
                es_reply(1, reply_action("ABCDE"), &["A", "B", "C", "D", "E"], Some("ABCDE"), effects),
            ]
        );
        assert_eq!(tck.stream(ES_TWO, "one").messages, es_two_stream("one"));
        assert_eq!(tck.stream(ES_TWO, "three").messages, es_two_stream("three"));
        tck.wait_stream(ES_TWO, "two", &es_two_stream("two")).await;
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_failure_action_and_connection_after_failure() {
    within(async {
        let tck = Tck::start().await;
        let status = tck.call(ES_MODEL, "x", vec![fail("expected failure")]).await.expect_err("fails");
        assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "expected failure"));
        assert_eq!(tck.ok(ES_MODEL, "x", vec![emit("A")]).await, "A");
        let stream = tck.stream(ES_MODEL, "x");
        assert_eq!(
            stream.messages,
            vec![
                es_init(ES_MODEL, "x", None),
                es_command(1, ES_MODEL, "x", vec![fail("expected failure")]),
                es_reply(1, failure_action(1, "expected failure", false), &[], None, vec![]),
                es_command(2, ES_MODEL, "x", vec![emit("A")]),
                es_reply(2, reply_action("A"), &["A"], None, vec![]),
            ],
            "a failure without events keeps the stream"
        );
        assert!(!stream.closed);
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_failure_discards_events_and_side_effects() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(ES_MODEL, "x", vec![emit("A")]).await;
        let actions = vec![emit("B"), effect("sync", true), effect("async", false), fail("no")];
        let status = tck.call(ES_MODEL, "x", actions.clone()).await.expect_err("fails");
        assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "no"));
        assert_eq!(tck.ok(ES_MODEL, "x", vec![]).await, "A", "B was discarded");
        let streams = tck.streams(ES_MODEL, "x");
        assert_eq!(streams.len(), 2, "the model applied B, so the proxy reloads it: {streams:#?}");
        tck.wait_first_closed(ES_MODEL, "x").await;
        assert_eq!(
            streams[0].messages,
            vec![
                es_init(ES_MODEL, "x", None),
                es_command(1, ES_MODEL, "x", vec![emit("A")]),
                es_reply(1, reply_action("A"), &["A"], None, vec![]),
                es_command(2, ES_MODEL, "x", actions),
                es_reply(
                    2,
                    failure_action(2, "no", false),
                    &["B"],
                    None,
                    vec![side_effect(ES_TWO, "sync", true), side_effect(ES_TWO, "async", false)]
                ),
            ]
        );
        assert_eq!(
            streams[1].messages,
            vec![
                es_init(ES_MODEL, "x", None),
                es_event(1, "A"),
                es_command(1, ES_MODEL, "x", vec![]),
                es_reply(1, reply_action("A"), &[], None, vec![]),
            ]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(tck.streams(ES_TWO, "sync").is_empty() && tck.streams(ES_TWO, "async").is_empty());
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_failure_with_restart_replays_the_journal() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(ES_MODEL, "r", vec![emit("A")]).await;
        let status = tck.call(ES_MODEL, "r", vec![fail_restart("restart me")]).await.expect_err("fails");
        assert_eq!(status.message(), "restart me");
        assert_eq!(tck.ok(ES_MODEL, "r", vec![emit("B")]).await, "AB");
        let streams = tck.streams(ES_MODEL, "r");
        assert_eq!(streams.len(), 2, "{streams:#?}");
        tck.wait_first_closed(ES_MODEL, "r").await;
        assert_eq!(
            streams[0].messages[3..],
            [
                es_command(2, ES_MODEL, "r", vec![fail_restart("restart me")]),
                es_reply(2, failure_action(2, "restart me", true), &[], None, vec![]),
            ]
        );
        assert_eq!(
            streams[1].messages,
            vec![
                es_init(ES_MODEL, "r", None),
                es_event(1, "A"),
                es_command(1, ES_MODEL, "r", vec![emit("B")]),
                es_reply(1, reply_action("AB"), &["B"], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_failure_messages_fail_the_command_and_restart_on_request() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(ES_MODEL, "m", vec![emit("A")]).await;
        let status = tck.call(ES_MODEL, "m", vec![fail_message("kept", false)]).await.expect_err("fails");
        assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "kept"));
        assert_eq!(tck.ok(ES_MODEL, "m", vec![]).await, "A");
        let status = tck.call(ES_MODEL, "m", vec![fail_message("restart", true)]).await.expect_err("fails");
        assert_eq!(status.message(), "restart");
        assert_eq!(tck.ok(ES_MODEL, "m", vec![]).await, "A");
        let streams = tck.streams(ES_MODEL, "m");
        assert_eq!(streams.len(), 2, "{streams:#?}");
        tck.wait_first_closed(ES_MODEL, "m").await;
        assert_eq!(
            streams[0].messages[3..],
            [
                es_command(2, ES_MODEL, "m", vec![fail_message("kept", false)]),
                es_failure(2, "kept", false),
                es_command(3, ES_MODEL, "m", vec![]),
                es_reply(3, reply_action("A"), &[], None, vec![]),
                es_command(4, ES_MODEL, "m", vec![fail_message("restart", true)]),
                es_failure(4, "restart", true),
            ]
        );
        assert_eq!(
            streams[1].messages,
            vec![
                es_init(ES_MODEL, "m", None),
                es_event(1, "A"),
                es_command(1, ES_MODEL, "m", vec![]),
                es_reply(1, reply_action("A"), &[], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_one_stream_per_entity_and_one_command_at_a_time() {
    within(async {
        let tck = Tck::start().await;
        // Five concurrent commands to each of two entities.
        let mut calls = Vec::new();
        for i in 0..5 {
            for id in ["a", "b"] {
                let tck = &tck;
                calls.push(async move { tck.ok(ES_MODEL, id, vec![emit(&i.to_string())]).await });
            }
        }
        let replies = futures::future::join_all(calls).await;
        assert!(replies.iter().all(|r| r.len() <= 5), "{replies:?}");
        for id in ["a", "b"] {
            let stream = tck.stream(ES_MODEL, id);
            assert_eq!(stream.messages.len(), 11, "{stream:#?}");
            assert_eq!(stream.messages[0], es_init(ES_MODEL, id, None));
            // Each command is answered before the next one is sent, with ids 1..=5.
            let mut state = String::new();
            for (n, pair) in stream.messages[1..].chunks(2).enumerate() {
                let Msg::EsIn(event_sourced_stream_in::Message::Command(command)) = &pair[0] else {
                    panic!("expected a command, got {:?}", pair[0]);
                };
                assert_eq!(command.id, n as i64 + 1);
                let value =
                    prost::Message::decode(command.payload.as_ref().expect("payload").value.as_slice())
                        .map(|r: Request| match r.actions.first().and_then(|a| a.action.clone()) {
                            Some(Action::Emit(v)) => v.value,
                            other => panic!("unexpected action {other:?}"),
                        })
                        .expect("a Request");
                state.push_str(&value);
                // The fifth event crosses the snapshot interval.
                let snapshot = (n == 4).then_some(state.as_str());
                assert_eq!(pair[1], es_reply(command.id, reply_action(&state), &[&value], snapshot, vec![]));
            }
        }
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_http_api() {
    within(async {
        let tck = Tck::start().await;
        let body = r#"{"actions":[{"emit":{"value":"A"}},{"emit":{"value":"B"}}]}"#;
        let response =
            common::http::request(tck.proxy.addr, "POST", "/tck/model/eventsourced/h", Some(body)).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.json(), serde_json::json!({"message": "AB"}));
        let failed = common::http::request(
            tck.proxy.addr,
            "POST",
            "/tck/model/eventsourced/h",
            Some(r#"{"actions":[{"fail":{"message":"bad"}}]}"#),
        )
        .await;
        assert_eq!(failed.status, 500, "gRPC UNKNOWN maps to 500: {failed:?}");
        assert_eq!(failed.json()["message"], "bad");
        assert_eq!(
            tck.stream(ES_MODEL, "h").messages,
            vec![
                es_init(ES_MODEL, "h", None),
                es_command(1, ES_MODEL, "h", vec![emit("A"), emit("B")]),
                es_reply(1, reply_action("AB"), &["A", "B"], None, vec![]),
                es_command(2, ES_MODEL, "h", vec![fail("bad")]),
                es_reply(2, failure_action(2, "bad", false), &[], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es_verify_rehydration_after_proxy_restart_with_the_embedded_store() {
    within(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StoreConfig::Embedded { path: dir.path().join("store.redb") };
        let (model, user) = model::serve().await;
        let tck = Tck::start_on(model.clone(), user, store.clone()).await;
        let actions: Vec<Action> = ["A", "B", "C", "D", "E", "F"].iter().map(|v| emit(v)).collect();
        tck.ok(ES_MODEL, "d", actions).await;
        tck.ok(ES_MODEL, "d", vec![emit("G")]).await;
        tck.stop().await;
        let tck = Tck::start_on(model, user, store).await;
        assert_eq!(tck.ok(ES_MODEL, "d", vec![]).await, "ABCDEFG");
        let streams = tck.streams(ES_MODEL, "d");
        assert_eq!(streams.len(), 2, "{streams:#?}");
        assert_eq!(
            streams[1].messages,
            vec![
                es_init(ES_MODEL, "d", Some((6, "ABCDEF"))),
                es_event(7, "G"),
                es_command(1, ES_MODEL, "d", vec![]),
                es_reply(1, reply_action("ABCDEFG"), &[], None, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

// ==== Value entity ====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_initial_empty_state() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(VE_MODEL, "v", vec![]).await, "");
        assert_eq!(
            tck.stream(VE_MODEL, "v").messages,
            vec![
                ve_init(VE_MODEL, "v", None),
                ve_command(1, VE_MODEL, "v", vec![]),
                ve_reply(1, reply_action(""), State::Keep, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_update_then_get_and_sequential_updates() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(VE_MODEL, "v", vec![update("one")]).await, "one");
        assert_eq!(tck.ok(VE_MODEL, "v", vec![]).await, "one");
        assert_eq!(tck.ok(VE_MODEL, "v", vec![update("two"), update("three")]).await, "three");
        assert_eq!(
            tck.stream(VE_MODEL, "v").messages,
            vec![
                ve_init(VE_MODEL, "v", None),
                ve_command(1, VE_MODEL, "v", vec![update("one")]),
                ve_reply(1, reply_action("one"), State::Update("one"), vec![]),
                ve_command(2, VE_MODEL, "v", vec![]),
                ve_reply(2, reply_action("one"), State::Keep, vec![]),
                ve_command(3, VE_MODEL, "v", vec![update("two"), update("three")]),
                ve_reply(3, reply_action("three"), State::Update("three"), vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_delete_then_get_is_empty() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(VE_MODEL, "v", vec![update("one")]).await;
        assert_eq!(tck.ok(VE_MODEL, "v", vec![delete()]).await, "");
        assert_eq!(tck.ok(VE_MODEL, "v", vec![]).await, "");
        assert_eq!(
            tck.stream(VE_MODEL, "v").messages[3..],
            [
                ve_command(2, VE_MODEL, "v", vec![delete()]),
                ve_reply(2, reply_action(""), State::Delete, vec![]),
                ve_command(3, VE_MODEL, "v", vec![]),
                ve_reply(3, reply_action(""), State::Keep, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_multiple_entities_have_their_own_streams() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(VE_MODEL, "a", vec![update("A")]).await;
        tck.ok(VE_MODEL, "b", vec![update("B")]).await;
        assert_eq!(tck.ok(VE_MODEL, "a", vec![]).await, "A");
        assert_eq!(tck.ok(VE_MODEL, "b", vec![]).await, "B");
        for (id, value) in [("a", "A"), ("b", "B")] {
            assert_eq!(
                tck.stream(VE_MODEL, id).messages,
                vec![
                    ve_init(VE_MODEL, id, None),
                    ve_command(1, VE_MODEL, id, vec![update(value)]),
                    ve_reply(1, reply_action(value), State::Update(value), vec![]),
                    ve_command(2, VE_MODEL, id, vec![]),
                    ve_reply(2, reply_action(value), State::Keep, vec![]),
                ]
            );
        }
        assert_eq!(tck.model.all_streams().len(), 2);
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_init_carries_the_stored_state_after_passivation() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(VE_CONFIGURED, "p", vec![update("kept")]).await;
        tck.wait_closed(VE_CONFIGURED, "p", 1).await;
        assert_eq!(tck.ok(VE_CONFIGURED, "p", vec![]).await, "kept");
        assert_eq!(
            tck.streams(VE_CONFIGURED, "p")[1].messages[..3],
            [
                ve_init(VE_CONFIGURED, "p", Some("kept")),
                ve_command(1, VE_CONFIGURED, "p", vec![]),
                ve_reply(1, reply_action("kept"), State::Keep, vec![]),
            ]
        );
        // Deleted state: the next init carries none.
        tck.ok(VE_CONFIGURED, "p", vec![delete()]).await;
        tck.wait_all_closed(VE_CONFIGURED, "p").await;
        assert_eq!(tck.ok(VE_CONFIGURED, "p", vec![]).await, "");
        assert_eq!(tck.last_stream(VE_CONFIGURED, "p").messages[0], ve_init(VE_CONFIGURED, "p", None));
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_forward_and_side_effects_to_second_service() {
    within(async {
        let tck = Tck::start().await;
        assert_eq!(tck.ok(VE_MODEL, "f", vec![update("x"), forward("fwd")]).await, "");
        assert_eq!(tck.stream(VE_TWO, "fwd").messages, ve_two_stream("fwd"));
        let actions = vec![effect("one", true), effect("two", false), effect("three", true)];
        assert_eq!(tck.ok(VE_MODEL, "f", actions.clone()).await, "x", "the update was stored");
        assert_eq!(tck.stream(VE_TWO, "one").messages, ve_two_stream("one"));
        assert_eq!(tck.stream(VE_TWO, "three").messages, ve_two_stream("three"));
        tck.wait_stream(VE_TWO, "two", &ve_two_stream("two")).await;
        assert_eq!(
            tck.stream(VE_MODEL, "f").messages,
            vec![
                ve_init(VE_MODEL, "f", None),
                ve_command(1, VE_MODEL, "f", vec![update("x"), forward("fwd")]),
                ve_reply(1, forward_action(VE_TWO, "fwd"), State::Update("x"), vec![]),
                ve_command(2, VE_MODEL, "f", actions),
                ve_reply(
                    2,
                    reply_action("x"),
                    State::Keep,
                    vec![
                        side_effect(VE_TWO, "one", true),
                        side_effect(VE_TWO, "two", false),
                        side_effect(VE_TWO, "three", true)
                    ]
                ),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_failure_discards_state_and_side_effects() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(VE_MODEL, "x", vec![update("old")]).await;
        let actions = vec![update("new"), effect("sync", true), effect("async", false), fail("no")];
        let status = tck.call(VE_MODEL, "x", actions.clone()).await.expect_err("fails");
        assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "no"));
        // Connection after failure: the same stream answers the next command.
        assert_eq!(tck.ok(VE_MODEL, "x", vec![]).await, "old");
        assert_eq!(
            tck.stream(VE_MODEL, "x").messages[3..],
            [
                ve_command(2, VE_MODEL, "x", actions.clone()),
                ve_reply(
                    2,
                    failure_action(2, "no", false),
                    State::Update("new"),
                    vec![side_effect(VE_TWO, "sync", true), side_effect(VE_TWO, "async", false)]
                ),
                ve_command(3, VE_MODEL, "x", vec![]),
                ve_reply(3, reply_action("old"), State::Keep, vec![]),
            ]
        );
        // The store kept "old": a re-activated entity is initialised with it.
        tck.ok(VE_CONFIGURED, "x", vec![update("old")]).await;
        tck.call(VE_CONFIGURED, "x", actions).await.expect_err("fails");
        tck.wait_all_closed(VE_CONFIGURED, "x").await;
        assert_eq!(tck.ok(VE_CONFIGURED, "x", vec![]).await, "old");
        assert_eq!(tck.last_stream(VE_CONFIGURED, "x").messages[0], ve_init(VE_CONFIGURED, "x", Some("old")));
        assert!(tck.streams(VE_TWO, "sync").is_empty() && tck.streams(VE_TWO, "async").is_empty());
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_failure_messages_and_restart_reload_the_stored_state() {
    within(async {
        let tck = Tck::start().await;
        tck.ok(VE_MODEL, "m", vec![update("A")]).await;
        let status = tck.call(VE_MODEL, "m", vec![fail_message("kept", false)]).await.expect_err("fails");
        assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "kept"));
        let status =
            tck.call(VE_MODEL, "m", vec![update("B"), fail_restart("restart")]).await.expect_err("fails");
        assert_eq!(status.message(), "restart");
        assert_eq!(tck.ok(VE_MODEL, "m", vec![]).await, "A");
        let streams = tck.streams(VE_MODEL, "m");
        assert_eq!(streams.len(), 2, "{streams:#?}");
        tck.wait_first_closed(VE_MODEL, "m").await;
        assert_eq!(
            streams[0].messages[3..],
            [
                ve_command(2, VE_MODEL, "m", vec![fail_message("kept", false)]),
                ve_failure(2, "kept", false),
                ve_command(3, VE_MODEL, "m", vec![update("B"), fail_restart("restart")]),
                ve_reply(3, failure_action(3, "restart", true), State::Update("B"), vec![]),
            ]
        );
        assert_eq!(
            streams[1].messages,
            vec![
                ve_init(VE_MODEL, "m", Some("A")),
                ve_command(1, VE_MODEL, "m", vec![]),
                ve_reply(1, reply_action("A"), State::Keep, vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_http_api() {
    within(async {
        let tck = Tck::start().await;
        let body = r#"{"actions":[{"update":{"value":"json"}}]}"#;
        let response =
            common::http::request(tck.proxy.addr, "POST", "/tck/model/valueentity/h", Some(body)).await;
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.json(), serde_json::json!({"message": "json"}));
        assert_eq!(
            tck.stream(VE_MODEL, "h").messages,
            vec![
                ve_init(VE_MODEL, "h", None),
                ve_command(1, VE_MODEL, "h", vec![update("json")]),
                ve_reply(1, reply_action("json"), State::Update("json"), vec![]),
            ]
        );
        tck.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ve_verify_state_survives_a_proxy_restart_with_the_embedded_store() {
    within(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StoreConfig::Embedded { path: dir.path().join("store.redb") };
        let (model, user) = model::serve().await;
        let tck = Tck::start_on(model.clone(), user, store.clone()).await;
        tck.ok(VE_MODEL, "d", vec![update("durable")]).await;
        tck.ok(VE_MODEL, "gone", vec![update("x")]).await;
        tck.ok(VE_MODEL, "gone", vec![delete()]).await;
        tck.stop().await;
        let tck = Tck::start_on(model, user, store).await;
        assert_eq!(tck.ok(VE_MODEL, "d", vec![]).await, "durable");
        assert_eq!(tck.ok(VE_MODEL, "gone", vec![]).await, "");
        assert_eq!(tck.streams(VE_MODEL, "d")[1].messages[0], ve_init(VE_MODEL, "d", Some("durable")));
        assert_eq!(tck.streams(VE_MODEL, "gone")[1].messages[0], ve_init(VE_MODEL, "gone", None));
        tck.stop().await;
    })
    .await;
}
