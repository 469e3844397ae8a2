//! The StatefulService's own controller as data, the one both engines run: its children (render's
//! objects) or a hold, then its status, conditions and what it waits on. Pure: the engine reads
//! the service, its store and its workload, calls [`plan_service`], applies (and prunes) the
//! children the plan gives, then asks the plan for the status ([`ServicePlan::status`]) with the
//! workload as it stands after that apply, and writes the status when it differs.
//!
//! The rules, once for both engines:
//! - A service that names a StatefulStore which does not exist is held: its children are neither
//!   applied nor pruned, so no pod ever runs without the store it was declared with (what runs is
//!   what ran before, or nothing). `Degraded=True` with reason `StoreMissing` names the store;
//!   `Ready` and `Progressing` keep their last value, or are `Unknown` when there is none. The
//!   store's appearance ends the hold.
//! - Otherwise the children are exactly [`render_service`]'s, and the status is the workload's:
//!   `Ready` once the workload has observed its generation, has as many replicas as its spec, all
//!   updated and ready; `Progressing` until then; `Degraded` while the workload reports a failure
//!   (a Deployment's progress deadline or `ReplicaFailure`). A workload not created yet counts as
//!   the rendered one with nothing observed.
//! - A condition's `lastTransitionTime` moves only when its status changes, so an unchanged
//!   status compares equal to the last one and is not written again.
//!
//! [`transitions`] names the condition changes worth an Event (Degraded on or off, Ready on).

use crate::labels::SELECTOR_LABEL;
use crate::{RenderOptions, Rendered, render_service};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use stead_api::Manifest;
use stead_api::types::{
    ConditionStatus, StatefulService, StatefulServiceStatus, StatefulStore, condition_types,
};

/// What to do with the service's children.
#[derive(Clone, Debug, PartialEq)]
pub enum Children {
    /// Apply exactly these objects (render's), and prune the service's children not among them.
    Apply(Rendered),
    /// Leave every child as it is: the StatefulStore named `store` does not exist.
    Hold { store: String },
}

/// One planning pass over one StatefulService.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan<'a> {
    svc: &'a StatefulService,
    pub children: Children,
}

/// The status to write, and what the service waits on in words (None when it is Ready).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceStatus {
    pub status: StatefulServiceStatus,
    pub waiting_on: Option<String>,
}

/// Plans `svc`'s children. `store` is the StatefulStore the service names, if it exists.
pub fn plan_service<'a>(
    svc: &'a StatefulService,
    store: Option<&StatefulStore>,
    opts: &RenderOptions,
) -> ServicePlan<'a> {
    let children = match (svc.spec.store_name(), store) {
        (Some(name), None) => Children::Hold { store: name.to_owned() },
        _ => Children::Apply(render_service(svc, store, opts)),
    };
    ServicePlan { svc, children }
}

impl ServicePlan<'_> {
    /// The service's status once the children are in place. `workload` is the Deployment or
    /// StatefulSet as it stands after they were applied (None: not created yet). A hold ignores
    /// it: the counts stay as last written.
    pub fn status(&self, workload: Option<&WorkloadState>, now: Timestamp) -> ServiceStatus {
        let svc = self.svc;
        match &self.children {
            Children::Hold { store } => ServiceStatus {
                status: store_missing(svc, store, now),
                waiting_on: Some(format!(
                    "StatefulStore {store:?} in namespace {:?} to exist",
                    svc.namespace().unwrap_or_default()
                )),
            },
            Children::Apply(rendered) => {
                let rendered_workload = || rendered.objects.iter().find_map(WorkloadState::unobserved);
                let Some(w) = workload.cloned().or_else(rendered_workload) else {
                    // Render always produces a workload; without one there is nothing to count.
                    return ServiceStatus {
                        status: StatefulServiceStatus {
                            observed_generation: svc.metadata.generation,
                            selector: Some(selector(svc)),
                            ..Default::default()
                        },
                        waiting_on: None,
                    };
                };
                let status = from_workload(svc, &w, now);
                let waiting_on = (!w.ready()).then(|| {
                    format!(
                        "{}/{} replicas ready, {} updated ({})",
                        w.ready, w.spec_replicas, w.updated, w.reference
                    )
                });
                ServiceStatus { status, waiting_on }
            }
        }
    }
}

/// What the service's status needs from the Deployment or StatefulSet it runs as.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadState {
    /// `deployment/name` or `statefulset/name`.
    pub reference: String,
    pub generation: i64,
    pub observed_generation: i64,
    pub spec_replicas: i32,
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
    /// A failure the workload's controller reports: (reason, message).
    pub failure: Option<(String, String)>,
}

impl WorkloadState {
    /// Reads a Deployment or StatefulSet given as JSON (as a store or an API server holds it).
    pub fn from_json(object: &serde_json::Value) -> Option<Self> {
        match object.get("kind")?.as_str()? {
            "Deployment" => Some(Self::from_deployment(&serde_json::from_value(object.clone()).ok()?)),
            "StatefulSet" => Some(Self::from_stateful_set(&serde_json::from_value(object.clone()).ok()?)),
            _ => None,
        }
    }

    /// A rendered workload before anything observed it.
    fn unobserved(m: &Manifest) -> Option<Self> {
        let mut w = match m {
            Manifest::Deployment(d) => Self::from_deployment(d),
            Manifest::StatefulSet(s) => Self::from_stateful_set(s),
            _ => return None,
        };
        w.generation = w.generation.max(1);
        Some(w)
    }

    pub fn from_deployment(d: &Deployment) -> Self {
        let status = d.status.clone().unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let failure = conditions.iter().find_map(|c| {
            let deadline = c.type_ == "Progressing" && c.status == "False";
            let replica_failure = c.type_ == "ReplicaFailure" && c.status == "True";
            (deadline || replica_failure).then(|| {
                (c.reason.clone().unwrap_or_else(|| c.type_.clone()), c.message.clone().unwrap_or_default())
            })
        });
        Self {
            reference: format!("deployment/{}", d.name_any()),
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            spec_replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            replicas: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            failure,
        }
    }

    pub fn from_stateful_set(s: &StatefulSet) -> Self {
        let status = s.status.clone().unwrap_or_default();
        Self {
            reference: format!("statefulset/{}", s.name_any()),
            generation: s.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            spec_replicas: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            replicas: status.replicas,
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            failure: None,
        }
    }

    fn rolled_out(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated >= self.spec_replicas
            && self.replicas == self.spec_replicas
    }

    fn ready(&self) -> bool {
        self.rolled_out() && self.ready >= self.spec_replicas
    }
}

/// The pods' selector as the scale subresource wants it.
pub fn selector(svc: &StatefulService) -> String {
    format!("{SELECTOR_LABEL}={}", svc.name_any())
}

fn from_workload(svc: &StatefulService, w: &WorkloadState, now: Timestamp) -> StatefulServiceStatus {
    let ready_msg = format!("{}/{} replicas ready ({})", w.ready, w.spec_replicas, w.reference);
    let conditions = vec![
        if w.ready() {
            cond(condition_types::READY, ConditionStatus::True, "ReplicasReady", ready_msg)
        } else {
            cond(condition_types::READY, ConditionStatus::False, "ReplicasNotReady", ready_msg)
        },
        if w.rolled_out() {
            cond(condition_types::PROGRESSING, ConditionStatus::False, "RolloutComplete", String::new())
        } else {
            let msg = format!("{}/{} replicas updated ({})", w.updated, w.spec_replicas, w.reference);
            cond(condition_types::PROGRESSING, ConditionStatus::True, "RollingOut", msg)
        },
        match &w.failure {
            Some((reason, message)) => cond(
                condition_types::DEGRADED,
                ConditionStatus::True,
                reason,
                format!("{}: {message}", w.reference),
            ),
            None => cond(condition_types::DEGRADED, ConditionStatus::False, "AsExpected", String::new()),
        },
    ];
    StatefulServiceStatus {
        observed_generation: svc.metadata.generation,
        replicas: Some(w.replicas),
        ready_replicas: Some(w.ready),
        updated_replicas: Some(w.updated),
        selector: Some(selector(svc)),
        conditions: Some(finish(svc, conditions, now)),
    }
}

/// Degraded for the missing store; the other conditions and the counts kept from the last status.
fn store_missing(svc: &StatefulService, store: &str, now: Timestamp) -> StatefulServiceStatus {
    let previous = svc.status.clone().unwrap_or_default();
    let message = format!(
        "StatefulStore {store:?} not found in namespace {:?}; children are left as they are until it exists",
        svc.namespace().unwrap_or_default()
    );
    let keep_or_unknown = |type_: &str| {
        find(svc, type_).cloned().map_or_else(
            || cond(type_, ConditionStatus::Unknown, "StoreMissing", message.clone()),
            |c| {
                let status = match c.status.as_str() {
                    "True" => ConditionStatus::True,
                    "False" => ConditionStatus::False,
                    _ => ConditionStatus::Unknown,
                };
                cond(type_, status, &c.reason, c.message)
            },
        )
    };
    let conditions = vec![
        keep_or_unknown(condition_types::READY),
        keep_or_unknown(condition_types::PROGRESSING),
        cond(condition_types::DEGRADED, ConditionStatus::True, "StoreMissing", message.clone()),
    ];
    StatefulServiceStatus {
        observed_generation: svc.metadata.generation,
        selector: Some(selector(svc)),
        conditions: Some(finish(svc, conditions, now)),
        ..previous
    }
}

/// A condition change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The Events a status change deserves: Degraded turning on or off, Ready turning on.
pub fn transitions(svc: &StatefulService, new: &StatefulServiceStatus) -> Vec<Transition> {
    let mut out = Vec::new();
    let new_cond = |t: &str| new.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == t));
    let was_true = |t: &str| find(svc, t).is_some_and(|c| c.status == "True");
    if let Some(c) = new_cond(condition_types::DEGRADED) {
        match (was_true(condition_types::DEGRADED), c.status == "True") {
            (false, true) => {
                out.push(Transition { warning: true, reason: c.reason.clone(), message: c.message.clone() })
            }
            (true, false) => out.push(Transition {
                warning: false,
                reason: "Recovered".into(),
                message: "the service is no longer degraded".into(),
            }),
            _ => {}
        }
    }
    if let Some(c) = new_cond(condition_types::READY)
        && c.status == "True"
        && !was_true(condition_types::READY)
    {
        out.push(Transition { warning: false, reason: "Ready".into(), message: c.message.clone() });
    }
    out
}

fn find<'a>(svc: &'a StatefulService, type_: &str) -> Option<&'a Condition> {
    svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn cond(type_: &str, status: ConditionStatus, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// Sets observedGeneration and lastTransitionTime: kept from the previous condition of the same
/// type when its status did not change.
fn finish(svc: &StatefulService, conditions: Vec<Condition>, now: Timestamp) -> Vec<Condition> {
    conditions
        .into_iter()
        .map(|mut c| {
            c.observed_generation = svc.metadata.generation;
            c.last_transition_time = match find(svc, &c.type_) {
                Some(prev) if prev.status == c.status => prev.last_transition_time.clone(),
                _ => Time(now),
            };
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stead_api::types::Datastore;

    fn svc(store: Option<&str>) -> StatefulService {
        let spec = stead_api::types::StatefulServiceSpec {
            datastore: store.map(|s| Datastore { name: s.into(), config: None }),
            ..Default::default()
        };
        let mut s = StatefulService::new("shop", spec);
        s.metadata.namespace = Some("ns".into());
        s.metadata.generation = Some(2);
        s
    }

    fn workload(ready: i32) -> WorkloadState {
        WorkloadState {
            reference: "deployment/shop".into(),
            generation: 3,
            observed_generation: 3,
            spec_replicas: 2,
            replicas: 2,
            ready,
            updated: 2,
            failure: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn ready_when_all_replicas_ready_and_rolled_out() {
        let s = svc(None);
        let plan = plan_service(&s, None, &RenderOptions::default());
        assert!(matches!(plan.children, Children::Apply(_)));
        let st = plan.status(Some(&workload(2)), at(0));
        assert_eq!(st.waiting_on, None);
        let cs = st.status.conditions.unwrap();
        assert_eq!((cs[0].type_.as_str(), cs[0].status.as_str()), ("Ready", "True"));
        assert_eq!((cs[1].type_.as_str(), cs[1].status.as_str()), ("Progressing", "False"));
        assert_eq!((cs[2].type_.as_str(), cs[2].status.as_str()), ("Degraded", "False"));
        assert_eq!(st.status.selector.as_deref(), Some("cloudstate.io/stateful-service=shop"));
        assert_eq!(st.status.observed_generation, Some(2));
    }

    #[test]
    fn a_workload_not_created_yet_is_the_rendered_one_unobserved() {
        let s = svc(None);
        let st = plan_service(&s, None, &RenderOptions::default()).status(None, at(0));
        assert_eq!(st.waiting_on.as_deref(), Some("0/1 replicas ready, 0 updated (deployment/shop)"));
        let cs = st.status.conditions.unwrap();
        assert_eq!((cs[0].status.as_str(), cs[1].status.as_str()), ("False", "True"));
        assert_eq!(st.status.replicas, Some(0));
    }

    #[test]
    fn a_workload_that_has_not_observed_its_generation_is_not_ready() {
        let s = svc(None);
        let plan = plan_service(&s, None, &RenderOptions::default());
        let stale = WorkloadState { generation: 4, ..workload(2) };
        let cs = plan.status(Some(&stale), at(0)).status.conditions.unwrap();
        assert_eq!((cs[0].status.as_str(), cs[1].status.as_str()), ("False", "True"));
    }

    #[test]
    fn unchanged_status_keeps_transition_times() {
        let mut s = svc(None);
        let first =
            plan_service(&s, None, &RenderOptions::default()).status(Some(&workload(1)), at(0)).status;
        s.status = Some(first.clone());
        let plan = plan_service(&s, None, &RenderOptions::default());
        assert_eq!(plan.status(Some(&workload(1)), at(1_000)).status, first);
        let ready = plan.status(Some(&workload(2)), at(1_000)).status;
        assert_eq!(ready.conditions.as_ref().unwrap()[0].last_transition_time, Time(at(1_000)));
        assert_eq!(
            transitions(&s, &ready),
            vec![Transition {
                warning: false,
                reason: "Ready".into(),
                message: "2/2 replicas ready (deployment/shop)".into()
            }]
        );
    }

    #[test]
    fn a_missing_store_holds_the_children_and_is_one_transition() {
        let mut s = svc(Some("pg"));
        let plan = plan_service(&s, None, &RenderOptions::default());
        assert_eq!(plan.children, Children::Hold { store: "pg".into() });
        let missing = plan.status(Some(&workload(2)), at(0));
        assert_eq!(missing.waiting_on.as_deref(), Some("StatefulStore \"pg\" in namespace \"ns\" to exist"));
        let missing = missing.status;
        assert_eq!(missing.replicas, None, "counts are not read from a held workload");
        let t = transitions(&s, &missing);
        assert_eq!(t.len(), 1);
        assert!(t[0].warning && t[0].reason == "StoreMissing");
        s.status = Some(missing.clone());
        let again = plan_service(&s, None, &RenderOptions::default()).status(None, at(5));
        assert_eq!(again.status, missing);
        assert!(transitions(&s, &missing).is_empty());
        // The store appears: render's children, with the store.
        let store = StatefulStore::new("pg", Default::default());
        let plan = plan_service(&s, Some(&store), &RenderOptions::default());
        assert!(matches!(plan.children, Children::Apply(ref r) if r.warnings.is_empty()));
    }
}
