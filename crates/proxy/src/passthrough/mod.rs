//! Passthrough mode: for user containers that are not CloudState user functions. Client
//! connections on the service port are forwarded to the user port, with metrics.
//!
//! Layers, each small and tested alone, in linkerd2-proxy's shape:
//! accept ([`serve`], handing each connection to a per-core shard, `shards.rs`) → count the
//! connection → detect the protocol ([`detect`]) → connect the user port → HTTP/1 request
//! proxying ([`http`]), HTTP/2 frame forwarding with passive metering ([`frames`]) or opaque
//! byte splicing ([`tcp`]).
//!
//! Architecture invariant: one upstream connection per client connection. Bytes are never
//! altered for opaque TCP nor HTTP/2; HTTP/1 requests are forwarded as they came (same method,
//! path, headers and body). HTTP/1 upgrades (WebSocket) are not supported yet.

pub mod detect;
pub mod frames;
pub mod hpack;
pub mod http;
mod shards;
pub mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;
use crate::runtime::lifecycle::Lifecycle;
use detect::Protocol;

/// How long a silent client may take before its connection is treated as opaque TCP.
pub const DETECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why one forwarded connection ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Reading the client's first bytes failed.
    #[error("detecting the protocol failed: {0}")]
    Detect(std::io::Error),
    /// The user port did not accept.
    #[error("connecting to the user port {addr} failed: {source}")]
    Connect {
        /// The user port.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Copying bytes failed.
    #[error("forwarding bytes failed: {0}")]
    Splice(std::io::Error),
    /// HTTP proxying failed.
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

/// Handles one client connection: detect, connect, forward.
pub async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<Protocol, ConnectionError> {
    let _ = client.set_nodelay(true);
    let protocol = detect::detect(&client, DETECT_TIMEOUT).await.map_err(ConnectionError::Detect)?;
    let _open = metrics.connection(protocol.label());
    let upstream_stream = TcpStream::connect(upstream)
        .await
        .map_err(|source| ConnectionError::Connect { addr: upstream, source })?;
    let _ = upstream_stream.set_nodelay(true);
    match protocol {
        Protocol::Opaque => {
            tcp::splice(client, upstream_stream).await.map_err(ConnectionError::Splice)?;
        }
        Protocol::Http1 => http::proxy(client, upstream_stream, metrics).await?,
        Protocol::Http2 => {
            frames::forward(client, upstream_stream, metrics).await.map_err(ConnectionError::Splice)?
        }
    }
    Ok(protocol)
}

/// Accepts client connections until the lifecycle stops.
///
/// Connections are handed, round robin, to [`shards`]: one thread per core, each with its own
/// single-threaded runtime, as HAProxy's threads and nginx's workers do. A forwarded request is
/// a few small reads and writes; on a multi-threaded runtime the wake-ups between worker threads
/// cost more than the forwarding itself (measured in `benches/proxy_peers.rs`: about 1.4× the
/// HTTP/1.1 throughput of spawning on the shared runtime). If the shard threads cannot be
/// started, connections are served on the caller's runtime. Dropping this future (rather than
/// stopping the lifecycle) ends the shards and cuts their connections at once.
pub async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    metrics: Arc<Metrics>,
    mut lifecycle: Lifecycle,
) {
    let shards = shards::start(upstream, &metrics, &lifecycle);
    let mut next = 0usize;
    loop {
        let client = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = lifecycle.stopped() => return,
        };
        let client = if shards.is_empty() {
            client
        } else {
            next = next.wrapping_add(1);
            match shards[next % shards.len()].hand_over(client) {
                Ok(()) => continue,
                // The shard is gone (its thread failed); serve here instead.
                Err(client) => client,
            }
        };
        spawn_connection(client, upstream, metrics.clone(), lifecycle.clone());
    }
}

/// Serves one client connection on the current runtime until it ends or the lifecycle stops.
///
/// Only for connections no shard took: a shard stops all its connections at once by dropping
/// its runtime, so that its connection tasks do not poll the lifecycle on every wake-up
/// (measured: about 1% of the proxy's CPU time under load, see `benches/proxy_peers.rs`).
fn spawn_connection(
    client: TcpStream,
    upstream: SocketAddr,
    metrics: Arc<Metrics>,
    mut lifecycle: Lifecycle,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = serve_connection(client, upstream, metrics) => {}
            () = lifecycle.stopped() => {}
        }
    });
}

/// Serves one client connection until it ends, logging why if it failed.
async fn serve_connection(client: TcpStream, upstream: SocketAddr, metrics: Arc<Metrics>) {
    if let Err(error) = connection(client, upstream, metrics).await {
        tracing::debug!(%error, "a passthrough connection failed");
    }
}
