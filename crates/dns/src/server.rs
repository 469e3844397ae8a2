//! [`DnsServer`]: binds the sockets, runs hickory's `Server` with the [`ClusterHandler`], and
//! swaps in new zones.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use crate::error::DnsError;
use crate::forward::Forwarder;
use crate::handler::ClusterHandler;
use crate::records::Records;
use crate::zone::{Zone, ZoneParams, parse_fqdn};

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// How long `shutdown` waits for in-flight work before dropping it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Tries to find a port free for both UDP and TCP when asked for port 0.
const PORT_TRIES: usize = 32;

/// How the server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where to listen, UDP and TCP on each (port 0: one free port, the same for both).
    pub listen: Vec<SocketAddr>,
    /// The zone served authoritatively, e.g. `cluster.local`. Never forwarded.
    pub cluster_domain: String,
    /// Where other names go, tried in order; none means such queries are REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// TTL of every record, and the SOA minimum (how long negative answers may be cached).
    pub ttl: u32,
}

impl Default for DnsConfig {
    /// `cluster.local`, TTL 30 s (what CoreDNS uses in Kubernetes), no listen address yet.
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            cluster_domain: "cluster.local".to_string(),
            upstreams: Vec::new(),
            ttl: 30,
        }
    }
}

/// A running DNS server. Dropping it stops the server too (its tasks are aborted); `shutdown`
/// stops it gracefully.
pub struct DnsServer {
    server: Server<ClusterHandler>,
    zone: Arc<ArcSwap<Zone>>,
    params: ZoneParams,
    serial: AtomicU32,
    addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("addrs", &self.addrs).field("zone", &self.params.origin).finish()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on every listen address and starts serving an empty zone (SOA and NS
    /// only) until the first [`DnsServer::update`]. Must run inside a tokio runtime.
    pub async fn bind(cfg: DnsConfig) -> Result<DnsServer, DnsError> {
        if cfg.listen.is_empty() {
            return Err(DnsError::NoListenAddress);
        }
        let origin = parse_fqdn(&cfg.cluster_domain).ok_or_else(|| DnsError::InvalidDomain {
            domain: cfg.cluster_domain.clone(),
            reason: "not a dns name, or the root".to_string(),
        })?;

        let mut sockets = Vec::with_capacity(cfg.listen.len());
        for &addr in &cfg.listen {
            sockets.push(bind_pair(addr).await?);
        }
        let addrs: Vec<SocketAddr> = sockets.iter().map(|(_, _, addr)| *addr).collect();

        // A resolv.conf may name this very server: forwarding to ourselves would loop.
        let upstreams: Vec<SocketAddr> =
            cfg.upstreams.iter().copied().filter(|u| !addrs.contains(u)).collect();
        let ns_addrs: Vec<Ipv4Addr> = addrs
            .iter()
            .filter_map(|a| match a.ip() {
                IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
                _ => None,
            })
            .collect();
        let params = ZoneParams { origin, ttl: cfg.ttl, serial: 1, ns_addrs };
        let zone = Arc::new(ArcSwap::from_pointee(Zone::build(&params, &Records::new())));
        let handler =
            ClusterHandler { zone: Arc::clone(&zone), forwarder: Arc::new(Forwarder::new(upstreams)) };

        let mut server = Server::new(handler);
        for (udp, tcp, _) in sockets {
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        }
        Ok(DnsServer { server, zone, params, serial: AtomicU32::new(1), addrs })
    }

    /// The addresses actually bound (UDP and TCP share each), in `listen` order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Replaces every record at once. Queries in flight finish on the old zone; the next ones
    /// see only the new one. The SOA serial goes up by one.
    pub fn update(&self, records: Records) {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let params = ZoneParams { serial, ..self.params.clone() };
        self.zone.store(Arc::new(Zone::build(&params, &records)));
    }

    /// Stops accepting queries and waits (bounded) for the ones in flight.
    pub async fn shutdown(mut self) {
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server.shutdown_gracefully()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "dns: server stopped with an error"),
            Err(_) => tracing::warn!("dns: shutdown took longer than {SHUTDOWN_GRACE:?}; tasks aborted"),
        }
    }
}

/// A UDP socket and a TCP listener on the same address and port.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let udp_err = |source| DnsError::Bind { protocol: "udp", addr, source };
    let tcp_err = |source| DnsError::Bind { protocol: "tcp", addr, source };
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let tcp = TcpListener::bind(addr).await.map_err(tcp_err)?;
        return Ok((udp, tcp, addr));
    }
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no port free for both udp and tcp");
    for _ in 0..PORT_TRIES {
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let bound = udp.local_addr().map_err(udp_err)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last = error,
            Err(error) => return Err(tcp_err(error)),
        }
    }
    Err(tcp_err(last))
}
