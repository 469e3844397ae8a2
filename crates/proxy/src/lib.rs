//! `stead-proxy`: the sidecar that sits in front of a CloudState user function.
//!
//! It speaks the CloudState protocol 0.2 to the user function (which is the gRPC *server*; the
//! proxy is its client), serves the user's gRPC services to clients, and keeps entity state in
//! a store. In passthrough mode it forwards any TCP traffic to the user port instead.
//!
//! Code map, in three homes and what they share:
//! - [`startup`]: [`run`] / [`Proxy`]: start-up (health and metrics servers, store, discovery,
//!   catalog, HTTP rules, ready, clients) and shutdown; `lifecycle.rs`: how background tasks
//!   learn that the proxy stops and how it waits for them.
//! - [`frontend`]: the client-facing server (HTTP/1.1 and h2c): gRPC through the pass-through
//!   [`frontend::codec`], gRPC-Web, server reflection in [`frontend::reflection`], HTTP/JSON
//!   through the `google.api.http` rules in [`frontend::transcode`] and the pure
//!   [`frontend::http_rules`] table, streamed methods as NDJSON in `json_stream.rs`.
//! - [`entities`]: the [`entities::Call`] dispatcher (forwards, side effects; streamed action
//!   methods through `action_stream.rs`), and one task per active entity, activated and
//!   passivated through a [`entities::Registry`], each with its `handle` stream to the user
//!   function opened by `entity_stream.rs` (256/512-byte codec buffers, futures' small
//!   unbounded channels: an active entity costs ~4 KiB of heap; `benches/proxy_hop.rs`
//!   measures it). Each entity type is a machine without IO and a driver:
//!   [`entities::eventsourced`] (init, one command at a time, events durable before the
//!   reply, restarts and retries) and [`entities::value`] (init with the stored state, one
//!   command at a time, its write durable before the reply), each with its `driver.rs`.
//! - [`config`]: [`ProxyConfig`], read only from the environment (render's names).
//! - [`discovery`]: `EntityDiscovery.discover` with backoff, version check, `reportError`.
//! - [`catalog`]: the discovered services resolved with prost-reflect (entity keys, types).
//! - [`connections`]: accepting with a connection limit and back-off, header and idle
//!   timeouts, the management ports' server, the open-file limit raised at start.
//! - [`passthrough`]: protocol detection (HTTP/1, HTTP/2, opaque TCP) and forwarding, each
//!   connection served on one of per-core single-threaded shards.
//! - [`health`] and [`metrics`]: `/ready`, `/alive`, `/metrics`.
//! - [`protocol`]: the protocol's messages and gRPC stubs, generated at build time from the
//!   `.proto` files in `proto/` (written for stead from the protocol's facts, checked against the
//!   descriptors shipped by the official Python library in `tests/python_descriptors.rs`).
//! - [`store`]: the entity stores behind one trait: event journal, snapshots, value state;
//!   in memory, embedded (redb, group commit) and PostgreSQL.
//!
//! Invariants:
//! - Architecture invariant: an event is written at most once: `(persistence_id,
//!   sequence_number)` is unique in every store, and an append that would reuse a sequence
//!   number fails with a conflict instead of overwriting. The losing replica reloads the journal
//!   and sends the command again against the fresh state (at most [`entities::eventsourced::MAX_ATTEMPTS`]
//!   times, then the command fails cleanly).
//! - Architecture invariant: sequence numbers of one persistence id are contiguous and start at 1.
//! - Architecture invariant: a store reports success only once the write is durable for that
//!   store (in-memory: visible to every later read; embedded: committed and fsynced; PostgreSQL:
//!   committed).
//! - Architecture invariant: an event-sourced command is answered only after its events are
//!   durable; a failed command's events and side effects are never stored or performed. A value
//!   entity's update or delete is durable before its reply.
//! - Architecture invariant: one command at a time per entity in one proxy; one task per active
//!   entity, and a command always reaches a live task (sends and passivation share a lock).
//! - Architecture invariant: one port serves gRPC, reflection and HTTP/JSON; a transcoded
//!   request goes through the same dispatcher (entity key, entity task) as a gRPC call.
//! - Architecture invariant: nothing on an input-driven path panics; errors name the thing and
//!   the value. Configuration comes only from the environment.

pub mod catalog;
pub mod config;
pub mod connections;
pub mod discovery;
pub mod entities;
pub mod frontend;
pub mod health;
pub(crate) mod lifecycle;
pub mod metrics;
pub mod passthrough;
pub mod protocol;
pub mod startup;
pub mod store;

pub use config::{ConfigError, ProxyConfig, ProxyMode, StoreConfig};
pub use startup::{Proxy, ProxyError, build_runtime, run};
