//! The protocol logic of one value entity, without IO.
//!
//! [`Entity`] is a state machine, as the event-sourced one is. Its driver (`driver.rs`) feeds
//! it what happens (the stored state loaded, a client command, a message from the user
//! function's stream or its end, the result of a write) and carries out the [`Effect`]s it
//! returns, in order: send on the user-function stream, write the state, complete a client's
//! command, report a protocol error, restart the stream.
//!
//! The machine guarantees, whatever the user function sends:
//! - init first: `Init` with the stored state goes out before any command; commands that
//!   arrive meanwhile wait;
//! - one command at a time, numbered from 1 on each stream: the next command goes out only when
//!   the previous one is complete;
//! - durable before reply: a reply's `update` or `delete` completes its command only after the
//!   driver reports it written, checked against the revision the user function's state came
//!   from, so a write that lost against another replica is a conflict, never an overwrite;
//! - a failure (a `failure` message, or a reply whose client action is a failure) writes
//!   nothing; the stream is kept unless the user function asked for a restart;
//! - every command accepted by [`Entity::command`] is completed exactly once;
//! - when the user function's state may differ from the store's (a write failed or lost, the
//!   stream broke, or the user function broke the protocol) the machine asks for a restart: the
//!   stream is closed and the state reloaded, so the next command sees the stored state. The
//!   command whose write failed is failed, not retried (its client learns of the conflict).

use std::collections::VecDeque;

use prost_types::Any;

use crate::entities::command::{CommandRequest, Outcome, Ticket};
use crate::protocol::cloudstate::valueentity::{
    ValueEntityInit, ValueEntityInitState, ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut,
    value_entity_action, value_entity_stream_in, value_entity_stream_out,
};
use crate::protocol::cloudstate::{Command, SideEffect, client_action};
use crate::store::{StoreError, ValueState};

pub(crate) mod driver;
#[cfg(test)]
mod tests;

/// What the driver must do, in order.
///
/// Contract: the driver carries out effects in the order given; it awaits a [`Effect::Write`]
/// and reports it through [`Entity::written`] before feeding the entity anything else; after
/// an [`Effect::Restart`] it feeds nothing from the old stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send this on the user function's `handle` stream; a send that fails is reported through
    /// [`Entity::stream_closed`] with [`Closed::Send`].
    Send(ValueEntityStreamIn),
    /// Write the entity's state, then call [`Entity::written`] with the result.
    Write(Write),
    /// Answer the client's command.
    Complete {
        /// Which command.
        ticket: Ticket,
        /// The answer.
        outcome: Outcome,
    },
    /// Tell the user function it broke the protocol (`EntityDiscovery.reportError`).
    ReportError(String),
    /// Close the user function's stream, load the stored state, open a new stream and call
    /// [`Entity::loaded`].
    Restart {
        /// Why, for the log.
        reason: String,
    },
}

/// A write of the entity's state, if it is still at `revision`.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Replace the state.
    Update {
        /// The revision the user function's state came from.
        revision: u64,
        /// The new state.
        value: Any,
    },
    /// Delete the state.
    Delete {
        /// The revision the user function's state came from.
        revision: u64,
    },
}

/// How the user function's stream closed.
#[derive(Clone, Debug, PartialEq)]
pub enum Closed {
    /// A message could not be sent on it.
    Send,
    /// It failed with this message.
    Error(String),
    /// It ended.
    End,
}

/// A command waiting for its turn.
#[derive(Clone, Debug)]
struct Pending {
    ticket: Ticket,
    request: CommandRequest,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for [`Entity::loaded`].
    Loading,
    /// Ready; no command in flight.
    Idle,
    /// The command was sent with this id; waiting for its reply.
    AwaitingReply { ticket: Ticket, command_id: i64 },
    /// The reply's state is being written.
    Writing { ticket: Ticket, action: Box<client_action::Action>, side_effects: Vec<SideEffect> },
}

/// One value entity, as the proxy sees it.
#[derive(Debug)]
pub struct Entity {
    service_name: String,
    entity_id: String,
    phase: Phase,
    /// The revision of the state the user function holds.
    revision: u64,
    queue: VecDeque<Pending>,
    next_ticket: u64,
    next_command_id: i64,
}

impl Entity {
    /// A new entity, loading: the driver loads its state and calls [`Entity::loaded`].
    pub fn new(service_name: &str, entity_id: &str) -> Self {
        Self {
            service_name: service_name.to_string(),
            entity_id: entity_id.to_string(),
            phase: Phase::Loading,
            revision: 0,
            queue: VecDeque::new(),
            next_ticket: 1,
            next_command_id: 1,
        }
    }

    /// The entity's id.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// Whether nothing is loading, in flight or waiting (the entity may be passivated).
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle) && self.queue.is_empty()
    }

    /// The stored state has been loaded (and a new stream opened): start it with the state.
    pub fn loaded(&mut self, state: ValueState) -> Vec<Effect> {
        let mut effects = Vec::with_capacity(2);
        // Command ids number the commands of one stream: a new stream starts again at 1.
        self.next_command_id = 1;
        self.revision = state.revision;
        let init = ValueEntityInit {
            service_name: self.service_name.clone(),
            entity_id: self.entity_id.clone(),
            state: state.value.map(|value| ValueEntityInitState { value: Some(value) }),
        };
        effects.push(send(value_entity_stream_in::Message::Init(init)));
        self.phase = Phase::Idle;
        self.dispatch(&mut effects);
        effects
    }

    /// A client's command: sent now if the entity is idle, else queued.
    pub fn command(&mut self, request: CommandRequest) -> (Ticket, Vec<Effect>) {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.queue.push_back(Pending { ticket, request });
        let mut effects = Vec::new();
        self.dispatch(&mut effects);
        (ticket, effects)
    }

    /// A message from the user function's stream.
    pub fn user_message(&mut self, message: ValueEntityStreamOut) -> Vec<Effect> {
        let mut effects = Vec::new();
        let (ticket, command_id) = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitingReply { ticket, command_id } => (ticket, command_id),
            // A message of a stream already given up: the driver feeds none (see `Effect`).
            Phase::Loading => {
                self.phase = Phase::Loading;
                return effects;
            }
            phase => {
                self.phase = phase;
                // Only a driver that breaks the contract feeds a message while a write is on.
                self.fail_in_flight(&mut effects, "the user function sent a message out of turn");
                self.restart(&mut effects, "the user function sent a message while no command was in flight");
                return effects;
            }
        };
        match message.message {
            Some(value_entity_stream_out::Message::Reply(reply)) => {
                self.on_reply(ticket, command_id, reply, &mut effects);
            }
            Some(value_entity_stream_out::Message::Failure(failure)) => {
                complete_failed(&mut effects, ticket, failure.description);
                if failure.restart {
                    self.restart(
                        &mut effects,
                        format!("the user function asked for a restart: command {command_id} failed"),
                    );
                }
            }
            None => {
                let message = format!("entity {:?}: empty reply to command {command_id}", self.entity_id);
                self.protocol_error(&mut effects, ticket, message);
            }
        }
        self.dispatch(&mut effects);
        effects
    }

    /// The user function's stream closed (or a message could not be sent on it).
    pub fn stream_closed(&mut self, closed: Closed) -> Vec<Effect> {
        let mut effects = Vec::new();
        match (&self.phase, closed) {
            (Phase::Loading, _) => {}
            // Nothing is owed; the stream's end will show on the receiving side.
            (Phase::Idle, Closed::Send) => {}
            (Phase::Idle, _) => self.restart(&mut effects, "the user function's stream ended"),
            (_, closed) => {
                let description = match closed {
                    Closed::Send => "the value entity's user function stream closed".to_string(),
                    Closed::Error(message) => format!("the user function failed: {message}"),
                    Closed::End => "the value entity's user function stream ended".to_string(),
                };
                self.fail_in_flight(&mut effects, &description);
                self.restart(&mut effects, description);
            }
        }
        effects
    }

    /// The result of the last [`Effect::Write`]: the new revision, or why it was not written.
    pub fn written(&mut self, result: Result<u64, StoreError>) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Phase::Writing { ticket, action, side_effects } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            // Not waiting for a write: a driver bug; ignore rather than corrupt the order.
            return effects;
        };
        match result {
            Ok(revision) => {
                self.revision = revision;
                effects.push(Effect::Complete {
                    ticket,
                    outcome: Outcome::Done { action: *action, side_effects },
                });
            }
            Err(error) => {
                let entity_id = &self.entity_id;
                let description = if error.is_conflict() {
                    format!(
                        "the state of entity {entity_id:?} changed meanwhile (another replica wrote it): {error}"
                    )
                } else {
                    format!("writing the state of entity {entity_id:?} failed: {error}")
                };
                complete_failed(&mut effects, ticket, description.clone());
                // The user function holds a state that is not stored: reload it.
                self.restart(&mut effects, description);
            }
        }
        self.dispatch(&mut effects);
        effects
    }

    fn on_reply(
        &mut self,
        ticket: Ticket,
        command_id: i64,
        reply: ValueEntityReply,
        effects: &mut Vec<Effect>,
    ) {
        if reply.command_id != command_id {
            let message = format!(
                "entity {:?}: reply to command {} while {command_id} is in flight",
                self.entity_id, reply.command_id
            );
            self.protocol_error(effects, ticket, message);
            return;
        }
        let ValueEntityReply { client_action, side_effects, state_action, .. } = reply;
        let action = match client_action.and_then(|a| a.action) {
            Some(client_action::Action::Failure(failure)) => {
                // The command failed: its state change and side effects are discarded.
                complete_failed(effects, ticket, failure.description);
                if failure.restart {
                    self.restart(
                        effects,
                        format!("the user function asked for a restart: command {command_id} failed"),
                    );
                }
                return;
            }
            Some(action) => action,
            None => {
                let message = format!(
                    "entity {:?}: reply to command {command_id} has no client action",
                    self.entity_id
                );
                self.protocol_error(effects, ticket, message);
                return;
            }
        };
        let revision = self.revision;
        let write = match state_action.and_then(|a| a.action) {
            None => {
                effects.push(Effect::Complete { ticket, outcome: Outcome::Done { action, side_effects } });
                return;
            }
            Some(value_entity_action::Action::Update(update)) => {
                Write::Update { revision, value: update.value.unwrap_or_default() }
            }
            Some(value_entity_action::Action::Delete(_)) => Write::Delete { revision },
        };
        effects.push(Effect::Write(write));
        self.phase = Phase::Writing { ticket, action: Box::new(action), side_effects };
    }

    /// Sends the next queued command if the entity is idle.
    fn dispatch(&mut self, effects: &mut Vec<Effect>) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        let Some(Pending { ticket, request }) = self.queue.pop_front() else { return };
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Every active entity keeps its machine: a drained queue gives its memory back.
            self.queue = VecDeque::new();
        }
        let command_id = self.next_command_id;
        self.next_command_id += 1;
        effects.push(send(value_entity_stream_in::Message::Command(Command {
            entity_id: self.entity_id.clone(),
            id: command_id,
            name: request.name,
            payload: Some(request.payload),
            streamed: false,
            metadata: request.metadata,
        })));
        self.phase = Phase::AwaitingReply { ticket, command_id };
    }

    /// Fails the command in flight or being written, if any.
    fn fail_in_flight(&mut self, effects: &mut Vec<Effect>, description: &str) {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::AwaitingReply { ticket, .. } | Phase::Writing { ticket, .. } => {
                complete_failed(effects, ticket, description.to_string());
            }
            phase => self.phase = phase,
        }
    }

    /// The user function broke the protocol with the command `ticket`: report it, fail the
    /// command and reload.
    fn protocol_error(&mut self, effects: &mut Vec<Effect>, ticket: Ticket, message: String) {
        effects.push(Effect::ReportError(message.clone()));
        complete_failed(effects, ticket, format!("protocol error: {message}"));
        self.restart(effects, format!("protocol error: {message}"));
    }

    /// Asks the driver to reload; queued commands wait for [`Entity::loaded`].
    fn restart(&mut self, effects: &mut Vec<Effect>, reason: impl Into<String>) {
        self.phase = Phase::Loading;
        effects.push(Effect::Restart { reason: reason.into() });
    }
}

fn send(message: value_entity_stream_in::Message) -> Effect {
    Effect::Send(ValueEntityStreamIn { message: Some(message) })
}

fn complete_failed(effects: &mut Vec<Effect>, ticket: Ticket, description: String) {
    effects.push(Effect::Complete { ticket, outcome: Outcome::Failed { description } });
}
