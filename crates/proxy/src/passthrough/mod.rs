//! Passthrough mode: for user containers that are not CloudState user functions. Client
//! connections on the service port are forwarded to the user port, with metrics.
//!
//! Layers, each small and tested alone, in linkerd2-proxy's shape:
//! accept ([`serve`], handing each connection to a per-core shard, `shards.rs`) → count the
//! connection → detect the protocol ([`detect`]; one connection's steps in `forward.rs`) → connect the user port → HTTP/1 request
//! proxying ([`http`]), HTTP/2 frame forwarding with passive metering ([`frames`]) or opaque
//! byte splicing ([`tcp`]).
//!
//! Architecture invariant: one upstream connection per client connection. Bytes are never
//! altered for opaque TCP nor HTTP/2; HTTP/1 requests are forwarded as they came (same method,
//! path, headers and body). HTTP/1 upgrades (WebSocket) are not supported yet.

pub mod detect;
mod forward;
pub mod frames;
pub mod hpack;
pub mod http;
mod shards;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::config::ConnectionConfig;
use crate::connections::{Acceptor, Permit};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use forward::serve_connection;
pub use forward::{ConnectionError, DETECT_TIMEOUT, Timeouts, connection};

/// Accepts client connections until the lifecycle stops.
///
/// Connections are handed, round robin, to [`shards`]: one thread per core, each with its own
/// single-threaded runtime, as HAProxy's threads and nginx's workers do. A forwarded request is
/// a few small reads and writes; on a multi-threaded runtime the wake-ups between worker threads
/// cost more than the forwarding itself (measured in `benches/proxy_peers.rs`: about 1.4× the
/// HTTP/1.1 throughput of spawning on the shared runtime). If the shard threads cannot be
/// started, connections are served on the caller's runtime. Dropping this future (rather than
/// stopping the lifecycle) ends the shards and cuts their connections at once.
///
/// At most the acceptor's limit of connections are open at once (more wait in the kernel's
/// accept queue); each holds its permit wherever it is served.
pub async fn serve(
    mut acceptor: Acceptor,
    upstream: SocketAddr,
    config: &ConnectionConfig,
    metrics: Arc<Metrics>,
    mut lifecycle: Lifecycle,
) {
    let timeouts = Timeouts::from(config);
    let shards = shards::start(upstream, timeouts, &metrics, &lifecycle);
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = lifecycle.stopped() => return,
        };
        let accepted = if shards.is_empty() {
            accepted
        } else {
            next = next.wrapping_add(1);
            match shards[next % shards.len()].hand_over(accepted) {
                Ok(()) => continue,
                // The shard is gone (its thread failed); serve here instead.
                Err(accepted) => accepted,
            }
        };
        spawn_connection(accepted, upstream, timeouts, metrics.clone(), lifecycle.clone());
    }
}

/// Serves one client connection on the current runtime until it ends or the lifecycle stops.
///
/// Only for connections no shard took: a shard stops all its connections at once by dropping
/// its runtime, so that its connection tasks do not poll the lifecycle on every wake-up
/// (measured: about 1% of the proxy's CPU time under load, see `benches/proxy_peers.rs`).
fn spawn_connection(
    accepted: (TcpStream, Permit),
    upstream: SocketAddr,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    mut lifecycle: Lifecycle,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = serve_connection(accepted, upstream, timeouts, metrics) => {}
            () = lifecycle.stopped() => {}
        }
    });
}
