//! The Deployment planner (`pkg/controller/deployment`): ReplicaSets per template, RollingUpdate
//! (maxSurge/maxUnavailable) and Recreate, revisions, rollback by template match, history,
//! status and the Available/Progressing conditions.
//!
//! One pass mirrors one `syncDeployment`: find the new ReplicaSet (the one whose template equals
//! the deployment's, ignoring `pod-template-hash`), or plan its creation as
//! `<deployment>-<pod-template-hash>`; keep revision annotations in order; then either Recreate
//! (scale old to 0, wait for their pods to go, scale the new up) or RollingUpdate (scale the new
//! up within maxSurge, and only if it did not, scale old down within maxUnavailable); clean up
//! old ReplicaSets beyond `revisionHistoryLimit` once complete.
//!
//! Not done (documented limits): proportional scaling of several active ReplicaSets when
//! `replicas` changes mid-rollout (the rolling rules still converge), and `paused` only stops
//! rollouts (no new ReplicaSet), scaling the current one.
//!
//! `pod-template-hash` is FNV-1a (Go's `fnv.New32a`, as Kubernetes) over the template's canonical
//! JSON, then the collision count as 8 little-endian bytes; Kubernetes hashes a Go-specific dump
//! of the struct instead, so the hash values differ from a cluster's (names keep the same shape).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::hash::{canonical_json, fnv1a_32, safe_encode};
use crate::meta::{MetaError, controller_ref, is_controlled_by, scaled_value};
use crate::plan::{Action, Plan};
use crate::pods;

/// `pod-template-hash`: on ReplicaSets, their selector and their pods.
pub const LABEL_POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// `deployment.kubernetes.io/revision`.
pub const ANNOTATION_REVISION: &str = "deployment.kubernetes.io/revision";
/// `deployment.kubernetes.io/desired-replicas`.
pub const ANNOTATION_DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `deployment.kubernetes.io/max-replicas`.
pub const ANNOTATION_MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default `revisionHistoryLimit` (apps/v1).
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

/// Annotations a Deployment never copies onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    ANNOTATION_REVISION,
    "deployment.kubernetes.io/revision-history",
    ANNOTATION_DESIRED_REPLICAS,
    ANNOTATION_MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Why a Deployment cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeploymentError {
    #[error("deployment has no name")]
    NoName,
    #[error("deployment {name}: spec.replicas is negative: {replicas}")]
    NegativeReplicas { name: String, replicas: i32 },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What the loop observed: the ReplicaSets in the namespace (the planner picks those it
/// controls) and the pods (for Recreate's "old pods are gone").
#[derive(Debug, Clone, Copy, Default)]
pub struct DeploymentObserved<'a> {
    pub replica_sets: &'a [ReplicaSet],
    pub pods: &'a [Pod],
}

/// `ComputeHash`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_value(template).unwrap_or_default();
    let bytes = canonical_json(&json);
    let mut extra = Vec::new();
    if let Some(c) = collision_count {
        extra.extend_from_slice(&c.to_le_bytes());
        extra.extend_from_slice(&[0, 0, 0, 0]);
    }
    safe_encode(fnv1a_32(&[&bytes, &extra]))
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(m) = t.metadata.as_mut()
        && let Some(l) = m.labels.as_mut()
    {
        l.remove(LABEL_POD_TEMPLATE_HASH);
        if l.is_empty() {
            m.labels = None;
        }
    }
    serde_json::to_value(t).unwrap_or_default()
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn st<F: Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>>(rs: &ReplicaSet, f: F) -> i32 {
    rs.status.as_ref().and_then(f).unwrap_or(0)
}

struct Sizes {
    max_surge: i32,
    max_unavailable: i32,
}

fn sizes(d: &Deployment, replicas: i32) -> Result<Sizes, MetaError> {
    let strategy = d.spec.as_ref().and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Ok(Sizes { max_surge: 0, max_unavailable: 0 });
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(
        ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter),
        replicas,
        true,
        "spec.strategy.rollingUpdate.maxSurge",
    )?;
    let mut unavailable = scaled_value(
        ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&quarter),
        replicas,
        false,
        "spec.strategy.rollingUpdate.maxUnavailable",
    )?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    // MaxUnavailable never exceeds replicas.
    Ok(Sizes { max_surge: surge, max_unavailable: unavailable.min(replicas) })
}

/// A ReplicaSet as planned for this pass: either observed or about to be created.
#[derive(Clone)]
struct Rs {
    obj: ReplicaSet,
    replicas: i32,
    planned: bool,
}

/// Plan one sync of a Deployment.
pub fn plan(
    d: &Deployment,
    observed: &DeploymentObserved<'_>,
    now: Timestamp,
) -> Result<Plan<DeploymentStatus>, DeploymentError> {
    let name = d.metadata.name.as_deref().filter(|n| !n.is_empty()).ok_or(DeploymentError::NoName)?;
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    if replicas < 0 {
        return Err(DeploymentError::NegativeReplicas { name: name.into(), replicas });
    }
    let sz = sizes(d, replicas)?;
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let prev = d.status.clone().unwrap_or_default();
    let mut collision_count = prev.collision_count.unwrap_or(0);
    let mut actions = Vec::new();

    let mut owned: Vec<&ReplicaSet> = observed
        .replica_sets
        .iter()
        .filter(|r| is_controlled_by(&r.metadata, "Deployment", &d.metadata))
        .collect();
    owned.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then(a.metadata.name.cmp(&b.metadata.name))
    });
    let want_template = without_hash(&spec.template);
    let new_idx = owned.iter().position(|r| {
        r.spec.as_ref().and_then(|s| s.template.as_ref()).map(without_hash).as_ref() == Some(&want_template)
    });
    let max_old_revision = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, r)| revision_of(r))
        .max()
        .unwrap_or(0);
    let new_revision = max_old_revision + 1;
    let mut old: Vec<Rs> = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, r)| Rs { obj: (*r).clone(), replicas: spec_replicas(r), planned: false })
        .collect();
    let paused = spec.paused == Some(true);
    let deleting = d.metadata.deletion_timestamp.is_some();

    let mut new_rs: Option<Rs> =
        new_idx.map(|i| Rs { obj: owned[i].clone(), replicas: spec_replicas(owned[i]), planned: false });
    let mut created_new = false;
    if let Some(n) = &new_rs
        && revision_of(&n.obj) < new_revision
        && !deleting
    {
        // Rollback by template match: the old ReplicaSet becomes the newest revision.
        actions.push(Action::AnnotateReplicaSet {
            name: n.obj.metadata.name.clone().unwrap_or_default(),
            annotations: BTreeMap::from([(ANNOTATION_REVISION.to_string(), new_revision.to_string())]),
        });
    }
    let all_count = |old: &[Rs], new: &Option<Rs>| {
        old.iter().map(|r| r.replicas).sum::<i32>() + new.as_ref().map(|n| n.replicas).unwrap_or(0)
    };

    if new_rs.is_none() && !paused && !deleting {
        // NewRSNewReplicas.
        let initial = if recreate {
            0
        } else {
            let current = all_count(&old, &None);
            let max_total = replicas + sz.max_surge;
            if current >= max_total { 0 } else { (max_total - current).min(replicas) }
        };
        let taken: Vec<&str> =
            observed.replica_sets.iter().filter_map(|r| r.metadata.name.as_deref()).collect();
        let mut hash = pod_template_hash(&spec.template, Some(collision_count));
        let mut tries = 0;
        while taken.contains(&format!("{name}-{hash}").as_str()) && tries < 1000 {
            collision_count += 1;
            tries += 1;
            hash = pod_template_hash(&spec.template, Some(collision_count));
        }
        let mut template = spec.template.clone();
        let tmeta = template.metadata.get_or_insert_with(Default::default);
        tmeta
            .labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = tmeta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_POD_TEMPLATE_HASH.into(), hash.clone());
        let mut annotations: BTreeMap<String, String> = d
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .collect();
        annotations.insert(ANNOTATION_REVISION.into(), new_revision.to_string());
        annotations.insert(ANNOTATION_DESIRED_REPLICAS.into(), replicas.to_string());
        annotations.insert(ANNOTATION_MAX_REPLICAS.into(), (replicas + sz.max_surge).to_string());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{hash}")),
                namespace: d.metadata.namespace.clone(),
                labels,
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(initial),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        actions.push(Action::CreateReplicaSet(rs.clone()));
        new_rs = Some(Rs { obj: rs, replicas: initial, planned: true });
        created_new = true;
    }

    let annotations_for = |_: i32| {
        BTreeMap::from([
            (ANNOTATION_DESIRED_REPLICAS.to_string(), replicas.to_string()),
            (ANNOTATION_MAX_REPLICAS.to_string(), (replicas + sz.max_surge).to_string()),
        ])
    };
    let scale = |actions: &mut Vec<Action>, rs: &mut Rs, to: i32| {
        if rs.replicas != to {
            rs.replicas = to;
            if !rs.planned {
                actions.push(Action::ScaleReplicaSet {
                    name: rs.obj.metadata.name.clone().unwrap_or_default(),
                    replicas: to,
                    annotations: annotations_for(to),
                });
            } else if let Some(Action::CreateReplicaSet(r)) =
                actions.iter_mut().rev().find(|a| matches!(a, Action::CreateReplicaSet(_)))
            {
                r.spec.get_or_insert_with(Default::default).replicas = Some(to);
            }
        }
    };

    let mut waiting = None;
    if deleting {
        // Only status.
    } else if paused {
        if let Some(n) = new_rs.as_mut().filter(|_| old.iter().all(|r| r.replicas == 0)) {
            scale(&mut actions, n, replicas);
        }
    } else if recreate {
        let mut scaled_down = false;
        for r in old.iter_mut().filter(|r| r.replicas > 0) {
            scale(&mut actions, r, 0);
            scaled_down = true;
        }
        let old_uids: Vec<&str> = owned.iter().filter_map(|r| r.metadata.uid.as_deref()).collect();
        let new_uid = new_rs.as_ref().and_then(|n| n.obj.metadata.uid.clone());
        let old_pods_running = observed.pods.iter().any(|p| {
            let owner = crate::meta::controller_of(&p.metadata).map(|r| r.uid.as_str());
            owner.is_some_and(|u| old_uids.contains(&u) && Some(u) != new_uid.as_deref())
                && !pods::is_failed(p)
                && !pods::is_succeeded(p)
        });
        if scaled_down || old_pods_running {
            waiting = Some(format!("deployment {name}: old pods are stopping (Recreate)"));
        } else if let Some(n) = new_rs.as_mut() {
            scale(&mut actions, n, replicas);
        }
    } else if let Some(n) = new_rs.as_mut() {
        // reconcileNewReplicaSet.
        let scaled_up = if n.replicas > replicas {
            scale(&mut actions, n, replicas);
            true
        } else if n.replicas < replicas && !created_new {
            let current = old.iter().map(|r| r.replicas).sum::<i32>() + n.replicas;
            let max_total = replicas + sz.max_surge;
            if current < max_total {
                let up = (max_total - current).min(replicas - n.replicas);
                scale(&mut actions, n, n.replicas + up);
                true
            } else {
                false
            }
        } else {
            created_new
        };
        if !scaled_up {
            // reconcileOldReplicaSets.
            let old_count: i32 = old.iter().map(|r| r.replicas).sum();
            if old_count > 0 {
                let all = old_count + n.replicas;
                let min_available = replicas - sz.max_unavailable;
                let new_unavailable = (n.replicas - st(&n.obj, |s| s.available_replicas)).max(0);
                let max_scaled_down = all - min_available - new_unavailable;
                if max_scaled_down > 0 {
                    // cleanupUnhealthyReplicas, oldest first.
                    let mut cleaned = 0;
                    for r in old.iter_mut() {
                        if cleaned >= max_scaled_down {
                            break;
                        }
                        if r.replicas == 0 {
                            continue;
                        }
                        let unhealthy = r.replicas - st(&r.obj, |s| s.available_replicas);
                        if unhealthy <= 0 {
                            continue;
                        }
                        let down = unhealthy.min(max_scaled_down - cleaned);
                        let to = r.replicas - down;
                        scale(&mut actions, r, to);
                        cleaned += down;
                    }
                    // scaleDownOldReplicaSetsForRollingUpdate.
                    let available: i32 =
                        old.iter().map(|r| st(&r.obj, |s| s.available_replicas).min(r.replicas)).sum::<i32>()
                            + st(&n.obj, |s| s.available_replicas);
                    if available > min_available {
                        let mut left = available - min_available;
                        for r in old.iter_mut() {
                            if left <= 0 {
                                break;
                            }
                            if r.replicas == 0 {
                                continue;
                            }
                            let down = r.replicas.min(left);
                            let to = r.replicas - down;
                            scale(&mut actions, r, to);
                            left -= down;
                        }
                    }
                }
            }
        }
    }

    // Status (calculateStatus).
    let all: Vec<&ReplicaSet> = owned.clone();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|r| f(r)).sum::<i32>();
    let actual = sum(&|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let updated = new_rs
        .as_ref()
        .filter(|n| !n.planned)
        .map(|n| n.obj.status.as_ref().map(|s| s.replicas).unwrap_or(0))
        .unwrap_or(0);
    let ready = sum(&|r| st(r, |s| s.ready_replicas));
    let available = sum(&|r| st(r, |s| s.available_replicas));
    let spec_total =
        old.iter().map(|r| r.replicas).sum::<i32>() + new_rs.as_ref().map(|n| n.replicas).unwrap_or(0);
    let terminating = sum(&|r| st(r, |s| s.terminating_replicas));
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        // Kubernetes: the ReplicaSets' desired total minus available, never negative.
        unavailable_replicas: Some((spec_total - available).max(0)),
        terminating_replicas: Some(terminating),
        collision_count: (collision_count > 0 || prev.collision_count.is_some()).then_some(collision_count),
        conditions: None,
    };

    let tnow = Time(now);
    let mut conditions: Vec<DeploymentCondition> = prev.conditions.clone().unwrap_or_default();
    let min_ok = available >= replicas - sz.max_unavailable;
    set_condition(
        &mut conditions,
        "Available",
        if min_ok { "True" } else { "False" },
        if min_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
        if min_ok {
            "Deployment has minimum availability."
        } else {
            "Deployment does not have minimum availability."
        },
        &tnow,
    );
    let new_name = new_rs.as_ref().and_then(|n| n.obj.metadata.name.clone()).unwrap_or_default();
    let complete = updated == replicas && actual == replicas && available == replicas;
    let deadline = spec.progress_deadline_seconds.unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    let progressing = updated > prev.updated_replicas.unwrap_or(0)
        || (actual - updated) < (prev.replicas.unwrap_or(0) - prev.updated_replicas.unwrap_or(0))
        || ready > prev.ready_replicas.unwrap_or(0)
        || available > prev.available_replicas.unwrap_or(0);
    let mut requeue = None;
    if paused {
        set_condition(
            &mut conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &tnow,
        );
    } else if complete {
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            &tnow,
        );
    } else if created_new {
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{new_name}\""),
            &tnow,
        );
        requeue = Some(Duration::from_secs(u64::try_from(deadline.max(0)).unwrap_or(0)));
    } else if progressing
        || !conditions.iter().any(|c| c.type_ == "Progressing")
        || prev.observed_generation != d.metadata.generation
    {
        set_condition_touch(
            &mut conditions,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{new_name}\" is progressing."),
            &tnow,
            true,
        );
        requeue = Some(Duration::from_secs(u64::try_from(deadline.max(0)).unwrap_or(0)));
    } else if let Some(c) = conditions.iter().find(|c| c.type_ == "Progressing").cloned() {
        let from = c.last_update_time.as_ref().map(|t| t.0.as_second()).unwrap_or(now.as_second());
        let elapsed = now.as_second() - from;
        if c.reason.as_deref() != Some("NewReplicaSetAvailable")
            && c.reason.as_deref() != Some("ProgressDeadlineExceeded")
        {
            if elapsed >= i64::from(deadline) {
                set_condition(
                    &mut conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    &tnow,
                );
            } else {
                requeue =
                    Some(Duration::from_secs(u64::try_from(i64::from(deadline) - elapsed).unwrap_or(0)));
            }
        }
    }
    status.conditions = Some(conditions);

    // The deployment's own revision annotation.
    if !deleting && new_rs.is_some() {
        let have = d.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_REVISION)).cloned();
        let want = new_revision.max(new_rs.as_ref().map(|n| revision_of(&n.obj)).unwrap_or(0)).to_string();
        if have.as_deref() != Some(want.as_str()) {
            actions.push(Action::AnnotateOwner {
                annotations: BTreeMap::from([(ANNOTATION_REVISION.to_string(), want)]),
            });
        }
    }

    // cleanupDeployment: once complete, delete old empty ReplicaSets beyond the history limit.
    if complete && !deleting {
        let limit =
            usize::try_from(spec.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT).max(0))
                .unwrap_or(0);
        let mut cleanable: Vec<&Rs> = old
            .iter()
            .filter(|r| {
                r.replicas == 0
                    && r.obj.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && r.obj.metadata.deletion_timestamp.is_none()
            })
            .collect();
        cleanable.sort_by_key(|r| revision_of(&r.obj));
        let excess = cleanable.len().saturating_sub(limit);
        for r in cleanable.into_iter().take(excess) {
            actions.push(Action::DeleteReplicaSet {
                name: r.obj.metadata.name.clone().unwrap_or_default(),
                uid: r.obj.metadata.uid.clone(),
            });
        }
    }
    if waiting.is_none() && !complete {
        waiting = Some(format!("deployment {name}: {updated} of {replicas} updated, {available} available"));
    }
    Ok(Plan { actions, status, requeue_after: requeue, waiting_on: waiting })
}

/// `SetDeploymentCondition`: lastTransitionTime moves only when the status changes;
/// lastUpdateTime on every set.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
) {
    set_condition_touch(conditions, type_, status, reason, message, now, false)
}

/// `touch`: bump lastUpdateTime even when nothing else changes (progress was made).
fn set_condition_touch(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &Time,
    touch: bool,
) {
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let transition = match existing.map(|i| &conditions[i]) {
        Some(c)
            if !touch
                && c.status == status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message) =>
        {
            return;
        }
        Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => {
            c.last_transition_time.clone()
        }
        _ => Some(now.clone()),
    };
    let c = DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: transition,
    };
    match existing {
        Some(i) => conditions[i] = c,
        None => conditions.push(c),
    }
}
