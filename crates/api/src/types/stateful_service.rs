//! `StatefulService` (`cloudstate.io/v1alpha1`): CloudState's resource, both of its field sets, plus
//! stead's StatefulSet and service-policy extensions.
//!
//! - Scala-era CloudState: `containers`, `volumes`, `serviceAccountName`, `datastore`, `autoscaling`,
//!   `sidecarResources`, `sidecarJvmMemory`, `nodeSelector`, `tolerations`.
//! - Go-era CloudState: `replicas`, `storeConfig`.
//! - stead: `proxy`, the StatefulSet identity and storage fields (named as in `apps/v1`), `labels`,
//!   `affinity`, `whitelists` and `upstreams` (Space Cloud semantics).

use crate::types::ServiceContainer;
use k8s_openapi::api::apps::v1::{
    StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Container, PersistentVolumeClaim, ResourceRequirements, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The desired state of a stateful service.
// kube's attribute syntax repeats keys (printcolumn, derive) by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cloudstate.io",
    version = "v1alpha1",
    kind = "StatefulService",
    plural = "statefulservices",
    namespaced,
    status = "StatefulServiceStatus",
    shortname = "ssvc",
    category = "stead",
    derive = "PartialEq",
    derive = "Default",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct StatefulServiceSpec {
    // === CloudState (both eras) ===
    /// The pod's containers. The first is the user function (renamed `user-container`); the others
    /// run beside it in the same pod (Space Cloud's "tasks").
    pub containers: Vec<ServiceContainer>,

    /// Desired number of pods (Go-era CloudState; also the scale subresource). Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Pod volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<Volume>>,

    /// The service account the pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Scala-era store reference: the StatefulStore's name and per-service settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<Datastore>,

    /// Go-era store reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_config: Option<StoreConfig>,

    /// Autoscaling (CloudState's settings plus min, max and target concurrency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// Resources of the sidecar proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_resources: Option<ResourceRequirements>,

    /// Accepted for compatibility; stead's proxy is not a JVM, so it has no effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_jvm_memory: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    // === stead: the sidecar ===
    /// How the sidecar proxy sits in front of the user container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,

    // === stead: StatefulSet identity and storage (apps/v1 names) ===
    /// The headless Service that gives each pod its DNS name. Setting it asks for a StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_management_policy: Option<PodManagementPolicy>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<StatefulSetUpdateStrategy>,

    /// One persistent volume claim per pod and template, kept across restarts and rescheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaim>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_retention_policy: Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordinals: Option<StatefulSetOrdinals>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<Container>>,

    // === stead: placement and policy (Kubernetes and Space Cloud names) ===
    /// Labels added to the pods (and the workload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Which callers may reach this service. Absent: everyone. Present: only those listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelists: Option<Vec<ServiceRef>>,

    /// Which services this one calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<ServiceRef>>,
}

/// Scala-era `spec.datastore`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Datastore {
    /// The StatefulStore's name, in the service's namespace.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<DatastoreConfig>,
}

/// Per-service settings of a datastore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreConfig {
    /// Cassandra keyspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// PostgreSQL schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Go-era `spec.storeConfig`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_store: Option<NameRef>,
    /// Database (or keyspace) of this service inside the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// A Secret whose keys override the store's credentials for this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<NameRef>,
}

/// A reference to an object by name, in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NameRef {
    pub name: String,
}

/// Autoscaling: CloudState's fields (accepted; the proxy's own autoscaler is not built) and the ones
/// stead acts on (`minReplicas`, `maxReplicas`, `targetConcurrency`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// In-flight requests per pod that the autoscaler aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_function_target_concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_target_concurrency: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_concurrency_window: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_stable_deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_stable_deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate_threshold_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate_window: Option<String>,
}

/// How the sidecar is set up.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ProxyMode>,
    /// The sidecar image; defaults to `stead:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// The sidecar's role.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// The user container is a CloudState user function; the proxy keeps entity state.
    #[default]
    Entity,
    /// The proxy forwards client traffic to the user port, with metrics and policy.
    Passthrough,
    /// No sidecar.
    None,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entity => "entity",
            Self::Passthrough => "passthrough",
            Self::None => "none",
        }
    }
}

/// `apps/v1` pod management policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PodManagementPolicy {
    #[default]
    OrderedReady,
    Parallel,
}

impl PodManagementPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderedReady => "OrderedReady",
            Self::Parallel => "Parallel",
        }
    }
}

/// A Space Cloud service reference: `projectId` is the namespace, `service` the service's name;
/// either may be `*`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    pub project_id: String,
    pub service: String,
}

/// The observed state of a stateful service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatefulServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (the scale subresource's status replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// The pods' label selector, as a string (for the scale subresource and HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`; positive polarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

impl StatefulServiceSpec {
    /// The StatefulStore this service names, through `datastore` or `storeConfig`.
    pub fn store_name(&self) -> Option<&str> {
        self.datastore
            .as_ref()
            .map(|d| d.name.as_str())
            .or_else(|| self.store_config.as_ref()?.stateful_store.as_ref().map(|s| s.name.as_str()))
    }

    /// The proxy mode, defaulted.
    pub fn proxy_mode(&self) -> ProxyMode {
        self.proxy.as_ref().and_then(|p| p.mode).unwrap_or_default()
    }

    /// The StatefulSet-only fields this spec sets, by name. Any one of them makes render produce a
    /// StatefulSet instead of a Deployment.
    pub fn stateful_set_fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        let mut note = |set: bool, name| {
            if set {
                fields.push(name);
            }
        };
        note(self.service_name.is_some(), "serviceName");
        note(self.pod_management_policy.is_some(), "podManagementPolicy");
        note(self.update_strategy.is_some(), "updateStrategy");
        note(self.volume_claim_templates.as_ref().is_some_and(|v| !v.is_empty()), "volumeClaimTemplates");
        note(self.persistent_volume_claim_retention_policy.is_some(), "persistentVolumeClaimRetentionPolicy");
        note(self.ordinals.is_some(), "ordinals");
        fields
    }
}
