//! The StatefulSet planner: one sync of Kubernetes' StatefulSet controller, as data.
//!
//! Order of one pass (as `updateStatefulSet`): resolve revisions; sort owned pods into in-range
//! slots and condemned ones; for each slot in ascending ordinal, delete Failed/Succeeded pods,
//! create missing ones (claims first), and under OrderedReady stop at the first pod that is
//! missing, terminating, not Running and Ready, or not yet available; set claim owner references
//! for the retention policy; delete condemned pods highest ordinal first (one at a time, healthy
//! or ended only, under OrderedReady); then, if nothing blocked and the strategy is RollingUpdate, delete
//! outdated pods from the highest ordinal down to the partition, within maxUnavailable; last,
//! truncate revision history. The status is computed as Kubernetes computes it, plus stead's
//! Progressing condition.

mod claims;
mod pod;
mod revisions;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub use claims::claim_name;
pub use pod::{ordinal_of, pod_name};
pub use revisions::{revision_hash, revision_name};

use crate::meta::{MetaError, is_controlled_by, scaled_value};
use crate::plan::{Action, DeleteReason, Plan, earliest};
use crate::pods;
use claims::Retention;

/// `statefulset.kubernetes.io/pod-name`: the pod's own name, for per-pod Services.
pub const LABEL_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// `apps.kubernetes.io/pod-index`: the ordinal (KEP-4017).
pub const LABEL_POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// `controller-revision-hash`: the name of the pod's ControllerRevision.
pub const LABEL_REVISION: &str = "controller-revision-hash";
/// `controller.kubernetes.io/hash`: on a ControllerRevision, the hash part of its name.
pub const LABEL_REVISION_HASH_OF_DATA: &str = "controller.kubernetes.io/hash";
/// stead's progress deadline for StatefulSets, in seconds (default 600), as an annotation on the
/// set since the StatefulSet spec has no such field.
pub const ANNOTATION_PROGRESS_DEADLINE: &str = "stead.dev/progress-deadline-seconds";
/// The condition stead adds to StatefulSet status.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Default `revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// The most replicas one set may ask for: a plan holds one slot per replica.
pub const MAX_REPLICAS: i32 = 100_000;
/// Default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i64 = 600;

/// Why a StatefulSet cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatefulSetError {
    #[error("statefulset has no name")]
    NoName,
    #[error("statefulset {name}: spec.replicas is negative: {replicas}")]
    NegativeReplicas { name: String, replicas: i32 },
    #[error("statefulset {name}: spec.ordinals.start is negative: {start}")]
    NegativeStart { name: String, start: i32 },
    #[error("statefulset {name}: spec.replicas is more than {MAX_REPLICAS}: {replicas}")]
    TooManyReplicas { name: String, replicas: i32 },
    #[error(
        "statefulset {name}: the last ordinal does not fit in 32 bits: start {start} + replicas {replicas}"
    )]
    OrdinalOverflow { name: String, start: i32, replicas: i32 },
    #[error("controllerrevision {name} has unreadable data: {reason}")]
    RevisionData { name: String, reason: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What the loop observed for one StatefulSet. Pass every object of each kind in the set's
/// namespace (or at least every one whose name could be the set's): the planner picks the ones
/// the set controls, and uses the others only to never reuse a taken name.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatefulSetObserved<'a> {
    pub pods: &'a [Pod],
    pub claims: &'a [PersistentVolumeClaim],
    pub revisions: &'a [ControllerRevision],
}

struct Ctx<'a> {
    set: &'a StatefulSet,
    name: &'a str,
    replicas: i32,
    monotonic: bool,
    min_ready: i32,
    now: Timestamp,
    retention: Retention,
}

/// Plan one sync of `set` against the observed world at time `now`.
pub fn plan(
    set: &StatefulSet,
    observed: &StatefulSetObserved<'_>,
    now: Timestamp,
) -> Result<Plan<StatefulSetStatus>, StatefulSetError> {
    let name = set.metadata.name.as_deref().filter(|n| !n.is_empty()).ok_or(StatefulSetError::NoName)?;
    let spec = set.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    if replicas < 0 {
        return Err(StatefulSetError::NegativeReplicas { name: name.into(), replicas });
    }
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    if start < 0 {
        return Err(StatefulSetError::NegativeStart { name: name.into(), start });
    }
    if replicas > MAX_REPLICAS {
        return Err(StatefulSetError::TooManyReplicas { name: name.into(), replicas });
    }
    if start.checked_add(replicas).is_none() {
        return Err(StatefulSetError::OrdinalOverflow { name: name.into(), start, replicas });
    }
    let cx = Ctx {
        set,
        name,
        replicas,
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        min_ready: spec.min_ready_seconds.unwrap_or(0).max(0),
        now,
        retention: Retention::of(set),
    };
    let strategy = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate");
    let rolling = strategy != "OnDelete";
    let rolling_update = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    let partition = rolling_update.and_then(|r| r.partition).unwrap_or(0).clamp(0, replicas);
    let max_unavailable = scaled_value(
        rolling_update.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&IntOrString::Int(1)),
        replicas,
        false,
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
    )?
    .max(1);

    let revs = revisions::resolve(set, observed.revisions)?;
    let mut actions = revs.actions.clone();
    let current = &revs.current;
    let update = &revs.update;

    // Sort the set's pods into slots and condemned (descending ordinal).
    let taken: BTreeSet<&str> = observed.pods.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
    let mut slots: Vec<Option<&Pod>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in observed.pods.iter().filter(|p| is_controlled_by(&p.metadata, "StatefulSet", &set.metadata)) {
        let Some(ord) = ordinal_of(name, pods::name(p)) else { continue };
        match usize::try_from(i64::from(ord) - i64::from(start)) {
            Ok(i) if i < slots.len() => slots[i] = Some(p),
            _ => condemned.push((ord, p)),
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let claims_by_name: BTreeMap<&str, &PersistentVolumeClaim> =
        observed.claims.iter().filter_map(|c| c.metadata.name.as_deref().map(|n| (n, c))).collect();

    let mut st = status::count(&cx, &slots, &condemned, &current.name, &update.name);
    let mut requeue: Option<Duration> = None;
    let mut waiting: Option<String> = None;

    if set.metadata.deletion_timestamp.is_some() {
        // A set being deleted only updates its status; the garbage collector removes the rest.
        actions.clear();
        return Ok(status::finish(&cx, st, &revs, actions, requeue, None, rolling, partition));
    }

    let healthy =
        |p: &Pod| !pods::is_terminating(p) && pods::is_running_and_available(p, cx.min_ready, cx.now);
    // The first unhealthy pod (Kubernetes' isHealthy: Running, Ready, not terminating; no
    // minReadySeconds): in-range ascending, then condemned ascending.
    let first_unhealthy: Option<&str> = slots
        .iter()
        .flatten()
        .copied()
        .chain(condemned.iter().rev().map(|(_, p)| *p))
        .find(|p| pods::is_terminating(p) || !pods::is_running_and_ready(p))
        .map(pods::name);

    let mut exit = false;
    for (i, slot) in slots.iter().enumerate() {
        let ord = start.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
        let pname = pod_name(name, ord);
        match slot {
            None => {
                if taken.contains(pname.as_str()) {
                    // A pod of this name exists but is not ours: never create a second one.
                    waiting.get_or_insert(format!(
                        "pod {pname} exists and is not controlled by statefulset {name}"
                    ));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                    continue;
                }
                let mut blocked = None;
                let mut claim_actions = Vec::new();
                for (t, cname, found) in claims::claims_of(set, ord, &claims_by_name) {
                    match found {
                        Some(c) if c.metadata.deletion_timestamp.is_some() => {
                            blocked = Some(format!("claim {cname} is being deleted"));
                        }
                        Some(c) if claims::is_stale(c, cx.retention, None) => {
                            blocked = Some(format!("claim {cname} still belongs to a deleted pod"));
                        }
                        Some(_) => {}
                        None => claim_actions.push(Action::CreatePvc(claims::new_claim(
                            set,
                            t,
                            ord,
                            cx.retention,
                        ))),
                    }
                }
                if let Some(why) = blocked {
                    waiting.get_or_insert(format!("pod {pname} waits: {why}"));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                    continue;
                }
                actions.extend(claim_actions);
                let at_current = rolling && i32::try_from(i).unwrap_or(i32::MAX) < partition;
                let (template, rev) = if at_current {
                    (&current.template, current.name.as_str())
                } else {
                    (&update.template, update.name.as_str())
                };
                actions.push(Action::CreatePod(pod::new_pod(set, template, ord, rev)));
                st.replicas += 1;
                if rev == current.name {
                    st.current_replicas = Some(st.current_replicas.unwrap_or(0) + 1);
                }
                if rev == update.name {
                    st.updated_replicas = Some(st.updated_replicas.unwrap_or(0) + 1);
                }
                if cx.monotonic {
                    waiting.get_or_insert(format!("pod {pname} is being created"));
                    exit = true;
                    break;
                }
            }
            Some(p) => {
                let uid = p.metadata.uid.clone();
                if pods::is_failed(p) || pods::is_succeeded(p) {
                    if !pods::is_terminating(p) {
                        actions.push(Action::DeletePod {
                            name: pname.clone(),
                            uid,
                            reason: DeleteReason::Finished,
                        });
                    }
                    waiting.get_or_insert(format!(
                        "pod {pname} has finished ({}) and is recreated",
                        pods::phase(p)
                    ));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                    continue;
                }
                let hash = pods::label(p, LABEL_REVISION).unwrap_or("");
                if !pods::is_terminating(p)
                    && !pods::is_running_and_ready(p)
                    && hash != current.name
                    && hash != update.name
                {
                    // stead's fix for Kubernetes #67250.
                    actions.push(Action::DeletePod {
                        name: pname.clone(),
                        uid,
                        reason: DeleteReason::StuckRevision,
                    });
                    waiting.get_or_insert(format!(
                        "pod {pname} of revision {hash} is not Ready and is replaced"
                    ));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                    continue;
                }
                if pods::is_pending(p) {
                    for (t, _, found) in claims::claims_of(set, ord, &claims_by_name) {
                        if found.is_none() {
                            actions.push(Action::CreatePvc(claims::new_claim(set, t, ord, cx.retention)));
                        }
                    }
                }
                if pods::is_terminating(p) {
                    waiting.get_or_insert(format!("pod {pname} is terminating"));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                    continue;
                }
                if !pods::is_running_and_ready(p) {
                    waiting.get_or_insert(format!("pod {pname} is not Running and Ready"));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                }
                if let Some(d) = pods::available_in(p, cx.min_ready, cx.now)
                    && !d.is_zero()
                {
                    requeue = earliest(requeue, Some(d));
                    waiting.get_or_insert(format!(
                        "pod {pname} is Ready but not yet available (minReadySeconds)"
                    ));
                    if cx.monotonic {
                        exit = true;
                        break;
                    }
                }
                // Identity repair.
                let want = pod::identity_labels(name, ord);
                let labels = p.metadata.labels.clone().unwrap_or_default();
                if want.iter().any(|(k, v)| labels.get(k) != Some(v)) {
                    actions.push(Action::PatchPodLabels {
                        name: pname.clone(),
                        uid: p.metadata.uid.clone(),
                        labels: want,
                    });
                }
            }
        }
    }

    // Claims of existing pods: retention owner references (condemned first set before any
    // deletion, which keeps a crash between the two safe) and resizes.
    for (i, slot) in slots.iter().enumerate() {
        let ord = start.saturating_add(i32::try_from(i).unwrap_or(i32::MAX));
        for (t, cname, found) in claims::claims_of(set, ord, &claims_by_name) {
            let Some(c) = found else { continue };
            if let Some(refs) = claims::desired_owners(set, c, *slot, false, cx.retention) {
                actions.push(Action::SetPvcOwners { name: cname.clone(), owner_references: refs });
            }
            if let Some(a) = claims::resize(t, c) {
                actions.push(a);
            }
        }
    }
    for (ord, p) in &condemned {
        for (_, cname, found) in claims::claims_of(set, *ord, &claims_by_name) {
            let Some(c) = found else { continue };
            if let Some(refs) = claims::desired_owners(set, c, Some(p), true, cx.retention) {
                actions.push(Action::SetPvcOwners { name: cname, owner_references: refs });
            }
        }
    }

    if !exit {
        for (_, p) in &condemned {
            let pname = pods::name(p).to_string();
            if pods::is_terminating(p) {
                waiting.get_or_insert(format!("pod {pname} is terminating"));
                if cx.monotonic {
                    exit = true;
                    break;
                }
                continue;
            }
            let first = first_unhealthy == Some(pname.as_str());
            // stead's addition: a condemned pod that has already ended (Failed or Succeeded) is
            // removed without waiting. Kubernetes blocks on it unless it is the first unhealthy pod,
            // and since nothing recreates a condemned pod, a dead one above another unhealthy one
            // would stall the scale-down for good.
            let ended = pods::is_failed(p) || pods::is_succeeded(p);
            if cx.monotonic && !healthy(p) && !first && !ended {
                waiting.get_or_insert(format!("pod {pname} is not healthy; scale down waits"));
                if let Some(d) = pods::available_in(p, cx.min_ready, cx.now).filter(|d| !d.is_zero()) {
                    requeue = earliest(requeue, Some(d));
                }
                exit = true;
                break;
            }
            actions.push(Action::DeletePod {
                name: pname.clone(),
                uid: p.metadata.uid.clone(),
                reason: DeleteReason::ScaleDown,
            });
            let hash = pods::label(p, LABEL_REVISION).unwrap_or("");
            if hash == current.name {
                st.current_replicas = Some(st.current_replicas.unwrap_or(0) - 1);
            }
            if hash == update.name {
                st.updated_replicas = Some(st.updated_replicas.unwrap_or(0) - 1);
            }
            if cx.monotonic {
                waiting.get_or_insert(format!("pod {pname} is being removed (scale down)"));
                exit = true;
                break;
            }
        }
    }

    if !exit && rolling {
        let unavailable = slots.iter().filter(|s| s.is_none_or(|p| !healthy(p))).count();
        let budget = usize::try_from(max_unavailable).unwrap_or(1).saturating_sub(unavailable);
        let min = usize::try_from(partition).unwrap_or(0);
        let mut deleted = 0;
        if budget == 0 {
            let outdated = slots
                .iter()
                .skip(min)
                .flatten()
                .any(|p| pods::label(p, LABEL_REVISION) != Some(&update.name));
            if outdated {
                waiting.get_or_insert(format!("rolling update waits: {unavailable} pod(s) unavailable"));
            }
        }
        for slot in slots.iter().skip(min).rev() {
            if deleted >= budget {
                break;
            }
            let Some(p) = slot else { continue };
            let hash = pods::label(p, LABEL_REVISION).unwrap_or("");
            if hash != update.name && !pods::is_terminating(p) {
                actions.push(Action::DeletePod {
                    name: pods::name(p).to_string(),
                    uid: p.metadata.uid.clone(),
                    reason: DeleteReason::Update,
                });
                if hash == current.name {
                    st.current_replicas = Some(st.current_replicas.unwrap_or(0) - 1);
                }
                deleted += 1;
            }
        }
    }

    // History: keep current, update and every pod's revision; drop the oldest others.
    let mut live: BTreeSet<&str> = BTreeSet::from([current.name.as_str(), update.name.as_str()]);
    for p in observed.pods.iter().filter(|p| is_controlled_by(&p.metadata, "StatefulSet", &set.metadata)) {
        if let Some(h) = pods::label(p, LABEL_REVISION) {
            live.insert(h);
        }
    }
    let limit = spec.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    actions.extend(revisions::truncate(&revs.owned, &live, limit));

    Ok(status::finish(&cx, st, &revs, actions, requeue, waiting, rolling, partition))
}
