//! The proxy hop, measured against a baseline in the same run: `GetCart` on a shopping cart
//!
//! - direct: a tonic ShoppingCart server (state in memory), no proxy;
//! - passthrough: the same server behind the proxy in passthrough mode (HTTP/2 detected, each
//!   request forwarded);
//! - entity: the proxy in entity mode (in-memory store) in front of a Rust CloudState user
//!   function: the client's call becomes a command on the entity's `EventSourced` stream;
//! - entity over HTTP/JSON: the same proxy and entity, `GET /carts/bench` on HTTP/1.1 keep-alive
//!   connections, transcoded through the proto's `google.api.http` rule.
//! - the same `GetCart` at fixed rates (1,000 and 5,000 calls/s, open loop, over 8 HTTP/2
//!   connections) on direct, passthrough and entity paths, their 1-s slices interleaved: the p99
//!   each path adds without the queueing that fixed concurrency puts into it.
//!
//! - event-sourced command round trips per store: `AddItem` (one event, durable before the
//!   reply) through the proxy in entity mode with the in-memory, embedded (redb in a temp dir)
//!   and PostgreSQL stores (the last only when `STEAD_TEST_POSTGRES_URL` is set, else a skip
//!   line), 16 clients each on its own cart.
//!
//! - entity-mode memory per store: the proxy as a child process (this bench re-executed with
//!   `STEAD_BENCH_ROLE=proxy`, configured through `stead proxy`'s environment variables), so
//!   that its VmRSS is its own; a fresh child per store (in-memory, embedded) and per number of
//!   carts (1, 100, 1,000), loaded with AddItem and GetCart in turn by 16 clients; VmRSS at
//!   rest, the peak under load (sampled every 20 ms) and 1 s after the load; the anonymous part
//!   of it (RssAnon: heap, stacks; the rest is the executable's pages), the bytes of journal the
//!   in-memory store holds (data, not overhead), and the anonymous growth per active cart beyond
//!   that journal. Target (issue 5): < 20 MiB.
//!
//! How to run: `nice cargo bench -p stead-proxy --bench proxy_hop`. Fixed concurrency (16), a
//! bounded number of requests (`STEAD_BENCH_REQUESTS`, default 20,000 per mode) and a time limit
//! per mode (10 s; 5 s per store and per memory row). Prints p50, p99, throughput and ratios to
//! direct, then the p99 each hop adds (target: under 0.3 ms). HAProxy and nginx are compared in
//! `proxy_peers`, store append rates against fdatasync in `store_append`.
//! `STEAD_BENCH_SECTIONS=memory` (or `hop`, or `hop,memory`; default both) runs only those parts.
//! `STEAD_BENCH_AFTER_MS` sets when "after" is measured (with the child's
//! `STEAD_PASSIVATION_TIMEOUT_MS` below it: after passivation). For profiling,
//! `STEAD_BENCH_PROXY_WRAPPER` prefixes the child's command line (e.g.
//! `heaptrack -o /tmp/proxy`), and `STEAD_BENCH_PROXY_THREADS` sets its worker threads.

// The tests' helpers as a whole: `cart.rs` refers to its siblings through `super`.
#[path = "common/child.rs"]
mod child;
#[path = "../tests/common/mod.rs"]
#[allow(unreachable_pub)]
mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cart;
use common::cart::api;
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

/// Runs one worker per client, each making `call`s (given its client, its index and the call's
/// index, giving the client back) one after the other, `requests` in all or until `limit` has passed; the calls'
/// latencies and the wall time.
async fn fan_out<C, F, Fut>(
    name: &'static str,
    clients: Vec<C>,
    requests: usize,
    limit: Duration,
    call: F,
) -> Run
where
    C: Send + 'static,
    F: Fn(C, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = C> + Send,
{
    let start = Instant::now();
    let per_worker = requests / clients.len().max(1);
    let mut workers = Vec::new();
    for (w, client) in clients.into_iter().enumerate() {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut client = client;
            let mut latencies = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                if start.elapsed() > limit {
                    break;
                }
                let t = Instant::now();
                client = call(client, w, i).await;
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

type CartClient = api::shopping_cart_client::ShoppingCartClient<tonic::transport::Channel>;

async fn get_cart(mut client: CartClient, _: usize, _: usize) -> CartClient {
    client.get_cart(api::GetShoppingCart { user_id: "bench".into() }).await.expect("GetCart");
    client
}

/// `GetCart` on one cart, by [`CONCURRENCY`] clients sharing one connection.
async fn measure(name: &'static str, addr: SocketAddr, requests: usize) -> Run {
    let client = cart::client(addr).await;
    // Warm up (and create the entity).
    let mut warm = client.clone();
    warm.add_item(add_to("bench")).await.expect("add");
    for _ in 0..200 {
        warm = get_cart(warm, 0, 0).await;
    }
    fan_out(name, vec![client; CONCURRENCY], requests, TIME_LIMIT, get_cart).await
}

fn add_to(cart: &str) -> api::AddLineItem {
    api::AddLineItem { user_id: cart.to_string(), product_id: "p".into(), name: "P".into(), quantity: 1 }
}

/// `AddItem` (one event, durable before the reply) with each worker on its own cart, so that
/// the store sees `CONCURRENCY` entities writing at once.
async fn measure_add(name: &'static str, addr: SocketAddr, requests: usize, run_id: &str) -> Run {
    let client = cart::client(addr).await;
    let mut warm = client.clone();
    for _ in 0..20 {
        warm.add_item(add_to(&format!("warm-{run_id}"))).await.expect("warm up");
    }
    let carts: Arc<Vec<String>> = Arc::new((0..CONCURRENCY).map(|w| format!("bench-{run_id}-{w}")).collect());
    fan_out(
        name,
        vec![client; CONCURRENCY],
        requests,
        STORE_TIME_LIMIT,
        move |mut client: CartClient, w, _| {
            let carts = carts.clone();
            async move {
                client.add_item(add_to(&carts[w])).await.expect("AddItem");
                client
            }
        },
    )
    .await
}

// ---------------------------------------------------------------- fixed rate (open loop)

/// The offered rates of the fixed-rate rows, calls per second over all connections.
const OPEN_RATES: [u32; 2] = [1_000, 5_000];
const OPEN_CONNECTIONS: u32 = 8;
/// One slice of a fixed-rate row; a row is [`OPEN_ROUNDS`] slices, interleaved between paths.
const OPEN_TIME: Duration = Duration::from_millis(1_000);
const OPEN_ROUNDS: usize = 6;
/// A reply slower than this ends its connection's run, counted as an error.
const OPEN_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Offers `rate` `GetCart` calls/s to `addr` over [`OPEN_CONNECTIONS`] HTTP/2 connections, each
/// on its own cart, for [`OPEN_TIME`]: each call's latency in ns, and the calls that failed.
///
/// Open loop, as `proxy_peers`' fixed-rate rows: connection `c` calls at `start + (c + k ·
/// connections) / rate` whatever the replies do, and each latency runs from the call's intended
/// time, so a late reply's delay to the next call counts against the path (no coordinated
/// omission); when the connection was idle at the intended time (tokio's timer wakes on 1 ms
/// ticks) the latency runs from the actual call instead.
async fn open_loop(addr: SocketAddr, rate: u32) -> (Vec<u64>, u64) {
    let interval = Duration::from_secs(OPEN_CONNECTIONS.into()) / rate;
    let mut clients = Vec::new();
    for c in 0..OPEN_CONNECTIONS {
        // Each connection on its own cart: one entity serves one command at a time, and the
        // rows measure the hop, not one entity's queue.
        let mut client = cart::client(addr).await;
        let get = api::GetShoppingCart { user_id: format!("open-{c}") };
        client.get_cart(get).await.expect("warm-up GetCart");
        clients.push(client);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let until = start + OPEN_TIME;
    let mut tasks = Vec::new();
    for (c, mut client) in (0..OPEN_CONNECTIONS).zip(clients) {
        let mut intended = start + Duration::from_secs(1) * c / rate;
        tasks.push(tokio::spawn(async move {
            let (mut nanos, mut errors) = (Vec::new(), 0);
            let mut previous_done = Instant::now();
            while intended < until {
                if previous_done < intended {
                    tokio::time::sleep_until(intended.into()).await;
                }
                let sent = Instant::now();
                let from = if previous_done <= intended { sent } else { intended };
                let get = client.get_cart(api::GetShoppingCart { user_id: format!("open-{c}") });
                if !matches!(tokio::time::timeout(OPEN_REPLY_TIMEOUT, get).await, Ok(Ok(_))) {
                    errors += 1;
                    break;
                }
                let done = Instant::now();
                nanos.push(done.duration_since(from).as_nanos() as u64);
                previous_done = done;
                intended += interval;
            }
            (nanos, errors)
        }));
    }
    let (mut nanos, mut errors) = (Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok((part, failed)) => {
                nanos.extend(part);
                errors += failed;
            }
            Err(_) => errors += 1,
        }
    }
    (nanos, errors)
}

/// `GetCart` at fixed rates on each path, [`OPEN_ROUNDS`] slices each, the paths' slices
/// interleaved (in order, then in reverse order, and so on) so that the machine's drifting load
/// falls on every path alike. A row's percentiles are over all its slices' samples; `p99 mid` is
/// the median of the slices' own p99s (one slice hit by a burst of others' load moves it
/// little); `+p99` and `+p99 mid` are what the path adds over the first (direct). One table per
/// rate, as text.
async fn fixed_rate_rows(paths: &[(&'static str, SocketAddr)]) -> Vec<String> {
    use std::fmt::Write as _;
    let percentile = |sorted: &[u64], p: f64| {
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default() as f64 / 1e3
    };
    let mut tables = Vec::new();
    for rate in OPEN_RATES {
        // (samples of every slice, each slice's p99 in ns, errors) per path
        let mut rows: Vec<(Vec<u64>, Vec<u64>, u64)> = vec![Default::default(); paths.len()];
        for round in 0..OPEN_ROUNDS {
            let order: Vec<usize> =
                if round % 2 == 0 { (0..paths.len()).collect() } else { (0..paths.len()).rev().collect() };
            for i in order {
                let (mut nanos, errors) = open_loop(paths[i].1, rate).await;
                nanos.sort_unstable();
                let row = &mut rows[i];
                row.1.push((percentile(&nanos, 0.99) * 1e3) as u64);
                row.0.extend(nanos);
                row.2 += errors;
            }
        }
        let mut table = format!(
            "GetCart at a fixed {rate} calls/s (open loop, {OPEN_CONNECTIONS} HTTP/2 connections, {OPEN_ROUNDS} \
             interleaved slices of {} ms each; load average {})\n",
            OPEN_TIME.as_millis(),
            load_average()
        );
        let _ = writeln!(
            table,
            "{:<30} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8}",
            "path", "p50 µs", "p90 µs", "p99 µs", "p99 mid", "calls/s", "errors", "+p99 µs", "+p99 mid"
        );
        let mut baseline = None;
        for ((name, _), (nanos, slices, errors)) in paths.iter().zip(&mut rows) {
            nanos.sort_unstable();
            slices.sort_unstable();
            let (p99, mid) = (percentile(nanos, 0.99), percentile(slices, 0.5));
            let (base_p99, base_mid) = *baseline.get_or_insert((p99, mid));
            let achieved = nanos.len() as f64 / (OPEN_ROUNDS as f64 * OPEN_TIME.as_secs_f64());
            let _ = writeln!(
                table,
                "{:<30} {:>7.0} {:>7.0} {:>7.0} {:>8.0} {:>8.0} {:>7} {:>+8.0} {:>+8.0}",
                name,
                percentile(nanos, 0.5),
                percentile(nanos, 0.9),
                p99,
                mid,
                achieved,
                errors,
                p99 - base_p99,
                mid - base_mid
            );
        }
        tables.push(table);
    }
    tables
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
    let mut senders = Vec::new();
    for _ in 0..CONCURRENCY {
        senders.push(connect(addr).await);
    }
    fan_out(name, senders, requests, TIME_LIMIT, |mut sender, _, _| async move {
        get(&mut sender).await;
        sender
    })
    .await
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
    if std::env::var("STEAD_BENCH_ROLE").as_deref() == Ok("proxy") {
        child::child_proxy();
        return;
    }
    let requests: usize =
        std::env::var("STEAD_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let sections = std::env::var("STEAD_BENCH_SECTIONS").unwrap_or_else(|_| "hop,memory".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if sections.split(',').any(|s| s == "hop") {
        runtime.block_on(hop(requests));
    }
    if sections.split(',').any(|s| s == "memory") {
        runtime.block_on(memory(requests));
    }
}

async fn hop(requests: usize) {
    {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let direct_addr = cart::serve_direct().await;
        let direct = measure("direct", direct_addr, requests).await;

        let mut config = ProxyConfig::local(any, direct_addr);
        config.mode = ProxyMode::Passthrough;
        config.store = StoreConfig::None;
        let (passthrough_addr, stop_passthrough) = proxy(config).await;
        let passthrough = measure("passthrough proxy", passthrough_addr, requests).await;

        let user = cart::serve_user_function(cart::CartFunction { snapshot_every: 0 }).await;
        let (entity_addr, stop_entity) = proxy(ProxyConfig::local(any, user)).await;
        let entity = measure("entity proxy (event sourced)", entity_addr, requests).await;
        let entity_http = measure_http("entity proxy, HTTP/JSON", entity_addr, requests).await;
        let fixed_rate = fixed_rate_rows(&[
            ("direct", direct_addr),
            ("passthrough proxy", passthrough_addr),
            ("entity proxy", entity_addr),
        ])
        .await;
        let _ = stop_passthrough.send(());
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
        for table in &fixed_rate {
            println!();
            print!("{table}");
        }
        println!();
        let hop =
            |run: &Run| (run.percentile(0.99).as_secs_f64() - direct.percentile(0.99).as_secs_f64()) * 1e3;
        println!(
            "p99 added by the proxy hop: passthrough {:.3} ms, entity {:.3} ms",
            hop(&passthrough),
            hop(&entity)
        );
    }
}

// ---------------------------------------------------------------- memory

/// The proxy child; closing its stdin stops it (the store closes cleanly, which a profiler
/// wrapping it needs to write its output); killed after 10 s if it has not ended.
struct ProxyChild {
    child: Child,
}

impl ProxyChild {
    fn spawn(envs: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("own path");
        let wrapper = std::env::var("STEAD_BENCH_PROXY_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command.env("STEAD_BENCH_ROLE", "proxy").stdin(Stdio::piped()).stdout(Stdio::null());
        command.env("MALLOC_ARENA_MAX", child::malloc_arenas());
        for (name, value) in envs {
            command.env(name, value);
        }
        Self { child: command.spawn().expect("starts the proxy child") }
    }

    /// The proxy's own pid: the wrapper's child when there is a wrapper.
    fn proxy_pid(&self) -> u32 {
        let own = self.child.id();
        if std::env::var("STEAD_BENCH_PROXY_WRAPPER").is_err() {
            return own;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{own}/task/{own}/children")).unwrap_or_default();
        children.split_whitespace().filter_map(|p| p.parse().ok()).next_back().unwrap_or(own)
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        child::wait_then_kill(&mut self.child, Duration::from_secs(10));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port()
}

/// A number field of `/proc/<pid>/status` (`kB` dropped), 0 if it cannot be read.
fn status_field(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// VmRSS and RssAnon of a process, in KiB: all of it, and the part that is not the
/// executable's (and libraries') pages mapped from their files, i.e. heap, stacks and data.
fn rss_kib(pid: u32) -> (u64, u64) {
    (status_field(pid, "VmRSS"), status_field(pid, "RssAnon"))
}

/// Waits until the proxy serves the cart (discovery done): 20 s at most.
async fn wait_serving(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
        {
            let mut client = api::shopping_cart_client::ShoppingCartClient::new(channel);
            let get = api::GetShoppingCart { user_id: "probe".into() };
            if client.get_cart(get).await.is_ok() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

struct MemoryRow {
    store: &'static str,
    carts: usize,
    /// (VmRSS, RssAnon)
    rest_kib: (u64, u64),
    peak_kib: (u64, u64),
    after_kib: (u64, u64),
    /// The most threads the process had while loaded.
    threads: u64,
    commands: u64,
    per_second: f64,
}

/// One child, one number of carts: 16 clients, AddItem and GetCart in turn on cart `n % carts`,
/// up to `requests` commands or 5 s.
async fn memory_row(
    store: &'static str,
    envs: Vec<(&'static str, String)>,
    user: SocketAddr,
    (prefix, carts): (&str, usize),
    requests: usize,
) -> Option<MemoryRow> {
    let port = free_port();
    let mut all = vec![
        ("STEAD_PROXY_MODE", "entity".to_string()),
        ("HTTP_PORT", port.to_string()),
        ("USER_FUNCTION_PORT", user.port().to_string()),
        ("MANAGEMENT_PORT", free_port().to_string()),
        ("METRICS_PORT", free_port().to_string()),
    ];
    all.extend(envs);
    let child = ProxyChild::spawn(&all);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if !wait_serving(addr).await {
        println!("memory, {store}, {carts} carts: the proxy did not serve within 20 s, row skipped");
        return None;
    }
    // The probe's entity and the connection's first buffers are part of "at rest".
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.proxy_pid();
    let rest_kib = rss_kib(pid);
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let running = running.clone();
        std::thread::spawn(move || {
            let (mut peak, mut threads) = ((0, 0), 0);
            while running.load(Ordering::Relaxed) {
                let (rss, anon) = rss_kib(pid);
                peak = (peak.0.max(rss), peak.1.max(anon));
                threads = threads.max(status_field(pid, "Threads"));
                std::thread::sleep(Duration::from_millis(20));
            }
            (peak, threads)
        })
    };
    let client = cart::client(addr).await;
    let prefix: Arc<str> = prefix.into();
    let call = move |mut client: CartClient, w: usize, i: usize| {
        let n = i * CONCURRENCY + w;
        let user_id = format!("{prefix}-{}", (n / 2) % carts);
        async move {
            if n.is_multiple_of(2) {
                let add = api::AddLineItem {
                    user_id,
                    product_id: format!("p{}", n % 7),
                    name: "P".into(),
                    quantity: 1,
                };
                client.add_item(add).await.expect("AddItem");
            } else {
                client.get_cart(api::GetShoppingCart { user_id }).await.expect("GetCart");
            }
            client
        }
    };
    let load = fan_out(store, vec![client.clone(); CONCURRENCY], requests, STORE_TIME_LIMIT, call).await;
    running.store(false, Ordering::Relaxed);
    let (peak_kib, threads) = sampler.join().unwrap_or(((0, 0), 0));
    drop(client);
    tokio::time::sleep(after_load()).await;
    let after_kib = rss_kib(pid);
    drop(child);
    let commands = load.latencies.len() as u64;
    Some(MemoryRow {
        store,
        carts,
        rest_kib,
        peak_kib,
        after_kib,
        threads,
        commands,
        per_second: load.throughput(),
    })
}

/// How long after the load "after" is measured: `STEAD_BENCH_AFTER_MS`, default 1 s (with
/// `STEAD_PASSIVATION_TIMEOUT_MS` below it, after the entities have passivated).
fn after_load() -> Duration {
    let millis = std::env::var("STEAD_BENCH_AFTER_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    Duration::from_millis(millis)
}

/// The machine's 1-minute load average, for the figures' context.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

async fn memory(requests: usize) {
    let user = cart::serve_user_function(cart::CartFunction { snapshot_every: 0 }).await;
    let dir = tempfile::Builder::new().prefix("stead-hop-memory").tempdir().expect("temp dir");
    let threads = std::env::var("STEAD_BENCH_PROXY_THREADS").unwrap_or_else(|_| "default".into());
    // PostgreSQL keeps its journals between runs: this run's carts are its own.
    let run =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let postgres = match std::env::var("STEAD_TEST_POSTGRES_URL") {
        Ok(url) => match postgres_store(&url) {
            StoreConfig::Postgres(pg) => Some(vec![
                ("STEAD_STORE", "postgres".to_string()),
                ("POSTGRES_SERVICE", pg.host),
                ("POSTGRES_PORT", pg.port.to_string()),
                ("POSTGRES_DATABASE", pg.database),
                ("POSTGRES_USERNAME", pg.username),
                ("POSTGRES_PASSWORD", pg.password),
            ]),
            _ => None,
        },
        Err(_) => None,
    };
    let arenas = child::malloc_arenas();
    let mut rows = Vec::new();
    let load_before = load_average();
    for carts in [1, 100, 1000] {
        let mut stores: Vec<(&'static str, Vec<(&'static str, String)>)> = vec![
            ("in-memory", vec![("STEAD_STORE", "in-memory".into())]),
            (
                "embedded",
                vec![
                    ("STEAD_STORE", "embedded".into()),
                    (
                        "STEAD_STORE_PATH",
                        dir.path().join(format!("store-{carts}.redb")).display().to_string(),
                    ),
                ],
            ),
        ];
        stores.extend(postgres.clone().map(|envs| ("postgres", envs)));
        for (store, envs) in stores {
            let carts_named = format!("{store}-{run}-{carts}");
            rows.extend(memory_row(store, envs, user, (&carts_named, carts), requests).await);
        }
    }
    println!();
    println!(
        "entity-mode proxy memory (VmRSS of the child; target < 20 MiB): {CONCURRENCY} clients, AddItem and \
         GetCart in turn, up to {requests} commands or {} s per row, \"after\" {} ms after it; proxy \
         worker threads {threads}, MALLOC_ARENA_MAX {arenas}; load average {load_before} before, {} after",
        STORE_TIME_LIMIT.as_secs(),
        after_load().as_millis(),
        load_average()
    );
    println!(
        "{:<10} {:>6} {:>9} {:>7} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12} {:>16} {:>8}",
        "store",
        "carts",
        "commands",
        "cmd/s",
        "rest MiB",
        "peak MiB",
        "after MiB",
        "anon rest",
        "anon peak",
        "anon after",
        "journal KiB~",
        "anon/cart KiB~",
        "threads"
    );
    for row in &rows {
        // AddItem's event, as the in-memory store holds it: an `Any` in the journal's Vec (48
        // bytes, ~64 with the Vec's spare capacity), its 66-byte type URL (an 80-byte heap
        // chunk) and its ~12-byte value (32): ~180 bytes, data rather than overhead. The
        // embedded store keeps events in its file.
        let journal = if row.store == "in-memory" { (row.commands / 2) * 180 / 1024 } else { 0 };
        // What each active cart costs beyond the journal: the anonymous memory's growth.
        let per_cart =
            (row.peak_kib.1.saturating_sub(row.rest_kib.1).saturating_sub(journal)) as f64 / row.carts as f64;
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "{:<10} {:>6} {:>9} {:>7.0} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>12} {:>16.1} {:>8}",
            row.store,
            row.carts,
            row.commands,
            row.per_second,
            mib(row.rest_kib.0),
            mib(row.peak_kib.0),
            mib(row.after_kib.0),
            mib(row.rest_kib.1),
            mib(row.peak_kib.1),
            mib(row.after_kib.1),
            journal,
            per_cart,
            row.threads,
        );
    }
}
