//! The daemon's API: the store behind HTTP/JSON on a unix socket (`<state_dir>/stead.sock`, mode
//! 0600), so `stead get`, `apply`, `delete` and `logs` are thin clients.
//!
//! Routes follow the Kubernetes API's shape, flattened so clients stay simple:
//! - `GET /api/{resource}?namespace=&labelSelector=`: a `List` (every namespace without `namespace`);
//! - `GET /api/{resource}/{namespace}/{name}`: one object;
//! - `DELETE /api/{resource}/{namespace}/{name}?gracePeriodSeconds=&force=`;
//! - `POST /apply?filename=`: manifests as YAML or JSON text; `[{"object", "namespace", "result"}]`,
//!   or 422 with the located problems;
//! - `GET /watch/{resource}?namespace=&labelSelector=`: newline-delimited watch events, starting
//!   with `ADDED` for every current object (what `kubectl get -w` shows first);
//! - `GET /logs/{namespace}/{pod}/{container}?previous=&follow=&tail=&sinceTime=&timestamps=`: text;
//! - `POST /down?volumes=`: `stead down` for a body of `[{"kind", "namespace", "name"}]`: the
//!   engine's ordered stop ([`local::stop`]), then the objects deleted and, with `volumes`, the
//!   claims of their StatefulSets (their data goes with them); answers `[{"object", "result"}]`
//!   for the objects that were there. Served only with an engine ([`app`]).
//! - `GET /events`, `POST /exec/...`: see [`inspect`].
//! - `POST /scale/...`, `/rollout/.../{status,history,undo,restart}`: see `rollout.rs`.
//!
//! Errors are Kubernetes `Status` objects (`reason`, `message`, `code`), so the client prints
//! kubectl's `Error from server (NotFound): pods "x" not found`.

use crate::kinds::Kind;
use crate::local::{self, Local, LocalError};
use crate::store::{DeleteOptions, ObjectKey, Store, StoreError, meta_str};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stead_node::logs::{LogFollower, ReadOptions, read_logs};
use tokio::net::UnixListener;
use tokio::sync::broadcast::error::RecvError;

/// The socket's file name in the state directory.
pub const SOCKET: &str = "stead.sock";

/// How long `POST /down` lets pods stop gracefully before it kills those still running.
const DOWN_FORCE_AFTER: Duration = Duration::from_secs(600);

/// How long a graceful stop waits for open requests (watches, followed logs) before dropping them.
const DRAIN: Duration = Duration::from_secs(2);

/// Where a container instance's live log file is: `(namespace, pod, container, previous)`.
pub type LogPaths = Arc<dyn Fn(&str, &str, &str, bool) -> Option<PathBuf> + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The pod runtime's log files; `None` serves no logs (tests without a runtime).
    pub log_paths: Option<LogPaths>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
}

/// The socket of the daemon owning `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// The API's routes.
pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/api/{resource}", get(list))
        .route("/api/{resource}/{namespace}/{name}", get(get_one).delete(delete))
        .route("/apply", post(apply))
        .route("/watch/{resource}", get(watch))
        .route("/logs/{namespace}/{pod}/{container}", get(logs))
        .route("/down", post(down))
        .merge(inspect::routes())
        .merge(rollout::routes())
        .with_state(state)
}

/// Serves the API for a running engine until `shutdown` resolves, then stops the engine (every
/// pod is stopped) and removes the socket. The caller holds the state directory's lock through
/// `local`, so a socket file left by a dead daemon is replaced safely.
pub async fn serve(
    local: Local,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let socket = socket_path(&local.config().state_dir);
    let listener = bind_private(&socket)?;
    let result = serve_router(listener, app(&local), shutdown).await;
    let _ = std::fs::remove_file(&socket);
    local.shutdown().await;
    result
}

/// The API of a running engine (the [`router`] with the kubelet's logs and exec), for whoever
/// serves it: the daemon, or `stead up` while it runs in the foreground.
pub fn app(local: &Local) -> axum::Router {
    engine_app(local.engine())
}

/// The [`router`] for `engine`, with logs and exec through its pod runtime and `/down` through
/// its ordered stop.
pub fn engine_app(engine: &Arc<crate::Engine>) -> axum::Router {
    let runtime = engine.runtime().clone();
    let exec = inspect::runtime_exec(runtime.clone());
    let state = ApiState {
        store: engine.store().clone(),
        log_paths: Some(Arc::new(move |ns: &str, pod: &str, c: &str, previous: bool| {
            runtime.log_path(ns, pod, c, previous)
        })),
    };
    router(state).layer(axum::Extension(exec)).layer(axum::Extension(Stopper(engine.clone())))
}

/// The engine whose ordered stop `POST /down` runs.
#[derive(Clone)]
pub struct Stopper(pub Arc<crate::Engine>);

/// Serves `state` on `listener` until `shutdown` resolves; open streams get [`DRAIN`] to finish.
pub async fn serve_on(
    listener: UnixListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves `app` (the [`router`], with layers) on `listener` until `shutdown` resolves.
pub async fn serve_router(
    listener: UnixListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let mut task = tokio::spawn(std::future::IntoFuture::into_future(server));
    tokio::select! {
        r = &mut task => return r.map_err(|e| DaemonError::Serve(std::io::Error::other(e)))?.map_err(DaemonError::Serve),
        _ = shutdown => {}
    }
    let _ = stop.send(());
    match tokio::time::timeout(DRAIN, &mut task).await {
        Ok(Ok(r)) => r.map_err(DaemonError::Serve),
        Ok(Err(e)) => Err(DaemonError::Serve(std::io::Error::other(e))),
        Err(_) => {
            task.abort();
            Ok(())
        }
    }
}

/// Binds `socket` so that it is never reachable by others: the socket is made in a fresh 0700
/// directory, set to 0600, and only then renamed into place.
pub fn bind_private(socket: &Path) -> Result<UnixListener, DaemonError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Socket { path, source }
    };
    let dir = socket.parent().unwrap_or(Path::new("."));
    let private = dir.join(format!(".stead.sock.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(err(&private))?;
    let inner = private.join("s");
    let bound = UnixListener::bind(&inner)
        .and_then(|l| std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600)).map(|_| l))
        .map_err(err(socket));
    let placed = bound.and_then(|listener| {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(socket)(e)),
        }
        std::fs::rename(&inner, socket).map_err(err(socket))?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&private);
    placed
}

/// A Kubernetes `Status` failure.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into() }
    }

    fn not_found(kind: Kind, name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("{} {name:?} not found", kind.resource()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": self.reason,
            "message": self.message,
            "code": self.code.as_u16(),
        });
        (self.code, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::NotFound { key } => ApiError::not_found(key.kind, &key.name),
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "AlreadyExists", e.to_string())
            }
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            StoreError::UnknownKind { .. } | StoreError::Invalid { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string())
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
        }
    }
}

fn kind_of(resource: &str) -> Result<Kind, ApiError> {
    Kind::lookup(resource).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownResource",
            format!("the server doesn't have a resource type {resource:?}"),
        )
    })
}

/// One requirement of a label selector (the equality-based forms kubectl's `-l` takes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// Parses `a=b,c!=d,e,!f` (also `a==b`).
pub fn parse_selector(text: &str) -> Result<Vec<Requirement>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else {
            Requirement::Exists(part.into())
        };
        let key = match &req {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k,
        };
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains(['(', ')', '!']) {
            return Err(format!("unable to parse requirement {part:?}: not a label key"));
        }
        out.push(req);
    }
    Ok(out)
}

/// Whether an object's labels satisfy every requirement.
pub fn selects(selector: &[Requirement], object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    selector.iter().all(|r| match r {
        Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
        Requirement::Exists(k) => label(k).is_some(),
        Requirement::NotExists(k) => label(k).is_none(),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    namespace: Option<String>,
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

impl ListQuery {
    fn selector(&self) -> Result<Vec<Requirement>, ApiError> {
        parse_selector(self.label_selector.as_deref().unwrap_or_default())
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", m))
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref().filter(|n| !n.is_empty())
    }
}

async fn list(
    State(s): State<ApiState>,
    UrlPath(resource): UrlPath<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&resource)?;
    let selector = q.selector()?;
    let items: Vec<Value> = s
        .store
        .list(kind, q.namespace())
        .into_iter()
        .filter(|o| selects(&selector, o))
        .map(|o| (*o).clone())
        .collect();
    Ok(Json(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": { "resourceVersion": s.store.resource_version().to_string() },
        "items": items,
    })))
}

async fn get_one(
    State(s): State<ApiState>,
    UrlPath((resource, namespace, name)): UrlPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&resource)?;
    let key = ObjectKey::new(kind, namespace, name);
    let object = s.store.get(&key).ok_or_else(|| ApiError::not_found(kind, &key.name))?;
    Ok(Json((*object).clone()))
}

#[derive(Debug, Default, Deserialize)]
pub struct DeleteQuery {
    #[serde(rename = "gracePeriodSeconds")]
    grace_period_seconds: Option<i64>,
    force: Option<bool>,
}

async fn delete(
    State(s): State<ApiState>,
    UrlPath((resource, namespace, name)): UrlPath<(String, String, String)>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind_of(&resource)?;
    let key = ObjectKey::new(kind, namespace, name);
    let opts = DeleteOptions {
        grace_period_seconds: q.grace_period_seconds,
        force: q.force.unwrap_or(false),
        ..DeleteOptions::default()
    };
    let after = s.store.delete(&key, opts)?;
    Ok(Json(match after {
        Some(object) => (*object).clone(),
        None => json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Success",
            "details": { "name": key.name, "kind": kind.resource() },
        }),
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct ApplyQuery {
    filename: Option<String>,
}

/// One problem of an apply, as JSON.
fn problem_json(p: &stead_api::Problem) -> Value {
    json!({
        "severity": if p.is_error() { "error" } else { "warning" },
        "location": p.location(),
        "field": p.path.as_ref().map(ToString::to_string),
        "message": p.message,
        "text": p.to_string(),
    })
}

async fn apply(State(s): State<ApiState>, Query(q): Query<ApplyQuery>, body: String) -> Response {
    let name = q.filename.as_deref().unwrap_or("<request>");
    let loaded = stead_api::load_str(name, &body);
    let mut problems = loaded.problems;
    problems.extend(stead_api::validate(&loaded.documents));
    if problems.iter().any(stead_api::Problem::is_error) {
        let list: Vec<Value> = problems.iter().map(problem_json).collect();
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(Value::Array(list))).into_response();
    }
    let manifests: Vec<stead_api::Manifest> = loaded.documents.into_iter().map(|d| d.manifest).collect();
    let existed: BTreeMap<ObjectKey, bool> = manifests
        .iter()
        .filter_map(|m| m.to_json().ok())
        .filter_map(|v| ObjectKey::of(&v).ok())
        .map(|k| {
            let present = s.store.get(&k).is_some();
            (k, present)
        })
        .collect();
    match local::apply(&s.store, &manifests) {
        Ok(applied) => {
            let out: Vec<Value> = applied
                .iter()
                .map(|(key, changed)| {
                    let result = match (existed.get(key).copied().unwrap_or(false), changed) {
                        (false, _) => "created",
                        (true, true) => "configured",
                        (true, false) => "unchanged",
                    };
                    json!({
                        "object": format!("{}/{}", key.kind.name().to_ascii_lowercase(), key.name),
                        "namespace": key.namespace,
                        "result": result,
                    })
                })
                .collect();
            Json(Value::Array(out)).into_response()
        }
        Err(LocalError::Store(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string()).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DownQuery {
    volumes: Option<bool>,
}

/// One object `down` names.
#[derive(Debug, Deserialize)]
struct DownObject {
    kind: String,
    #[serde(default)]
    namespace: String,
    name: String,
}

async fn down(
    State(s): State<ApiState>,
    engine: Option<axum::Extension<Stopper>>,
    Query(q): Query<DownQuery>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let objects: Vec<DownObject> = serde_json::from_str(&body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", format!("the objects to stop: {e}"))
    })?;
    let Some(axum::Extension(Stopper(engine))) = engine else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "this API serves no engine, so it cannot stop workloads",
        ));
    };
    let mut keys = Vec::new();
    for o in objects {
        let kind = Kind::from_name(&o.kind).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", format!("unknown kind {:?}", o.kind))
        })?;
        let namespace = if o.namespace.is_empty() { crate::kinds::DEFAULT_NAMESPACE } else { &o.namespace };
        keys.push(ObjectKey::new(kind, namespace, o.name));
    }
    let present: Vec<ObjectKey> = keys.into_iter().filter(|k| s.store.get(k).is_some()).collect();
    // In a task of its own: a client that goes away must not leave the workloads paused halfway.
    let volumes = q.volumes.unwrap_or(false);
    let stopping = present.clone();
    // As `stead down` without a daemon after a second Ctrl-C: pods still running once every
    // grace period surely ended are killed, so that the stop always ends.
    let force = tokio::time::sleep(DOWN_FORCE_AFTER);
    let stopped = tokio::spawn(async move { local::stop(&engine, &stopping, volumes, force).await })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))?;
    match stopped {
        Ok(()) => {}
        Err(LocalError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())),
    }
    let out: Vec<Value> = present
        .iter()
        .map(|key| {
            json!({
                "object": format!("{}/{}", key.kind.name().to_ascii_lowercase(), key.name),
                "result": "deleted",
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn resource_version(object: &Value) -> u64 {
    meta_str(object, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn watch(
    State(s): State<ApiState>,
    UrlPath(resource): UrlPath<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&resource)?;
    let selector = q.selector()?;
    let namespace = q.namespace().map(str::to_string);
    // Subscribe before listing so nothing falls between; events the list already shows are
    // skipped by resourceVersion.
    let rx = s.store.watch();
    let mut listed = BTreeMap::new();
    let mut pending = VecDeque::new();
    for object in s.store.list(kind, namespace.as_deref()) {
        if let Ok(key) = ObjectKey::of(&object) {
            listed.insert(key, resource_version(&object));
        }
        if selects(&selector, &object) {
            pending.push_back(event_line("ADDED", &object));
        }
    }
    let stream = futures::stream::unfold((pending, rx), move |(mut pending, mut rx)| {
        let (listed, selector, namespace) = (listed.clone(), selector.clone(), namespace.clone());
        async move {
            if let Some(line) = pending.pop_front() {
                return Some((Ok::<_, Infallible>(line), (pending, rx)));
            }
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        let key = &event.key;
                        if key.kind != kind || namespace.as_deref().is_some_and(|n| n != key.namespace) {
                            continue;
                        }
                        if listed.get(key).is_some_and(|rv| resource_version(&event.object) <= *rv) {
                            continue;
                        }
                        if !selects(&selector, &event.object) {
                            continue;
                        }
                        let kind = match event.kind {
                            crate::EventType::Added => "ADDED",
                            crate::EventType::Modified => "MODIFIED",
                            crate::EventType::Deleted => "DELETED",
                        };
                        return Some((Ok(event_line(kind, &event.object)), (pending, rx)));
                    }
                    // A watcher that fell behind ends; the client lists and watches again.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json-seq")], Body::from_stream(stream)).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    previous: Option<bool>,
    follow: Option<bool>,
    tail: Option<usize>,
    /// Only lines written at or after this time (RFC 3339; `kubectl logs --since`).
    #[serde(rename = "sinceTime")]
    since_time: Option<String>,
    /// Each line starts with its time (RFC 3339, nanoseconds), as `kubectl logs --timestamps`.
    timestamps: Option<bool>,
}

/// `(directory, instance)` of a live log file `<dir>/<instance>.log`.
fn instance_of(path: &Path) -> (PathBuf, u32) {
    let n = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".log"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (path.parent().unwrap_or(Path::new(".")).to_path_buf(), n)
}

fn render_lines(lines: &[stead_node::logs::LogLine], timestamps: bool) -> Vec<u8> {
    lines.iter().flat_map(|l| l.render(timestamps)).collect()
}

async fn logs(
    State(s): State<ApiState>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let key = ObjectKey::new(Kind::Pod, namespace.clone(), pod.clone());
    let object = s.store.get(&key).ok_or_else(|| ApiError::not_found(Kind::Pod, &pod))?;
    let known = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| object["spec"][f].as_array())
        .flatten()
        .any(|c| c["name"] == container.as_str());
    if !known {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container {container} is not valid for pod {pod}"),
        ));
    }
    let previous = q.previous.unwrap_or(false);
    let since = inspect::since(q.since_time.as_deref())?;
    let stamps = q.timestamps.unwrap_or(false);
    let waiting = || {
        let message = if previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is waiting to start")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    };
    let lookup = s.log_paths.clone().ok_or_else(waiting)?;
    let path = lookup(&namespace, &pod, &container, previous).ok_or_else(waiting)?;
    let (dir, instance) = instance_of(&path);
    let internal = |e: stead_node::logs::LogError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string())
    };
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !q.follow.unwrap_or(false) || previous {
        let opts = ReadOptions { previous: false, tail: None };
        let lines = match read_logs(&dir, &container, instance, opts) {
            Ok(lines) => lines,
            Err(stead_node::logs::LogError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(internal(e)),
        };
        let lines = inspect::select(lines, since.as_deref(), q.tail);
        return Ok((text, render_lines(&lines, stamps)).into_response());
    }
    // Follow: everything of the live instance (its last `tail` lines), then what is appended, until
    // the pod is gone or the container restarts (as `kubectl logs -f` ends with its container).
    let mut follower = LogFollower::new(&dir, instance);
    let first = inspect::select(follower.poll().map_err(internal)?, since.as_deref(), q.tail);
    let state = (follower, Some(render_lines(&first, stamps)), false);
    let store = s.store.clone();
    let name = container.clone();
    let stream = futures::stream::unfold(state, move |(mut follower, mut ready, done)| {
        let (store, lookup, key, path, name) =
            (store.clone(), lookup.clone(), key.clone(), path.clone(), name.clone());
        async move {
            if let Some(bytes) = ready.take().filter(|b| !b.is_empty()) {
                return Some((Ok::<_, Infallible>(Bytes::from(bytes)), (follower, None, done)));
            }
            if done {
                return None;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let over = store.get(&key).is_none()
                    || lookup(&key.namespace, &key.name, &name, false).as_ref() != Some(&path);
                let lines = follower.poll().unwrap_or_default();
                if !lines.is_empty() || over {
                    let bytes = render_lines(&lines, stamps);
                    return Some((Ok(Bytes::from(bytes)), (follower, None, over)));
                }
            }
        }
    });
    Ok((text, Body::from_stream(stream)).into_response())
}

pub mod inspect;
mod rollout;
#[cfg(test)]
mod tests;
