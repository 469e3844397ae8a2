//! The OCI runtime driver: `runc` with a state root of stead's own (`runc --root <state>/runc`).
//!
//! - [`OciRuntime::find`]: `$STEAD_OCI_RUNTIME`, else `runc` on `PATH`, else an error naming the
//!   Debian package.
//! - Commands built here, run by the caller: [`OciRuntime::run_command`] (`run --keep`, in the
//!   foreground: the container's stdout and stderr are the command's, its exit status the
//!   container's: a code, or 128 + the signal that killed it) and [`OciRuntime::exec_command`]
//!   (`exec`: the container's user, env, cwd and capabilities, from its spec).
//! - Blocking calls: [`OciRuntime::kill`], [`OciRuntime::delete`], [`OciRuntime::state`],
//!   [`OciRuntime::list`], [`OciRuntime::remove_leftovers`].
//! - [`OciRuntime::init_pid`] reads the container's init pid from runc's `state.json`, checked
//!   against the process's start time, so a signal never reaches a recycled pid. A signal sent to
//!   the `runc run` process is forwarded, but SIGKILL cannot be: signal the init pid (the kernel
//!   then kills the whole PID namespace) or kill the container's cgroups.
//!
//! `--keep` leaves a stopped container (and its cgroups, so the OOM kill count stays readable)
//! until [`OciRuntime::delete`].

use super::OciError;
use crate::syscall::Syscall;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The variable naming the OCI runtime binary.
pub const RUNTIME_VAR: &str = "STEAD_OCI_RUNTIME";

/// A container's state, as `runc state` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct RuntimeState {
    pub id: String,
    /// `created`, `running`, `paused`, `stopped`.
    pub status: String,
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub bundle: PathBuf,
}

/// The runtime binary and its state root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRuntime {
    program: PathBuf,
    root: PathBuf,
}

/// The runtime's state root under stead's state directory.
pub fn state_root(state_dir: &Path) -> PathBuf {
    state_dir.join("runc")
}

/// A container id runc accepts (`[A-Za-z0-9_+.-]`): `<pod uid>-<container>-<instance>`.
pub fn container_id(pod_uid: &str, container: &str, instance: u32) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || "_+.-".contains(c) { c } else { '_' }).collect()
    };
    let uid = if pod_uid.is_empty() { "nouid".to_owned() } else { clean(pod_uid) };
    format!("{uid}-{}-{instance}", clean(container))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Field 22 (starttime); `after` starts at field 3.
    after.split_whitespace().nth(19)?.parse().ok()
}

impl OciRuntime {
    /// A runtime at `program` keeping its state in `root`.
    pub fn new(program: PathBuf, root: PathBuf) -> OciRuntime {
        OciRuntime { program, root }
    }

    /// `$STEAD_OCI_RUNTIME` (a path, or a name looked up on `PATH`), else `runc` on `PATH`; the
    /// state root is `<state_dir>/runc`.
    pub fn find(state_dir: &Path) -> Result<OciRuntime, OciError> {
        let wanted = std::env::var(RUNTIME_VAR).ok().filter(|v| !v.is_empty());
        let program = match &wanted {
            Some(v) if v.contains('/') => Some(PathBuf::from(v)).filter(|p| p.is_file()),
            Some(v) => on_path(v),
            None => on_path("runc"),
        };
        match program {
            Some(program) => Ok(OciRuntime::new(program, state_root(state_dir))),
            None => Err(OciError::RuntimeMissing {
                wanted: wanted.unwrap_or_else(|| "runc".into()),
                path: std::env::var("PATH").unwrap_or_default(),
            }),
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--root").arg(&self.root).stdin(Stdio::null());
        cmd
    }

    /// `runc run --keep --bundle <bundle> <id>`, in the foreground, stdin closed; the caller sets
    /// stdout and stderr (the container's) and spawns it.
    pub fn run_command(&self, id: &str, bundle: &Path) -> Command {
        let mut cmd = self.command();
        cmd.args(["run", "--keep", "--bundle"]).arg(bundle).arg(id);
        cmd
    }

    /// `runc exec <id> <argv>`: `argv` in the running container as its own process runs (user,
    /// env, cwd, capabilities, seccomp, no_new_privs from the container's spec).
    pub fn exec_command(&self, id: &str, argv: &[String]) -> Command {
        let mut cmd = self.command();
        cmd.arg("exec").arg(id).args(argv);
        cmd
    }

    fn call(&self, args: &[&str]) -> Result<String, OciError> {
        let mut cmd = self.command();
        cmd.args(args);
        let what = format!("{} {}", self.program.display(), args.join(" "));
        let out = cmd.output().map_err(|source| OciError::Spawn { command: what.clone(), source })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(OciError::Runtime {
                command: what,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// `runc kill <id> <signal>` (the container's init).
    pub fn kill(&self, id: &str, signal: Signal) -> Result<(), OciError> {
        self.call(&["kill", id, signal.as_str()]).map(drop)
    }

    /// `runc delete --force <id>`: kills what is left of the container and removes its state and
    /// cgroups. A container the runtime does not know is not an error.
    pub fn delete(&self, id: &str) -> Result<(), OciError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        match self.call(&["delete", "--force", id]) {
            Err(OciError::Runtime { stderr, .. }) if stderr.contains("does not exist") => Ok(()),
            other => other.map(drop),
        }
    }

    /// `runc state <id>`; `None` when the runtime does not know it.
    pub fn state(&self, id: &str) -> Result<Option<RuntimeState>, OciError> {
        if !self.root.join(id).exists() {
            return Ok(None);
        }
        let json = match self.call(&["state", id]) {
            Err(OciError::Runtime { stderr, .. }) if stderr.contains("does not exist") => return Ok(None),
            other => other?,
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| OciError::Output { command: "state".into(), problem: e.to_string() })
    }

    /// The ids of every container under this state root (`runc list`).
    pub fn list(&self) -> Result<Vec<String>, OciError> {
        if !self.root.exists() {
            return Ok(vec![]);
        }
        Ok(self
            .call(&["list", "--quiet"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The container's init pid on the host, while that process lives (`state.json`'s pid whose
    /// start time matches).
    pub fn init_pid(&self, id: &str) -> Option<i32> {
        #[derive(serde::Deserialize)]
        struct RuncState {
            init_process_pid: i32,
            init_process_start: u64,
        }
        let text = std::fs::read_to_string(self.root.join(id).join("state.json")).ok()?;
        let s: RuncState = serde_json::from_str(&text).ok()?;
        (s.init_process_pid > 0 && start_time(s.init_process_pid) == Some(s.init_process_start))
            .then_some(s.init_process_pid)
    }

    /// At start: deletes every container a previous daemon left (killing what still runs) and
    /// unmounts and removes their bundles under `<state_dir>/pods/*/containers/`. Returns the ids
    /// deleted. Blocking.
    pub fn remove_leftovers<S: Syscall>(&self, sys: &S, state_dir: &Path) -> Result<Vec<String>, OciError> {
        let ids = self.list()?;
        let mut first = None;
        for id in &ids {
            if let Err(e) = self.delete(id) {
                first.get_or_insert(e);
            }
        }
        let pods = state_dir.join("pods");
        for pod in std::fs::read_dir(&pods).into_iter().flatten().filter_map(Result::ok) {
            let containers = pod.path().join("containers");
            for b in std::fs::read_dir(&containers).into_iter().flatten().filter_map(Result::ok) {
                if let Err(e) = super::rootfs::remove_bundle(sys, &b.path()) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(ids), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn commands_use_the_state_root() {
        let rt = OciRuntime::new("/usr/sbin/runc".into(), "/s/runc".into());
        assert_eq!(
            args(&rt.run_command("u-app-0", Path::new("/b"))),
            ["--root", "/s/runc", "run", "--keep", "--bundle", "/b", "u-app-0"]
        );
        assert_eq!(
            args(&rt.exec_command("u-app-0", &["sh".into(), "-c".into(), "id".into()])),
            ["--root", "/s/runc", "exec", "u-app-0", "sh", "-c", "id"]
        );
    }

    #[test]
    fn ids_are_what_runc_accepts() {
        assert_eq!(container_id("3f1c-aa", "web", 2), "3f1c-aa-web-2");
        assert_eq!(container_id("", "a/b c", 0), "nouid-a_b_c-0");
    }

    #[test]
    fn a_missing_runtime_is_named() {
        let e = OciError::RuntimeMissing { wanted: "runc".into(), path: "/usr/bin".into() };
        assert_eq!(
            e.to_string(),
            "the OCI runtime \"runc\" was not found on PATH \"/usr/bin\": install Debian's `runc` package, \
             or set STEAD_OCI_RUNTIME to the runtime's path"
        );
    }

    #[test]
    fn unknown_containers_have_no_state_and_no_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = OciRuntime::new("/nonexistent/runc".into(), dir.path().join("runc"));
        assert_eq!(rt.state("nope").expect("state"), None);
        assert_eq!(rt.init_pid("nope"), None);
        rt.delete("nope").expect("nothing to delete");
        assert_eq!(rt.list().expect("list"), Vec::<String>::new());
        // A state.json naming a live pid with another start time (a recycled pid) is refused.
        std::fs::create_dir_all(dir.path().join("runc/c")).expect("mkdir");
        let me = std::process::id() as i32;
        let start = start_time(me).expect("own start time");
        let write = |start: u64| {
            let json = format!(r#"{{"init_process_pid": {me}, "init_process_start": {start}}}"#);
            std::fs::write(dir.path().join("runc/c/state.json"), json).expect("write")
        };
        write(start + 1);
        assert_eq!(rt.init_pid("c"), None);
        write(start);
        assert_eq!(rt.init_pid("c"), Some(me));
    }
}
