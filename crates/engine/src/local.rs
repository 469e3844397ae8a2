//! The engine on this machine: the state directory (locked, so one engine owns it), the store
//! file, the pod runtime, the cluster DNS server on the bridge, Service traffic ([`crate::services`]:
//! virtual IPs and node ports), and the loop; plus what `stead
//! up` and `stead down` do with a set of objects (apply, wait for Ready, stop in order).

use crate::controllers::{self, pods::LocalImages};
use crate::engine::{Engine, EngineConfig};
use crate::kinds::Kind;
use crate::node_runtime::NodeRuntime;
use crate::runtime::Runtime;
use crate::store::{DeleteOptions, ObjectKey, Store, StoreError, is_deleting, meta_str, metadata_mut};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use stead_api::Manifest;
use stead_dns::{DnsConfig, DnsServer, Records};
use stead_node::kubelet::{Kubelet, KubeletConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the engine runs containers of pods that name no `runtimeClassName`: as host processes,
/// until examples and tests name `runtimeClassName: stead-host-process` and images become the
/// default.
pub const DEFAULT_RUNTIME: stead_node::runtime_class::ContainerRuntime =
    stead_node::runtime_class::ContainerRuntime::HostProcess;

/// Where and how the local engine runs.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub state_dir: PathBuf,
    pub pod_cidr: ipnet::Ipv4Net,
    pub bridge: String,
    pub cluster_domain: String,
    pub node_name: String,
    /// The `stead` binary: the container init (`stead container-init`) and the sidecar
    /// (`stead proxy`, for containers of `proxy_repository` without a command).
    pub stead_exe: PathBuf,
    pub proxy_repository: String,
    pub render: stead_render::RenderOptions,
}

impl LocalConfig {
    pub fn new(state_dir: PathBuf, stead_exe: PathBuf) -> LocalConfig {
        let render = stead_render::RenderOptions::default();
        let proxy_repository =
            render.proxy_image.rsplit_once(':').map_or(render.proxy_image.clone(), |(r, _)| r.to_string());
        LocalConfig {
            state_dir,
            pod_cidr: ipnet::Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).unwrap_or_default(),
            bridge: "stead0".into(),
            cluster_domain: "cluster.local".into(),
            node_name: "stead".into(),
            stead_exe,
            proxy_repository,
            render,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("embedded store mount point {path}: {source}")]
    MountPoint { path: PathBuf, source: std::io::Error },
    #[error(
        "state directory {path} is in use by another stead engine (a `stead up` or `stead daemon`); stop it, or pass another --state-dir"
    )]
    Locked { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pod runtime: {0}")]
    Runtime(#[from] stead_node::kubelet::KubeletError),
    #[error("{object}: {message}")]
    Object { object: String, message: String },
}

/// A running local engine.
pub struct Local {
    engine: Arc<Engine>,
    node: Arc<NodeRuntime>,
    dns: Option<Arc<DnsServer>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    config: LocalConfig,
    _lock: File,
}

/// How far a set of objects got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// `(object, why it is not ready)`, e.g. `("pod/web-1", "container app: CrashLoopBackOff")`.
    pub waiting: Vec<(String, String)>,
    /// A reason that will not go away by waiting (a crash loop, a failed pod).
    pub blocked: Option<String>,
}

impl Local {
    /// Locks the state directory, opens the store, starts the pod runtime, DNS and the loop.
    pub async fn start(config: LocalConfig) -> Result<Local, LocalError> {
        let dir = &config.state_dir;
        let io = |source| LocalError::StateDir { path: dir.clone(), source };
        private_dir(dir).map_err(io)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("engine.lock"))
            .map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(LocalError::Locked { path: dir.clone() });
        }
        let store = Store::open(&dir.join("objects.redb"))?;
        let kubelet = Kubelet::start(KubeletConfig {
            state_dir: dir.clone(),
            node_name: config.node_name.clone(),
            pod_cidr: config.pod_cidr,
            bridge: config.bridge.clone(),
            cluster_domain: config.cluster_domain.clone(),
            dns_server: None,
            init_program: config.stead_exe.clone(),
            init_args: vec!["container-init".into()],
            default_runtime: DEFAULT_RUNTIME,
            // The daemon inherits the environment of `stead up -d`, read at each pull.
            registry_env: stead_node::images::RegistryEnv::Process,
        })
        .await?;
        let node = Arc::new(NodeRuntime::new(kubelet));
        // Host-process mode mounts volumes over existing directories only; the sidecar's embedded
        // store mounts its claim at this fixed path (the default state directory as root, absent
        // when `--state-dir` points elsewhere), so it must exist on the host.
        let mount_point = std::path::Path::new(stead_render::EMBEDDED_MOUNT_PATH);
        std::fs::create_dir_all(mount_point)
            .map_err(|source| LocalError::MountPoint { path: mount_point.to_path_buf(), source })?;
        let dns = start_dns(&config, node.kubelet().bridge_address()).await.map(Arc::new);
        let images =
            LocalImages { stead: Some((config.proxy_repository.clone(), path_string(&config.stead_exe))) };
        let engine_config = EngineConfig {
            node_name: config.node_name.clone(),
            render: config.render.clone(),
            images,
            ..Default::default()
        };
        let runtime: Arc<dyn Runtime> = node.clone();
        let engine = Engine::new(store, runtime, engine_config);
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(engine.clone().run(rx.clone()))];
        tasks.push(tokio::spawn(reclaim_volumes(
            engine.store().clone(),
            config.state_dir.clone(),
            rx.clone(),
        )));
        match stead_node::ipam::service_range(config.pod_cidr) {
            Some(range) => match stead_node::netlink::RtNetlink::new() {
                Ok(nl) => {
                    let forwarder = crate::services::Forwarder::new(nl, config.bridge.clone(), range);
                    tasks.push(tokio::spawn(crate::services::run(
                        engine.store().clone(),
                        forwarder,
                        rx.clone(),
                    )));
                }
                Err(e) => tracing::warn!(error = %e, "services get no virtual IPs"),
            },
            None => tracing::warn!(
                pod_cidr = %config.pod_cidr,
                "the pod CIDR is smaller than a /24, so there is no service range: services get no virtual IPs and their DNS names resolve to pod IPs"
            ),
        }
        if let Some(dns) = &dns {
            tasks.push(tokio::spawn(feed_dns(
                engine.store().clone(),
                dns.clone(),
                config.cluster_domain.clone(),
                rx,
            )));
        }
        Ok(Local { engine, node, dns, shutdown, tasks, config, _lock: lock })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    /// The pod runtime (the kubelet behind the engine's [`Runtime`] trait).
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        self.engine.runtime()
    }

    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// Creates or updates each object (as `kubectl apply` does for the fields given). Returns
    /// the keys, in the order applied.
    pub fn apply(&self, manifests: &[Manifest]) -> Result<Vec<(ObjectKey, bool)>, LocalError> {
        apply(self.store(), manifests)
    }

    /// Whether every object is ready, and what the others wait on.
    pub fn readiness(&self, keys: &[ObjectKey]) -> Readiness {
        readiness(self.store(), keys)
    }

    /// The pods under these objects (their children, grandchildren...).
    pub fn pods_of(&self, keys: &[ObjectKey]) -> Vec<ObjectKey> {
        let store = self.store();
        let roots = uids_of(store, keys);
        let mut pods = descendant_pods(store, &roots);
        pods.extend(keys.iter().filter(|k| k.kind == Kind::Pod && store.get(k).is_some()).cloned());
        pods.sort();
        pods.dedup();
        pods
    }

    /// Stops and deletes what `keys` run (see [`stop`]).
    pub async fn stop(
        &self,
        keys: &[ObjectKey],
        volumes: bool,
        force: impl std::future::Future<Output = ()>,
    ) -> Result<(), LocalError> {
        stop(&self.engine, keys, volumes, force).await
    }

    /// Stops the loop and the pod runtime (every pod still running is stopped), and DNS.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.node.shutdown().await;
        if let Some(dns) = self.dns.and_then(|d| Arc::try_unwrap(d).ok()) {
            dns.shutdown().await;
        }
    }
}

/// Stops what `keys` run, then deletes them as `kubectl delete` would (claims follow the
/// StatefulSets' retention policy; with `volumes`, they all go). Pods stop in order: those of
/// OrderedReady StatefulSets one at a time from the highest ordinal (the workloads' controllers
/// are paused meanwhile, so nothing is recreated), all others at once. When `force` resolves,
/// every pod still running is killed at once.
pub async fn stop(
    engine: &Engine,
    keys: &[ObjectKey],
    volumes: bool,
    force: impl std::future::Future<Output = ()>,
) -> Result<(), LocalError> {
    let store = engine.store();
    let roots = uids_of(store, keys);
    let workloads: Vec<Arc<Value>> = descendants(store, &roots)
        .iter()
        .filter_map(|uid| find_by_uid(store, uid))
        .filter(|o| matches!(Kind::of(o), Some(Kind::StatefulSet | Kind::Deployment | Kind::ReplicaSet)))
        .collect();
    let _paused =
        Paused::new(engine, workloads.iter().filter_map(|w| meta_str(w, "uid").map(str::to_string)));
    // The stopping order: each OrderedReady StatefulSet's pods one at a time from the highest
    // ordinal; everything else at once.
    let mut waves: Vec<Vec<ObjectKey>> = Vec::new();
    let mut at_once = Vec::new();
    for pod in descendant_pods(store, &roots) {
        at_once.push(pod);
    }
    for set in workloads.iter().filter(|w| Kind::of(w) == Some(Kind::StatefulSet)) {
        if set["spec"]["podManagementPolicy"] == "Parallel" {
            continue;
        }
        let uid = meta_str(set, "uid").unwrap_or_default();
        let mut pods: Vec<(i64, ObjectKey)> = at_once
            .iter()
            .filter_map(|k| store.get(k).map(|p| (k, p)))
            .filter(|(_, p)| crate::gc::controller_of(p).is_some_and(|r| r.uid == uid))
            .map(|(k, p)| {
                let ordinal = p["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
                    .as_str()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                (ordinal, k.clone())
            })
            .collect();
        pods.sort_by_key(|p| std::cmp::Reverse(p.0));
        at_once.retain(|k| !pods.iter().any(|(_, p)| p == k));
        for (_, pod) in pods {
            waves.push(vec![pod]);
        }
    }
    waves.insert(0, at_once);
    tokio::pin!(force);
    let mut forced = false;
    for wave in waves {
        for pod in &wave {
            match store.delete(pod, DeleteOptions::default()) {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        engine.kick();
        while wave.iter().any(|k| store.get(k).is_some()) {
            tokio::select! {
                _ = &mut force, if !forced => {
                    forced = true;
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if forced {
                for pod in descendant_pods(store, &roots) {
                    let _ = engine.runtime().kill_pod(&pod.namespace, &pod.name, Some(Duration::ZERO)).await;
                }
            }
        }
    }
    let claims = if volumes { claims_of(store, &roots) } else { Vec::new() };
    for key in keys.iter().rev() {
        match store.delete(key, DeleteOptions::default()) {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for key in claims {
        let _ = store.delete(&key, DeleteOptions::default());
    }
    engine.kick();
    // Let the collector take the children.
    for _ in 0..100 {
        if descendant_pods(store, &roots).is_empty() && keys.iter().all(|k| store.get(k).is_none()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The workloads whose controllers [`stop`] holds; resumed however the stop ends (done, failed,
/// or its future dropped), so that no workload stays paused.
struct Paused<'a> {
    engine: &'a Engine,
    uids: Vec<String>,
}

impl<'a> Paused<'a> {
    fn new(engine: &'a Engine, uids: impl Iterator<Item = String>) -> Self {
        let uids: Vec<String> = uids.collect();
        engine.pause(uids.iter().cloned(), true);
        Paused { engine, uids }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.engine.pause(std::mem::take(&mut self.uids), false);
    }
}

/// Makes `dir` private to its owner: created mode 0700 (with any missing parents), or, when it
/// exists with access for others, tightened to 0700 with a log line. The state directory holds
/// the store (every Secret), the pods' Secret volumes and the daemon's socket.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::warn!(
            dir = %dir.display(),
            was = format!("{mode:04o}"),
            "the state directory was readable by others; its mode is now 0700"
        );
    }
    Ok(())
}

fn find_by_uid(store: &Store, uid: &str) -> Option<Arc<Value>> {
    store.all().into_iter().map(|(_, o)| o).find(|o| meta_str(o, "uid") == Some(uid))
}

fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The order objects are applied in: what others refer to first.
/// Where a kind goes in an apply: what others refer to (namespaces, then configuration and
/// stores, then Services) before what refers to it. Clients sending several files order them by it
/// too.
pub fn apply_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Namespace => 0,
        Kind::ConfigMap | Kind::Secret | Kind::StatefulStore | Kind::PersistentVolumeClaim => 1,
        Kind::Service => 2,
        _ => 3,
    }
}

/// Creates or updates each manifest in the store. Returns `(key, changed)` per object.
pub fn apply(store: &Store, manifests: &[Manifest]) -> Result<Vec<(ObjectKey, bool)>, LocalError> {
    let mut objects = Vec::new();
    for m in manifests {
        let value: Value = m.to_json().map_err(|e| LocalError::Object {
            object: format!("{}/{}", m.kind(), m.name()),
            message: e.to_string(),
        })?;
        let kind = Kind::of(&value).ok_or_else(|| LocalError::Object {
            object: m.kind().into(),
            message: "kind not served locally".into(),
        })?;
        objects.push((apply_rank(kind), value));
    }
    objects.sort_by_key(|(rank, _)| *rank);
    let mut out = Vec::new();
    for (_, mut value) in objects {
        let meta = metadata_mut(&mut value);
        meta.remove("resourceVersion");
        meta.remove("uid");
        let key = ObjectKey::of(&value)?;
        if let Some(current) = store.get(&key)
            && is_deleting(&current)
        {
            return Err(LocalError::Object {
                object: key.to_string(),
                message: "is being deleted; apply again once it is gone".into(),
            });
        }
        // A controller may write the object (its status) between apply's read and its write, or
        // create it: read again and lay the manifest over the new version, as an API server would.
        let mut attempts = 0;
        let changed = loop {
            match controllers::apply(store, value.clone()) {
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) if attempts < 10 => {
                    attempts += 1
                }
                other => break other?,
            }
        };
        out.push((key, changed));
    }
    Ok(out)
}

/// Uids of the objects `keys` name (those that exist).
fn uids_of(store: &Store, keys: &[ObjectKey]) -> BTreeSet<String> {
    keys.iter().filter_map(|k| store.get(k)).filter_map(|o| meta_str(&o, "uid").map(str::to_string)).collect()
}

/// Uids of the objects under `roots` (children, grandchildren...), roots included.
fn descendants(store: &Store, roots: &BTreeSet<String>) -> BTreeSet<String> {
    let all = store.all();
    let mut found = roots.clone();
    loop {
        let before = found.len();
        for (_, object) in &all {
            let owned = crate::gc::owner_refs(object).iter().any(|r| found.contains(&r.uid));
            if owned && let Some(uid) = meta_str(object, "uid") {
                found.insert(uid.to_string());
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

fn descendant_pods(store: &Store, roots: &BTreeSet<String>) -> Vec<ObjectKey> {
    let uids = descendants(store, roots);
    store
        .list(Kind::Pod, None)
        .iter()
        .filter(|p| meta_str(p, "uid").is_some_and(|u| uids.contains(u)))
        .filter_map(|p| ObjectKey::of(p).ok())
        .collect()
}

/// The claims of the StatefulSets under `roots` (they are not owned while retained).
fn claims_of(store: &Store, roots: &BTreeSet<String>) -> Vec<ObjectKey> {
    let uids = descendants(store, roots);
    let mut out = Vec::new();
    for set in store.list(Kind::StatefulSet, None) {
        if !meta_str(&set, "uid").is_some_and(|u| uids.contains(u)) {
            continue;
        }
        let name = meta_str(&set, "name").unwrap_or_default();
        let ns = meta_str(&set, "namespace").unwrap_or_default();
        let templates: Vec<String> = set["spec"]["volumeClaimTemplates"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| t["metadata"]["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for claim in store.list(Kind::PersistentVolumeClaim, Some(ns)) {
            let claim_name = meta_str(&claim, "name").unwrap_or_default();
            if templates.iter().any(|t| {
                claim_name
                    .strip_prefix(&format!("{t}-{name}-"))
                    .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
            }) && let Ok(key) = ObjectKey::of(&claim)
            {
                out.push(key);
            }
        }
    }
    out
}

/// Readiness of a set of objects, with the reasons kubectl users know.
pub fn readiness(store: &Store, keys: &[ObjectKey]) -> Readiness {
    let mut waiting = Vec::new();
    let mut blocked = None;
    for key in keys {
        let Some(object) = store.get(key) else {
            waiting.push((key.to_string(), "not created yet".into()));
            continue;
        };
        let label = format!("{}/{}", key.kind.name().to_ascii_lowercase(), key.name);
        let status = &object["status"];
        let replicas_ready = || {
            let want = object["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = status["readyReplicas"].as_i64().unwrap_or(0);
            let updated = status["updatedReplicas"].as_i64().unwrap_or(0);
            let observed = status["observedGeneration"].as_i64() >= object["metadata"]["generation"].as_i64();
            (observed && ready == want && updated == want, format!("{ready}/{want} ready"))
        };
        let (ok, why) = match key.kind {
            Kind::StatefulService => {
                let (ready, why, degraded) = service_readiness(&object);
                if let Some(degraded) = degraded
                    && blocked.is_none()
                {
                    blocked = Some(format!("{label}: {degraded}"));
                }
                (ready, why)
            }
            Kind::StatefulSet | Kind::Deployment | Kind::ReplicaSet => replicas_ready(),
            Kind::Pod => {
                let ready = status["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
                (ready, status["phase"].as_str().unwrap_or("Pending").to_string())
            }
            _ => (true, String::new()),
        };
        if !ok {
            waiting.push((label, why));
        }
    }
    // Pods under the objects: name the ones that block, with their reason.
    let roots = uids_of(store, keys);
    for key in descendant_pods(store, &roots) {
        let Some(pod) = store.get(&key) else { continue };
        if is_deleting(&pod) {
            continue;
        }
        if let Some(reason) = pod_problem(&pod) {
            let label = format!("pod/{}", key.name);
            if is_hopeless(&reason) && blocked.is_none() {
                blocked = Some(format!("{label}: {reason}"));
            }
            waiting.push((label, reason));
        }
    }
    Readiness { ready: waiting.is_empty(), waiting, blocked }
}

/// A StatefulService's readiness is its own status, which `stead_render::plan_service` computes
/// for both engines: Ready once its Ready condition is True for the current generation. Returns
/// (ready, why not, what degrades it: a reason waiting will not remove, like a missing store).
fn service_readiness(svc: &Value) -> (bool, String, Option<String>) {
    let status = &svc["status"];
    let condition = |type_: &str| {
        status["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == type_)).cloned()
    };
    let observed = status["observedGeneration"].as_i64() >= svc["metadata"]["generation"].as_i64()
        && status["observedGeneration"].is_i64();
    let degraded = condition("Degraded")
        .filter(|c| observed && c["status"] == "True")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string());
    match condition("Ready") {
        _ if !observed => (false, "status not observed yet".into(), None),
        Some(c) => {
            let why = c["message"].as_str().unwrap_or_default().to_string();
            (c["status"] == "True", degraded.clone().unwrap_or(why), degraded)
        }
        None => (false, "no Ready condition yet".into(), degraded),
    }
}

fn is_hopeless(reason: &str) -> bool {
    ["CrashLoopBackOff", "CreateContainerError", "StartError", "Error", "OOMKilled", "Failed"]
        .iter()
        .any(|r| reason.contains(r))
}

/// Why a pod is not Ready, as `kubectl get` and `describe` would say it.
pub fn pod_problem(pod: &Value) -> Option<String> {
    let status = &pod["status"];
    let ready = status["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    if ready {
        return None;
    }
    if status["phase"] == "Failed" {
        let why = status["message"].as_str().or(status["reason"].as_str()).unwrap_or("Failed");
        return Some(format!("Failed: {why}"));
    }
    let containers = status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(status["containerStatuses"].as_array().into_iter().flatten());
    for c in containers {
        let name = c["name"].as_str().unwrap_or_default();
        if let Some(w) = c["state"].get("waiting") {
            let reason = w["reason"].as_str().unwrap_or("Waiting");
            let message = w["message"].as_str().map(|m| format!(": {m}")).unwrap_or_default();
            return Some(format!("container {name}: {reason}{message}"));
        }
        if let Some(t) = c["state"].get("terminated")
            && t["exitCode"].as_i64() != Some(0)
        {
            let reason = t["reason"].as_str().unwrap_or("Error");
            return Some(format!("container {name}: {reason} (exit code {})", t["exitCode"]));
        }
        if c["ready"] == false && c["state"].get("running").is_some() {
            return Some(format!("container {name}: {}", unready_because(pod, name, c)));
        }
    }
    Some(status["phase"].as_str().unwrap_or("Pending").to_string())
}

/// Which probe keeps a running container from being ready, from its spec: the startup probe until
/// the container has `started`, then the readiness probe.
fn unready_because(pod: &Value, name: &str, status: &Value) -> String {
    let spec = pod["spec"]["containers"].as_array().into_iter().flatten().find(|c| c["name"] == name);
    let probe = |field: &str| spec.and_then(|c| c.get(field)).filter(|p| p.is_object());
    match (status["started"] == false, probe("startupProbe"), probe("readinessProbe")) {
        (true, Some(p), _) => format!("running, startup probe {} has not succeeded yet", probe_handler(p)),
        (_, _, Some(p)) => format!("running, readiness probe {} is failing", probe_handler(p)),
        _ => "running, not ready".to_string(),
    }
}

/// A probe's handler as `kubectl describe` prints it: `exec [cat /tmp/ok]`,
/// `http-get http://:8080/ready`, `tcp-socket :5432`, `grpc <port> <service>`.
pub fn probe_handler(p: &Value) -> String {
    let word = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    if let Some(e) = p.get("exec") {
        let words: Vec<String> = e["command"].as_array().into_iter().flatten().map(word).collect();
        format!("exec [{}]", words.join(" "))
    } else if let Some(h) = p.get("httpGet") {
        let scheme = h["scheme"].as_str().unwrap_or("HTTP").to_ascii_lowercase();
        let host = h["host"].as_str().unwrap_or_default();
        format!("http-get {scheme}://{host}:{}{}", word(&h["port"]), h["path"].as_str().unwrap_or("/"))
    } else if let Some(t) = p.get("tcpSocket") {
        format!("tcp-socket {}:{}", t["host"].as_str().unwrap_or_default(), word(&t["port"]))
    } else if let Some(g) = p.get("grpc") {
        format!("grpc <{}> <{}>", word(&g["port"]), g["service"].as_str().unwrap_or_default())
    } else {
        "(no handler)".to_string()
    }
}

async fn start_dns(config: &LocalConfig, bridge: Ipv4Addr) -> Option<DnsServer> {
    let upstreams = std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| stead_dns::upstreams_from_resolv_conf(&text))
        .unwrap_or_default();
    let cfg = DnsConfig {
        listen: vec![SocketAddr::from((bridge, 53))],
        cluster_domain: config.cluster_domain.clone(),
        upstreams,
        ..DnsConfig::default()
    };
    match DnsServer::bind(cfg).await {
        Ok(server) => Some(server),
        Err(e) => {
            tracing::warn!(error = %e, "cluster DNS could not start; pods resolve no cluster names");
            None
        }
    }
}

/// Removes a claim's directory when the claim is deleted (its data goes with it, as with a
/// `Delete` reclaim policy). Nothing else ever removes one.
async fn reclaim_volumes(store: Store, state_dir: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let mut changes = store.watch();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = changes.recv() => match event {
                Ok(event) if event.kind == crate::store::EventType::Deleted
                    && event.key.kind == Kind::PersistentVolumeClaim =>
                {
                    let dir = stead_node::volumes::claim_dir(&state_dir, &event.key.namespace, &event.key.name);
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => tracing::info!(claim = %event.key, "volume data removed"),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(claim = %event.key, error = %e, "removing the volume failed"),
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Keeps the DNS server's records in line with Services and their EndpointSlices.
async fn feed_dns(store: Store, dns: Arc<DnsServer>, zone: String, mut shutdown: watch::Receiver<bool>) {
    let mut changes = store.watch();
    let mut last = None;
    loop {
        let records = dns_records(&store, &zone);
        if last.as_ref() != Some(&records) {
            dns.update(records.clone());
            last = Some(records);
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            r = changes.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) { return; }
                // Let a burst of changes settle.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while changes.try_recv().is_ok() {}
            }
        }
    }
}

/// Every record the Services in the store imply.
pub fn dns_records(store: &Store, zone: &str) -> Records {
    let mut records = Records::new();
    let slices: Vec<EndpointSlice> = store
        .list(Kind::EndpointSlice, None)
        .iter()
        .filter_map(|o| serde_json::from_value((**o).clone()).ok())
        .collect();
    for object in store.list(Kind::Service, None) {
        let Ok(svc) = serde_json::from_value::<Service>((*object).clone()) else { continue };
        let r = stead_controller::dns::service_records(&svc, &slices, zone);
        for (name, ip) in r.a {
            records.add_a(&name, ip);
        }
        for srv in r.srv {
            records.add_srv(&srv.name, srv.port, &srv.target, srv.priority, srv.weight);
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: Value, status: Value) -> Value {
        json!({"spec": {"containers": [container]}, "status": {"phase": "Running", "containerStatuses": [status]}})
    }

    #[test]
    fn the_state_directory_is_made_private_or_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let fresh = base.path().join("a/b/state");
        private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700, "an existing 0755 directory is tightened");
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
    }

    #[test]
    fn an_unready_pod_names_the_probe_that_blocks_it() {
        let running = json!({"name": "app", "ready": false, "started": true, "state": {"running": {}}});
        let exec =
            json!({"name": "app", "readinessProbe": {"exec": {"command": ["test", "-f", "/mnt/ready"]}}});
        assert_eq!(
            pod_problem(&pod(exec, running.clone())).as_deref(),
            Some("container app: running, readiness probe exec [test -f /mnt/ready] is failing")
        );
        let http = json!({"name": "app",
            "startupProbe": {"httpGet": {"port": 8080, "path": "/started", "scheme": "HTTPS"}},
            "readinessProbe": {"tcpSocket": {"port": "db"}}});
        let unstarted = json!({"name": "app", "ready": false, "started": false, "state": {"running": {}}});
        assert_eq!(
            pod_problem(&pod(http.clone(), unstarted)).as_deref(),
            Some(
                "container app: running, startup probe http-get https://:8080/started has not succeeded yet"
            )
        );
        assert_eq!(
            pod_problem(&pod(http, running.clone())).as_deref(),
            Some("container app: running, readiness probe tcp-socket :db is failing")
        );
        assert_eq!(
            pod_problem(&pod(json!({"name": "app"}), running)).as_deref(),
            Some("container app: running, not ready")
        );
        let grpc = json!({"grpc": {"port": 9000, "service": "health"}});
        assert_eq!(probe_handler(&grpc), "grpc <9000> <health>");
    }
}
