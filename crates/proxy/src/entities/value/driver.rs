//! The IO around one value [`Entity`]: its task owns the state machine, the user function's
//! `handle` stream and the command in flight, and carries out the machine's effects (send,
//! write, complete, report, restart) in order.
//!
//! Commands wait in the task's inbox until the entity is idle, so the machine holds at most
//! one; while a command is in flight the task waits only for the user function's answer.
//!
//! Architecture invariant: the task is the only writer of its entity's state in this proxy,
//! and it awaits each write before feeding the machine anything else (the machine's contract).
//! When a write loses against another replica (revision conflict) the command fails cleanly
//! (nothing written, the client gets UNKNOWN naming the conflict) and the entity reloads, so
//! the next command sees the other replica's state.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use futures::stream::StreamExt as _;
use tokio::sync::oneshot;
use tonic::Status;

use super::{Closed, Effect, Entity, Write};
use crate::catalog::Service;
use crate::discovery::report_error;
use crate::entities::command::{Outcome, Request, Ticket};
use crate::entities::entity_stream::{self, Incoming};
use crate::entities::host::{Driver, Host, outcome_label};
use crate::entities::registry::{Inbox, Registry};
use crate::lifecycle::Lifecycle;
use crate::protocol::cloudstate::valueentity::{ValueEntityStreamIn, ValueEntityStreamOut};
use crate::store::{AnyStore, Store as _, ValueKey, ValueState};

type UserStream = Incoming<ValueEntityStreamOut>;

/// The `handle` method of the value-entity protocol.
const HANDLE: entity_stream::Method = entity_stream::Method {
    service: "cloudstate.valueentity.ValueEntity",
    method: "handle",
    path: "/cloudstate.valueentity.ValueEntity/handle",
};

/// The value entity type.
pub(crate) struct ValueEntity;

impl Driver for ValueEntity {
    fn registry(host: &Host) -> &Registry<Request> {
        &host.value_entities
    }

    fn run(
        host: Arc<Host>,
        service: Arc<Service>,
        entity_id: String,
        commands: Inbox<Request>,
    ) -> impl Future<Output = ()> + Send + 'static {
        run(host, service, entity_id, commands)
    }
}

/// The entity's task: until passivation or shutdown.
async fn run(host: Arc<Host>, service: Arc<Service>, entity_id: String, mut commands: Inbox<Request>) {
    let Some(store) = host.store.clone() else { return };
    let mut lifecycle = host.lifecycle.clone();
    let _active = host.metrics.entity_active("value_entity");
    let key = (service.name.clone(), entity_id.clone());
    let passivation = service.passivation.unwrap_or(host.passivation);
    let mut task = Task {
        host: host.clone(),
        store,
        key: ValueKey::new(service.persistence_id.clone(), entity_id.clone()),
        entity: Entity::new(&service.name, &entity_id),
        waiting: None,
        outgoing: None,
        stream: None,
    };
    let mut work = VecDeque::from([Effect::Restart { reason: "activation".into() }]);
    loop {
        if !work.is_empty() {
            // Boxed: carrying out effects needs more room than waiting does, and every active
            // entity's task is sized for the larger of the two.
            if !Box::pin(task.carry_out(&mut work, &mut lifecycle)).await {
                return;
            }
        }
        if !task.entity.is_idle() {
            // A command is in flight: only its answer (or the stream's end) moves on.
            let message = next(&mut task.stream).await;
            work.extend(task.received(message));
            continue;
        }
        let deadline = tokio::time::sleep(passivation);
        tokio::select! {
            request = commands.next() => match request {
                Some(request) => task.accept(*request, &mut work),
                None => return,
            },
            () = deadline => match host.value_entities.passivate(&key, &mut commands) {
                Some(request) => task.accept(*request, &mut work),
                None => return,
            },
            message = next(&mut task.stream) => work.extend(task.received(message)),
            () = lifecycle.stopped() => return,
        }
    }
}

async fn next(stream: &mut Option<UserStream>) -> Option<Result<ValueEntityStreamOut, Status>> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

struct Task {
    host: Arc<Host>,
    store: Arc<AnyStore>,
    key: ValueKey,
    entity: Entity,
    /// The command in flight (the driver feeds one at a time).
    waiting: Option<(Ticket, oneshot::Sender<Outcome>)>,
    outgoing: Option<UnboundedSender<Box<ValueEntityStreamIn>>>,
    stream: Option<UserStream>,
}

impl Task {
    fn accept(&mut self, request: Request, work: &mut VecDeque<Effect>) {
        let (ticket, effects) = self.entity.command(request.command);
        self.waiting = Some((ticket, request.reply));
        work.extend(effects);
    }

    /// What the user function's stream gave, for the machine.
    fn received(&mut self, message: Option<Result<ValueEntityStreamOut, Status>>) -> Vec<Effect> {
        match message {
            Some(Ok(message)) => self.entity.user_message(message),
            Some(Err(status)) => self.entity.stream_closed(Closed::Error(status.message().to_string())),
            None => {
                self.stream = None;
                self.entity.stream_closed(Closed::End)
            }
        }
    }

    /// Carries out effects in order until none is left; false if the proxy stops or the store
    /// stops for good while loading (the entity ends, and its callers learn why: UNAVAILABLE).
    async fn carry_out(&mut self, work: &mut VecDeque<Effect>, lifecycle: &mut Lifecycle) -> bool {
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Send(message) => {
                    let sent =
                        self.outgoing.as_ref().is_some_and(|o| o.unbounded_send(Box::new(message)).is_ok());
                    if !sent {
                        work.extend(self.entity.stream_closed(Closed::Send));
                    }
                }
                Effect::Write(write) => {
                    let start = Instant::now();
                    let (written, operation) = match write {
                        Write::Update { revision, value } => {
                            (self.store.update_value(&self.key, revision, value).await, "update_value")
                        }
                        Write::Delete { revision } => {
                            (self.store.delete_value(&self.key, revision).await, "delete_value")
                        }
                    };
                    self.host.metrics.store(operation, outcome_label(&written), start);
                    work.extend(self.entity.written(written));
                }
                Effect::Complete { ticket, outcome } => {
                    if let Some((_, reply)) = self.waiting.take_if(|(waiting, _)| *waiting == ticket) {
                        // The caller may have given up (timeout); nothing to do then.
                        let _ = reply.send(outcome);
                    }
                }
                Effect::ReportError(message) => {
                    tokio::spawn(report_error(self.host.channel.clone(), message));
                }
                Effect::Restart { reason } => {
                    if self.stream.is_some() {
                        tracing::warn!(entity = %self.key.entity_id, %reason, "reopening the value entity");
                    }
                    self.outgoing = None;
                    self.stream = None;
                    let store = self.store.clone();
                    let state = tokio::select! {
                        state = Box::pin(self.load()) => state,
                        _ = store.stopped() => return false,
                        () = lifecycle.stopped() => return false,
                    };
                    let (outgoing, stream) = entity_stream::open(&self.host.channel, HANDLE);
                    self.outgoing = Some(outgoing);
                    self.stream = Some(stream);
                    work.extend(self.entity.loaded(state));
                }
            }
        }
        true
    }

    /// The stored state, retried with backoff while the store fails.
    async fn load(&mut self) -> ValueState {
        let mut delay = Duration::from_millis(50);
        loop {
            let start = Instant::now();
            let state = self.store.get_value(&self.key).await;
            self.host.metrics.store("get_value", outcome_label(&state), start);
            match state {
                Ok(state) => return state,
                Err(error) => {
                    tracing::warn!(entity = %self.key.entity_id, %error, "loading the value entity failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
