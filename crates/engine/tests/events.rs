//! The events the engine's controllers record, with a fake runtime (no root): what `kubectl
//! describe` and `kubectl events` would show for a StatefulSet and a Deployment.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use stead_engine::local::{apply, readiness, stop};
use stead_engine::runtime::{FakeRuntime, Runtime};
use stead_engine::{Engine, EngineConfig, Kind, ObjectKey, Store};
use tokio::sync::watch;

fn start() -> (Arc<Engine>, watch::Sender<bool>) {
    let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
    let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(engine.clone().run(rx));
    (engine, tx)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn manifest(text: &str) -> Vec<stead_api::Manifest> {
    let loaded = stead_api::load_str("test.yaml", text);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.documents.into_iter().map(|d| d.manifest).collect()
}

/// `Type Reason Message` of the events about one object, oldest first.
fn about(store: &Store, kind: &str, name: &str) -> Vec<String> {
    stead_engine::events::about(store, "default", kind, name, None)
        .iter()
        .map(|e| {
            let text = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            format!("{} {} {}", text("type"), text("reason"), text("message"))
        })
        .collect()
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 2
  serviceName: web
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: busybox, command: ["sleep", "1000"]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_records_creates_schedules_kills_and_deletes() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (engine, _stop) = start();
        let store = engine.store().clone();
        let keys: Vec<ObjectKey> =
            apply(&store, &manifest(WEB)).unwrap().into_iter().map(|(k, _)| k).collect();
        until("ready", || readiness(&store, &keys).ready).await;
        assert_eq!(
            about(&store, "StatefulSet", "web"),
            [
                "Normal SuccessfulCreate create Pod web-0 in StatefulSet web successful",
                "Normal SuccessfulCreate create Pod web-1 in StatefulSet web successful",
            ]
        );
        assert_eq!(
            about(&store, "Pod", "web-1"),
            ["Normal Scheduled Successfully assigned default/web-1 to stead"]
        );

        // Scale down: the StatefulSet deletes web-1, whose container is stopped.
        let key = ObjectKey::new(Kind::StatefulSet, "default", "web");
        let mut set: Value = (*store.get(&key).unwrap()).clone();
        set["spec"]["replicas"] = 1.into();
        store.update(set).unwrap();
        until("web-1 gone", || store.get(&ObjectKey::new(Kind::Pod, "default", "web-1")).is_none()).await;
        until("delete recorded", || about(&store, "StatefulSet", "web").len() == 3).await;
        assert_eq!(
            about(&store, "StatefulSet", "web")[2],
            "Normal SuccessfulDelete delete Pod web-1 in StatefulSet web successful"
        );
        let killing = stead_engine::events::about(&store, "default", "Pod", "web-1", None);
        let killing = killing.iter().find(|e| e["reason"] == "Killing").expect("Killing recorded");
        assert_eq!(killing["message"], "Stopping container app");
        assert_eq!(killing["involvedObject"]["fieldPath"], "spec.containers{app}");
        // Events outlive their pod (they are owned by nobody), and a pass records nothing new.
        let n = store.list(Kind::Event, None).len();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.list(Kind::Event, None).len(), n);
        stop(&engine, &keys, false, std::future::pending()).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_records_scaling_and_its_replica_set_creates() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let (engine, _stop) = start();
        let store = engine.store().clone();
        let text = WEB.replace("StatefulSet", "Deployment").replace("  serviceName: web\n", "");
        let keys: Vec<ObjectKey> =
            apply(&store, &manifest(&text)).unwrap().into_iter().map(|(k, _)| k).collect();
        until("ready", || readiness(&store, &keys).ready).await;
        let rs = store.list(Kind::ReplicaSet, Some("default"));
        let rs_name = rs[0]["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            about(&store, "Deployment", "web"),
            [format!("Normal ScalingReplicaSet Scaled up replica set {rs_name} from 0 to 2")]
        );
        let created = about(&store, "ReplicaSet", rs_name);
        assert_eq!(created.len(), 2, "{created:?}");
        assert!(
            created
                .iter()
                .all(|e| e.starts_with(&format!("Normal SuccessfulCreate Created pod: {rs_name}-"))),
            "{created:?}"
        );
        stop(&engine, &keys, false, std::future::pending()).await.unwrap();
    })
    .await
    .expect("test timed out");
}
