//! The pod a StatefulSet creates for an ordinal (`newStatefulSetPod`, `newVersionedStatefulSetPod`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::claims::{claim_name, templates};
use super::{LABEL_POD_INDEX, LABEL_POD_NAME, LABEL_REVISION};
use crate::meta::controller_ref;

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of a pod of this set, if the name is exactly `<set>-<ordinal>` (Kubernetes parses
/// `(.*)-([0-9]+)$`; names like `web-01` would parse but can never be the set's, so they are not
/// members here).
pub fn ordinal_of(set: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ord: i32 = rest.parse().ok()?;
    (ord.to_string() == rest).then_some(ord)
}

/// The identity labels of a pod.
pub(crate) fn identity_labels(set: &str, ordinal: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_POD_NAME.to_string(), pod_name(set, ordinal)),
        (LABEL_POD_INDEX.to_string(), ordinal.to_string()),
    ])
}

/// A pod for `ordinal` from `template` at revision `revision` (the revision's name).
pub(crate) fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    let name = pod_name(set_name, ordinal);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.extend(identity_labels(set_name, ordinal));
    labels.insert(LABEL_REVISION.into(), revision.to_string());
    let mut spec: PodSpec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(svc) = set.spec.as_ref().and_then(|s| s.service_name.as_deref()).filter(|s| !s.is_empty()) {
        spec.subdomain = Some(svc.to_string());
    }
    // updateStorage: one volume per claim template, replacing a template volume of that name.
    let claim_templates = templates(set);
    if !claim_templates.is_empty() {
        let mut volumes: Vec<Volume> = claim_templates
            .iter()
            .map(|t| {
                let tname = t.metadata.name.clone().unwrap_or_default();
                Volume {
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim_name(&tname, set_name, ordinal),
                        read_only: None,
                    }),
                    name: tname,
                    ..Volume::default()
                }
            })
            .collect();
        for v in spec.volumes.take().unwrap_or_default() {
            if !volumes.iter().any(|c| c.name == v.name) {
                volumes.push(v);
            }
        }
        spec.volumes = Some(volumes);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            // GetPodFromTemplate sets the owner's prefix even though the name is then given.
            generate_name: Some(format!("{set_name}-")),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "StatefulSet", &set.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_canonical_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webb-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web-1", "web-1-2"), Some(2));
        assert_eq!(ordinal_of("web", "web-99999999999"), None);
    }
}
