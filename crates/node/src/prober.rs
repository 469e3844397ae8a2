//! Probe and hook transports: `exec`, `httpGet`, `tcpSocket` and `grpc`, as the kubelet's prober runs
//! them. Results feed [`crate::probe::ContainerProbes`].
//!
//! - `exec`: the command runs inside the container's namespaces through the container init (the caller
//!   builds the command); exit 0 is success; on timeout the whole process group is killed (through
//!   [`Syscall::killpg`]: the caller's syscalls).
//! - `httpGet`: HTTP/1.1 `GET` to `host` (default: the pod IP) and `port` (a number or a container
//!   port's name), with `httpHeaders` and the kubelet's `User-Agent: kube-probe/<version>`; a status in
//!   200..400 is success. `scheme: HTTPS` runs the same request over TLS (rustls, `ring`) without
//!   verifying the certificate, as the kubelet's `InsecureSkipVerify` (handshake signatures are still
//!   checked; no SNI, since the target is an IP); a failed handshake fails the probe naming TLS.
//!   Any other scheme fails with a message saying so.
//! - `tcpSocket`: a TCP connect succeeds.
//! - `grpc`: the standard `grpc.health.v1.Health/Check` over cleartext HTTP/2 (h2c), written by hand
//!   (the request and response are a few bytes of protobuf, and only DATA frames of the response
//!   are read, so no HPACK decoder is needed); `SERVING` is success.
//!
//! Every probe is bounded by its `timeoutSeconds`; a timeout is a failure.

use crate::probe::ProbeResult;
use crate::syscall::Syscall;
use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `User-Agent` the kubelet sends (`kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.35";

/// A probe that could not be run as specified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProberError {
    #[error("container {container:?}: port {port:?} is not a named containerPort of the container")]
    UnknownPortName { container: String, port: String },
    #[error("container {container:?}: port {port} is out of range 1-65535")]
    BadPort { container: String, port: i32 },
    #[error("host {0:?} is not an IP address (names are not resolved by the prober)")]
    BadHost(String),
    #[error("scheme {0:?} is not supported (HTTP or HTTPS)")]
    Scheme(String),
}

/// The outcome with a reason for logs and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: ProbeResult,
    pub message: String,
}

impl Outcome {
    fn ok(message: impl Into<String>) -> Outcome {
        Outcome { result: ProbeResult::Success, message: message.into() }
    }
    fn fail(message: impl Into<String>) -> Outcome {
        Outcome { result: ProbeResult::Failure, message: message.into() }
    }
}

/// Resolves a probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, ProberError> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(s.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| ProberError::UnknownPortName {
                    container: container.name.clone(),
                    port: s.clone(),
                })?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(ProberError::BadPort { container: container.name.clone(), port: n })
}

fn target_host(host: Option<&str>, pod_ip: IpAddr) -> Result<IpAddr, ProberError> {
    match host.filter(|h| !h.is_empty()) {
        None => Ok(pod_ip),
        Some(h) => h.parse().map_err(|_| ProberError::BadHost(h.to_owned())),
    }
}

/// The request bytes of an `httpGet` probe or hook.
pub fn http_request(action: &HTTPGetAction, host: IpAddr, port: u16) -> String {
    let path = action.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let headers = action.http_headers.iter().flatten();
    let has = |name: &str| action.http_headers.iter().flatten().any(|h| h.name.eq_ignore_ascii_case(name));
    let authority = match host {
        IpAddr::V6(h) => format!("[{h}]:{port}"),
        IpAddr::V4(h) => format!("{h}:{port}"),
    };
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        req.push_str(&format!("Host: {authority}\r\n"));
    }
    if !has("user-agent") {
        req.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for h in headers {
        // Header injection is not possible: CR and LF end the value.
        let value: String = h.value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let name: String = h.name.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// Parses the status code from the first line of an HTTP response.
pub fn parse_status(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

async fn bounded<F: Future<Output = Outcome>>(timeout: Duration, what: &str, f: F) -> Outcome {
    match tokio::time::timeout(timeout, f).await {
        Ok(o) => o,
        Err(_) => Outcome::fail(format!("{what}: timed out after {}s", timeout.as_secs_f64())),
    }
}

/// Runs an `httpGet` probe or hook against `pod_ip`, over TLS for `scheme: HTTPS`.
pub async fn http_get(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: IpAddr,
    timeout: Duration,
) -> Outcome {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    let tls = if scheme.eq_ignore_ascii_case("HTTP") {
        false
    } else if scheme.eq_ignore_ascii_case("HTTPS") {
        true
    } else {
        return Outcome::fail(ProberError::Scheme(scheme.to_owned()).to_string());
    };
    let (host, port) =
        match (target_host(action.host.as_deref(), pod_ip), resolve_port(container, &action.port)) {
            (Ok(h), Ok(p)) => (h, p),
            (Err(e), _) | (_, Err(e)) => return Outcome::fail(e.to_string()),
        };
    let req = http_request(action, host, port);
    let what = format!(
        "GET {}://{}{}",
        if tls { "https" } else { "http" },
        SocketAddr::new(host, port),
        action.path.as_deref().unwrap_or("/")
    );
    bounded(timeout, &what.clone(), async move {
        let s = match TcpStream::connect(SocketAddr::new(host, port)).await {
            Ok(s) => s,
            Err(e) => return Outcome::fail(format!("{what}: {e}")),
        };
        if tls {
            match tls::connect(s, host).await {
                Ok(s) => http_exchange(s, &req, &what).await,
                Err(e) => Outcome::fail(format!("{what}: {e}")),
            }
        } else {
            http_exchange(s, &req, &what).await
        }
    })
    .await
}

/// Sends `req` and judges the response's status line.
async fn http_exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &str, what: &str) -> Outcome {
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return Outcome::fail(format!("{what}: {e}"));
    }
    if let Err(e) = s.flush().await {
        return Outcome::fail(format!("{what}: {e}"));
    }
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Outcome::fail(format!("{what}: {e}")),
        }
    }
    match parse_status(&head) {
        Some(code) if (200..400).contains(&code) => Outcome::ok(format!("{what}: HTTP {code}")),
        Some(code) => Outcome::fail(format!("{what}: HTTP probe failed with statuscode: {code}")),
        None => Outcome::fail(format!("{what}: not an HTTP response")),
    }
}

/// Runs a `tcpSocket` probe.
pub async fn tcp_socket(
    action: &TCPSocketAction,
    container: &Container,
    pod_ip: IpAddr,
    timeout: Duration,
) -> Outcome {
    let (host, port) =
        match (target_host(action.host.as_deref(), pod_ip), resolve_port(container, &action.port)) {
            (Ok(h), Ok(p)) => (h, p),
            (Err(e), _) | (_, Err(e)) => return Outcome::fail(e.to_string()),
        };
    let addr = SocketAddr::new(host, port);
    bounded(timeout, &format!("dial tcp {addr}"), async move {
        match TcpStream::connect(addr).await {
            Ok(_) => Outcome::ok(format!("dial tcp {addr}: connected")),
            Err(e) => Outcome::fail(format!("dial tcp {addr}: {e}")),
        }
    })
    .await
}

/// Runs an `exec` probe or hook: `cmd` is the command entering the container (see
/// [`crate::process::InitProgram::command`]) in a process group of its own, which `sys` kills on
/// timeout.
pub async fn exec(sys: &dyn Syscall, mut cmd: tokio::process::Command, timeout: Duration) -> Outcome {
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::fail(format!("exec: {e}")),
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    // The command's output is the failure's message, as the kubelet's. The pipes are read to
    // their end (a writer past the limit must not die of SIGPIPE), keeping the first bytes.
    let (out, err) = (Kept::default(), Kept::default());
    let stdout = child.stdout.take().map(|p| tokio::spawn(read_bounded(p, out.clone())));
    let stderr = child.stderr.take().map(|p| tokio::spawn(read_bounded(p, err.clone())));
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => Outcome::ok("exec: exit 0"),
        Ok(Ok(st)) => {
            // A background process of the command may hold the pipes open: take what is there.
            for reader in [stdout, stderr].into_iter().flatten() {
                let abort = reader.abort_handle();
                if tokio::time::timeout(OUTPUT_DRAIN, reader).await.is_err() {
                    abort.abort();
                }
            }
            let parts = [out, err].map(|kept| {
                let bytes = kept.lock().map(|b| b.clone()).unwrap_or_default();
                String::from_utf8_lossy(&bytes).trim().to_owned()
            });
            let mut text = parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n");
            if text.len() > EXEC_OUTPUT_LIMIT {
                let mut end = EXEC_OUTPUT_LIMIT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            if text.is_empty() { Outcome::fail(format!("exec: {st}")) } else { Outcome::fail(text) }
        }
        Ok(Err(e)) => Outcome::fail(format!("exec: {e}")),
        Err(_) => {
            if let Some(g) = pgid {
                let _ = sys.killpg(g, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            for reader in [stdout, stderr].into_iter().flatten() {
                reader.abort();
            }
            Outcome::fail(format!("exec: command timed out after {}s", timeout.as_secs_f64()))
        }
    }
}

/// The first bytes of one output stream, readable while it is still being read.
type Kept = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads `pipe` to its end, keeping its first [`EXEC_OUTPUT_LIMIT`] bytes in `kept`.
async fn read_bounded(mut pipe: impl tokio::io::AsyncRead + Unpin, kept: Kept) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut kept) = kept.lock() {
            let room = EXEC_OUTPUT_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}

/// How long the output of a command that exited is still awaited.
const OUTPUT_DRAIN: Duration = Duration::from_millis(100);

/// How much of an exec probe's output is kept for its message.
const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

/// Runs a `grpc` probe against `pod_ip`.
pub async fn grpc(action: &GRPCAction, pod_ip: IpAddr, timeout: Duration) -> Outcome {
    let Some(port) = u16::try_from(action.port).ok().filter(|p| *p != 0) else {
        return Outcome::fail(format!("grpc port {} is out of range 1-65535", action.port));
    };
    let addr = SocketAddr::new(pod_ip, port);
    let service = action.service.clone().unwrap_or_default();
    bounded(timeout, &format!("grpc health check {addr}"), async move {
        match grpc_check(addr, &service).await {
            Ok(1) => Outcome::ok(format!("grpc health check {addr}: SERVING")),
            Ok(status) => Outcome::fail(format!(
                "grpc health check {addr}: service {service:?} status {}",
                h2::serving_status_name(status)
            )),
            Err(e) => Outcome::fail(format!("grpc health check {addr}: {e}")),
        }
    })
    .await
}

async fn grpc_check(addr: SocketAddr, service: &str) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(&h2::request(&addr.to_string(), service)).await.map_err(|e| e.to_string())?;
    let mut conn = h2::Reader::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        let step = conn.feed(&buf[..n])?;
        if !step.reply.is_empty() {
            s.write_all(&step.reply).await.map_err(|e| e.to_string())?;
        }
        if let Some(status) = step.status {
            return Ok(status);
        }
    }
}

/// Just enough HTTP/2 (RFC 9113) and protobuf for one `grpc.health.v1.Health/Check` call.
pub mod h2 {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const PADDED: u8 = 0x8;

    /// The name of a `HealthCheckResponse.ServingStatus` value.
    pub fn serving_status_name(v: u64) -> &'static str {
        match v {
            0 => "UNKNOWN",
            1 => "SERVING",
            2 => "NOT_SERVING",
            3 => "SERVICE_UNKNOWN",
            _ => "an unknown value",
        }
    }

    fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
    pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
        let max = (1usize << n) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    fn hpack_str(out: &mut Vec<u8>, s: &str) {
        hpack_int(out, 0, 7, s.len());
        out.extend_from_slice(s.as_bytes());
    }

    /// A header as "literal without indexing, new name" (RFC 7541 §6.2.2).
    fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
        out.push(0);
        hpack_str(out, name);
        hpack_str(out, value);
    }

    /// `HealthCheckRequest { service }` as protobuf (field 1, a string).
    pub fn health_request(service: &str) -> Vec<u8> {
        let mut m = vec![];
        if !service.is_empty() {
            m.push(0x0a);
            let mut len = service.len();
            while len >= 0x80 {
                m.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            m.push(len as u8);
            m.extend_from_slice(service.as_bytes());
        }
        m
    }

    /// Everything the client sends: preface, SETTINGS, HEADERS and one DATA frame ending the stream.
    pub fn request(authority: &str, service: &str) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        let mut block = vec![0x83, 0x86]; // indexed :method POST, :scheme http
        literal(&mut block, ":path", "/grpc.health.v1.Health/Check");
        literal(&mut block, ":authority", authority);
        literal(&mut block, "content-type", "application/grpc");
        literal(&mut block, "te", "trailers");
        literal(&mut block, "user-agent", super::USER_AGENT);
        frame(&mut out, HEADERS, END_HEADERS, 1, &block);
        let msg = health_request(service);
        let mut data = vec![0u8];
        data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        data.extend_from_slice(&msg);
        frame(&mut out, DATA, END_STREAM, 1, &data);
        out
    }

    /// What one chunk of input produced.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct Step {
        /// Bytes to send back (SETTINGS and PING acknowledgements).
        pub reply: Vec<u8>,
        /// The response's `status`, once the whole message has arrived.
        pub status: Option<u64>,
    }

    /// Reads the server's frames.
    #[derive(Debug, Default)]
    pub struct Reader {
        buf: Vec<u8>,
        data: Vec<u8>,
    }

    fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i)?;
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// `HealthCheckResponse.status` (field 1, varint; absent = 0 = UNKNOWN).
    pub fn parse_response(m: &[u8]) -> Result<u64, String> {
        let mut i = 0;
        let mut status = 0;
        while i < m.len() {
            let key = varint(m, &mut i).ok_or("truncated protobuf")?;
            match key & 7 {
                0 => {
                    let v = varint(m, &mut i).ok_or("truncated protobuf")?;
                    if key >> 3 == 1 {
                        status = v;
                    }
                }
                1 => i += 8,
                2 => {
                    let len = varint(m, &mut i).ok_or("truncated protobuf")?;
                    i = i.saturating_add(usize::try_from(len).map_err(|_| "bad length")?);
                }
                5 => i += 4,
                _ => return Err("unsupported protobuf wire type".into()),
            }
        }
        Ok(status)
    }

    impl Reader {
        /// Feeds bytes read from the connection.
        pub fn feed(&mut self, bytes: &[u8]) -> Result<Step, String> {
            self.buf.extend_from_slice(bytes);
            let mut step = Step::default();
            while self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() < 9 + len {
                    break;
                }
                let (kind, flags) = (self.buf[3], self.buf[4]);
                let stream =
                    u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) & 0x7fff_ffff;
                let payload: Vec<u8> = self.buf[9..9 + len].to_vec();
                self.buf.drain(..9 + len);
                match kind {
                    SETTINGS if flags & ACK == 0 => frame(&mut step.reply, SETTINGS, ACK, 0, &[]),
                    PING if flags & ACK == 0 => frame(&mut step.reply, PING, ACK, 0, &payload),
                    GOAWAY => return Err("the server closed the connection (GOAWAY)".into()),
                    RST_STREAM if stream == 1 => return Err("the server reset the stream".into()),
                    DATA if stream == 1 => {
                        let body = if flags & PADDED != 0 {
                            let pad = usize::from(*payload.first().unwrap_or(&0));
                            payload.get(1..payload.len().saturating_sub(pad)).unwrap_or(&[]).to_vec()
                        } else {
                            payload
                        };
                        self.data.extend_from_slice(&body);
                        if self.data.len() >= 5 {
                            let mlen =
                                u32::from_be_bytes([self.data[1], self.data[2], self.data[3], self.data[4]])
                                    as usize;
                            if self.data[0] != 0 {
                                return Err("compressed gRPC response is not supported".into());
                            }
                            if self.data.len() >= 5 + mlen {
                                step.status = Some(parse_response(&self.data[5..5 + mlen])?);
                                return Ok(step);
                            }
                        }
                    }
                    HEADERS if stream == 1 && flags & END_STREAM != 0 => {
                        return Err("the call failed (no response message; the server may not implement grpc.health.v1.Health)".into());
                    }
                    _ => {}
                }
            }
            Ok(step)
        }
    }
}

mod tls;

#[cfg(test)]
mod tests;
