//! Client connections and what bounds them: [`Acceptor`] accepts at most a number of
//! connections at once (more wait in the kernel's accept queue, holding no descriptor of the
//! proxy) and backs off when accepting fails; [`Timed`] closes a connection whose client sends
//! no request in time or that stays silent; [`serve_management`] serves the management
//! routers on their own listeners with their own small limit, so that `/ready`, `/alive` and
//! `/metrics` answer while clients saturate the client port; [`raise_open_file_limit`] lifts
//! the soft `RLIMIT_NOFILE` to the hard one at start.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::config::ConnectionConfig;
use crate::lifecycle::Lifecycle;

/// Descriptors kept free of client connections when their limit is derived from the open-file
/// limit: the management ports' connections, the store's files, the channels to the user
/// function, the runtime's own.
pub const RESERVED_FDS: u64 = 128;

/// The derived limit never exceeds this: each connection also costs buffers (a few KiB idle),
/// and a sidecar shares its pod's memory.
pub const MAX_DERIVED_CONNECTIONS: usize = 10_000;

/// Connections each management port serves at once.
pub const MANAGEMENT_CONNECTIONS: usize = 32;

/// Accept failures (no descriptor left, no memory) are retried after a pause growing from
/// this...
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// ... up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The client connections served at once for `open_files` descriptors: two per connection (a
/// forwarded connection holds its upstream one too), after [`RESERVED_FDS`], at least one and
/// at most [`MAX_DERIVED_CONNECTIONS`].
pub fn derived_max_connections(open_files: u64) -> usize {
    let per_connection = open_files.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(per_connection).unwrap_or(usize::MAX).clamp(1, MAX_DERIVED_CONNECTIONS)
}

/// The client port's connection limit: the configured one, else derived from the soft
/// open-file limit.
pub fn max_connections(config: &ConnectionConfig) -> usize {
    config.max_connections.unwrap_or_else(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        derived_max_connections(soft)
    })
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force. A failure
/// is logged and the limit left as it was.
pub fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "reading the open-file limit failed");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(from = soft, to = hard, "raised the open-file limit to its hard limit");
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(%error, soft, hard, "raising the open-file limit failed; keeping it");
            Some(soft)
        }
    }
}

/// A connection's place among those served at once; released when dropped.
pub type Permit = OwnedSemaphorePermit;

/// Accepts connections, at most `max` open at once.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    port: &'static str,
}

/// Whether an accept error belongs to one connection (it went away before being accepted)
/// rather than to the proxy (out of descriptors or memory).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

impl Acceptor {
    /// Accepts on `listener` (the `port` named in logs), at most `max` connections at once.
    pub fn new(listener: TcpListener, max: usize, port: &'static str) -> Self {
        Self { listener, permits: Arc::new(Semaphore::new(max.max(1))), port }
    }

    /// The next connection and its permit. While `max` connections are open, no more are
    /// accepted: they wait in the kernel's accept queue. A failure to accept (`EMFILE`,
    /// `ENOBUFS`, ...) is logged and retried after a growing pause, never in a busy loop.
    pub async fn accept(&mut self) -> (TcpStream, Permit) {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => return (stream, permit),
                Err(error) if is_connection_error(&error) => {
                    tracing::debug!(%error, port = self.port, "a connection went away before it was accepted");
                }
                Err(error) => {
                    tracing::warn!(%error, port = self.port, retry_in = ?backoff, "accepting a connection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4), then a 9-byte frame header.
const PREFACE: &[u8] = crate::passthrough::detect::HTTP2_PREFACE;
const PREAMBLE: usize = PREFACE.len() + 9;

/// Follows a connection's first bytes until its preamble is over: for HTTP/2, the preface and
/// the whole first frame (a SETTINGS frame); for anything else, the first byte that differs
/// from the preface (an HTTP/1 server's own header timeout then takes over).
#[derive(Debug)]
struct Preamble {
    head: [u8; PREAMBLE],
    seen: usize,
    payload_left: usize,
}

impl Preamble {
    fn new() -> Self {
        Self { head: [0; PREAMBLE], seen: 0, payload_left: 0 }
    }

    /// Takes the next bytes read; true once the preamble is over.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        if self.seen < PREAMBLE {
            let take = bytes.len().min(PREAMBLE - self.seen);
            let (now, rest) = bytes.split_at(take);
            self.head[self.seen..self.seen + take].copy_from_slice(now);
            self.seen += take;
            bytes = rest;
            let checked = self.seen.min(PREFACE.len());
            if self.head[..checked] != PREFACE[..checked] {
                return true;
            }
            if self.seen < PREAMBLE {
                return false;
            }
            let [a, b, c] = [self.head[24], self.head[25], self.head[26]];
            self.payload_left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
        }
        self.payload_left = self.payload_left.saturating_sub(bytes.len());
        self.payload_left == 0
    }
}

/// An I/O object with a connection's timeouts: it fails with `TimedOut` when its preamble (see
/// [`Timed::http`]) is not over within the header timeout, or after the idle timeout without
/// a byte read or written. The idle timer is re-armed lazily, when it fires after activity, so
/// reads and writes only set a flag: a silent connection is closed between one and two idle
/// timeouts after its last byte.
#[derive(Debug)]
pub struct Timed<T> {
    io: T,
    timer: Option<Pin<Box<Sleep>>>,
    preamble: Option<Box<Preamble>>,
    header_timeout: Duration,
    idle: Option<Duration>,
    active: bool,
}

impl<T> Timed<T> {
    /// An HTTP client connection: its first request's headers (HTTP/1), or its preface and
    /// first frame (HTTP/2), must arrive within `header_timeout` of now; after that it is
    /// closed once silent for `idle`.
    pub fn http(io: T, header_timeout: Duration, idle: Option<Duration>) -> Self {
        Self {
            io,
            timer: Some(Box::pin(tokio::time::sleep(header_timeout))),
            preamble: Some(Box::new(Preamble::new())),
            header_timeout,
            idle,
            active: false,
        }
    }

    /// A connection closed once silent for `idle` (opaque TCP, whose server may speak first).
    pub fn idle(io: T, idle: Option<Duration>) -> Self {
        Self {
            io,
            timer: idle.map(|idle| Box::pin(tokio::time::sleep(idle))),
            preamble: None,
            header_timeout: Duration::ZERO,
            idle,
            active: false,
        }
    }

    /// The wrapped I/O object.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    fn saw_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.active = true;
        if let Some(preamble) = &mut self.preamble
            && preamble.feed(bytes)
        {
            self.preamble = None;
            match (&mut self.timer, self.idle) {
                (Some(timer), Some(idle)) => timer.as_mut().reset(Instant::now() + idle),
                _ => self.timer = None,
            }
        }
    }

    /// Called when the I/O has nothing to do: pending, or the timeout's error once it fired.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let Some(timer) = &mut self.timer else { return Poll::Pending };
            ready!(timer.as_mut().poll(cx));
            if self.preamble.is_some() {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client sent no request within {:?}", self.header_timeout),
                ));
            }
            let Some(idle) = self.idle else { return Poll::Pending };
            if !std::mem::take(&mut self.active) {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the connection was idle for {idle:?}"),
                ));
            }
            timer.as_mut().reset(Instant::now() + idle);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.saw_bytes(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.poll_timeout(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.poll_timeout(cx).map(Err),
            ready => {
                self.active = true;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.poll_timeout(cx).map(Err),
            ready => {
                self.active = true;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// hyper's server builder for HTTP/1.1 and h2c with the header timeout set: for HTTP/1 it
/// covers every request's headers, and the wait for the next request on a kept-alive
/// connection (hyper counts that wait as reading headers).
pub fn http_builder(
    header_timeout: Duration,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    builder
}

/// Serves `router` on a management port until the lifecycle stops: at most
/// [`MANAGEMENT_CONNECTIONS`] at once, with the client port's timeouts.
pub async fn serve_management(
    listener: TcpListener,
    router: axum::Router,
    port: &'static str,
    config: &ConnectionConfig,
    mut lifecycle: Lifecycle,
) {
    let mut acceptor = Acceptor::new(listener, MANAGEMENT_CONNECTIONS, port);
    let (header_timeout, idle) = (config.header_read_timeout, config.idle_timeout);
    loop {
        let (stream, permit) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = lifecycle.stopped() => return,
        };
        let router = router.clone();
        let mut connection_lifecycle = lifecycle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                tower::ServiceExt::oneshot(router.clone(), request)
            });
            let io = hyper_util::rt::TokioIo::new(Timed::http(stream, header_timeout, idle));
            let builder = http_builder(header_timeout);
            tokio::select! {
                result = builder.serve_connection(io, service) => {
                    if let Err(error) = result {
                        tracing::debug!(%error, port, "a management connection ended with an error");
                    }
                }
                () = connection_lifecycle.stopped() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn the_derived_limit_leaves_descriptors_and_stays_bounded() {
        assert_eq!(derived_max_connections(256), 64);
        assert_eq!(derived_max_connections(1024), 448);
        assert_eq!(derived_max_connections(16), 1);
        assert_eq!(derived_max_connections(1 << 20), MAX_DERIVED_CONNECTIONS);
    }

    fn settings_frame(payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x4, 0, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn the_preamble_ends_after_the_first_frame_or_at_http1() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings_frame(&[0, 3, 0, 0, 0, 100]));
        for chunk in [1, 2, 7, 100] {
            let mut preamble = Preamble::new();
            let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
            let (last, before) = pieces.split_last().expect("pieces");
            assert!(before.iter().all(|piece| !preamble.feed(piece)), "chunks of {chunk}");
            assert!(preamble.feed(last), "chunks of {chunk}");
        }
        let mut preamble = Preamble::new();
        assert!(!preamble.feed(&PREFACE[..10]));
        assert!(!preamble.feed(&PREFACE[10..]), "the preface alone is not enough");
        assert!(preamble.feed(&settings_frame(&[])), "an empty SETTINGS frame ends it");
        assert!(Preamble::new().feed(b"GET / HTTP/1.1\r\n"));
        assert!(Preamble::new().feed(b"PRX"));
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connects");
        let (server, _) = listener.accept().await.expect("accepts");
        (client, server)
    }

    #[tokio::test]
    async fn a_silent_client_times_out_and_a_talking_one_does_not() {
        let (_client, server) = pair().await;
        let mut timed = Timed::http(server, Duration::from_millis(50), None);
        let mut buf = [0u8; 64];
        let error = timed.read(&mut buf).await.expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("no request within"), "{error}");

        let (mut client, server) = pair().await;
        let mut timed = Timed::http(server, Duration::from_millis(50), None);
        client.write_all(b"GET / HTTP/1.1\r\n").await.expect("writes");
        let n = timed.read(&mut buf).await.expect("reads");
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        // Past its preamble, without an idle timeout, a connection may wait.
        let waited = tokio::time::timeout(Duration::from_millis(200), timed.read(&mut buf)).await;
        assert!(waited.is_err(), "no timeout after the preamble: {waited:?}");
    }

    #[tokio::test]
    async fn an_idle_connection_times_out_after_its_last_byte() {
        let (mut client, server) = pair().await;
        let mut timed = Timed::idle(server, Some(Duration::from_millis(100)));
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            client.write_all(b"x").await.expect("writes");
            assert_eq!(timed.read(&mut buf).await.expect("reads"), 1);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let error = timed.read(&mut buf).await.expect_err("idle");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("idle"), "{error}");
    }
}
