//! The pod sandbox: planned as data, performed through [`Syscall`] and [`Netlink`].
//!
//! Per pod, under `<state>/pods/<uid>/`:
//! - `ns/net`, `ns/uts`, `ns/ipc`: the pod's network, UTS and IPC namespaces, pinned by bind mounts (no
//!   `/run/netns`); image containers join all three (Kubernetes shares IPC per pod);
//! - a veth pair: the host end `sv<8 hex>` enslaved to the bridge (`stead0`), the peer created directly
//!   inside the pod netns as `eth0` (the probe measured moving a link at ~33 ms; creating it in place
//!   avoids that), with the pod IP, `lo` up and a default route via the bridge address;
//! - the UTS hostname = the pod's hostname (see [`crate::pod_files`]);
//! - `etc/hosts`, `etc/resolv.conf`, `etc/hostname`, bind-mounted into every container;
//! - volumes, see [`crate::volumes`]; memory-backed ones get a tmpfs.
//!
//! [`teardown`] undoes exactly what [`setup`] did, in reverse, and is idempotent; a failed setup tears
//! down what it had done. Claim directories (`<state>/volumes/...`) are never touched.
//!
//! Namespace syscalls run on a short-lived dedicated thread, so the caller's thread keeps its own
//! namespaces.

use crate::env::{EnvContext, Environment, ObjectLookup};
use crate::expand::expand;
use crate::netlink::{Netlink, NetlinkError, NetnsRef};
use crate::pod_files::{DnsSettings, PodFilesError, PodHostname};
use crate::syscall::{Namespace, Syscall, SyscallError};
use crate::volumes::{PlannedVolume, VolumeError, is_safe_relative};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The pod's interface name inside its netns.
pub const POD_IFACE: &str = "eth0";

/// Node-wide sandbox settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    pub state_dir: PathBuf,
    /// The bridge, `stead0` by default.
    pub bridge: String,
    /// The bridge address with the pod CIDR's prefix, e.g. `10.244.0.1/16`.
    pub gateway: Ipv4Net,
    pub dns: DnsSettings,
}

/// Sandbox failures, naming the pod and the step.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    PodFiles(#[from] PodFilesError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("pod {pod:?}: hostNetwork pods are not supported by the local runtime")]
    HostNetwork { pod: String },
    #[error("pod {pod:?}: pod IP {ip} is not inside the pod CIDR {cidr}")]
    IpOutsideCidr { pod: String, ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("pod {pod:?}: {step}: {source}")]
    Syscall { pod: String, step: &'static str, source: SyscallError },
    #[error("pod {pod:?}: {step}: {source}")]
    Netlink { pod: String, step: &'static str, source: NetlinkError },
    #[error("pod {pod:?}: {path}: {source}")]
    Io { pod: String, path: PathBuf, source: std::io::Error },
    #[error("pod {pod:?}: container {container:?}: volumeMount {mount_path:?}: {problem}")]
    Mount { pod: String, container: String, mount_path: String, problem: String },
    #[error("bridge {bridge:?}: {step}: {source}")]
    Bridge { bridge: String, step: &'static str, source: NetlinkError },
    #[error("pod {pod:?}: {step}: the namespace thread panicked")]
    Thread { pod: String, step: &'static str },
}

/// Everything the sandbox of one pod consists of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxPlan {
    /// `namespace/name`, for messages.
    pub pod: String,
    pub pod_dir: PathBuf,
    pub netns_path: PathBuf,
    pub uts_path: PathBuf,
    pub ipc_path: PathBuf,
    pub bridge: String,
    pub host_veth: String,
    /// Pod IP with the CIDR prefix.
    pub pod_ip: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub hostname: PodHostname,
    /// `(path, content)` of the pod's `/etc` files, under `pod_dir/etc`.
    pub files: Vec<(PathBuf, String)>,
    pub volumes: Vec<PlannedVolume>,
}

impl SandboxPlan {
    /// The pod's netns.
    pub fn netns(&self) -> NetnsRef {
        NetnsRef::Path(self.netns_path.clone())
    }

    /// Host path of one of the pod's `/etc` files (`hosts`, `resolv.conf`, `hostname`).
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.pod_dir.join("etc").join(name)
    }
}

/// FNV-1a, for short stable interface names.
fn fnv1a(data: &str) -> u32 {
    data.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The host-side veth name of a pod: `sv` + 8 hex digits (10 characters; the kernel allows 15).
pub fn host_veth_name(pod: &Pod) -> String {
    let key = pod.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        )
    });
    format!("sv{:08x}", fnv1a(&key))
}

/// Plans the sandbox of `pod` with IP `pod_ip` (pure).
pub fn plan(cfg: &SandboxConfig, pod: &Pod, pod_ip: Ipv4Addr) -> Result<SandboxPlan, SandboxError> {
    let pod_ref = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    );
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return Err(SandboxError::HostNetwork { pod: pod_ref });
    }
    let cidr = cfg.gateway.trunc();
    if !cidr.contains(&pod_ip)
        || pod_ip == cfg.gateway.addr()
        || pod_ip == cidr.network()
        || pod_ip == cidr.broadcast()
    {
        return Err(SandboxError::IpOutsideCidr { pod: pod_ref, ip: pod_ip, cidr });
    }
    let hostname = crate::pod_files::pod_hostname(pod, &cfg.dns.cluster_domain)?;
    let pod_dir = crate::volumes::pod_dir(&cfg.state_dir, pod);
    let etc = pod_dir.join("etc");
    let files = vec![
        (etc.join("hosts"), crate::pod_files::hosts_file(pod, &hostname, &[IpAddr::V4(pod_ip)])),
        (etc.join("resolv.conf"), crate::pod_files::resolv_conf(pod, &cfg.dns)?),
        (etc.join("hostname"), crate::pod_files::hostname_file(&hostname)),
    ];
    let volumes = crate::volumes::plan_volumes(&cfg.state_dir, pod)?;
    Ok(SandboxPlan {
        pod: pod_ref,
        netns_path: pod_dir.join("ns").join("net"),
        uts_path: pod_dir.join("ns").join("uts"),
        ipc_path: pod_dir.join("ns").join("ipc"),
        pod_dir,
        bridge: cfg.bridge.clone(),
        host_veth: host_veth_name(pod),
        pod_ip: Ipv4Net::new(pod_ip, cfg.gateway.prefix_len()).unwrap_or(cfg.gateway),
        gateway: cfg.gateway.addr(),
        hostname,
        files,
        volumes,
    })
}

/// Creates the bridge if it is missing, gives it the gateway address and sets it up.
pub async fn ensure_bridge<N: Netlink>(nl: &N, cfg: &SandboxConfig) -> Result<(), SandboxError> {
    let nlerr = |step| move |source| SandboxError::Bridge { bridge: cfg.bridge.clone(), step, source };
    if !nl.link_exists(&NetnsRef::Host, &cfg.bridge).await.map_err(nlerr("look up bridge"))? {
        nl.create_bridge(&cfg.bridge).await.map_err(nlerr("create bridge"))?;
        nl.add_address(&NetnsRef::Host, &cfg.bridge, IpNet::V4(cfg.gateway))
            .await
            .map_err(nlerr("address bridge"))?;
    }
    nl.set_up(&NetnsRef::Host, &cfg.bridge).await.map_err(nlerr("set bridge up"))
}

/// Runs `f` on a fresh thread (namespace changes stay on that thread).
fn on_thread<T: Send>(
    pod: &str,
    step: &'static str,
    f: impl FnOnce() -> Result<T, SyscallError> + Send,
) -> Result<T, SandboxError> {
    match std::thread::scope(|s| s.spawn(f).join()) {
        Ok(r) => r.map_err(|source| SandboxError::Syscall { pod: pod.to_owned(), step, source }),
        Err(_) => Err(SandboxError::Thread { pod: pod.to_owned(), step }),
    }
}

/// Performs `plan`. On failure, tears down what was done and returns the first error.
pub async fn setup<S: Syscall, N: Netlink>(
    sys: &S,
    nl: &N,
    plan: &SandboxPlan,
    pod: &Pod,
    lookup: &(dyn ObjectLookup + Sync),
    ctx: &EnvContext,
) -> Result<(), SandboxError> {
    match setup_inner(sys, nl, plan, pod, lookup, ctx).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = teardown(sys, nl, plan).await;
            Err(e)
        }
    }
}

async fn setup_inner<S: Syscall, N: Netlink>(
    sys: &S,
    nl: &N,
    plan: &SandboxPlan,
    pod: &Pod,
    lookup: &(dyn ObjectLookup + Sync),
    ctx: &EnvContext,
) -> Result<(), SandboxError> {
    let p = plan.pod.as_str();
    let io = |path: &Path| {
        let (pod, path) = (p.to_owned(), path.to_owned());
        move |source| SandboxError::Io { pod, path, source }
    };
    for (path, content) in &plan.files {
        crate::fsutil::replace_file(path, content.as_bytes(), 0o644).map_err(io(path))?;
    }
    for pin in [&plan.netns_path, &plan.uts_path, &plan.ipc_path] {
        if let Some(dir) = pin.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(pin)
            .map(drop)
            .map_err(io(pin))?;
    }
    on_thread(p, "create network namespace", || {
        sys.unshare(&[Namespace::Net])?;
        sys.bind_mount(&Namespace::Net.thread_self_path(), &plan.netns_path, false)
    })?;
    on_thread(p, "create uts namespace", || {
        sys.unshare(&[Namespace::Uts])?;
        sys.sethostname(&plan.hostname.hostname)?;
        sys.bind_mount(&Namespace::Uts.thread_self_path(), &plan.uts_path, false)
    })?;
    on_thread(p, "create ipc namespace", || {
        sys.unshare(&[Namespace::Ipc])?;
        sys.bind_mount(&Namespace::Ipc.thread_self_path(), &plan.ipc_path, false)
    })?;

    let nlerr = |step| move |source| SandboxError::Netlink { pod: p.to_owned(), step, source };
    let ns = plan.netns();
    nl.create_veth(&plan.host_veth, POD_IFACE, Some(&plan.netns_path)).await.map_err(nlerr("create veth"))?;
    nl.set_master(&plan.host_veth, &plan.bridge).await.map_err(nlerr("attach veth to bridge"))?;
    nl.set_up(&NetnsRef::Host, &plan.host_veth).await.map_err(nlerr("set host veth up"))?;
    nl.set_up(&ns, "lo").await.map_err(nlerr("set lo up"))?;
    nl.add_address(&ns, POD_IFACE, IpNet::V4(plan.pod_ip)).await.map_err(nlerr("assign pod ip"))?;
    nl.set_up(&ns, POD_IFACE).await.map_err(nlerr("set eth0 up"))?;
    nl.add_default_route(&ns, IpAddr::V4(plan.gateway)).await.map_err(nlerr("add default route"))?;

    for v in &plan.volumes {
        if let Some(tmpfs) = v.tmpfs {
            std::fs::create_dir_all(&v.path).map_err(io(&v.path))?;
            sys.mount_tmpfs(&v.path, tmpfs).map_err(|source| SandboxError::Syscall {
                pod: p.to_owned(),
                step: "mount volume tmpfs",
                source,
            })?;
        }
    }
    crate::volumes::populate(pod, &plan.volumes, lookup, ctx)?;
    Ok(())
}

fn not_mounted(e: &SyscallError) -> bool {
    matches!(e.errno, nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT)
}

/// Undoes [`setup`]: veth, tmpfs volumes, namespace pins, then the pod directory. Idempotent; runs
/// every step and returns the first error. Claim directories are never removed.
pub async fn teardown<S: Syscall, N: Netlink>(
    sys: &S,
    nl: &N,
    plan: &SandboxPlan,
) -> Result<(), SandboxError> {
    let p = plan.pod.as_str();
    let mut errors: Vec<SandboxError> = vec![];
    // Deleting the host end removes the peer; netns deletion alone is asynchronous.
    if let Err(source) = nl.delete_link(&NetnsRef::Host, &plan.host_veth).await {
        errors.push(SandboxError::Netlink { pod: p.to_owned(), step: "delete veth", source });
    }
    let mut umount = |path: &Path, step: &'static str| match sys.umount(path, true) {
        Err(e) if !not_mounted(&e) => {
            errors.push(SandboxError::Syscall { pod: p.to_owned(), step, source: e })
        }
        _ => {}
    };
    for v in plan.volumes.iter().rev().filter(|v| v.tmpfs.is_some()) {
        umount(&v.path, "unmount volume tmpfs");
    }
    umount(&plan.ipc_path, "unpin ipc namespace");
    umount(&plan.uts_path, "unpin uts namespace");
    umount(&plan.netns_path, "unpin network namespace");
    // Only remove the directory once nothing is mounted below it.
    if errors.is_empty() {
        match std::fs::remove_dir_all(&plan.pod_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                errors.push(SandboxError::Io { pod: p.to_owned(), path: plan.pod_dir.clone(), source: e });
            }
            _ => {}
        }
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One bind mount into a container's private mount namespace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountSpec {
    pub source: PathBuf,
    pub target: PathBuf,
    pub readonly: bool,
}

/// The mounts of `container`: the pod's `/etc` files (unless the container mounts something there
/// itself) and every volumeMount (with `subPath`/`subPathExpr`), parents before children.
pub fn container_mounts(
    plan: &SandboxPlan,
    container: &Container,
    env: &Environment,
) -> Result<Vec<MountSpec>, SandboxError> {
    let fail = |mount_path: &str, problem: String| SandboxError::Mount {
        pod: plan.pod.clone(),
        container: container.name.clone(),
        mount_path: mount_path.to_owned(),
        problem,
    };
    let mut out = vec![];
    for m in container.volume_mounts.iter().flatten() {
        if !m.mount_path.starts_with('/') {
            return Err(fail(&m.mount_path, "mountPath must be absolute".into()));
        }
        let v =
            plan.volumes.iter().find(|v| v.name == m.name).ok_or_else(|| {
                fail(&m.mount_path, format!("volume {:?} is not defined in the pod", m.name))
            })?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, |k| env.get(k))),
            _ => None,
        };
        let source = match sub {
            Some(s) if !is_safe_relative(&s) => {
                return Err(fail(
                    &m.mount_path,
                    format!("subPath {s:?} must be a relative path without '..'"),
                ));
            }
            Some(s) => v.path.join(s),
            None => v.path.clone(),
        };
        out.push(MountSpec {
            source,
            target: PathBuf::from(&m.mount_path),
            readonly: m.read_only == Some(true) || v.force_readonly,
        });
    }
    let etc: Vec<MountSpec> = ["hosts", "resolv.conf", "hostname"]
        .into_iter()
        .map(|name| MountSpec {
            source: plan.etc_file(name),
            target: Path::new("/etc").join(name),
            readonly: false,
        })
        .filter(|e| !out.iter().any(|m| m.target == e.target))
        .collect();
    let mut all: Vec<MountSpec> = etc.into_iter().chain(out).collect();
    // Stable: the /etc files first, then volumeMounts in declaration order, parents before children.
    all.sort_by_key(|m| m.target.components().count());
    Ok(all)
}

/// Enters the pod sandbox from a container's process before exec: the pod's netns and UTS namespace,
/// a private mount namespace, then the bind mounts.
pub fn enter_sandbox<S: Syscall>(
    sys: &S,
    plan: &SandboxPlan,
    mounts: &[MountSpec],
) -> Result<(), SyscallError> {
    enter(sys, Some(&plan.netns_path), Some(&plan.uts_path), mounts)
}

/// [`enter_sandbox`] with optional namespaces; without mounts no mount namespace is made.
pub fn enter<S: Syscall>(
    sys: &S,
    netns: Option<&Path>,
    uts: Option<&Path>,
    mounts: &[MountSpec],
) -> Result<(), SyscallError> {
    if let Some(n) = netns {
        sys.setns(n, Namespace::Net)?;
    }
    if let Some(u) = uts {
        sys.setns(u, Namespace::Uts)?;
    }
    if !mounts.is_empty() {
        sys.unshare(&[Namespace::Mount])?;
        // Private first, so no bind mount can propagate back to the host.
        sys.make_rprivate(Path::new("/"))?;
        for m in mounts {
            sys.bind_mount(&m.source, &m.target, m.readonly)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
