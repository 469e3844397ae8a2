//! Names, labels and owner references of rendered objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;
use stead_api::types::StatefulService;

/// The label that selects a StatefulService's pods (CloudState's Go operator used the same key).
pub const SELECTOR_LABEL: &str = "cloudstate.io/stateful-service";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "stead";
/// Pod annotation naming the StatefulStore in use.
pub const STORE_ANNOTATION: &str = "cloudstate.io/stateful-store";
/// Pod annotation listing upstreams as `project/service` pairs.
pub const UPSTREAMS_ANNOTATION: &str = "stead.dev/upstreams";
pub const PROXY_MODE_ANNOTATION: &str = "stead.dev/proxy-mode";

/// What every child of one StatefulService shares.
pub struct Identity<'a> {
    pub svc: &'a StatefulService,
    pub name: &'a str,
}

impl<'a> Identity<'a> {
    pub fn new(svc: &'a StatefulService) -> Self {
        Self { svc, name: svc.metadata.name.as_deref().unwrap_or_default() }
    }

    /// The pods' selector: one label, stable for the service's life.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(SELECTOR_LABEL.to_owned(), self.name.to_owned())])
    }

    /// Labels of every child: the service's own, then ours (which win).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.svc.metadata.labels.clone().unwrap_or_default();
        labels.insert(NAME_LABEL.to_owned(), self.name.to_owned());
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
        labels.extend(self.selector());
        labels
    }

    /// Labels of the pods: the children's labels plus `spec.labels`.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.svc.spec.labels.clone().unwrap_or_default();
        labels.extend(self.labels());
        labels
    }

    /// Metadata for a child named `name`.
    pub fn meta(&self, name: impl Into<String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: self.svc.metadata.namespace.clone(),
            labels: Some(self.labels()),
            owner_references: self.owner().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    /// The controller reference to the service; only when it has a uid (it came from an API
    /// server or the local engine's store, not straight from a file).
    pub fn owner(&self) -> Option<OwnerReference> {
        let uid = self.svc.metadata.uid.clone()?;
        Some(OwnerReference {
            api_version: stead_api::types::API_VERSION.to_owned(),
            kind: "StatefulService".to_owned(),
            name: self.name.to_owned(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }
}
