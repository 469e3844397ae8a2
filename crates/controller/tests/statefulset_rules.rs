//! One rule per case: the StatefulSet planner against Kubernetes' rules (see
//! /work/shared/reference/statefulset.md) and stead's documented improvements.

mod support;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use stead_controller::plan::Action;
use stead_controller::statefulset::{LABEL_POD_INDEX, LABEL_POD_NAME, LABEL_REVISION};
use support::*;

fn later(w: &mut World, secs: i64) {
    w.now = Timestamp::from_second(w.now.as_second() + secs).unwrap();
}

fn created_pod(plan_actions: &[Action]) -> Pod {
    plan_actions
        .iter()
        .find_map(|a| if let Action::CreatePod(p) = a { Some(p.clone()) } else { None })
        .unwrap()
}

#[test]
fn ordered_ready_creates_one_pod_then_waits_for_ready() {
    let mut w = World::new(sts(3));
    assert_eq!(summary(&w.sync()), ["create-revision", "create-pod web-0"]);
    assert_eq!(summary(&w.sync()), Vec::<String>::new(), "web-0 is Pending");
    w.set_state("web-0", PodState::Running);
    assert_eq!(summary(&w.sync()), Vec::<String>::new(), "web-0 is Running but not Ready");
    w.set_state("web-0", PodState::Ready);
    assert_eq!(summary(&w.sync()), ["create-pod web-1"]);
}

#[test]
fn ordered_ready_waits_min_ready_seconds() {
    let mut set = sts(2);
    spec(&mut set).min_ready_seconds = Some(10);
    let mut w = World::new(set);
    w.sync();
    w.set_state("web-0", PodState::Ready);
    let plan = w.sync();
    assert!(summary(&plan).is_empty());
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(10)));
    later(&mut w, 10);
    assert_eq!(summary(&w.sync()), ["create-pod web-1"]);
}

#[test]
fn parallel_creates_every_pod_at_once() {
    let mut w = World::new(parallel(sts(3)));
    assert_eq!(
        summary(&w.sync()),
        ["create-revision", "create-pod web-0", "create-pod web-1", "create-pod web-2"]
    );
}

#[test]
fn ordinals_start_shifts_the_range() {
    let mut w = World::new(parallel(with_start(sts(2), 5)));
    assert_eq!(summary(&w.sync()), ["create-revision", "create-pod web-5", "create-pod web-6"]);
}

#[test]
fn raising_start_condemns_the_lowest_ordinals() {
    let mut w = World::new(parallel(sts(2)));
    w.settle(3);
    spec(&mut w.set).ordinals = Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(1) });
    assert_eq!(summary(&w.sync()), ["create-pod web-2", "delete-pod web-0 ScaleDown"]);
}

#[test]
fn a_created_pod_carries_identity_owner_and_revision() {
    let mut w = World::new(with_claim(sts(1), "data", "1Gi"));
    let plan = w.sync();
    let pod = created_pod(&plan.actions);
    let l = pod.metadata.labels.clone().unwrap();
    assert_eq!(l[LABEL_POD_NAME], "web-0");
    assert_eq!(l[LABEL_POD_INDEX], "0");
    assert_eq!(l["app"], "web");
    assert_eq!(Some(&l[LABEL_REVISION]), plan.status.update_revision.as_ref());
    assert!(l[LABEL_REVISION].starts_with("web-"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let owner = &pod.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("StatefulSet", "web", "uid-web", Some(true), Some(true))
    );
    let vol = &spec.volumes.unwrap()[0];
    assert_eq!(vol.name, "data");
    assert_eq!(vol.persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-0");
}

#[test]
fn claims_are_created_before_their_pod_with_selector_labels() {
    let mut w = World::new(with_claim(sts(1), "data", "1Gi"));
    let plan = w.sync();
    assert_eq!(summary(&plan), ["create-revision", "create-pvc data-web-0", "create-pod web-0"]);
    let claim = w.claim("data-web-0").unwrap();
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(claim.metadata.owner_references, None, "Retain/Retain sets no owner");
}

#[test]
fn an_existing_claim_is_reused_never_recreated() {
    let mut w = World::new(with_claim(sts(1), "data", "1Gi"));
    w.sync();
    let uid = w.claim("data-web-0").unwrap().metadata.uid.clone();
    w.set_state("web-0", PodState::Failed);
    assert_eq!(summary(&w.sync()), ["delete-pod web-0 Finished"]);
    w.remove_pod("web-0");
    assert_eq!(summary(&w.sync()), ["create-pod web-0"]);
    assert_eq!(w.claim("data-web-0").unwrap().metadata.uid, uid);
}

#[test]
fn a_pending_pod_gets_back_a_claim_the_user_deleted() {
    let mut w = World::new(with_claim(sts(1), "data", "1Gi"));
    w.sync();
    w.claims.clear();
    assert_eq!(summary(&w.sync()), ["create-pvc data-web-0"]);
}

#[test]
fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
    let mut w = World::new(sts(3));
    w.settle(6);
    set_replicas(&mut w.set, 1);
    assert_eq!(summary(&w.sync()), ["delete-pod web-2 ScaleDown"]);
    assert_eq!(summary(&w.sync()), Vec::<String>::new(), "waits for web-2 to be gone");
    w.remove_pod("web-2");
    assert_eq!(summary(&w.sync()), ["delete-pod web-1 ScaleDown"]);
}

#[test]
fn scale_down_waits_while_another_pod_is_unhealthy() {
    let mut w = World::new(sts(3));
    w.settle(6);
    w.set_state("web-2", PodState::Running);
    w.set_state("web-1", PodState::Running);
    set_replicas(&mut w.set, 1);
    // web-1 is the first unhealthy pod and may go; web-2, also unhealthy, blocks behind it.
    assert_eq!(summary(&w.sync()), Vec::<String>::new());
}

#[test]
fn a_condemned_pod_that_has_failed_goes_without_waiting() {
    let mut w = World::new(sts(3));
    w.settle(6);
    w.set_state("web-1", PodState::Running);
    w.set_state("web-2", PodState::Failed);
    set_replicas(&mut w.set, 1);
    // web-1 is the first unhealthy pod; a dead web-2 above it is removed all the same (stead's
    // addition: nothing would ever make it healthy again, and Kubernetes would wait for good).
    assert_eq!(summary(&w.sync()), ["delete-pod web-2 ScaleDown"]);
}

#[test]
fn parallel_scale_down_deletes_all_condemned_highest_first() {
    let mut w = World::new(parallel(sts(3)));
    w.settle(3);
    set_replicas(&mut w.set, 1);
    assert_eq!(summary(&w.sync()), ["delete-pod web-2 ScaleDown", "delete-pod web-1 ScaleDown"]);
}

#[test]
fn a_failed_pod_is_deleted_and_recreated_with_its_name() {
    let mut w = World::new(sts(2));
    w.settle(4);
    w.set_state("web-0", PodState::Failed);
    assert_eq!(summary(&w.sync()), ["delete-pod web-0 Finished"]);
    assert_eq!(summary(&w.sync()), Vec::<String>::new(), "the old object is still there");
    w.remove_pod("web-0");
    assert_eq!(summary(&w.sync()), ["create-pod web-0"]);
}

/// A pod whose container the kubelet cannot create stays Pending (Waiting
/// `CreateContainerError`, retried on a back-off): it is neither deleted nor replaced, whatever
/// the time, and the next ordinal waits for it.
#[test]
fn a_pending_pod_whose_container_cannot_be_created_is_kept() {
    let mut w = World::new(sts(2));
    assert_eq!(summary(&w.sync()), ["create-revision", "create-pod web-0"]);
    w.set_state("web-0", PodState::Pending);
    let uid = w.pod("web-0").unwrap().metadata.uid.clone();
    if let Some(status) = w.pod_mut("web-0").and_then(|p| p.status.as_mut()) {
        status.container_statuses = Some(vec![
            serde_json::from_value(serde_json::json!({
                "name": "app", "image": "nginx", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerError", "message": "no command"}},
            }))
            .unwrap(),
        ]);
    }
    for _ in 0..20 {
        later(&mut w, 60);
        assert_eq!(summary(&w.sync()), Vec::<String>::new());
    }
    assert_eq!(w.pod_names(), ["web-0"]);
    assert_eq!(w.pod("web-0").unwrap().metadata.uid, uid);
}

#[test]
fn a_terminating_pod_blocks_its_identity() {
    let mut w = World::new(parallel(sts(2)));
    w.settle(2);
    let uid = w.pod("web-1").unwrap().metadata.uid.clone();
    w.apply(&Action::DeletePod {
        name: "web-1".into(),
        uid,
        reason: stead_controller::plan::DeleteReason::Update,
    });
    assert_eq!(summary(&w.sync()), Vec::<String>::new());
}

#[test]
fn a_foreign_pod_with_the_name_is_never_duplicated() {
    let mut w = World::new(sts(1));
    w.pods.push(Pod {
        metadata: ObjectMeta {
            name: Some("web-0".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    });
    let plan = w.sync();
    assert_eq!(summary(&plan), ["create-revision"]);
    assert!(plan.waiting_on.unwrap().contains("not controlled"));
}

#[test]
fn rolling_update_replaces_from_the_highest_ordinal_down() {
    let mut w = World::new(sts(3));
    w.settle(6);
    let old = w.revision_of("web-0").unwrap();
    set_image(&mut w.set, "busybox:2");
    assert_eq!(summary(&w.sync()), ["create-revision", "delete-pod web-2 Update"]);
    w.remove_pod("web-2");
    assert_eq!(summary(&w.sync()), ["create-pod web-2"]);
    assert_ne!(w.revision_of("web-2").unwrap(), old);
    assert_eq!(summary(&w.sync()), Vec::<String>::new(), "web-2 must be Ready before web-1");
    w.settle(8);
    let st = w.set.status.clone().unwrap();
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.current_replicas, Some(3));
}

#[test]
fn partition_keeps_lower_ordinals_at_the_current_revision() {
    let mut w = World::new(with_rolling(sts(3), Some(2), None));
    w.settle(6);
    let old = w.revision_of("web-0").unwrap();
    set_image(&mut w.set, "busybox:2");
    w.settle(6);
    assert_eq!(w.revision_of("web-0").unwrap(), old);
    assert_eq!(w.revision_of("web-1").unwrap(), old);
    assert_ne!(w.revision_of("web-2").unwrap(), old);
    // A re-created pod below the partition comes back at the current revision.
    w.set_state("web-1", PodState::Failed);
    w.sync();
    w.remove_pod("web-1");
    w.sync();
    assert_eq!(w.revision_of("web-1").unwrap(), old);
    let st = w.set.status.clone().unwrap();
    assert_eq!((st.updated_replicas, st.current_revision), (Some(1), Some(old)));
}

#[test]
fn max_unavailable_deletes_a_batch_under_parallel() {
    let mut w = World::new(parallel(with_rolling(sts(4), None, Some(IntOrString::Int(2)))));
    w.settle(2);
    set_image(&mut w.set, "busybox:2");
    assert_eq!(summary(&w.sync()), ["create-revision", "delete-pod web-3 Update", "delete-pod web-2 Update"]);
}

#[test]
fn max_unavailable_percentage_rounds_down_and_is_at_least_one() {
    let mut w = World::new(parallel(with_rolling(sts(3), None, Some(IntOrString::String("50%".into())))));
    w.settle(2);
    set_image(&mut w.set, "busybox:2");
    assert_eq!(summary(&w.sync()), ["create-revision", "delete-pod web-2 Update"]);
}

#[test]
fn on_delete_waits_for_the_user_and_recreates_at_the_update_revision() {
    let mut w = World::new(on_delete(sts(2)));
    w.settle(4);
    let old = w.revision_of("web-0").unwrap();
    set_image(&mut w.set, "busybox:2");
    assert_eq!(summary(&w.sync()), ["create-revision"]);
    w.remove_pod("web-0");
    w.sync();
    assert_ne!(w.revision_of("web-0").unwrap(), old);
    w.remove_pod("web-1");
    w.settle(6);
    let st = w.set.status.clone().unwrap();
    assert_eq!(st.current_revision, st.update_revision, "stead promotes OnDelete too");
}

#[test]
fn rollback_reuses_the_older_revision_and_renumbers_it() {
    let mut w = World::new(sts(1));
    w.settle(2);
    let v1 = w.revision_of("web-0").unwrap();
    set_image(&mut w.set, "busybox:2");
    w.settle(4);
    set_image(&mut w.set, "busybox:1");
    let plan = w.sync();
    assert_eq!(summary(&plan), ["update-revision", "delete-pod web-0 Update"]);
    assert!(plan.actions.contains(&Action::UpdateRevision { name: v1.clone(), revision: 3 }));
    assert_eq!(plan.status.update_revision, Some(v1));
}

#[test]
fn history_is_truncated_oldest_first_keeping_live_revisions() {
    let mut set = parallel(sts(1));
    spec(&mut set).revision_history_limit = Some(1);
    let mut w = World::new(set);
    for image in ["a", "b", "c", "d"] {
        set_image(&mut w.set, image);
        w.settle(3);
    }
    // a=1 .. d=4; live: the current one (d); one non-live kept (c).
    let mut revs: Vec<i64> = w.revisions.iter().map(|r| r.revision).collect();
    revs.sort();
    assert_eq!(revs, [3, 4]);
}

fn refs(w: &World, claim: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = w
        .claim(claim)
        .unwrap()
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|r: &OwnerReference| (r.kind.clone(), r.name.clone()))
        .collect();
    v.sort();
    v
}

#[test]
fn retention_policy_matrix_sets_owner_references() {
    let cases = [
        ("Retain", "Retain", vec![], vec![]),
        ("Delete", "Retain", vec![("StatefulSet", "web")], vec![("StatefulSet", "web")]),
        ("Retain", "Delete", vec![], vec![("Pod", "web-1")]),
        ("Delete", "Delete", vec![("StatefulSet", "web")], vec![("Pod", "web-1")]),
    ];
    for (deleted, scaled, in_range, condemned) in cases {
        let mut w = World::new(with_retention(with_claim(sts(2), "data", "1Gi"), deleted, scaled));
        w.settle(5);
        set_replicas(&mut w.set, 1);
        let plan = w.sync();
        let pos_owner = plan
            .actions
            .iter()
            .position(|a| matches!(a, Action::SetPvcOwners { name, .. } if name == "data-web-1"));
        let pos_delete =
            plan.actions.iter().position(|a| matches!(a, Action::DeletePod { name, .. } if name == "web-1"));
        if let (Some(o), Some(d)) = (pos_owner, pos_delete) {
            assert!(o < d, "{deleted}/{scaled}: owner set before the pod is deleted");
        }
        let strs = |v: Vec<(&str, &str)>| {
            v.into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>()
        };
        assert_eq!(refs(&w, "data-web-0"), strs(in_range), "{deleted}/{scaled} in range");
        assert_eq!(refs(&w, "data-web-1"), strs(condemned), "{deleted}/{scaled} condemned");
        w.remove_pod("web-1");
        let gone = w.claim("data-web-1").is_none();
        assert_eq!(gone, scaled == "Delete", "{deleted}/{scaled}: claim collected with its pod");
    }
}

#[test]
fn a_claim_still_owned_by_a_deleted_pod_blocks_recreation() {
    let mut w = World::new(with_retention(with_claim(sts(1), "data", "1Gi"), "Retain", "Delete"));
    w.settle(2);
    // A claim left with an owner reference to a pod that no longer exists.
    let c = w.claims.iter_mut().find(|c| c.metadata.name.as_deref() == Some("data-web-0")).unwrap();
    c.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "web-0".into(),
        uid: "uid-old".into(),
        ..Default::default()
    }]);
    w.pods.clear();
    let plan = w.sync();
    assert!(summary(&plan).iter().all(|s| !s.starts_with("create-pod")));
    assert!(plan.waiting_on.unwrap().contains("data-web-0"));
}

#[test]
fn a_claim_being_deleted_blocks_its_pod() {
    let mut w = World::new(with_claim(sts(1), "data", "1Gi"));
    w.claims.push(k8s_openapi::api::core::v1::PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data-web-0".into()),
            deletion_timestamp: Some(Time(t0())),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(summary(&w.sync()), ["create-revision"]);
}

#[test]
fn a_larger_claim_template_resizes_existing_claims_never_smaller() {
    let mut w = World::new(parallel(with_claim(sts(2), "data", "1Gi")));
    w.settle(2);
    spec(&mut w.set).volume_claim_templates.as_mut().unwrap()[0] =
        with_claim(sts(1), "data", "2Gi").spec.unwrap().volume_claim_templates.unwrap()[0].clone();
    assert_eq!(summary(&w.sync()), ["resize-pvc data-web-0", "resize-pvc data-web-1"]);
    assert_eq!(summary(&w.sync()), Vec::<String>::new());
    spec(&mut w.set).volume_claim_templates.as_mut().unwrap()[0] =
        with_claim(sts(1), "data", "1Gi").spec.unwrap().volume_claim_templates.unwrap()[0].clone();
    assert_eq!(summary(&w.sync()), Vec::<String>::new());
}

#[test]
fn changes_outside_the_template_do_not_roll_pods() {
    let mut w = World::new(parallel(with_claim(sts(1), "data", "1Gi")));
    w.settle(2);
    set_replicas(&mut w.set, 1);
    spec(&mut w.set).min_ready_seconds = Some(0);
    assert_eq!(summary(&w.sync()), Vec::<String>::new());
}

#[test]
fn stuck_rollout_recovers_once_the_template_is_reverted() {
    let mut w = World::new(sts(3));
    w.settle(6);
    set_image(&mut w.set, "broken");
    w.sync();
    w.remove_pod("web-2");
    w.sync();
    w.set_state("web-2", PodState::Running); // never Ready
    assert_eq!(summary(&w.sync()), Vec::<String>::new(), "Kubernetes and stead both wait here");
    set_image(&mut w.set, "busybox:1");
    // Kubernetes would wait forever (#67250); stead replaces the broken pod.
    assert_eq!(summary(&w.sync()), ["update-revision", "delete-pod web-2 StuckRevision"]);
    w.settle(4);
    let st = w.set.status.clone().unwrap();
    assert_eq!((st.ready_replicas, st.updated_replicas), (Some(3), Some(3)));
}

#[test]
fn identity_labels_are_repaired() {
    let mut w = World::new(sts(1));
    w.settle(2);
    w.pod_mut("web-0").unwrap().metadata.labels.as_mut().unwrap().remove(LABEL_POD_INDEX);
    assert_eq!(summary(&w.sync()), ["patch-pod-labels web-0"]);
}

#[test]
fn status_counts_as_kubernetes() {
    let mut w = World::new(parallel(sts(3)));
    w.sync();
    w.set_state("web-0", PodState::Ready);
    w.set_state("web-1", PodState::Running);
    let st = w.sync().status;
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(1));
    assert_eq!(st.available_replicas, Some(1));
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(3));
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.collision_count, Some(0));
}

#[test]
fn terminating_pods_count_in_replicas_but_not_current() {
    let mut w = World::new(parallel(sts(2)));
    w.settle(2);
    set_replicas(&mut w.set, 1);
    w.sync();
    let st = w.sync().status;
    assert_eq!((st.replicas, st.current_replicas, st.ready_replicas), (2, Some(1), Some(2)));
}

#[test]
fn progress_deadline_is_reported_naming_the_blocker() {
    let mut w = World::new(sts(2));
    w.sync();
    w.set_state("web-0", PodState::Running);
    let plan = w.sync();
    let c = plan.status.conditions.clone().unwrap();
    assert_eq!(c[0].reason.as_deref(), Some("Progressing"));
    assert!(plan.requeue_after.is_some());
    later(&mut w, 601);
    let plan = w.sync();
    let c = &plan.status.conditions.unwrap()[0];
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("ProgressDeadlineExceeded")));
    assert!(c.message.as_deref().unwrap().contains("web-0"));
    w.settle(4);
    let c = &w.set.status.clone().unwrap().conditions.unwrap()[0];
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("True", Some("RolloutComplete")));
}

#[test]
fn a_set_being_deleted_only_updates_status() {
    let mut w = World::new(sts(2));
    w.set.metadata.deletion_timestamp = Some(Time(t0()));
    assert!(w.sync().actions.is_empty());
}

#[test]
fn hash_collision_bumps_collision_count() {
    let mut w = World::new(sts(1));
    let name = w.plan().status.update_revision.unwrap();
    // Someone else's revision holds the name with different data.
    w.revisions.push(k8s_openapi::api::apps::v1::ControllerRevision {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        data: None,
        revision: 1,
    });
    let plan = w.sync();
    assert_eq!(plan.status.collision_count, Some(1));
    assert_ne!(plan.status.update_revision, Some(name));
}

#[test]
fn negative_replicas_is_an_error_not_a_panic() {
    let mut set = sts(1);
    spec(&mut set).replicas = Some(-1);
    let err = stead_controller::statefulset::plan(&set, &Default::default(), t0()).unwrap_err();
    assert_eq!(err.to_string(), "statefulset web: spec.replicas is negative: -1");
}

#[test]
fn absurd_sizes_are_errors() {
    let mut set = sts(i32::MAX);
    let err = stead_controller::statefulset::plan(&set, &Default::default(), t0()).unwrap_err();
    assert_eq!(err.to_string(), format!("statefulset web: spec.replicas is more than 100000: {}", i32::MAX));
    set = with_start(sts(10), i32::MAX - 3);
    let err = stead_controller::statefulset::plan(&set, &Default::default(), t0()).unwrap_err();
    assert!(err.to_string().contains("does not fit in 32 bits"), "{err}");
}
