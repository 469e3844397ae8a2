//! The ReplicaSet planner (`pkg/controller/replicaset`): keep `spec.replicas` active pods.
//!
//! Pods are named `<rs>-<5 chars>` like the API server's `generateName`, but deterministically:
//! the suffix for counter n is FNV-1a of `<rs>/<n>` written in the safe alphabet, for n = 0, 1,
//! ..., skipping any name a pod (of any owner, even terminating) holds. So the planner stays pure,
//! and a name is reused only after its old pod is gone, as the API server allows.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::hash::fnv1a_32;
use crate::meta::{controller_ref, is_controlled_by};
use crate::plan::{Action, DeleteReason, Plan, earliest};
use crate::pods;

/// Kubernetes' `BurstReplicas`: at most this many creations or deletions per sync.
pub const BURST_REPLICAS: usize = 500;

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Why a ReplicaSet cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplicaSetError {
    #[error("replicaset has no name")]
    NoName,
    #[error("replicaset {name}: spec.replicas is negative: {replicas}")]
    NegativeReplicas { name: String, replicas: i32 },
}

/// What the loop observed: every pod in the ReplicaSet's namespace (names of pods it does not
/// own are only kept from reuse).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaSetObserved<'a> {
    pub pods: &'a [Pod],
}

/// The n-th candidate suffix for a ReplicaSet's pods.
pub fn name_suffix(rs_name: &str, n: u64) -> String {
    let mut h = fnv1a_32(&[rs_name.as_bytes(), b"/", n.to_string().as_bytes()]);
    let mut out = String::with_capacity(5);
    for _ in 0..5 {
        out.push(char::from(SAFE[(h % 27) as usize]));
        h /= 27;
    }
    out
}

fn is_active(p: &Pod) -> bool {
    !pods::is_failed(p) && !pods::is_succeeded(p) && !pods::is_terminating(p)
}

/// `ActivePodsWithRanks` order: the pod to delete first sorts first.
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let phase_rank = |p: &Pod| match pods::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let ready_since = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(pods::is_ready(a).cmp(&pods::is_ready(b)))
        // Ready for less time first: later ready_since first.
        .then(ready_since(b).cmp(&ready_since(a)))
        .then(restarts(b).cmp(&restarts(a)))
        // Newer first.
        .then(created(b).cmp(&created(a)))
        .then(a.metadata.name.cmp(&b.metadata.name))
}

/// The pod a ReplicaSet creates.
fn new_pod(rs: &ReplicaSet, rs_name: &str, name: String) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{rs_name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Plan one sync of a ReplicaSet.
pub fn plan(
    rs: &ReplicaSet,
    observed: &ReplicaSetObserved<'_>,
    now: Timestamp,
) -> Result<Plan<ReplicaSetStatus>, ReplicaSetError> {
    let name = rs.metadata.name.as_deref().filter(|n| !n.is_empty()).ok_or(ReplicaSetError::NoName)?;
    let spec = rs.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    if replicas < 0 {
        return Err(ReplicaSetError::NegativeReplicas { name: name.into(), replicas });
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let owned: Vec<&Pod> =
        observed.pods.iter().filter(|p| is_controlled_by(&p.metadata, "ReplicaSet", &rs.metadata)).collect();
    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let want = usize::try_from(replicas).unwrap_or(0);
    let mut actions = Vec::new();
    if rs.metadata.deletion_timestamp.is_none() {
        if active.len() < want {
            let mut taken: BTreeSet<String> =
                observed.pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
            let mut n: u64 = 0;
            for _ in 0..(want - active.len()).min(BURST_REPLICAS) {
                let pod_name = loop {
                    let candidate = format!("{name}-{}", name_suffix(name, n));
                    n += 1;
                    if !taken.contains(&candidate) {
                        break candidate;
                    }
                };
                taken.insert(pod_name.clone());
                actions.push(Action::CreatePod(new_pod(rs, name, pod_name)));
            }
        } else if active.len() > want {
            active.sort_by(|a, b| deletion_order(a, b));
            for p in active.iter().take((active.len() - want).min(BURST_REPLICAS)) {
                actions.push(Action::DeletePod {
                    name: pods::name(p).to_string(),
                    uid: p.metadata.uid.clone(),
                    reason: DeleteReason::Excess,
                });
            }
        }
    }
    // Status (calculateStatus) over the pods as observed.
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let all_active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(all_active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let mut requeue = None;
    for p in &all_active {
        if let Some(d) = pods::available_in(p, min_ready, now).filter(|d| !d.is_zero()) {
            requeue = earliest(requeue, Some(d));
        }
    }
    let status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        })),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        terminating_replicas: Some(
            i32::try_from(owned.iter().filter(|p| pods::is_terminating(p)).count()).unwrap_or(i32::MAX),
        ),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    let waiting = (status.ready_replicas != Some(replicas)).then(|| {
        format!("replicaset {name}: {} of {replicas} pods ready", status.ready_replicas.unwrap_or(0))
    });
    Ok(Plan { actions, status, requeue_after: requeue, waiting_on: waiting })
}
