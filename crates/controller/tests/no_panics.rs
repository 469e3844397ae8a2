//! Arbitrary, partly nonsensical inputs: every planner returns a plan or an error, never panics,
//! and the same input gives the same plan.

mod support;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec,
    RollingUpdateDeployment, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use stead_controller::deployment::{self, DeploymentObserved};
use stead_controller::replicaset::{self, ReplicaSetObserved};
use stead_controller::statefulset::{self, StatefulSetObserved};
use support::*;

fn int_or_string() -> impl Strategy<Value = Option<IntOrString>> {
    prop_oneof![
        Just(None),
        (-2..5i32).prop_map(|i| Some(IntOrString::Int(i))),
        prop::sample::select(vec!["0%", "50%", "150%", "x%", "abc", "", "-10%"])
            .prop_map(|s| Some(IntOrString::String(s.into()))),
    ]
}

fn owner(kind: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: "web".into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn a_pod() -> impl Strategy<Value = Pod> {
    (
        prop::sample::select(vec!["web-0", "web-1", "web-2", "web-01", "web-x", "web-9", "other-1", "web-"]),
        prop::sample::select(vec!["", "Pending", "Running", "Failed", "Succeeded", "Unknown"]),
        any::<bool>(),
        any::<bool>(),
        0..3u8,
        prop::sample::select(vec!["", "web-abc", "junk"]),
    )
        .prop_map(|(name, phase, ready, deleting, own, rev)| Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                deletion_timestamp: deleting.then(|| Time(t0())),
                owner_references: match own {
                    0 => None,
                    1 => Some(vec![owner("StatefulSet", "uid-web")]),
                    _ => Some(vec![owner("StatefulSet", "uid-other")]),
                },
                labels: Some(labels(&[("app", "web"), ("controller-revision-hash", rev)])),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: (!phase.is_empty()).then(|| phase.to_string()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
}

fn a_claim() -> impl Strategy<Value = PersistentVolumeClaim> {
    (prop::sample::select(vec!["data-web-0", "data-web-1", "data-web-5"]), 0..4u8, any::<bool>()).prop_map(
        |(name, own, deleting)| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                deletion_timestamp: deleting.then(|| Time(t0())),
                owner_references: match own {
                    0 => None,
                    1 => Some(vec![owner("StatefulSet", "uid-web")]),
                    2 => Some(vec![owner("StatefulSet", "uid-other")]),
                    _ => Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Pod".into(),
                        name: "web-1".into(),
                        uid: "uid-gone".into(),
                        ..Default::default()
                    }]),
                },
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

fn a_revision() -> impl Strategy<Value = ControllerRevision> {
    (prop::sample::select(vec!["web-abc", "web-def", "junk"]), 0..3u8, -1..4i64).prop_map(
        |(name, data, revision)| ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: Some(vec![owner("StatefulSet", "uid-web")]),
                ..Default::default()
            },
            data: match data {
                0 => None,
                1 => Some(RawExtension(serde_json::json!({"spec": {"template": 5}}))),
                _ => Some(RawExtension(serde_json::json!({"spec": {"template": {"metadata": {}}}}))),
            },
            revision,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn statefulset_plans_never_panic(
        replicas in -2..6i32,
        start in -1..4i32,
        partition in -3..8i32,
        max_unavailable in int_or_string(),
        policy in prop::sample::select(vec!["OrderedReady", "Parallel", "Bogus"]),
        strategy in prop::sample::select(vec!["RollingUpdate", "OnDelete", "Bogus"]),
        min_ready in -5..5i32,
        current in prop::sample::select(vec![None, Some("web-abc"), Some("missing")]),
        pods in prop::collection::vec(a_pod(), 0..6),
        claims in prop::collection::vec(a_claim(), 0..4),
        revisions in prop::collection::vec(a_revision(), 0..4),
    ) {
        let mut set = with_retention(with_claim(with_rolling(sts(replicas), Some(partition), max_unavailable), "data", "1Gi"), "Delete", "Delete");
        if start >= 0 {
            set = with_start(set, start);
        } else {
            spec(&mut set).ordinals = Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(start) });
        }
        spec(&mut set).pod_management_policy = Some(policy.into());
        spec(&mut set).update_strategy.as_mut().unwrap().type_ = Some(strategy.into());
        spec(&mut set).min_ready_seconds = Some(min_ready);
        set.status = Some(StatefulSetStatus { current_revision: current.map(String::from), ..Default::default() });
        let observed = StatefulSetObserved { pods: &pods, claims: &claims, revisions: &revisions };
        let a = statefulset::plan(&set, &observed, t0());
        let b = statefulset::plan(&set, &observed, t0());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn deployment_and_replicaset_plans_never_panic(
        replicas in -2..6i32,
        surge in int_or_string(),
        unavailable in int_or_string(),
        recreate in any::<bool>(),
        rs_replicas in prop::collection::vec(-1..4i32, 0..3),
        pods in prop::collection::vec(a_pod(), 0..6),
    ) {
        let s = sts(1).spec.unwrap();
        let d = Deployment {
            metadata: ObjectMeta { name: Some("web".into()), uid: Some("uid-web".into()), ..Default::default() },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: s.selector.clone(),
                strategy: Some(DeploymentStrategy {
                    type_: Some(if recreate { "Recreate" } else { "RollingUpdate" }.into()),
                    rolling_update: Some(RollingUpdateDeployment { max_surge: surge, max_unavailable: unavailable }),
                }),
                template: s.template.clone(),
                ..Default::default()
            }),
            status: None,
        };
        let rss: Vec<ReplicaSet> = rs_replicas.iter().enumerate().map(|(i, r)| ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{i}")),
                uid: Some("uid-web".into()),
                owner_references: Some(vec![owner("Deployment", "uid-web")]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(*r), selector: s.selector.clone(), template: (i == 0).then(|| s.template.clone()), ..Default::default() }),
            status: None,
        }).collect();
        let a = deployment::plan(&d, &DeploymentObserved { replica_sets: &rss, pods: &pods }, t0());
        prop_assert_eq!(a, deployment::plan(&d, &DeploymentObserved { replica_sets: &rss, pods: &pods }, t0()));
        for rs in &rss {
            let p = replicaset::plan(rs, &ReplicaSetObserved { pods: &pods }, t0());
            prop_assert_eq!(p, replicaset::plan(rs, &ReplicaSetObserved { pods: &pods }, t0()));
        }
    }
}
