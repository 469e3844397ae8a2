//! `stead-proxy`: the sidecar that sits in front of a CloudState user function.
//!
//! It speaks the CloudState protocol 0.2 to the user function (which is the gRPC *server*; the
//! proxy is its client) and keeps entity state in a store.
//!
//! Code map:
//! - [`protocol`]: the protocol's messages and gRPC stubs, generated at build time from the
//!   `.proto` files in `proto/` (written for stead from the protocol's facts, checked against the
//!   descriptors shipped by the official Python library in `tests/python_descriptors.rs`).
//! - [`store`]: the entity stores behind one trait: event journal, snapshots, value state;
//!   in memory, embedded (redb, group commit) and PostgreSQL.
//! - [`eventsourced`]: the protocol logic of one event-sourced entity as a state machine without
//!   IO (init, one command at a time, events durable before the reply, restarts and retries).
//!
//! Invariants:
//! - An event is written at most once: `(persistence_id, sequence_number)` is unique in every
//!   store, and an append that would reuse a sequence number fails with a conflict instead of
//!   overwriting.
//! - Sequence numbers of one persistence id are contiguous and start at 1.
//! - A store reports success only once the write is durable for that store (in-memory: visible
//!   to every later read; embedded: committed and fsynced; PostgreSQL: committed).
//! - An event-sourced command is answered only after its events are durable; a failed command's
//!   events are never stored.
//! - Nothing on an input-driven path panics; errors name the thing and the value.

pub mod eventsourced;
pub mod protocol;
pub mod store;
