//! stead's passthrough proxy against HAProxy and nginx, and the proxy's own memory.
//!
//! How to run: `nice cargo bench -p stead-proxy --bench proxy_peers`. Needs Debian's `haproxy`,
//! `nginx` (plus `libnginx-mod-stream` for nginx's TCP row), `wrk` and `h2load`
//! (`nghttp2-client`); a missing one prints which package to install and its rows are skipped.
//!
//! Everything runs on 127.0.0.1 in one run, against the same backends in this process:
//! - HTTP/1.1: a hyper server answering `GET /` with 13 bytes; loaded by `wrk` (2 threads, 16
//!   keep-alive connections, 4 s) directly, through stead (passthrough mode, HTTP/1 detected),
//!   through HAProxy (`mode http`) and through nginx (`proxy_pass`, upstream keep-alive).
//! - TCP: an echo server; 16 connections each sending 64-byte messages and awaiting the echo
//!   (bounded count, 4 s), directly, through stead (opaque TCP detected), HAProxy (`mode tcp`)
//!   and nginx (`stream`).
//! - gRPC over HTTP/2 cleartext (prior knowledge): a tonic server (`cart::DirectCart`, in
//!   memory) answering unary `ShoppingCart/GetCart` with a one-item cart, directly, through
//!   stead (HTTP/2 detected by the preface), HAProxy (`mode http`, `bind ... proto h2`, `server
//!   ... proto h2`) and nginx (`listen ... http2`, `grpc_pass` with upstream keep-alive). Every
//!   path must return the backend's check cart to one GetCart first, else its gRPC rows are
//!   skipped with a line saying why. Loaded by `h2load` (Debian's `nghttp2-client`; 2 threads,
//!   16 HTTP/2 connections, one call in flight on each, 4 s; latencies from its per-request
//!   log).
//!
//! stead's proxy runs as a child process (this bench binary re-executed with
//! `STEAD_BENCH_ROLE=proxy`, configured through the same environment variables as `stead
//! proxy`), so that its memory is its own: VmRSS from `/proc/<pid>/status` at rest, and the
//! highest VmRSS sampled under load. The same is measured for entity mode (in-memory store, a
//! Rust shopping-cart user function in this process, 16 clients adding items to 1,000 carts).
//! HAProxy and nginx run with configs generated in a temp dir and are killed at the end.
//!
//! Fixed-rate rows first (open loop, the way the per-hop target is meant: "sub-millisecond p99
//! at 1000 RPS"): a generator in this bench sends `GET /`, a 64-byte echo message or a GetCart
//! call at 1,000 and 5,000 req/s over 8 keep-alive connections (for gRPC: 8 HTTP/2 connections,
//! one tonic channel each, calls sequential on each, each its own cart), in 1-s slices
//! interleaved across the peers (6 per row), each latency taken from the request's intended
//! send time (see [`open_loop`]), and prints p50, p90, p99, p99.9, the median of the slices'
//! p99s, the proxy's CPU time per request and the p99 each proxy adds over direct (see
//! [`fixed_rate_rows`]). Saturation rows follow: latency there is mostly queueing and, on a
//! small shared machine, scheduling noise; they show throughput. `STEAD_BENCH_ROWS=fixed` runs
//! only the fixed-rate rows.
//!
//! Every saturation row runs twice (all rows in order, then in reverse order, so that the
//! machine's drifting load hits all alike) and reports its better round; fixed-rate rows report
//! all their slices' samples together. Prints p50, p99, requests/s, the
//! p99 each proxy adds over direct, the memory figures, and the machine's load average.
//! Targets (issue 5): the hop adds under 0.3 ms p99, no slower than HAProxy or nginx; memory
//! under 20 MiB.

// The tests' helpers as a whole: `cart.rs` builds on its parent module's.
#[path = "common/child.rs"]
mod child;
#[path = "../tests/common/mod.rs"]
#[allow(unreachable_pub)]
mod common;

use common::cart;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 16;
const LOAD_TIME: Duration = Duration::from_secs(4);
const TCP_MESSAGES_EACH: usize = 20_000;
const MESSAGE: usize = 64;

fn main() {
    if std::env::var("STEAD_BENCH_ROLE").as_deref() == Ok("proxy") {
        child::child_proxy();
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(bench());
}

/// A child process killed (and reaped) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers, which SIGKILL would orphan), then
    /// SIGKILL after 3 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        child::wait_then_kill(&mut self.child, Duration::from_secs(3));
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("binds").local_addr().expect("addr").port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until `addr` accepts connections (10 s at most).
async fn wait_listening(name: &str, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{name}: not listening on {addr} after 10 s, rows skipped");
    false
}

/// The path of `binary` in PATH or the sbin directories, or a line saying which package has it.
fn find(binary: &str, package: &str) -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|dir| Path::new(dir).join(binary))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("{binary}: not found, rows skipped (apt-get install -y {package})"))
}

/// VmRSS (or another field) of a process, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Samples VmRSS every 50 ms while `running`; returns the highest.
fn sample_rss(pid: u32, running: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while running.load(Ordering::Relaxed) {
            peak = peak.max(status_kib(pid, "VmRSS").unwrap_or(0));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

// ---------------------------------------------------------------- backends

async fn http_backend() -> SocketAddr {
    use hyper_util::rt::TokioIo;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"hello, bench\n"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The gRPC backend: `cart::serve_direct`'s in-memory cart server. Each fixed-rate connection's
/// cart and the check cart hold one item.
async fn grpc_backend() -> SocketAddr {
    let addr = cart::serve_direct().await;
    let mut client = cart::client(addr).await;
    for user in (0..OPEN_CONNECTIONS).map(grpc_cart).chain([GRPC_CHECK_CART.to_string()]) {
        client.add_item(cart::line(&user, "p1", "bench item", 1)).await.expect("AddItem on the gRPC backend");
    }
    addr
}

/// The cart read through every gRPC path before its rows run, to show the path reaches the backend.
const GRPC_CHECK_CART: &str = "bench-check";

/// Whether a GetCart through `addr` (5 s at most) returns the backend's one-item check cart.
async fn grpc_check(addr: SocketAddr) -> Result<(), String> {
    let call = async {
        let mut client = cart::Client::new(grpc_channel(addr).await.map_err(|e| format!("connect: {e}"))?);
        let request = cart::api::GetShoppingCart { user_id: GRPC_CHECK_CART.into() };
        let reply = client.get_cart(request).await.map_err(|status| format!("GetCart: {status}"))?;
        match cart::items(reply.get_ref()).as_slice() {
            [(id, _, 1)] if id == "p1" => Ok(()),
            items => Err(format!("GetCart returned {items:?}, not the check cart's one item")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap_or_else(|_| Err("GetCart timed out".into()))
}

// ---------------------------------------------------------------- load

struct Figures {
    p50_us: f64,
    p99_us: f64,
    per_second: f64,
}

/// `wrk` against `addr`; parses its latency distribution and request rate.
fn wrk(wrk: &Path, addr: SocketAddr) -> Option<Figures> {
    let output = Command::new(wrk)
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{}s", LOAD_TIME.as_secs()), "--latency"])
        .arg(format!("http://{addr}/"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut figures = Figures { p50_us: f64::NAN, p99_us: f64::NAN, per_second: f64::NAN };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => figures.p50_us = micros(v)?,
            (Some("99%"), Some(v)) => figures.p99_us = micros(v)?,
            (Some("Requests/sec:"), Some(v)) => figures.per_second = v.parse().ok()?,
            _ => {}
        }
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        println!("wrk against {addr} reported errors:\n{text}");
    }
    Some(figures)
}

/// wrk's durations: `215.00us`, `1.23ms`, `1.00s`.
fn micros(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = value.strip_suffix('m') {
        (v, 60e6)
    } else {
        (value.strip_suffix('s')?, 1e6)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// 16 connections sending 64-byte messages and awaiting each echo.
async fn tcp_load(addr: SocketAddr) -> Figures {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connects");
            let _ = stream.set_nodelay(true);
            // Not HTTP: the first byte is 0, so stead detects opaque TCP at once.
            let mut message = [0u8; MESSAGE];
            message[1] = c as u8;
            let mut reply = [0u8; MESSAGE];
            let mut latencies = Vec::with_capacity(TCP_MESSAGES_EACH);
            for _ in 0..TCP_MESSAGES_EACH {
                if start.elapsed() > LOAD_TIME {
                    break;
                }
                let t = Instant::now();
                stream.write_all(&message).await.expect("writes");
                stream.read_exact(&mut reply).await.expect("reads the echo");
                latencies.push(t.elapsed());
            }
            assert_eq!(reply, message, "the echo came back unchanged");
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("load task"));
    }
    let wall = start.elapsed();
    latencies.sort();
    let at = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).copied().unwrap_or_default().as_secs_f64() * 1e6
    };
    Figures { p50_us: at(0.5), p99_us: at(0.99), per_second: latencies.len() as f64 / wall.as_secs_f64() }
}

/// `h2load` against `addr`: unary GetCart calls (POST, `content-type: application/grpc`) on
/// [`CONNECTIONS`] HTTP/2 cleartext connections, one call in flight on each, for [`LOAD_TIME`].
/// Latencies come from its per-request log (h2load itself prints no percentiles); a stream that
/// failed or did not answer 200 is reported. h2load does not read gRPC trailers: the GetCart
/// check in [`start_proxies`] is what shows each path answers correctly.
fn h2load(h2load: &Path, dir: &Path, addr: SocketAddr) -> Option<Figures> {
    use prost::Message as _;
    let message = cart::api::GetShoppingCart { user_id: grpc_cart(0) }.encode_to_vec();
    // The gRPC length-prefixed message: not compressed, then the length in big-endian.
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(message.len()).ok()?.to_be_bytes());
    body.extend_from_slice(&message);
    let (data, log) = (dir.join("h2load-getcart.bin"), dir.join(format!("h2load-{}.log", addr.port())));
    std::fs::write(&data, body).ok()?;
    let output = Command::new(h2load)
        .args(["-t2", &format!("-c{CONNECTIONS}"), "-m1", &format!("-D{}", LOAD_TIME.as_secs())])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("--data={}", data.display()))
        .arg(format!("--log-file={}", log.display()))
        .arg(format!("http://{addr}/{}/GetCart", cart::SERVICE))
        .output()
        .ok()?;
    let text = std::fs::read_to_string(&log).ok()?;
    let _ = std::fs::remove_file(&log);
    let mut latencies = Vec::new();
    let mut failed = 0;
    for line in text.lines() {
        let mut columns = line.split('\t');
        let (_start, status, micros) = (columns.next(), columns.next(), columns.next());
        match (status, micros.and_then(|m| m.trim().parse::<u64>().ok())) {
            (Some("200"), Some(micros)) => latencies.push(micros),
            _ => failed += 1,
        }
    }
    if failed > 0 || latencies.is_empty() {
        let summary = String::from_utf8_lossy(&output.stdout);
        println!("h2load against {addr}: {failed} failed streams\n{summary}");
    }
    latencies.sort_unstable();
    Some(Figures {
        p50_us: percentile(&latencies, 0.5),
        p99_us: percentile(&latencies, 0.99),
        per_second: latencies.len() as f64 / LOAD_TIME.as_secs_f64(),
    })
}

// ---------------------------------------------------------------- fixed rate (open loop)

/// The offered rates of the fixed-rate rows, requests per second over all connections.
const OPEN_RATES: [u32; 2] = [1_000, 5_000];
const OPEN_CONNECTIONS: u32 = 8;
/// One slice of a fixed-rate row; a row is [`OPEN_ROUNDS`] slices.
const OPEN_TIME: Duration = Duration::from_millis(1_000);
const OPEN_ROUNDS: usize = 6;
/// A reply slower than this ends its connection's run, counted as an error; the load is bounded.
const OPEN_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// What the fixed-rate generator speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// `GET /` on a keep-alive HTTP/1.1 connection; the reply read to the end of its body.
    Http,
    /// A 64-byte message and its echo.
    Tcp,
    /// A unary gRPC call (`ShoppingCart/GetCart`, a one-item cart) on an HTTP/2 cleartext
    /// connection (prior knowledge): one tonic channel per connection, calls sequential on it.
    Grpc,
}

/// One connection of the fixed-rate generator, ready for [`exchange`].
enum Conn {
    /// HTTP/1.1 or TCP: the socket and the buffer for its replies (for TCP: the message).
    Raw(TcpStream, Vec<u8>),
    /// gRPC: a client on its own HTTP/2 connection and the cart it reads (one per connection).
    Grpc(cart::Client, String),
}

/// One fixed-rate run: each exchange's latency in ns, and the exchanges that failed.
#[derive(Default)]
struct OpenRun {
    nanos: Vec<u64>,
    errors: u64,
}

/// Offers `rate` requests/s to `addr` over [`OPEN_CONNECTIONS`] connections for [`OPEN_TIME`].
///
/// Open loop: the send times are fixed in advance (connection `c` sends at `start + (c + k ·
/// connections) / rate`), whatever the replies do. Each latency runs from the request's intended
/// send time, so a reply that comes late delays the next request on its connection and that
/// delay is counted against the proxy (no coordinated omission). One exception keeps the
/// generator's own error out: tokio's timer wakes on 1 ms ticks, so when the connection was idle
/// at the intended time, the latency runs from the actual send instead.
async fn open_loop(addr: SocketAddr, wire: Wire, rate: u32) -> OpenRun {
    let interval = Duration::from_secs(OPEN_CONNECTIONS.into()) / rate;
    let mut tasks = Vec::new();
    // Connect and warm up every connection (stead's detection and upstream connect happen on
    // the first request) before the schedule starts.
    let mut streams = Vec::new();
    for c in 0..OPEN_CONNECTIONS {
        match open_connect(addr, wire, c).await {
            Ok(stream) => streams.push(stream),
            Err(error) => {
                println!("{addr}: fixed-rate connection failed: {error}");
                return OpenRun { nanos: Vec::new(), errors: 1 };
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(20);
    let until = start + OPEN_TIME;
    for (c, stream) in (0..OPEN_CONNECTIONS).zip(streams) {
        let first = start + Duration::from_secs(1) * c / rate;
        tasks.push(tokio::spawn(open_connection(stream, wire, first, interval, until)));
    }
    let mut run = OpenRun::default();
    for task in tasks {
        if let Ok(part) = task.await {
            run.nanos.extend(part.nanos);
            run.errors += part.errors;
        } else {
            run.errors += 1;
        }
    }
    run
}

async fn open_connect(addr: SocketAddr, wire: Wire, c: u32) -> std::io::Result<Conn> {
    let timed_out =
        |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"));
    let mut conn = if wire == Wire::Grpc {
        let connect = grpc_channel(addr);
        let channel =
            tokio::time::timeout(OPEN_REPLY_TIMEOUT, connect).await.map_err(|_| timed_out("connect"))??;
        Conn::Grpc(cart::Client::new(channel), grpc_cart(c))
    } else {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut buf = Vec::with_capacity(4096);
        // Not HTTP for TCP: the first byte is 0, so stead detects opaque TCP at once.
        buf.resize(MESSAGE, 0);
        buf[1] = c as u8;
        Conn::Raw(stream, buf)
    };
    tokio::time::timeout(OPEN_REPLY_TIMEOUT, exchange(&mut conn, wire))
        .await
        .map_err(|_| timed_out("warm-up reply"))??;
    Ok(conn)
}

/// A new HTTP/2 cleartext connection (prior knowledge) to `addr`, TCP_NODELAY set.
async fn grpc_channel(addr: SocketAddr) -> std::io::Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(std::io::Error::other)?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(std::io::Error::other)
}

/// The cart that fixed-rate connection `c` reads; [`grpc_backend`] fills it with one item.
fn grpc_cart(c: u32) -> String {
    format!("bench-{c}")
}

async fn open_connection(
    mut conn: Conn,
    wire: Wire,
    first: Instant,
    interval: Duration,
    until: Instant,
) -> OpenRun {
    let mut run = OpenRun::default();
    let mut previous_done = Instant::now();
    let mut intended = first;
    while intended < until {
        if previous_done < intended {
            tokio::time::sleep_until(intended.into()).await;
        }
        let sent = Instant::now();
        let from = if previous_done <= intended { sent } else { intended };
        match tokio::time::timeout(OPEN_REPLY_TIMEOUT, exchange(&mut conn, wire)).await {
            Ok(Ok(())) => {}
            _ => {
                run.errors += 1;
                break;
            }
        }
        let done = Instant::now();
        run.nanos.push(done.duration_since(from).as_nanos() as u64);
        previous_done = done;
        intended += interval;
    }
    run
}

/// One request and its whole reply. For TCP, the buffer holds the message and is left holding it.
async fn exchange(conn: &mut Conn, wire: Wire) -> std::io::Result<()> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let (stream, buf) = match conn {
        Conn::Raw(stream, buf) => (stream, buf),
        Conn::Grpc(client, user_id) => {
            let request = cart::api::GetShoppingCart { user_id: user_id.clone() };
            let reply = client.get_cart(request).await.map_err(std::io::Error::other)?;
            return if reply.get_ref().items.len() == 1 {
                Ok(())
            } else {
                Err(invalid("not a one-item cart"))
            };
        }
    };
    match wire {
        Wire::Grpc => Err(invalid("a gRPC exchange needs a gRPC connection")),
        Wire::Tcp => {
            let sent = buf[..MESSAGE].to_vec();
            stream.write_all(&sent).await?;
            stream.read_exact(&mut buf[..MESSAGE]).await?;
            if buf[..MESSAGE] != sent[..] {
                return Err(invalid("the echo differs from the message"));
            }
            Ok(())
        }
        Wire::Http => {
            stream.write_all(HTTP_REQUEST).await?;
            buf.clear();
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("head not utf-8"))?;
                    if !head.starts_with("HTTP/1.1 200") {
                        return Err(invalid("status not 200"));
                    }
                    let length = head
                        .lines()
                        .filter_map(|line| line.split_once(':'))
                        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                        .ok_or_else(|| invalid("no content-length"))?;
                    let total = end + 4 + length;
                    while buf.len() < total {
                        if stream.read_buf(buf).await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                    return if buf.len() == total { Ok(()) } else { Err(invalid("bytes after the reply")) };
                }
                if stream.read_buf(buf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

/// Percentile `p` (0..1) of sorted values, nearest rank.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default() as f64
}

/// Runs every fixed-rate row (all peers, both wires, both rates) and prints them.
///
/// Each row runs [`OPEN_ROUNDS`] short slices, interleaved with the other peers' (in order, then
/// in reverse order, and so on), so that the load others put on the machine, which drifts over
/// seconds, falls on every peer alike; a row's figures are over all its slices' samples together
/// (not the better round), so a burst shows instead of being chosen away. `p99 mid` is the
/// median of the slices' own p99s: one slice hit by a burst of others' load (a 1 s stall is
/// 1/6 of a row's samples) moves it little, so it is the steadier figure on a busy machine.
/// `CPU/req` is the proxy processes' run time in µs (schedstat, every thread) over the
/// requests they carried: unlike the tail it barely depends on the machine's load. `+p99` and
/// `+p99 mid` are what the proxy adds over direct.
async fn fixed_rate_rows(entries: &[Entry], pids: &PeerPids) {
    let forth: Vec<usize> = (0..entries.len()).collect();
    let back: Vec<usize> = forth.iter().rev().copied().collect();
    let order: Vec<usize> = (0..OPEN_ROUNDS)
        .flat_map(|round| if round % 2 == 0 { forth.clone() } else { back.clone() })
        .collect();
    for wire in [Wire::Http, Wire::Tcp, Wire::Grpc] {
        for rate in OPEN_RATES {
            // (name, samples of every slice, each slice's p99 in ns, CPU ns)
            let mut rows: Vec<(&str, OpenRun, Vec<u64>, u64)> = Vec::new();
            for &i in &order {
                let name = entries[i].name;
                let Some(addr) = entries[i].addr(wire) else { continue };
                let peer = pids.of(name, wire);
                let before = cpu_nanos(&peer);
                let mut run = open_loop(addr, wire, rate).await;
                let cpu = cpu_nanos(&peer).saturating_sub(before);
                run.nanos.sort_unstable();
                let slice_p99 = percentile(&run.nanos, 0.99) as u64;
                match rows.iter_mut().find(|(n, _, _, _)| *n == name) {
                    Some((_, kept, slices, kept_cpu)) => {
                        kept.nanos.extend(run.nanos);
                        kept.errors += run.errors;
                        slices.push(slice_p99);
                        *kept_cpu += cpu;
                    }
                    None => rows.push((name, run, vec![slice_p99], cpu)),
                }
            }
            let what = match wire {
                Wire::Http => "HTTP/1.1 GET /".to_string(),
                Wire::Tcp => format!("TCP echo {MESSAGE} B"),
                Wire::Grpc => "gRPC unary GetCart over h2c (one HTTP/2 connection each)".to_string(),
            };
            if rows.is_empty() {
                continue;
            }
            println!(
                "\n{what} at a fixed {rate} req/s (open loop, {OPEN_CONNECTIONS} keep-alive connections, \
                 {OPEN_ROUNDS} interleaved slices of {} ms each; {})",
                OPEN_TIME.as_millis(),
                load_average()
            );
            println!(
                "{:<18} {:>6} {:>6} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7} {:>8} {:>8}",
                "path",
                "p50 µs",
                "p90 µs",
                "p99 µs",
                "p99.9 µs",
                "p99 mid",
                "req/s",
                "errors",
                "CPU/req",
                "+p99 µs",
                "+p99 mid"
            );
            let mut direct = None;
            for (name, run, slices, cpu) in &mut rows {
                run.nanos.sort_unstable();
                slices.sort_unstable();
                let at = |p: f64| percentile(&run.nanos, p) / 1e3;
                let (p99, mid) = (at(0.99), percentile(slices, 0.5) / 1e3);
                if *name == "direct" {
                    direct = Some((p99, mid));
                }
                let (added, added_mid) = direct
                    .map(|(d, dm)| (format!("{:+.0}", p99 - d), format!("{:+.0}", mid - dm)))
                    .unwrap_or_default();
                let achieved = run.nanos.len() as f64 / (OPEN_ROUNDS as f64 * OPEN_TIME.as_secs_f64());
                let cpu = if *name == "direct" || run.nanos.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1}", *cpu as f64 / 1e3 / run.nanos.len() as f64)
                };
                println!(
                    "{:<18} {:>6.0} {:>6.0} {:>7.0} {:>8.0} {:>7.0} {:>7.0} {:>6} {:>7} {:>8} {:>8}",
                    name,
                    at(0.5),
                    at(0.9),
                    p99,
                    at(0.999),
                    mid,
                    achieved,
                    run.errors,
                    cpu,
                    added,
                    added_mid
                );
            }
        }
    }
}

/// The processes of each peer, for CPU accounting.
struct PeerPids {
    stead_http: Option<u32>,
    stead_tcp: Option<u32>,
    stead_grpc: Option<u32>,
    haproxy: Option<u32>,
    nginx: Option<u32>,
}

impl PeerPids {
    fn new(processes: &[Proc]) -> Self {
        let named = |name: &str| processes.iter().find(|p| p.name == name).map(Proc::pid);
        let mut stead = processes.iter().filter(|p| p.name == "stead").map(Proc::pid);
        PeerPids {
            stead_http: stead.next(),
            stead_tcp: stead.next(),
            stead_grpc: stead.next(),
            haproxy: named("haproxy"),
            nginx: named("nginx"),
        }
    }

    /// The processes carrying `name`'s `wire` traffic: nginx's master and its workers.
    fn of(&self, name: &str, wire: Wire) -> Vec<u32> {
        let pid = match name {
            "stead passthrough" => match wire {
                Wire::Http => self.stead_http,
                Wire::Tcp => self.stead_tcp,
                Wire::Grpc => self.stead_grpc,
            },
            "haproxy" => self.haproxy,
            "nginx" => self.nginx,
            _ => None,
        };
        let mut pids: Vec<u32> = pid.into_iter().collect();
        if let Some(pid) = pid {
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            pids.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        pids
    }
}

/// CPU time the processes' threads have run, in ns (`/proc/<pid>/task/<tid>/schedstat`).
fn cpu_nanos(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

/// The machine's load averages, as `/proc/loadavg` gives them.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let figures: Vec<&str> = text.split_whitespace().take(3).collect();
    format!("load average {}", figures.join(" "))
}

// ---------------------------------------------------------------- the proxies

/// One path the load takes, with where it listens for each wire; None when it cannot carry it.
#[derive(Clone, Copy)]
struct Entry {
    name: &'static str,
    http: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
}

impl Entry {
    fn addr(&self, wire: Wire) -> Option<SocketAddr> {
        match wire {
            Wire::Http => self.http,
            Wire::Tcp => self.tcp,
            Wire::Grpc => self.grpc,
        }
    }
}

/// The backends' addresses, one per wire.
#[derive(Clone, Copy)]
struct Backends {
    http: SocketAddr,
    tcp: SocketAddr,
    grpc: SocketAddr,
}

/// A peer as started: its process and where it listens for each wire.
struct Started {
    proc: Proc,
    http: SocketAddr,
    /// None when the peer cannot proxy TCP; `note` says why.
    tcp: Option<SocketAddr>,
    grpc: SocketAddr,
    note: Option<String>,
}

struct Proxies {
    entries: Vec<Entry>,
    processes: Vec<Proc>,
    skipped: Vec<String>,
}

fn spawn_stead(envs: &[(&str, String)]) -> Proc {
    let exe = std::env::current_exe().expect("own path");
    let mut command = Command::new(exe);
    command.env("STEAD_BENCH_ROLE", "proxy").stdin(Stdio::piped()).stdout(Stdio::null());
    command.env("MALLOC_ARENA_MAX", child::malloc_arenas());
    for (name, value) in envs {
        command.env(name, value);
    }
    Proc { name: "stead", child: command.spawn().expect("starts the proxy child") }
}

fn stead_passthrough(upstream: SocketAddr) -> (Proc, SocketAddr) {
    let port = free_port();
    let proc = spawn_stead(&[
        ("STEAD_PROXY_MODE", "passthrough".into()),
        ("HTTP_PORT", port.to_string()),
        ("USER_FUNCTION_PORT", upstream.port().to_string()),
        ("MANAGEMENT_PORT", free_port().to_string()),
        ("METRICS_PORT", free_port().to_string()),
    ]);
    (proc, loopback(port))
}

fn haproxy(dir: &Path, backends: Backends) -> Result<Started, String> {
    let binary = find("haproxy", "haproxy")?;
    let Backends { http, tcp, grpc } = backends;
    let (http_port, tcp_port, grpc_port) = (free_port(), free_port(), free_port());
    let config = format!(
        "global\n  nbthread 2\n  maxconn 4096\n\
         defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend http_in\n  mode http\n  bind 127.0.0.1:{http_port}\n  default_backend http_out\n\
         backend http_out\n  mode http\n  http-reuse always\n  server s1 {http}\n\
         frontend tcp_in\n  mode tcp\n  bind 127.0.0.1:{tcp_port}\n  default_backend tcp_out\n\
         backend tcp_out\n  mode tcp\n  server s1 {tcp}\n\
         frontend grpc_in\n  mode http\n  bind 127.0.0.1:{grpc_port} proto h2\n  default_backend grpc_out\n\
         backend grpc_out\n  mode http\n  http-reuse always\n  server s1 {grpc} proto h2\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).map_err(|e| format!("haproxy: writing {}: {e}", path.display()))?;
    let child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("haproxy: cannot start: {e}"))?;
    Ok(Started {
        proc: Proc { name: "haproxy", child },
        http: loopback(http_port),
        tcp: Some(loopback(tcp_port)),
        grpc: loopback(grpc_port),
        note: None,
    })
}

/// nginx (1.22's syntax: `listen ... http2` on a plain listener is h2c with prior knowledge;
/// from 1.25 it is `http2 on;` in the server); its TCP address is None without the stream module.
fn nginx(dir: &Path, backends: Backends) -> Result<Started, String> {
    let binary = find("nginx", "nginx")?;
    let Backends { http, tcp, grpc } = backends;
    let (http_port, tcp_port, grpc_port) = (free_port(), free_port(), free_port());
    let stream_module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    let (load, stream, tcp_addr, note) = if stream_module.is_file() {
        (
            format!("load_module {};\n", stream_module.display()),
            format!("stream {{\n  server {{ listen 127.0.0.1:{tcp_port}; proxy_pass {tcp}; }}\n}}\n"),
            Some(loopback(tcp_port)),
            None,
        )
    } else {
        let note =
            "nginx tcp: the stream module is missing, row skipped (apt-get install -y libnginx-mod-stream)";
        (String::new(), String::new(), None, Some(note.to_string()))
    };
    let d = dir.display();
    let config = format!(
        "{load}daemon off;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         keepalive_requests 1000000;\n  upstream backend {{ server {http}; keepalive 64; keepalive_requests 1000000; }}\n\
         server {{\n    listen 127.0.0.1:{http_port};\n    location / {{\n      proxy_pass http://backend;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n\
         upstream grpc_backend {{ server {grpc}; keepalive 64; keepalive_requests 1000000; }}\n\
         server {{\n    listen 127.0.0.1:{grpc_port} http2;\n\
         location / {{ grpc_pass grpc://grpc_backend; }}\n  }}\n}}\n{stream}"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).map_err(|e| format!("nginx: writing {}: {e}", path.display()))?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nginx: cannot start: {e}"))?;
    Ok(Started {
        proc: Proc { name: "nginx", child },
        http: loopback(http_port),
        tcp: tcp_addr,
        grpc: loopback(grpc_port),
        note,
    })
}

async fn start_proxies(dir: &Path, backends: Backends) -> Proxies {
    let direct = Entry {
        name: "direct",
        http: Some(backends.http),
        tcp: Some(backends.tcp),
        grpc: Some(backends.grpc),
    };
    let mut proxies = Proxies { entries: vec![direct], processes: vec![], skipped: vec![] };
    // stead serves one upstream per process: one child each for HTTP, TCP and gRPC (in this
    // order: [`PeerPids`] relies on it).
    let mut stead = Entry { name: "stead passthrough", http: None, tcp: None, grpc: None };
    for wire in [Wire::Http, Wire::Tcp, Wire::Grpc] {
        let upstream = match wire {
            Wire::Http => backends.http,
            Wire::Tcp => backends.tcp,
            Wire::Grpc => backends.grpc,
        };
        let (proc, addr) = stead_passthrough(upstream);
        let addr = wait_listening("stead", addr).await.then_some(addr);
        match wire {
            Wire::Http => stead.http = addr,
            Wire::Tcp => stead.tcp = addr,
            Wire::Grpc => stead.grpc = addr,
        }
        proxies.processes.push(proc);
    }
    proxies.entries.push(stead);
    let peers = [("haproxy", haproxy(dir, backends)), ("nginx", nginx(dir, backends))];
    for (name, started) in peers {
        match started {
            Ok(started) => {
                let ok = wait_listening(name, started.http).await && wait_listening(name, started.grpc).await;
                let tcp = match started.tcp {
                    Some(t) if ok && wait_listening(name, t).await => Some(t),
                    _ => None,
                };
                let (http, grpc) = (ok.then_some(started.http), ok.then_some(started.grpc));
                proxies.entries.push(Entry { name, http, tcp, grpc });
                proxies.processes.push(started.proc);
                proxies.skipped.extend(started.note);
            }
            Err(line) => proxies.skipped.push(line),
        }
    }
    // A gRPC row runs only where a GetCart really comes back through the path.
    for entry in &mut proxies.entries {
        let Some(addr) = entry.grpc else { continue };
        if let Err(why) = grpc_check(addr).await {
            proxies.skipped.push(format!("{} grpc: {why}, rows skipped", entry.name));
            entry.grpc = None;
        }
    }
    proxies
}

/// Keeps the better (higher req/s) of a row's rounds, rows in first-seen order.
/// Runs a closed-loop load tool (`tool`: its name, and a run against an address) on each entry
/// in `order` that serves `wire`, keeping each entry's better round; samples stead's RSS
/// (`stead_pid`) meanwhile. The rows, and stead's peak RSS in KiB.
async fn saturate<F>(
    entries: &[Entry],
    order: &[usize],
    wire: Wire,
    stead_pid: Option<u32>,
    (tool, run): (&'static str, F),
) -> (Vec<(&'static str, Figures)>, u64)
where
    F: Fn(SocketAddr) -> Option<Figures> + Clone + Send + 'static,
{
    let mut rows = Vec::new();
    let mut stead_peak = 0;
    for &i in order {
        let Some(addr) = entries[i].addr(wire) else { continue };
        let name = entries[i].name;
        let running = Arc::new(AtomicBool::new(true));
        let sampler = (name == "stead passthrough")
            .then(|| stead_pid.map(|pid| sample_rss(pid, running.clone())))
            .flatten();
        let run = run.clone();
        let figures = tokio::task::spawn_blocking(move || run(addr)).await.ok().flatten();
        running.store(false, Ordering::Relaxed);
        if let Some(sampler) = sampler {
            stead_peak = stead_peak.max(sampler.join().unwrap_or(0));
        }
        match figures {
            Some(f) => keep_better(&mut rows, name, f),
            None => println!("{name}: {tool} failed, row skipped"),
        }
    }
    (rows, stead_peak)
}

fn keep_better<'a>(rows: &mut Vec<(&'a str, Figures)>, name: &'a str, figures: Figures) {
    match rows.iter_mut().find(|(n, _)| *n == name) {
        Some((_, kept)) if kept.per_second >= figures.per_second => {}
        Some((_, kept)) => *kept = figures,
        None => rows.push((name, figures)),
    }
}

fn print_rows(title: &str, rows: &[(&str, Figures)]) {
    println!("{title}");
    println!("{:<20} {:>9} {:>9} {:>11} {:>15}", "path", "p50 µs", "p99 µs", "req/s", "p99 added µs");
    let direct = rows.iter().find(|(name, _)| *name == "direct").map(|(_, f)| f.p99_us);
    for (name, f) in rows {
        let added = direct.map(|d| format!("{:.0}", f.p99_us - d)).unwrap_or_default();
        println!("{:<20} {:>9.0} {:>9.0} {:>11.0} {:>15}", name, f.p50_us, f.p99_us, f.per_second, added);
    }
}

// ---------------------------------------------------------------- memory

/// RSS of a stead proxy child at rest and under a load run while `load` runs.
async fn memory_under<F: std::future::Future<Output = ()>>(pid: u32, load: F) -> (u64, u64) {
    let rest = status_kib(pid, "VmRSS").unwrap_or(0);
    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_rss(pid, running.clone());
    load.await;
    running.store(false, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    (rest, peak)
}

async fn entity_memory() -> Option<(u64, u64, f64)> {
    let user = cart::serve_user_function(cart::CartFunction { snapshot_every: 0 }).await;
    let port = free_port();
    let proc = spawn_stead(&[
        ("STEAD_PROXY_MODE", "entity".into()),
        ("STEAD_STORE", "in-memory".into()),
        ("HTTP_PORT", port.to_string()),
        ("USER_FUNCTION_PORT", user.port().to_string()),
        ("MANAGEMENT_PORT", free_port().to_string()),
        ("METRICS_PORT", free_port().to_string()),
    ]);
    let addr = loopback(port);
    if !wait_listening("stead entity mode", addr).await {
        return None;
    }
    let client = cart::client(addr).await;
    // Settle after discovery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load = {
        let done = done.clone();
        async move {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..CONNECTIONS {
                let mut client = client.clone();
                let done = done.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = w;
                    while start.elapsed() < LOAD_TIME {
                        let add = cart::api::AddLineItem {
                            user_id: format!("cart-{}", n % 1000),
                            product_id: format!("p{}", n % 7),
                            name: "P".into(),
                            quantity: 1,
                        };
                        client.add_item(add).await.expect("AddItem");
                        done.fetch_add(1, Ordering::Relaxed);
                        n += CONNECTIONS;
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
    };
    let (rest, peak) = memory_under(proc.pid(), load).await;
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    drop(proc);
    Some((rest, peak, rate))
}

async fn bench() {
    let dir = tempfile::Builder::new().prefix("stead-peers-bench").tempdir().expect("temp dir");
    let http = http_backend().await;
    let tcp = echo_backend().await;
    let grpc = grpc_backend().await;
    let proxies = start_proxies(dir.path(), Backends { http, tcp, grpc }).await;
    for line in &proxies.skipped {
        println!("{line}");
    }
    let stead_http_pid = proxies.processes.first().map(Proc::pid);
    let stead_tcp_pid = proxies.processes.get(1).map(Proc::pid);
    let rest_http = stead_http_pid.and_then(|pid| status_kib(pid, "VmRSS"));
    println!("start: {}", load_average());

    fixed_rate_rows(&proxies.entries, &PeerPids::new(&proxies.processes)).await;
    if std::env::var("STEAD_BENCH_ROWS").as_deref() == Ok("fixed") {
        println!("\nSTEAD_BENCH_ROWS=fixed: saturation and memory rows skipped");
        return;
    }

    // Two rounds, the second in reverse order, so that drift in the machine's load hits every
    // row alike; each row reports its better round (higher req/s).
    let order: Vec<usize> = (0..proxies.entries.len()).chain((0..proxies.entries.len()).rev()).collect();
    let (http_rows, stead_http_peak) = match find("wrk", "wrk") {
        Err(line) => {
            println!("{line}");
            (Vec::new(), 0)
        }
        Ok(wrk_path) => {
            let tool = ("wrk", move |addr| wrk(&wrk_path, addr));
            saturate(&proxies.entries, &order, Wire::Http, stead_http_pid, tool).await
        }
    };

    let mut tcp_rows = Vec::new();
    let rest_tcp = stead_tcp_pid.and_then(|pid| status_kib(pid, "VmRSS"));
    let mut stead_tcp_peak = 0;
    for &i in &order {
        let Entry { name, tcp: Some(addr), .. } = proxies.entries[i] else { continue };
        if name == "stead passthrough"
            && let Some(pid) = stead_tcp_pid
        {
            let mut figures = None;
            let (_, peak) = memory_under(pid, async {
                figures = Some(tcp_load(addr).await);
            })
            .await;
            stead_tcp_peak = stead_tcp_peak.max(peak);
            if let Some(f) = figures {
                keep_better(&mut tcp_rows, name, f);
            }
        } else {
            keep_better(&mut tcp_rows, name, tcp_load(addr).await);
        }
    }
    let stead_grpc_pid = proxies.processes.get(2).filter(|p| p.name == "stead").map(Proc::pid);
    let rest_grpc = stead_grpc_pid.and_then(|pid| status_kib(pid, "VmRSS"));
    let (grpc_rows, stead_grpc_peak) = match find("h2load", "nghttp2-client") {
        Err(line) => {
            println!("{line}");
            (Vec::new(), 0)
        }
        Ok(h2load_path) => {
            let dir = dir.path().to_path_buf();
            let tool = ("h2load", move |addr| h2load(&h2load_path, &dir, addr));
            saturate(&proxies.entries, &order, Wire::Grpc, stead_grpc_pid, tool).await
        }
    };
    let peer_rss: Vec<String> = proxies
        .processes
        .iter()
        .filter(|p| p.name != "stead")
        .map(|p| format!("{} {:.1} MiB", p.name, status_kib(p.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0))
        .collect();
    drop(proxies);

    let entity = entity_memory().await;

    println!("\nsaturation (closed loop) rows; {}", load_average());
    print_rows(
        &format!(
            "HTTP/1.1 GET / via wrk: 2 threads, {CONNECTIONS} keep-alive connections, {} s",
            LOAD_TIME.as_secs()
        ),
        &http_rows,
    );
    println!();
    print_rows(
        &format!(
            "TCP echo, {MESSAGE}-byte messages: {CONNECTIONS} connections, up to {TCP_MESSAGES_EACH} each or {} s",
            LOAD_TIME.as_secs()
        ),
        &tcp_rows,
    );
    if !grpc_rows.is_empty() {
        println!();
        print_rows(
            &format!(
                "gRPC unary GetCart over h2c via h2load: 2 threads, {CONNECTIONS} HTTP/2 connections, \
                 1 call in flight each, {} s",
                LOAD_TIME.as_secs()
            ),
            &grpc_rows,
        );
    }
    println!();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "stead proxy memory (VmRSS of the child process, MALLOC_ARENA_MAX {}; target < 20 MiB)",
        child::malloc_arenas()
    );
    println!(
        "passthrough, HTTP child: at rest {:.1} MiB, peak under wrk {:.1} MiB",
        mib(rest_http.unwrap_or(0)),
        mib(stead_http_peak)
    );
    println!(
        "passthrough, TCP child:  at rest {:.1} MiB, peak under TCP load {:.1} MiB",
        mib(rest_tcp.unwrap_or(0)),
        mib(stead_tcp_peak)
    );
    println!(
        "passthrough, gRPC child: at rest {:.1} MiB, peak under h2load {:.1} MiB",
        mib(rest_grpc.unwrap_or(0)),
        mib(stead_grpc_peak)
    );
    match entity {
        Some((rest, peak, rate)) => println!(
            "entity mode, in-memory:  at rest {:.1} MiB, peak under AddItem load ({rate:.0} cmd/s, 1,000 carts) {:.1} MiB",
            mib(rest),
            mib(peak)
        ),
        None => println!("entity mode: the proxy did not start, row skipped"),
    }
    if !peer_rss.is_empty() {
        println!("peers after load (master process only): {}", peer_rss.join(", "));
    }
}
