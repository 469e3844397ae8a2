//! The pod loop: [`Kubelet`], the handle the local engine drives. A pod spec in, a running pod out,
//! with status updates and logs coming back.
//!
//! - [`Kubelet::start`] checks the machine (root, namespaces), brings the bridge up through netlink,
//!   loads the IPAM from the state directory and cleans up after a previous run that did not stop
//!   its pods (their cgroups are killed, mounts and veths removed; no pod survives a restart of the
//!   runtime, and their addresses are released).
//! - [`Kubelet::sync_pod`] validates the pod synchronously (so a bad probe, volume or restart
//!   policy is an error for the caller) and starts one worker task per pod ([`worker`]): sandbox,
//!   init containers in order, app containers, probes, restarts with the kubelet's backoff, status.
//!   A container that cannot be created (no `command`, a missing ConfigMap or Secret key) keeps the
//!   pod Pending, Waiting with the kubelet's reason (`CreateContainerError`,
//!   `CreateContainerConfigError`) and message, a `Failed` event per attempt, retried 10 s
//!   doubling to 5 min, or every 10 s while its configuration is missing
//!   ([`crate::backoff::CreateBackoff`]).
//! - Each container instance has a task of its own ([`container`]) that owns the process, and stops
//!   it: preStop hook, SIGTERM to its process group, the grace period, SIGKILL, and finally a kill of
//!   everything left in its cgroups, so no process of the pod outlives it.
//! - A container of an image runtime ([`crate::runtime_class`]) first has its image made present
//!   by `imagePullPolicy` ([`crate::images`]) on a task of its own ([`pull`]): `ErrImagePull`,
//!   then `ImagePullBackOff` (10 s doubling to 5 min), `ErrImageNeverPull`, with the kubelet's
//!   events; the pod stays Pending.
//! - [`Kubelet::kill_pod`] returns once every process is gone and the sandbox is removed; the last
//!   status and the logs stay readable until the same name is synced with a new uid.
//!
//! The machine is reached only through [`Host`]: `Arc<dyn Syscall>`, `Arc<dyn Netlink>` and the
//! cgroup root (youki's seam). Trait objects rather than type parameters: the kubelet's types
//! (handle, worker, container and probe tasks) stay plain, and a dynamic call per syscall costs
//! nothing beside the syscall. [`Kubelet::start`] uses the real ones ([`Host::linux`]); tests pass
//! the recording fakes and a temporary cgroup root to [`Kubelet::start_on`] and run without root.
//! Processes are still real: the container init is whatever program the config names.
//!
//! Architecture invariant: the worker owns all of a pod's mutable state; other tasks talk to it only
//! through its event channel, and the handle reads only the snapshot in [`PodShared`].

mod container;
mod pull;
mod worker;

use crate::cgroups::Cgroups;
use crate::env::ObjectLookup;
use crate::images::{ImageProgress, ImageService, RegistryEnv};
use crate::init::InitSpec;
use crate::ipam::{Ipam, IpamError};
use crate::netlink::{Netlink, NetlinkError, NetnsRef, RtNetlink};
use crate::pod_files::DnsSettings;
use crate::preflight::PreflightError;
use crate::process::{InitProgram, ProcessError};
use crate::runtime_class::ContainerRuntime;
use crate::sandbox::{SandboxConfig, SandboxError};
use crate::syscall::{LinuxSyscall, Syscall};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Node settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletConfig {
    /// stead's state directory; `pods/`, `volumes/` and `logs/` live under it.
    pub state_dir: PathBuf,
    /// The `spec.nodeName` the engine sets; used for `fieldRef: spec.nodeName` when a pod has none.
    pub node_name: String,
    /// E.g. `10.244.0.0/16`; the bridge takes the first host address.
    pub pod_cidr: Ipv4Net,
    /// `stead0`.
    pub bridge: String,
    /// `cluster.local`.
    pub cluster_domain: String,
    /// The nameserver in pods' `resolv.conf`; `None` = the bridge address.
    pub dns_server: Option<Ipv4Addr>,
    /// The program that acts as the container init ...
    pub init_program: PathBuf,
    /// ... and its leading arguments (`--spec <json>` follows).
    pub init_args: Vec<String>,
    /// How containers of a pod without `runtimeClassName` run ([`crate::runtime_class`]).
    pub default_runtime: ContainerRuntime,
    /// Where registry settings come from at each pull ([`crate::images`]); images are stored
    /// under `<state_dir>/images`.
    pub registry_env: RegistryEnv,
}

/// What the kubelet acts on: its syscalls, netlink and the cgroup hierarchies' root.
#[derive(Clone)]
pub struct Host {
    pub sys: Arc<dyn Syscall>,
    pub nl: Arc<dyn Netlink>,
    /// Normally `/sys/fs/cgroup`; see [`Cgroups::detect`].
    pub cgroup_root: PathBuf,
}

impl Host {
    /// The real machine: [`LinuxSyscall`], [`RtNetlink`] and `/sys/fs/cgroup`. Needs a tokio runtime.
    pub fn linux() -> Result<Host, NetlinkError> {
        Ok(Host {
            sys: Arc::new(LinuxSyscall),
            nl: Arc::new(RtNetlink::new()?),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        })
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("cgroup_root", &self.cgroup_root).finish_non_exhaustive()
    }
}

/// Something that happened to one container, for the pod's Events (what the kubelet records with
/// its event recorder): `Unhealthy` for each failed probe run, `Killing` for a restart a probe
/// asked for, `FailedPostStartHook`. Status changes are not repeated here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub container: String,
    /// `Warning` (true) or `Normal`.
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// A status change of one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodStatusUpdate {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
}

/// Kubelet failures, naming the pod, container or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("the pod runtime must be started from within a tokio runtime")]
    NoRuntime,
    #[error("container init program {0} does not exist")]
    NoInitProgram(PathBuf),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("pod {pod:?}: {problem}")]
    InvalidPod { pod: String, problem: String },
    #[error(
        "pod {pod:?}: uid {new_uid:?} cannot start while the pod with uid {running_uid:?} still runs: kill it first"
    )]
    NameInUse { pod: String, running_uid: String, new_uid: String },
    #[error("pod {pod:?} is not known to the runtime")]
    NoPod { pod: String },
    #[error("pod {pod:?}: container {container:?} is not running")]
    NotRunning { pod: String, container: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// What the handle can read about a pod without asking its worker.
#[derive(Debug, Default)]
pub(crate) struct PodShared {
    pub status: Option<PodStatus>,
    /// `<logs>/<namespace>_<pod>_<uid>`.
    pub log_dir: PathBuf,
    /// Per container: the instance number (= its restartCount) of the latest start.
    pub instances: HashMap<String, u32>,
    /// Per running container: how to run a command inside it, for `exec`.
    pub exec: HashMap<String, ExecTarget>,
}

/// How a command runs inside a running container: through the container init with the
/// container's spec (a host process), or `runc exec` (an image container).
#[derive(Clone, Debug)]
pub(crate) enum ExecTarget {
    Host(InitSpec),
    Oci(crate::oci::OciContainer),
}

impl ExecTarget {
    /// `argv` inside the container, in a process group of its own, stdin closed.
    pub fn command(
        &self,
        init: &InitProgram,
        container: &str,
        argv: &[String],
    ) -> Result<tokio::process::Command, ProcessError> {
        match self {
            ExecTarget::Host(spec) => {
                init.command(container, &InitSpec { argv: argv.to_vec(), ..spec.clone() })
            }
            ExecTarget::Oci(c) => {
                let mut cmd = c.exec_command(argv);
                cmd.process_group(0);
                Ok(cmd)
            }
        }
    }
}

/// Messages to a pod's worker. `PostStartDone`: the instance's postStart hook succeeded, so it may
/// now be reported Running.
#[derive(Debug)]
pub(crate) enum PodEvent {
    Exited { container: String, instance: u64, exit: crate::status::Exit },
    Probe { container: String, instance: u64, action: crate::probe::ProbeAction },
    PostStartDone { container: String, instance: u64 },
    Pulled { container: String, outcome: pull::PullOutcome },
    Stop { grace: Option<Duration> },
}

struct PodEntry {
    uid: String,
    shared: Arc<Mutex<PodShared>>,
    events: mpsc::UnboundedSender<PodEvent>,
    /// Becomes `true` when the worker has stopped everything and removed the sandbox.
    done: watch::Receiver<bool>,
}

pub(crate) struct Inner {
    pub cfg: KubeletConfig,
    pub rt: tokio::runtime::Handle,
    pub sys: Arc<dyn Syscall>,
    pub nl: Arc<dyn Netlink>,
    pub ipam: Mutex<Ipam>,
    pub sandbox: SandboxConfig,
    pub cgroups: Cgroups,
    /// The cgroup hierarchies' root (runc's pod directories are removed below it).
    pub cgroup_root: PathBuf,
    pub init: InitProgram,
    pub bridge_ip: Ipv4Addr,
    pub tx: broadcast::Sender<PodStatusUpdate>,
    pub container_events: broadcast::Sender<ContainerEvent>,
    pub images: ImageService,
    /// The OCI runtime for image containers, or why there is none (their `CreateContainerError`).
    pub oci: Result<crate::oci::OciRuntime, String>,
    pods: Mutex<HashMap<(String, String), PodEntry>>,
}

/// The pod runtime. Cheap to clone.
#[derive(Clone)]
pub struct Kubelet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet").field("cfg", &self.inner.cfg).finish_non_exhaustive()
    }
}

fn pod_ref(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Kubelet {
    /// Preflight (root, kernel namespaces), the bridge up via netlink, the IPAM loaded from the state
    /// directory, leftovers of a previous run cleaned up. Without root: an error saying what is
    /// missing and how to run (sudo).
    pub async fn start(cfg: KubeletConfig) -> Result<Kubelet, KubeletError> {
        // Refusals (no root, no tokio runtime) come before the netlink socket, as in `start_on`.
        crate::preflight::preflight(&LinuxSyscall)?;
        tokio::runtime::Handle::try_current().map_err(|_| KubeletError::NoRuntime)?;
        Kubelet::start_on(cfg, Host::linux()?).await
    }

    /// [`Kubelet::start`] on `host`: every syscall, netlink call and cgroup of the kubelet goes there.
    pub async fn start_on(cfg: KubeletConfig, host: Host) -> Result<Kubelet, KubeletError> {
        crate::preflight::preflight(&*host.sys)?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| KubeletError::NoRuntime)?;
        if !cfg.init_program.is_file() {
            return Err(KubeletError::NoInitProgram(cfg.init_program.clone()));
        }
        for d in ["pods", "logs", "volumes"] {
            let p = cfg.state_dir.join(d);
            std::fs::create_dir_all(&p).map_err(|source| KubeletError::Io { path: p.clone(), source })?;
        }
        let mut ipam = Ipam::open(&cfg.state_dir, cfg.pod_cidr)?;
        let bridge_ip = ipam.gateway();
        let host_resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let sandbox = SandboxConfig {
            state_dir: cfg.state_dir.clone(),
            bridge: cfg.bridge.clone(),
            gateway: ipam.gateway_net(),
            dns: DnsSettings {
                nameservers: vec![cfg.dns_server.unwrap_or(bridge_ip).into()],
                cluster_domain: cfg.cluster_domain.clone(),
                host_resolv_conf,
            },
        };
        let Host { sys, nl, cgroup_root } = host;
        let cgroups = Cgroups::detect(&cgroup_root);
        let oci = crate::oci::OciRuntime::find(&cfg.state_dir).map_err(|e| e.to_string());
        if let Ok(runtime) = &oci {
            // Image containers of a previous run go before their pods' directories.
            let (runtime, state, sys) = (runtime.clone(), cfg.state_dir.clone(), sys.clone());
            let _ = tokio::task::spawn_blocking(move || runtime.remove_leftovers(&*sys, &state)).await;
        }
        recover(&cfg.state_dir, &sys, &*nl, &cgroups, &mut ipam).await;
        crate::sandbox::ensure_bridge(&*nl, &sandbox).await?;
        let (tx, _) = broadcast::channel(1024);
        let (container_events, _) = broadcast::channel(1024);
        let init = InitProgram { program: cfg.init_program.clone(), args: cfg.init_args.clone() };
        let images = ImageService::new(cfg.state_dir.join("images"), cfg.registry_env.clone());
        Ok(Kubelet {
            inner: Arc::new(Inner {
                cfg,
                rt,
                sys,
                nl,
                ipam: Mutex::new(ipam),
                sandbox,
                cgroups,
                cgroup_root,
                init,
                bridge_ip,
                tx,
                container_events,
                images,
                oci,
                pods: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The bridge's address (the pods' gateway, and their default nameserver).
    pub fn bridge_address(&self) -> Ipv4Addr {
        self.inner.bridge_ip
    }

    /// Starts the pod unless a pod with its uid already runs (then nothing happens). The pod is
    /// validated first: an invalid probe, volume or hostname is an error here; a container that
    /// cannot be created (no `command`) waits and is retried, as the kubelet does. ConfigMaps and
    /// Secrets for env and volumes come from `lookup`.
    ///
    /// A pod with the same name but another uid must have been killed first ([`Kubelet::kill_pod`]);
    /// the old pod's status and logs are then dropped.
    pub fn sync_pod(
        &self,
        pod: Pod,
        lookup: Arc<dyn ObjectLookup + Send + Sync>,
    ) -> Result<(), KubeletError> {
        let mut pod = pod;
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        pod.metadata.namespace = Some(ns.clone());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pref = pod_ref(&ns, &name);
        let invalid = |problem: String| KubeletError::InvalidPod { pod: pref.clone(), problem };
        if name.is_empty() {
            return Err(invalid("metadata.name is empty".into()));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() || uid.contains('/') || uid == "." || uid == ".." {
            return Err(invalid(format!("metadata.uid {uid:?} must be set and be a single path component")));
        }
        if let Some(spec) = pod.spec.as_mut()
            && spec.node_name.as_deref().unwrap_or("").is_empty()
        {
            spec.node_name = Some(self.inner.cfg.node_name.clone());
        }
        let mut pods = lock(&self.inner.pods);
        if let Some(e) = pods.get(&(ns.clone(), name.clone())) {
            let finished = *e.done.borrow();
            if e.uid == uid && !finished {
                return Ok(());
            }
            if !finished {
                return Err(KubeletError::NameInUse { pod: pref, running_uid: e.uid.clone(), new_uid: uid });
            }
            if e.uid != uid {
                let old_logs = lock(&e.shared).log_dir.clone();
                let _ = crate::logs::remove_pod_logs(&old_logs);
            }
        }
        let prepared = worker::prepare(&self.inner, pod, lookup).map_err(invalid)?;
        let shared = prepared.shared.clone();
        let (events, done) = worker::spawn(self.inner.clone(), prepared);
        pods.insert((ns, name), PodEntry { uid, shared, events, done });
        Ok(())
    }

    /// Graceful stop: preStop hooks, SIGTERM to each container's process group, up to `grace`
    /// (`None` = the pod's `terminationGracePeriodSeconds`, default 30 s), then SIGKILL and a kill of
    /// anything left in the containers' cgroups. Returns when every process of the pod is gone and
    /// the sandbox (netns, veth, mounts, pod directory) is removed. Claim directories stay. The last
    /// status stays readable. An unknown pod is not an error.
    pub async fn kill_pod(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<(), KubeletError> {
        let (events, mut done) = {
            let pods = lock(&self.inner.pods);
            match pods.get(&(namespace.to_owned(), name.to_owned())) {
                Some(e) => (e.events.clone(), e.done.clone()),
                None => return Ok(()),
            }
        };
        let _ = events.send(PodEvent::Stop { grace });
        // An error means the worker is gone, which is also done.
        let _ = done.wait_for(|d| *d).await;
        Ok(())
    }

    /// The pod's latest status.
    pub fn pod_status(&self, namespace: &str, name: &str) -> Option<PodStatus> {
        let pods = lock(&self.inner.pods);
        let e = pods.get(&(namespace.to_owned(), name.to_owned()))?;
        lock(&e.shared).status.clone()
    }

    /// Every status change of every pod.
    pub fn subscribe(&self) -> broadcast::Receiver<PodStatusUpdate> {
        self.inner.tx.subscribe()
    }

    /// Every container event of every pod (see [`ContainerEvent`]).
    pub fn subscribe_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.container_events.subscribe()
    }

    /// Every image pull's progress (layers and bytes), for docker-pull-like lines.
    pub fn subscribe_pulls(&self) -> broadcast::Receiver<ImageProgress> {
        self.inner.images.subscribe()
    }

    /// The live log file of a container (`previous`: the instance before the last restart), in the
    /// format of [`crate::logs`]. `None` when the container has not run (or has no previous run).
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<PathBuf> {
        let pods = lock(&self.inner.pods);
        let e = pods.get(&(namespace.to_owned(), pod.to_owned()))?;
        let shared = lock(&e.shared);
        let n = *shared.instances.get(container)?;
        let n = if previous { n.checked_sub(1)? } else { n };
        Some(crate::logs::log_path(&shared.log_dir.join(container), n))
    }

    /// A command that runs `argv` inside a running container: its network and UTS namespaces, its
    /// mounts, environment, working directory and cgroups (so it dies with the pod). The program is
    /// resolved against the container's `PATH`. The command runs in a process group of its own, with
    /// an empty host environment and stdin closed (`Stdio::null`); set stdin/stdout/stderr as needed
    /// before spawning (stdout and stderr are inherited by default).
    pub fn exec_command(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<tokio::process::Command, KubeletError> {
        let pref = pod_ref(namespace, pod);
        let pods = lock(&self.inner.pods);
        let e = pods
            .get(&(namespace.to_owned(), pod.to_owned()))
            .ok_or(KubeletError::NoPod { pod: pref.clone() })?;
        let shared = lock(&e.shared);
        let target = shared
            .exec
            .get(container)
            .ok_or_else(|| KubeletError::NotRunning { pod: pref, container: container.to_owned() })?;
        Ok(target.command(&self.inner.init, container, argv)?)
    }

    /// Stops every pod (in parallel, gracefully), then removes the bridge if no pod is left.
    pub async fn shutdown(&self) {
        let names: Vec<(String, String)> = lock(&self.inner.pods).keys().cloned().collect();
        futures::future::join_all(names.iter().map(|(ns, n)| self.kill_pod(ns, n, None))).await;
        let all_done = lock(&self.inner.pods).values().all(|e| *e.done.borrow());
        if all_done {
            let _ = self.inner.nl.delete_link(&NetnsRef::Host, &self.inner.cfg.bridge).await;
        }
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cleans up pods of a previous run of the runtime in `state_dir`: their processes (through their
/// cgroups), mounts, veths and directories; every address is released. Best effort.
async fn recover(
    state_dir: &Path,
    sys: &Arc<dyn Syscall>,
    nl: &dyn Netlink,
    cgroups: &Cgroups,
    ipam: &mut Ipam,
) {
    let pods_dir = state_dir.join("pods");
    let uids: Vec<String> = std::fs::read_dir(&pods_dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    for uid in uids {
        let (cg, s, u) = (cgroups.clone(), sys.clone(), uid.clone());
        let _ = tokio::task::spawn_blocking(move || cg.kill_pod(&*s, &u)).await;
        let dir = pods_dir.join(&uid);
        for m in mounts_below(&dir) {
            let _ = sys.umount(&m, true);
        }
        let mut pod = Pod::default();
        pod.metadata.uid = Some(uid.clone());
        let _ = nl.delete_link(&NetnsRef::Host, &crate::sandbox::host_veth_name(&pod)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let owners: Vec<String> = ipam.allocations().values().cloned().collect();
    for o in owners {
        let _ = ipam.release(&o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mount("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/odd\\"), "/odd\\");
    }

    #[test]
    fn start_without_root_says_how_to_run() {
        if LinuxSyscall.geteuid() == 0 {
            stead_testkit::not_applicable("runs as root, so the refusal cannot be observed");
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let cfg = KubeletConfig {
            state_dir: "/nonexistent".into(),
            node_name: "n".into(),
            pod_cidr: "10.244.0.0/16".parse().expect("cidr"),
            bridge: "stead0".into(),
            cluster_domain: "cluster.local".into(),
            dns_server: None,
            init_program: "/bin/true".into(),
            init_args: vec![],
            default_runtime: ContainerRuntime::Image,
            registry_env: RegistryEnv::Process,
        };
        let e = rt.block_on(Kubelet::start(cfg)).unwrap_err();
        assert!(e.to_string().contains("sudo stead up"), "{e}");
    }
}
