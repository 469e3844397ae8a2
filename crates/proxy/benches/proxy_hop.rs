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
//! - event-sourced command round trips per store: `AddItem` (one event, durable before the
//!   reply) through the proxy in entity mode with the in-memory, embedded (redb in a temp dir)
//!   and PostgreSQL stores (the last only when `STEAD_TEST_POSTGRES_URL` is set, else a skip
//!   line), 16 clients each on its own cart.
//!
//! How to run: `nice cargo bench -p stead-proxy --bench proxy_hop`. Fixed concurrency (16), a
//! bounded number of requests (`STEAD_BENCH_REQUESTS`, default 20,000 per mode) and a time limit
//! per mode (10 s; 5 s per store). Prints p50, p99, throughput and ratios to direct, then the
//! p99 each hop adds (target: under 0.3 ms). HAProxy and nginx are compared in `proxy_peers`,
//! store append rates against fdatasync in `store_append`.

#[path = "../tests/common/cart.rs"]
#[allow(dead_code, unreachable_pub)]
mod cart;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cart::api;
use stead_proxy::config::PostgresConfig;
use stead_proxy::{ProxyConfig, ProxyMode, StoreConfig};

const CONCURRENCY: usize = 16;
const TIME_LIMIT: Duration = Duration::from_secs(10);
/// Per store row: durable stores run at the disk's pace.
const STORE_TIME_LIMIT: Duration = Duration::from_secs(5);

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

/// `AddItem` (one event, durable before the reply) with each worker on its own cart, so that
/// the store sees `CONCURRENCY` entities writing at once.
async fn measure_add(name: &'static str, addr: SocketAddr, requests: usize, run_id: &str) -> Run {
    let client = cart::client(addr).await;
    let add = |cart: &str| api::AddLineItem {
        user_id: cart.to_string(),
        product_id: "p".into(),
        name: "P".into(),
        quantity: 1,
    };
    let mut warm = client.clone();
    for _ in 0..20 {
        warm.add_item(add(&format!("warm-{run_id}"))).await.expect("warm up");
    }
    let start = Instant::now();
    let per_worker = requests / CONCURRENCY;
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let mut client = client.clone();
        let request = add(&format!("bench-{run_id}-{w}"));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                if start.elapsed() > STORE_TIME_LIMIT {
                    break;
                }
                let t = Instant::now();
                client.add_item(request.clone()).await.expect("AddItem");
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

/// The PostgreSQL store of `STEAD_TEST_POSTGRES_URL`, as the proxy's settings.
fn postgres_store(url: &str) -> StoreConfig {
    let config: tokio_postgres::Config = url.parse().expect("STEAD_TEST_POSTGRES_URL parses");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_string(),
    };
    StoreConfig::Postgres(PostgresConfig {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config.get_dbname().unwrap_or("postgres").to_string(),
        username: config.get_user().unwrap_or("postgres").to_string(),
        password: config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default(),
        schema: None,
        pool_size: 16,
    })
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

/// The direct baseline: `cart::DirectCart` with TCP_NODELAY on every accepted connection, as
/// the proxy sets on its own sockets (without it, delayed ACKs put ~40 ms into the baseline's
/// p99 and the comparison would flatter the proxy).
async fn serve_direct() -> SocketAddr {
    use tokio_stream::StreamExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let addr = listener.local_addr().expect("local address");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(api::shopping_cart_server::ShoppingCartServer::new(cart::DirectCart::default()))
            .serve_with_incoming(incoming)
            .await;
    });
    addr
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
        let direct_addr = serve_direct().await;
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

        // Event-sourced command round trips per store: AddItem, one event per command.
        let run_id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        );
        let dir = tempfile::Builder::new().prefix("stead-hop-bench").tempdir().expect("temp dir");
        let mut stores = vec![
            ("AddItem, in-memory store", StoreConfig::Memory),
            ("AddItem, embedded store", StoreConfig::Embedded { path: dir.path().join("store.redb") }),
        ];
        let mut skipped = None;
        match std::env::var("STEAD_TEST_POSTGRES_URL") {
            Ok(url) => stores.push(("AddItem, postgres store", postgres_store(&url))),
            Err(_) => skipped = Some("AddItem, postgres store: skipped, STEAD_TEST_POSTGRES_URL is not set"),
        }
        let mut store_runs = Vec::new();
        for (name, store) in stores {
            let mut config = ProxyConfig::local(any, user);
            config.store = store;
            let (addr, stop) = proxy(config).await;
            store_runs.push(measure_add(name, addr, requests, &run_id).await);
            let _ = stop.send(());
        }

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
        println!();
        println!(
            "AddItem (one event, durable before the reply), {CONCURRENCY} clients on {CONCURRENCY} carts, \
             up to {requests} requests or {} s per store",
            STORE_TIME_LIMIT.as_secs()
        );
        println!("{:<30} {:>10} {:>10} {:>12}", "store", "p50 µs", "p99 µs", "cmd/s");
        for run in &store_runs {
            println!(
                "{:<30} {:>10.0} {:>10.0} {:>12.0}",
                run.name,
                run.percentile(0.5).as_secs_f64() * 1e6,
                run.percentile(0.99).as_secs_f64() * 1e6,
                run.throughput(),
            );
        }
        if let Some(line) = skipped {
            println!("{line}");
        }
        println!();
        let hop =
            |run: &Run| (run.percentile(0.99).as_secs_f64() - direct.percentile(0.99).as_secs_f64()) * 1e3;
        println!(
            "p99 added by the proxy hop: passthrough {:.3} ms, entity {:.3} ms",
            hop(&passthrough),
            hop(&entity)
        );
    });
}
