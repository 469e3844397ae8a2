//! HTTP/JSON transcoding and gRPC server reflection on the proxy port, in front of the Rust
//! shopping-cart user function (`common/cart.rs`), whose proto carries `google.api.http` rules:
//! `post: "/cart/{user_id}/items/add" body: "*"`, `post: "/cart/{user_id}/items/{product_id}/remove"`,
//! `get: "/carts/{user_id}"` plus `get: "/carts/{user_id}/items" response_body: "items"`.
//! Clients are real: raw HTTP/1.1, hyper's HTTP/2 client, tonic's gRPC clients. Loopback only.

mod common;

use std::time::Duration;

use common::cart::{self, api};
use common::http::{request, request_typed};
use prost::Message as _;
use serde_json::json;
use stead_proxy::protocol::grpc::reflection::{v1, v1alpha};

use cart::proxy_in_memory as start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_over_http_json_shares_state_with_grpc() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = start().await;
        let addr = proxy.addr;

        let added = request(
            addr,
            "POST",
            "/cart/ann/items/add",
            Some(r#"{"productId": "apple", "name": "Apple", "quantity": 2}"#),
        )
        .await;
        assert_eq!(added.status, 200, "{added:?}");
        assert_eq!(added.header("content-type"), Some("application/json"));
        assert_eq!(added.json(), json!({}));
        // Original field names are accepted too; the path's user id wins over the body's.
        let added = request(
            addr,
            "POST",
            "/cart/ann/items/add",
            Some(r#"{"user_id": "bob", "product_id": "pear", "name": "Pear", "quantity": 1}"#),
        )
        .await;
        assert_eq!(added.status, 200, "{added:?}");

        let cart = request(addr, "GET", "/carts/ann", None).await;
        assert_eq!(cart.status, 200, "{cart:?}");
        assert_eq!(
            cart.json(),
            json!({"items": [
                {"productId": "apple", "name": "Apple", "quantity": 2},
                {"productId": "pear", "name": "Pear", "quantity": 1},
            ]})
        );

        let removed = request(addr, "POST", "/cart/ann/items/pear/remove", None).await;
        assert_eq!(removed.status, 200, "{removed:?}");
        // The additional binding answers only the `items` field.
        let items = request(addr, "GET", "/carts/ann/items", None).await;
        assert_eq!(items.json(), json!([{"productId": "apple", "name": "Apple", "quantity": 2}]));
        let empty = request(addr, "GET", "/carts/bob", None).await;
        assert_eq!(empty.json(), json!({"items": []}), "bob's cart is a separate, empty entity");

        // gRPC on the same port sees the same entity.
        let mut client = cart::client(addr).await;
        client
            .add_item(api::AddLineItem {
                user_id: "ann".into(),
                product_id: "apple".into(),
                name: "Apple".into(),
                quantity: 3,
            })
            .await
            .expect("AddItem over gRPC");
        let cart = request(addr, "GET", "/carts/ann?unused_by_get=", None).await;
        assert_eq!(cart.status, 400, "an unknown query parameter is refused: {cart:?}");
        let cart = request(addr, "GET", "/carts/ann?userId=ignored", None).await;
        assert_eq!(cart.json(), json!({"items": [{"productId": "apple", "name": "Apple", "quantity": 5}]}));

        // HTTP/2 without gRPC is transcoded too.
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(connection);
        let h2 = http::Request::get(format!("http://{addr}/carts/ann"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender.send_request(h2).await.expect("h2 response");
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.expect("body").to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["items"][0]["quantity"], 5);

        drop(client);
        proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_http_statuses_with_a_json_body() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = start().await;
        let addr = proxy.addr;

        // The entity's failure: gRPC UNKNOWN, HTTP 500.
        let absent = request(addr, "POST", "/cart/ann/items/cherry/remove", None).await;
        assert_eq!(absent.status, 500, "{absent:?}");
        let body = absent.json();
        assert_eq!(body["code"], 2);
        assert!(body["message"].as_str().unwrap_or_default().contains("not in the cart"), "{body}");

        // A value of the wrong type: 400 naming the field, nothing reaches the entity.
        let bad =
            request(addr, "POST", "/cart/ann/items/add", Some(r#"{"productId": "a", "quantity": "lots"}"#))
                .await;
        assert_eq!(bad.status, 400, "{bad:?}");
        assert_eq!(bad.json()["code"], 3);
        assert!(bad.json()["message"].as_str().unwrap_or_default().contains("quantity"), "{bad:?}");
        // Unknown fields are ignored, as grpc-gateway's default marshaler does (here: bob's cart).
        let unknown = request(
            addr,
            "POST",
            "/cart/bob/items/add",
            Some(r#"{"productId": "plum", "name": "Plum", "quantity": 1, "colour": {"r": [255]}}"#),
        )
        .await;
        assert_eq!(unknown.status, 200, "{unknown:?}");
        let bob = request(addr, "GET", "/carts/bob", None).await;
        assert_eq!(bob.json(), json!({"items": [{"productId": "plum", "name": "Plum", "quantity": 1}]}));
        let mixed =
            request(addr, "POST", "/cart/ann/items/add", Some(r#"{"colour": "red", "quantity": [1]}"#)).await;
        assert_eq!(mixed.status, 400, "a known field of the wrong type is refused: {mixed:?}");
        assert!(mixed.body.contains("quantity"), "{mixed:?}");
        let broken = request(addr, "POST", "/cart/ann/items/add", Some("{")).await;
        assert_eq!(broken.status, 400, "{broken:?}");

        // No rule: 404; a rule for another HTTP method: 405.
        let none = request(addr, "GET", "/nothing/here", None).await;
        assert_eq!(none.status, 404, "{none:?}");
        assert_eq!(none.json()["code"], 5);
        let wrong = request(addr, "DELETE", "/carts/ann", None).await;
        assert_eq!(wrong.status, 405, "{wrong:?}");

        let cart = request(addr, "GET", "/carts/ann", None).await;
        assert_eq!(cart.json(), json!({"items": []}), "no failed request changed the cart");
        proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_with_a_body_take_only_json_content_types() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = start().await;
        let addr = proxy.addr;
        let item = r#"{"productId": "apple", "name": "Apple", "quantity": 1}"#;
        // What a page of any origin may POST without a preflight: text/plain, forms, or no type.
        for content_type in [
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let refused = request_typed(addr, "POST", "/cart/ann/items/add", content_type, item).await;
            assert_eq!(refused.status, 415, "{content_type:?}: {refused:?}");
            assert_eq!(refused.json()["code"], 3);
            let message = refused.json()["message"].as_str().unwrap_or_default().to_string();
            assert!(message.contains("expected application/json"), "{message}");
        }
        let cart = request(addr, "GET", "/carts/ann", None).await;
        assert_eq!(cart.json(), json!({"items": []}), "no refused request reached the entity");
        for content_type in ["application/json; charset=utf-8", "application/merge-patch+json"] {
            let added = request_typed(addr, "POST", "/cart/ann/items/add", Some(content_type), item).await;
            assert_eq!(added.status, 200, "{content_type}: {added:?}");
        }
        // A route without a body needs no content type.
        let removed =
            request_typed(addr, "POST", "/cart/ann/items/apple/remove", Some("text/plain"), "").await;
        assert_eq!(removed.status, 200, "{removed:?}");
        proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_values_that_are_not_utf8_are_refused_not_merged() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = start().await;
        let addr = proxy.addr;
        // Decoded lossily, both were the cart "\u{fffd}\u{fffd}" (or "\u{fffd}").
        for (path, encoded) in [("/carts/%ff%fe", "%ff%fe"), ("/carts/%C0%AF", "%C0%AF")] {
            let refused = request(addr, "GET", path, None).await;
            assert_eq!(refused.status, 400, "{path}: {refused:?}");
            assert_eq!(refused.json()["code"], 3);
            let message = refused.json()["message"].as_str().unwrap_or_default().to_string();
            assert!(
                message.contains(&format!(
                    "path variable user_id: {encoded:?} does not percent-decode to UTF-8 text"
                )),
                "{message}"
            );
        }
        let added = request(
            addr,
            "POST",
            "/cart/%E2%82%AC/items/add",
            Some(r#"{"productId": "a", "name": "A", "quantity": 1}"#),
        )
        .await;
        assert_eq!(added.status, 200, "valid UTF-8 is decoded: {added:?}");
        let euro = request(addr, "GET", "/carts/%e2%82%ac", None).await;
        assert_eq!(euro.json()["items"][0]["productId"], "a", "{euro:?}");
        let query = request(addr, "GET", "/carts/ann?user_id=%ff", None).await;
        assert_eq!(query.status, 400, "{query:?}");
        proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 60 s");
}

/// The files of a reflection answer, loaded into one pool (so every import is there) from their
/// bytes as sent (prost-types' messages would drop the custom options).
fn pool_of(files: &[Vec<u8>]) -> prost_reflect::DescriptorPool {
    let mut set = Vec::new();
    for file in files {
        prost::encoding::bytes::encode(1, file, &mut set);
    }
    prost_reflect::DescriptorPool::decode(set.as_slice()).expect("the answer holds every import")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_cart_and_returns_its_file() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = start().await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connects");

        use v1::server_reflection_request::MessageRequest as Ask;
        use v1::server_reflection_response::MessageResponse as Tell;
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let asks = vec![
            Ask::ListServices(String::new()),
            Ask::FileContainingSymbol(format!("{}.AddItem", cart::SERVICE)),
            Ask::FileByFilename("shoppingcart.proto".into()),
            Ask::FileContainingSymbol("no.such.Symbol".into()),
        ];
        let requests: Vec<v1::ServerReflectionRequest> = asks
            .into_iter()
            .map(|ask| v1::ServerReflectionRequest { host: String::new(), message_request: Some(ask) })
            .collect();
        let mut answers = client
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection answers")
            .into_inner();
        let mut next = async || -> Tell {
            answers
                .message()
                .await
                .expect("an answer")
                .expect("not the end")
                .message_response
                .expect("a response")
        };

        let Tell::ListServicesResponse(list) = next().await else { panic!("a service list") };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&cart::SERVICE.to_string()), "{names:?}");
        assert!(names.contains(&"grpc.reflection.v1.ServerReflection".to_string()), "{names:?}");

        for _ in 0..2 {
            let Tell::FileDescriptorResponse(files) = next().await else { panic!("files") };
            let first = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
                .expect("decodes");
            assert_eq!(first.name(), "shoppingcart.proto");
            let pool = pool_of(&files.file_descriptor_proto);
            let service = pool.get_service_by_name(cart::SERVICE).expect("the cart's service");
            let add = service.methods().find(|m| m.name() == "AddItem").expect("AddItem");
            let rule = stead_proxy::frontend::transcode::http_rule(&add).expect("options are kept");
            assert_eq!(
                rule.pattern,
                Some(stead_proxy::protocol::google::api::http_rule::Pattern::Post(
                    "/cart/{user_id}/items/add".into()
                ))
            );
        }
        let Tell::ErrorResponse(error) = next().await else { panic!("an error") };
        assert_eq!(error.error_code, tonic::Code::NotFound as i32);

        // The older name answers the same.
        let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
        let ask = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers =
            alpha.server_reflection_info(tokio_stream::iter([ask])).await.expect("answers").into_inner();
        let answer = answers.message().await.expect("an answer").expect("one");
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("a service list")
        };
        assert!(list.service.iter().any(|s| s.name == cart::SERVICE));
        drop(answers);
        proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 60 s");
}
