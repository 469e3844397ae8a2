//! The proxy's runtime against a user function written in Rust (tonic), over real sockets:
//! discovery, routing by entity key, events durable before replies, failures, snapshots,
//! recovery after a restart, health and metrics.

mod common;

use std::time::Duration;

use common::cart::{self, CartFunction, api};
use stead_proxy::StoreConfig;
use stead_proxy::store::{EmbeddedStore, Store as _};

use cart::{get, line as add};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_events_failures_and_recovery_with_the_embedded_store() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.redb");
        let user = cart::serve_user_function(CartFunction { snapshot_every: 3 }).await;
        let proxy = common::start_proxy(user, StoreConfig::Embedded { path: path.clone() }).await;
        let mut client = cart::client(proxy.addr).await;

        client.add_item(add("ann", "apple", "Apple", 2)).await.expect("add");
        client.add_item(add("ann", "pear", "Pear", 1)).await.expect("add");
        client.add_item(add("bob", "plum", "Plum", 7)).await.expect("add (other entity)");
        client.add_item(add("ann", "apple", "Apple", 3)).await.expect("add");
        client.remove_item(api::RemoveLineItem { user_id: "ann".into(), product_id: "pear".into() }).await.expect("remove");
        assert_eq!(get(&mut client, "ann").await, vec![("apple".into(), "Apple".into(), 5)]);
        assert_eq!(get(&mut client, "bob").await, vec![("plum".into(), "Plum".into(), 7)]);

        let failure = client
            .remove_item(api::RemoveLineItem { user_id: "ann".into(), product_id: "cherry".into() })
            .await
            .expect_err("removing an absent item fails");
        assert_eq!(failure.code(), tonic::Code::Unknown);
        assert!(failure.message().contains("not in the cart"), "{}", failure.message());
        assert_eq!(get(&mut client, "ann").await, vec![("apple".into(), "Apple".into(), 5)]);

        // Health and metrics.
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 200);
        assert_eq!(common::http_get(proxy.health, "/alive").await.0, 200);
        let (status, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        assert_eq!(status, 200);
        assert!(metrics.contains("stead_proxy_commands_total{entity_type=\"event_sourced\",service=\"com.example.shoppingcart.ShoppingCart\",command=\"RemoveItem\",outcome=\"failed\"} 1"), "{metrics}");
        assert!(metrics.contains("stead_proxy_store_duration_seconds_count{operation=\"append\",outcome=\"ok\"} 5"), "{metrics}");

        drop(client);
        proxy.stop().await.expect("the proxy stops cleanly");

        // The journal: four events for ann (the failed command wrote none), a snapshot at 3.
        let store = EmbeddedStore::open(&path).expect("the store reopens after the proxy stopped");
        let journal = store.read_events("shopping-cart|ann", 0).await.expect("read");
        assert_eq!(journal.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        let types: Vec<&str> = journal.iter().map(|e| e.payload.type_url.rsplit('.').next().unwrap_or("")).collect();
        assert_eq!(types, vec!["ItemAdded", "ItemAdded", "ItemAdded", "ItemRemoved"]);
        let snapshot = store.latest_snapshot("shopping-cart|ann").await.expect("snapshot").expect("one was taken");
        assert_eq!(snapshot.sequence_number, 3);
        store.close().await.expect("closes");

        // A new proxy recovers the state from the snapshot and the event after it.
        let proxy = common::start_proxy(user, StoreConfig::Embedded { path: path.clone() }).await;
        let mut client = cart::client(proxy.addr).await;
        assert_eq!(get(&mut client, "ann").await, vec![("apple".into(), "Apple".into(), 5)]);
        client.add_item(add("ann", "fig", "Fig", 1)).await.expect("add after recovery");
        assert_eq!(
            get(&mut client, "ann").await,
            vec![("apple".into(), "Apple".into(), 5), ("fig".into(), "Fig".into(), 1)]
        );
        drop(client);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_forgets_on_restart_and_unknown_methods_are_unimplemented() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let user = cart::serve_user_function(CartFunction { snapshot_every: 0 }).await;
        let proxy = common::start_proxy(user, StoreConfig::Memory).await;
        let mut client = cart::client(proxy.addr).await;
        client.add_item(add("ann", "apple", "Apple", 2)).await.expect("add");
        assert_eq!(get(&mut client, "ann").await.len(), 1);
        let bad = client.add_item(add("ann", "apple", "Apple", -1)).await.expect_err("negative quantity");
        assert_eq!(bad.code(), tonic::Code::Unknown);
        drop(client);
        proxy.stop().await.expect("stops");
        let proxy = common::start_proxy(user, StoreConfig::Memory).await;
        let mut client = cart::client(proxy.addr).await;
        assert!(get(&mut client, "ann").await.is_empty(), "a new in-memory store starts empty");
        // A service the user function did not declare.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connects");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("ready");
        let path = http::uri::PathAndQuery::from_static("/no.Such/Method");
        let status = grpc
            .unary::<(), (), _>(tonic::Request::new(()), path, tonic_prost::ProstCodec::default())
            .await
            .expect_err("unknown service");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        drop(client);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_discovery_answers() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let user = common::free_addr();
        let proxy = common::start_proxy(user, StoreConfig::Memory).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 503);
        assert_eq!(common::http_get(proxy.health, "/alive").await.0, 200);
        proxy.stop().await.expect("stops while waiting for discovery");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[test]
fn the_catalog_finds_the_carts_entity_keys_by_either_option_number() {
    use stead_proxy::catalog::Catalog;
    use stead_proxy::protocol::cloudstate::{Entity, EntitySpec};
    let spec = EntitySpec {
        proto: cart::DESCRIPTORS.to_vec(),
        entities: vec![Entity {
            entity_type: "cloudstate.eventsourced.EventSourced".into(),
            service_name: cart::SERVICE.into(),
            persistence_id: "shopping-cart".into(),
            passivation_strategy: None,
        }],
        service_info: None,
    };
    let catalog = Catalog::build(&spec, true).unwrap_or_else(|problems| panic!("{problems:?}"));
    let service = catalog.service(cart::SERVICE).expect("the cart is resolved");
    let method = &service.methods["AddItem"];
    assert_eq!(method.key_fields.iter().map(|f| f.name()).collect::<Vec<_>>(), vec!["user_id"]);
    let request = prost::Message::encode_to_vec(&add("ann", "apple", "Apple", 1));
    assert_eq!(method.entity_id(&request).expect("decodes"), "ann");
    let without_store = Catalog::build(&spec, false).expect_err("event sourcing needs a store");
    assert!(without_store[0].to_string().contains("needs a store"), "{}", without_store[0]);
}

#[test]
fn the_catalog_finds_entity_keys_declared_with_option_1080() {
    use stead_proxy::catalog::Catalog;
    use stead_proxy::protocol::cloudstate::{Entity, EntitySpec};
    let dir = tempfile::tempdir().expect("temp dir");
    let proto = r#"
        syntax = "proto3";
        package t;
        import "cloudstate/entity_key.proto";
        message Req { string tenant = 1 [(.cloudstate.entity_key) = true]; int64 id = 2 [(.cloudstate.entity_key) = true]; string other = 3; }
        service Counter { rpc Get(Req) returns (Req); }
    "#;
    std::fs::write(dir.path().join("t.proto"), proto).expect("writes");
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let mut compiler =
        protox::Compiler::new([dir.path(), std::path::Path::new(proto_dir)]).expect("compiler");
    compiler.include_imports(true);
    compiler.open_files(["t.proto"]).expect("compiles");
    let spec = EntitySpec {
        proto: compiler.encode_file_descriptor_set(),
        entities: vec![Entity {
            entity_type: "cloudstate.valueentity.ValueEntity".into(),
            service_name: "t.Counter".into(),
            persistence_id: String::new(),
            passivation_strategy: None,
        }],
        service_info: None,
    };
    let catalog = Catalog::build(&spec, true).unwrap_or_else(|problems| panic!("{problems:?}"));
    let service = catalog.service("t.Counter").expect("resolved");
    assert_eq!(service.persistence_id, "t.Counter", "defaults to the service name");
    let method = &service.methods["Get"];
    let names: Vec<&str> = method.key_fields.iter().map(|f| f.name()).collect();
    assert_eq!(names, vec!["tenant", "id"]);
    // tenant = "acme" (field 1), id = 42 (field 2), other = "x" (field 3): keys joined with "-".
    let request = [0x0a, 4, b'a', b'c', b'm', b'e', 0x10, 42, 0x1a, 1, b'x'];
    assert_eq!(method.entity_id(&request).expect("decodes"), "acme-42");
    assert!(method.entity_id(&[0x0a, 9]).is_err(), "a truncated request is an error, not a panic");
}

/// Messages far larger than the codec buffers (256 and 512 bytes) of an entity's `handle`
/// stream, both ways and on replay: each command, its event and the cart's reply, then the events
/// a new proxy replays to the user function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_far_larger_than_the_entity_streams_buffers_go_through_intact() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.redb");
        let user = cart::serve_user_function(CartFunction { snapshot_every: 0 }).await;
        let names: Vec<String> = [255, 256, 300, 70_000, 1_000_000]
            .iter()
            .enumerate()
            .map(|(k, n)| (0..*n).map(|i| char::from(b'a' + ((i + k) % 26) as u8)).collect())
            .collect();
        let expected: Vec<(String, String, i32)> =
            names.iter().enumerate().map(|(i, name)| (format!("p{i}"), name.clone(), 1)).collect();
        let same = |got: &[(String, String, i32)]| {
            got.len() == expected.len() && got.iter().zip(&expected).all(|(g, e)| g == e)
        };

        let proxy = common::start_proxy(user, StoreConfig::Embedded { path: path.clone() }).await;
        let mut client = cart::client(proxy.addr).await;
        for (i, name) in names.iter().enumerate() {
            client.add_item(add("big", &format!("p{i}"), name, 1)).await.expect("adds a large item");
        }
        let got = get(&mut client, "big").await;
        assert!(
            same(&got),
            "the cart came back changed: name lengths {:?}",
            got.iter().map(|g| g.1.len()).collect::<Vec<_>>()
        );
        drop(client);
        proxy.stop().await.expect("stops");

        let proxy = common::start_proxy(user, StoreConfig::Embedded { path }).await;
        let mut client = cart::client(proxy.addr).await;
        let got = get(&mut client, "big").await;
        assert!(
            same(&got),
            "the replayed cart differs: name lengths {:?}",
            got.iter().map(|g| g.1.len()).collect::<Vec<_>>()
        );
        drop(client);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("the test finishes within 60 s");
}
