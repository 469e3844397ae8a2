//! Passthrough mode over real loopback sockets: HTTP/1.1, HTTP/2 (gRPC) and opaque TCP (a
//! server-first protocol) reach the user port unchanged, are counted in the metrics, and
//! readiness follows the user port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cart::{self, api};
use stead_proxy::passthrough::detect::HTTP2_PREFACE;
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

/// An HTTP/2 server (the `h2` crate, so that nothing is hidden) answering by path:
/// `/status/NNN` with status NNN, the request's body echoed and `grpc-status` trailers;
/// `/wait` with 200 once `release` is notified; `/half` with a head and some data, then a
/// reset once `release` is notified;
/// `/die` by dropping the whole connection.
async fn h2_upstream(release: std::sync::Arc<tokio::sync::Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let release = release.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else { return };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let path = request.uri().path().to_string();
                    if path == "/die" {
                        return;
                    }
                    let release = release.clone();
                    tokio::spawn(async move {
                        if path == "/half" {
                            let head = http::Response::new(());
                            let Ok(mut send) = respond.send_response(head, false) else { return };
                            let _ = send.send_data(bytes::Bytes::from_static(b"partial"), false);
                            // h2 would drop the head still queued if the reset came at once.
                            release.notified().await;
                            send.send_reset(h2::Reason::ENHANCE_YOUR_CALM);
                            return;
                        }
                        if path == "/wait" {
                            release.notified().await;
                            let _ = respond.send_response(http::Response::new(()), true);
                            return;
                        }
                        let status: u16 = path.trim_start_matches("/status/").parse().unwrap_or(500);
                        let mut body = request.into_body();
                        let mut echo = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            echo.extend_from_slice(&chunk);
                        }
                        let head = http::Response::builder().status(status).body(()).expect("response");
                        let Ok(mut send) = respond.send_response(head, false) else { return };
                        send.reserve_capacity(echo.len());
                        if send.send_data(echo.into(), false).is_err() {
                            return;
                        }
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let _ = send.send_trailers(trailers);
                    });
                }
            });
        }
    });
    addr
}

/// An `h2` client connection through the proxy at `addr`.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let (client, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Sends `body` to `path` and returns the status, the body and the trailers' `grpc-status`.
async fn h2_call(
    client: &h2::client::SendRequest<bytes::Bytes>,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>, Option<String>), h2::Error> {
    let mut client = client.clone().ready().await?;
    let request = http::Request::post(format!("http://stead{path}")).body(()).expect("request");
    let (response, mut send) = client.send_request(request, false)?;
    send.reserve_capacity(body.len());
    send.send_data(body.into(), true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?;
    let grpc_status = trailers.and_then(|t| Some(t.get("grpc-status")?.to_str().ok()?.to_string()));
    Ok((status, received, grpc_status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_pass_unchanged_and_are_counted_by_status() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = passthrough(h2_upstream(Default::default()).await).await;
        let client = h2_client(proxy.addr).await;
        // Statuses outside HPACK's static table (503, 201) go into the user port's dynamic
        // table on first use and are referred to by index afterwards; bodies of up to 256 KiB
        // cross flow-control windows many times.
        let statuses = [200u16, 503, 404, 201, 503, 200, 404, 503, 201, 200];
        let calls = statuses.iter().enumerate().map(|(i, &status)| {
            let client = client.clone();
            let body: Vec<u8> = (0..(1usize << (2 * i)).min(1 << 20)).map(|b| (b * 7 + i) as u8).collect();
            async move {
                let answer =
                    h2_call(&client, &format!("/status/{status}"), body.clone()).await.expect("answered");
                assert_eq!(answer, (status, body, Some("0".to_string())), "status {status}");
            }
        });
        futures::future::join_all(calls).await;
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        let requests = |status: &str| {
            counter(
                &metrics,
                &format!("stead_proxy_requests_total{{protocol=\"http2\",status=\"{status}\"}}"),
            )
        };
        assert_eq!(requests("2xx"), 5, "{metrics}");
        assert_eq!(requests("4xx"), 2, "{metrics}");
        assert_eq!(requests("5xx"), 3, "{metrics}");
        assert_eq!(requests("error"), 0, "{metrics}");
        assert_eq!(counter(&metrics, "stead_proxy_requests_in_flight{protocol=\"http2\"}"), 0);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 60 s");
}

/// Polls the proxy's metrics until `line` shows `value` (the proxy reads along after it has
/// forwarded, so a client may see an answer a moment before the metrics do).
async fn await_metric(proxy: &common::RunningProxy, line: &str, value: u64) {
    for _ in 0..200 {
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        if counter(&metrics, line) == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
    panic!("{line} never became {value}:\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_in_flight_are_counted_until_answered_and_cancels_are_not_failures() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let proxy = passthrough(h2_upstream(release.clone()).await).await;
        let client = h2_client(proxy.addr).await;
        let in_flight = "stead_proxy_requests_in_flight{protocol=\"http2\"}";
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { h2_call(&client, "/wait", Vec::new()).await.expect("answered").0 }
        });
        await_metric(&proxy, in_flight, 1).await;
        release.notify_one();
        assert_eq!(waiting.await.expect("joins"), 200);
        await_metric(&proxy, in_flight, 0).await;
        // A call the client gives up on (its stream reset with CANCEL) is neither answered nor
        // failed.
        let abandoned = tokio::spawn({
            let client = client.clone();
            async move { h2_call(&client, "/wait", Vec::new()).await }
        });
        await_metric(&proxy, in_flight, 1).await;
        abandoned.abort();
        await_metric(&proxy, in_flight, 0).await;
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        assert_eq!(counter(&metrics, "stead_proxy_requests_total{protocol=\"http2\",status=\"2xx\"}"), 1);
        assert_eq!(counter(&metrics, "stead_proxy_requests_total{protocol=\"http2\",status=\"error\"}"), 0);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_user_port_that_drops_the_connection_fails_its_open_requests() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let proxy = passthrough(h2_upstream(Default::default()).await).await;
        let client = h2_client(proxy.addr).await;
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { h2_call(&client, "/wait", Vec::new()).await }
        });
        await_metric(&proxy, "stead_proxy_requests_in_flight{protocol=\"http2\"}", 1).await;
        h2_call(&client, "/die", Vec::new()).await.expect_err("the connection is gone");
        waiting.await.expect("joins").expect_err("the connection is gone");
        await_metric(&proxy, "stead_proxy_requests_total{protocol=\"http2\",status=\"error\"}", 2).await;
        await_metric(&proxy, "stead_proxy_requests_in_flight{protocol=\"http2\"}", 0).await;
        await_metric(&proxy, "stead_proxy_open_connections{protocol=\"http2\"}", 0).await;
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_reset_after_the_response_head_reaches_the_client_with_its_reason() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let proxy = passthrough(h2_upstream(release.clone()).await).await;
        let client = h2_client(proxy.addr).await;
        let mut sender = client.clone().ready().await.expect("ready");
        let request = http::Request::post("http://stead/half").body(()).expect("request");
        let (response, _) = sender.send_request(request, true).expect("sends");
        let response = response.await.expect("the head comes");
        assert_eq!(response.status(), 200);
        release.notify_one();
        let mut body = response.into_body();
        let error = loop {
            match body.data().await.expect("the body ends with the reset, not cleanly") {
                Ok(chunk) => assert_eq!(&chunk[..], b"partial"),
                Err(error) => break error,
            }
        };
        assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{error}");
        // The head had come: the request counts as answered, and the connection goes on.
        let answer = h2_call(&client, "/status/200", b"next".to_vec()).await.expect("answered");
        assert_eq!(answer.0, 200);
        await_metric(&proxy, "stead_proxy_requests_total{protocol=\"http2\",status=\"2xx\"}", 2).await;
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}

/// A user port that reads the preface, leaves what follows unread, then writes `reply` and
/// closes: with unread bytes, the kernel resets the connection right after `reply`.
async fn replies_then_resets(reply: Vec<u8>) -> SocketAddr {
    use tokio::io::AsyncReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; HTTP2_PREFACE.len()];
                let _ = stream.read_exact(&mut preface).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = stream.write_all(&reply).await;
            });
        }
    });
    addr
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(payload.len()).expect("small").to_be_bytes()[1..].to_vec();
    bytes.extend([kind, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

/// Sends the preface, then PINGs without pause; returns what came back before the end.
async fn flooding_h2_client(addr: SocketAddr) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let (mut read, mut write) = tokio::net::TcpStream::connect(addr).await.expect("connects").into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(HTTP2_PREFACE).await;
        let pings = frame(0x6, 0, 0, &[0; 8]).repeat(1000);
        while write.write_all(&pings).await.is_ok() {}
    });
    let mut received = Vec::new();
    let mut buffer = [0u8; 65536];
    while let Ok(n @ 1..) = read.read(&mut buffer).await {
        received.extend_from_slice(&buffer[..n]);
    }
    writer.abort();
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_http2_user_port_said_before_it_reset_reaches_the_client() {
    tokio::time::timeout(Duration::from_secs(60), async {
        // SETTINGS and GOAWAY: what a server says before it goes.
        let mut reply = frame(0x4, 0, 0, &[]);
        reply.extend(frame(0x7, 0, 0, &[0; 8]));
        let upstream = replies_then_resets(reply.clone()).await;
        let proxy = passthrough(upstream).await;
        for round in 0..5 {
            assert_eq!(flooding_h2_client(upstream).await, reply, "direct, round {round}");
            assert_eq!(flooding_h2_client(proxy.addr).await, reply, "through the proxy, round {round}");
        }
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_user_port_left_unanswered_fails_even_if_the_client_then_resets() {
    use tokio::io::AsyncReadExt as _;
    tokio::time::timeout(Duration::from_secs(30), async {
        let request = frame(0x1, 0x5, 1, b"\x82");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let upstream = listener.local_addr().expect("addr");
        let expected = HTTP2_PREFACE.len() + request.len();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accepts");
            let mut seen = vec![0u8; expected];
            let _ = stream.read_exact(&mut seen).await;
            // Closes without answering, nothing left unread.
        });
        let proxy = passthrough(upstream).await;
        let mut client = tokio::net::TcpStream::connect(proxy.addr).await.expect("connects");
        client.write_all(HTTP2_PREFACE).await.expect("writes");
        client.write_all(&request).await.expect("writes");
        let mut buffer = [0u8; 64];
        assert_eq!(
            client.read(&mut buffer).await.expect("reads"),
            0,
            "the user port's end reaches the client"
        );
        client.set_zero_linger().expect("linger");
        drop(client); // then the client resets rather than closing cleanly
        await_metric(&proxy, "stead_proxy_requests_total{protocol=\"http2\",status=\"error\"}", 1).await;
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 30 s");
}
