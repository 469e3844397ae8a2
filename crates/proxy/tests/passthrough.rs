//! Passthrough mode over real loopback sockets: HTTP/1.1, HTTP/2 (gRPC) and opaque TCP (a
//! server-first protocol) reach the user port unchanged, are counted in the metrics, and
//! readiness follows the user port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cart::{self, api};
use stead_proxy::{ProxyConfig, ProxyMode, StoreConfig};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

async fn passthrough(user: SocketAddr) -> common::RunningProxy {
    let mut config = ProxyConfig::local("127.0.0.1:0".parse().expect("addr"), user);
    config.mode = ProxyMode::Passthrough;
    config.store = StoreConfig::None;
    common::start_configured(config).await
}

/// An HTTP/1.1 server on loopback.
async fn http1_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello from upstream" }))
        .route("/missing", axum::routing::get(|| async { (axum::http::StatusCode::NOT_FOUND, "nope") }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A server that speaks first (a greeting), then echoes lines.
async fn greeting_echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                if write.write_all(b"220 greetings\r\n").await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write.write_all(format!("echo {line}\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn counter(metrics: &str, name_and_labels: &str) -> u64 {
    metrics.lines().find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_are_forwarded_and_counted() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let proxy = passthrough(http1_upstream().await).await;
        let (status, body) = common::http_get(proxy.addr, "/hello").await;
        assert_eq!((status, body.as_str()), (200, "hello from upstream"));
        let (status, _) = common::http_get(proxy.addr, "/missing").await;
        assert_eq!(status, 404);
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        assert_eq!(counter(&metrics, "stead_proxy_connections_total{protocol=\"http1\"}"), 2, "{metrics}");
        assert_eq!(counter(&metrics, "stead_proxy_requests_total{protocol=\"http1\",status=\"2xx\"}"), 1);
        assert_eq!(counter(&metrics, "stead_proxy_requests_total{protocol=\"http1\",status=\"4xx\"}"), 1);
        assert_eq!(counter(&metrics, "stead_proxy_requests_in_flight{protocol=\"http1\"}"), 0);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_http2_is_forwarded() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let proxy = passthrough(cart::serve_direct().await).await;
        let mut client = cart::client(proxy.addr).await;
        let add =
            api::AddLineItem { user_id: "u".into(), product_id: "p".into(), name: "P".into(), quantity: 2 };
        client.add_item(add).await.expect("add through passthrough");
        let cart =
            client.get_cart(api::GetShoppingCart { user_id: "u".into() }).await.expect("get").into_inner();
        assert_eq!(cart::items(&cart), vec![("p".to_string(), "P".to_string(), 2)]);
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        assert_eq!(counter(&metrics, "stead_proxy_connections_total{protocol=\"http2\"}"), 1, "{metrics}");
        assert_eq!(counter(&metrics, "stead_proxy_requests_total{protocol=\"http2\",status=\"2xx\"}"), 2);
        assert_eq!(counter(&metrics, "stead_proxy_open_connections{protocol=\"http2\"}"), 1);
        drop(client);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_first_protocol_passes_as_opaque_tcp() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let proxy = passthrough(greeting_echo_upstream().await).await;
        let stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connects");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        // The client waits for the greeting: the proxy must decide "opaque" on its own.
        assert_eq!(lines.next_line().await.expect("reads").as_deref(), Some("220 greetings"));
        write.write_all(b"ping\r\n").await.expect("writes");
        assert_eq!(lines.next_line().await.expect("reads").as_deref(), Some("echo ping"));
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        assert_eq!(counter(&metrics, "stead_proxy_connections_total{protocol=\"tcp\"}"), 1, "{metrics}");
        assert_eq!(counter(&metrics, "stead_proxy_open_connections{protocol=\"tcp\"}"), 1);
        drop(write);
        drop(lines);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_user_port() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let user = listener.local_addr().expect("addr");
        let proxy = passthrough(user).await;
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 200);
        drop(listener);
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 503);
        assert_eq!(common::http_get(proxy.health, "/alive").await.0, 200);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

/// An HTTP/2 server that resets every stream with REFUSED_STREAM before answering, except
/// `/ok`, which it answers with 200.
async fn refusing_h2_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else { return };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    if request.uri().path() == "/ok" {
                        let _ = respond.send_response(http::Response::new(()), true);
                    } else {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http2_stream_the_user_port_resets_reaches_the_client_as_that_reset() {
    let proxy = passthrough(refusing_h2_upstream().await).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connects");
    let (client, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(connection);
    let call = |path: &'static str| {
        let client = client.clone();
        async move {
            let mut client = client.ready().await.expect("ready");
            let request = http::Request::post(format!("http://stead{path}")).body(()).expect("request");
            let (response, _) = client.send_request(request, true).expect("sends");
            tokio::time::timeout(Duration::from_secs(10), response).await.expect("answers in time")
        }
    };
    let error = call("/refuse").await.expect_err("the stream is reset");
    assert_eq!(error.reason(), Some(h2::Reason::REFUSED_STREAM), "{error}");
    // The connection is still good for the next call.
    assert_eq!(call("/ok").await.expect("answered").status(), 200);
}
