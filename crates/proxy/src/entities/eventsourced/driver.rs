//! The IO around one event-sourced [`Entity`]: its task owns the state machine, the user
//! function's `handle` stream and the commands waiting for it, and carries out the machine's
//! effects (send, persist, complete, report, restart) in order.
//!
//! Architecture invariant: the task is the only writer of its journal in this proxy, and it
//! awaits each append before feeding the machine anything else (the machine's contract).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use futures::stream::StreamExt as _;
use tokio::sync::oneshot;
use tonic::Status;

use super::{Effect, Entity};
use crate::catalog::Service;
use crate::discovery::report_error;
use crate::entities::command::{Outcome, Request, Ticket};
use crate::entities::entity_stream::{self, Incoming};
use crate::entities::host::{Driver, Host, outcome_label};
use crate::entities::registry::{Inbox, Registry};
use crate::protocol::cloudstate::eventsourced::{EventSourcedStreamIn, EventSourcedStreamOut};
use crate::store::{AnyStore, Snapshot, Store as _, StoreError, StoredEvent};

type UserStream = Incoming<EventSourcedStreamOut>;

/// The `handle` method of the event-sourced protocol.
const HANDLE: entity_stream::Method = entity_stream::Method {
    service: "cloudstate.eventsourced.EventSourced",
    method: "handle",
    path: "/cloudstate.eventsourced.EventSourced/handle",
};

/// The event-sourced entity type.
pub(crate) struct EventSourced;

impl Driver for EventSourced {
    fn registry(host: &Host) -> &Registry<Request> {
        &host.event_sourced
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
    let Some(store) = host.store.clone() else {
        // The catalog refuses event-sourced entities without a store; nothing to do.
        return;
    };
    let mut lifecycle = host.lifecycle.clone();
    let _active = host.metrics.entity_active("event_sourced");
    let mut task = Task {
        host: host.clone(),
        store,
        entity: Entity::new(&service.name, &service.persistence_id, &entity_id),
        waiting: Vec::new(),
        outgoing: None,
        stream: None,
        restarts_in_a_row: 0,
        store_stopped: false,
    };
    // The entity keeps its own copy; the registry's key is rebuilt at passivation (each active
    // entity's task is kept small: a thousand of them are most of the proxy's memory).
    drop(entity_id);
    let mut work: VecDeque<Effect> = VecDeque::from([Effect::Restart { reason: "activation".into() }]);
    let mut last_activity = Instant::now();
    loop {
        if !work.is_empty() {
            // Boxed: carrying out effects needs more room than waiting does, and every active
            // entity's task is sized for the larger of the two.
            Box::pin(task.carry_out(&mut work)).await;
            if task.store_stopped {
                break;
            }
        }
        let idle = task.entity.is_idle();
        if idle {
            // An idle entity holds no buffers: both are refilled by the next command.
            work = VecDeque::new();
            task.waiting.shrink_to_fit();
        }
        tokio::select! {
            message = next(&mut task.stream) => {
                match message {
                    Some(Ok(out)) => match out.message {
                        Some(message) => {
                            task.restarts_in_a_row = 0;
                            work.extend(task.entity.user_message(message));
                        }
                        None => work.extend(task.entity.stream_closed("the user function sent an empty message")),
                    },
                    Some(Err(status)) => work.extend(task.entity.stream_closed(&status.to_string())),
                    None => {
                        task.stream = None;
                        work.extend(task.entity.stream_closed("the stream ended"));
                    }
                }
                last_activity = Instant::now();
            }
            request = commands.next() => {
                let Some(request) = request else { break };
                task.accept(*request, &mut work);
                last_activity = Instant::now();
            }
            // The deadline is computed in place rather than kept: every byte held across this
            // wait is held by every active entity.
            () = tokio::time::sleep_until(passivation_deadline(&host, &service, last_activity)), if idle => {
                let key = (service.name.clone(), task.entity.entity_id().to_string());
                match host.event_sourced.passivate(&key, &mut commands) {
                    Some(request) => task.accept(*request, &mut work),
                    None => break,
                }
                last_activity = Instant::now();
            }
            () = lifecycle.stopped() => break,
        }
    }
    // Answers still owed end here: their callers see the entity stop.
    task.waiting.clear();
}

/// When an entity idle since `last_activity` passivates.
fn passivation_deadline(host: &Host, service: &Service, last_activity: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(last_activity + service.passivation.unwrap_or(host.passivation))
}

async fn next(stream: &mut Option<UserStream>) -> Option<Result<EventSourcedStreamOut, Status>> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

struct Task {
    host: Arc<Host>,
    store: Arc<AnyStore>,
    entity: Entity,
    /// Commands in flight or queued: usually one, so a list.
    waiting: Vec<(Ticket, oneshot::Sender<Outcome>)>,
    outgoing: Option<UnboundedSender<Box<EventSourcedStreamIn>>>,
    stream: Option<UserStream>,
    restarts_in_a_row: u32,
    /// The store stopped for good while the entity was loading: it ends (see `AnyStore::stopped`).
    store_stopped: bool,
}

impl Task {
    fn accept(&mut self, request: Request, work: &mut VecDeque<Effect>) {
        let (ticket, effects) = self.entity.command(request.command);
        self.waiting.push((ticket, request.reply));
        work.extend(effects);
    }

    /// Carries out effects in order until none is left.
    async fn carry_out(&mut self, work: &mut VecDeque<Effect>) {
        while let Some(effect) = work.pop_front() {
            match effect {
                Effect::Send(message) => {
                    // A closed stream shows up as its end on the receiving side.
                    if let Some(outgoing) = &self.outgoing {
                        let _ = outgoing.unbounded_send(Box::new(message));
                    }
                }
                Effect::Persist(append) => {
                    let start = Instant::now();
                    // Boxed: the store's futures (PostgreSQL's above all) would otherwise
                    // size every idle entity's task for the largest of them.
                    let result = Box::pin(self.store.append(append)).await;
                    self.host.metrics.store("append", outcome_label(&result), start);
                    work.extend(self.entity.persisted(result));
                }
                Effect::Complete { ticket, outcome } => {
                    let position = self.waiting.iter().position(|(waiting, _)| *waiting == ticket);
                    if let Some((_, reply)) = position.map(|p| self.waiting.remove(p)) {
                        // The caller may have given up (timeout); nothing to do then.
                        let _ = reply.send(outcome);
                    }
                }
                Effect::ReportError(message) => {
                    tokio::spawn(report_error(self.host.channel.clone(), message));
                }
                Effect::Restart { reason } => {
                    if self.restarts_in_a_row > 0 {
                        tracing::warn!(journal = self.entity.journal_id(), %reason, "restarting the entity");
                    }
                    self.outgoing = None;
                    self.stream = None;
                    let store = self.store.clone();
                    let loaded = tokio::select! {
                        loaded = Box::pin(self.load()) => Some(loaded),
                        _ = store.stopped() => None,
                    };
                    let Some((snapshot, events)) = loaded else {
                        // Nothing loads until the proxy restarts: the entity ends, and its
                        // callers learn why (UNAVAILABLE).
                        self.store_stopped = true;
                        work.clear();
                        return;
                    };
                    let (outgoing, stream) = entity_stream::open(&self.host.channel, HANDLE);
                    self.outgoing = Some(outgoing);
                    self.stream = Some(stream);
                    self.restarts_in_a_row = self.restarts_in_a_row.saturating_add(1);
                    work.extend(self.entity.recovered(snapshot, events));
                }
            }
        }
    }

    /// The latest snapshot and the events after it, retried with backoff while the store fails
    /// (and, after repeated restarts, delayed so a broken user function is not hammered).
    async fn load(&mut self) -> (Option<Snapshot>, Vec<StoredEvent>) {
        let mut delay = Duration::from_millis(50);
        if self.restarts_in_a_row > 1 {
            let wait = Duration::from_millis(50 << self.restarts_in_a_row.min(7));
            tokio::time::sleep(wait).await;
        }
        loop {
            let start = Instant::now();
            let loaded = async {
                let journal = self.entity.journal_id();
                let snapshot = self.store.latest_snapshot(journal).await?;
                let after = snapshot.as_ref().map_or(0, |s| s.sequence_number);
                let events = self.store.read_events(journal, after).await?;
                Ok::<_, StoreError>((snapshot, events))
            }
            .await;
            self.host.metrics.store("load", outcome_label(&loaded), start);
            match loaded {
                Ok(loaded) => return loaded,
                Err(error) => {
                    tracing::warn!(journal = self.entity.journal_id(), %error, "loading the entity failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
