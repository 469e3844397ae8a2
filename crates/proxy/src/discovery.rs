//! Startup: `EntityDiscovery.discover` on the user function, retried with backoff until it
//! answers, then the protocol version check. Problems go back to the user function through
//! `reportError` (and to the log) by the caller.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::protocol::cloudstate::entity_discovery_client::EntityDiscoveryClient;
use crate::protocol::cloudstate::{EntitySpec, ProxyInfo, UserFunctionError};
use crate::protocol::{PROTOCOL_MAJOR_VERSION, PROTOCOL_MINOR_VERSION};

/// The largest message exchanged with the user function (as CloudState's proxy: 12 MiB).
pub const MAX_MESSAGE_BYTES: usize = 12 * 1024 * 1024;

/// Why discovery did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The address does not make a URI.
    #[error("user function address {addr} is not usable: {source}")]
    Address {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The user function speaks another protocol version.
    #[error(
        "the user function speaks CloudState protocol {major}.{minor}, but this proxy speaks \
         {PROTOCOL_MAJOR_VERSION}.{PROTOCOL_MINOR_VERSION}"
    )]
    Version {
        /// Its major version.
        major: i32,
        /// Its minor version.
        minor: i32,
    },
}

/// A lazily connecting channel to the user function.
pub fn channel(addr: SocketAddr) -> Result<Channel, DiscoveryError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| DiscoveryError::Address { addr, source })?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    Ok(endpoint.connect_lazy())
}

/// What the proxy tells the user function about itself.
pub fn proxy_info(supported_entity_types: Vec<String>) -> ProxyInfo {
    ProxyInfo {
        protocol_major_version: PROTOCOL_MAJOR_VERSION,
        protocol_minor_version: PROTOCOL_MINOR_VERSION,
        proxy_name: "stead-proxy".to_string(),
        proxy_version: env!("CARGO_PKG_VERSION").to_string(),
        supported_entity_types,
    }
}

/// Calls `discover` until it answers, waiting `min` after the first failure, doubling up to
/// `max`. Never returns an error: the caller bounds it (shutdown).
pub async fn discover(channel: Channel, info: ProxyInfo, min: Duration, max: Duration) -> EntitySpec {
    let mut client = EntityDiscoveryClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut delay = min;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match client.discover(info.clone()).await {
            Ok(spec) => return spec.into_inner(),
            Err(status) => {
                // The first failure and then every tenth: a user function starting up is normal.
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::info!(attempt, error = %status.message(), "the user function does not answer discovery yet");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max);
    }
}

/// Accepts the user function's protocol version: 0.2, or 0.0 (not declared: libraries older
/// than 0.2, such as the Python library 0.1.1, which speak the same messages).
pub fn check_version(spec: &EntitySpec) -> Result<(), DiscoveryError> {
    let (major, minor) =
        spec.service_info.as_ref().map_or((0, 0), |i| (i.protocol_major_version, i.protocol_minor_version));
    if (major, minor) == (PROTOCOL_MAJOR_VERSION, PROTOCOL_MINOR_VERSION) || (major, minor) == (0, 0) {
        Ok(())
    } else {
        Err(DiscoveryError::Version { major, minor })
    }
}

/// Sends `message` to the user function's `reportError`; a failure to deliver is only logged.
pub async fn report_error(channel: Channel, message: String) {
    tracing::error!(%message, "reporting an error to the user function");
    let mut client = EntityDiscoveryClient::new(channel);
    let call = client.report_error(UserFunctionError { message });
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) => tracing::warn!(error = %status.message(), "reportError failed"),
        Err(_) => tracing::warn!("reportError timed out"),
    }
}
