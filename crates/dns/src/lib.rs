//! `stead-dns`: the cluster's DNS server. Authoritative for the cluster domain (default
//! `cluster.local`), fed by the local engine with the names of Services and pods; every other
//! name is forwarded to the host's resolvers.
//!
//! The engine builds a [`Records`] value (A and SRV records by name) and hands it to
//! [`DnsServer::update`]; the server compiles it into an immutable zone and swaps it in whole.
//!
//! # Code map
//!
//! - `records.rs`: [`Records`], the plain value the engine fills. No validation, never fails.
//! - `zone.rs`: `Zone`, the compiled snapshot (hickory `Record`s built once, names lower-cased,
//!   empty non-terminals, PTRs derived from A records) and `Zone::lookup`, the pure answer to one
//!   question: an authoritative answer or "outside, forward it".
//! - `handler.rs`: `ClusterHandler`, hickory-server's `RequestHandler`: checks the request,
//!   asks the zone, or the forwarder, and encodes the response (EDNS, AA, RA bits).
//! - `forward.rs`: `Forwarder`, upstreams in order, UDP then TCP on truncation, with a timeout.
//! - `server.rs`: [`DnsConfig`], [`DnsServer`]: binds UDP+TCP pairs, runs hickory's `Server`,
//!   swaps zones.
//! - `resolv.rs`: [`upstreams_from_resolv_conf`], pure parsing of the host's resolvers.
//! - `error.rs`: [`DnsError`], start-up failures only.
//!
//! # Answers
//!
//! | question | answer |
//! |---|---|
//! | A of a name with addresses | all of them, rotated per query (round robin), AA |
//! | SRV of a name with SRV data | the SRVs, plus in-zone targets' A records as additionals |
//! | SOA / NS of the apex | the SOA (`ns.dns.<domain>`, `hostmaster.<domain>`) / the NS |
//! | any other type of an existing name (AAAA, MX, ...) | NOERROR, no answer, SOA in authority |
//! | a name in the zone that does not exist | NXDOMAIN, SOA in authority |
//! | PTR of an address some A record holds | one PTR: the owner with the most labels |
//! | anything else | forwarded and relayed (not AA); REFUSED with no upstream; SERVFAIL if none answers |
//!
//! UDP answers larger than 512 bytes (or the client's EDNS size) are truncated with TC set, and
//! the same query over TCP gets the whole answer.
//!
//! # Invariants
//!
//! - Architecture invariant: a query for a name inside the cluster domain is never forwarded,
//!   whatever the records say (the zone decides "outside" by name alone).
//! - Architecture invariant: an update is atomic. A query is answered from exactly one zone
//!   snapshot (`ArcSwap::load_full` once per query); no torn answers.
//! - Architecture invariant: no input panics the server. Malformed packets get FORMERR or are
//!   dropped by hickory; record names that are not DNS names or lie outside the zone are left out
//!   of the zone with a warning; nothing in the request path unwraps.
//! - Architecture invariant: the server never forwards to itself (upstreams equal to a bound
//!   address are dropped).

mod error;
mod forward;
mod handler;
mod records;
mod resolv;
mod server;
mod zone;

pub use error::DnsError;
pub use records::Records;
pub use resolv::upstreams_from_resolv_conf;
pub use server::{DnsConfig, DnsServer};
