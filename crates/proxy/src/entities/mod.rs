//! The entities: how a call reaches the user function's entities and actions.
//!
//! Code map:
//! - `dispatch.rs`: the [`Dispatcher`] routes a [`Call`] to the entity type that serves it and
//!   turns the answer into the client's (forwards, side effects).
//! - `host.rs`: the seam between the dispatcher and the entity types: what an entity's task
//!   shares (`Host`) and what the dispatcher's one generic route needs of a type (`Driver`).
//! - [`command`]: the command and outcome types every entity type shares.
//! - `registry.rs`: the active entities of one type, one task each ([`Registry`]).
//! - `entity_stream.rs`: an entity's `handle` stream to the user function, kept small.
//! - `action_stream.rs`: streamed action calls.
//! - Each entity type, a state machine without IO (its protocol rules, tested alone) and
//!   `driver.rs`, its task, which carries out the machine's effects: [`eventsourced`] and
//!   [`value`]. CRDTs will be a third, `crdt/`.
//!
//! Imports run one way: dispatch → drivers → machines → command; a driver knows its host,
//! never the dispatcher.

mod action_stream;
pub mod command;
mod dispatch;
mod entity_stream;
pub mod eventsourced;
mod host;
mod registry;
pub mod value;

pub use action_stream::{ReplyStream, RequestStream};
pub(crate) use dispatch::Dispatcher;
pub use dispatch::{Call, MAX_FORWARDS};
pub(crate) use host::Host;
pub use registry::{Inbox, Registry};
