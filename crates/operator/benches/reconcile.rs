//! Reconcile throughput against an in-process fake API server (tower-test mock: no sockets),
//! for 1, 100 and 1,000 StatefulServices, and the process's memory at 1,000.
//!
//! Two passes per size: "first" (every child created: 5 LISTs, 2 applies, 1 status apply per
//! service) and "steady" (nothing changed: 5 LISTs, zero writes). The baseline, measured in the
//! same run, is render alone (`render_service` + JSON) per service; the ratio says what the API
//! round trips and comparison cost on top of the translation. Run:
//! `cargo bench -p stead-operator --bench reconcile`.

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value as J, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_api::types::StatefulService;
use stead_operator::{Context, Metrics, reconcile};
use stead_render::RenderOptions;

/// Objects by (collection path, selector label value).
type Objects = HashMap<(String, String), Vec<J>>;

fn main() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("reconcile throughput against the fake API server (sequential reconciles)");
    println!("{:>6} {:>8} {:>12} {:>14} {:>10}", "svcs", "pass", "total", "per service", "requests");
    let mut per_service_at_1000 = Duration::ZERO;
    for n in [1usize, 100, 1000] {
        let (first, steady, requests) = rt.block_on(bench(n));
        for (pass, took, reqs) in [("first", first, requests.0), ("steady", steady, requests.1)] {
            println!(
                "{n:>6} {pass:>8} {:>10.2}ms {:>12.1}µs {reqs:>10}",
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e6 / n as f64
            );
        }
        if n == 1000 {
            per_service_at_1000 = steady;
            println!(
                "VmRSS after 1,000 services: {} KiB (operator, fake server and its objects)",
                vm_rss_kib()
            );
        }
    }
    let baseline = render_baseline(1000);
    println!("baseline: render only, {:.1}µs per service", baseline.as_secs_f64() * 1e6 / 1000.0);
    println!(
        "ratio: steady-state reconcile / render = {:.1}x",
        per_service_at_1000.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn service(i: usize) -> StatefulService {
    let mut s: StatefulService = serde_json::from_value(json!({
        "apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService",
        "metadata": {"name": format!("svc-{i}"), "namespace": "bench", "uid": format!("uid-{i}"),
                     "generation": 1},
        "spec": {"containers": [{"image": "shop:1"}], "replicas": 2}
    }))
    .expect("fixture");
    s.status = None;
    s
}

fn render_baseline(n: usize) -> Duration {
    let services: Vec<_> = (0..n).map(service).collect();
    let opts = RenderOptions::default();
    let start = Instant::now();
    for s in &services {
        let r = stead_render::render_service(s, None, &opts);
        for o in &r.objects {
            std::hint::black_box(o.to_json().expect("json"));
        }
    }
    start.elapsed()
}

/// Returns (first pass, steady pass, (requests first, requests steady)).
async fn bench(n: usize) -> (Duration, Duration, (usize, usize)) {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock, "default");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = count.clone();
    let server = tokio::spawn(async move {
        let mut objects = Objects::new();
        while let Some((req, send)) = handle.next_request().await {
            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let reply = answer(&mut objects, req).await;
            send.send_response(reply);
        }
    });
    let ctx = Arc::new(Context::new(client, RenderOptions::default(), Arc::new(Metrics::default()), None));
    let services: Vec<Arc<StatefulService>> = (0..n).map(|i| Arc::new(service(i))).collect();
    let mut took = Vec::new();
    let mut requests = Vec::new();
    for _pass in 0..2 {
        let before = count.load(std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        for s in &services {
            reconcile(s.clone(), ctx.clone()).await.expect("reconcile");
        }
        took.push(start.elapsed());
        requests.push(count.load(std::sync::atomic::Ordering::Relaxed) - before);
    }
    drop(ctx);
    let _ = server.await;
    (took[0], took[1], (requests[0], requests[1]))
}

/// A fake API server that is just enough for reconcile: LIST by selector, apply, status apply.
async fn answer(objects: &mut Objects, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let body = req.into_body().collect_bytes().await.unwrap_or_default();
    let path = uri.path().to_owned();
    let reply = match method.as_str() {
        "GET" => {
            let value = uri
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("labelSelector=")))
                .and_then(|v| v.rsplit("%3D").next())
                .unwrap_or_default()
                .to_owned();
            let items = objects.get(&(path, value)).cloned().unwrap_or_default();
            json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items})
        }
        "PATCH" if path.ends_with("/status") => {
            json!({"apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService",
                "metadata": {"name": "x", "namespace": "bench"}, "spec": {"containers": []}})
        }
        "PATCH" => {
            let mut o: J = serde_json::from_slice(&body).unwrap_or(J::Null);
            let replicas = o["spec"]["replicas"].clone();
            o["metadata"]["uid"] = json!(path.clone());
            o["metadata"]["generation"] = json!(1);
            o["status"] = json!({"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas});
            let label =
                o["metadata"]["labels"][stead_render::SELECTOR_LABEL].as_str().unwrap_or("").to_owned();
            let collection = path.rsplit_once('/').map(|(c, _)| c.to_owned()).unwrap_or_default();
            let list = objects.entry((collection, label)).or_default();
            list.retain(|x| x["metadata"]["name"] != o["metadata"]["name"]);
            list.push(o.clone());
            o
        }
        _ => json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
    };
    Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
