//! The one translation: a StatefulService (with its StatefulStore) into the Kubernetes objects that
//! run it. The operator applies exactly these objects; the local engine runs exactly these objects.
//!
//! Architecture invariants: pure and deterministic (same input, byte-identical output; no clock,
//! no randomness, no IO, maps ordered); knows nothing of either engine.
//!
//! The rules:
//! - A Deployment by default (CloudState); a StatefulSet when the service sets a StatefulSet-only
//!   field (`serviceName`, `podManagementPolicy`, `updateStrategy`, `volumeClaimTemplates`,
//!   `persistentVolumeClaimRetentionPolicy`, `ordinals`) or uses the embedded store; then also a
//!   headless Service (`serviceName`, default `<name>-headless`) for per-pod DNS.
//! - A client Service named like the service; a NetworkPolicy for `whitelists`; an HPA for
//!   `autoscaling`.
//! - The pod: `user-container` (CloudState's injection rules), the other containers as declared,
//!   and the `stead-proxy` sidecar unless `proxy.mode` is `none`.
//!
//! `status.rs` is the StatefulService's own controller as a pure plan ([`plan_service`]): its
//! children or a hold (a missing StatefulStore), then its status and conditions from its
//! workload's status and the time. Both engines call it, so they run and report the same thing.

mod install;
mod labels;
mod output;
mod policy;
mod services;
mod status;
mod store_env;
mod workload;

pub use install::{NAMESPACE as OPERATOR_NAMESPACE, crds, manifests as install_manifests};
pub use labels::{SELECTOR_LABEL, STORE_ANNOTATION};
pub use output::{Format, to_string};
pub use policy::CONCURRENCY_METRIC;
pub use status::{
    Children, ServicePlan, ServiceStatus, Transition, WorkloadState, plan_service, selector, transitions,
};
pub use store_env::EMBEDDED_MOUNT_PATH;
pub use workload::{PROXY_CONTAINER, USER_CONTAINER, wants_stateful_set};

use k8s_openapi::Resource;
use serde::Serialize;
use serde_json::Value as J;
use std::collections::BTreeMap;
use stead_api::Manifest;
use stead_api::types::{StatefulService, StatefulStore};

/// The sidecar's ports, the same in every pod.
pub struct Ports {
    /// Client gRPC and HTTP/JSON (CloudState's 8013).
    pub proxy: i32,
    /// Prometheus metrics.
    pub metrics: i32,
    /// `/ready` and `/alive`.
    pub health: i32,
}

pub const PORTS: Ports = Ports { proxy: 8013, metrics: 9090, health: 8558 };

/// Choices that are the installer's, not the service's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// The sidecar (and operator) image.
    pub proxy_image: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self { proxy_image: format!("stead:{}", env!("CARGO_PKG_VERSION")) }
    }
}

/// What rendering produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub objects: Vec<Manifest>,
    /// Things the user should know (a missing store, for one).
    pub warnings: Vec<String>,
}

/// The children of one StatefulService. `store` is the StatefulStore it names, if found.
pub fn render_service(
    svc: &StatefulService,
    store: Option<&StatefulStore>,
    opts: &RenderOptions,
) -> Rendered {
    let id = labels::Identity::new(svc);
    let mut rendered = Rendered::default();
    if let (Some(name), None) = (svc.spec.store_name(), store) {
        rendered.warnings.push(format!(
            "statefulservice/{}: StatefulStore {name:?} not found; the proxy starts without a store",
            id.name
        ));
    }
    let stateful = wants_stateful_set(svc, store);
    rendered.objects.push(match workload::workload(&id, store, opts) {
        workload::Workload::Deployment(d) => Manifest::Deployment(Box::new(d)),
        workload::Workload::StatefulSet(s) => Manifest::StatefulSet(Box::new(s)),
    });
    rendered.objects.push(Manifest::Service(Box::new(services::client_service(&id))));
    if stateful {
        rendered.objects.push(Manifest::Service(Box::new(services::headless_service(&id))));
    }
    if let Some(policy) = policy::whitelist(&id) {
        rendered.objects.push(Manifest::NetworkPolicy(Box::new(policy)));
    }
    if let Some(hpa) = policy::autoscaler(&id) {
        rendered.objects.push(Manifest::HorizontalPodAutoscaler(Box::new(hpa)));
    }
    rendered
}

/// Renders a loaded set as `kubectl apply -f -` would take it: each StatefulService becomes its
/// children (StatefulStores are looked up by name and namespace); core objects pass through.
pub fn render_all(manifests: &[Manifest], opts: &RenderOptions) -> Rendered {
    // The stores by (namespace, name), the first of a name winning, looked up once per service.
    let mut stores: BTreeMap<(&str, &str), &StatefulStore> = BTreeMap::new();
    for m in manifests {
        if let Manifest::StatefulStore(s) = m {
            stores.entry((m.namespace(), m.name())).or_insert(s.as_ref());
        }
    }
    let mut rendered = Rendered::default();
    for m in manifests {
        match m {
            Manifest::StatefulService(svc) => {
                let store =
                    svc.spec.store_name().and_then(|name| stores.get(&(m.namespace(), name)).copied());
                let r = render_service(svc, store, opts);
                rendered.objects.extend(r.objects);
                rendered.warnings.extend(r.warnings);
            }
            Manifest::StatefulStore(_) => {}
            other => rendered.objects.push(other.clone()),
        }
    }
    rendered
}

/// A typed object as JSON with its `apiVersion` and `kind` first.
pub fn object<K: Resource + Serialize>(k: &K) -> J {
    let mut out = serde_json::Map::new();
    out.insert("apiVersion".into(), J::from(K::API_VERSION));
    out.insert("kind".into(), J::from(K::KIND));
    if let Ok(J::Object(fields)) = serde_json::to_value(k) {
        for (key, value) in fields {
            if key != "apiVersion" && key != "kind" {
                out.insert(key, value);
            }
        }
    }
    J::Object(out)
}
