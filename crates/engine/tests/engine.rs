//! The engine's loop end to end, with a fake runtime (no root): manifests in, the objects and
//! pod starts Kubernetes' controllers would make out.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use stead_engine::local::{apply, readiness, stop};
use stead_engine::runtime::{FakeRuntime, Runtime};
use stead_engine::{Engine, EngineConfig, Kind, ObjectKey, Store};
use tokio::sync::watch;

fn examples(name: &str) -> Vec<stead_api::Manifest> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let loaded = stead_api::load_paths(&[dir]);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.documents.into_iter().map(|d| d.manifest).collect()
}

struct Running {
    engine: Arc<Engine>,
    fake: FakeRuntime,
    stop: watch::Sender<bool>,
}

fn start(fake: FakeRuntime) -> Running {
    let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
    let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(engine.clone().run(rx));
    Running { engine, fake, stop: tx }
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

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new(kind, "default", name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_service_runs_as_an_ordered_stateful_set() {
    let r = start(FakeRuntime::new(true));
    let store = r.engine.store().clone();
    let applied = apply(&store, &examples("stateful-counter")).unwrap();
    let keys: Vec<ObjectKey> = applied.into_iter().map(|(k, _)| k).collect();
    until("ready", || readiness(&store, &keys).ready).await;

    // Render's children, then the StatefulSet controller's pods and claims.
    for (kind, name) in [
        (Kind::StatefulSet, "counter"),
        (Kind::Service, "counter"),
        (Kind::Service, "counter-pods"),
        (Kind::Pod, "counter-0"),
        (Kind::Pod, "counter-2"),
        (Kind::PersistentVolumeClaim, "data-counter-0"),
        (Kind::PersistentVolumeClaim, "data-counter-2"),
    ] {
        assert!(store.get(&key(kind, name)).is_some(), "{kind}/{name}");
    }
    let claim = store.get(&key(Kind::PersistentVolumeClaim, "data-counter-0")).unwrap();
    assert_eq!(claim["status"]["phase"], "Bound");
    assert_eq!(claim["status"]["capacity"]["storage"], "64Mi");
    let pod = store.get(&key(Kind::Pod, "counter-1")).unwrap();
    assert_eq!(pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "1");
    assert_eq!(pod["spec"]["hostname"], "counter-1");
    assert_eq!(pod["spec"]["subdomain"], "counter-pods");
    assert_eq!(pod["spec"]["nodeName"], "stead");
    // OrderedReady: one after the other.
    let starts: Vec<String> = r.fake.calls().into_iter().filter(|c| c.starts_with("start")).collect();
    assert_eq!(starts, ["start default/counter-0", "start default/counter-1", "start default/counter-2"]);
    let svc = store.get(&key(Kind::StatefulService, "counter")).unwrap();
    assert_eq!(svc["status"]["readyReplicas"], 3);
    let ready =
        svc["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    // Endpoints for the headless service, with hostnames.
    let slices = store.list(Kind::EndpointSlice, Some("default"));
    assert!(
        slices.iter().any(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "counter-pods"
            && s["endpoints"].as_array().is_some_and(|e| e.len() == 3)),
        "{slices:#?}"
    );

    // Scale down through the StatefulService: the highest ordinal goes first.
    let mut scaled = (*svc).clone();
    scaled["spec"]["replicas"] = json!(1);
    scaled["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    store.update(scaled).unwrap();
    until("scale down", || store.get(&key(Kind::Pod, "counter-1")).is_none()).await;
    let kills: Vec<String> = r.fake.calls().into_iter().filter(|c| c.starts_with("kill")).collect();
    assert_eq!(kills, ["kill default/counter-2", "kill default/counter-1"]);
    until("claim of a scaled-down pod collected", || {
        store.get(&key(Kind::PersistentVolumeClaim, "data-counter-2")).is_none()
    })
    .await;
    assert!(
        store.get(&key(Kind::PersistentVolumeClaim, "data-counter-0")).is_some(),
        "{:#?}",
        store.list(Kind::PersistentVolumeClaim, None)
    );

    // Stop: everything goes, the claim stays (whenDeleted: Retain).
    stop(&r.engine, &keys, false, std::future::pending()).await.unwrap();
    until("pods gone", || store.list(Kind::Pod, None).is_empty()).await;
    assert!(r.fake.running().is_empty());
    until("children collected", || store.get(&key(Kind::StatefulSet, "counter")).is_none()).await;
    assert!(
        store.get(&key(Kind::PersistentVolumeClaim, "data-counter-0")).is_some(),
        "{:#?}",
        store.list(Kind::PersistentVolumeClaim, None)
    );
    let _ = r.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_deployment_gets_a_replica_set_and_pods() {
    let r = start(FakeRuntime::new(true));
    let store = r.engine.store().clone();
    let deployment: stead_api::Manifest = stead_api::load_str(
        "deploy.yaml",
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: busybox, command: ["sleep", "1000"]}
"#,
    )
    .documents
    .remove(0)
    .manifest;
    let keys: Vec<ObjectKey> = apply(&store, &[deployment]).unwrap().into_iter().map(|(k, _)| k).collect();
    until("ready", || readiness(&store, &keys).ready).await;
    assert_eq!(store.list(Kind::ReplicaSet, Some("default")).len(), 1);
    assert_eq!(store.list(Kind::Pod, Some("default")).len(), 2);
    stop(&r.engine, &keys, false, std::future::pending()).await.unwrap();
    until("pods gone", || store.list(Kind::Pod, None).is_empty()).await;
    let _ = r.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_never_gets_ready_is_named_with_its_reason() {
    let r = start(FakeRuntime::new(false));
    let store = r.engine.store().clone();
    let keys: Vec<ObjectKey> =
        apply(&store, &examples("stateful-counter")).unwrap().into_iter().map(|(k, _)| k).collect();
    until("pod started", || !r.fake.running().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = readiness(&store, &keys);
    assert!(!state.ready);
    assert!(state.waiting.iter().any(|(o, _)| o == "pod/counter-0"), "{state:?}");
    // OrderedReady holds counter-1 back.
    assert!(store.get(&key(Kind::Pod, "counter-1")).is_none());
    r.fake.set_ready("default", "counter-0", true);
    until("next ordinal", || store.get(&key(Kind::Pod, "counter-1")).is_some()).await;
    let _ = r.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_goes_in_reverse_ordinal_order_and_keeps_retained_claims() {
    let r = start(FakeRuntime::new(true));
    let store = r.engine.store().clone();
    let keys: Vec<ObjectKey> =
        apply(&store, &examples("stateful-counter")).unwrap().into_iter().map(|(k, _)| k).collect();
    until("ready", || readiness(&store, &keys).ready).await;
    stop(&r.engine, &keys, false, std::future::pending()).await.unwrap();
    let kills: Vec<String> = r.fake.calls().into_iter().filter(|c| c.starts_with("kill")).collect();
    assert_eq!(kills, ["kill default/counter-2", "kill default/counter-1", "kill default/counter-0"]);
    until("set collected", || store.get(&key(Kind::StatefulSet, "counter")).is_none()).await;
    for ordinal in 0..3 {
        let claim = format!("data-counter-{ordinal}");
        assert!(store.get(&key(Kind::PersistentVolumeClaim, &claim)).is_some(), "{claim} is retained");
    }
    // Up again: the same claims are used (sticky), no new ones.
    let keys: Vec<ObjectKey> =
        apply(&store, &examples("stateful-counter")).unwrap().into_iter().map(|(k, _)| k).collect();
    until("ready again", || readiness(&store, &keys).ready).await;
    let claims: Vec<String> = store
        .list(Kind::PersistentVolumeClaim, None)
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    // The user's template and the embedded store's (render adds it), three ordinals each.
    assert_eq!(
        claims,
        [
            "data-counter-0",
            "data-counter-1",
            "data-counter-2",
            "stead-store-counter-0",
            "stead-store-counter-1",
            "stead-store-counter-2"
        ]
    );
    // down --volumes: the claims go too.
    stop(&r.engine, &keys, true, std::future::pending()).await.unwrap();
    until("claims deleted", || store.list(Kind::PersistentVolumeClaim, None).is_empty()).await;
    let _ = r.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_store_is_missing_is_held_until_the_store_appears() {
    // The operator's rule, shared through render's plan: no children without the named store.
    let r = start(FakeRuntime::new(true));
    let store = r.engine.store().clone();
    let (stores, services): (Vec<_>, Vec<_>) =
        examples("stateful-counter").into_iter().partition(|m| m.kind() == "StatefulStore");
    let keys: Vec<ObjectKey> = apply(&store, &services).unwrap().into_iter().map(|(k, _)| k).collect();
    let svc_key = key(Kind::StatefulService, "counter");
    let degraded = |store: &Store| {
        store.get(&svc_key).and_then(|s| {
            s["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Degraded").cloned()
        })
    };
    until("degraded", || degraded(&store).is_some_and(|c| c["status"] == "True")).await;
    assert_eq!(degraded(&store).unwrap()["reason"], "StoreMissing");
    assert!(store.get(&key(Kind::StatefulSet, "counter")).is_none(), "no children while held");
    let state = readiness(&store, &keys);
    assert!(!state.ready);
    let blocked = state.blocked.expect("a missing store does not go away by waiting");
    assert!(
        blocked.starts_with("statefulservice/counter: StatefulStore \"counter-store\" not found"),
        "{blocked}"
    );
    assert!(
        r.engine.waiting()["statefulservice/counter"].contains("counter-store"),
        "{:?}",
        r.engine.waiting()
    );
    let events = stead_engine::events::about(&store, "default", "StatefulService", "counter", None);
    assert!(events.iter().any(|e| e["reason"] == "StoreMissing" && e["type"] == "Warning"), "{events:#?}");

    apply(&store, &stores).unwrap();
    until("ready with its store", || readiness(&store, &keys).ready).await;
    let set = store.get(&key(Kind::StatefulSet, "counter")).unwrap();
    assert_eq!(
        set["spec"]["template"]["metadata"]["annotations"]["cloudstate.io/stateful-store"],
        "counter-store"
    );
    assert_eq!(degraded(&store).unwrap()["status"], "False");
    let _ = r.stop.send(true);
}

/// Where the requeue test's tokio time started: its planners' clock runs from there.
static PAUSED_START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

/// 1000.8 s after the epoch plus tokio's (paused) time since [`PAUSED_START`].
fn paused_clock() -> Timestamp {
    let base = Timestamp::from_millisecond(1_000_800).unwrap_or(Timestamp::UNIX_EPOCH);
    let elapsed = PAUSED_START.get().map_or(Duration::ZERO, |s| s.elapsed());
    base.checked_add(SignedDuration::try_from(elapsed).unwrap_or_default()).unwrap_or(base)
}

#[tokio::test(start_paused = true)]
async fn the_loop_wakes_when_a_planner_asks_not_on_a_tick() {
    // A ReplicaSet with minReadySeconds: 1 whose pod turned Ready at the last whole second: it
    // becomes available less than a second later, and the loop must look again exactly then.
    PAUSED_START.get_or_init(tokio::time::Instant::now);
    let fake = FakeRuntime::new(false);
    let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
    let config = EngineConfig { clock: paused_clock, ..EngineConfig::default() };
    let engine = Engine::new(Store::in_memory(), runtime, config);
    let (stop_loop, rx) = watch::channel(false);
    tokio::spawn(engine.clone().run(rx));
    let store = engine.store().clone();
    store
        .create(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "minReadySeconds": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "web:1", "command": ["web"]}]}}}}))
        .unwrap();
    let pod_key = || store.list(Kind::Pod, Some("default")).first().and_then(|p| ObjectKey::of(p).ok());
    let mut steps = 0;
    while !pod_key().and_then(|k| store.get(&k)).is_some_and(|p| p["status"]["phase"] == "Running") {
        steps += 1;
        assert!(steps < 100, "the pod never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let now = paused_clock();
    let since = now.as_second();
    let due = Timestamp::from_second(since + 1).unwrap();
    let remaining = Duration::try_from(due.duration_since(now)).unwrap();
    assert!(
        remaining > Duration::from_millis(100) && remaining < Duration::from_millis(500),
        "{remaining:?}"
    );
    let key = pod_key().unwrap();
    let mut pod = (*store.get(&key).unwrap()).clone();
    pod["status"] = json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": Timestamp::from_second(since).unwrap()}]});
    pod["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    store.update_status(pod).unwrap();
    let written = tokio::time::Instant::now();

    let rs = ObjectKey::new(Kind::ReplicaSet, "default", "web");
    let available = || store.get(&rs).is_some_and(|r| r["status"]["availableReplicas"] == 1);
    while !available() {
        assert!(written.elapsed() < Duration::from_secs(2), "never became available");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = written.elapsed();
    assert!(took >= remaining, "not before it is due: {took:?} < {remaining:?}");
    assert!(took <= remaining + Duration::from_millis(10), "as soon as it is due: {took:?} vs {remaining:?}");
    let _ = stop_loop.send(true);
}
