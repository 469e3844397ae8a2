//! Service traffic on this machine, as a userspace forwarder: no kernel rules (nftables/iptables)
//! are written. Which addresses each Service holds and what is listened on is planned, purely, by
//! [`stead_controller::services`] (virtual IPs from the service range, node ports, a
//! LoadBalancer's `127.0.0.1` ingress, listeners to ready endpoints); this module records the
//! addresses in the store and serves the listeners.
//!
//! - Each virtual IP is a /32 on the engine's bridge (netlink), so pods (whose gateway is the
//!   bridge, and whose subnet holds the address) and the host reach it. A tokio listener on
//!   `VIP:port`, and for node ports on `127.0.0.1:nodePort`, forwards each TCP connection to one
//!   ready endpoint (round robin), with `copy_bidirectional`. A backend that refuses is skipped for
//!   the next.
//! - [`run`] reconciles all of this from the store after every change: a Service removed closes
//!   its listeners and removes its address; endpoints changing swap the backends in place.
//!
//! Limits: TCP only (UDP and SCTP ports get no listener); the client address seen by the pod is
//! the bridge's, not the caller's; `sessionAffinity`, `externalTrafficPolicy` and
//! `internalTrafficPolicy` are ignored; established connections outlive their Service.

use crate::kinds::Kind;
use crate::store::{ObjectKey, Store, StoreError};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
pub use stead_controller::services::{
    Allocation, Listeners, NODE_PORTS, ServicesError, ServicesPlan, backends, plan, wants_ip,
    wants_node_ports,
};
use stead_node::netlink::{Netlink, NetlinkError, NetnsRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a connection to one backend may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The Services to plan for: every one not being deleted.
fn services(store: &Store) -> Vec<(Arc<Value>, Service)> {
    store
        .list(Kind::Service, None)
        .into_iter()
        .filter(|o| !crate::store::is_deleting(o))
        .filter_map(|o| serde_json::from_value::<Service>((*o).clone()).ok().map(|s| (o, s)))
        .collect()
}

/// Plans the Services' addresses and listeners from the store ([`stead_controller::services`])
/// and records the addresses: `clusterIP`/`clusterIPs`, node ports and a LoadBalancer's
/// ingress. A write conflict is left to the next pass.
pub fn reconcile(store: &Store, range: Ipv4Net) -> ServicesPlan {
    let services = services(store);
    let typed: Vec<Service> = services.iter().map(|(_, s)| s.clone()).collect();
    let slices: Vec<EndpointSlice> = store
        .list(Kind::EndpointSlice, None)
        .iter()
        .filter_map(|o| serde_json::from_value((**o).clone()).ok())
        .collect();
    let planned = plan(&typed, &slices, range);
    for a in &planned.allocations {
        let key = ObjectKey::new(Kind::Service, &a.namespace, &a.name);
        let Some((object, _)) = services.iter().find(|(o, _)| ObjectKey::of(o).is_ok_and(|k| k == key))
        else {
            continue;
        };
        record(store, object, a);
    }
    planned
}

fn record(store: &Store, object: &Value, a: &Allocation) {
    let service = format!("{}/{}", a.namespace, a.name);
    let mut next = object.clone();
    if let Some(ip) = a.cluster_ip {
        next["spec"]["clusterIP"] = json!(ip.to_string());
        next["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }
    if let Some(ports) = next["spec"]["ports"].as_array_mut() {
        for (i, port) in &a.node_ports {
            if let Some(p) = ports.get_mut(*i) {
                p["nodePort"] = json!(port);
            }
        }
    }
    if next != *object
        && let Err(e) = store.update(next)
        && !matches!(e, StoreError::Conflict { .. } | StoreError::NotFound { .. })
    {
        tracing::warn!(%service, error = %e, "recording the service's address failed");
    }
    let ingress = json!([{"ip": "127.0.0.1"}]);
    if a.loopback_ingress
        && object["status"]["loadBalancer"]["ingress"] != ingress
        && let Some(current) = store.get(&ObjectKey::new(Kind::Service, &a.namespace, &a.name))
    {
        let mut next = (*current).clone();
        next["status"]["loadBalancer"]["ingress"] = ingress;
        if let Err(e) = store.update_status(next) {
            tracing::debug!(%service, error = %e, "recording the load balancer ingress failed");
        }
    }
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
    pub async fn apply(&mut self, want: &Listeners) -> Result<(), NetlinkError> {
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
        if let Err(e) = self.apply(&Listeners::new()).await {
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
    let mut last: Option<Listeners> = None;
    let mut reported = BTreeSet::new();
    loop {
        let planned = reconcile(&store, forwarder.range);
        for problem in &planned.problems {
            if reported.insert(problem.to_string()) {
                tracing::warn!("{problem}");
            }
        }
        let want = planned.listeners;
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
        assert!(reconcile(&store, range()).problems.is_empty());
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
        assert!(reconcile(&store, range()).problems.is_empty());
        assert_eq!(store.resource_version(), rv);

        // Listeners on the VIP would need the address; here only the bridge addresses are checked,
        // with listeners on loopback ports standing in.
        let want = reconcile(&store, range()).listeners;
        let vip = SocketAddr::from((ip, 80));
        let np = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(node_port).expect("port")));
        assert_eq!(want.keys().copied().collect::<Vec<_>>(), {
            let mut v = vec![vip, np];
            v.sort();
            v
        });
        let nl = RecordingNetlink::default();
        let mut fwd = Forwarder::new(nl, "br".into(), range());
        let only_addresses: Listeners =
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
