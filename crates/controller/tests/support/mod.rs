//! Fixtures and a simulated world for the planner tests: apply a plan's actions the way the API
//! server, the garbage collector and the kubelet would, one step at a time.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetOrdinals,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, PodCondition, PodSpec, PodStatus,
    PodTemplateSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use stead_controller::plan::{Action, DeleteReason, Plan};
use stead_controller::statefulset::{self, LABEL_REVISION, StatefulSetObserved};

pub fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A StatefulSet `web` in `default` with `replicas` and a one-container template.
pub fn sts(replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() },
            service_name: Some("web".into()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "web")])), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("busybox:1".into()),
                        command: Some(vec!["sleep".into(), "infinity".into()]),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

pub fn spec(set: &mut StatefulSet) -> &mut StatefulSetSpec {
    set.spec.get_or_insert_with(Default::default)
}

pub fn parallel(mut set: StatefulSet) -> StatefulSet {
    spec(&mut set).pod_management_policy = Some("Parallel".into());
    set
}

pub fn with_start(mut set: StatefulSet, start: i32) -> StatefulSet {
    spec(&mut set).ordinals = Some(StatefulSetOrdinals { start: Some(start) });
    set
}

pub fn with_claim(mut set: StatefulSet, name: &str, size: &str) -> StatefulSet {
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size.into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    spec(&mut set).volume_claim_templates.get_or_insert_with(Vec::new).push(claim);
    set
}

pub fn with_retention(mut set: StatefulSet, when_deleted: &str, when_scaled: &str) -> StatefulSet {
    spec(&mut set).persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some(when_deleted.into()),
            when_scaled: Some(when_scaled.into()),
        });
    set
}

pub fn with_rolling(
    mut set: StatefulSet,
    partition: Option<i32>,
    max_unavailable: Option<IntOrString>,
) -> StatefulSet {
    spec(&mut set).update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy { partition, max_unavailable }),
    });
    set
}

pub fn on_delete(mut set: StatefulSet) -> StatefulSet {
    spec(&mut set).update_strategy =
        Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    set
}

/// Change the template (a new image) and bump the generation, as an apply would.
pub fn set_image(set: &mut StatefulSet, image: &str) {
    let s = spec(set);
    if let Some(c) = s.template.spec.as_mut().and_then(|p| p.containers.first_mut()) {
        c.image = Some(image.into());
    }
    set.metadata.generation = Some(set.metadata.generation.unwrap_or(0) + 1);
}

pub fn set_replicas(set: &mut StatefulSet, n: i32) {
    spec(set).replicas = Some(n);
    set.metadata.generation = Some(set.metadata.generation.unwrap_or(0) + 1);
}

/// One line per action: `verb name` plus the reason for deletions.
pub fn summary<S>(plan: &Plan<S>) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::DeletePod { reason, .. } => format!("{} {} {:?}", a.verb(), a.object_name(), reason),
            Action::CreateRevision(_) | Action::UpdateRevision { .. } | Action::DeleteRevision { .. } => {
                a.verb().to_string()
            }
            _ => format!("{} {}", a.verb(), a.object_name()),
        })
        .collect()
}

pub fn ordinal(name: &str) -> i32 {
    name.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(-1)
}

/// What the simulated kubelet does with a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    Pending,
    Running,
    Ready,
    Failed,
}

/// A simulated API server + garbage collector + kubelet for one StatefulSet.
#[derive(Debug, Clone)]
pub struct World {
    pub set: StatefulSet,
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub revisions: Vec<ControllerRevision>,
    pub now: Timestamp,
    pub next_uid: u64,
    /// Every claim name the garbage collector removed.
    pub collected_claims: Vec<String>,
}

impl World {
    pub fn new(set: StatefulSet) -> World {
        World {
            set,
            pods: vec![],
            claims: vec![],
            revisions: vec![],
            now: t0(),
            next_uid: 1,
            collected_claims: vec![],
        }
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("uid-{}", self.next_uid)
    }

    pub fn plan(&self) -> Plan<k8s_openapi::api::apps::v1::StatefulSetStatus> {
        let observed =
            StatefulSetObserved { pods: &self.pods, claims: &self.claims, revisions: &self.revisions };
        statefulset::plan(&self.set, &observed, self.now).expect("plan")
    }

    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.metadata.name.as_deref() == Some(name))
    }

    pub fn pod_mut(&mut self, name: &str) -> Option<&mut Pod> {
        self.pods.iter_mut().find(|p| p.metadata.name.as_deref() == Some(name))
    }

    pub fn claim(&self, name: &str) -> Option<&PersistentVolumeClaim> {
        self.claims.iter().find(|c| c.metadata.name.as_deref() == Some(name))
    }

    pub fn revision_of(&self, name: &str) -> Option<String> {
        self.pod(name).and_then(|p| p.metadata.labels.as_ref()?.get(LABEL_REVISION).cloned())
    }

    /// Apply one action as the API server would. Panics on what the API server would refuse
    /// in a way the planner must never cause (a second pod with a taken name).
    pub fn apply(&mut self, action: &Action) {
        match action.clone() {
            Action::CreateRevision(mut r) => {
                let name = r.metadata.name.clone().unwrap();
                if self.revisions.iter().any(|x| x.metadata.name.as_deref() == Some(name.as_str())) {
                    return;
                }
                r.metadata.uid = Some(self.uid());
                self.revisions.push(r);
            }
            Action::UpdateRevision { name, revision } => {
                if let Some(r) =
                    self.revisions.iter_mut().find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
                {
                    r.revision = revision;
                }
            }
            Action::DeleteRevision { name } => {
                self.revisions.retain(|r| r.metadata.name.as_deref() != Some(name.as_str()))
            }
            Action::CreatePvc(mut c) => {
                let name = c.metadata.name.clone().unwrap();
                if self.claim(&name).is_some() {
                    return;
                }
                c.metadata.uid = Some(self.uid());
                self.claims.push(c);
            }
            Action::ResizePvc { name, storage } => {
                if let Some(c) =
                    self.claims.iter_mut().find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
                {
                    let spec = c.spec.get_or_insert_with(Default::default);
                    let res = spec.resources.get_or_insert_with(Default::default);
                    res.requests.get_or_insert_with(Default::default).insert("storage".into(), storage);
                }
            }
            Action::SetPvcOwners { name, owner_references } => {
                if let Some(c) =
                    self.claims.iter_mut().find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
                {
                    c.metadata.owner_references = Some(owner_references);
                }
            }
            Action::CreatePod(mut p) => {
                let name = p.metadata.name.clone().unwrap();
                assert!(self.pod(&name).is_none(), "a second pod named {name} was created");
                p.metadata.uid = Some(self.uid());
                p.metadata.creation_timestamp = Some(Time(self.now));
                p.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
                self.pods.push(p);
            }
            Action::DeletePod { name, uid, .. } => {
                let now = self.now;
                if let Some(p) = self.pod_mut(&name)
                    && (uid.is_none() || p.metadata.uid == uid)
                    && p.metadata.deletion_timestamp.is_none()
                {
                    p.metadata.deletion_timestamp = Some(Time(now));
                }
            }
            Action::PatchPodLabels { name, labels, .. } => {
                if let Some(p) = self.pod_mut(&name) {
                    p.metadata.labels.get_or_insert_with(Default::default).extend(labels);
                }
            }
            other => panic!("unexpected action for a statefulset: {other:?}"),
        }
    }

    /// Plan, apply every action, write the status. Returns the plan.
    pub fn sync(&mut self) -> Plan<k8s_openapi::api::apps::v1::StatefulSetStatus> {
        let plan = self.plan();
        for a in &plan.actions {
            self.apply(a);
        }
        self.set.status = Some(plan.status.clone());
        plan
    }

    pub fn set_state(&mut self, name: &str, state: PodState) {
        let now = self.now;
        if let Some(p) = self.pod_mut(name) {
            let status = p.status.get_or_insert_with(Default::default);
            let (phase, ready) = match state {
                PodState::Pending => ("Pending", false),
                PodState::Running => ("Running", false),
                PodState::Ready => ("Running", true),
                PodState::Failed => ("Failed", false),
            };
            status.phase = Some(phase.into());
            let was_ready = status
                .conditions
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .filter(|c| c.status == "True")
                .map(|c| c.last_transition_time.clone());
            let ltt = match (was_ready, ready) {
                (Some(t), true) => t,
                _ => Some(Time(now)),
            };
            status.conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True".into() } else { "False".into() },
                last_transition_time: ltt,
                ..Default::default()
            }]);
        }
    }

    /// The kubelet finishes terminating a pod: the object is gone; the garbage collector then
    /// removes claims whose every owner is gone.
    pub fn remove_pod(&mut self, name: &str) {
        self.pods.retain(|p| p.metadata.name.as_deref() != Some(name));
        self.collect();
    }

    pub fn collect(&mut self) {
        let mut live: Vec<String> = self.pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        live.extend(self.set.metadata.uid.clone());
        let mut kept = vec![];
        for c in std::mem::take(&mut self.claims) {
            let refs = c.metadata.owner_references.clone().unwrap_or_default();
            if !refs.is_empty() && refs.iter().all(|r| !live.contains(&r.uid)) {
                self.collected_claims.push(c.metadata.name.clone().unwrap());
            } else {
                kept.push(c);
            }
        }
        self.claims = kept;
    }

    /// Let every pod settle: terminating pods go, others become Ready; sync in between. Stops
    /// after `max` rounds.
    pub fn settle(&mut self, max: usize) {
        for _ in 0..max {
            self.sync();
            let names: Vec<(String, bool)> = self
                .pods
                .iter()
                .map(|p| (p.metadata.name.clone().unwrap(), p.metadata.deletion_timestamp.is_some()))
                .collect();
            for (n, terminating) in names {
                if terminating {
                    self.remove_pod(&n);
                } else {
                    self.set_state(&n, PodState::Ready);
                }
            }
            self.now = Timestamp::from_second(self.now.as_second() + 1).unwrap();
        }
        self.sync();
    }

    pub fn pod_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
        v.sort_by_key(|n| ordinal(n));
        v
    }

    pub fn is_deleted_for(&self, action: &Action, want: DeleteReason) -> bool {
        matches!(action, Action::DeletePod { reason, .. } if *reason == want)
    }
}
