//! The CRDTs of CloudState's `crdt.proto` as pure delta-state types: no IO, no clock, no
//! runtime. Time (`now_millis`) and node identities ([`ReplicaId`]) come in as arguments; the
//! proxy owns the state, replicates deltas between the proxies of a service and maps the
//! user-facing shapes here to protobuf.
//!
//! Code map:
//! - `replica.rs`: [`ReplicaId`]. `causal.rs`: [`Dot`], [`CausalContext`] (version vector plus
//!   dot cloud), [`DotSource`] (fresh dots for one update).
//! - One module per type: `gcounter.rs`, `pncounter.rs`, `gset.rs`, `orset.rs` (add-wins),
//!   `lwwregister.rs` (with [`Clock`]), `flag.rs`, `ormap.rs` (keys to any [`Crdt`]), `vote.rs`.
//! - `crdt.rs`: [`Crdt`], the enum over the types (ORMap values, an entity's state), and
//!   [`CrdtKind`]. `error.rs`: [`CrdtError`].
//! - `update.rs`: [`apply`] a user function's [`Update`] (its `CrdtDelta`) to the state, giving
//!   the replication delta; [`create`] a state from its initial value.
//! - `view.rs`: what the function sees: [`view`] of a state, [`View::diff`] to the
//!   [`ViewDelta`] the proxy sends after a change, [`View::apply`] (the function's side) and
//!   [`View::apply_update`] (the function's value after its own update).
//!
//! Invariants (property-tested in `tests/properties.rs`):
//! - Every type is a join-semilattice: `merge` is commutative, associative and idempotent, and a
//!   delta is a state of the same type: merging a mutation's delta gives what the mutation gave.
//! - Replicas that received the same deltas, in any order and with duplicates, are equal.
//! - Mutations return their delta and apply it to `self` by merging it, never otherwise.
//! - Nothing panics on input: overflows and disabling a flag are errors; merging two kinds is
//!   [`CrdtError::KindMismatch`] and leaves the state as it was.

mod causal;
mod crdt;
mod error;
mod flag;
mod gcounter;
mod gset;
mod kind;
mod lwwregister;
mod ormap;
mod orset;
mod pncounter;
mod replica;
mod update;
mod view;
mod vote;

pub use causal::{CausalContext, Dot, DotSource};
pub use crdt::{Crdt, OrMap};
pub use error::CrdtError;
pub use flag::Flag;
pub use gcounter::GCounter;
pub use gset::GSet;
pub use kind::CrdtKind;
pub use lwwregister::{Clock, LwwRegister, Write};
pub use ormap::{MapValue, ObservedRemoveMap};
pub use orset::OrSet;
pub use pncounter::PnCounter;
pub use replica::ReplicaId;
pub use update::{Update, apply, create};
pub use view::{View, ViewDelta, view};
pub use vote::Vote;

/// An element, key or register value: opaque bytes (a protobuf `Any`, encoded), ordered
/// bytewise so every replica iterates the same way.
pub type Value = bytes::Bytes;
