//! The pod template (user container, tasks, sidecar) and the workload that runs it.

use crate::labels::{Identity, PROXY_MODE_ANNOTATION, STORE_ANNOTATION, UPSTREAMS_ANNOTATION};
use crate::store_env::{self, EMBEDDED_MOUNT_PATH, EMBEDDED_VOLUME, field_ref, literal};
use crate::{PORTS, RenderOptions};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use stead_api::types::{ProxyMode, StatefulService, StatefulStore, StoreKind};
use stead_sidecar_env as vars;

/// The user container's name, as CloudState fixed it.
pub const USER_CONTAINER: &str = "user-container";
/// The sidecar's container name.
pub const PROXY_CONTAINER: &str = "stead-proxy";
/// The user function's port when none is declared.
pub const DEFAULT_USER_PORT: i32 = 8080;

/// The workload a service renders to.
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
}

/// Whether the service renders to a StatefulSet: it sets a StatefulSet-only field, or its store is
/// the embedded one (which lives on a per-pod volume).
pub fn wants_stateful_set(svc: &StatefulService, store: Option<&StatefulStore>) -> bool {
    !svc.spec.stateful_set_fields().is_empty() || embedded(store)
}

fn embedded(store: Option<&StatefulStore>) -> bool {
    store.and_then(|s| s.spec.kind()) == Some(StoreKind::Embedded)
}

/// The user function's port: the first declared, else 8080.
pub fn user_port(svc: &StatefulService) -> (i32, Option<String>) {
    svc.spec
        .containers
        .first()
        .and_then(|c| c.ports.as_ref()?.first())
        .map_or((DEFAULT_USER_PORT, None), |p| (p.container_port, p.name.clone()))
}

/// The headless Service's name for a StatefulSet-mode service.
pub fn headless_name(svc: &StatefulService) -> String {
    svc.spec
        .service_name
        .clone()
        .unwrap_or_else(|| format!("{}-headless", svc.metadata.name.as_deref().unwrap_or_default()))
}

pub fn workload(id: &Identity<'_>, store: Option<&StatefulStore>, opts: &RenderOptions) -> Workload {
    let spec = &id.svc.spec;
    let template = pod_template(id, store, opts);
    let selector = LabelSelector { match_labels: Some(id.selector()), match_expressions: None };
    let replicas = Some(spec.replicas.unwrap_or(1));
    if !wants_stateful_set(id.svc, store) {
        return Workload::Deployment(Deployment {
            metadata: id.meta(id.name),
            spec: Some(DeploymentSpec {
                replicas,
                selector,
                template,
                min_ready_seconds: spec.min_ready_seconds,
                revision_history_limit: spec.revision_history_limit,
                ..DeploymentSpec::default()
            }),
            status: None,
        });
    }
    let mut claims = spec.volume_claim_templates.clone().unwrap_or_default();
    if let Some(e) = store.and_then(|s| s.spec.embedded.as_ref()) {
        claims.push(PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some(EMBEDDED_VOLUME.to_owned()), ..ObjectMeta::default() },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: e.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        e.storage.clone().unwrap_or_else(|| Quantity("1Gi".to_owned())),
                    )])),
                    limits: None,
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        });
    }
    Workload::StatefulSet(StatefulSet {
        metadata: id.meta(id.name),
        spec: Some(StatefulSetSpec {
            replicas,
            selector,
            service_name: Some(headless_name(id.svc)),
            template,
            pod_management_policy: spec.pod_management_policy.map(|p| p.as_str().to_owned()),
            update_strategy: spec.update_strategy.clone(),
            volume_claim_templates: (!claims.is_empty()).then_some(claims),
            persistent_volume_claim_retention_policy: spec.persistent_volume_claim_retention_policy.clone(),
            min_ready_seconds: spec.min_ready_seconds,
            ordinals: spec.ordinals.clone(),
            revision_history_limit: spec.revision_history_limit,
        }),
        status: None,
    })
}

fn pod_template(id: &Identity<'_>, store: Option<&StatefulStore>, opts: &RenderOptions) -> PodTemplateSpec {
    let spec = &id.svc.spec;
    let mode = spec.proxy_mode();
    let mut containers = Vec::with_capacity(spec.containers.len() + 1);
    if let Some(first) = spec.containers.first() {
        containers.push(user_container(&first.0, user_port(id.svc).0));
    }
    containers.extend(spec.containers.iter().skip(1).map(|c| c.0.clone()));
    if mode != ProxyMode::None {
        containers.push(sidecar(id, store, opts));
    }
    let mut annotations = BTreeMap::from([(PROXY_MODE_ANNOTATION.to_owned(), mode.as_str().to_owned())]);
    if let Some(store) = spec.store_name() {
        annotations.insert(STORE_ANNOTATION.to_owned(), store.to_owned());
    }
    if let Some(upstreams) = spec.upstreams.as_ref().filter(|u| !u.is_empty()) {
        let list: Vec<String> = upstreams.iter().map(|u| format!("{}/{}", u.project_id, u.service)).collect();
        annotations.insert(UPSTREAMS_ANNOTATION.to_owned(), list.join(","));
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(id.pod_labels()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            init_containers: spec.init_containers.clone(),
            containers,
            volumes: spec.volumes.clone(),
            service_account_name: spec.service_account_name.clone(),
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            affinity: spec.affinity.clone(),
            ..PodSpec::default()
        }),
    }
}

/// CloudState's injection rules: the name is `user-container`, the port is the first declared (or
/// 8080, added), and `PORT` says which.
fn user_container(c: &Container, port: i32) -> Container {
    let mut c = c.clone();
    c.name = USER_CONTAINER.to_owned();
    if c.ports.as_ref().is_none_or(Vec::is_empty) {
        c.ports = Some(vec![ContainerPort {
            name: Some("user-port".to_owned()),
            container_port: port,
            ..ContainerPort::default()
        }]);
    }
    let mut env = vec![literal("PORT", &port.to_string())];
    env.extend(c.env.take().unwrap_or_default().into_iter().filter(|e| e.name != "PORT"));
    c.env = Some(env);
    c
}

/// The malloc arenas the sidecar's environment allows (`MALLOC_ARENA_MAX`).
pub const SIDECAR_MALLOC_ARENAS: &str = "2";

fn sidecar(id: &Identity<'_>, store: Option<&StatefulStore>, opts: &RenderOptions) -> Container {
    let spec = &id.svc.spec;
    let mode = spec.proxy_mode();
    let image = spec.proxy.as_ref().and_then(|p| p.image.clone()).unwrap_or_else(|| opts.proxy_image.clone());
    let mut env = vec![
        literal(vars::PROXY_MODE, mode.as_str()),
        literal(vars::SERVICE_NAME, id.name),
        field_ref(vars::POD_NAME, "metadata.name"),
        field_ref(vars::POD_NAMESPACE, "metadata.namespace"),
        literal(vars::HTTP_PORT, &PORTS.proxy.to_string()),
        literal(vars::USER_FUNCTION_PORT, &user_port(id.svc).0.to_string()),
        literal(vars::METRICS_PORT, &PORTS.metrics.to_string()),
        literal(vars::MANAGEMENT_PORT, &PORTS.health.to_string()),
        // glibc gives each thread that allocates its own malloc arena (up to 8 per core); the
        // proxy's worker and store threads then hold a megabyte or more of arenas that two
        // would serve as well (measured in the proxy's `benches/proxy_hop.rs`).
        literal("MALLOC_ARENA_MAX", SIDECAR_MALLOC_ARENAS),
    ];
    if mode == ProxyMode::Entity {
        env.extend(store_env::env(id.svc, store));
    }
    if let Some(target) = spec.autoscaling.as_ref().and_then(|a| a.target_concurrency) {
        env.push(literal(vars::TARGET_CONCURRENCY, &target.to_string()));
    }
    let probe = |path: &str, period, failures| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("health".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let volume_mounts = embedded(store).then(|| {
        vec![VolumeMount {
            name: EMBEDDED_VOLUME.to_owned(),
            mount_path: EMBEDDED_MOUNT_PATH.to_owned(),
            ..VolumeMount::default()
        }]
    });
    Container {
        name: PROXY_CONTAINER.to_owned(),
        image: Some(image),
        command: Some(vec!["stead".to_owned(), "proxy".to_owned()]),
        ports: Some(vec![
            port("proxy", PORTS.proxy),
            port("metrics", PORTS.metrics),
            port("health", PORTS.health),
        ]),
        env: Some(env),
        readiness_probe: Some(probe("/ready", 2, 3)),
        liveness_probe: Some(probe("/alive", 5, 6)),
        resources: Some(spec.sidecar_resources.clone().unwrap_or_else(default_sidecar_resources)),
        volume_mounts,
        ..Container::default()
    }
}

/// Sized for a Rust proxy (CloudState's JVM sidecar asked for 400m and 512Mi).
fn default_sidecar_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("32Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("128Mi".to_owned()))])),
        claims: None,
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort { name: Some(name.to_owned()), container_port: number, ..ContainerPort::default() }
}
