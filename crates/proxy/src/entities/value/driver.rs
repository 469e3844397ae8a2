//! The IO of one value entity: its task loads the state, opens the user function's `handle`
//! stream with it, and sends one command at a time; a reply's `update` or `delete` is written
//! (checked against the revision it was computed from) before the client gets the reply.
//!
//! Architecture invariant: when a write loses against another replica (revision conflict) the
//! command fails cleanly (nothing written, the client gets UNKNOWN naming the conflict) and the
//! entity reloads, so the next command sees the other replica's state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use futures::stream::StreamExt as _;
use tokio::sync::oneshot;

use crate::catalog::Service;
use crate::discovery::report_error;
use crate::entities::dispatch::Dispatcher;
use crate::entities::entity_stream::{self, Incoming};
use crate::entities::eventsourced::driver::outcome_label;
use crate::entities::eventsourced::{CommandRequest, Outcome};
use crate::entities::registry::Inbox;
use crate::protocol::cloudstate::valueentity::{
    ValueEntityInit, ValueEntityInitState, ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut,
    value_entity_action, value_entity_stream_in, value_entity_stream_out,
};
use crate::protocol::cloudstate::{Command, client_action};
use crate::store::{AnyStore, Store as _, StoreError, ValueKey};

/// A client's command and where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: CommandRequest,
    /// The answer.
    pub reply: oneshot::Sender<Outcome>,
}

type UserStream = Incoming<ValueEntityStreamOut>;

/// The `handle` method of the value-entity protocol.
const HANDLE: entity_stream::Method = entity_stream::Method {
    service: "cloudstate.valueentity.ValueEntity",
    method: "handle",
    path: "/cloudstate.valueentity.ValueEntity/handle",
};

struct Stream {
    outgoing: UnboundedSender<Box<ValueEntityStreamIn>>,
    incoming: UserStream,
    revision: u64,
    /// Command ids number the commands of one stream, from 1.
    next_command_id: i64,
}

/// The entity's task: until passivation or shutdown.
pub async fn run(
    dispatcher: Arc<Dispatcher>,
    service: Arc<Service>,
    entity_id: String,
    mut commands: Inbox<Request>,
) {
    let Some(store) = dispatcher.store.clone() else { return };
    let mut lifecycle = dispatcher.lifecycle.clone();
    let _active = dispatcher.metrics.entity_active("value_entity");
    let key = (service.name.clone(), entity_id.clone());
    let value_key = ValueKey::new(service.persistence_id.clone(), entity_id.clone());
    let passivation = service.passivation.unwrap_or(dispatcher.passivation);
    let mut stream: Option<Stream> = None;
    loop {
        if stream.is_none() {
            tokio::select! {
                opened = Box::pin(open(&dispatcher, &store, &service, &value_key)) => stream = Some(opened),
                // Nothing loads until the proxy restarts; callers learn why (UNAVAILABLE).
                _ = store.stopped() => return,
                () = lifecycle.stopped() => return,
            }
        }
        let Some(current) = stream.as_mut() else { continue };
        let deadline = tokio::time::sleep(passivation);
        let request = tokio::select! {
            request = commands.next() => match request {
                Some(request) => *request,
                None => return,
            },
            () = deadline => match dispatcher.value_entities.passivate(&key, &mut commands) {
                Some(request) => *request,
                None => return,
            },
            unexpected = current.incoming.next() => {
                let why = match unexpected {
                    Some(Ok(_)) => "the user function sent a message while no command was in flight",
                    _ => "the user function's stream ended",
                };
                tracing::warn!(service = %service.name, %entity_id, why, "reopening the value entity");
                stream = None;
                continue;
            }
            () = lifecycle.stopped() => return,
        };
        let id = current.next_command_id;
        current.next_command_id += 1;
        let (outcome, keep) =
            Box::pin(command(&dispatcher, &store, &value_key, current, &entity_id, id, request.command))
                .await;
        let _ = request.reply.send(outcome);
        if !keep {
            stream = None;
        }
    }
}

/// Loads the state and opens the stream with it (retrying while the store fails).
async fn open(dispatcher: &Dispatcher, store: &AnyStore, service: &Service, key: &ValueKey) -> Stream {
    let mut delay = Duration::from_millis(50);
    let state = loop {
        let start = Instant::now();
        let state = store.get_value(key).await;
        dispatcher.metrics.store("get_value", outcome_label(&state), start);
        match state {
            Ok(state) => break state,
            Err(error) => {
                tracing::warn!(entity = %key.entity_id, %error, "loading the value entity failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    let (outgoing, incoming) = entity_stream::open(&dispatcher.channel, HANDLE);
    let init = ValueEntityInit {
        service_name: service.name.clone(),
        entity_id: key.entity_id.clone(),
        state: state.value.map(|value| ValueEntityInitState { value: Some(value) }),
    };
    let init = ValueEntityStreamIn { message: Some(value_entity_stream_in::Message::Init(init)) };
    let _ = outgoing.unbounded_send(Box::new(init));
    Stream { outgoing, incoming, revision: state.revision, next_command_id: 1 }
}

/// Sends one command and waits for its reply; returns the outcome and whether the stream may be
/// kept (false: the user function's state may differ from the store's, reopen).
async fn command(
    dispatcher: &Dispatcher,
    store: &AnyStore,
    key: &ValueKey,
    stream: &mut Stream,
    entity_id: &str,
    id: i64,
    request: CommandRequest,
) -> (Outcome, bool) {
    let failed = |description: String| Outcome::Failed { description };
    let command = Command {
        entity_id: entity_id.to_string(),
        id,
        name: request.name,
        payload: Some(request.payload),
        streamed: false,
        metadata: request.metadata,
    };
    let message = ValueEntityStreamIn { message: Some(value_entity_stream_in::Message::Command(command)) };
    if stream.outgoing.unbounded_send(Box::new(message)).is_err() {
        return (failed("the value entity's user function stream closed".into()), false);
    }
    let reply = match stream.incoming.next().await {
        Some(Ok(ValueEntityStreamOut { message: Some(value_entity_stream_out::Message::Reply(reply)) })) => {
            reply
        }
        Some(Ok(ValueEntityStreamOut { message: Some(value_entity_stream_out::Message::Failure(f)) })) => {
            return (failed(f.description), !f.restart);
        }
        Some(Ok(ValueEntityStreamOut { message: None })) => {
            let message = format!("entity {entity_id:?}: empty reply to command {id}");
            tokio::spawn(report_error(dispatcher.channel.clone(), message.clone()));
            return (failed(format!("protocol error: {message}")), false);
        }
        Some(Err(status)) => {
            return (failed(format!("the user function failed: {}", status.message())), false);
        }
        None => return (failed("the value entity's user function stream ended".into()), false),
    };
    if reply.command_id != id {
        let message =
            format!("entity {entity_id:?}: reply to command {} while {id} is in flight", reply.command_id);
        tokio::spawn(report_error(dispatcher.channel.clone(), message.clone()));
        return (failed(format!("protocol error: {message}")), false);
    }
    let ValueEntityReply { client_action, side_effects, state_action, .. } = reply;
    let action = match client_action.and_then(|a| a.action) {
        Some(client_action::Action::Failure(f)) => return (failed(f.description), !f.restart),
        Some(action) => action,
        None => {
            let message = format!("entity {entity_id:?}: reply to command {id} has no client action");
            tokio::spawn(report_error(dispatcher.channel.clone(), message.clone()));
            return (failed(format!("protocol error: {message}")), false);
        }
    };
    if let Some(state_action) = state_action.and_then(|a| a.action) {
        let start = Instant::now();
        let (written, operation) = match state_action {
            value_entity_action::Action::Update(update) => {
                let value = update.value.unwrap_or_default();
                (store.update_value(key, stream.revision, value).await, "update_value")
            }
            value_entity_action::Action::Delete(_) => {
                (store.delete_value(key, stream.revision).await, "delete_value")
            }
        };
        dispatcher.metrics.store(operation, outcome_label(&written), start);
        match written {
            Ok(revision) => stream.revision = revision,
            Err(error) => return (failed(write_failure(entity_id, &error)), false),
        }
    }
    (Outcome::Done { action, side_effects }, true)
}

fn write_failure(entity_id: &str, error: &StoreError) -> String {
    if error.is_conflict() {
        format!("the state of entity {entity_id:?} changed meanwhile (another replica wrote it): {error}")
    } else {
        format!("writing the state of entity {entity_id:?} failed: {error}")
    }
}
