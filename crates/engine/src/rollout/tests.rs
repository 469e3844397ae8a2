//! The pure rules as tables, then the store-facing verbs against an engine over a fake runtime:
//! a rolling update's history, undo to the previous and to a named revision, scale and restart.

use super::*;
use crate::runtime::{FakeRuntime, Runtime};
use crate::{Engine, EngineConfig};
use std::time::Duration;
use tokio::sync::watch;

fn sts(status: Value, spec_extra: Value) -> Value {
    let mut spec = json!({"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default", "generation": 2, "uid": "u1"},
        "spec": spec,
        "status": status,
    })
}

#[test]
fn qualified_names_are_kubectls() {
    assert_eq!(qualified(Kind::StatefulSet, "web"), "statefulset.apps/web");
    assert_eq!(qualified(Kind::Deployment, "x"), "deployment.apps/x");
    assert_eq!(qualified(Kind::Pod, "x"), "pod/x");
    assert_eq!(qualified(Kind::StatefulService, "n"), "statefulservice.cloudstate.io/n");
}

#[test]
fn scaling_sets_replicas_and_checks_the_precondition() {
    let set = sts(json!({}), json!({}));
    assert_eq!(scaled(&set, 5, None).unwrap()["spec"]["replicas"], 5);
    assert_eq!(scaled(&set, 0, Some(3)).unwrap()["spec"]["replicas"], 0);
    assert_eq!(scaled(&set, 1, Some(2)).unwrap_err().to_string(), "expected replicas to be 2, was 3");
    assert!(matches!(scaled(&set, -1, None), Err(RolloutError::NegativeReplicas { replicas: -1 })));
    let pod = json!({"kind": "Pod", "metadata": {"name": "p"}});
    assert_eq!(
        scaled(&pod, 1, None).unwrap_err().to_string(),
        "scale is not supported for pods (only statefulsets, deployments, replicasets, statefulservices)"
    );
    // Without replicas, Kubernetes' default (1) is what --current-replicas compares with.
    let ssvc = json!({"kind": "StatefulService", "metadata": {"name": "n"}, "spec": {}});
    assert_eq!(scaled(&ssvc, 2, Some(1)).unwrap()["spec"]["replicas"], 2);
}

#[test]
fn restart_stamps_the_pod_template_only() {
    let set = sts(json!({}), json!({}));
    let next = restarted(&set, "2026-01-01T00:00:00Z").unwrap();
    assert_eq!(next["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT], "2026-01-01T00:00:00Z");
    assert_eq!(next["spec"]["template"]["metadata"]["labels"]["app"], "web");
    assert_eq!(next["metadata"], set["metadata"]);
    let again = restarted(&next, "2026-01-02T00:00:00Z").unwrap();
    assert_eq!(again["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT], "2026-01-02T00:00:00Z");
    assert!(restarted(&json!({"kind": "ReplicaSet"}), "t").is_err());
}

#[test]
fn statefulset_status_lines_are_kubectls() {
    let observed = |extra: Value| {
        let mut s = json!({"observedGeneration": 2, "replicas": 3});
        if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(extra.clone());
        }
        s
    };
    let partition = json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
    let cases = [
        (
            sts(json!({"observedGeneration": 1}), json!({})),
            "Waiting for statefulset spec update to be observed...",
            false,
        ),
        (sts(observed(json!({"readyReplicas": 1})), json!({})), "Waiting for 2 pods to be ready...", false),
        (
            sts(observed(json!({"readyReplicas": 3, "updatedReplicas": 1})), partition.clone()),
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
            false,
        ),
        (
            sts(observed(json!({"readyReplicas": 3, "updatedReplicas": 2})), partition),
            "partitioned roll out complete: 2 new pods have been updated...",
            true,
        ),
        (
            sts(
                observed(
                    json!({"readyReplicas": 3, "updatedReplicas": 1, "currentRevision": "web-a", "updateRevision": "web-b"}),
                ),
                json!({}),
            ),
            "waiting for statefulset rolling update to complete 1 pods at revision web-b...",
            false,
        ),
        (
            sts(
                observed(
                    json!({"readyReplicas": 3, "currentReplicas": 3, "currentRevision": "web-b", "updateRevision": "web-b"}),
                ),
                json!({}),
            ),
            "statefulset rolling update complete 3 pods at revision web-b...",
            true,
        ),
    ];
    for (object, message, done) in cases {
        assert_eq!(status_of(&object).unwrap(), RolloutStatus { message: message.into(), done }, "{object}");
    }
    let on_delete = sts(json!({}), json!({"updateStrategy": {"type": "OnDelete"}}));
    assert!(matches!(status_of(&on_delete), Err(RolloutError::NotRollingUpdate { .. })));
}

#[test]
fn deployment_status_lines_are_kubectls() {
    let d = |status: Value| json!({"kind": "Deployment", "metadata": {"name": "x", "generation": 1}, "spec": {"replicas": 2}, "status": status});
    let cases = [
        (d(json!({})), "Waiting for deployment spec update to be observed...", false),
        (
            d(json!({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 2})),
            "Waiting for deployment \"x\" rollout to finish: 1 out of 2 new replicas have been updated...",
            false,
        ),
        (
            d(json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 3})),
            "Waiting for deployment \"x\" rollout to finish: 1 old replicas are pending termination...",
            false,
        ),
        (
            d(json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1})),
            "Waiting for deployment \"x\" rollout to finish: 1 of 2 updated replicas are available...",
            false,
        ),
        (
            d(json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2})),
            "deployment \"x\" successfully rolled out",
            true,
        ),
    ];
    for (object, message, done) in cases {
        assert_eq!(status_of(&object).unwrap(), RolloutStatus { message: message.into(), done }, "{object}");
    }
    let stuck = d(json!({"observedGeneration": 1, "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}));
    assert_eq!(status_of(&stuck).unwrap_err().to_string(), "deployment \"x\" exceeded its progress deadline");
}

#[test]
fn wait_for_parses_and_matches_conditions() {
    assert_eq!(
        WaitFor::parse("condition=Ready").unwrap(),
        WaitFor::Condition { name: "Ready".into(), value: "True".into() }
    );
    assert_eq!(
        WaitFor::parse("condition=Ready=false").unwrap(),
        WaitFor::Condition { name: "Ready".into(), value: "false".into() }
    );
    assert_eq!(WaitFor::parse("delete").unwrap(), WaitFor::Delete);
    for bad in ["ready", "condition=", "condition=Ready=", "jsonpath={.x}"] {
        assert!(WaitFor::parse(bad).is_err(), "{bad}");
    }
    let pod = |status: &str| {
        json!({"kind": "Pod", "metadata": {"name": "p", "generation": 1},
               "status": {"conditions": [{"type": "Ready", "status": status}]}})
    };
    let ready = WaitFor::parse("condition=ready").unwrap();
    assert!(ready.met(Some(&pod("True"))));
    assert!(!ready.met(Some(&pod("False"))));
    assert!(!ready.met(None));
    assert!(WaitFor::parse("condition=Ready=False").unwrap().met(Some(&pod("False"))));
    assert!(WaitFor::Delete.met(None));
    assert!(!WaitFor::Delete.met(Some(&pod("True"))));
    // A condition about an older generation is stale.
    let stale = json!({"metadata": {"generation": 3}, "status": {"conditions": [
        {"type": "Available", "status": "True", "observedGeneration": 2}]}});
    assert!(!WaitFor::parse("condition=Available").unwrap().met(Some(&stale)));
}

fn revision(n: i64, image: &str) -> Revision {
    Revision {
        revision: n,
        source: format!("web-{n}"),
        change_cause: None,
        template: json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": image}]}}),
    }
}

#[test]
fn undo_picks_the_previous_or_the_named_revision() {
    let mut set = sts(json!({}), json!({}));
    set["spec"]["template"] = revision(2, "v2").template;
    let history = [revision(1, "v1"), revision(2, "v2")];
    match undone(&set, &history, 0).unwrap() {
        Undo::RolledBack { object, revision } => {
            assert_eq!(revision, 1);
            assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["image"], "v1");
            assert_eq!(object["metadata"], set["metadata"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(undone(&set, &history, 2).unwrap(), Undo::Skipped { revision: 2 });
    assert_eq!(
        undone(&set, &history, 7).unwrap_err().to_string(),
        "unable to find specified revision 7 in history"
    );
    assert!(matches!(undone(&set, &history[1..], 0), Err(RolloutError::NoPrevious)));
    assert!(matches!(undone(&set, &[], 0), Err(RolloutError::NoHistory { .. })));
    let mut paused = set.clone();
    paused["kind"] = json!("Deployment");
    paused["spec"]["paused"] = json!(true);
    assert!(matches!(undone(&paused, &history, 0), Err(RolloutError::Paused)));
}

#[test]
fn history_reads_owned_revisions_in_order() {
    let owner = sts(json!({}), json!({}));
    let rev = |name: &str, n: i64, uid: &str| {
        Arc::new(json!({
            "kind": "ControllerRevision",
            "metadata": {"name": name, "annotations": {CHANGE_CAUSE: format!("cause {n}")},
                         "ownerReferences": [{"kind": "StatefulSet", "name": "web", "uid": uid, "controller": true}]},
            "revision": n,
            "data": {"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "web"}}}}},
        }))
    };
    let history =
        history_of(&owner, &[rev("web-b", 3, "u1"), rev("other", 2, "u2"), rev("web-a", 1, "u1")]).unwrap();
    let numbers: Vec<(i64, &str)> = history.iter().map(|r| (r.revision, r.source.as_str())).collect();
    assert_eq!(numbers, [(1, "web-a"), (3, "web-b")]);
    assert_eq!(history[0].change_cause.as_deref(), Some("cause 1"));
    assert_eq!(history[0].template, json!({"metadata": {"labels": {"app": "web"}}}), "no $patch");

    let deploy = json!({"kind": "Deployment", "metadata": {"name": "d", "uid": "d1"}, "spec": {}});
    let rs = Arc::new(json!({
        "kind": "ReplicaSet",
        "metadata": {"name": "d-abc", "annotations": {DEPLOYMENT_REVISION: "4"},
                     "ownerReferences": [{"kind": "Deployment", "name": "d", "uid": "d1", "controller": true}]},
        "spec": {"template": {"metadata": {"labels": {"app": "d", POD_TEMPLATE_HASH: "abc"}}}},
    }));
    let history = history_of(&deploy, &[rs]).unwrap();
    assert_eq!(history[0].revision, 4);
    assert_eq!(history[0].template, json!({"metadata": {"labels": {"app": "d"}}}), "no pod-template-hash");
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 3
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: busybox, command: ["sleep", "1000"], env: [{name: REV, value: "1"}]}
"#;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  replicas: 2
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
      - {name: app, image: busybox, command: ["sleep", "1000"], env: [{name: REV, value: "1"}]}
"#;

fn manifests(text: &str) -> Vec<stead_api::Manifest> {
    stead_api::load_str("t.yaml", text).documents.into_iter().map(|d| d.manifest).collect()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn rev_of_pods(store: &Store) -> Vec<(String, String)> {
    store
        .list(Kind::Pod, Some("default"))
        .iter()
        .filter(|p| !crate::store::is_deleting(p))
        .map(|p| {
            (
                name_of(p),
                p["spec"]["containers"][0]["env"][0]["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_rolls_back_through_undo_and_restarts() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let store = engine.store().clone();
        let key = ObjectKey::new(Kind::StatefulSet, "default", "web");
        let done = |store: &Store| status(store, &key).is_ok_and(|s| s.done);

        crate::local::apply(&store, &manifests(WEB)).unwrap();
        until("first rollout", || done(&store)).await;
        crate::local::apply(&store, &manifests(&WEB.replace(r#"value: "1""#, r#"value: "2""#))).unwrap();
        until("second rollout", || done(&store) && rev_of_pods(&store).iter().all(|(_, r)| r == "2")).await;
        let numbers = |store: &Store| -> Vec<i64> {
            history(store, &key).unwrap().iter().map(|r| r.revision).collect()
        };
        assert_eq!(numbers(&store), [1, 2]);

        // Undo: back to revision 1's template; the controller reuses its ControllerRevision,
        // renumbered 3.
        let Undo::RolledBack { revision: 1, .. } = undo(&store, &key, 0).unwrap() else {
            panic!("no rollback")
        };
        until("rolled back", || done(&store) && rev_of_pods(&store).iter().all(|(_, r)| r == "1")).await;
        assert_eq!(rev_of_pods(&store), pairs(&[("web-0", "1"), ("web-1", "1"), ("web-2", "1")]));
        until("renumbered", || numbers(&store) == [2, 3]).await;
        assert_eq!(store.list(Kind::ControllerRevision, Some("default")).len(), 2);
        assert_eq!(undo(&store, &key, 3).unwrap(), Undo::Skipped { revision: 3 });
        // To a named revision.
        assert!(matches!(undo(&store, &key, 2).unwrap(), Undo::RolledBack { revision: 2, .. }));
        until("forward again", || done(&store) && rev_of_pods(&store).iter().all(|(_, r)| r == "2")).await;

        // Restart: a new revision rolls every pod, template otherwise unchanged.
        let before: Vec<String> = store
            .list(Kind::Pod, Some("default"))
            .iter()
            .map(|p| meta_str(p, "uid").unwrap_or_default().to_string())
            .collect();
        let restarted = restart(&store, &key, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            restarted["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT],
            "2026-01-01T00:00:00Z"
        );
        until("restarted", || {
            done(&store)
                && store
                    .list(Kind::Pod, Some("default"))
                    .iter()
                    .all(|p| !before.iter().any(|u| Some(u.as_str()) == meta_str(p, "uid")))
        })
        .await;

        // Scale down and up.
        scale(&store, &key, 1, Some(3)).unwrap();
        until("scaled down", || store.list(Kind::Pod, Some("default")).len() == 1).await;
        assert!(matches!(scale(&store, &key, 2, Some(3)), Err(RolloutError::Precondition { .. })));
        let missing = ObjectKey::new(Kind::StatefulSet, "default", "nope");
        assert_eq!(
            scale(&store, &missing, 1, None).unwrap_err().to_string(),
            "statefulsets \"nope\" not found"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_back_to_its_previous_replica_set() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let store = engine.store().clone();
        let key = ObjectKey::new(Kind::Deployment, "default", "d");
        let done = |store: &Store| status(store, &key).is_ok_and(|s| s.done);
        crate::local::apply(&store, &manifests(DEPLOY)).unwrap();
        until("first rollout", || done(&store)).await;
        assert!(matches!(undo(&store, &key, 0), Err(RolloutError::NoPrevious)));
        crate::local::apply(&store, &manifests(&DEPLOY.replace(r#"value: "1""#, r#"value: "2""#))).unwrap();
        until("second rollout", || done(&store) && rev_of_pods(&store).iter().all(|(_, r)| r == "2")).await;
        let h = history(&store, &key).unwrap();
        assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2]);
        assert!(matches!(undo(&store, &key, 0).unwrap(), Undo::RolledBack { revision: 1, .. }));
        until("rolled back", || {
            done(&store)
                && rev_of_pods(&store).len() == 2
                && rev_of_pods(&store).iter().all(|(_, r)| r == "1")
        })
        .await;
        // The old ReplicaSet came back as revision 3.
        until("renumbered", || {
            history(&store, &key).unwrap().iter().map(|r| r.revision).collect::<Vec<_>>() == [2, 3]
        })
        .await;
    })
    .await
    .expect("test timed out");
}

#[test]
fn statefulservice_status_lines() {
    let svc = |status: Value| {
        json!({"kind": "StatefulService", "metadata": {"name": "n", "generation": 2},
               "spec": {"replicas": 3}, "status": status})
    };
    let cases = [
        (
            svc(json!({"observedGeneration": 1})),
            "Waiting for statefulservice spec update to be observed...",
            false,
        ),
        (
            svc(json!({"observedGeneration": 2, "updatedReplicas": 1, "readyReplicas": 3})),
            "Waiting for statefulservice \"n\" rollout to finish: 1 out of 3 new pods have been updated...",
            false,
        ),
        (
            svc(json!({"observedGeneration": 2, "updatedReplicas": 3, "readyReplicas": 2})),
            "Waiting for 1 pods to be ready...",
            false,
        ),
        (
            svc(json!({"observedGeneration": 2, "updatedReplicas": 3, "readyReplicas": 3})),
            "statefulservice \"n\" successfully rolled out",
            true,
        ),
    ];
    for (object, message, done) in cases {
        assert_eq!(status_of(&object).unwrap(), RolloutStatus { message: message.into(), done }, "{object}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_service_scales_through_its_replicas() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
        let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(engine.clone().run(rx));
        let store = engine.store().clone();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/stateful-counter");
        let loaded = stead_api::load_paths(&[dir]);
        let docs: Vec<stead_api::Manifest> = loaded.documents.into_iter().map(|d| d.manifest).collect();
        crate::local::apply(&store, &docs).unwrap();
        let key = ObjectKey::new(Kind::StatefulService, "default", "counter");
        let done = |store: &Store| status(store, &key).is_ok_and(|s| s.done);
        until("ready", || done(&store)).await;
        let pods = |store: &Store| store.list(Kind::Pod, Some("default")).len();
        assert_eq!(pods(&store), 3);
        let scaled = scale(&store, &key, 1, Some(3)).unwrap();
        assert_eq!(scaled["spec"]["replicas"], 1);
        until("scaled down", || done(&store) && pods(&store) == 1).await;
        assert!(matches!(undo(&store, &key, 0), Err(RolloutError::Unsupported { .. })));
    })
    .await
    .expect("test timed out");
}
