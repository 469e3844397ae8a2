//! ControllerRevisions: what a revision holds, its name, reuse on rollback, history truncation.
//!
//! Kubernetes' rules (`pkg/controller/history`, `getStatefulSetRevisions`): a revision's data is a
//! patch of only `spec.template` marked `"$patch": "replace"`, so changes to anything else never
//! roll pods. Its name is `<set>-<hash>` with `hash = SafeEncode(FNV-1_32(data ++
//! decimal(collisionCount)))` (Go's `fnv.New32`, checked against the Go source; the data bytes are
//! Go's `json.Marshal` of the patch map: keys sorted). A template equal to an older revision reuses
//! that object with its `.revision` bumped to the newest.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use super::{LABEL_REVISION_HASH_OF_DATA, StatefulSetError};
use crate::hash::{canonical_json, fnv1_32, safe_encode};
use crate::meta::{controller_ref, is_controlled_by};
use crate::plan::Action;

/// The name prefix Kubernetes keeps (`ControllerRevisionName`): 223 bytes, so that prefix, dash
/// and hash fit in 253.
const MAX_PREFIX: usize = 223;

/// One revision as the planner sees it: name, number and the template it reconstructs.
#[derive(Debug, Clone)]
pub(crate) struct Rev {
    pub name: String,
    pub template: PodTemplateSpec,
}

/// The outcome of resolving revisions for one sync.
pub(crate) struct Resolved {
    pub current: Rev,
    pub update: Rev,
    pub collision_count: i32,
    pub actions: Vec<Action>,
    /// Every revision the set owns after `actions`, with their (possibly bumped) numbers.
    pub owned: Vec<(String, i64)>,
}

/// The revision data for a template: `{"spec":{"template":{..., "$patch":"replace"}}}`.
pub(crate) fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(map) = t.as_object_mut() {
        map.insert("$patch".into(), serde_json::Value::String("replace".into()));
    }
    serde_json::json!({ "spec": { "template": t } })
}

/// The hash part of a revision's name.
pub fn revision_hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let bytes = canonical_json(data);
    let probe = collision_count.map(|c| c.to_string()).unwrap_or_default();
    safe_encode(fnv1_32(&[&bytes, probe.as_bytes()]))
}

/// `ControllerRevisionName`.
pub fn revision_name(set_name: &str, hash: &str) -> String {
    let mut end = set_name.len().min(MAX_PREFIX);
    while !set_name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{}", &set_name[..end], hash)
}

fn template_of(rev: &ControllerRevision) -> Result<PodTemplateSpec, StatefulSetError> {
    let name = rev.metadata.name.clone().unwrap_or_default();
    let mut t =
        rev.data.as_ref().and_then(|d| d.0.get("spec")).and_then(|s| s.get("template")).cloned().ok_or_else(
            || StatefulSetError::RevisionData { name: name.clone(), reason: "no spec.template".into() },
        )?;
    if let Some(map) = t.as_object_mut() {
        map.remove("$patch");
    }
    serde_json::from_value(t).map_err(|e| StatefulSetError::RevisionData { name, reason: e.to_string() })
}

fn data_equal(rev: &ControllerRevision, data: &serde_json::Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// Resolve current and update revisions, creating or renumbering as needed.
pub(crate) fn resolve(set: &StatefulSet, all: &[ControllerRevision]) -> Result<Resolved, StatefulSetError> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let status = set.status.as_ref();
    let mut collision_count = status.and_then(|s| s.collision_count).unwrap_or(0);

    let mut owned: Vec<&ControllerRevision> =
        all.iter().filter(|r| is_controlled_by(&r.metadata, "StatefulSet", &set.metadata)).collect();
    owned.sort_by(|a, b| a.revision.cmp(&b.revision).then(a.metadata.name.cmp(&b.metadata.name)));
    let next = owned.last().map(|r| r.revision).unwrap_or(0).saturating_add(1);
    let data = revision_data(&template);
    let mut actions = Vec::new();
    let mut numbers: Vec<(String, i64)> =
        owned.iter().map(|r| (r.metadata.name.clone().unwrap_or_default(), r.revision)).collect();

    let equal: Vec<&&ControllerRevision> = owned.iter().filter(|r| data_equal(r, &data)).collect();
    let update = match equal.last() {
        Some(latest_equal) => {
            let name = latest_equal.metadata.name.clone().unwrap_or_default();
            let is_newest =
                owned.last().map(|r| r.metadata.name == latest_equal.metadata.name).unwrap_or(false);
            if !is_newest {
                actions.push(Action::UpdateRevision { name: name.clone(), revision: next });
                if let Some(n) = numbers.iter_mut().find(|(n, _)| *n == name) {
                    n.1 = next;
                }
            }
            Rev { name, template: template.clone() }
        }
        None => {
            // A name taken by different data is a collision: bump and try the next name.
            let taken: BTreeSet<&str> = all.iter().filter_map(|r| r.metadata.name.as_deref()).collect();
            let mut name = revision_name(&set_name, &revision_hash(&data, Some(collision_count)));
            let mut tries = 0;
            while taken.contains(name.as_str()) && tries < 1000 {
                collision_count = collision_count.saturating_add(1);
                tries += 1;
                name = revision_name(&set_name, &revision_hash(&data, Some(collision_count)));
            }
            let hash = name.rsplit('-').next().unwrap_or_default().to_string();
            let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
            labels.insert(LABEL_REVISION_HASH_OF_DATA.into(), hash);
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: set.metadata.annotations.clone(),
                    owner_references: Some(vec![controller_ref("apps/v1", "StatefulSet", &set.metadata)]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(data.clone())),
                revision: next,
            };
            actions.push(Action::CreateRevision(rev));
            numbers.push((name.clone(), next));
            Rev { name, template: template.clone() }
        }
    };

    let current_name = status.and_then(|s| s.current_revision.as_deref());
    let current = match owned.iter().find(|r| r.metadata.name.as_deref() == current_name) {
        Some(r) if r.metadata.name.as_deref() != Some(update.name.as_str()) => {
            Rev { name: r.metadata.name.clone().unwrap_or_default(), template: template_of(r)? }
        }
        _ => update.clone(),
    };
    Ok(Resolved { current, update, collision_count, actions, owned: numbers })
}

/// `truncateHistory`: delete non-live revisions, oldest first, beyond `limit`.
pub(crate) fn truncate(owned: &[(String, i64)], live: &BTreeSet<&str>, limit: i32) -> Vec<Action> {
    let mut dead: Vec<&(String, i64)> = owned.iter().filter(|(n, _)| !live.contains(n.as_str())).collect();
    dead.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = dead.len().saturating_sub(limit);
    dead.into_iter().take(excess).map(|(n, _)| Action::DeleteRevision { name: n.clone() }).collect()
}
