//! No acknowledged write is lost or duplicated when the proxy is killed mid-burst.
//!
//! The proxy runs as a child process (this test's binary run again, told by an environment
//! variable to be `stead proxy`: the same configuration from the environment, the same runtime
//! and `stead_proxy::run`) on the embedded store in a temp dir, in front of the Rust cart user
//! function (snapshots every 5 events) served by the test. Each cycle starts the proxy on the
//! store the last one left, sends a burst of concurrent `AddItem`s (every item id unique,
//! quantity 1) to a few carts, and SIGKILLs the proxy after a number of acknowledgements drawn
//! from a seeded generator, while commands are in flight, queued behind others of their cart,
//! being persisted. At the end every cart holds each acknowledged item exactly once (quantity 1),
//! each item that was in flight at a kill at most once, and nothing else; the journals behind
//! them have no gaps and no repeated item.

mod common;

#[path = "../benches/common/child.rs"]
#[allow(dead_code)]
mod child;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::cart::{self, CartFunction, api};
use prost::Message as _;
use stead_proxy::store::{EmbeddedStore, Store as _};

/// Set in the child: it is the proxy.
const ROLE_ENV: &str = "STEAD_KILL_IN_BURST_PROXY";
/// How many kills (default [`CYCLES`]); more for a longer soak.
const CYCLES_ENV: &str = "STEAD_KILL_IN_BURST_CYCLES";
const TEST_NAME: &str = "acknowledged_adds_survive_sigkill_mid_burst";
const CYCLES: usize = 50;
/// Concurrent clients, each with its own connection, two to a cart.
const WORKERS: usize = 8;
const CARTS: usize = 4;
/// A cycle's kill comes after this many acknowledgements at most (at least 1).
const MOST_ACKS_BEFORE_KILL: u64 = 60;
const SEED: u64 = 0x5eed_0014;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// splitmix64: the kill moments, the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn cart_of(worker: usize) -> String {
    format!("cart-{}", worker % CARTS)
}

/// The proxy child and its ports.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    health: SocketAddr,
}

impl Proxy {
    /// Starts `stead proxy` (in this binary) on the store at `store`, in front of `user`; returns
    /// once it is ready.
    async fn start(store: &Path, user: SocketAddr) -> Self {
        let (addr, health, metrics) = (common::free_addr(), common::free_addr(), common::free_addr());
        let exe = std::env::current_exe().expect("test binary path");
        let child = Command::new(exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, "1")
            .env("STEAD_PROXY_MODE", "entity")
            .env("HTTP_PORT", addr.port().to_string())
            .env("USER_FUNCTION_PORT", user.port().to_string())
            .env("MANAGEMENT_PORT", health.port().to_string())
            .env("METRICS_PORT", metrics.port().to_string())
            .env("STEAD_STORE", "embedded")
            .env("STEAD_STORE_PATH", store)
            .env("STEAD_DISCOVERY_BACKOFF_MS", "10")
            .env("MALLOC_ARENA_MAX", child::malloc_arenas())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the proxy child starts");
        let mut proxy = Self { child, addr, health };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !proxy.is_ready().await {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("the proxy exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "the proxy is not ready after 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        proxy
    }

    async fn is_ready(&self) -> bool {
        tokio::net::TcpStream::connect(self.health).await.is_ok()
            && common::http_get(self.health, "/ready").await.0 == 200
    }

    /// SIGKILL, then reaps it.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the proxy");
        let status = self.child.wait().expect("reaps the proxy");
        assert_eq!(status.signal(), Some(9), "the proxy died of the SIGKILL, not before: {status}");
    }

    /// Closes its stdin (it stops cleanly, closing the store), then reaps it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        child::wait_then_kill(&mut self.child, Duration::from_secs(20));
    }
}

/// What one worker saw in one cycle.
#[derive(Default)]
struct Outcome {
    acknowledged: Vec<String>,
    /// The add that failed because the proxy was killed: sent or not, it may have been written.
    in_flight: Option<String>,
}

/// Adds items `<prefix>-0`, `<prefix>-1`, ... to `cart` one after another until a call fails;
/// a failure before the kill is the test's failure.
async fn worker(
    mut client: cart::Client,
    cart: String,
    prefix: String,
    acks: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) -> Result<Outcome, String> {
    let mut outcome = Outcome::default();
    for n in 0u64.. {
        let product = format!("{prefix}-{n}");
        let call = client.add_item(cart::line(&cart, &product, &product, 1));
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {
                outcome.acknowledged.push(product);
                acks.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Err(_)) if killed.load(Ordering::Acquire) => {
                outcome.in_flight = Some(product);
                return Ok(outcome);
            }
            Ok(Err(status)) => return Err(format!("AddItem {product} to {cart} before the kill: {status}")),
            Err(_) => return Err(format!("AddItem {product} to {cart}: no answer in {CALL_TIMEOUT:?}")),
        }
    }
    Ok(outcome)
}

/// Every item each cart holds (quantities), over gRPC.
async fn served(addr: SocketAddr) -> BTreeMap<String, BTreeMap<String, i32>> {
    let mut client = cart::client(addr).await;
    let mut carts = BTreeMap::new();
    for c in 0..CARTS {
        let cart = format!("cart-{c}");
        let items = cart::get(&mut client, &cart).await.into_iter().map(|(id, _, q)| (id, q)).collect();
        carts.insert(cart, items);
    }
    carts
}

#[test]
fn acknowledged_adds_survive_sigkill_mid_burst() {
    if std::env::var_os(ROLE_ENV).is_some() {
        child::child_proxy();
        return;
    }
    let cycles = std::env::var(CYCLES_ENV).ok().and_then(|n| n.parse().ok()).unwrap_or(CYCLES);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), bursts(cycles))
            .await
            .expect("the kills and the checks finish within 240 s");
    });
}

async fn bursts(cycles: usize) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store.redb");
    let user = cart::serve_user_function(CartFunction { snapshot_every: 5 }).await;
    let mut rng = Rng(SEED);
    // Per cart: items acknowledged, items in flight at a kill.
    let mut acknowledged: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut in_flight: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    for cycle in 0..cycles {
        let proxy = Proxy::start(&store, user).await;
        let acks = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        // Connected first, so that the kill finds every worker sending.
        let mut clients = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            clients.push(cart::client(proxy.addr).await);
        }
        let workers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(w, client)| {
                let prefix = format!("c{cycle}w{w}");
                tokio::spawn(worker(client, cart_of(w), prefix, acks.clone(), killed.clone()))
            })
            .collect();
        let target = rng.between(1, MOST_ACKS_BEFORE_KILL) as usize;
        let extra = Duration::from_micros(rng.between(0, 2_000));
        let deadline = Instant::now() + Duration::from_secs(20);
        while acks.load(Ordering::Acquire) < target {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: fewer than {target} adds acknowledged in 20 s"
            );
            if workers.iter().all(tokio::task::JoinHandle::is_finished) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(extra).await;
        killed.store(true, Ordering::Release);
        proxy.kill();
        for (w, handle) in workers.into_iter().enumerate() {
            let outcome = handle.await.expect("the worker does not panic");
            let outcome = outcome.unwrap_or_else(|e| panic!("cycle {cycle}, worker {w}: {e}"));
            acknowledged.entry(cart_of(w)).or_default().extend(outcome.acknowledged);
            in_flight.entry(cart_of(w)).or_default().extend(outcome.in_flight);
        }
    }

    let proxy = Proxy::start(&store, user).await;
    let carts = served(proxy.addr).await;
    proxy.stop();

    let journals = EmbeddedStore::open(&store).expect("the store opens");
    let (mut acked_total, mut in_flight_total, mut in_flight_written) = (0, 0, 0);
    for c in 0..CARTS {
        let cart = format!("cart-{c}");
        let held = &carts[&cart];
        let acked = acknowledged.remove(&cart).unwrap_or_default();
        let maybe = in_flight.remove(&cart).unwrap_or_default();
        let lost: Vec<_> = acked.iter().filter(|item| !held.contains_key(*item)).collect();
        assert!(lost.is_empty(), "{cart}: {} acknowledged adds lost: {lost:?}", lost.len());
        let repeated: Vec<_> = held.iter().filter(|(_, quantity)| **quantity != 1).collect();
        assert!(repeated.is_empty(), "{cart}: items added more than once: {repeated:?}");
        let unknown: Vec<_> =
            held.keys().filter(|item| !acked.contains(*item) && !maybe.contains(*item)).collect();
        assert!(unknown.is_empty(), "{cart}: items nobody added: {unknown:?}");
        acked_total += acked.len();
        in_flight_total += maybe.len();
        in_flight_written += held.len() - acked.len();
        journal_matches(&journals, &cart, held).await;
    }
    journals.close().await.expect("closes the store");
    eprintln!(
        "{cycles} SIGKILLs mid-burst in {:.1} s: {acked_total} acknowledged adds, none lost or \
         duplicated; {in_flight_written} of the {in_flight_total} adds in flight at a kill were written",
        started.elapsed().as_secs_f64()
    );
}

/// The cart's journal: sequence numbers 1..n, each item added once, the items `held`.
async fn journal_matches(store: &EmbeddedStore, cart: &str, held: &BTreeMap<String, i32>) {
    let journal = format!("{}|{cart}", cart::PERSISTENCE_ID);
    let events = store.read_events(&journal, 0).await.expect("reads the journal");
    let numbers: Vec<u64> = events.iter().map(|e| e.sequence_number).collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "{journal}: the journal has gaps or repeats");
    let mut items = BTreeSet::new();
    for event in &events {
        let added = api::persistence::ItemAdded::decode(event.payload.value.as_slice()).unwrap_or_else(|e| {
            panic!("{journal}: event {} is not an ItemAdded: {e}", event.sequence_number)
        });
        let item = added.item.unwrap_or_default().product_id;
        assert!(items.insert(item.clone()), "{journal}: {item} is journaled twice");
    }
    let held: BTreeSet<String> = held.keys().cloned().collect();
    assert_eq!(items, held, "{journal}: the journal and the served cart differ");
}
