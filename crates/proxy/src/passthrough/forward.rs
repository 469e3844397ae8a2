//! One forwarded connection: detect its protocol, connect the user port, forward (see the
//! layers in [`super`]), with its timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::detect::{self, Protocol};
use super::{frames, http, tcp};
use crate::config::ConnectionConfig;
use crate::connections::{Permit, Timed};
use crate::metrics::Metrics;

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

/// A client connection's timeouts (see [`ConnectionConfig`]).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For an HTTP/1 request's headers, and an HTTP/2 connection's preface and first frame.
    pub header: Duration,
    /// For a connection without a byte either way.
    pub idle: Option<Duration>,
}

impl From<&ConnectionConfig> for Timeouts {
    fn from(config: &ConnectionConfig) -> Self {
        Self { header: config.header_read_timeout, idle: config.idle_timeout }
    }
}

/// Handles one client connection: detect, connect, forward. HTTP connections must send a
/// request (HTTP/1: its headers; HTTP/2: the preface and first frame) within the header
/// timeout; every connection is closed once silent both ways for the idle timeout (opaque TCP
/// has only that one, since its server may speak first).
pub async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    metrics: Arc<Metrics>,
    timeouts: Timeouts,
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
            let client = Timed::idle(client, timeouts.idle);
            tcp::splice(client, upstream_stream).await.map_err(ConnectionError::Splice)?;
        }
        Protocol::Http1 => {
            let client = Timed::http(client, timeouts.header, timeouts.idle);
            http::proxy(client, upstream_stream, metrics, timeouts.header).await?
        }
        Protocol::Http2 => {
            let client = Timed::http(client, timeouts.header, timeouts.idle);
            frames::forward(client, upstream_stream, metrics).await.map_err(ConnectionError::Splice)?
        }
    }
    Ok(protocol)
}

/// Serves one client connection until it ends (then frees its permit), logging why if it
/// failed.
pub(super) async fn serve_connection(
    (client, _permit): (TcpStream, Permit),
    upstream: SocketAddr,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
) {
    if let Err(error) = connection(client, upstream, metrics, timeouts).await {
        tracing::debug!(%error, "a passthrough connection failed");
    }
}
