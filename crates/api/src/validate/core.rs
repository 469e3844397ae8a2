//! Rules for the core kinds (apps/v1 workloads, Services, claims).

use super::pod::pod_spec;
use super::resources::requirements;
use super::volume::keys;
use super::workload::max_unavailable;
use super::{Findings, names};
use crate::path::FieldPath;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, PodTemplateSpec, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub fn stateful_set(set: &StatefulSet, f: &mut Findings) {
    let path = FieldPath::root().key("spec");
    let Some(spec) = &set.spec else {
        f.error(path, "missing required field \"spec\"");
        return;
    };
    selector_matches(&spec.selector, &spec.template, &path, f);
    template(
        &spec.template,
        &path.key("template"),
        f,
        &spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|t| t.metadata.name.clone())
            .collect::<Vec<_>>(),
    );
    if let Some(policy) = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref())
        && policy != "Always"
    {
        f.error(
            path.key("template").key("spec").key("restartPolicy"),
            format!("a StatefulSet's pods must restart Always (is {policy:?})"),
        );
    }
    if let Some(name) = spec.service_name.as_deref().filter(|n| !n.is_empty()) {
        f.check_name(path.key("serviceName"), "serviceName", name, names::dns1123_label);
    }
    if let Some(policy) = spec.pod_management_policy.as_deref() {
        f.enumeration(
            path.key("podManagementPolicy"),
            "podManagementPolicy",
            policy,
            &["OrderedReady", "Parallel"],
        );
    }
    if let Some(strategy) = &spec.update_strategy {
        f.enumeration(
            path.key("updateStrategy").key("type"),
            "updateStrategy type",
            strategy.type_.as_deref().unwrap_or("RollingUpdate"),
            &["RollingUpdate", "OnDelete"],
        );
        if let Some(max) = strategy.rolling_update.as_ref().and_then(|r| r.max_unavailable.as_ref()) {
            max_unavailable(f, path.key("updateStrategy").key("rollingUpdate").key("maxUnavailable"), max);
        }
    }
    for (i, t) in spec.volume_claim_templates.iter().flatten().enumerate() {
        claim(t, &path.key("volumeClaimTemplates").index(i), f);
    }
    if let Some(r) = spec.replicas
        && r < 0
    {
        f.error(path.key("replicas"), format!("must not be negative (is {r})"));
    }
}

pub fn deployment(d: &Deployment, f: &mut Findings) {
    let path = FieldPath::root().key("spec");
    let Some(spec) = &d.spec else {
        f.error(path, "missing required field \"spec\"");
        return;
    };
    selector_matches(&spec.selector, &spec.template, &path, f);
    template(&spec.template, &path.key("template"), f, &[]);
    if let Some(strategy) = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
        f.enumeration(
            path.key("strategy").key("type"),
            "strategy type",
            strategy,
            &["RollingUpdate", "Recreate"],
        );
    }
}

pub fn service(s: &Service, f: &mut Findings) {
    let path = FieldPath::root().key("spec");
    let Some(spec) = &s.spec else { return };
    let mut names_seen = std::collections::BTreeSet::new();
    let ports = spec.ports.as_deref().unwrap_or_default();
    for (i, port) in ports.iter().enumerate() {
        let p = path.key("ports").index(i);
        if !(1..=65535).contains(&port.port) {
            f.error(p.key("port"), format!("invalid port {}: must be between 1 and 65535", port.port));
        }
        match port.name.as_deref() {
            Some(name) => {
                f.check_name(p.key("name"), "port name", name, names::dns1123_label);
                if !names_seen.insert(name.to_owned()) {
                    f.error(p.key("name"), format!("duplicate port name {name:?}"));
                }
            }
            None if ports.len() > 1 => {
                f.error(p.key("name"), "ports of a Service with more than one port must be named");
            }
            None => {}
        }
    }
    let service_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let mut node_ports = std::collections::BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let Some(node_port) = port.node_port.filter(|n| *n != 0) else { continue };
        let p = path.key("ports").index(i).key("nodePort");
        if !matches!(service_type, "NodePort" | "LoadBalancer") {
            f.error(p, format!("nodePort may only be set on a Service of type NodePort or LoadBalancer (this one is {service_type})"));
        } else if !NODE_PORTS.contains(&node_port) {
            f.error(
                p,
                format!(
                    "invalid nodePort {node_port}: must be in the node port range {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                ),
            );
        } else if !node_ports.insert((node_port, port.protocol.as_deref().unwrap_or("TCP"))) {
            f.error(p, format!("duplicate nodePort {node_port}"));
        }
    }
    if let Some(t) = spec.type_.as_deref() {
        f.enumeration(
            path.key("type"),
            "Service type",
            t,
            &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        );
    }
}

/// Kubernetes' default node port range (the API server's `--service-node-port-range`).
const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;

pub fn config_map(c: &ConfigMap, f: &mut Findings) {
    keys(f, "data", c.data.iter().flatten().map(|(k, _)| k));
    keys(f, "binaryData", c.binary_data.iter().flatten().map(|(k, _)| k));
    for key in c.binary_data.iter().flatten().map(|(k, _)| k) {
        if c.data.as_ref().is_some_and(|d| d.contains_key(key)) {
            f.error(
                FieldPath::root().key("binaryData").key(key.clone()),
                format!("key {key:?} is also in data"),
            );
        }
    }
}

pub fn secret(s: &Secret, f: &mut Findings) {
    keys(f, "data", s.data.iter().flatten().map(|(k, _)| k));
    keys(f, "stringData", s.string_data.iter().flatten().map(|(k, _)| k));
}

pub fn claim(c: &PersistentVolumeClaim, path: &FieldPath, f: &mut Findings) {
    let spec_path = path.key("spec");
    let Some(spec) = &c.spec else {
        f.error(spec_path, "missing required field \"spec\"");
        return;
    };
    let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
    let storage_path = spec_path.key("resources").key("requests").key("storage");
    match storage {
        None => {
            f.error(storage_path, "a claim must request storage")
                .with_help("for example: resources: {requests: {storage: 1Gi}}");
        }
        // Malformed and negative quantities are reported with the other requests, below.
        Some(q) if stead_quantity::Quantity::parse(&q.0).is_ok_and(|q| q.is_zero()) => {
            f.error(storage_path, format!("invalid storage request {:?}: must be greater than zero", q.0));
        }
        Some(_) => {}
    }
    if let Some(r) = &spec.resources {
        requirements(f, &spec_path.key("resources"), r.requests.as_ref(), r.limits.as_ref());
    }
    for (i, mode) in spec.access_modes.iter().flatten().enumerate() {
        f.enumeration(
            spec_path.key("accessModes").index(i),
            "access mode",
            mode,
            &["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"],
        );
    }
}

fn template(t: &PodTemplateSpec, path: &FieldPath, f: &mut Findings, claim_volumes: &[String]) {
    match &t.spec {
        Some(spec) => {
            let mut spec = spec.clone();
            // Claim templates become volumes of the same name.
            for name in claim_volumes {
                spec.volumes
                    .get_or_insert_with(Vec::new)
                    .push(k8s_openapi::api::core::v1::Volume { name: name.clone(), ..Default::default() });
            }
            pod_spec(&spec, &path.key("spec"), f);
        }
        None => {
            f.error(path.key("spec"), "missing required field \"spec\"");
        }
    }
}

fn selector_matches(
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    path: &FieldPath,
    f: &mut Findings,
) {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let match_labels = selector.match_labels.clone().unwrap_or_default();
    if match_labels.is_empty() && selector.match_expressions.as_ref().is_none_or(Vec::is_empty) {
        f.error(path.key("selector"), "the selector must not be empty");
        return;
    }
    for (k, v) in &match_labels {
        if labels.get(k) != Some(v) {
            f.error(
                path.key("selector").key("matchLabels").key(k.clone()),
                format!("selector {k}={v} does not match the template's labels"),
            )
            .with_help(format!("add {k}: {v} under template.metadata.labels"));
        }
    }
}
