//! Abusive and idle clients on the client port, in entity and passthrough mode: slow request
//! headers, a silent connection and a stalled HTTP/2 preface are closed after the header
//! timeout, a silent connection after the idle timeout; beyond the connection limit clients
//! wait in the kernel's accept queue while `/ready`, `/alive` and `/metrics` still answer on
//! their own ports; the soft open-file limit is raised to the hard one at start. Timeouts are
//! configured short; each wait has a generous upper bound. Loopback only.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cart;
use stead_proxy::passthrough::detect::HTTP2_PREFACE;
use stead_proxy::{ProxyConfig, ProxyMode, StoreConfig};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Every wait for the proxy to close a connection ends within this, or the test fails.
const BOUND: Duration = Duration::from_secs(15);

/// Reads until the proxy closes the connection (end of stream or reset); returns what came.
async fn closed_by_the_proxy(mut stream: impl AsyncRead + Unpin, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: the proxy did not close the connection within {BOUND:?}");
    received
}

/// A client that sends request headers a byte at a time and never finishes them; what it reads.
async fn slowloris(addr: SocketAddr) -> tokio::net::tcp::OwnedReadHalf {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (read, mut write) = stream.into_split();
    tokio::spawn(async move {
        let _ = write.write_all(b"GET /carts/ann HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    read
}

/// A connection that has sent `bytes` and then nothing.
async fn stalled(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(bytes).await.expect("writes");
    stream
}

/// An empty SETTINGS frame: what an HTTP/2 client sends right after the preface.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];

/// The cart in entity mode, with `configure` applied.
async fn entity(configure: impl FnOnce(&mut ProxyConfig)) -> common::RunningProxy {
    cart::proxy_in_memory_with(configure).await
}

/// A passthrough proxy in front of an HTTP/1.1 server, with `configure` applied.
async fn passthrough(configure: impl FnOnce(&mut ProxyConfig)) -> common::RunningProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let user = listener.local_addr().expect("addr");
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello from upstream" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut config = ProxyConfig::local("127.0.0.1:0".parse().expect("addr"), user);
    config.mode = ProxyMode::Passthrough;
    config.store = StoreConfig::None;
    configure(&mut config);
    common::start_configured(config).await
}

/// A GET on a kept-alive HTTP/1.1 connection; the status code. The response body is read whole.
async fn get_on(stream: &mut TcpStream, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, stream.read(&mut byte)).await.expect("an answer").expect("reads");
        assert_eq!(n, 1, "the connection closed during the response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .expect("a content length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("the body");
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_closed_after_the_header_timeout() {
    let short = |config: &mut ProxyConfig| {
        config.connections.header_read_timeout = Duration::from_millis(300);
        config.connections.idle_timeout = None;
    };
    let proxy = entity(short).await;
    let addr = proxy.addr;
    let silent = TcpStream::connect(addr).await.expect("connects");
    let slow = slowloris(addr).await;
    let preface_only = stalled(addr, HTTP2_PREFACE).await;
    let mut cut = HTTP2_PREFACE.to_vec();
    cut.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3]);
    let cut_frame = stalled(addr, &cut).await;
    closed_by_the_proxy(silent, "a silent connection").await;
    let answered = closed_by_the_proxy(slow, "a client sending its headers a byte at a time").await;
    assert!(answered.is_empty() || answered.starts_with(b"HTTP/1.1 408"), "{answered:?}");
    closed_by_the_proxy(preface_only, "an HTTP/2 preface without a frame").await;
    closed_by_the_proxy(cut_frame, "an HTTP/2 preface with half a SETTINGS frame").await;

    // A kept-alive HTTP/1.1 connection waiting for its next request is closed too.
    let mut kept = TcpStream::connect(addr).await.expect("connects");
    assert_eq!(get_on(&mut kept, "/carts/ann").await, 200);
    closed_by_the_proxy(kept, "a kept-alive connection without a next request").await;
    // Clients that do send their request in time are served.
    let mut prompt = TcpStream::connect(addr).await.expect("connects");
    assert_eq!(get_on(&mut prompt, "/carts/ann").await, 200);

    let proxy = passthrough(short).await;
    let slow = slowloris(proxy.addr).await;
    let preface_only = stalled(proxy.addr, HTTP2_PREFACE).await;
    closed_by_the_proxy(slow, "passthrough: a client sending its headers a byte at a time").await;
    closed_by_the_proxy(preface_only, "passthrough: an HTTP/2 preface without a frame").await;
    let mut prompt = TcpStream::connect(proxy.addr).await.expect("connects");
    assert_eq!(get_on(&mut prompt, "/hello").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let idle = |config: &mut ProxyConfig| {
        config.connections.header_read_timeout = Duration::from_secs(30);
        config.connections.idle_timeout = Some(Duration::from_millis(300));
    };
    // Entity mode: an HTTP/2 connection past its preamble, with nothing more to say.
    let proxy = entity(idle).await;
    let mut preamble = HTTP2_PREFACE.to_vec();
    preamble.extend_from_slice(EMPTY_SETTINGS);
    let h2 = stalled(proxy.addr, &preamble).await;
    let received = closed_by_the_proxy(h2, "an idle HTTP/2 connection").await;
    assert_eq!(received.get(3), Some(&0x4), "the proxy's SETTINGS came first: {received:?}");

    // Passthrough mode: a silent client is opaque TCP (its server might speak first), so only
    // the idle timeout ends it; an HTTP/2 connection past its preamble likewise.
    let proxy = passthrough(idle).await;
    let silent = TcpStream::connect(proxy.addr).await.expect("connects");
    closed_by_the_proxy(silent, "passthrough: a silent connection").await;
    let h2 = stalled(proxy.addr, &preamble).await;
    closed_by_the_proxy(h2, "passthrough: an idle HTTP/2 connection").await;
}

/// Whether `stream` has received nothing so far (its request is unanswered).
fn nothing_received(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// With a limit of 3, three served connections hold every place: a fourth is not accepted
/// (its request waits unanswered) while the management ports answer; when one of the three
/// leaves, the fourth is served.
async fn check_the_limit(proxy: &common::RunningProxy, path: &str) {
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connects");
        assert_eq!(get_on(&mut stream, path).await, 200);
        held.push(stream);
    }
    let mut waiting = TcpStream::connect(proxy.addr).await.expect("the kernel queues the connection");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    waiting.write_all(request.as_bytes()).await.expect("writes into the queue");
    for _ in 0..3 {
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 200);
        assert_eq!(common::http_get(proxy.health, "/alive").await.0, 200);
        assert_eq!(common::http_get(proxy.metrics, "/metrics").await.0, 200);
    }
    assert!(nothing_received(&waiting), "the fourth connection was served beyond the limit");
    drop(held.pop());
    let answer = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 12];
        waiting.read_exact(&mut buf).await.map(|_| buf)
    })
    .await
    .expect("the waiting connection is served once a place is free")
    .expect("reads");
    assert_eq!(&answer, b"HTTP/1.1 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_limit_clients_wait_while_the_management_ports_answer() {
    let limited = |config: &mut ProxyConfig| {
        config.connections.max_connections = Some(3);
        config.connections.header_read_timeout = Duration::from_secs(60);
    };
    let proxy = entity(limited).await;
    check_the_limit(&proxy, "/carts/ann").await;
    let proxy = passthrough(limited).await;
    let deadline = tokio::time::Instant::now() + BOUND;
    while common::http_get(proxy.health, "/ready").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the passthrough proxy is not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check_the_limit(&proxy, "/hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("reads the limit");
    // As `ulimit -n 256` leaves it (nextest runs each test in its own process).
    let low = hard.min(256);
    setrlimit(Resource::RLIMIT_NOFILE, low, hard).expect("lowers the soft limit");
    let proxy = entity(|_| {}).await;
    let (soft, hard_now) = getrlimit(Resource::RLIMIT_NOFILE).expect("reads the limit");
    assert_eq!((soft, hard_now), (hard, hard), "the soft limit is the hard limit once the proxy started");
    proxy.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_256_descriptors_idle_clients_neither_starve_ready_nor_the_next_client() {
    use nix::sys::resource::{Resource, setrlimit};
    // `ulimit -n 256` for this process (nextest runs each test in its own): the clients' sockets
    // below count against it too. The derived limit is (256 - 128) / 2 = 64 connections.
    setrlimit(Resource::RLIMIT_NOFILE, 256, 256).expect("lowers the limit");
    let proxy = entity(|config| config.connections.header_read_timeout = Duration::from_secs(1)).await;
    let mut idle = Vec::new();
    for n in 0..150 {
        let stream = TcpStream::connect(proxy.addr).await.unwrap_or_else(|e| panic!("connection {n}: {e}"));
        idle.push(stream);
    }
    for _ in 0..5 {
        assert_eq!(common::http_get(proxy.health, "/ready").await.0, 200);
        assert_eq!(common::http_get(proxy.metrics, "/metrics").await.0, 200);
    }
    // Accepted idle clients are closed after the header timeout, so queued ones are accepted in
    // turn, and a client with a request behind them is served.
    let mut prompt = TcpStream::connect(proxy.addr).await.expect("connects");
    assert_eq!(get_on(&mut prompt, "/carts/ann").await, 200);
    drop(idle);
}
