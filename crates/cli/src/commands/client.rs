//! The daemon's client: HTTP/1.1 over the unix socket `<state_dir>/stead.sock`, one connection
//! per request.

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::PathBuf;
use tokio::net::UnixStream;

/// A client of one daemon.
#[derive(Clone, Debug)]
pub struct Client {
    pub socket: PathBuf,
}

/// A reply that is not a success, as kubectl prints it.
pub fn failure_line(status: StatusCode, body: &[u8]) -> String {
    let status_json: Option<Value> = serde_json::from_slice(body).ok();
    let reason = status_json.as_ref().and_then(|s| s["reason"].as_str().map(str::to_string));
    let message = status_json.as_ref().and_then(|s| s["message"].as_str().map(str::to_string));
    match (reason.as_deref(), message) {
        (Some("UnknownResource"), Some(m)) => format!("error: {m}"),
        (Some(r), Some(m)) => format!("Error from server ({r}): {m}"),
        _ => format!("Error from server ({}): {}", status, String::from_utf8_lossy(body).trim()),
    }
}

impl Client {
    pub fn new(socket: PathBuf) -> Client {
        Client { socket }
    }

    /// Sends one request; the response's body is read by the caller (it may be a stream).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            anyhow::anyhow!(
                "no stead daemon at {}: start one with \"sudo stead daemon\" (or use \"stead up\") ({e})",
                self.socket.display()
            )
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("talking to the daemon at {}", self.socket.display()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "stead")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        sender.send_request(request).await.with_context(|| format!("request {path} to the daemon"))
    }

    /// Sends one request and reads the whole reply.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await.context("reading the daemon's reply")?.to_bytes();
        Ok((status, bytes))
    }
}

/// The next chunk of a streamed body; `None` at its end.
pub async fn next_chunk(body: &mut Incoming) -> anyhow::Result<Option<Bytes>> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(frame) => {
                if let Ok(data) = frame.context("reading the daemon's stream")?.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// `a b` → `a%20b`: a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs a verb's future on a runtime of its own (two workers: exec and port-forward copy both
/// ways at once).
pub fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(f: F) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}
