//! Status arithmetic (`computeReplicaStatus`, `completeRollingUpdate`) and stead's Progressing
//! condition.
//!
//! Progressing (stead's addition; Kubernetes sets no StatefulSet conditions): True with reason
//! `RolloutComplete` when every replica exists, is Ready, available and (above the partition)
//! updated; True with reason `Progressing` while it moves, where `lastTransitionTime` is the
//! time of the last progress (a count improved, the generation changed); False with reason
//! `ProgressDeadlineExceeded` when it has not moved for the deadline (annotation
//! `stead.dev/progress-deadline-seconds`, default 600). The message names what it waits on.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSetCondition, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::revisions::Resolved;
use super::{
    ANNOTATION_PROGRESS_DEADLINE, CONDITION_PROGRESSING, Ctx, DEFAULT_PROGRESS_DEADLINE_SECONDS,
    LABEL_REVISION,
};
use crate::plan::{Action, Plan, earliest};
use crate::pods;

/// Counts over every pod of the set that exists (in range and condemned).
pub(super) fn count(
    cx: &Ctx<'_>,
    slots: &[Option<&Pod>],
    condemned: &[(i32, &Pod)],
    current: &str,
    update: &str,
) -> StatefulSetStatus {
    let mut st = StatefulSetStatus::default();
    let (mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0);
    for p in slots.iter().flatten().copied().chain(condemned.iter().map(|(_, p)| *p)) {
        st.replicas += 1;
        if pods::is_running_and_ready(p) {
            ready += 1;
        }
        if pods::is_running_and_available(p, cx.min_ready, cx.now) {
            available += 1;
        }
        if !pods::is_terminating(p) {
            let h = pods::label(p, LABEL_REVISION).unwrap_or("");
            if h == current {
                cur += 1;
            }
            if h == update {
                upd += 1;
            }
        }
    }
    st.ready_replicas = Some(ready);
    st.available_replicas = Some(available);
    st.current_replicas = Some(cur);
    st.updated_replicas = Some(upd);
    st
}

fn deadline(cx: &Ctx<'_>) -> i64 {
    cx.set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PROGRESS_DEADLINE))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    cx: &Ctx<'_>,
    mut st: StatefulSetStatus,
    revs: &Resolved,
    actions: Vec<Action>,
    mut requeue: Option<Duration>,
    waiting: Option<String>,
    rolling: bool,
    partition: i32,
) -> Plan<StatefulSetStatus> {
    let prev = cx.set.status.clone().unwrap_or_default();
    st.observed_generation = cx.set.metadata.generation;
    st.collision_count = Some(revs.collision_count);
    st.current_revision = Some(revs.current.name.clone());
    st.update_revision = Some(revs.update.name.clone());
    let ready = st.ready_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    // completeRollingUpdate; stead also promotes under OnDelete (Kubernetes #73492, fixed upstream
    // by PR #136833).
    if updated == st.replicas && ready == st.replicas && st.replicas == cx.replicas {
        st.current_replicas = Some(updated);
        st.current_revision = st.update_revision.clone();
    }

    // Progressing.
    let want_updated = if rolling { cx.replicas - partition } else { 0 };
    let complete = st.replicas == cx.replicas
        && ready == cx.replicas
        && available == cx.replicas
        && updated >= want_updated
        && waiting.is_none();
    let old_pods = |s: &StatefulSetStatus| s.replicas - s.updated_replicas.unwrap_or(0);
    let moved = prev.observed_generation != cx.set.metadata.generation
        || updated > prev.updated_replicas.unwrap_or(0)
        || ready > prev.ready_replicas.unwrap_or(0)
        || available > prev.available_replicas.unwrap_or(0)
        || old_pods(&st) < old_pods(&prev)
        || (st.replicas - cx.replicas).abs() < (prev.replicas - cx.replicas).abs();
    let before =
        prev.conditions.as_deref().unwrap_or_default().iter().find(|c| c.type_ == CONDITION_PROGRESSING);
    let now = Time(cx.now);
    let limit = deadline(cx);
    let set_name = cx.name;
    let condition = if complete {
        let keep = before.filter(|c| c.reason.as_deref() == Some("RolloutComplete"));
        StatefulSetCondition {
            type_: CONDITION_PROGRESSING.into(),
            status: "True".into(),
            reason: Some("RolloutComplete".into()),
            message: Some(format!("statefulset {set_name} has {} ready, updated replicas", cx.replicas)),
            last_transition_time: keep.and_then(|c| c.last_transition_time.clone()).or(Some(now)),
        }
    } else {
        let since = before
            .filter(|c| c.reason.as_deref() == Some("Progressing") && !moved)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0);
        let what = waiting.clone().unwrap_or_else(|| {
            format!("{updated} of {} updated, {ready} ready, {available} available", cx.replicas)
        });
        match since {
            Some(t) if cx.now.as_second().saturating_sub(t.as_second()) >= limit => StatefulSetCondition {
                type_: CONDITION_PROGRESSING.into(),
                status: "False".into(),
                reason: Some("ProgressDeadlineExceeded".into()),
                message: Some(format!(
                    "statefulset {set_name} has not progressed for {limit}s; waiting: {what}"
                )),
                last_transition_time: Some(now),
            },
            Some(t) => {
                let left = limit - cx.now.as_second().saturating_sub(t.as_second());
                requeue = earliest(requeue, Some(Duration::from_secs(left.unsigned_abs())));
                StatefulSetCondition {
                    type_: CONDITION_PROGRESSING.into(),
                    status: "True".into(),
                    reason: Some("Progressing".into()),
                    message: Some(format!("statefulset {set_name} is progressing; waiting: {what}")),
                    last_transition_time: Some(Time(t)),
                }
            }
            None => {
                let exceeded =
                    before.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded") && !moved);
                match exceeded {
                    Some(c) => c.clone(),
                    None => {
                        requeue = earliest(requeue, Some(Duration::from_secs(limit.unsigned_abs())));
                        StatefulSetCondition {
                            type_: CONDITION_PROGRESSING.into(),
                            status: "True".into(),
                            reason: Some("Progressing".into()),
                            message: Some(format!("statefulset {set_name} is progressing; waiting: {what}")),
                            last_transition_time: Some(now),
                        }
                    }
                }
            }
        }
    };
    let mut conditions: Vec<StatefulSetCondition> = prev
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != CONDITION_PROGRESSING)
        .collect();
    conditions.push(condition);
    st.conditions = Some(conditions);
    let waiting = match waiting {
        None if !complete => Some(format!(
            "statefulset {set_name}: {updated} of {} updated, {ready} ready, {available} available",
            cx.replicas
        )),
        w => w,
    };
    Plan { actions, status: st, requeue_after: requeue, waiting_on: waiting }
}
