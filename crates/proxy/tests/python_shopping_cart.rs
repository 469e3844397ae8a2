//! The official Python support library (PyPI `cloudstate==0.1.1`) as a real peer: the shopping
//! cart of `examples/shopping-cart-python` (the `shopping_cart.py` key of its `program.yaml`
//! ConfigMap, the very program `stead up` runs) runs as a process on a loopback port, a proxy runs
//! in this process in front of it, and a tonic client (generated from the same proto) drives it.
//! After a restart of both the user function and the proxy, the embedded and PostgreSQL stores
//! give the cart back; the in-memory store starts empty.
//!
//! Needs `STEAD_CLOUDSTATE_PYTHON`: a Python with `cloudstate==0.1.1`, `protobuf==4.25.3` and
//! `grpcio==1.59.3` (`.ci/run` makes `.venv-cloudstate`); skips without it, or fails under CI.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cart::{self, api};
use stead_proxy::StoreConfig;
use stead_proxy::store::{EmbeddedStore, PostgresStore, Store as _};

const ENV: &str = "STEAD_CLOUDSTATE_PYTHON";

/// The cloudstate Python; `None` (with a message) without it, which fails the test under CI.
fn python() -> Option<String> {
    stead_testkit::require_env(
        ENV,
        &format!(
            "a Python with the cloudstate library to run.\n\
             To run: python3 -m venv /tmp/cs && /tmp/cs/bin/pip install --no-deps cloudstate==0.1.1 \
             protobuf==4.25.3 grpcio==1.59.3 && {ENV}=/tmp/cs/bin/python cargo nextest run -p stead-proxy \
             --test python_shopping_cart"
        ),
    )
}

/// The example's ConfigMap, which holds the program.
const PROGRAM_YAML: &str = include_str!("../../../examples/shopping-cart-python/program.yaml");

/// The `shopping_cart.py` block of the example's ConfigMap, written to `dir`.
fn example_program(dir: &Path) -> PathBuf {
    let program: Vec<&str> = PROGRAM_YAML
        .lines()
        .skip_while(|line| line.trim_end() != "  shopping_cart.py: |")
        .skip(1)
        .take_while(|line| line.trim().is_empty() || line.starts_with("    "))
        .map(|line| line.get(4..).unwrap_or_default())
        .collect();
    let program = program.join("\n");
    assert!(
        program.contains("register_event_sourced_entity"),
        "examples/shopping-cart-python/program.yaml has no shopping_cart.py block: {program:?}"
    );
    let path = dir.join("shopping_cart.py");
    std::fs::write(&path, program).expect("writes the program");
    path
}

/// The Python user function, killed when dropped.
struct UserFunction {
    child: tokio::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl UserFunction {
    fn start(python: &str) -> Self {
        let addr = common::free_addr();
        let dir = tempfile::tempdir().expect("temp dir");
        let script = example_program(dir.path());
        let child = tokio::process::Command::new(python)
            .arg(script)
            .arg(cart::DESCRIPTORS_PATH)
            .env("PORT", addr.port().to_string())
            .env("HOST", "127.0.0.1")
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the Python user function starts");
        Self { child, addr, _dir: dir }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

use cart::{get, line as add};

/// The proxy becomes ready once the (slow to start) Python process answers discovery.
async fn ready(proxy: &common::RunningProxy) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while common::http_get(proxy.health, "/ready").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the proxy is not ready after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds, removes, fails, reads; restarts everything; returns the cart seen after the restart.
async fn scenario(python: &str, store: StoreConfig) -> Vec<(String, String, i32)> {
    let user = UserFunction::start(python);
    let proxy = common::start_proxy(user.addr, store.clone()).await;
    ready(&proxy).await;
    let mut client = cart::client(proxy.addr).await;

    client.add_item(add("ann", "apple", "Apple", 2)).await.expect("add apple");
    client.add_item(add("ann", "pear", "Pear", 1)).await.expect("add pear");
    client.add_item(add("ann", "apple", "Apple", 3)).await.expect("add more apples");
    client
        .remove_item(api::RemoveLineItem { user_id: "ann".into(), product_id: "pear".into() })
        .await
        .expect("remove pear");
    assert_eq!(get(&mut client, "ann").await, vec![("apple".into(), "Apple".into(), 5)]);
    assert!(get(&mut client, "bob").await.is_empty(), "another entity is separate");

    let failure = client
        .remove_item(api::RemoveLineItem { user_id: "ann".into(), product_id: "cherry".into() })
        .await
        .expect_err("removing an absent item fails");
    assert_eq!(failure.code(), tonic::Code::Unknown);
    assert!(failure.message().contains("not in the cart"), "{}", failure.message());
    assert_eq!(get(&mut client, "ann").await, vec![("apple".into(), "Apple".into(), 5)]);

    drop(client);
    proxy.stop().await.expect("the proxy stops cleanly");
    user.stop().await;

    let user = UserFunction::start(python);
    let proxy = common::start_proxy(user.addr, store).await;
    ready(&proxy).await;
    let mut client = cart::client(proxy.addr).await;
    let recovered = get(&mut client, "ann").await;
    drop(client);
    proxy.stop().await.expect("the proxy stops cleanly");
    user.stop().await;
    recovered
}

/// The journal of ann's cart: event types in order.
async fn journal(store: &impl stead_proxy::store::Store) -> Vec<String> {
    let events = store.read_events("shopping-cart|ann", 0).await.expect("read");
    events.iter().map(|e| e.payload.type_url.rsplit('.').next().unwrap_or_default().to_string()).collect()
}

const FOUR_EVENTS: [&str; 4] = ["ItemAdded", "ItemAdded", "ItemAdded", "ItemRemoved"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cart_with_the_memory_store_starts_empty_after_a_restart() {
    let Some(python) = python() else { return };
    let recovered = tokio::time::timeout(Duration::from_secs(120), scenario(&python, StoreConfig::Memory))
        .await
        .expect("the scenario finishes within 120 s");
    assert!(recovered.is_empty(), "in-memory state is gone with the proxy: {recovered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cart_survives_restarts_with_the_embedded_store() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = StoreConfig::Embedded { path: path.clone() };
    let recovered = tokio::time::timeout(Duration::from_secs(120), scenario(&python, store))
        .await
        .expect("the scenario finishes within 120 s");
    assert_eq!(recovered, vec![("apple".to_string(), "Apple".to_string(), 5)]);
    let store = EmbeddedStore::open(&path).expect("reopens");
    assert_eq!(journal(&store).await, FOUR_EVENTS, "the failed command persisted nothing");
    // No snapshot here: library 0.1.1 counts sequence numbers from the last replayed event only,
    // so on a fresh stream it snapshots only when one command emits `snapshot_every` events.
    // `python_cart_comes_back_from_its_snapshots` makes it snapshot.
    store.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cart_survives_restarts_with_postgres() {
    let Some(python) = python() else { return };
    let Some(pg) = common::postgres_proxy_config().await else { return };
    let store = StoreConfig::Postgres(pg.clone());
    let recovered = tokio::time::timeout(Duration::from_secs(120), scenario(&python, store))
        .await
        .expect("the scenario finishes within 120 s");
    assert_eq!(recovered, vec![("apple".to_string(), "Apple".to_string(), 5)]);
    let store = PostgresStore::connect(pg.connection(), 2).await.expect("connects");
    assert_eq!(journal(&store).await, FOUR_EVENTS, "the failed command persisted nothing");
}

/// One life of the Python user function and the proxy on the embedded store at `path`: `adds`
/// items added (product `p<n>`, one each), then the cart as read.
async fn life(python: &str, path: &Path, adds: std::ops::Range<usize>) -> Vec<(String, String, i32)> {
    let user = UserFunction::start(python);
    let proxy = common::start_proxy(user.addr, StoreConfig::Embedded { path: path.to_path_buf() }).await;
    ready(&proxy).await;
    let mut client = cart::client(proxy.addr).await;
    for n in adds {
        let product = format!("p{n:02}");
        client.add_item(add("ann", &product, &product, 1)).await.expect("add an item");
    }
    let cart = client.get_cart(api::GetShoppingCart { user_id: "ann".into() }).await;
    drop(client);
    proxy.stop().await.expect("the proxy stops cleanly");
    user.stop().await;
    cart.map(|cart| cart::items(&cart.into_inner())).unwrap_or_else(|e| panic!("GetCart: {e}"))
}

/// The sequence number of ann's latest snapshot, if any.
async fn latest_snapshot(path: &Path) -> Option<u64> {
    let store = EmbeddedStore::open(path).expect("reopens");
    let snapshot = store.latest_snapshot("shopping-cart|ann").await.expect("reads");
    store.close().await.expect("closes");
    snapshot.map(|s| s.sequence_number)
}

/// The example snapshots (`snapshot_every=5`), and a cart comes back from its snapshot: 4 adds,
/// restart, 1 add (the library, counting from the 4 replayed events, snapshots at 5), restart,
/// then the cart from the snapshot; 4 more adds, restart, 1 add past a second snapshot, restart.
/// The library as published cannot read a snapshot back (the example makes up for it): every
/// command on a snapshotted cart failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cart_comes_back_from_its_snapshots() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let items = |n: usize| -> Vec<(String, String, i32)> {
        (0..n).map(|n| (format!("p{n:02}"), format!("p{n:02}"), 1)).collect()
    };
    tokio::time::timeout(Duration::from_secs(180), async {
        assert_eq!(life(&python, &path, 0..4).await, items(4));
        assert_eq!(latest_snapshot(&path).await, None, "4 events, no snapshot yet");
        assert_eq!(life(&python, &path, 4..5).await, items(5));
        assert_eq!(latest_snapshot(&path).await, Some(5), "the fifth event came with a snapshot");
        assert_eq!(life(&python, &path, 5..9).await, items(9), "from the snapshot, then 4 adds");
        assert_eq!(life(&python, &path, 9..10).await, items(10));
        assert_eq!(latest_snapshot(&path).await, Some(10), "a second snapshot");
        assert_eq!(life(&python, &path, 10..12).await, items(12), "from the second snapshot");
    })
    .await
    .expect("the scenario finishes within 180 s");
}

/// The same cart driven over HTTP/JSON through the `google.api.http` rules of its proto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cart_over_http_json() {
    use common::http::request;
    use serde_json::json;
    let Some(python) = python() else { return };
    tokio::time::timeout(Duration::from_secs(120), async {
        let user = UserFunction::start(&python);
        let proxy = common::start_proxy(user.addr, StoreConfig::Memory).await;
        ready(&proxy).await;
        let addr = proxy.addr;
        let add = |body: &'static str| request(addr, "POST", "/cart/ann/items/add", Some(body));
        assert_eq!(add(r#"{"productId": "apple", "name": "Apple", "quantity": 2}"#).await.status, 200);
        assert_eq!(add(r#"{"product_id": "pear", "name": "Pear", "quantity": 1}"#).await.status, 200);
        let removed = request(addr, "POST", "/cart/ann/items/pear/remove", None).await;
        assert_eq!(removed.status, 200, "{removed:?}");
        let cart = request(addr, "GET", "/carts/ann", None).await;
        assert_eq!(cart.status, 200, "{cart:?}");
        assert_eq!(cart.json(), json!({"items": [{"productId": "apple", "name": "Apple", "quantity": 2}]}));
        let items = request(addr, "GET", "/carts/ann/items", None).await;
        assert_eq!(items.json(), json!([{"productId": "apple", "name": "Apple", "quantity": 2}]));

        let absent = request(addr, "POST", "/cart/ann/items/cherry/remove", None).await;
        assert_eq!(absent.status, 500, "the library's failure is gRPC UNKNOWN: {absent:?}");
        assert_eq!(absent.json()["code"], 2);
        let bad = add(r#"{"quantity": "lots"}"#).await;
        assert_eq!(bad.status, 400, "{bad:?}");
        assert!(bad.body.contains("quantity"), "{bad:?}");
        assert_eq!(request(addr, "GET", "/no/such/path", None).await.status, 404);

        let mut client = cart::client(addr).await;
        assert_eq!(get(&mut client, "ann").await, vec![("apple".into(), "Apple".into(), 2)]);
        drop(client);
        proxy.stop().await.expect("the proxy stops cleanly");
        user.stop().await;
    })
    .await
    .expect("the scenario finishes within 120 s");
}
