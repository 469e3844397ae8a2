//! Apply-to-all-Ready through the engine's loop, with a runtime whose pods are Ready at once (the
//! engine's own cost, not the pods'), for 3, 30 and 100 replicas under Parallel and OrderedReady;
//! engine memory at 100 pods; list latency. The baseline, measured in the same run, is the store's
//! raw cost of creating as many pods (the least any engine must do).
//!
//! `cargo bench -p stead-engine --bench up`

use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_engine::local::{apply, readiness};
use stead_engine::runtime::{FakeRuntime, Runtime};
use stead_engine::{Engine, EngineConfig, Kind, ObjectKey, Store};
use tokio::sync::watch;

fn statefulset(replicas: usize, policy: &str) -> stead_api::Manifest {
    let text = format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: {replicas}
  podManagementPolicy: {policy}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: app, image: busybox, command: ["sleep", "1000"]}}
"#
    );
    let mut loaded = stead_api::load_str("bench.yaml", &text);
    loaded.documents.remove(0).manifest
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The raw store: creating `n` pods, nothing else.
fn baseline(n: usize) -> Duration {
    let store = Store::in_memory();
    let started = Instant::now();
    for i in 0..n {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("web-{i}")},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
        let _ = store.create(pod);
    }
    started.elapsed()
}

async fn to_ready(replicas: usize, policy: &str) -> (Duration, usize) {
    let fake = FakeRuntime::new(true);
    let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
    let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(engine.clone().run(rx));
    let store = engine.store().clone();
    let started = Instant::now();
    let keys: Vec<ObjectKey> = match apply(&store, &[statefulset(replicas, policy)]) {
        Ok(applied) => applied.into_iter().map(|(k, _)| k).collect(),
        Err(e) => panic!("apply failed: {e}"),
    };
    let deadline = started + Duration::from_secs(60);
    while !readiness(&store, &keys).ready && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = started.elapsed();
    let pods = store.list(Kind::Pod, None).len();
    let _ = tx.send(true);
    let _ = task.await;
    (elapsed, pods)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("apply to all Ready (runtime Ready at once), baseline = raw store writes of the pods");
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>10} {:>14}",
        "replicas", "policy", "to Ready", "baseline", "ratio", "per step"
    );
    for replicas in [3usize, 30, 100] {
        for policy in ["Parallel", "OrderedReady"] {
            let (elapsed, pods) = to_ready(replicas, policy).await;
            assert_eq!(pods, replicas, "every pod created");
            let base = baseline(replicas);
            let ratio = elapsed.as_secs_f64() / base.as_secs_f64().max(1e-9);
            let per_step = elapsed / replicas as u32;
            println!(
                "{replicas:>8} {policy:>12} {:>12.2?} {:>12.2?} {:>9.0}x {:>14.2?}",
                elapsed, base, ratio, per_step
            );
        }
    }

    // Memory and list latency with 100 pods.
    let before = rss_kib();
    let fake = FakeRuntime::new(true);
    let runtime: Arc<dyn Runtime> = Arc::new(fake.clone());
    let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(engine.clone().run(rx));
    let store = engine.store().clone();
    let keys: Vec<ObjectKey> = match apply(&store, &[statefulset(100, "Parallel")]) {
        Ok(applied) => applied.into_iter().map(|(k, _)| k).collect(),
        Err(e) => panic!("apply failed: {e}"),
    };
    while !readiness(&store, &keys).ready {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after = rss_kib();
    let rounds = 1000;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(store.list(Kind::Pod, Some("default")));
    }
    let list = started.elapsed() / rounds;
    println!(
        "engine memory at 100 pods: {} KiB resident ({} KiB more than before)",
        after,
        after.saturating_sub(before)
    );
    println!("list of 100 pods (what get reads): {list:.2?}");

    // `stead get pods` as the CLI makes it: a connection to the daemon's socket per request.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("stead.sock");
    let listener = stead_engine::daemon::bind_private(&socket).expect("the socket binds");
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(stead_engine::daemon::serve_on(
        listener,
        stead_engine::daemon::ApiState { store: store.clone(), log_paths: None },
        async move {
            let _ = api_stopped.await;
        },
    ));
    let mut times = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        let body = get_over_socket(&socket, "/api/pods").await;
        times.push(started.elapsed());
        assert!(body.contains("web-99"), "the reply lists the pods");
    }
    times.sort();
    let (p50, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    println!(
        "get pods over the socket (100 pods, a connection each): p50 {p50:.2?}, p99 {p99:.2?} ({:.0}x the store's list)",
        p50.as_secs_f64() / list.as_secs_f64().max(1e-9)
    );
    let _ = stop_api.send(());
    let _ = api.await;
    let _ = tx.send(true);
    let _ = task.await;
}

/// One HTTP/1.1 GET over a unix socket; the whole reply as text.
async fn get_over_socket(socket: &std::path::Path, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::UnixStream::connect(socket).await.expect("the daemon answers");
    let request = format!("GET {path} HTTP/1.1\r\nHost: stead\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("the request is sent");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("the reply is read");
    String::from_utf8_lossy(&reply).into_owned()
}
