//! The daemon's inspection routes, behind `describe`, `events`, `logs --since` and `exec`:
//!
//! - `GET /events?namespace=&for=pod/web-0`: a `List` of Events, oldest first (every namespace
//!   without `namespace`; only those about one object with `for`, as `kubectl events --for`);
//! - `POST /exec/{namespace}/{pod}/{container}?command=<JSON array>`: runs the command inside the
//!   container (its namespaces, mounts, environment and cgroup, through the pod runtime); the request
//!   body is its standard input. The reply streams frames `[tag u8][length u32 BE][payload]`:
//!   tag 1 stdout, 2 stderr, 3 the exit code as decimal text (last), 4 an error message (last).
//!   No TTY: what `kubectl exec` does without `-t`.
//!
//! `port-forward` has no route: the client runs as the same user on the same host and the pod's
//! address (`status.podIP`, on the node's bridge) is reachable from it, so the client listens on
//! loopback and connects to the pod itself.

use super::{ApiError, ApiState, kind_of};
use crate::events;
use crate::kinds::Kind;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::ObjectKey;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::process::Stdio;
use std::sync::Arc;
use stead_node::kubelet::KubeletError;
use stead_node::logs::LogLine;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

/// Frame tags of an exec reply.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const ERROR: u8 = 4;

/// Why a command cannot be made to run in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("pod {pod} is not running here")]
    NoPod { pod: String },
    #[error("{0}")]
    Refused(String),
}

/// Makes the command that runs `argv` in `(namespace, pod, container)`; the daemon adds it as an
/// extension when it has a pod runtime.
pub type ExecFn =
    dyn Fn(&str, &str, &str, &[String]) -> Result<tokio::process::Command, ExecError> + Send + Sync;

#[derive(Clone)]
pub struct Exec(pub Arc<ExecFn>);

/// Exec through the pod runtime's [`Runtime::exec_command`].
pub fn runtime_exec(runtime: Arc<dyn Runtime>) -> Exec {
    Exec(Arc::new(move |ns: &str, pod: &str, container: &str, argv: &[String]| {
        runtime.exec_command(ns, pod, container, argv).map_err(|e| match e {
            RuntimeError::Kubelet(KubeletError::NoPod { pod }) => ExecError::NoPod { pod },
            other => ExecError::Refused(other.to_string()),
        })
    }))
}

pub(super) fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/events", get(list_events))
        .route("/exec/{namespace}/{pod}/{container}", post(exec))
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    namespace: Option<String>,
    /// `kind/name` (`pod/web-0`, `sts/web`).
    #[serde(rename = "for")]
    for_object: Option<String>,
}

async fn list_events(
    State(s): State<ApiState>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let namespace = q.namespace.as_deref().filter(|n| !n.is_empty());
    let about = match q.for_object.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(text) => {
            let (kind, name) = text
                .split_once('/')
                .ok_or_else(|| bad_request(format!("--for {text:?} must be of the form kind/name")))?;
            Some((kind_of(kind)?, name.to_string()))
        }
    };
    let mut items = s.store.list(Kind::Event, namespace);
    if let Some((kind, name)) = &about {
        items.retain(|e| {
            e["involvedObject"]["kind"] == kind.name() && e["involvedObject"]["name"] == name.as_str()
        });
    }
    events::sort(&mut items);
    let items: Vec<Value> = items.into_iter().map(|e| (*e).clone()).collect();
    Ok(Json(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": { "resourceVersion": s.store.resource_version().to_string() },
        "items": items,
    })))
}

/// `sinceTime` in the log files' own format (so text order is time order).
pub(super) fn since(text: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    let time: Timestamp =
        text.parse().map_err(|e| bad_request(format!("invalid sinceTime {text:?}: {e}")))?;
    Ok(Some(stead_node::logs::format_time(time)))
}

/// Lines at or after `since`, then the last `tail` of them (kubectl applies both in that order).
pub(super) fn select(mut lines: Vec<LogLine>, since: Option<&str>, tail: Option<usize>) -> Vec<LogLine> {
    if let Some(since) = since {
        lines.retain(|l| l.time.as_str() >= since);
    }
    if let Some(n) = tail {
        lines.drain(..lines.len().saturating_sub(n));
    }
    lines
}

#[derive(Debug, Default, Deserialize)]
pub struct ExecQuery {
    /// The command and its arguments, as a JSON array of strings.
    command: String,
}

/// One frame of an exec reply.
pub fn frame(tag: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(tag);
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&payload[..payload.len().min(u32::MAX as usize)]);
    Bytes::from(out)
}

async fn exec(
    State(s): State<ApiState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<ExecQuery>,
    runtime: Option<Extension<Exec>>,
    stdin: Bytes,
) -> Result<Response, ApiError> {
    let argv: Vec<String> = serde_json::from_str(&q.command)
        .map_err(|e| bad_request(format!("command {:?} is not a JSON array of strings: {e}", q.command)))?;
    if argv.is_empty() {
        return Err(bad_request("you must specify at least one command for the container"));
    }
    let key = ObjectKey::new(Kind::Pod, namespace.clone(), pod.clone());
    let object = s.store.get(&key).ok_or_else(|| ApiError::not_found(Kind::Pod, &pod))?;
    let known = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| object["spec"][f].as_array())
        .flatten()
        .any(|c| c["name"] == container.as_str());
    if !known {
        return Err(bad_request(format!("container {container} is not valid for pod {pod}")));
    }
    if matches!(object["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return Err(bad_request("cannot exec into a container in a completed pod"));
    }
    let Some(Extension(Exec(make))) = runtime else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "exec is not available: this daemon runs no pods",
        ));
    };
    let mut command = make(&namespace, &pod, &container, &argv).map_err(|e| match e {
        ExecError::NoPod { .. } => bad_request(format!("pod {pod} is not running")),
        ExecError::Refused(m) => bad_request(format!("unable to exec in container {container}: {m}")),
    })?;
    command
        .stdin(if stdin.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("starting {:?} in container {container}: {e}", argv[0]),
        )
    })?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(run(child, stdin, tx));
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) },
        );
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream)).into_response())
}

/// Feeds stdin, sends output frames as they come and the exit code at the end. The child is
/// killed when the client goes away (the channel closes and the child is dropped).
async fn run(mut child: tokio::process::Child, stdin: Bytes, tx: mpsc::Sender<Bytes>) {
    if let Some(mut input) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = input.write_all(&stdin).await;
        });
    }
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let pumps = futures::future::join(pump(out, STDOUT, tx.clone()), pump(err, STDERR, tx.clone()));
    let (a, b) = pumps.await;
    if !(a && b) {
        return;
    }
    let last = match child.wait().await {
        Ok(status) => frame(EXIT, exit_code(status).to_string().as_bytes()),
        Err(e) => frame(ERROR, format!("waiting for the command: {e}").as_bytes()),
    };
    let _ = tx.send(last).await;
}

/// Copies one output into frames; false when the client went away.
async fn pump(reader: Option<impl AsyncRead + Unpin>, tag: u8, tx: mpsc::Sender<Bytes>) -> bool {
    let Some(mut reader) = reader else { return true };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if tx.send(frame(tag, &buf[..n])).await.is_err() {
                    return false;
                }
            }
        }
    }
}

/// The exit code as a shell reports it: 128 + the signal for a killed command.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
