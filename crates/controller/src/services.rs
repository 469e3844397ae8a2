//! Service addresses, as a plan: which virtual IP and node ports each Service holds, and which
//! listeners (address → ready backends) the local engine's userspace forwarder should serve.
//! Pure: the engine lists Services and EndpointSlices, calls [`plan`], records the
//! [`Allocation`]s in the store and hands [`ServicesPlan::listeners`] to its forwarder.
//!
//! - Every Service that is not headless (`clusterIP` unset or an address, not `None`) and not
//!   `ExternalName` gets a virtual IP from the service range (the top of the pod CIDR that the
//!   node's IPAM never gives to pods). One it holds stays (the first in name order wins a
//!   conflict); a new one is the first free address probing from a hash of `<ns>/<name>`, so a
//!   Service re-created under the same name usually gets the same address.
//! - `NodePort` and `LoadBalancer` Services get a `nodePort` per port from 30000-32767 when unset
//!   (same rule), and a `LoadBalancer` gets `status.loadBalancer.ingress = [{ip: 127.0.0.1}]`.
//! - A listener per TCP port on `VIP:port`, and for node ports on `127.0.0.1:nodePort`, to the
//!   ready IPv4 endpoints of the Service's EndpointSlices with the port's target.
//!
//! Architecture invariant: listeners are only on addresses in the service range and on
//! 127.0.0.1; backends only come from EndpointSlices.

use crate::hash::fnv1a_32;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

/// The node ports Kubernetes hands out by default.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

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
    fnv1a_32(&[text.as_bytes()])
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
        let label = s.metadata.labels.as_ref().and_then(|l| l.get(crate::endpoints::LABEL_SERVICE_NAME));
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

/// What should be served: listen address → (service `<ns>/<name>`, backends).
pub type Listeners = BTreeMap<SocketAddr, (String, Vec<SocketAddr>)>;

/// What one Service should hold; the engine writes what differs from the stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub namespace: String,
    pub name: String,
    /// For `spec.clusterIP` and `spec.clusterIPs` (None: the allocation failed, keep what is there).
    pub cluster_ip: Option<Ipv4Addr>,
    /// `spec.ports[i].nodePort`, by port index.
    pub node_ports: BTreeMap<usize, u16>,
    /// A LoadBalancer: `status.loadBalancer.ingress` is `[{ip: 127.0.0.1}]`.
    pub loopback_ingress: bool,
}

/// The addresses every Service holds and the listeners they imply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicesPlan {
    pub allocations: Vec<Allocation>,
    pub listeners: Listeners,
    /// Services that got no address or port, and why.
    pub problems: Vec<ServicesError>,
}

/// Plans the addresses of `services` (those not being deleted) in `range`, and the listeners
/// they imply given `slices`. The listeners use the planned addresses, so one pass suffices.
pub fn plan(services: &[Service], slices: &[EndpointSlice], range: Ipv4Net) -> ServicesPlan {
    let with_ip: Vec<&Service> = services.iter().filter(|s| wants_ip(s)).collect();
    let id = |s: &Service| {
        format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or("")
        )
    };
    let claims: Vec<IpClaim> = with_ip
        .iter()
        .map(|s| IpClaim {
            service: id(s),
            current: s.spec.as_ref().and_then(|sp| sp.cluster_ip.as_deref()).and_then(|ip| ip.parse().ok()),
        })
        .collect();
    let ips = assign_ips(range, &claims);
    let mut port_claims = Vec::new();
    for s in with_ip.iter().filter(|s| wants_node_ports(s)) {
        let ports = s.spec.as_ref().and_then(|sp| sp.ports.as_deref()).unwrap_or_default();
        for (i, p) in ports.iter().enumerate() {
            port_claims.push((id(s), i, p.node_port));
        }
    }
    let node_ports = assign_node_ports(&port_claims);
    let mut out = ServicesPlan::default();
    for svc in with_ip {
        let name = id(svc);
        let cluster_ip = match ips.get(&name) {
            Some(Ok(ip)) => Some(*ip),
            Some(Err(e)) => {
                out.problems.push(e.clone());
                None
            }
            None => None,
        };
        let ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
        let mut allocated = BTreeMap::new();
        if wants_node_ports(svc) {
            for i in 0..ports.len() {
                match node_ports.get(&(name.clone(), i)) {
                    Some(Ok(port)) => {
                        allocated.insert(i, *port);
                    }
                    Some(Err(e)) => out.problems.push(e.clone()),
                    None => {}
                }
            }
        }
        let vip = cluster_ip.filter(|ip| range.contains(ip));
        for (i, port) in ports.iter().enumerate() {
            if !is_tcp(port) {
                continue;
            }
            let to = backends(svc, port, slices);
            if let (Some(vip), Ok(p)) = (vip, u16::try_from(port.port)) {
                out.listeners.insert(SocketAddr::from((vip, p)), (name.clone(), to.clone()));
            }
            if let Some(np) = allocated.get(&i) {
                out.listeners.insert(SocketAddr::from((Ipv4Addr::LOCALHOST, *np)), (name.clone(), to));
            }
        }
        out.allocations.push(Allocation {
            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
            name: svc.metadata.name.clone().unwrap_or_default(),
            cluster_ip,
            node_ports: allocated,
            loopback_ingress: svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn headless_and_external_names_get_no_address() {
        assert!(!wants_ip(&service(json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}))));
        assert!(!wants_ip(&service(json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName"}}))));
        assert!(wants_ip(&service(json!({"metadata": {"name": "c"}, "spec": {}}))));
    }

    #[test]
    fn a_plan_allocates_and_listens_on_what_it_allocates() {
        let web = service(json!({"metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}));
        let db = service(json!({"metadata": {"name": "db", "namespace": "ns"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}));
        let slices = vec![slice(
            "web-a",
            "web",
            json!([{"name": "http", "port": 8080}]),
            json!([{"addresses": ["10.244.0.7"]}]),
        )];
        let planned = plan(&[web.clone(), db], &slices, range());
        assert!(planned.problems.is_empty(), "{:?}", planned.problems);
        assert_eq!(planned.allocations.len(), 1, "the headless service gets nothing");
        let a = &planned.allocations[0];
        let ip = a.cluster_ip.expect("a virtual IP");
        assert!(range().contains(&ip) && a.loopback_ingress);
        assert_eq!(a.node_ports.len(), 2, "every port gets a node port, TCP or not");
        let backend: SocketAddr = "10.244.0.7:8080".parse().expect("addr");
        let want: Listeners = BTreeMap::from([
            (SocketAddr::from((ip, 80)), ("ns/web".to_string(), vec![backend])),
            (
                SocketAddr::from((Ipv4Addr::LOCALHOST, a.node_ports[&0])),
                ("ns/web".to_string(), vec![backend]),
            ),
        ]);
        assert_eq!(planned.listeners, want, "UDP gets no listener");
        // Recorded, the same addresses come back: the plan is stable.
        let mut recorded = web;
        let spec = recorded.spec.as_mut().expect("spec");
        spec.cluster_ip = Some(ip.to_string());
        for (i, p) in spec.ports.as_mut().expect("ports").iter_mut().enumerate() {
            p.node_port = Some(i32::from(a.node_ports[&i]));
        }
        assert_eq!(plan(&[recorded], &slices, range()), planned);
    }
}
