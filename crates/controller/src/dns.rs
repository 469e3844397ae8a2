//! The DNS records a Service implies (the Kubernetes DNS specification), as plain data for the
//! DNS server: names are lower case, fully qualified, without the trailing dot.
//!
//! - `<svc>.<ns>.svc.<zone>` A: the cluster IP when the Service has one (the local engine assigns
//!   one to every non-headless Service that its service range has room for); otherwise (headless,
//!   or not assigned yet) every ready endpoint's IPv4 address.
//! - Headless only: `<hostname>.<svc>.<ns>.svc.<zone>` A per ready endpoint with a hostname, and
//!   `<a-b-c-d>.<svc>.<ns>.svc.<zone>` for one without.
//! - SRV per named port: `_<port>._<proto>.<svc>.<ns>.svc.<zone>`; targets the service name and
//!   port for a Service with a cluster IP, else each ready endpoint's own name and port.
//! - Readiness is the slice's `ready` condition, in which `publishNotReadyAddresses` already
//!   counts. IPv6 endpoints and ExternalName Services are not represented.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct SrvRecord {
    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`
    pub name: String,
    pub priority: u16,
    /// 100 split evenly over the answers of one name.
    pub weight: u16,
    pub port: u16,
    /// A name that has an A record in the same set.
    pub target: String,
}

/// Every record one Service implies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServiceRecords {
    /// (fqdn, address), sorted, without duplicates.
    pub a: Vec<(String, Ipv4Addr)>,
    /// Sorted, without duplicates.
    pub srv: Vec<SrvRecord>,
}

/// The records for `svc` from its EndpointSlices (only slices labelled with its name count).
pub fn service_records(svc: &Service, slices: &[EndpointSlice], zone: &str) -> ServiceRecords {
    let (Some(name), Some(ns)) = (svc.metadata.name.as_deref(), svc.metadata.namespace.as_deref()) else {
        return ServiceRecords::default();
    };
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return ServiceRecords::default();
    }
    let zone = zone.trim_end_matches('.');
    let base = format!("{name}.{ns}.svc.{zone}").to_lowercase();
    let cluster_ip: Option<Ipv4Addr> = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
    let mut out = ServiceRecords::default();
    let ports = spec.ports.clone().unwrap_or_default();
    let srv_name = |port: &str, proto: &str| format!("_{port}._{proto}.{base}").to_lowercase();

    if let Some(ip) = cluster_ip {
        out.a.push((base.clone(), ip));
        for p in ports.iter().filter(|p| p.name.as_deref().is_some_and(|n| !n.is_empty())) {
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            out.srv.push(SrvRecord {
                name: srv_name(p.name.as_deref().unwrap_or(""), &proto),
                priority: 0,
                weight: 100,
                port: u16::try_from(p.port).unwrap_or(0),
                target: base.clone(),
            });
        }
    } else {
        let mine = slices.iter().filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::endpoints::LABEL_SERVICE_NAME))
                    .map(String::as_str)
                    == Some(name)
                && s.address_type == "IPv4"
        });
        for s in mine {
            for ep in &s.endpoints {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<Ipv4Addr>() else { continue };
                    out.a.push((base.clone(), ip));
                    let host = ep.hostname.clone().unwrap_or_else(|| addr.replace('.', "-"));
                    let own = format!("{host}.{base}").to_lowercase();
                    out.a.push((own.clone(), ip));
                    for p in s.ports.as_deref().unwrap_or_default() {
                        let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) else { continue };
                        let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
                        out.srv.push(SrvRecord {
                            name: srv_name(pname, &proto),
                            priority: 0,
                            weight: 0,
                            port: p.port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0),
                            target: own.clone(),
                        });
                    }
                }
            }
        }
    }
    out.a.sort();
    out.a.dedup();
    out.srv.sort();
    out.srv.dedup();
    // Weights: 100 split over each name's answers.
    let names: Vec<String> = out.srv.iter().map(|r| r.name.clone()).collect();
    for r in &mut out.srv {
        let n = names.iter().filter(|x| **x == r.name).count().max(1);
        r.weight = u16::try_from(100 / n).unwrap_or(1).max(1);
    }
    out
}
