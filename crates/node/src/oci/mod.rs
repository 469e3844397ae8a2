//! Image containers: each container of a pod in its own root file system from its image, run by
//! an OCI runtime (`runc`) from a generated bundle whose namespaces join the pod sandbox's, as
//! containerd and CRI-O do.
//!
//! What the kubelet calls, per container instance:
//! 1. [`OciRuntime::find`] once at start, then [`OciRuntime::remove_leftovers`] (containers and
//!    root file systems a previous daemon left).
//! 2. [`create`] with a [`CreateRequest`] (the pod, the container, the pulled image's config and
//!    layers, the resolved env, the sandbox plan, [`crate::sandbox::container_mounts`], the
//!    cgroups path from [`cgroups_path`] and the memory limit): mounts the root file system,
//!    resolves the process (user names against the image's `/etc/passwd`), writes `config.json`.
//!    Its errors are the kubelet's `CreateContainerError` ([`OciError::NonRoot`] included:
//!    Kubernetes reports it as `CreateContainerConfigError`).
//! 3. [`OciContainer::spawn`]: `runc run` in the foreground as a [`ContainerProcess`], its output in
//!    the container's log; `wait`/`exited`/`signal`/`stop` work as for a host process, signals going
//!    to the container's init (SIGKILL kills its whole PID namespace). The exit code is the
//!    container's, 128 + n for a container killed by signal n. Do not `adopt` the runc pid into the
//!    container's cgroups: runc puts the container there itself (same `<hierarchy>/stead/<pod
//!    uid>/<container>` directories as [`crate::cgroups`], so `kill_all` and OOM counting work).
//! 4. [`OciContainer::exec_command`] for exec probes, hooks and `kubectl exec`.
//! 5. [`OciContainer::remove`] after the process has exited: `runc delete --force`, unmount and
//!    remove the bundle (before the sandbox's teardown removes the pod directory).
//!
//! Code map: [`spec`] (pure: process resolution, `config.json`, capabilities), [`seccomp`] (the
//! `RuntimeDefault` profile), [`user`] (`/etc/passwd` and `/etc/group`, read inside the root),
//! [`rootfs`] (bundle layout, overlay mount), [`runtime`] (the runc driver).
//!
//! Invariants:
//! - Mount points for volumes and the pod's `/etc` files are created by the runtime inside the
//!   container's root (in the instance's overlay upper layer), never on the host; image layers are
//!   only ever lower layers, never written.
//! - Every file of an instance is under its bundle directory `<pod dir>/containers/<name>-<n>/`,
//!   removed with the instance; runc's state is under `<state>/runc`.
//! - Nothing read from the image leaves its root: `/etc/passwd` and `/etc/group` are opened with
//!   `RESOLVE_IN_ROOT`.

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
use std::path::PathBuf;

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

/// The cgroups path of a container, relative to each hierarchy's root: the directories
/// [`crate::cgroups::Cgroups::create`] makes under `/sys/fs/cgroup`.
pub fn cgroups_path(pod_uid: &str, container: &str) -> String {
    format!("/{}/{pod_uid}/{container}", crate::cgroups::STEAD_DIR)
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
