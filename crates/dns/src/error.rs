//! The crate's one error type: what can go wrong when the server starts.

use std::io;
use std::net::SocketAddr;

/// Why [`crate::DnsServer::bind`] failed. Serving never fails: a query the server cannot answer
/// gets an error response code, never an error here.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The configuration names no address to listen on.
    #[error("dns config has no listen address")]
    NoListenAddress,
    /// The cluster domain is not a usable DNS name (or is the root, which would swallow every name).
    #[error("cluster domain {domain:?} is invalid: {reason}")]
    InvalidDomain { domain: String, reason: String },
    /// A UDP socket or TCP listener could not be bound.
    #[error("cannot bind dns {protocol} socket on {addr}: {source}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}
