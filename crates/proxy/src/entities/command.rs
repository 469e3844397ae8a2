//! What every entity type shares: a client's command ([`CommandRequest`]), how the entity's
//! machine names it while it waits ([`Ticket`]), its answer ([`Outcome`]), and the two
//! travelling together to an entity's task ([`Request`]).

use prost_types::Any;
use tokio::sync::oneshot;

use crate::protocol::cloudstate::{Metadata, SideEffect, client_action};

/// Identifies a client's command inside one entity's machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// A command from a client.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRequest {
    /// The gRPC method name.
    pub name: String,
    /// The request message.
    pub payload: Any,
    /// Request metadata (headers).
    pub metadata: Option<Metadata>,
}

/// The answer to a client's command.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Reply to the client or forward the command, then perform the side effects (synchronous
    /// ones before replying).
    Done {
        /// A reply or a forward.
        action: client_action::Action,
        /// Calls to make after the command.
        side_effects: Vec<SideEffect>,
    },
    /// The command failed (gRPC UNKNOWN with this description).
    Failed {
        /// What the user function or the proxy said.
        description: String,
    },
}

/// A client's command and where its answer goes: what an entity's task receives.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: CommandRequest,
    /// The answer.
    pub reply: oneshot::Sender<Outcome>,
}
