//! PersistentVolumeClaims from `volumeClaimTemplates`: names, creation, the retention policy as
//! owner references, and stead's resizable templates.
//!
//! The retention matrix (KEP-1847), carried out only through owner references that the garbage
//! collector acts on:
//!
//! | whenDeleted / whenScaled | in-range claim | claim of a condemned pod |
//! |---|---|---|
//! | Retain / Retain | no ref | no ref |
//! | Delete / Retain | set | set |
//! | Retain / Delete | no ref | pod |
//! | Delete / Delete | set | pod (set ref removed) |
//!
//! The set reference is a controller reference; the pod reference a plain one. References to other
//! owners are kept; a claim controlled by someone else is left alone (Kubernetes' conflicting
//! controller case).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::meta::{controller_of, controller_ref, quantity_millis};
use crate::plan::Action;

/// The policy, defaulted (Retain/Retain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    pub delete_on_set_deletion: bool,
    pub delete_on_scale_down: bool,
}

impl Retention {
    pub(crate) fn of(set: &StatefulSet) -> Retention {
        let p = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
        Retention {
            delete_on_set_deletion: p.and_then(|p| p.when_deleted.as_deref()) == Some("Delete"),
            delete_on_scale_down: p.and_then(|p| p.when_scaled.as_deref()) == Some("Delete"),
        }
    }
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

pub(crate) fn templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default()
}

fn template_name(t: &PersistentVolumeClaim) -> &str {
    t.metadata.name.as_deref().unwrap_or("")
}

/// The claim Kubernetes creates for one template and ordinal: the template's spec, labels and
/// annotations, plus the selector's matchLabels; the set reference when whenDeleted is Delete.
pub(crate) fn new_claim(
    set: &StatefulSet,
    template: &PersistentVolumeClaim,
    ordinal: i32,
    retention: Retention,
) -> PersistentVolumeClaim {
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    let mut labels = template.metadata.labels.clone().unwrap_or_default();
    if let Some(m) = set.spec.as_ref().and_then(|s| s.selector.match_labels.as_ref()) {
        labels.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let owner_references = retention
        .delete_on_set_deletion
        .then(|| vec![controller_ref("apps/v1", "StatefulSet", &set.metadata)]);
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(template_name(template), set_name, ordinal)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template.metadata.annotations.clone(),
            owner_references,
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The claims of one ordinal, by template: (template, claim name, existing claim).
pub(crate) fn claims_of<'a>(
    set: &'a StatefulSet,
    ordinal: i32,
    existing: &'a BTreeMap<&'a str, &'a PersistentVolumeClaim>,
) -> Vec<(&'a PersistentVolumeClaim, String, Option<&'a PersistentVolumeClaim>)> {
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    templates(set)
        .iter()
        .map(|t| {
            let name = claim_name(template_name(t), set_name, ordinal);
            let found = existing.get(name.as_str()).copied();
            (t, name, found)
        })
        .collect()
}

/// `PodClaimIsStale`-like: with whenScaled=Delete, a claim that still names a pod owner (a pod that
/// no longer exists, since we are about to create it) will be collected: wait for it to go.
pub(crate) fn is_stale(
    claim: &PersistentVolumeClaim,
    retention: Retention,
    live_pod_uid: Option<&str>,
) -> bool {
    retention.delete_on_scale_down
        && claim
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| r.kind == "Pod" && r.api_version == "v1" && Some(r.uid.as_str()) != live_pod_uid)
}

/// The owner references a claim should carry, or None when it should be left alone.
pub(crate) fn desired_owners(
    set: &StatefulSet,
    claim: &PersistentVolumeClaim,
    pod: Option<&Pod>,
    condemned: bool,
    retention: Retention,
) -> Option<Vec<OwnerReference>> {
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    if let Some(c) = controller_of(&claim.metadata)
        && c.uid != set_uid
    {
        return None;
    }
    let pod_name = pod.and_then(|p| p.metadata.name.as_deref());
    let pod_uid = pod.and_then(|p| p.metadata.uid.as_deref());
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    // Keep everything that is neither our set nor this pod (stale refs to an old pod of the same
    // name are kept too: Kubernetes leaves them alone).
    let mut refs: Vec<OwnerReference> = current
        .iter()
        .filter(|r| {
            let ours_set = r.kind == "StatefulSet" && r.uid == set_uid;
            let ours_pod =
                r.kind == "Pod" && Some(r.name.as_str()) == pod_name && Some(r.uid.as_str()) == pod_uid;
            !(ours_set || ours_pod)
        })
        .cloned()
        .collect();
    let want_set = retention.delete_on_set_deletion && !(condemned && retention.delete_on_scale_down);
    let want_pod = condemned && retention.delete_on_scale_down;
    if want_set {
        refs.push(controller_ref("apps/v1", "StatefulSet", &set.metadata));
    }
    if want_pod && let Some(p) = pod {
        refs.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    let same = refs.len() == current.len() && refs.iter().all(|r| current.contains(r));
    (!same).then_some(refs)
}

fn storage(
    claim: &PersistentVolumeClaim,
) -> Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage")
}

/// stead's resizable claim templates: a larger storage request in the template is applied to an
/// existing claim; never a smaller one.
pub(crate) fn resize(template: &PersistentVolumeClaim, claim: &PersistentVolumeClaim) -> Option<Action> {
    let want = storage(template)?;
    let have = storage(claim);
    let bigger = match have {
        None => true,
        Some(h) => match (quantity_millis(&want.0), quantity_millis(&h.0)) {
            (Some(w), Some(h)) => w > h,
            _ => false,
        },
    };
    (bigger && claim.metadata.deletion_timestamp.is_none()).then(|| Action::ResizePvc {
        name: claim.metadata.name.clone().unwrap_or_default(),
        storage: want.clone(),
    })
}
