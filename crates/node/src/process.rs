//! Running one container process: spawn it through the container init, copy its output into its log,
//! wait for it, and stop it gracefully.
//!
//! - The process gets its own process group (`setpgid(0, 0)`), so a stop signals the whole group:
//!   SIGTERM, then SIGKILL after the grace period (`terminationGracePeriodSeconds`). Descendants that
//!   leave the group (`setsid`) escape it: the kubelet kills those through the container's cgroups
//!   ([`crate::cgroups`]).
//! - An image container runs as `runc run` in the foreground ([`spawn_oci`]): its signals go to the
//!   container's init through the runtime's state (SIGKILL to `runc` itself would not be forwarded).
//! - stdout and stderr are piped into a [`LogWriter`] with a timestamp per line.
//! - The exit is reported as [`Exit`]: a code, or the signal that killed it. The kubelet turns a SIGKILL
//!   into `OOMKilled` when the container's memory cgroup counted an OOM kill.

use crate::init::InitSpec;
use crate::logs::{LogWriter, Stream, wall_now};
use crate::status::Exit;
use crate::syscall::{Syscall, SyscallError};
use nix::sys::signal::Signal;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

/// Process failures, naming the container.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("container {container:?}: starting {init}: {source}")]
    Spawn { container: String, init: String, source: std::io::Error },
    #[error("container {container:?}: encoding the init spec: {source}")]
    Spec { container: String, source: serde_json::Error },
    #[error("container {container:?}: waiting for process {pid}: {source}")]
    Wait { container: String, pid: i32, source: std::io::Error },
    #[error("container {container:?}: signalling process group {pid}: {source}")]
    Signal { container: String, pid: i32, source: SyscallError },
    #[error("container {container:?}: the process has no pid (already reaped)")]
    NoPid { container: String },
}

/// Where a container's signals go.
#[derive(Clone, Debug)]
enum SignalTarget {
    /// The process group of the spawned process.
    ProcessGroup,
    /// The init of an OCI container (the spawned process is `runc run`).
    OciInit { runtime: crate::oci::OciRuntime, id: String },
}

/// A running container process.
#[derive(Debug)]
pub struct ContainerProcess {
    container: String,
    target: SignalTarget,
    child: tokio::process::Child,
    pid: i32,
    copiers: Vec<JoinHandle<()>>,
    log: Arc<Mutex<LogWriter>>,
}

/// The program that acts as the container init, with its leading arguments (e.g. the `stead` binary
/// and `["container-init"]`); `--spec <json>` is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitProgram {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
}

impl InitProgram {
    /// The `stead-container-init` binary (or any program taking `--spec <json>` directly).
    pub fn bare(program: &Path) -> InitProgram {
        InitProgram { program: program.to_owned(), args: vec![] }
    }

    /// A command that runs `spec` in its own process group, with an empty environment (the container's
    /// comes from the spec) and stdin closed; stdout and stderr are the caller's to set.
    pub fn command(&self, container: &str, spec: &InitSpec) -> Result<tokio::process::Command, ProcessError> {
        let json = serde_json::to_string(spec)
            .map_err(|source| ProcessError::Spec { container: container.to_owned(), source })?;
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args).arg("--spec").arg(json).env_clear().stdin(Stdio::null()).process_group(0);
        Ok(tokio::process::Command::from(cmd))
    }
}

/// Starts `spec` through the init executable `init_exe`, logging to `log`. Needs a tokio runtime.
pub fn spawn(
    container: &str,
    init_exe: &Path,
    spec: &InitSpec,
    log: LogWriter,
) -> Result<ContainerProcess, ProcessError> {
    spawn_with(container, &InitProgram::bare(init_exe), spec, log)
}

/// Starts `spec` through `init`, logging to `log`. Needs a tokio runtime.
pub fn spawn_with(
    container: &str,
    init: &InitProgram,
    spec: &InitSpec,
    log: LogWriter,
) -> Result<ContainerProcess, ProcessError> {
    let cmd = init.command(container, spec)?;
    spawn_command(container, &init.program, cmd, log, SignalTarget::ProcessGroup)
}

/// Starts an OCI container: `cmd` is its `runc run` (see [`crate::oci`]), `id` its container id.
/// The process gets its own process group; signals go to the container's init. Needs a tokio
/// runtime.
pub fn spawn_oci(
    container: &str,
    cmd: std::process::Command,
    log: LogWriter,
    runtime: crate::oci::OciRuntime,
    id: String,
) -> Result<ContainerProcess, ProcessError> {
    let program = runtime.program().to_owned();
    let mut cmd = cmd;
    cmd.process_group(0);
    spawn_command(
        container,
        &program,
        tokio::process::Command::from(cmd),
        log,
        SignalTarget::OciInit { runtime, id },
    )
}

fn spawn_command(
    container: &str,
    program: &Path,
    mut cmd: tokio::process::Command,
    log: LogWriter,
    target: SignalTarget,
) -> Result<ContainerProcess, ProcessError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        container: container.to_owned(),
        init: program.display().to_string(),
        source,
    })?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| ProcessError::NoPid { container: container.to_owned() })?;
    let log = Arc::new(Mutex::new(log));
    let mut copiers = vec![];
    if let Some(out) = child.stdout.take() {
        copiers.push(tokio::spawn(copy(out, Stream::Stdout, log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(tokio::spawn(copy(err, Stream::Stderr, log.clone())));
    }
    Ok(ContainerProcess { container: container.to_owned(), target, child, pid, copiers, log })
}

async fn copy(mut from: impl tokio::io::AsyncRead + Unpin, stream: Stream, log: Arc<Mutex<LogWriter>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut w) = log.lock() {
                    // A log write failure must not kill the container; the line is lost.
                    let _ = w.write(stream, &buf[..n], wall_now());
                }
            }
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::Code(-1),
    }
}

impl ContainerProcess {
    /// The process id, which is also its process group id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the process to exit and its output to be logged.
    pub async fn wait(&mut self) -> Result<Exit, ProcessError> {
        let status = self.child.wait().await.map_err(|source| ProcessError::Wait {
            container: self.container.clone(),
            pid: self.pid,
            source,
        })?;
        for c in self.copiers.drain(..) {
            let _ = c.await;
        }
        if let Ok(mut w) = self.log.lock() {
            let _ = w.finish(wall_now());
        }
        Ok(exit_of(status))
    }

    /// Waits for the process to exit, without finishing the log (cancel-safe: use it in `select!`, then
    /// [`ContainerProcess::wait`] returns at once).
    pub async fn exited(&mut self) -> Result<(), ProcessError> {
        self.child.wait().await.map(drop).map_err(|source| ProcessError::Wait {
            container: self.container.clone(),
            pid: self.pid,
            source,
        })
    }

    /// Sends `signal` to the whole process group, or to an OCI container's init. A group or
    /// container that is already gone is not an error.
    pub fn signal<S: Syscall>(&self, sys: &S, signal: Signal) -> Result<(), ProcessError> {
        let sent = match &self.target {
            SignalTarget::ProcessGroup => sys.killpg(self.pid, signal),
            SignalTarget::OciInit { runtime, id } => match runtime.init_pid(id) {
                Some(pid) => sys.kill(pid, signal),
                // No init (yet, or any more): a kill must still end `runc run`, whose group it is.
                None if signal == Signal::SIGKILL => sys.killpg(self.pid, signal),
                None => Ok(()),
            },
        };
        match sent {
            Err(e) if e.errno != nix::errno::Errno::ESRCH => {
                Err(ProcessError::Signal { container: self.container.clone(), pid: self.pid, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Graceful stop: SIGTERM to the group (or the container's init), wait up to `grace`, then
    /// SIGKILL.
    pub async fn stop<S: Syscall>(&mut self, sys: &S, grace: Duration) -> Result<Exit, ProcessError> {
        self.signal(sys, Signal::SIGTERM)?;
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => r,
            Err(_) => {
                self.signal(sys, Signal::SIGKILL)?;
                self.child.wait().await
            }
        };
        let status = status.map_err(|source| ProcessError::Wait {
            container: self.container.clone(),
            pid: self.pid,
            source,
        })?;
        // The leader is gone; make sure nothing else of its group survives.
        self.signal(sys, Signal::SIGKILL)?;
        for c in self.copiers.drain(..) {
            let _ = c.await;
        }
        if let Ok(mut w) = self.log.lock() {
            let _ = w.finish(wall_now());
        }
        Ok(exit_of(status))
    }
}
