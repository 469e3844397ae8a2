//! Rules for StatefulServices.

use super::pod::{ContainerList, containers, volumes};
use super::workload::max_unavailable;
use super::{Findings, Set, names};
use crate::path::FieldPath;
use crate::types::{ProxyMode, ServiceRef, StatefulService};

/// Ports the sidecar listens on, shared with every container of the pod.
pub const SIDECAR_PORTS: [(i32, &str); 3] = [(8013, "proxy"), (9090, "metrics"), (8558, "health")];

/// Label keys render sets; users may not set them.
pub const RESERVED_LABELS: [&str; 1] = ["cloudstate.io/stateful-service"];

pub fn stateful_service(svc: &StatefulService, all: &Set<'_>, f: &mut Findings) {
    let spec = &svc.spec;
    let path = FieldPath::root().key("spec");
    let name = svc.metadata.name.as_deref().unwrap_or("");

    // Pod shape.
    if spec.containers.is_empty() {
        f.error(path.key("containers"), "a StatefulService needs at least one container (the user function)");
    }
    let mut volume_names = volumes(spec.volumes.as_deref().unwrap_or_default(), &path.key("volumes"), f);
    for (i, t) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let p = path.key("volumeClaimTemplates").index(i);
        match t.metadata.name.as_deref() {
            None | Some("") => {
                f.error(p.key("metadata").key("name"), "missing required field \"name\"");
            }
            Some(n) => {
                f.check_name(p.key("metadata").key("name"), "claim template name", n, names::dns1123_label);
                if !volume_names.insert(n.to_owned()) {
                    f.error(
                        p.key("metadata").key("name"),
                        format!("{n:?} is already the name of a volume or claim template"),
                    );
                }
            }
        }
        super::core::claim(t, &p, f);
    }
    for (i, c) in spec.containers.iter().enumerate().skip(1) {
        if let Some(reserved) = ["user-container", "stead-proxy"].into_iter().find(|r| c.name() == Some(r)) {
            f.error(
                path.key("containers").index(i).key("name"),
                format!("container name {reserved:?} is reserved for stead"),
            );
        }
    }
    if let Some(first) = spec.containers.first() {
        if let Some(n) = first.name().filter(|n| *n != "user-container") {
            f.warn(
                path.key("containers").index(0).key("name"),
                format!(
                    "the user function's container is always named \"user-container\"; {n:?} is not used"
                ),
            );
        }
        for (j, var) in first.env.iter().flatten().enumerate() {
            if var.name == "PORT" {
                f.warn(
                    path.key("containers").index(0).key("env").index(j),
                    "PORT is set by stead to the user function's port; this value is replaced",
                );
            }
        }
    }
    let lists = ContainerList::pod(
        &path,
        spec.init_containers.iter().flatten().collect(),
        spec.containers.iter().map(|c| &c.0).collect(),
        true,
    );
    containers(&lists, &volume_names, f);

    // The sidecar.
    let mode = spec.proxy_mode();
    if mode != ProxyMode::None {
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, port) in c.ports.iter().flatten().enumerate() {
                if let Some((_, used)) = SIDECAR_PORTS.iter().find(|(p, _)| *p == port.container_port) {
                    f.error(
                        path.key("containers").index(i).key("ports").index(j).key("containerPort"),
                        format!("port {} is the sidecar's {used} port", port.container_port),
                    )
                    .with_help("pick another port, or set spec.proxy.mode: none");
                }
            }
        }
    }
    if let Some(image) = spec.proxy.as_ref().and_then(|p| p.image.as_deref())
        && (image.is_empty() || image.chars().any(char::is_whitespace))
    {
        f.error(path.key("proxy").key("image"), format!("invalid image {image:?}"));
    }
    if let Some(r) = &spec.sidecar_resources {
        let p = path.key("sidecarResources");
        super::resources::requirements(f, &p, r.requests.as_ref(), r.limits.as_ref());
    }
    if spec.sidecar_jvm_memory.is_some() {
        f.warn(path.key("sidecarJvmMemory"), "has no effect: stead's proxy is not a JVM")
            .with_help("size the sidecar with sidecarResources instead");
    }

    // Scale and StatefulSet fields.
    non_negative(f, path.key("replicas"), spec.replicas);
    non_negative(f, path.key("minReadySeconds"), spec.min_ready_seconds);
    non_negative(f, path.key("revisionHistoryLimit"), spec.revision_history_limit);
    non_negative(f, path.key("ordinals").key("start"), spec.ordinals.as_ref().and_then(|o| o.start));
    let stateful = !spec.stateful_set_fields().is_empty() || embedded_store(svc, all);
    if stateful && name.len() > 52 {
        f.error(FieldPath::root().key("metadata").key("name"), format!("invalid name {name:?}: a StatefulService with stable identity must be no more than 52 characters (is {}), so that its pods' controller-revision-hash label fits in 63", name.len()));
    }
    if let Some(service_name) = spec.service_name.as_deref() {
        f.check_name(path.key("serviceName"), "serviceName", service_name, names::dns1035_label);
        if service_name == name {
            f.error(
                path.key("serviceName"),
                format!("serviceName {service_name:?} is the service's own name, which its client Service already has"),
            )
            .with_help(format!("name the headless Service differently, e.g. \"{name}-pods\""));
        }
    }
    if let Some(strategy) = &spec.update_strategy {
        let p = path.key("updateStrategy");
        let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
        f.enumeration(p.key("type"), "updateStrategy type", kind, &["RollingUpdate", "OnDelete"]);
        if let Some(rolling) = &strategy.rolling_update {
            if kind == "OnDelete" {
                f.error(p.key("rollingUpdate"), "rollingUpdate is only allowed with type RollingUpdate");
            }
            non_negative(f, p.key("rollingUpdate").key("partition"), rolling.partition);
            if let Some(max) = &rolling.max_unavailable {
                max_unavailable(f, p.key("rollingUpdate").key("maxUnavailable"), max);
            }
        }
    }
    if let Some(policy) = &spec.persistent_volume_claim_retention_policy {
        let p = path.key("persistentVolumeClaimRetentionPolicy");
        for (field, value) in [("whenDeleted", &policy.when_deleted), ("whenScaled", &policy.when_scaled)] {
            if let Some(v) = value {
                f.enumeration(p.key(field), field, v, &["Retain", "Delete"]);
            }
        }
    }

    // Autoscaling.
    if let Some(a) = &spec.autoscaling {
        let p = path.key("autoscaling");
        if let Some(min) = a.min_replicas
            && min < 1
        {
            f.error(p.key("minReplicas"), format!("minReplicas must be at least 1 (is {min})"));
        }
        if let (Some(min), Some(max)) = (a.min_replicas, a.max_replicas)
            && max < min
        {
            f.error(p.key("maxReplicas"), format!("maxReplicas ({max}) is less than minReplicas ({min})"));
        }
        if let Some(t) = a.target_concurrency
            && t < 1
        {
            f.error(p.key("targetConcurrency"), format!("targetConcurrency must be at least 1 (is {t})"));
        }
        if a.enabled == Some(true) && mode == ProxyMode::None {
            f.warn(p.key("enabled"), "autoscaling follows the sidecar's concurrency, and proxy.mode is none");
        }
    }

    // Policy.
    for (field, refs) in [("whitelists", &spec.whitelists), ("upstreams", &spec.upstreams)] {
        for (i, r) in refs.iter().flatten().enumerate() {
            service_ref(f, path.key(field).index(i), r);
        }
    }
    for key in spec.labels.iter().flatten().map(|(k, _)| k) {
        let p = path.key("labels").key(key.clone());
        f.check_name(p.clone(), "label key", key, names::label_key);
        if RESERVED_LABELS.contains(&key.as_str()) {
            f.error(p, format!("label {key:?} is set by stead"));
        }
    }
    for (key, value) in spec.labels.iter().flatten() {
        f.check_name(path.key("labels").key(key.clone()), "label value", value, names::label_value);
    }

    store_reference(svc, all, f);
}

fn embedded_store(svc: &StatefulService, all: &Set<'_>) -> bool {
    find_store(svc, all).is_some_and(|s| s.spec.embedded.is_some())
}

fn find_store<'a>(svc: &StatefulService, all: &Set<'a>) -> Option<&'a crate::types::StatefulStore> {
    let name = svc.spec.store_name()?;
    all.store(svc.metadata.namespace.as_deref().unwrap_or("default"), name)
}

fn store_reference(svc: &StatefulService, all: &Set<'_>, f: &mut Findings) {
    let spec = &svc.spec;
    let path = FieldPath::root().key("spec");
    let from_datastore = spec.datastore.as_ref().map(|d| d.name.as_str());
    let from_store_config =
        spec.store_config.as_ref().and_then(|s| s.stateful_store.as_ref()).map(|s| s.name.as_str());
    let field = match (from_datastore, from_store_config) {
        (Some(a), Some(b)) if a != b => {
            f.error(
                path.key("storeConfig").key("statefulStore").key("name"),
                format!("names store {b:?} but datastore.name names {a:?}"),
            );
            return;
        }
        (Some(_), _) => path.key("datastore").key("name"),
        (None, Some(_)) => path.key("storeConfig").key("statefulStore").key("name"),
        (None, None) => return,
    };
    let Some(name) = spec.store_name() else { return };
    match find_store(svc, all) {
        None => {
            let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
            let finding = f.warn(field, format!("StatefulStore {name:?} is not among the loaded manifests"));
            finding.help = crate::suggest::did_you_mean(name, all.store_names(namespace)).or_else(|| {
                Some(format!("it must exist in namespace {namespace:?} before the service can keep state"))
            });
        }
        Some(store) => {
            if let Some(kind) = store.spec.kind()
                && !kind.supported_by_proxy()
            {
                f.warn(
                    field.clone(),
                    format!(
                        "StatefulStore {name:?} is a {} store, which stead's proxy does not support yet",
                        kind.as_str()
                    ),
                );
            }
            if spec.proxy_mode() == ProxyMode::None {
                f.warn(field, "no sidecar runs with proxy.mode none, so the store is not used");
            }
        }
    }
}

fn service_ref(f: &mut Findings, path: FieldPath, r: &ServiceRef) {
    if r.project_id != "*" {
        f.check_name(path.key("projectId"), "projectId", &r.project_id, names::dns1123_label);
    }
    if r.service != "*" {
        f.check_name(path.key("service"), "service", &r.service, names::dns1123_label);
    }
}

fn non_negative(f: &mut Findings, path: FieldPath, value: Option<i32>) {
    if let Some(v) = value
        && v < 0
    {
        f.error(path, format!("must not be negative (is {v})"));
    }
}
