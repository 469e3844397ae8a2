//! The proxy hop, measured against a baseline in the same run: `GetCart` on a shopping cart
//!
//! - direct: a tonic ShoppingCart server (state in memory), no proxy;
//! - passthrough: the same server behind the proxy in passthrough mode (HTTP/2 detected, each
//!   request forwarded);
//! - entity: the proxy in entity mode (in-memory store) in front of a Rust CloudState user
//!   function: the client's call becomes a command on the entity's `EventSourced` stream;
//! - entity over HTTP/JSON: the same proxy and entity, `GET /carts/bench` on HTTP/1.1 keep-alive
//!   connections, transcoded through the proto's `google.api.http` rule.
//!
//! Fixed concurrency, a bounded number of requests (`STEAD_BENCH_REQUESTS`, default 20,000 per
//! mode) and a time limit per mode (10 s). Prints p50, p99, throughput and ratios to direct.

#[path = "../tests/common/cart.rs"]
#[allow(dead_code, unreachable_pub)]
mod cart;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cart::api;
use stead_proxy::{ProxyConfig, ProxyMode, StoreConfig};

const CONCURRENCY: usize = 16;
const TIME_LIMIT: Duration = Duration::from_secs(10);

struct Run {
    name: &'static str,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

async fn measure(name: &'static str, addr: SocketAddr, requests: usize) -> Run {
    let client = cart::client(addr).await;
    // Warm up (and create the entity).
    let mut warm = client.clone();
    let add =
        api::AddLineItem { user_id: "bench".into(), product_id: "p".into(), name: "P".into(), quantity: 1 };
    warm.add_item(add).await.expect("add");
    for _ in 0..200 {
        warm.get_cart(api::GetShoppingCart { user_id: "bench".into() }).await.expect("warm up");
    }
    let start = Instant::now();
    let per_worker = requests / CONCURRENCY;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let mut client = client.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                if start.elapsed() > TIME_LIMIT {
                    break;
                }
                let t = Instant::now();
                client.get_cart(api::GetShoppingCart { user_id: "bench".into() }).await.expect("GetCart");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    Run { name, latencies, wall: start.elapsed() }
}

/// `GET /carts/bench` over HTTP/1.1, one keep-alive connection per worker.
async fn measure_http(name: &'static str, addr: SocketAddr, requests: usize) -> Run {
    use http_body_util::BodyExt as _;
    async fn connect(
        addr: SocketAddr,
    ) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        sender
    }
    async fn get(sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>) {
        let request = http::Request::get("/carts/bench")
            .header("host", "localhost")
            .body(http_body_util::Empty::new())
            .expect("request");
        sender.ready().await.expect("the connection takes another request");
        let response = sender.send_request(request).await.expect("GET /carts/bench");
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.expect("body");
    }
    let mut warm = connect(addr).await;
    for _ in 0..200 {
        get(&mut warm).await;
    }
    let start = Instant::now();
    let per_worker = requests / CONCURRENCY;
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                if start.elapsed() > TIME_LIMIT {
                    break;
                }
                let t = Instant::now();
                get(&mut sender).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    Run { name, latencies, wall: start.elapsed() }
}

async fn proxy(config: ProxyConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let proxy = stead_proxy::Proxy::bind(config).await.expect("binds");
    let addr = proxy.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.serve(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn main() {
    let requests: usize =
        std::env::var("STEAD_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let direct_addr = cart::serve_direct().await;
        let direct = measure("direct", direct_addr, requests).await;

        let mut config = ProxyConfig::local(any, direct_addr);
        config.mode = ProxyMode::Passthrough;
        config.store = StoreConfig::None;
        let (passthrough_addr, stop_passthrough) = proxy(config).await;
        let passthrough = measure("passthrough proxy", passthrough_addr, requests).await;
        let _ = stop_passthrough.send(());

        let user = cart::serve_user_function(cart::CartFunction { snapshot_every: 0 }).await;
        let (entity_addr, stop_entity) = proxy(ProxyConfig::local(any, user)).await;
        let entity = measure("entity proxy (event sourced)", entity_addr, requests).await;
        let entity_http = measure_http("entity proxy, HTTP/JSON", entity_addr, requests).await;
        let _ = stop_entity.send(());

        println!("GetCart, {CONCURRENCY} concurrent clients, up to {requests} requests per mode");
        println!(
            "{:<30} {:>10} {:>10} {:>12} {:>10} {:>10}",
            "mode", "p50 µs", "p99 µs", "req/s", "p99 ×", "req/s ×"
        );
        for run in [&direct, &passthrough, &entity, &entity_http] {
            println!(
                "{:<30} {:>10.0} {:>10.0} {:>12.0} {:>10.2} {:>10.2}",
                run.name,
                run.percentile(0.5).as_secs_f64() * 1e6,
                run.percentile(0.99).as_secs_f64() * 1e6,
                run.throughput(),
                run.percentile(0.99).as_secs_f64() / direct.percentile(0.99).as_secs_f64(),
                run.throughput() / direct.throughput(),
            );
        }
        let hop =
            |run: &Run| (run.percentile(0.99).as_secs_f64() - direct.percentile(0.99).as_secs_f64()) * 1e3;
        println!(
            "p99 added by the proxy hop: passthrough {:.3} ms, entity {:.3} ms",
            hop(&passthrough),
            hop(&entity)
        );
    });
}
