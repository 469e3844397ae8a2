//! Several proxy replicas serving the same entity over one PostgreSQL database: concurrent
//! commands through three proxies lose no event and write none twice.
//!
//! What happens to a conflicting command (documented behaviour): the replica whose append loses
//! (its first sequence number is taken) reloads the journal, restarts the user function's stream
//! with the fresh state and sends the command again, up to `eventsourced::MAX_ATTEMPTS` times;
//! after that the command fails cleanly (gRPC UNKNOWN naming the conflict) with nothing written.
//!
//! Needs `STEAD_TEST_POSTGRES_URL`; skips without it, or fails under CI.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cart::{self, CartFunction, api};
use futures::future::join_all;
use prost::Message as _;
use stead_proxy::StoreConfig;
use stead_proxy::store::{PostgresStore, Store as _};

const PER_PROXY: usize = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_on_one_postgres_lose_no_event_and_write_none_twice() {
    let Some(pg) = common::postgres_proxy_config().await else { return };
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut proxies = Vec::new();
        for _ in 0..3 {
            let user = cart::serve_user_function(CartFunction { snapshot_every: 4 }).await;
            proxies.push(common::start_proxy(user, StoreConfig::Postgres(pg.clone())).await);
        }
        let mut calls = Vec::new();
        for (p, proxy) in proxies.iter().enumerate() {
            let client = cart::client(proxy.addr).await;
            for i in 0..PER_PROXY {
                let mut client = client.clone();
                let product = format!("p{p}-{i}");
                calls.push(async move {
                    let request = api::AddLineItem {
                        user_id: "shared".into(),
                        product_id: product.clone(),
                        name: product.clone(),
                        quantity: 1,
                    };
                    (product, client.add_item(request).await)
                });
            }
        }
        let results = join_all(calls).await;
        let mut succeeded = BTreeSet::new();
        let mut failed = BTreeSet::new();
        for (product, result) in results {
            match result {
                Ok(_) => {
                    succeeded.insert(product);
                }
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
                    assert!(
                        status.message().contains("already exists"),
                        "a clean conflict failure: {status:?}"
                    );
                    failed.insert(product);
                }
            }
        }
        eprintln!("{} commands succeeded, {} failed cleanly after retries", succeeded.len(), failed.len());
        assert!(!succeeded.is_empty());

        // The journal: contiguous, every successful command's event exactly once, no other.
        let store = PostgresStore::connect(pg.connection(), 2).await.expect("connects");
        let journal = store.read_events("shopping-cart|shared", 0).await.expect("read");
        let sequence: Vec<u64> = journal.iter().map(|e| e.sequence_number).collect();
        assert_eq!(sequence, (1..=journal.len() as u64).collect::<Vec<_>>());
        let mut written = Vec::new();
        for event in &journal {
            let added =
                cart::api::persistence::ItemAdded::decode(event.payload.value.as_slice()).expect("ItemAdded");
            written.push(added.item.expect("item").product_id);
        }
        let unique: BTreeSet<String> = written.iter().cloned().collect();
        assert_eq!(unique.len(), written.len(), "no event written twice: {written:?}");
        assert_eq!(unique, succeeded, "exactly the successful commands' events are stored");

        // Every replica, reloading, sees the same cart.
        for proxy in proxies {
            proxy.stop().await.expect("stops");
        }
        let user = cart::serve_user_function(CartFunction { snapshot_every: 4 }).await;
        let fresh = common::start_proxy(user, StoreConfig::Postgres(pg.clone())).await;
        let mut client = cart::client(fresh.addr).await;
        let cart = client.get_cart(api::GetShoppingCart { user_id: "shared".into() }).await.expect("get");
        let products: BTreeSet<String> = cart.into_inner().items.into_iter().map(|i| i.product_id).collect();
        assert_eq!(products, succeeded);
        drop(client);
        fresh.stop().await.expect("stops");
    })
    .await
    .expect("the test finishes within 120 s");
}
