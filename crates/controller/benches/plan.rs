//! How long one StatefulSet plan takes at 3, 30 and 100 replicas, against a baseline measured in
//! the same run (a JSON round trip of the StatefulSet itself). Prints per-plan times and ratios;
//! asserts nothing. Run: `cargo bench -p stead-controller`.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use stead_controller::Action;
use stead_controller::statefulset::{self, StatefulSetObserved};

fn set(replicas: i32) -> StatefulSet {
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
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
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            service_name: Some("web".into()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
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

/// The world after every pod was created and became Ready: the steady-state plan.
fn settled(
    replicas: i32,
    now: Timestamp,
) -> (StatefulSet, Vec<Pod>, Vec<k8s_openapi::api::apps::v1::ControllerRevision>) {
    let mut s = set(replicas);
    let plan = statefulset::plan(&s, &StatefulSetObserved::default(), now).expect("plan");
    let mut pods = vec![];
    let mut revisions = vec![];
    for a in plan.actions {
        match a {
            Action::CreatePod(mut p) => {
                p.metadata.uid = p.metadata.name.clone();
                p.status = Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                });
                pods.push(p);
            }
            Action::CreateRevision(r) => revisions.push(r),
            _ => {}
        }
    }
    s.status = Some(plan.status);
    (s, pods, revisions)
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / f64::from(iters)
}

fn main() {
    let now = Timestamp::from_second(1_800_000_000).expect("time");
    let baseline_set = set(3);
    let baseline = time(2000, || {
        let text = serde_json::to_string(&baseline_set).expect("json");
        let back: StatefulSet = serde_json::from_str(&text).expect("json");
        std::hint::black_box(back);
    });
    println!("baseline: statefulset json round trip {:.1} us", baseline * 1e6);
    for replicas in [3, 30, 100] {
        let empty = set(replicas);
        let first = time(200, || {
            std::hint::black_box(
                statefulset::plan(&empty, &StatefulSetObserved::default(), now).expect("plan"),
            );
        });
        let (s, pods, revisions) = settled(replicas, now);
        let observed = StatefulSetObserved { pods: &pods, claims: &[], revisions: &revisions };
        let steady = time(200, || {
            std::hint::black_box(statefulset::plan(&s, &observed, now).expect("plan"));
        });
        println!(
            "replicas {replicas:>3}: first plan {:>8.1} us ({:>6.1}x baseline), settled plan {:>8.1} us ({:>6.1}x baseline)",
            first * 1e6,
            first / baseline,
            steady * 1e6,
            steady / baseline
        );
    }
}
