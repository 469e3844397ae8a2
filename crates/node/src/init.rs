//! The container init: the first code that runs in a container's process, in a fresh helper process
//! (`stead-container-init`, or a hidden subcommand of the `stead` binary calling [`main_with_args`]).
//!
//! It enters the pod sandbox ([`crate::sandbox::enter`]), changes to `workingDir`, resolves the program
//! against the *container's* `PATH` (as container runtimes do) and `execve`s it. Doing this in a new
//! process instead of a `pre_exec` hook keeps the runtime free of `unsafe` and runs `unshare` in a
//! single-threaded process. Failures print `stead-container-init: <error>` on stderr (so they land in
//! the container's log) and exit 127 (not found) or 126 (cannot execute), as shells do.

use crate::sandbox::MountSpec;
use crate::syscall::{Syscall, SyscallError};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The default `PATH` when the container sets none (runc's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the init needs, passed as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSpec {
    pub netns: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub argv: Vec<String>,
    /// `NAME=value` strings.
    pub env: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// Cgroup directories to join (write our pid to `cgroup.procs`) before anything else, so every
    /// descendant is tracked; see [`crate::cgroups`].
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// Why the init could not exec the program.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("usage: stead-container-init --spec <json>")]
    Usage,
    #[error("invalid spec: {0}")]
    Spec(#[from] serde_json::Error),
    #[error("empty command")]
    EmptyArgv,
    #[error("{program:?}: not found in PATH {path:?}")]
    NotFound { program: String, path: String },
    #[error("{0}: not an executable file")]
    NotExecutable(PathBuf),
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
}

impl InitError {
    /// The exit code a shell would use.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::NotFound { .. } => 127,
            InitError::NotExecutable(_) => 126,
            InitError::Syscall(e) if e.errno == nix::errno::Errno::ENOENT => 127,
            InitError::Syscall(e) if e.errno == nix::errno::Errno::EACCES => 126,
            _ => 127,
        }
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `program` as `execvp` would, but against the container's `PATH` from `env`.
pub fn resolve_program(program: &str, env: &[String]) -> Result<PathBuf, InitError> {
    if program.is_empty() {
        return Err(InitError::EmptyArgv);
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if p.exists() && !is_executable(&p) { Err(InitError::NotExecutable(p)) } else { Ok(p) };
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    let mut found_not_executable = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        if candidate.is_file() && found_not_executable.is_none() {
            found_not_executable = Some(candidate);
        }
    }
    match found_not_executable {
        Some(p) => Err(InitError::NotExecutable(p)),
        None => Err(InitError::NotFound { program: program.to_owned(), path: path.to_owned() }),
    }
}

/// Enters the sandbox and execs; returns only on failure.
pub fn run<S: Syscall + ?Sized>(sys: &S, spec: &InitSpec) -> InitError {
    let go = || -> Result<InitError, InitError> {
        let program = spec.argv.first().ok_or(InitError::EmptyArgv)?;
        crate::cgroups::join(&spec.cgroups)?;
        crate::sandbox::enter(sys, spec.netns.as_deref(), spec.uts.as_deref(), &spec.mounts)?;
        if let Some(dir) = &spec.working_dir {
            sys.chdir(dir)?;
        }
        let resolved = resolve_program(program, &spec.env)?;
        Ok(InitError::Syscall(sys.execve(&resolved, &spec.argv, &spec.env)))
    };
    match go() {
        Ok(e) | Err(e) => e,
    }
}

/// The init's `main`: `--spec <json>`.
pub fn main_with_args<S: Syscall + ?Sized>(sys: &S, args: impl IntoIterator<Item = String>) -> ExitCode {
    let mut args = args.into_iter();
    let err = match (args.next().as_deref(), args.next()) {
        (Some("--spec"), Some(json)) => match serde_json::from_str::<InitSpec>(&json) {
            Ok(spec) => run(sys, &spec),
            Err(e) => InitError::Spec(e),
        },
        _ => InitError::Usage,
    };
    eprintln!("stead-container-init: {err}");
    ExitCode::from(err.exit_code())
}

/// The container init as a whole program, for a hidden subcommand of another binary (the `stead`
/// binary's `container-init`): reads this process's arguments, takes the value after the first
/// `--spec`, enters the sandbox and execs. Returns the exit code only on failure.
///
/// Call it before any thread is started (before building a tokio runtime): `unshare(CLONE_NEWNS)`
/// and `setns` act on the calling thread, and the exec'd program must inherit them.
pub fn init_main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let rest: Vec<String> = match args.iter().position(|a| a == "--spec") {
        Some(i) => args[i..].to_vec(),
        None => vec![],
    };
    let err = match (rest.first().map(String::as_str), rest.get(1)) {
        (Some("--spec"), Some(json)) => match serde_json::from_str::<InitSpec>(json) {
            Ok(spec) => run(&crate::syscall::LinuxSyscall, &spec),
            Err(e) => InitError::Spec(e),
        },
        _ => InitError::Usage,
    };
    eprintln!("stead-container-init: {err}");
    i32::from(err.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Namespace, RecordingSyscall, SysCall};

    #[test]
    fn enters_then_execs_in_order() {
        let sys = RecordingSyscall::default();
        let spec = InitSpec {
            netns: Some("/s/ns/net".into()),
            uts: Some("/s/ns/uts".into()),
            mounts: vec![MountSpec {
                source: "/s/etc/hosts".into(),
                target: "/etc/hosts".into(),
                readonly: false,
            }],
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin:/usr/bin".into()],
            working_dir: Some("/tmp".into()),
            cgroups: vec![],
        };
        let err = run(&sys, &spec);
        assert!(err.to_string().contains("recording fake"), "{err}");
        let sh = resolve_program("sh", &spec.env).expect("sh");
        assert_eq!(
            sys.calls(),
            [
                SysCall::Setns("/s/ns/net".into(), Namespace::Net),
                SysCall::Setns("/s/ns/uts".into(), Namespace::Uts),
                SysCall::Unshare(vec![Namespace::Mount]),
                SysCall::MakeRprivate("/".into()),
                SysCall::BindMount {
                    source: "/s/etc/hosts".into(),
                    target: "/etc/hosts".into(),
                    readonly: false
                },
                SysCall::Chdir("/tmp".into()),
                SysCall::Execve { program: sh, argv: spec.argv.clone(), env: spec.env.clone() },
            ]
        );
    }

    #[test]
    fn failures_stop_before_exec() {
        let sys = RecordingSyscall::default();
        sys.fail_on(SysCall::Setns("/gone".into(), Namespace::Net), nix::errno::Errno::ENOENT);
        let spec = InitSpec { netns: Some("/gone".into()), argv: vec!["true".into()], ..Default::default() };
        let err = run(&sys, &spec);
        assert_eq!(err.to_string(), "Setns(\"/gone\", Net): ENOENT: No such file or directory");
        assert_eq!(sys.calls().len(), 1);
        assert_eq!(run(&sys, &InitSpec::default()).to_string(), "empty command");
    }

    #[test]
    fn program_resolution() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let plain = dir.path().join("data");
        std::fs::write(&plain, "x").expect("write");
        let env = vec![format!("PATH=/nonexistent:{}", dir.path().display())];
        assert_eq!(resolve_program("tool", &env).expect("found"), exe);
        assert!(matches!(resolve_program("data", &env), Err(InitError::NotExecutable(p)) if p == plain));
        let err = resolve_program("nope", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("\"nope\": not found in PATH \"/nonexistent:{}\"", dir.path().display())
        );
        assert_eq!(err.exit_code(), 127);
        assert_eq!(
            resolve_program("/abs/missing", &env).expect("absolute kept"),
            PathBuf::from("/abs/missing")
        );
        assert!(resolve_program("sh", &[]).is_ok(), "default PATH finds sh");
    }

    #[test]
    fn usage_and_bad_spec() {
        let sys = RecordingSyscall::default();
        assert_eq!(main_with_args(&sys, Vec::<String>::new()), ExitCode::from(127));
        assert_eq!(main_with_args(&sys, ["--spec".to_string(), "{".to_string()]), ExitCode::from(127));
        assert!(sys.calls().is_empty());
    }
}
