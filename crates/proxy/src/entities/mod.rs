//! The entities: how a call reaches the user function's entities and actions.
//!
//! Code map:
//! - `dispatch.rs`: the [`Dispatcher`] routes a [`Call`] to the entity type that serves it and
//!   turns the answer into the client's (forwards, side effects).
//! - `registry.rs`: the active entities of one type, one task each ([`Registry`]).
//! - `entity_stream.rs`: an entity's `handle` stream to the user function, kept small.
//! - `action_stream.rs`: streamed action calls.
//! - [`eventsourced`]: the event-sourced entity: its machine (no IO) and `driver.rs`, its task.
//! - `value/`: the value entity: its task (`driver.rs`).

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
