//! Image containers: each container of a pod in its own root file system from its image, run by
//! an OCI runtime (`runc`) from a generated bundle whose namespaces join the pod sandbox's, as
//! containerd and CRI-O do.
//!
//! What the kubelet calls, per container instance:
//! 1. [`OciRuntime::find`] once at start, then [`OciRuntime::remove_leftovers`] (containers and
//!    root file systems a previous daemon left).
//! 2. [`create`] with a [`CreateRequest`] (the pod, the container, the pulled image's config and
//!    layers, the resolved env, the sandbox plan, [`crate::sandbox::container_mounts`], the
//!    cgroups path from [`cgroups_path`] and the memory limit): gives the container's volumes to
//!    the pod's `fsGroup`, mounts the root file system, resolves the process (user names against
//!    the image's `/etc/passwd`), writes `config.json`. [`OciError::reason`] gives the Waiting
//!    reason of its errors.
//! 3. [`OciContainer::spawn`]: `runc run` in the foreground as a [`ContainerProcess`], its output in
//!    the container's log; `wait`/`exited`/`signal`/`stop` work as for a host process, signals going
//!    to the container's init (SIGKILL kills its whole PID namespace). The exit code is the
//!    container's, 128 + n for a container killed by signal n (1, runc's own failure, when it is
//!    killed before its program started, or the runtime could not start it; runc's message is then
//!    in the log). Do not `adopt` the runc pid into the container's cgroups: runc puts the
//!    container there itself (same `<hierarchy>/stead/<pod uid>/<container>` directories as
//!    [`crate::cgroups`], so `kill_all` and OOM counting work; `--keep` keeps them until removal).
//! 4. [`OciContainer::exec_command`] for exec probes, hooks and `kubectl exec` (no terminal;
//!    stdin is closed unless the caller sets it).
//! 5. [`OciContainer::remove`] after the process has exited: `runc delete --force`, unmount and
//!    remove the bundle (before the sandbox's teardown removes the pod directory); once the pod's
//!    containers are all removed, [`remove_pod_cgroups`] (the pod's directories runc left in the
//!    hierarchies [`crate::cgroups`] does not manage).
//!
//! Code map: [`spec`] (pure: process resolution, `config.json`, capabilities), [`seccomp`] (the
//! `RuntimeDefault` profile), [`fs_group`] (volumes group-owned by `fsGroup`), [`user`]
//! (`/etc/passwd` and `/etc/group`, read inside the root), [`rootfs`] (bundle layout, overlay
//! mount), [`runtime`] (the runc driver); here [`create`], [`OciContainer`], [`host_capabilities`],
//! [`host_devices`], [`remove_pod_cgroups`].
//!
//! Invariants:
//! - Mount points for volumes and the pod's `/etc` files are created by the runtime inside the
//!   container's root (in the instance's overlay upper layer), never on the host; image layers are
//!   only ever lower layers, never written.
//! - Every file of an instance is under its bundle directory `<pod dir>/containers/<name>-<n>/`,
//!   removed with the instance; runc's state is under `<state>/runc`.
//! - Nothing read from the image leaves its root: `/etc/passwd` and `/etc/group` are opened with
//!   `RESOLVE_IN_ROOT`.

pub mod fs_group;
pub mod rootfs;
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod user;

pub use runtime::{OciRuntime, RUNTIME_VAR, container_id};
pub use spec::{PodNamespaces, ProcessSpec, SpecInputs, resolve_process, runtime_spec};

use crate::env::Environment;
use crate::logs::LogWriter;
use crate::process::{ContainerProcess, ProcessError};
use crate::sandbox::{MountSpec, SandboxPlan};
use crate::syscall::{Syscall, SyscallError};
use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::path::{Path, PathBuf};

/// Image container failures, naming the pod, container, file or command.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("pod {pod:?}: container {container:?}: {problem}")]
    Invalid { pod: String, container: String, problem: String },
    /// `runAsNonRoot` refused the user (the kubelet's message).
    #[error("{0}")]
    NonRoot(String),
    #[error(
        "the OCI runtime {wanted:?} was not found on PATH {path:?}: install Debian's `runc` package, or set \
         STEAD_OCI_RUNTIME to the runtime's path"
    )]
    RuntimeMissing { wanted: String, path: String },
    #[error("{command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{command}: {status}: {stderr}")]
    Runtime { command: String, status: String, stderr: String },
    #[error("runc {command}: unexpected output: {problem}")]
    Output { command: String, problem: String },
    #[error("{step}: {source}")]
    Syscall { step: &'static str, source: SyscallError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing the runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

impl OciError {
    /// The Waiting reason the kubelet reports for a container that could not be created this way:
    /// `CreateContainerConfigError` when `runAsNonRoot` refused the user (as the kubelet), else
    /// `CreateContainerError` (what the runtime refuses at creation in containerd).
    pub fn reason(&self) -> &'static str {
        match self {
            OciError::NonRoot(_) => "CreateContainerConfigError",
            _ => "CreateContainerError",
        }
    }
}

/// The cgroups path of a container, relative to each hierarchy's root: the directories
/// [`crate::cgroups::Cgroups::create`] makes under `/sys/fs/cgroup`.
pub fn cgroups_path(pod_uid: &str, container: &str) -> String {
    format!("/{}/{pod_uid}/{container}", crate::cgroups::STEAD_DIR)
}

/// Removes a pod's cgroup directories from every hierarchy under `cgroup_root` (normally
/// `/sys/fs/cgroup`): runc makes the container's cgroups in all of them (cpu, cpuset, blkio,
/// devices, ... besides [`crate::cgroups`]' own) and removes only the container's directory on
/// delete, leaving `<hierarchy>/stead/<pod uid>/`. Call once the pod's containers are removed;
/// what is left then is empty. A directory that is gone already is not an error.
pub fn remove_pod_cgroups(cgroup_root: &Path, pod_uid: &str) -> Result<(), OciError> {
    if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
        return Ok(());
    }
    let rmdir = |d: &Path| match std::fs::remove_dir(d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(OciError::Io { path: d.to_owned(), source: e })
        }
        _ => Ok(()),
    };
    let mut first = None;
    for h in std::fs::read_dir(cgroup_root).into_iter().flatten().filter_map(Result::ok) {
        let pod = h.path().join(crate::cgroups::STEAD_DIR).join(pod_uid);
        for c in std::fs::read_dir(&pod).into_iter().flatten().filter_map(Result::ok) {
            if c.file_type().is_ok_and(|t| t.is_dir())
                && let Err(e) = rmdir(&c.path())
            {
                first.get_or_insert(e);
            }
        }
        if pod.exists()
            && let Err(e) = rmdir(&pod)
        {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The host's device nodes directly under `/dev`, for privileged containers.
pub fn host_devices() -> Vec<LinuxDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = vec![];
    for e in std::fs::read_dir("/dev").into_iter().flatten().filter_map(Result::ok) {
        let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
        let typ = match m.file_type() {
            t if t.is_char_device() => LinuxDeviceType::C,
            t if t.is_block_device() => LinuxDeviceType::B,
            _ => continue,
        };
        let rdev = m.rdev();
        let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
        let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
        let mut d = LinuxDevice::default();
        d.set_path(e.path());
        d.set_typ(typ);
        d.set_major(i64::try_from(major).unwrap_or(0));
        d.set_minor(i64::try_from(minor).unwrap_or(0));
        d.set_file_mode(Some(m.mode() & 0o7777));
        d.set_uid(Some(m.uid()));
        d.set_gid(Some(m.gid()));
        out.push(d);
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

/// The capabilities this process may give a container: its bounding set (`CapBnd:` in
/// `/proc/self/status`); every capability if that cannot be read.
pub fn host_capabilities() -> oci_spec::runtime::Capabilities {
    let mask = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    spec::capabilities_from_mask(mask.unwrap_or(u64::MAX))
}

/// What [`create`] needs for one container instance.
#[derive(Clone, Copy, Debug)]
pub struct CreateRequest<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// The pulled image's config (`stead_image::pull::Image::config`).
    pub image: &'a ImageConfiguration,
    /// Its unpacked layers, bottom first (`stead_image::pull::Image::layers`).
    pub layers: &'a [PathBuf],
    /// The container's resolved environment ([`crate::env::resolve_env`]).
    pub env: &'a Environment,
    pub sandbox: &'a SandboxPlan,
    /// [`crate::sandbox::container_mounts`].
    pub mounts: &'a [MountSpec],
    /// [`cgroups_path`], or `None` for none.
    pub cgroups_path: Option<&'a str>,
    pub memory_limit: Option<u64>,
    /// The instance number (the container's restart count), part of the id and bundle path.
    pub instance: u32,
}

/// A created container instance: its bundle is written and its root file system mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciContainer {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: OciRuntime,
    /// What it runs (for status and logs).
    pub process: ProcessSpec,
}

/// Creates the bundle of one container instance (blocking: mounts, reads the image's user
/// database, writes `config.json`). On failure nothing of the instance is left.
pub fn create<S: Syscall>(
    sys: &S,
    runtime: &OciRuntime,
    req: &CreateRequest<'_>,
) -> Result<OciContainer, OciError> {
    let uid = req.pod.metadata.uid.as_deref().unwrap_or_default();
    let name = req.container.name.as_str();
    let id = container_id(uid, name, req.instance);
    // A container of the same id left behind (a crashed daemon) goes first.
    runtime.delete(&id)?;
    apply_fs_group(req)?;
    let bundle = rootfs::bundle_dir(&req.sandbox.pod_dir, name, req.instance);
    let rootfs = rootfs::mount_rootfs(sys, &bundle, req.layers)?;
    let written = (|| -> Result<ProcessSpec, OciError> {
        let users = user::UserDb::read(&rootfs)
            .map_err(|source| OciError::Io { path: rootfs.join("etc"), source })?;
        let process = resolve_process(
            req.pod,
            req.container,
            req.image,
            req.env,
            &users,
            &req.sandbox.hostname.hostname,
        )?;
        let privileged = req.container.security_context.as_ref().and_then(|s| s.privileged) == Some(true);
        let devices = if privileged { host_devices() } else { vec![] };
        let spec = runtime_spec(&SpecInputs {
            pod: req.pod,
            container: req.container,
            process: &process,
            namespaces: &PodNamespaces::of(req.sandbox),
            rootfs: &rootfs,
            mounts: req.mounts,
            cgroups_path: req.cgroups_path,
            memory_limit: req.memory_limit,
            host_devices: &devices,
            host_capabilities: &host_capabilities(),
        })?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| OciError::Io {
            path: bundle.join("config.json"),
            source: std::io::Error::other(e),
        })?;
        crate::fsutil::replace_file(&bundle.join("config.json"), &json, 0o600)
            .map_err(|source| OciError::Io { path: bundle.join("config.json"), source })?;
        Ok(process)
    })();
    match written {
        Ok(process) => Ok(OciContainer { id, bundle, runtime: runtime.clone(), process }),
        Err(e) => {
            let _ = rootfs::remove_bundle(sys, &bundle);
            Err(e)
        }
    }
}

/// Applies the pod's `fsGroup` to the volumes the container mounts.
fn apply_fs_group(req: &CreateRequest<'_>) -> Result<(), OciError> {
    let sec = req.pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let Some(gid) = sec.and_then(|s| s.fs_group) else { return Ok(()) };
    let gid = u32::try_from(gid).map_err(|_| OciError::Invalid {
        pod: format!(
            "{}/{}",
            req.pod.metadata.namespace.as_deref().unwrap_or("default"),
            req.pod.metadata.name.as_deref().unwrap_or("")
        ),
        container: req.container.name.clone(),
        problem: format!("securityContext.fsGroup {gid} is not a valid id"),
    })?;
    let on_root_mismatch = sec.and_then(|s| s.fs_group_change_policy.as_deref()) == Some("OnRootMismatch");
    for m in req.container.volume_mounts.iter().flatten() {
        if let Some(v) = req.sandbox.volumes.iter().find(|v| v.name == m.name) {
            fs_group::apply(v, gid, on_root_mismatch)?;
        }
    }
    Ok(())
}

impl OciContainer {
    /// Starts the container (`runc run`, foreground), logging its output to `log`. Needs a tokio
    /// runtime.
    pub fn spawn(&self, log: LogWriter) -> Result<ContainerProcess, ProcessError> {
        let cmd = self.runtime.run_command(&self.id, &self.bundle);
        crate::process::spawn_oci(&self.id, cmd, log, self.runtime.clone(), self.id.clone())
    }

    /// A command running `argv` inside the running container (stdin closed; stdout and stderr
    /// are the caller's to set). Its exit status is the command's.
    pub fn exec_command(&self, argv: &[String]) -> tokio::process::Command {
        tokio::process::Command::from(self.runtime.exec_command(&self.id, argv))
    }

    /// Deletes the container (killing what is left of it) and removes its bundle. Idempotent;
    /// blocking.
    pub fn remove<S: Syscall>(&self, sys: &S) -> Result<(), OciError> {
        self.runtime.delete(&self.id)?;
        rootfs::remove_bundle(sys, &self.bundle)
    }

    /// The bundle's root file system.
    pub fn rootfs(&self) -> PathBuf {
        rootfs::rootfs_dir(&self.bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{RecordingSyscall, SysCall};
    use nix::sys::signal::Signal;

    #[test]
    fn reasons_follow_the_kubelet() {
        assert_eq!(OciError::NonRoot("x".into()).reason(), "CreateContainerConfigError");
        let invalid =
            OciError::Invalid { pod: "p".into(), container: "c".into(), problem: "no command".into() };
        assert_eq!(invalid.reason(), "CreateContainerError");
    }

    #[test]
    fn pod_cgroups_are_removed_from_every_hierarchy() {
        let dir = tempfile::tempdir().expect("tempdir");
        for h in ["cpu", "blkio", "memory"] {
            std::fs::create_dir_all(dir.path().join(h).join("stead/u1/app")).expect("mkdir");
        }
        std::fs::create_dir_all(dir.path().join("cpu/stead/u2/app")).expect("mkdir");
        remove_pod_cgroups(dir.path(), "u1").expect("remove");
        for h in ["cpu", "blkio", "memory"] {
            assert!(!dir.path().join(h).join("stead/u1").exists(), "{h}");
        }
        assert!(dir.path().join("cpu/stead/u2/app").exists(), "other pods stay");
        remove_pod_cgroups(dir.path(), "u1").expect("idempotent");
        remove_pod_cgroups(dir.path(), "").expect("nothing");
        assert!(dir.path().join("cpu/stead").exists());
    }

    #[test]
    fn signals_go_to_the_init_and_a_kill_without_one_ends_runc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = rt.enter();
        let runtime = OciRuntime::new("/nonexistent/runc".into(), dir.path().join("runc"));
        // `sleep` stands in for `runc run` of a container whose init is not (or no longer) there.
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        let log =
            LogWriter::open(&dir.path().join("log"), 0, crate::logs::LogConfig::default()).expect("log");
        let mut proc = crate::process::spawn_oci("app", cmd, log, runtime, "u-app-0".into()).expect("spawn");
        let sys = RecordingSyscall::default();
        proc.signal(&sys, Signal::SIGTERM).expect("term");
        assert_eq!(sys.calls(), [], "nothing to forward a SIGTERM to");
        proc.signal(&sys, Signal::SIGKILL).expect("kill");
        assert_eq!(sys.calls(), [SysCall::Killpg(proc.pid(), Signal::SIGKILL)]);
        let exit =
            rt.block_on(proc.stop(&crate::syscall::LinuxSyscall, std::time::Duration::from_millis(50)));
        assert_eq!(exit.expect("stopped"), crate::status::Exit::Signal(9));
    }
}
