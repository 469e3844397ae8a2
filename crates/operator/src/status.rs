//! The StatefulService's status, computed from its workload's status (pure: no IO, the clock is
//! passed in), and the condition transitions that deserve an Event.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use stead_api::types::{ConditionStatus, StatefulService, StatefulServiceStatus, condition_types};

/// What the operator needs from the Deployment or StatefulSet it applied.
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
    /// Reads a live Deployment or StatefulSet (JSON as the server returned it).
    pub fn from_json(live: &serde_json::Value) -> Option<Self> {
        match live.get("kind")?.as_str()? {
            "Deployment" => Some(Self::from_deployment(&serde_json::from_value(live.clone()).ok()?)),
            "StatefulSet" => Some(Self::from_stateful_set(&serde_json::from_value(live.clone()).ok()?)),
            _ => None,
        }
    }

    fn from_deployment(d: &Deployment) -> Self {
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

    fn from_stateful_set(s: &StatefulSet) -> Self {
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
}

/// The pods' selector as the scale subresource wants it.
pub fn selector(svc: &StatefulService) -> String {
    format!("{}={}", stead_render::SELECTOR_LABEL, svc.name_any())
}

/// Status when the service's children are in place.
pub fn from_workload(svc: &StatefulService, w: &WorkloadState, now: Timestamp) -> StatefulServiceStatus {
    let rolled_out = w.rolled_out();
    let ready = rolled_out && w.ready >= w.spec_replicas;
    let ready_msg = format!("{}/{} replicas ready ({})", w.ready, w.spec_replicas, w.reference);
    let conditions = vec![
        if ready {
            cond(condition_types::READY, ConditionStatus::True, "ReplicasReady", ready_msg)
        } else {
            cond(condition_types::READY, ConditionStatus::False, "ReplicasNotReady", ready_msg)
        },
        if rolled_out {
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

/// Status when the StatefulStore the service names does not exist: Degraded, children untouched.
pub fn store_missing(svc: &StatefulService, store: &str, now: Timestamp) -> StatefulServiceStatus {
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

/// A condition change worth an Event: (warning?, reason, message).
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
/// type when its status did not change (so an unchanged status compares equal and is not written).
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

    fn svc() -> StatefulService {
        let mut s = StatefulService::new("shop", Default::default());
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

    #[test]
    fn ready_when_all_replicas_ready_and_rolled_out() {
        let st = from_workload(&svc(), &workload(2), Timestamp::UNIX_EPOCH);
        let cs = st.conditions.unwrap();
        assert_eq!((cs[0].type_.as_str(), cs[0].status.as_str()), ("Ready", "True"));
        assert_eq!((cs[1].type_.as_str(), cs[1].status.as_str()), ("Progressing", "False"));
        assert_eq!((cs[2].type_.as_str(), cs[2].status.as_str()), ("Degraded", "False"));
        assert_eq!(st.selector.as_deref(), Some("cloudstate.io/stateful-service=shop"));
        assert_eq!(st.observed_generation, Some(2));
    }

    #[test]
    fn unchanged_status_keeps_transition_times() {
        let mut s = svc();
        let first = from_workload(&s, &workload(1), Timestamp::UNIX_EPOCH);
        s.status = Some(first.clone());
        let later = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(from_workload(&s, &workload(1), later), first);
        let ready = from_workload(&s, &workload(2), later);
        assert_eq!(ready.conditions.as_ref().unwrap()[0].last_transition_time, Time(later));
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
    fn store_missing_is_one_transition() {
        let mut s = svc();
        let missing = store_missing(&s, "pg", Timestamp::UNIX_EPOCH);
        let t = transitions(&s, &missing);
        assert_eq!(t.len(), 1);
        assert!(t[0].warning && t[0].reason == "StoreMissing");
        s.status = Some(missing.clone());
        assert_eq!(store_missing(&s, "pg", Timestamp::UNIX_EPOCH), missing);
        assert!(transitions(&s, &missing).is_empty());
    }
}
