//! Endpoints, EndpointSlices and DNS records: one rule per case.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use stead_controller::dns::{SrvRecord, service_records};
use stead_controller::endpoints::{
    self, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, endpoint_slices,
};
use stead_controller::plan::Action;

fn svc(cluster_ip: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-svc".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(vec![ServicePort {
                name: Some("peer".into()),
                port: 80,
                target_port: Some(IntOrString::String("peer".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            hostname: Some(name.into()),
            subdomain: Some("web".into()),
            containers: vec![Container {
                name: "app".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("peer".into()),
                    container_port: 12345,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_800_000_000).unwrap()));
    p
}

fn conditions(s: &EndpointSlice) -> Vec<(String, bool, bool, bool)> {
    s.endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (e.addresses[0].clone(), c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        })
        .collect()
}

#[test]
fn slice_conditions_follow_readiness_and_termination() {
    let pods = [
        pod("web-0", "10.244.0.2", true),
        pod("web-1", "10.244.0.3", false),
        terminating(pod("web-2", "10.244.0.4", true)),
    ];
    let slices = endpoint_slices(&svc("None"), &pods);
    assert_eq!(slices.len(), 1);
    assert_eq!(
        conditions(&slices[0]),
        [
            ("10.244.0.2".into(), true, true, false),
            ("10.244.0.3".into(), false, false, false),
            ("10.244.0.4".into(), false, true, true),
        ]
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_endpoint_ready() {
    let mut s = svc("None");
    s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let pods = [pod("web-0", "10.244.0.2", false), terminating(pod("web-1", "10.244.0.3", false))];
    let slices = endpoint_slices(&s, &pods);
    assert!(conditions(&slices[0]).iter().all(|c| c.1 && c.2));
}

#[test]
fn slice_metadata_ports_and_hostnames() {
    let slices = endpoint_slices(&svc("None"), &[pod("web-0", "10.244.0.2", true)]);
    let s = &slices[0];
    let l = s.metadata.labels.as_ref().unwrap();
    assert_eq!(l[LABEL_SERVICE_NAME], "web");
    assert_eq!(l[LABEL_MANAGED_BY], "endpointslice-controller.k8s.io");
    assert_eq!(l[LABEL_HEADLESS], "");
    assert!(s.metadata.name.as_ref().unwrap().starts_with("web-"));
    assert_eq!(s.address_type, "IPv4");
    let port = &s.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("peer"), Some(12345), Some("TCP"))
    );
    assert_eq!(s.endpoints[0].hostname.as_deref(), Some("web-0"));
    assert_eq!(s.endpoints[0].target_ref.as_ref().unwrap().name.as_deref(), Some("web-0"));
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("Service", Some(true), Some(true))
    );
}

#[test]
fn hostname_only_when_subdomain_names_the_service() {
    let mut p = pod("web-0", "10.244.0.2", true);
    p.spec.as_mut().unwrap().subdomain = Some("other".into());
    let slices = endpoint_slices(&svc("None"), &[p]);
    assert_eq!(slices[0].endpoints[0].hostname, None);
}

#[test]
fn pods_that_do_not_back_the_service_are_left_out() {
    let mut other_ns = pod("a", "10.244.0.5", true);
    other_ns.metadata.namespace = Some("other".into());
    let mut no_ip = pod("b", "10.244.0.6", true);
    no_ip.status.as_mut().unwrap().pod_ip = None;
    let mut failed = pod("c", "10.244.0.7", true);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let mut unlabelled = pod("d", "10.244.0.8", true);
    unlabelled.metadata.labels = None;
    assert!(endpoint_slices(&svc("None"), &[other_ns, no_ip, failed, unlabelled]).is_empty());
}

#[test]
fn a_service_without_selector_has_no_managed_endpoints() {
    let mut s = svc("None");
    s.spec.as_mut().unwrap().selector = None;
    assert!(endpoint_slices(&s, &[pod("web-0", "10.244.0.2", true)]).is_empty());
    assert!(endpoints::endpoints(&s, &[]).is_none());
}

#[test]
fn pods_lacking_a_named_port_go_to_their_own_slice() {
    let mut bare = pod("web-1", "10.244.0.3", true);
    bare.spec.as_mut().unwrap().containers[0].ports = None;
    let slices = endpoint_slices(&svc("None"), &[pod("web-0", "10.244.0.2", true), bare]);
    assert_eq!(slices.len(), 2);
    let port_counts: Vec<usize> = slices.iter().map(|s| s.ports.as_ref().unwrap().len()).collect();
    assert_eq!(port_counts, [0, 1]);
}

#[test]
fn numeric_and_missing_target_ports() {
    let mut s = svc("10.96.0.10");
    let ports = s.spec.as_mut().unwrap().ports.as_mut().unwrap();
    ports[0].target_port = Some(IntOrString::Int(8080));
    ports.push(ServicePort { name: Some("plain".into()), port: 90, ..Default::default() });
    let slices = endpoint_slices(&s, &[pod("web-0", "10.244.0.2", true)]);
    let got: Vec<Option<i32>> = slices[0].ports.as_ref().unwrap().iter().map(|p| p.port).collect();
    assert_eq!(got, [Some(8080), Some(90)]);
}

#[test]
fn slices_hold_at_most_one_hundred_endpoints() {
    let pods: Vec<Pod> =
        (0..150).map(|i| pod(&format!("p{i:03}"), &format!("10.244.1.{}", i % 250), true)).collect();
    let slices = endpoint_slices(&svc("None"), &pods);
    let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 50]);
    assert_ne!(slices[0].metadata.name, slices[1].metadata.name);
}

#[test]
fn legacy_endpoints_split_ready_and_not_ready_and_drop_terminating() {
    let pods = [
        pod("web-0", "10.244.0.2", true),
        pod("web-1", "10.244.0.3", false),
        terminating(pod("web-2", "10.244.0.4", true)),
    ];
    let e = endpoints::endpoints(&svc("None"), &pods).unwrap();
    let subset = &e.subsets.unwrap()[0];
    let ips = |v: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        v.clone().unwrap_or_default().into_iter().map(|a| a.ip).collect::<Vec<_>>()
    };
    assert_eq!(ips(&subset.addresses), ["10.244.0.2"]);
    assert_eq!(ips(&subset.not_ready_addresses), ["10.244.0.3"]);
    assert_eq!(subset.addresses.as_ref().unwrap()[0].hostname.as_deref(), Some("web-0"));
    assert_eq!(e.metadata.name.as_deref(), Some("web"));
}

#[test]
fn slice_plan_creates_updates_and_deletes() {
    let s = svc("None");
    let pods = vec![pod("web-0", "10.244.0.2", true)];
    let first = endpoints::plan(&s, &pods, &[]);
    assert_eq!(first.iter().map(|a| a.verb()).collect::<Vec<_>>(), ["create-endpointslice"]);
    let Action::CreateEndpointSlice(stored) = &first[0] else { panic!() };
    assert!(endpoints::plan(&s, &pods, std::slice::from_ref(stored)).is_empty(), "no change, no action");
    let changed = vec![pod("web-0", "10.244.0.2", false)];
    assert_eq!(
        endpoints::plan(&s, &changed, std::slice::from_ref(stored))
            .iter()
            .map(|a| a.verb())
            .collect::<Vec<_>>(),
        ["update-endpointslice"]
    );
    assert_eq!(
        endpoints::plan(&s, &[], std::slice::from_ref(stored)).iter().map(|a| a.verb()).collect::<Vec<_>>(),
        ["delete-endpointslice"]
    );
}

#[test]
fn headless_dns_has_per_pod_records_for_ready_endpoints_and_srv_per_named_port() {
    let s = svc("None");
    let pods = [
        pod("web-0", "10.244.0.2", true),
        pod("web-1", "10.244.0.3", true),
        pod("web-2", "10.244.0.4", false),
    ];
    let r = service_records(&s, &endpoint_slices(&s, &pods), "cluster.local");
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        r.a,
        [
            ("web-0.web.default.svc.cluster.local".to_string(), ip("10.244.0.2")),
            ("web-1.web.default.svc.cluster.local".to_string(), ip("10.244.0.3")),
            ("web.default.svc.cluster.local".to_string(), ip("10.244.0.2")),
            ("web.default.svc.cluster.local".to_string(), ip("10.244.0.3")),
        ]
    );
    assert_eq!(
        r.srv,
        [
            SrvRecord {
                name: "_peer._tcp.web.default.svc.cluster.local".into(),
                priority: 0,
                weight: 50,
                port: 12345,
                target: "web-0.web.default.svc.cluster.local".into(),
            },
            SrvRecord {
                name: "_peer._tcp.web.default.svc.cluster.local".into(),
                priority: 0,
                weight: 50,
                port: 12345,
                target: "web-1.web.default.svc.cluster.local".into(),
            },
        ]
    );
}

#[test]
fn cluster_ip_dns_points_at_the_virtual_ip() {
    let s = svc("10.96.0.10");
    let r = service_records(&s, &endpoint_slices(&s, &[pod("web-0", "10.244.0.2", true)]), "cluster.local.");
    assert_eq!(
        r.a,
        [("web.default.svc.cluster.local".to_string(), "10.96.0.10".parse::<Ipv4Addr>().unwrap())]
    );
    assert_eq!(r.srv[0].target, "web.default.svc.cluster.local");
    assert_eq!(r.srv[0].port, 80);
}

#[test]
fn without_a_virtual_ip_the_service_name_resolves_to_ready_pods() {
    let mut s = svc("");
    s.spec.as_mut().unwrap().cluster_ip = None;
    let mut p = pod("api-x", "10.244.0.9", true);
    p.spec.as_mut().unwrap().hostname = None;
    let r = service_records(&s, &endpoint_slices(&s, &[p]), "cluster.local");
    let names: Vec<&str> = r.a.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["10-244-0-9.web.default.svc.cluster.local", "web.default.svc.cluster.local"]);
}
