//! The protocol logic of one event-sourced entity, without IO.
//!
//! [`Entity`] is a state machine. Its driver feeds it what happens (a client command, a message
//! from the user function's stream, the result of loading or persisting) and carries out the
//! [`Effect`]s it returns, in order: send on the user-function stream, append to the store,
//! complete a client's command, restart the stream.
//!
//! The machine guarantees, whatever the user function sends:
//! - init first: `Init` (with the latest snapshot) and the stored events after it go out before
//!   any command; commands that arrive meanwhile wait;
//! - one command at a time: the next command goes out only when the previous one is complete;
//! - durable before reply: a command whose reply carries events completes only after the driver
//!   reports them persisted;
//! - a failure (or a reply whose client action is a failure) discards that command's events and
//!   side effects;
//! - every command accepted by [`Entity::command`] is completed exactly once;
//! - when the user function's state may differ from the journal (it applied events that were not
//!   persisted, it asked for a restart, or it broke the protocol) the machine asks for a restart:
//!   the stream is closed and the entity reloaded from the store. A command whose events lost a
//!   race against another replica is retried after the reload, a bounded number of times.

use std::collections::VecDeque;

use crate::entities::command::{CommandRequest, Outcome, Ticket};
use crate::protocol::cloudstate::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot, EventSourcedStreamIn,
    event_sourced_stream_in, event_sourced_stream_out,
};
use crate::protocol::cloudstate::{ClientAction, Command, SideEffect, client_action};
use crate::store::{Append, Snapshot, StoreError, StoredEvent};

pub(crate) mod driver;
#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

/// How often a command is sent again after its events lost a race with another writer.
pub const MAX_ATTEMPTS: u32 = 3;

/// What the driver must do, in order.
///
/// Contract: the driver carries out effects in the order given; it awaits a [`Effect::Persist`]
/// and reports it through [`Entity::persisted`] before feeding the entity anything else; after
/// an [`Effect::Restart`] it feeds nothing from the old stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send this on the user function's `handle` stream.
    Send(EventSourcedStreamIn),
    /// Append this to the store, then call [`Entity::persisted`] with the result.
    Persist(Append),
    /// Answer the client's command.
    Complete {
        /// Which command.
        ticket: Ticket,
        /// The answer.
        outcome: Outcome,
    },
    /// Tell the user function it broke the protocol (`EntityDiscovery.reportError`).
    ReportError(String),
    /// Close the user function's stream, load the latest snapshot and the events after it, open a
    /// new stream and call [`Entity::recovered`].
    Restart {
        /// Why, for the log.
        reason: String,
    },
}

/// A command waiting or in flight.
#[derive(Clone, Debug)]
struct Pending {
    ticket: Ticket,
    request: CommandRequest,
    attempts: u32,
}

/// Commands and actions are boxed: every active entity keeps its machine, most of them idle,
/// and an idle entity's phase is then 40 bytes instead of the ~270 of the largest variant.
#[derive(Debug)]
enum Phase {
    /// Waiting for [`Entity::recovered`].
    Loading,
    /// Ready; no command in flight.
    Idle,
    /// The command was sent with this id; waiting for its reply.
    AwaitingReply { command: Box<Pending>, command_id: i64 },
    /// The reply's events are being persisted.
    Persisting { command: Box<Pending>, action: Box<client_action::Action>, side_effects: Vec<SideEffect> },
}

/// One event-sourced entity, as the proxy sees it.
#[derive(Debug)]
pub struct Entity {
    service_name: String,
    entity_id: String,
    journal_id: String,
    phase: Phase,
    /// The highest sequence number the user function has seen (replayed or persisted).
    sequence: u64,
    queue: VecDeque<Box<Pending>>,
    next_ticket: u64,
    next_command_id: i64,
}

impl Entity {
    /// A new entity, loading. The driver loads the snapshot and events of [`Entity::journal_id`]
    /// and calls [`Entity::recovered`].
    pub fn new(service_name: &str, persistence_id: &str, entity_id: &str) -> Self {
        Self {
            service_name: service_name.to_string(),
            entity_id: entity_id.to_string(),
            journal_id: format!("{persistence_id}|{entity_id}"),
            phase: Phase::Loading,
            sequence: 0,
            queue: VecDeque::new(),
            next_ticket: 1,
            next_command_id: 1,
        }
    }

    /// The entity's id.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The journal's persistence id: `"<persistence id>|<entity id>"`.
    pub fn journal_id(&self) -> &str {
        &self.journal_id
    }

    /// Whether nothing is loading, in flight or waiting (the entity may be passivated).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle) && self.queue.is_empty()
    }

    /// The stored state has been loaded: start the stream with it.
    pub fn recovered(&mut self, snapshot: Option<Snapshot>, events: Vec<StoredEvent>) -> Vec<Effect> {
        let mut effects = Vec::with_capacity(events.len() + 2);
        // Command ids number the commands of one stream: a new stream starts again at 1.
        self.next_command_id = 1;
        self.sequence = snapshot.as_ref().map_or(0, |s| s.sequence_number);
        let snapshot = snapshot.map(|s| EventSourcedSnapshot {
            snapshot_sequence: to_wire(s.sequence_number),
            snapshot: Some(s.payload),
        });
        let init = EventSourcedInit {
            service_name: self.service_name.clone(),
            entity_id: self.entity_id.clone(),
            snapshot,
        };
        effects.push(send(event_sourced_stream_in::Message::Init(init)));
        for event in events {
            self.sequence = self.sequence.max(event.sequence_number);
            let event =
                EventSourcedEvent { sequence: to_wire(event.sequence_number), payload: Some(event.payload) };
            effects.push(send(event_sourced_stream_in::Message::Event(event)));
        }
        self.phase = Phase::Idle;
        self.dispatch(&mut effects);
        effects
    }

    /// A client's command: sent now if the entity is idle, else queued.
    pub fn command(&mut self, request: CommandRequest) -> (Ticket, Vec<Effect>) {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let pending = Box::new(Pending { ticket, request, attempts: 0 });
        let mut effects = Vec::new();
        if matches!(self.phase, Phase::Idle) && self.queue.is_empty() {
            // The usual case: nothing waits, so the queue is never allocated (an idle entity
            // then holds no queue at all; see `dispatch`).
            self.send_command(pending, &mut effects);
        } else {
            self.queue.push_back(pending);
            self.dispatch(&mut effects);
        }
        (ticket, effects)
    }

    /// A message from the user function's stream.
    pub fn user_message(&mut self, message: event_sourced_stream_out::Message) -> Vec<Effect> {
        let mut effects = Vec::new();
        match message {
            event_sourced_stream_out::Message::Reply(reply) => self.on_reply(reply, &mut effects),
            event_sourced_stream_out::Message::Failure(failure) => {
                let (command_id, restart) = (failure.command_id, failure.restart);
                match std::mem::replace(&mut self.phase, Phase::Idle) {
                    Phase::AwaitingReply { command, command_id: expected } if expected == command_id => {
                        complete_failed(&mut effects, command.ticket, failure.description);
                        if restart {
                            self.restart(
                                &mut effects,
                                format!("the user function asked for a restart: command {command_id} failed"),
                            );
                        }
                    }
                    phase => {
                        // A failure not tied to the command in flight fails the entity.
                        self.phase = phase;
                        let reason = format!(
                            "the user function failed entity {:?} outside command {}: {}",
                            self.entity_id,
                            self.in_flight_id().map_or_else(|| "none".to_string(), |id| id.to_string()),
                            failure.description
                        );
                        self.fail_in_flight(&mut effects, &failure.description);
                        self.restart(&mut effects, reason);
                    }
                }
            }
        }
        self.dispatch(&mut effects);
        effects
    }

    /// The user function's stream ended or broke.
    pub fn stream_closed(&mut self, reason: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        if matches!(self.phase, Phase::Loading) {
            return effects;
        }
        self.fail_in_flight(&mut effects, "the entity's user function stream closed");
        self.restart(&mut effects, format!("the user function's stream closed: {reason}"));
        effects
    }

    /// The result of the last [`Effect::Persist`].
    pub fn persisted(&mut self, result: Result<u64, StoreError>) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Phase::Persisting { command, action, side_effects } =
            std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            // Not waiting for a write: a driver bug; ignore rather than corrupt the order.
            return effects;
        };
        match result {
            Ok(last) => {
                self.sequence = last;
                effects.push(Effect::Complete {
                    ticket: command.ticket,
                    outcome: Outcome::Done { action: *action, side_effects },
                });
            }
            Err(error) if error.is_conflict() && command.attempts < MAX_ATTEMPTS => {
                // Another replica wrote first: reload its events and try the command again.
                let reason = format!("journal {:?} changed: {error}", self.journal_id);
                self.queue.push_front(command);
                self.restart(&mut effects, reason);
            }
            Err(error) => {
                let description =
                    format!("persisting the events of entity {:?} failed: {error}", self.entity_id);
                complete_failed(&mut effects, command.ticket, description);
                // The user function applied events that are not stored: reload it.
                self.restart(
                    &mut effects,
                    format!("events of journal {:?} were not persisted: {error}", self.journal_id),
                );
            }
        }
        self.dispatch(&mut effects);
        effects
    }

    fn on_reply(&mut self, reply: EventSourcedReply, effects: &mut Vec<Effect>) {
        let (command, command_id) = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitingReply { command, command_id } => (command, command_id),
            phase => {
                self.phase = phase;
                let message =
                    format!("reply to command {} while no command awaits a reply", reply.command_id);
                self.protocol_error(effects, message);
                return;
            }
        };
        if reply.command_id != command_id {
            self.phase = Phase::AwaitingReply { command, command_id };
            let message =
                format!("reply to command {} while command {command_id} is in flight", reply.command_id);
            self.protocol_error(effects, message);
            return;
        }
        let EventSourcedReply { client_action, side_effects, events, snapshot, .. } = reply;
        let action = match client_action.and_then(|a: ClientAction| a.action) {
            Some(client_action::Action::Failure(failure)) => {
                // The command failed: its events and side effects are discarded. The user
                // function may have applied those events already, so it is reloaded.
                complete_failed(effects, command.ticket, failure.description);
                if !events.is_empty() || failure.restart {
                    self.restart(effects, format!("command {command_id} failed; its events are discarded"));
                }
                return;
            }
            Some(action) => action,
            None => {
                self.phase = Phase::AwaitingReply { command, command_id };
                self.protocol_error(effects, format!("reply to command {command_id} has no client action"));
                return;
            }
        };
        if events.is_empty() {
            if snapshot.is_some() {
                self.phase = Phase::AwaitingReply { command, command_id };
                self.protocol_error(
                    effects,
                    format!("reply to command {command_id} has a snapshot but no events"),
                );
                return;
            }
            effects.push(Effect::Complete {
                ticket: command.ticket,
                outcome: Outcome::Done { action, side_effects },
            });
            return;
        }
        effects.push(Effect::Persist(Append {
            persistence_id: self.journal_id.clone(),
            first_sequence: self.sequence.saturating_add(1),
            events,
            snapshot,
        }));
        self.phase = Phase::Persisting { command, action: Box::new(action), side_effects };
    }

    /// Sends the next queued command if the entity is idle.
    fn dispatch(&mut self, effects: &mut Vec<Effect>) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        let Some(command) = self.queue.pop_front() else { return };
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Every active entity keeps its machine: a drained queue gives its memory back.
            self.queue = VecDeque::new();
        }
        self.send_command(command, effects);
    }

    /// Sends `command` now (the entity is idle).
    fn send_command(&mut self, mut command: Box<Pending>, effects: &mut Vec<Effect>) {
        command.attempts += 1;
        let command_id = self.next_command_id;
        self.next_command_id += 1;
        effects.push(send(event_sourced_stream_in::Message::Command(Command {
            entity_id: self.entity_id.clone(),
            id: command_id,
            name: command.request.name.clone(),
            payload: Some(command.request.payload.clone()),
            streamed: false,
            metadata: command.request.metadata.clone(),
        })));
        self.phase = Phase::AwaitingReply { command, command_id };
    }

    fn in_flight_id(&self) -> Option<i64> {
        match &self.phase {
            Phase::AwaitingReply { command_id, .. } => Some(*command_id),
            _ => None,
        }
    }

    /// Fails the command in flight, if any (a persisting command's events are then not awaited).
    fn fail_in_flight(&mut self, effects: &mut Vec<Effect>, description: &str) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitingReply { command, .. } | Phase::Persisting { command, .. } => {
                complete_failed(effects, command.ticket, description.to_string());
            }
            phase => self.phase = phase,
        }
    }

    fn protocol_error(&mut self, effects: &mut Vec<Effect>, message: String) {
        let message = format!("entity {:?} of service {}: {message}", self.entity_id, self.service_name);
        effects.push(Effect::ReportError(message.clone()));
        self.fail_in_flight(effects, &format!("protocol error: {message}"));
        self.restart(effects, format!("protocol error: {message}"));
    }

    /// Asks the driver to reload; queued commands wait for [`Entity::recovered`].
    fn restart(&mut self, effects: &mut Vec<Effect>, reason: String) {
        if matches!(self.phase, Phase::Loading) && effects.iter().any(|e| matches!(e, Effect::Restart { .. }))
        {
            return;
        }
        self.phase = Phase::Loading;
        effects.push(Effect::Restart { reason });
    }
}

fn send(message: event_sourced_stream_in::Message) -> Effect {
    Effect::Send(EventSourcedStreamIn { message: Some(message) })
}

fn complete_failed(effects: &mut Vec<Effect>, ticket: Ticket, description: String) {
    effects.push(Effect::Complete { ticket, outcome: Outcome::Failed { description } });
}

/// Sequence numbers are `int64` on the wire; ours never exceed it in practice.
fn to_wire(sequence_number: u64) -> i64 {
    i64::try_from(sequence_number).unwrap_or(i64::MAX)
}
