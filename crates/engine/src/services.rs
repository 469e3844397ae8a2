//! Service traffic on this machine (issue 3, item 9), as a userspace forwarder: no kernel rules
//! (nftables/iptables) are written.
//!
//! - Every Service that is not headless (`clusterIP` unset or an address, not `None`) and not
//!   `ExternalName` gets a virtual IP from the service range, the top of the pod CIDR that the
//!   node's IPAM never gives to pods ([`stead_node::ipam::service_range`]). The address is written
//!   to the Service's `spec.clusterIP`/`clusterIPs`, so it lives in the store and survives
//!   restarts; a free address is chosen by a hash of `<ns>/<name>` with linear probing, so a
//!   Service re-created under the same name usually gets the same one.
//! - `NodePort` and `LoadBalancer` Services get a `nodePort` per port from 30000-32767 when unset
//!   (same rule), and a `LoadBalancer` gets `status.loadBalancer.ingress = [{ip: 127.0.0.1}]`.
//! - Each virtual IP is a /32 on the engine's bridge (netlink), so pods (whose gateway is the
//!   bridge, and whose subnet holds the address) and the host reach it. A tokio listener on
//!   `VIP:port`, and for node ports on `127.0.0.1:nodePort`, forwards each TCP connection to one
//!   ready endpoint (round robin over the EndpointSlices' ready addresses and the port's resolved
//!   target port), with `copy_bidirectional`. A backend that refuses is skipped for the next.
//! - [`run`] reconciles all of this from the store after every change: a Service removed closes
//!   its listeners and removes its address; endpoints changing swap the backends in place.
//!
//! Limits: TCP only (UDP and SCTP ports get no listener; they are logged); the client address seen
//! by the pod is the bridge's, not the caller's; `sessionAffinity`, `externalTrafficPolicy` and
//! `internalTrafficPolicy` are ignored; established connections outlive their Service.

use crate::kinds::Kind;
use crate::store::{Store, StoreError, meta_str};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use stead_node::netlink::{Netlink, NetlinkError, NetnsRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The node ports Kubernetes hands out by default.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// How long a connection to one backend may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ServicesError {
    #[error("service {service}: the service range {range} is exhausted (all {size} addresses are taken)")]
    RangeExhausted { service: String, range: Ipv4Net, size: u32 },
    #[error("service {service}: clusterIP {ip} is outside the service range {range}")]
    OutOfRange { service: String, ip: Ipv4Addr, range: Ipv4Net },
    #[error("service {service}: clusterIP {ip} is already held by service {holder}")]
    IpTaken { service: String, ip: Ipv4Addr, holder: String },
    #[error("service {service}: node ports 30000-32767 are exhausted")]
    NodePortsExhausted { service: String },
    #[error("service {service}: nodePort {port} is already held by service {holder}")]
    NodePortTaken { service: String, port: u16, holder: String },
    #[error("service {service}: nodePort {port} is outside 30000-32767")]
    NodePortOutOfRange { service: String, port: i32 },
}

/// What the allocator knows of one Service: its `<ns>/<name>` and the address it holds, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpClaim {
    pub service: String,
    pub current: Option<Ipv4Addr>,
}

/// The usable addresses of a service range: all but the pod CIDR's broadcast address, which is
/// the range's last.
fn usable(range: Ipv4Net) -> (u32, u32) {
    let size = (1u64 << (32 - u32::from(range.prefix_len()))).saturating_sub(1);
    (u32::from(range.network()), u32::try_from(size).unwrap_or(u32::MAX))
}

/// FNV-1a: a stable starting point for probing, the same on every run.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Assigns each Service an address in `range`: one it already holds stays (the first in name
/// order wins a conflict), the others get the first free address probing from a hash of their
/// name. Pure: the same claims give the same answer.
pub fn assign_ips(range: Ipv4Net, claims: &[IpClaim]) -> BTreeMap<String, Result<Ipv4Addr, ServicesError>> {
    let (first, size) = usable(range);
    let mut sorted: Vec<&IpClaim> = claims.iter().collect();
    sorted.sort_by(|a, b| a.service.cmp(&b.service));
    let mut taken: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for c in &sorted {
        let Some(ip) = c.current else { continue };
        let n = u32::from(ip);
        let result = if !(first..first.saturating_add(size)).contains(&n) {
            Err(ServicesError::OutOfRange { service: c.service.clone(), ip, range })
        } else if let Some(holder) = taken.get(&ip) {
            Err(ServicesError::IpTaken { service: c.service.clone(), ip, holder: holder.clone() })
        } else {
            taken.insert(ip, c.service.clone());
            Ok(ip)
        };
        out.insert(c.service.clone(), result);
    }
    for c in sorted.iter().filter(|c| c.current.is_none()) {
        let start = if size == 0 { 0 } else { fnv(&c.service) % size };
        let free = (0..size)
            .map(|i| Ipv4Addr::from(first.wrapping_add((start + i) % size)))
            .find(|ip| !taken.contains_key(ip));
        let result = match free {
            Some(ip) => {
                taken.insert(ip, c.service.clone());
                Ok(ip)
            }
            None => Err(ServicesError::RangeExhausted { service: c.service.clone(), range, size }),
        };
        out.insert(c.service.clone(), result);
    }
    out
}

/// Assigns node ports: `claims` are `(service, port index, current nodePort)`; kept ones first (in
/// order), then free ports probing from a hash of `<service>/<index>`.
pub fn assign_node_ports(
    claims: &[(String, usize, Option<i32>)],
) -> BTreeMap<(String, usize), Result<u16, ServicesError>> {
    let (low, high) = (*NODE_PORTS.start(), *NODE_PORTS.end());
    let size = u32::from(high - low) + 1;
    let mut sorted: Vec<&(String, usize, Option<i32>)> = claims.iter().collect();
    sorted.sort();
    let mut taken: BTreeMap<u16, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (svc, i, current) in &sorted {
        let Some(port) = current else { continue };
        let result = match u16::try_from(*port).ok().filter(|p| NODE_PORTS.contains(p)) {
            None => Err(ServicesError::NodePortOutOfRange { service: svc.clone(), port: *port }),
            Some(p) => match taken.get(&p) {
                Some(holder) => Err(ServicesError::NodePortTaken {
                    service: svc.clone(),
                    port: p,
                    holder: holder.clone(),
                }),
                None => {
                    taken.insert(p, svc.clone());
                    Ok(p)
                }
            },
        };
        out.insert((svc.clone(), *i), result);
    }
    for (svc, i, _) in sorted.iter().filter(|c| c.2.is_none()) {
        let start = fnv(&format!("{svc}/{i}")) % size;
        let free = (0..size)
            .filter_map(|k| u16::try_from(u32::from(low) + (start + k) % size).ok())
            .find(|p| !taken.contains_key(p));
        let result = match free {
            Some(p) => {
                taken.insert(p, svc.clone());
                Ok(p)
            }
            None => Err(ServicesError::NodePortsExhausted { service: svc.clone() }),
        };
        out.insert((svc.clone(), *i), result);
    }
    out
}

/// Whether a Service gets a virtual IP: not headless, not ExternalName.
pub fn wants_ip(svc: &Service) -> bool {
    let spec = svc.spec.clone().unwrap_or_default();
    spec.type_.as_deref() != Some("ExternalName") && spec.cluster_ip.as_deref() != Some("None")
}

/// Whether a Service is published on the host's loopback.
pub fn wants_node_ports(svc: &Service) -> bool {
    matches!(svc.spec.as_ref().and_then(|s| s.type_.as_deref()), Some("NodePort" | "LoadBalancer"))
}

fn is_tcp(port: &ServicePort) -> bool {
    port.protocol.as_deref().unwrap_or("TCP") == "TCP"
}

/// The ready endpoints of one Service port: every ready IPv4 address of the Service's
/// EndpointSlices (by the `kubernetes.io/service-name` label, in its namespace) with the slice
/// port of the same name. An endpoint without a `ready` condition counts as ready, as in
/// Kubernetes. Sorted, without duplicates.
pub fn backends(svc: &Service, port: &ServicePort, slices: &[EndpointSlice]) -> Vec<SocketAddr> {
    let (Some(name), ns) = (svc.metadata.name.as_deref(), svc.metadata.namespace.as_deref()) else {
        return vec![];
    };
    let port_name = port.name.as_deref().unwrap_or("");
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    let mut out = BTreeSet::new();
    for s in slices {
        let label =
            s.metadata.labels.as_ref().and_then(|l| l.get(stead_controller::endpoints::LABEL_SERVICE_NAME));
        if s.metadata.namespace.as_deref() != ns || label.map(String::as_str) != Some(name) {
            continue;
        }
        if s.address_type != "IPv4" {
            continue;
        }
        let target = s.ports.as_deref().unwrap_or_default().iter().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name && p.protocol.as_deref().unwrap_or("TCP") == protocol
        });
        let Some(target) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
        for ep in &s.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<Ipv4Addr>() {
                    out.insert(SocketAddr::from((ip, target)));
                }
            }
        }
    }
    out.into_iter().collect()
}

/// A listener's backends, swapped in place when endpoints change, picked round robin.
#[derive(Debug, Default)]
pub struct Backends {
    addrs: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl Backends {
    pub fn new(addrs: Vec<SocketAddr>) -> Backends {
        Backends { addrs: RwLock::new(addrs), next: AtomicUsize::new(0) }
    }

    pub fn set(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut a) = self.addrs.write() {
            *a = addrs;
        }
    }

    /// The backends in the order to try them for the next connection: each call starts one
    /// further along (round robin); the rest follow as fallbacks.
    pub fn order(&self) -> Vec<SocketAddr> {
        let addrs = self.addrs.read().map(|a| a.clone()).unwrap_or_default();
        if addrs.is_empty() {
            return addrs;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % addrs.len();
        addrs[start..].iter().chain(&addrs[..start]).copied().collect()
    }
}

/// What should be served: listen address → (service, backends).
pub type Desired = BTreeMap<SocketAddr, (String, Vec<SocketAddr>)>;

/// Writes missing virtual IPs, node ports and LoadBalancer ingress to the store. Returns the
/// problems (logged by the caller); a write conflict is left to the next pass.
pub fn allocate(store: &Store, range: Ipv4Net) -> Vec<ServicesError> {
    let services: Vec<(Arc<Value>, Service)> = store
        .list(Kind::Service, None)
        .into_iter()
        .filter_map(|o| serde_json::from_value::<Service>((*o).clone()).ok().map(|s| (o, s)))
        .filter(|(o, s)| wants_ip(s) && !crate::store::is_deleting(o))
        .collect();
    let id = |o: &Value| {
        format!("{}/{}", meta_str(o, "namespace").unwrap_or(""), meta_str(o, "name").unwrap_or(""))
    };
    let claims: Vec<IpClaim> = services
        .iter()
        .map(|(o, s)| IpClaim {
            service: id(o),
            current: s.spec.as_ref().and_then(|sp| sp.cluster_ip.as_deref()).and_then(|ip| ip.parse().ok()),
        })
        .collect();
    let ips = assign_ips(range, &claims);
    let mut port_claims = Vec::new();
    for (o, s) in services.iter().filter(|(_, s)| wants_node_ports(s)) {
        let ports = s.spec.as_ref().and_then(|sp| sp.ports.as_deref()).unwrap_or_default();
        for (i, p) in ports.iter().enumerate() {
            port_claims.push((id(o), i, p.node_port));
        }
    }
    let node_ports = assign_node_ports(&port_claims);
    let mut problems = Vec::new();
    for (object, svc) in &services {
        let name = id(object);
        let mut next = (**object).clone();
        match ips.get(&name) {
            Some(Ok(ip)) => {
                next["spec"]["clusterIP"] = json!(ip.to_string());
                next["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
            Some(Err(e)) => problems.push(e.clone()),
            None => {}
        }
        if wants_node_ports(svc)
            && let Some(ports) = next["spec"]["ports"].as_array_mut()
        {
            for (i, p) in ports.iter_mut().enumerate() {
                match node_ports.get(&(name.clone(), i)) {
                    Some(Ok(port)) => p["nodePort"] = json!(port),
                    Some(Err(e)) => problems.push(e.clone()),
                    None => {}
                }
            }
        }
        if next != **object
            && let Err(e) = store.update(next)
            && !matches!(e, StoreError::Conflict { .. } | StoreError::NotFound { .. })
        {
            tracing::warn!(service = %name, error = %e, "recording the service's address failed");
        }
        let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let ingress = json!([{"ip": "127.0.0.1"}]);
        if is_lb
            && object["status"]["loadBalancer"]["ingress"] != ingress
            && let Some(current) = store.get(&crate::store::ObjectKey::new(
                Kind::Service,
                meta_str(object, "namespace").unwrap_or(""),
                meta_str(object, "name").unwrap_or(""),
            ))
        {
            let mut next = (*current).clone();
            next["status"]["loadBalancer"]["ingress"] = ingress;
            if let Err(e) = store.update_status(next) {
                tracing::debug!(service = %name, error = %e, "recording the load balancer ingress failed");
            }
        }
    }
    problems
}

/// The listeners the store's Services imply, given the service range.
pub fn desired(store: &Store, range: Ipv4Net) -> Desired {
    let slices: Vec<EndpointSlice> = store
        .list(Kind::EndpointSlice, None)
        .iter()
        .filter_map(|o| serde_json::from_value((**o).clone()).ok())
        .collect();
    let mut out = Desired::new();
    for object in store.list(Kind::Service, None) {
        if crate::store::is_deleting(&object) {
            continue;
        }
        let Ok(svc) = serde_json::from_value::<Service>((*object).clone()) else { continue };
        if !wants_ip(&svc) {
            continue;
        }
        let name = format!(
            "{}/{}",
            svc.metadata.namespace.as_deref().unwrap_or(""),
            svc.metadata.name.as_deref().unwrap_or("")
        );
        let spec = svc.spec.clone().unwrap_or_default();
        let vip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| range.contains(ip));
        for port in spec.ports.as_deref().unwrap_or_default() {
            if !is_tcp(port) {
                tracing::debug!(service = %name, port = port.port, "only TCP ports are forwarded");
                continue;
            }
            let to = backends(&svc, port, &slices);
            if let (Some(vip), Ok(p)) = (vip, u16::try_from(port.port)) {
                out.insert(SocketAddr::from((vip, p)), (name.clone(), to.clone()));
            }
            if wants_node_ports(&svc)
                && let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok())
            {
                out.insert(SocketAddr::from((Ipv4Addr::LOCALHOST, np)), (name.clone(), to));
            }
        }
    }
    out
}

struct Listener {
    backends: Arc<Backends>,
    task: JoinHandle<()>,
}

/// The forwarder's live state: listeners and the virtual IPs on the bridge.
pub struct Forwarder<N: Netlink> {
    nl: N,
    bridge: String,
    range: Ipv4Net,
    listeners: HashMap<SocketAddr, Listener>,
}

impl<N: Netlink> Forwarder<N> {
    pub fn new(nl: N, bridge: String, range: Ipv4Net) -> Forwarder<N> {
        Forwarder { nl, bridge, range, listeners: HashMap::new() }
    }

    /// The addresses listened on now.
    pub fn listening(&self) -> BTreeSet<SocketAddr> {
        self.listeners.keys().copied().collect()
    }

    /// Makes the bridge's /32s in the service range and the listeners match `want`.
    pub async fn apply(&mut self, want: &Desired) -> Result<(), NetlinkError> {
        let vips: BTreeSet<Ipv4Addr> = want
            .keys()
            .filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) if self.range.contains(&ip) => Some(ip),
                _ => None,
            })
            .collect();
        // Listeners that go, first (their address may go next).
        let gone: Vec<SocketAddr> =
            self.listeners.keys().filter(|a| !want.contains_key(a)).copied().collect();
        for addr in gone {
            if let Some(l) = self.listeners.remove(&addr) {
                l.task.abort();
                let _ = l.task.await;
                tracing::info!(listen = %addr, "service listener closed");
            }
        }
        let have: BTreeSet<Ipv4Addr> = self
            .nl
            .addresses(&NetnsRef::Host, &self.bridge)
            .await?
            .into_iter()
            .filter_map(|n| match n {
                IpNet::V4(v4) if v4.prefix_len() == 32 && self.range.contains(&v4.addr()) => Some(v4.addr()),
                _ => None,
            })
            .collect();
        for ip in have.difference(&vips) {
            self.nl.delete_address(&NetnsRef::Host, &self.bridge, host_net(*ip)).await?;
        }
        for ip in vips.difference(&have) {
            self.nl.add_address(&NetnsRef::Host, &self.bridge, host_net(*ip)).await?;
        }
        for (addr, (service, to)) in want {
            if let Some(l) = self.listeners.get(addr) {
                l.backends.set(to.clone());
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let backends = Arc::new(Backends::new(to.clone()));
                    let task = tokio::spawn(serve(listener, backends.clone(), service.clone()));
                    tracing::info!(service = %service, listen = %addr, "service listener open");
                    self.listeners.insert(*addr, Listener { backends, task });
                }
                Err(e) => tracing::warn!(service = %service, listen = %addr, error = %e, "cannot listen"),
            }
        }
        Ok(())
    }

    /// Closes every listener and removes every virtual IP.
    pub async fn close(&mut self) {
        if let Err(e) = self.apply(&Desired::new()).await {
            tracing::warn!(error = %e, "removing the service addresses failed");
        }
    }
}

fn host_net(ip: Ipv4Addr) -> IpNet {
    IpNet::V4(Ipv4Net::new(ip, 32).unwrap_or_default())
}

async fn serve(listener: TcpListener, backends: Arc<Backends>, service: String) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let order = backends.order();
        let service = service.clone();
        tokio::spawn(async move { forward(client, order, &service).await });
    }
}

async fn forward(mut client: TcpStream, order: Vec<SocketAddr>, service: &str) {
    for to in order {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
            Ok(Ok(mut upstream)) => {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(service, backend = %to, error = %e, "backend refused"),
            Err(_) => tracing::debug!(service, backend = %to, "backend did not answer"),
        }
    }
    tracing::debug!(service, "no ready backend; connection closed");
}

/// Keeps the forwarder in line with the store until `shutdown`, then closes it.
pub async fn run<N: Netlink>(store: Store, mut forwarder: Forwarder<N>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = store.watch();
    let mut last: Option<Desired> = None;
    let mut reported = BTreeSet::new();
    loop {
        for problem in allocate(&store, forwarder.range) {
            if reported.insert(problem.to_string()) {
                tracing::warn!("{problem}");
            }
        }
        let want = desired(&store, forwarder.range);
        if last.as_ref() != Some(&want) {
            match forwarder.apply(&want).await {
                // A port another process holds is tried again every few seconds.
                Ok(()) if want.keys().all(|a| forwarder.listeners.contains_key(a)) => last = Some(want),
                Ok(()) => last = None,
                Err(e) => {
                    tracing::warn!(error = %e, "service addresses");
                    last = None;
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            r = changes.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { break; }
                tokio::time::sleep(Duration::from_millis(20)).await;
                while changes.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(Duration::from_secs(5)), if last.is_none() => {}
        }
    }
    forwarder.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use stead_node::netlink::{NlCall, RecordingNetlink};

    fn range() -> Ipv4Net {
        "10.244.220.192/26".parse().expect("range")
    }

    fn claim(service: &str, current: Option<&str>) -> IpClaim {
        IpClaim { service: service.into(), current: current.map(|c| c.parse().expect("ip")) }
    }

    #[test]
    fn allocation_is_stable_unique_and_inside_the_range() {
        let claims: Vec<IpClaim> = (0..20).map(|i| claim(&format!("ns/svc-{i}"), None)).collect();
        let first = assign_ips(range(), &claims);
        assert_eq!(first, assign_ips(range(), &claims), "same claims, same answer");
        let ips: BTreeSet<Ipv4Addr> = first.values().map(|r| *r.as_ref().expect("ip")).collect();
        assert_eq!(ips.len(), 20, "no duplicates");
        for ip in &ips {
            assert!(range().contains(ip) && *ip != Ipv4Addr::new(10, 244, 220, 255), "{ip}");
        }
        // Once recorded, an address stays, whatever else comes and goes.
        let mut held: Vec<IpClaim> =
            first.iter().map(|(s, r)| claim(s, Some(&r.as_ref().expect("ip").to_string()))).collect();
        held.remove(3);
        held.push(claim("other/new", None));
        let second = assign_ips(range(), &held);
        for (s, r) in &first {
            if let Some(again) = second.get(s) {
                assert_eq!(again, r, "{s} keeps its address");
            }
        }
        assert!(second["other/new"].is_ok());
    }

    #[test]
    fn conflicts_and_exhaustion_are_clear_errors() {
        let got = assign_ips(
            range(),
            &[
                claim("a/x", Some("10.244.220.200")),
                claim("b/y", Some("10.244.220.200")),
                claim("c/z", Some("10.1.2.3")),
            ],
        );
        assert_eq!(got["a/x"], Ok(Ipv4Addr::new(10, 244, 220, 200)));
        assert_eq!(
            got["b/y"].as_ref().unwrap_err().to_string(),
            "service b/y: clusterIP 10.244.220.200 is already held by service a/x"
        );
        assert_eq!(
            got["c/z"].as_ref().unwrap_err().to_string(),
            "service c/z: clusterIP 10.1.2.3 is outside the service range 10.244.220.192/26"
        );
        // 63 usable addresses (.192-.254): the 64th service gets none.
        let claims: Vec<IpClaim> = (0..64).map(|i| claim(&format!("ns/s{i:02}"), None)).collect();
        let got = assign_ips(range(), &claims);
        let errors: Vec<String> =
            got.values().filter_map(|r| r.as_ref().err()).map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .ends_with("the service range 10.244.220.192/26 is exhausted (all 63 addresses are taken)")
        );
    }

    #[test]
    fn node_ports_are_kept_unique_and_in_range() {
        let claims = vec![
            ("a/x".to_string(), 0, Some(30080)),
            ("b/y".to_string(), 0, Some(30080)),
            ("c/z".to_string(), 0, None),
            ("c/z".to_string(), 1, None),
            ("d/w".to_string(), 0, Some(80)),
        ];
        let got = assign_node_ports(&claims);
        assert_eq!(got[&("a/x".to_string(), 0)], Ok(30080));
        assert!(matches!(
            got[&("b/y".to_string(), 0)],
            Err(ServicesError::NodePortTaken { port: 30080, .. })
        ));
        assert!(matches!(
            got[&("d/w".to_string(), 0)],
            Err(ServicesError::NodePortOutOfRange { port: 80, .. })
        ));
        let z0 = *got[&("c/z".to_string(), 0)].as_ref().expect("port");
        let z1 = *got[&("c/z".to_string(), 1)].as_ref().expect("port");
        assert!(NODE_PORTS.contains(&z0) && NODE_PORTS.contains(&z1) && z0 != z1 && z0 != 30080);
        assert_eq!(got, assign_node_ports(&claims));
    }

    fn service(yaml: serde_json::Value) -> Service {
        serde_json::from_value(yaml).expect("service")
    }

    fn slice(name: &str, svc: &str, ports: serde_json::Value, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints,
        }))
        .expect("slice")
    }

    #[test]
    fn backends_are_the_ready_addresses_with_the_named_ports_target() {
        let svc = service(json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}}));
        let ports =
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "admin", "port": 9001}]);
        let slices = vec![
            slice(
                "web-a",
                "web",
                ports.clone(),
                json!([
                    {"addresses": ["10.244.220.3"], "conditions": {"ready": true}},
                    {"addresses": ["10.244.220.4"], "conditions": {"ready": false}},
                    {"addresses": ["10.244.220.2"]},
                ]),
            ),
            slice("other", "db", ports, json!([{"addresses": ["10.244.220.9"]}])),
        ];
        let spec_ports = svc.spec.clone().and_then(|s| s.ports).expect("ports");
        let http = backends(&svc, &spec_ports[0], &slices);
        assert_eq!(
            http,
            vec!["10.244.220.2:8080".parse().expect("a"), "10.244.220.3:8080".parse().expect("a")]
        );
        let admin = backends(&svc, &spec_ports[1], &slices);
        assert_eq!(
            admin,
            vec!["10.244.220.2:9001".parse().expect("a"), "10.244.220.3:9001".parse().expect("a")]
        );
    }

    #[test]
    fn round_robin_starts_one_further_each_time_and_falls_back() {
        let a: SocketAddr = "10.0.0.1:1".parse().expect("a");
        let b: SocketAddr = "10.0.0.2:1".parse().expect("b");
        let c: SocketAddr = "10.0.0.3:1".parse().expect("c");
        let backends = Backends::new(vec![a, b, c]);
        assert_eq!(backends.order(), vec![a, b, c]);
        assert_eq!(backends.order(), vec![b, c, a]);
        assert_eq!(backends.order(), vec![c, a, b]);
        backends.set(vec![]);
        assert!(backends.order().is_empty());
    }

    #[test]
    fn headless_and_external_names_get_no_address() {
        assert!(!wants_ip(&service(json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}))));
        assert!(!wants_ip(&service(json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName"}}))));
        assert!(wants_ip(&service(json!({"metadata": {"name": "c"}, "spec": {}}))));
    }

    #[tokio::test]
    async fn allocation_is_recorded_in_the_store_and_addresses_follow_services() {
        let store = Store::in_memory();
        store
            .create(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            )
            .expect("create");
        store
            .create(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "ns"},
                "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
            )
            .expect("create");
        assert!(allocate(&store, range()).is_empty());
        let key = crate::store::ObjectKey::new(Kind::Service, "ns", "web");
        let web = store.get(&key).expect("web");
        let ip: Ipv4Addr = web["spec"]["clusterIP"].as_str().expect("clusterIP").parse().expect("ip");
        assert!(range().contains(&ip));
        assert_eq!(web["spec"]["clusterIPs"], json!([ip.to_string()]));
        let node_port = web["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort");
        assert!((30000..=32767).contains(&node_port));
        assert_eq!(web["status"]["loadBalancer"]["ingress"], json!([{"ip": "127.0.0.1"}]));
        let db = store.get(&crate::store::ObjectKey::new(Kind::Service, "ns", "db")).expect("db");
        assert_eq!(db["spec"]["clusterIP"], "None");
        // A second pass changes nothing.
        let rv = store.resource_version();
        assert!(allocate(&store, range()).is_empty());
        assert_eq!(store.resource_version(), rv);

        // Listeners on the VIP would need the address; here only the bridge addresses are checked,
        // with listeners on loopback ports standing in.
        let want = desired(&store, range());
        let vip = SocketAddr::from((ip, 80));
        let np = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(node_port).expect("port")));
        assert_eq!(want.keys().copied().collect::<Vec<_>>(), {
            let mut v = vec![vip, np];
            v.sort();
            v
        });
        let nl = RecordingNetlink::default();
        let mut fwd = Forwarder::new(nl, "br".into(), range());
        let only_addresses: Desired =
            want.iter().filter(|(a, _)| *a == &vip).map(|(a, v)| (*a, v.clone())).collect();
        // The VIP itself cannot be bound without the real address: bind failure is logged, not fatal.
        fwd.apply(&only_addresses).await.expect("apply");
        let calls = fwd.nl.calls();
        assert!(calls.contains(&NlCall::AddAddress(NetnsRef::Host, "br".into(), host_net(ip))), "{calls:?}");
        fwd.close().await;
        assert!(fwd.nl.calls().contains(&NlCall::DeleteAddress(NetnsRef::Host, "br".into(), host_net(ip))));
        assert!(fwd.listening().is_empty());
    }
}
