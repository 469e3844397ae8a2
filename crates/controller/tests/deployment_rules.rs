//! Deployment and ReplicaSet planners: one rule per case, plus a property over a simulated loop
//! (the rollout never goes above replicas+maxSurge pods or below replicas-maxUnavailable
//! available, and converges).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use stead_controller::deployment::{self, ANNOTATION_REVISION, DeploymentObserved, LABEL_POD_TEMPLATE_HASH};
use stead_controller::plan::Action;
use stead_controller::pods;
use stead_controller::replicaset::{self, ReplicaSetObserved};

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn deploy(replicas: i32, surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> Deployment {
    let labels = BTreeMap::from([("app".to_string(), "api".to_string())]);
    Deployment {
        metadata: ObjectMeta {
            name: Some("api".into()),
            namespace: Some("default".into()),
            uid: Some("uid-api".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: surge,
                    max_unavailable: unavailable,
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("api:1".into()),
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

fn set_image(d: &mut Deployment, image: &str) {
    let s = d.spec.as_mut().unwrap();
    s.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
    d.metadata.generation = Some(d.metadata.generation.unwrap() + 1);
}

#[derive(Clone, Debug)]
struct World {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    now: Timestamp,
    uid: u64,
}

impl World {
    fn new(d: Deployment) -> World {
        World { d, rss: vec![], pods: vec![], now: t0(), uid: 0 }
    }

    fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("uid-{}", self.uid)
    }

    fn rs_mut(&mut self, name: &str) -> Option<&mut ReplicaSet> {
        self.rss.iter_mut().find(|r| r.metadata.name.as_deref() == Some(name))
    }

    /// One deployment sync; returns the plan's actions.
    fn sync_deployment(&mut self) -> Vec<Action> {
        let obs = DeploymentObserved { replica_sets: &self.rss, pods: &self.pods };
        let plan = deployment::plan(&self.d, &obs, self.now).unwrap();
        for a in &plan.actions {
            match a.clone() {
                Action::CreateReplicaSet(mut r) => {
                    assert!(self.rs_mut(r.metadata.name.as_deref().unwrap()).is_none());
                    r.metadata.uid = Some(self.next_uid());
                    r.metadata.creation_timestamp = Some(Time(self.now));
                    r.metadata.generation = Some(1);
                    self.rss.push(r);
                }
                Action::ScaleReplicaSet { name, replicas, annotations } => {
                    let r = self.rs_mut(&name).unwrap();
                    r.spec.as_mut().unwrap().replicas = Some(replicas);
                    r.metadata.annotations.get_or_insert_with(Default::default).extend(annotations);
                }
                Action::AnnotateReplicaSet { name, annotations } => {
                    self.rs_mut(&name)
                        .unwrap()
                        .metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .extend(annotations);
                }
                Action::DeleteReplicaSet { name, .. } => {
                    self.rss.retain(|r| r.metadata.name.as_deref() != Some(&name))
                }
                Action::AnnotateOwner { annotations } => {
                    self.d.metadata.annotations.get_or_insert_with(Default::default).extend(annotations)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        self.d.status = Some(plan.status);
        plan.actions
    }

    fn sync_replica_sets(&mut self) {
        for i in 0..self.rss.len() {
            let rs = self.rss[i].clone();
            let plan = replicaset::plan(&rs, &ReplicaSetObserved { pods: &self.pods }, self.now).unwrap();
            for a in plan.actions {
                match a {
                    Action::CreatePod(mut p) => {
                        let n = p.metadata.name.clone().unwrap();
                        assert!(
                            self.pods.iter().all(|x| x.metadata.name.as_deref() != Some(&n)),
                            "{n} twice"
                        );
                        p.metadata.uid = Some(self.next_uid());
                        p.metadata.creation_timestamp = Some(Time(self.now));
                        p.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
                        self.pods.push(p);
                    }
                    Action::DeletePod { name, .. } => {
                        let now = self.now;
                        if let Some(p) =
                            self.pods.iter_mut().find(|p| p.metadata.name.as_deref() == Some(&name))
                        {
                            p.metadata.deletion_timestamp.get_or_insert(Time(now));
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            self.rss[i].status = Some(plan.status);
        }
    }

    fn kubelet(&mut self, ready: bool) {
        let now = self.now;
        self.pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        for p in &mut self.pods {
            if ready && !pods::is_ready(p) {
                let s = p.status.get_or_insert_with(Default::default);
                s.phase = Some("Running".into());
                s.conditions = Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(now)),
                    ..Default::default()
                }]);
            }
        }
        self.now = Timestamp::from_second(self.now.as_second() + 1).unwrap();
    }

    fn settle(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.sync_deployment();
            self.sync_replica_sets();
            self.kubelet(true);
        }
        self.sync_deployment();
    }

    fn replicas_of(&self) -> Vec<(String, i32)> {
        self.rss
            .iter()
            .map(|r| {
                (
                    r.metadata.annotations.as_ref().unwrap()[ANNOTATION_REVISION].clone(),
                    r.spec.as_ref().unwrap().replicas.unwrap(),
                )
            })
            .collect()
    }
}

#[test]
fn a_new_deployment_creates_its_replicaset_named_by_template_hash() {
    let mut w = World::new(deploy(3, None, None));
    let actions = w.sync_deployment();
    let Action::CreateReplicaSet(rs) = &actions[0] else { panic!("{actions:?}") };
    let hash = &rs.metadata.labels.as_ref().unwrap()[LABEL_POD_TEMPLATE_HASH];
    assert_eq!(rs.metadata.name.as_deref(), Some(format!("api-{hash}").as_str()));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.selector.match_labels.as_ref().unwrap()[LABEL_POD_TEMPLATE_HASH], *hash);
    assert_eq!(
        spec.template.as_ref().unwrap().metadata.as_ref().unwrap().labels.as_ref().unwrap()
            [LABEL_POD_TEMPLATE_HASH],
        *hash
    );
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (a[ANNOTATION_REVISION].as_str(), a["deployment.kubernetes.io/max-replicas"].as_str()),
        ("1", "4")
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("Deployment", Some(true), Some(true))
    );
    assert!(actions.contains(&Action::AnnotateOwner {
        annotations: BTreeMap::from([(ANNOTATION_REVISION.into(), "1".into())])
    }));
}

#[test]
fn replicaset_pods_get_five_char_suffixes_and_template_labels() {
    let mut w = World::new(deploy(3, None, None));
    w.sync_deployment();
    w.sync_replica_sets();
    let rs_name = w.rss[0].metadata.name.clone().unwrap();
    let names: Vec<String> = w.pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    assert_eq!(names.len(), 3);
    for n in &names {
        let suffix = n.strip_prefix(&format!("{rs_name}-")).unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), 3);
    assert!(w.pods[0].metadata.labels.as_ref().unwrap().contains_key(LABEL_POD_TEMPLATE_HASH));
}

#[test]
fn replicaset_deletes_unready_pods_first() {
    let mut w = World::new(deploy(3, None, None));
    w.settle(3);
    // one pod not ready
    let victim = w.pods[1].metadata.name.clone().unwrap();
    w.pods[1].status.as_mut().unwrap().conditions = None;
    w.rss[0].spec.as_mut().unwrap().replicas = Some(2);
    let plan = replicaset::plan(&w.rss[0], &ReplicaSetObserved { pods: &w.pods }, w.now).unwrap();
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].object_name(), victim);
}

#[test]
fn rolling_update_surges_then_scales_old_down_by_kubernetes_rounding() {
    // 10 replicas, 25% surge rounds up to 3, 25% unavailable rounds down to 2.
    let mut w = World::new(deploy(10, None, None));
    w.settle(3);
    set_image(&mut w.d, "api:2");
    let actions = w.sync_deployment();
    let Action::CreateReplicaSet(rs) = &actions[0] else { panic!() };
    assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(3));
    w.sync_replica_sets();
    // New pods not ready: old scales down only by maxUnavailable (2).
    w.sync_deployment();
    assert_eq!(w.replicas_of(), [("1".to_string(), 8), ("2".to_string(), 3)]);
    w.settle(20);
    assert_eq!(w.replicas_of(), [("1".to_string(), 0), ("2".to_string(), 10)]);
    let st = w.d.status.clone().unwrap();
    assert_eq!(
        (st.updated_replicas, st.available_replicas, st.unavailable_replicas),
        (Some(10), Some(10), Some(0))
    );
    let progressing = st.conditions.unwrap().into_iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
}

#[test]
fn recreate_scales_old_to_zero_and_waits_for_its_pods() {
    let mut d = deploy(2, None, None);
    d.spec.as_mut().unwrap().strategy =
        Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
    let mut w = World::new(d);
    w.settle(3);
    set_image(&mut w.d, "api:2");
    let actions = w.sync_deployment();
    let verbs: Vec<&str> = actions.iter().map(|a| a.verb()).collect();
    assert_eq!(verbs, ["create-replicaset", "scale-replicaset", "annotate-owner"]);
    assert_eq!(w.replicas_of(), [("1".to_string(), 0), ("2".to_string(), 0)]);
    w.sync_replica_sets(); // old pods now terminating
    w.sync_deployment();
    assert_eq!(w.replicas_of()[1].1, 0, "new waits while old pods exist");
    w.kubelet(true); // old pods gone
    w.sync_deployment();
    assert_eq!(w.replicas_of()[1].1, 2);
}

#[test]
fn rollback_reuses_the_matching_replicaset_with_a_new_revision() {
    let mut w = World::new(deploy(2, None, None));
    w.settle(3);
    set_image(&mut w.d, "api:2");
    w.settle(10);
    set_image(&mut w.d, "api:1");
    let actions = w.sync_deployment();
    assert_eq!(actions[0].verb(), "annotate-replicaset");
    assert_eq!(w.rss.len(), 2, "no new ReplicaSet");
    w.settle(10);
    assert_eq!(w.d.metadata.annotations.as_ref().unwrap()[ANNOTATION_REVISION], "3");
    assert_eq!(w.replicas_of(), [("3".to_string(), 2), ("2".to_string(), 0)]);
}

#[test]
fn history_limit_deletes_the_oldest_empty_replicasets() {
    let mut d = deploy(1, None, None);
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let mut w = World::new(d);
    for i in 1..=4 {
        set_image(&mut w.d, &format!("api:{i}"));
        w.settle(8);
    }
    let revs: Vec<String> = w.replicas_of().into_iter().map(|(r, _)| r).collect();
    assert_eq!(revs, ["3", "4"]);
}

/// A pod that stays Pending (its container cannot be created; the kubelet retries it) is not
/// replaced: one pod, the same one, past the progress deadline. Only a Failed pod is replaced.
#[test]
fn a_pending_pod_is_never_replaced() {
    let mut w = World::new(deploy(1, None, None));
    w.sync_deployment();
    w.sync_replica_sets();
    let uid = w.pods[0].metadata.uid.clone();
    let waiting: k8s_openapi::api::core::v1::ContainerStatus = serde_json::from_value(serde_json::json!({
        "name": "app", "image": "nginx", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "CreateContainerError", "message": "no command"}},
    }))
    .unwrap();
    w.pods[0].status.as_mut().unwrap().container_statuses = Some(vec![waiting]);
    for _ in 0..20 {
        w.now = Timestamp::from_second(w.now.as_second() + 60).unwrap();
        w.sync_deployment();
        w.sync_replica_sets();
    }
    assert_eq!(w.pods.len(), 1);
    assert_eq!(w.pods[0].metadata.uid, uid);
    assert!(w.pods[0].metadata.deletion_timestamp.is_none());
    assert_eq!(pods::phase(&w.pods[0]), "Pending");
    // A Failed pod, by contrast, is replaced.
    w.pods[0].status.as_mut().unwrap().phase = Some("Failed".into());
    w.sync_replica_sets();
    assert_eq!(w.pods.len(), 2);
}

#[test]
fn progress_deadline_exceeded_when_pods_never_become_ready() {
    let mut d = deploy(1, None, None);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
    let mut w = World::new(d);
    w.sync_deployment();
    w.sync_replica_sets();
    w.sync_deployment();
    w.now = Timestamp::from_second(w.now.as_second() + 31).unwrap();
    w.sync_deployment();
    let c = w.d.status.clone().unwrap().conditions.unwrap();
    let p = c.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some("ProgressDeadlineExceeded")));
    let a = c.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(a.reason.as_deref(), Some("MinimumReplicasUnavailable"));
}

#[test]
fn bad_percentages_are_errors() {
    let d = deploy(2, Some(IntOrString::String("lots".into())), None);
    let err = deployment::plan(&d, &DeploymentObserved::default(), t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.strategy.rollingUpdate.maxSurge is not an integer or a percentage: \"lots\""
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn rolling_updates_stay_within_surge_and_unavailability(
        replicas in 1..8i32,
        surge in 0..4i32,
        unavailable in 0..4i32,
        pct in any::<bool>(),
    ) {
        let (s, u) = if pct {
            (IntOrString::String(format!("{}%", surge * 25)), IntOrString::String(format!("{}%", unavailable * 25)))
        } else {
            (IntOrString::Int(surge), IntOrString::Int(unavailable))
        };
        let mut w = World::new(deploy(replicas, Some(s.clone()), Some(u.clone())));
        w.settle(4);
        let round_up = |v: &IntOrString| match v { IntOrString::Int(i) => *i, IntOrString::String(p) => (replicas * p.trim_end_matches('%').parse::<i32>().unwrap() + 99) / 100 };
        let round_down = |v: &IntOrString| match v { IntOrString::Int(i) => *i, IntOrString::String(p) => replicas * p.trim_end_matches('%').parse::<i32>().unwrap() / 100 };
        let max_surge = round_up(&s);
        let mut max_unavailable = round_down(&u).min(replicas);
        if max_surge == 0 && max_unavailable == 0 { max_unavailable = 1; }
        set_image(&mut w.d, "api:2");
        for _ in 0..(6 * replicas as usize + 20) {
            w.sync_deployment();
            let total: i32 = w.rss.iter().map(|r| r.spec.as_ref().unwrap().replicas.unwrap()).sum();
            prop_assert!(total <= replicas + max_surge, "{} pods wanted > {} + {}", total, replicas, max_surge);
            w.sync_replica_sets();
            let available = w.pods.iter().filter(|p| pods::is_ready(p) && !pods::is_terminating(p)).count() as i32;
            prop_assert!(available >= replicas - max_unavailable, "{} available < {} - {}", available, replicas, max_unavailable);
            w.kubelet(true);
        }
        let st = w.d.status.clone().unwrap();
        prop_assert_eq!(st.updated_replicas, Some(replicas));
        prop_assert_eq!(st.available_replicas, Some(replicas));
        prop_assert_eq!(st.replicas, Some(replicas));
    }
}
