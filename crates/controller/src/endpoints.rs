//! Endpoints for a Service: the EndpointSlices (discovery.k8s.io/v1) and the legacy Endpoints
//! object Kubernetes' controllers would write, and a plan that brings stored slices in line.
//!
//! Rules (`pkg/controller/endpointslice`, `pkg/controller/endpoint`):
//! - Only Services with a selector get managed endpoints; pods must be in the Service's
//!   namespace, match the selector, have an IP and not be Failed or Succeeded.
//! - Slice conditions: `serving` = pod Ready (or publishNotReadyAddresses); `ready` = serving and
//!   not terminating (or publishNotReadyAddresses); `terminating` = deletionTimestamp set.
//! - `hostname` is the pod's `spec.hostname` when its `spec.subdomain` is the Service's name.
//! - Ports: each Service port's `targetPort` (a number, or a container port name looked up in
//!   the pod with the same protocol; unset means `port`). A pod lacking a named port is listed
//!   without that port, so pods are grouped into slices by their resolved port set, at most
//!   100 endpoints a slice, one address type (IPv4 or IPv6) a slice.
//! - Endpoints (v1) leaves terminating pods out unless publishNotReadyAddresses, and puts pods
//!   that are not Ready in `notReadyAddresses`.
//!
//! Slice names are `<service>-<5 chars>` derived from the service, address type, port set and
//! chunk index (Kubernetes uses `generateName`; deterministic names keep this pure and keep a
//! slice's name while its port set stays the same).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::hash::fnv1a_32;
use crate::meta::{controller_ref, map_selector_matches};
use crate::plan::Action;
use crate::pods;

/// `kubernetes.io/service-name`.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The managed-by value of Kubernetes' EndpointSlice controller.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// `service.kubernetes.io/headless`: present (empty) on endpoints of a headless Service.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Kubernetes' default `maxEndpointsPerSlice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// A pod's resolved ports: (name, port, protocol) per Service port it has.
type PortKey = Vec<(String, i32, String)>;
/// Ports and endpoints of one slice group.
type SliceGroup = (Vec<EndpointPort>, Vec<Endpoint>);
/// Ports, ready and not-ready addresses of one subset.
type SubsetGroup = (Vec<CorePort>, Vec<EndpointAddress>, Vec<EndpointAddress>);

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

fn svc_ports(svc: &Service) -> &[ServicePort] {
    svc.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default()
}

/// `podutil.FindPort`: the container port a Service port targets on this pod.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(i)) => Some(*i),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.as_deref().unwrap_or_default())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
        }
    }
}

/// The pods that back a Service, in name order.
fn backing_pods<'a>(svc: &Service, all: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else { return vec![] };
    let ns = svc.metadata.namespace.as_deref();
    let mut out: Vec<&Pod> = all
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| map_selector_matches(selector, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .filter(|p| !pods::is_failed(p) && !pods::is_succeeded(p))
        .filter(|p| pod_ip(p).is_some())
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

fn pod_ip(p: &Pod) -> Option<IpAddr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn hostname_for(svc: &Service, p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && p.metadata.namespace == svc.metadata.namespace)
        .then(|| host.to_string())
}

fn target_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        l.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        l.remove(LABEL_HEADLESS);
    }
    l
}

fn slice_name(svc: &str, key: &str, chunk: usize) -> String {
    let mut h = fnv1a_32(&[svc.as_bytes(), b"/", key.as_bytes(), b"/", chunk.to_string().as_bytes()]);
    let mut s = String::with_capacity(5);
    for _ in 0..5 {
        s.push(char::from(SAFE[(h % 27) as usize]));
        h /= 27;
    }
    format!("{svc}-{s}")
}

/// The EndpointSlices Kubernetes would keep for `svc` given `pods` (every pod in the
/// namespace is fine: the selector picks). Empty for a Service without a selector.
pub fn endpoint_slices(svc: &Service, pods: &[Pod]) -> Vec<EndpointSlice> {
    let Some(svc_name) = svc.metadata.name.as_deref() else { return vec![] };
    if svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none() {
        return vec![];
    }
    let publish = publish_not_ready(svc);
    // (address type, ports) -> endpoints
    let mut groups: BTreeMap<(String, PortKey), SliceGroup> = BTreeMap::new();
    for p in backing_pods(svc, pods) {
        let Some(ip) = pod_ip(p) else { continue };
        let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        let mut ports = Vec::new();
        let mut key = Vec::new();
        for sp in svc_ports(svc) {
            let Some(port) = find_port(p, sp) else { continue };
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            key.push((sp.name.clone().unwrap_or_default(), port, protocol.clone()));
            ports.push(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: sp.app_protocol.clone(),
            });
        }
        let ready_pod = pods::is_ready(p);
        let terminating = pods::is_terminating(p);
        let serving = publish || ready_pod;
        let ready = publish || (ready_pod && !terminating);
        let ep = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname_for(svc, p),
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(p)),
            ..Endpoint::default()
        };
        groups.entry((address_type.to_string(), key)).or_insert_with(|| (ports, vec![])).1.push(ep);
    }
    let mut out = Vec::new();
    for ((address_type, key), (ports, endpoints)) in groups {
        let key_text = format!("{address_type}:{key:?}");
        for (chunk, eps) in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let mut labels = labels_for(svc);
            labels.insert(LABEL_SERVICE_NAME.into(), svc_name.to_string());
            labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
            let mut owner = controller_ref("v1", "Service", &svc.metadata);
            owner.block_owner_deletion = Some(true);
            out.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name(svc_name, &key_text, chunk)),
                    generate_name: Some(format!("{svc_name}-")),
                    namespace: svc.metadata.namespace.clone(),
                    labels: Some(labels),
                    owner_references: Some(vec![owner]),
                    ..ObjectMeta::default()
                },
                address_type: address_type.clone(),
                endpoints: eps.to_vec(),
                ports: Some(ports.clone()),
            });
        }
    }
    out
}

/// Bring the stored slices of `svc` (those labelled with its name and managed by the
/// EndpointSlice controller, from `existing`) in line with [`endpoint_slices`].
pub fn plan(svc: &Service, pods: &[Pod], existing: &[EndpointSlice]) -> Vec<Action> {
    let want = endpoint_slices(svc, pods);
    let svc_name = svc.metadata.name.as_deref().unwrap_or("");
    let ours: Vec<&EndpointSlice> = existing
        .iter()
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(LABEL_SERVICE_NAME)).map(String::as_str) == Some(svc_name)
                && l.and_then(|l| l.get(LABEL_MANAGED_BY)).map(String::as_str) == Some(MANAGED_BY)
                && s.metadata.namespace == svc.metadata.namespace
        })
        .collect();
    let mut actions = Vec::new();
    for w in &want {
        match ours.iter().find(|s| s.metadata.name == w.metadata.name) {
            None => actions.push(Action::CreateEndpointSlice(w.clone())),
            Some(s) => {
                let same = s.endpoints == w.endpoints
                    && s.ports == w.ports
                    && s.address_type == w.address_type
                    && s.metadata.labels == w.metadata.labels;
                if !same {
                    let mut updated = w.clone();
                    updated.metadata.uid = s.metadata.uid.clone();
                    updated.metadata.resource_version = s.metadata.resource_version.clone();
                    actions.push(Action::UpdateEndpointSlice(updated));
                }
            }
        }
    }
    for s in ours {
        if !want.iter().any(|w| w.metadata.name == s.metadata.name) {
            actions.push(Action::DeleteEndpointSlice { name: s.metadata.name.clone().unwrap_or_default() });
        }
    }
    actions
}

/// The Endpoints (v1) object the endpoints controller would write, or None for a Service
/// without a selector.
pub fn endpoints(svc: &Service, pods: &[Pod]) -> Option<Endpoints> {
    svc.spec.as_ref()?.selector.as_ref()?;
    let publish = publish_not_ready(svc);
    let mut subsets: BTreeMap<PortKey, SubsetGroup> = BTreeMap::new();
    for p in backing_pods(svc, pods) {
        if pods::is_terminating(p) && !publish {
            continue;
        }
        let Some(ip) = pod_ip(p) else { continue };
        let mut ports = Vec::new();
        let mut key = Vec::new();
        for sp in svc_ports(svc) {
            let Some(port) = find_port(p, sp) else { continue };
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            key.push((sp.name.clone().unwrap_or_default(), port, protocol.clone()));
            ports.push(CorePort {
                name: sp.name.clone(),
                port,
                protocol: Some(protocol),
                app_protocol: sp.app_protocol.clone(),
            });
        }
        let addr = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname_for(svc, p),
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(p)),
        };
        let entry = subsets.entry(key).or_insert_with(|| (ports, vec![], vec![]));
        if publish || pods::is_ready(p) {
            entry.1.push(addr);
        } else {
            entry.2.push(addr);
        }
    }
    let subsets: Vec<EndpointSubset> = subsets
        .into_values()
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        })
        .collect();
    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels_for(svc)),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}
