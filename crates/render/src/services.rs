//! The client Service (always) and the headless Service (StatefulSet mode).

use crate::PORTS;
use crate::labels::Identity;
use crate::workload::{headless_name, user_port};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use stead_api::types::ProxyMode;

/// The Service clients use, named like the StatefulService.
///
/// - `entity`: port 80 `grpc` (gRPC and HTTP/JSON, h2c) and 9090 `metrics`, both to the sidecar.
/// - `passthrough`: the user port's number, to the sidecar's proxy port, and `metrics`.
/// - `none`: the user containers' ports as they are.
pub fn client_service(id: &Identity<'_>) -> Service {
    let ports = match id.svc.spec.proxy_mode() {
        ProxyMode::Entity => vec![
            ServicePort {
                name: Some("grpc".to_owned()),
                port: 80,
                target_port: Some(IntOrString::String("proxy".to_owned())),
                app_protocol: Some("kubernetes.io/h2c".to_owned()),
                ..ServicePort::default()
            },
            metrics_port(),
        ],
        ProxyMode::Passthrough => {
            let (number, name) = user_port(id.svc);
            vec![
                ServicePort {
                    name: Some(name.unwrap_or_else(|| "user".to_owned())),
                    port: number,
                    target_port: Some(IntOrString::String("proxy".to_owned())),
                    ..ServicePort::default()
                },
                metrics_port(),
            ]
        }
        ProxyMode::None => user_ports(id),
    };
    service(id, id.name.to_owned(), ports, false)
}

/// The headless Service that gives each pod of a StatefulSet its DNS name. Its ports reach the
/// user containers directly: peers talk to each other without the proxy.
pub fn headless_service(id: &Identity<'_>) -> Service {
    service(id, headless_name(id.svc), user_ports(id), true)
}

fn service(id: &Identity<'_>, name: String, ports: Vec<ServicePort>, headless: bool) -> Service {
    Service {
        metadata: id.meta(name),
        spec: Some(ServiceSpec {
            selector: Some(id.selector()),
            ports: Some(ports),
            cluster_ip: headless.then(|| "None".to_owned()),
            type_: (!headless).then(|| "ClusterIP".to_owned()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn metrics_port() -> ServicePort {
    ServicePort {
        name: Some("metrics".to_owned()),
        port: PORTS.metrics,
        target_port: Some(IntOrString::String("metrics".to_owned())),
        ..ServicePort::default()
    }
}

/// Every port the user containers declare (the user function's default when none), named.
fn user_ports(id: &Identity<'_>) -> Vec<ServicePort> {
    let mut ports: Vec<ServicePort> = Vec::new();
    for c in &id.svc.spec.containers {
        for p in c.ports.iter().flatten() {
            let protocol = p.protocol.clone().filter(|p| p != "TCP");
            ports.push(ServicePort {
                name: Some(p.name.clone().unwrap_or_else(|| format!("port-{}", p.container_port))),
                port: p.container_port,
                target_port: Some(IntOrString::Int(p.container_port)),
                protocol,
                ..ServicePort::default()
            });
        }
    }
    if ports.is_empty() {
        let (number, _) = user_port(id.svc);
        ports.push(ServicePort {
            name: Some("user-port".to_owned()),
            port: number,
            target_port: Some(IntOrString::Int(number)),
            ..ServicePort::default()
        });
    }
    ports
}
