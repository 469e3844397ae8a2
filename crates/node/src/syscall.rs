//! Every syscall the runtime makes, behind [`Syscall`] (youki's pattern), with the real
//! implementation [`LinuxSyscall`] and the recording fake [`RecordingSyscall`].
//!
//! This is the one module where `unsafe` is allowed by the design. It needs none so far: nix's
//! wrappers for these calls are safe. (`fork`/`pre_exec` will need it when processes are spawned.)
//!
//! Namespace operations act on the calling *thread*; callers run them on a dedicated thread.

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::volumes::Tmpfs;

/// A namespace kind, as far as the runtime uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    Net,
    Uts,
    Ipc,
    Mount,
    Pid,
}

impl Namespace {
    fn flag(self) -> CloneFlags {
        match self {
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
        }
    }

    /// The file under `/proc/thread-self/ns/` naming the calling thread's namespace of this kind.
    pub fn thread_self_path(self) -> PathBuf {
        let name = match self {
            Namespace::Net => "net",
            Namespace::Uts => "uts",
            Namespace::Ipc => "ipc",
            Namespace::Mount => "mnt",
            Namespace::Pid => "pid",
        };
        PathBuf::from("/proc/thread-self/ns").join(name)
    }
}

/// A failed syscall, naming the call and its arguments.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{call}: {errno}")]
pub struct SyscallError {
    /// The call with its arguments, e.g. `mount --bind /a /b`.
    pub call: String,
    pub errno: nix::errno::Errno,
}

/// An overlayfs mount. `lower` is top first. Relative paths are relative to `dir`: the mount is made
/// from there (on a thread of its own whose working directory is `dir`), so the option string stays
/// short for images with many layers (overlayfs takes at most one page of options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    pub dir: PathBuf,
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Overlay {
    /// The mount data: `lowerdir=a:b,upperdir=u,workdir=w`.
    pub fn data(&self) -> String {
        let lower: Vec<String> = self.lower.iter().map(|p| p.display().to_string()).collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        )
    }
}

/// The syscalls the sandbox uses.
pub trait Syscall: Send + Sync {
    /// `unshare(2)` the given namespaces for the calling thread.
    fn unshare(&self, namespaces: &[Namespace]) -> Result<(), SyscallError>;
    /// `setns(2)` into the namespace pinned at `path`.
    fn setns(&self, path: &Path, namespace: Namespace) -> Result<(), SyscallError>;
    /// A bind mount of `source` on `target`, then read-only if asked.
    fn bind_mount(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), SyscallError>;
    /// A tmpfs on `target` with `tmpfs.mode` for its root, and an optional size limit in bytes.
    fn mount_tmpfs(&self, target: &Path, tmpfs: Tmpfs) -> Result<(), SyscallError>;
    /// Mounts `overlay` on `target` (an absolute path).
    fn mount_overlay(&self, target: &Path, overlay: &Overlay) -> Result<(), SyscallError>;
    /// Makes every mount below `target` private (`mount --make-rprivate`).
    fn make_rprivate(&self, target: &Path) -> Result<(), SyscallError>;
    /// `umount2(2)`; `detach` is `MNT_DETACH`.
    fn umount(&self, target: &Path, detach: bool) -> Result<(), SyscallError>;
    /// `sethostname(2)` in the calling thread's UTS namespace.
    fn sethostname(&self, name: &str) -> Result<(), SyscallError>;
    /// `kill(2)`.
    fn kill(&self, pid: i32, signal: Signal) -> Result<(), SyscallError>;
    /// `killpg(2)`.
    fn killpg(&self, pgid: i32, signal: Signal) -> Result<(), SyscallError>;
    /// `chdir(2)`.
    fn chdir(&self, dir: &Path) -> Result<(), SyscallError>;
    /// `execve(2)`: replaces the process; returns only the error.
    fn execve(&self, program: &Path, argv: &[String], env: &[String]) -> SyscallError;
}

/// The real syscalls.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinuxSyscall;

fn err(call: String) -> impl FnOnce(nix::errno::Errno) -> SyscallError {
    move |errno| SyscallError { call, errno }
}

impl Syscall for LinuxSyscall {
    fn unshare(&self, namespaces: &[Namespace]) -> Result<(), SyscallError> {
        let flags = namespaces.iter().fold(CloneFlags::empty(), |f, n| f | n.flag());
        nix::sched::unshare(flags).map_err(err(format!("unshare {namespaces:?}")))
    }

    fn setns(&self, path: &Path, namespace: Namespace) -> Result<(), SyscallError> {
        let call = format!("setns {namespace:?} {}", path.display());
        let file = File::open(path).map_err(|e| SyscallError {
            call: call.clone(),
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        nix::sched::setns(&file, namespace.flag()).map_err(err(call))
    }

    fn bind_mount(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), SyscallError> {
        let call = format!("mount --bind {} {}", source.display(), target.display());
        nix::mount::mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(err(call))?;
        if readonly {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
                .map_err(err(format!("mount -o remount,bind,ro {}", target.display())))?;
        }
        Ok(())
    }

    fn mount_tmpfs(&self, target: &Path, tmpfs: Tmpfs) -> Result<(), SyscallError> {
        let mut data = format!("mode={:o}", tmpfs.mode);
        if let Some(size) = tmpfs.size {
            data.push_str(&format!(",size={size}"));
        }
        nix::mount::mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::empty(), Some(data.as_str()))
            .map_err(err(format!("mount -t tmpfs -o {data} {}", target.display())))
    }

    fn mount_overlay(&self, target: &Path, overlay: &Overlay) -> Result<(), SyscallError> {
        let data = overlay.data();
        let call =
            format!("mount -t overlay -o {data} {} (from {})", target.display(), overlay.dir.display());
        let mount = || -> Result<(), nix::errno::Errno> {
            // A working directory of this thread's own, so the chdir touches no other thread.
            nix::sched::unshare(CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(&overlay.dir)?;
            nix::mount::mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        };
        match std::thread::scope(|s| s.spawn(mount).join()) {
            Ok(r) => r.map_err(err(call)),
            Err(_) => {
                Err(SyscallError { call: format!("{call} (thread panicked)"), errno: nix::errno::Errno::EIO })
            }
        }
    }

    fn make_rprivate(&self, target: &Path) -> Result<(), SyscallError> {
        let flags = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .map_err(err(format!("mount --make-rprivate {}", target.display())))
    }

    fn umount(&self, target: &Path, detach: bool) -> Result<(), SyscallError> {
        let flags = if detach { MntFlags::MNT_DETACH } else { MntFlags::empty() };
        nix::mount::umount2(target, flags).map_err(err(format!("umount {}", target.display())))
    }

    fn sethostname(&self, name: &str) -> Result<(), SyscallError> {
        nix::unistd::sethostname(name).map_err(err(format!("sethostname {name}")))
    }

    fn kill(&self, pid: i32, signal: Signal) -> Result<(), SyscallError> {
        nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(err(format!("kill -{signal} {pid}")))
    }

    fn killpg(&self, pgid: i32, signal: Signal) -> Result<(), SyscallError> {
        nix::sys::signal::killpg(Pid::from_raw(pgid), signal).map_err(err(format!("killpg -{signal} {pgid}")))
    }

    fn chdir(&self, dir: &Path) -> Result<(), SyscallError> {
        nix::unistd::chdir(dir).map_err(err(format!("chdir {}", dir.display())))
    }

    fn execve(&self, program: &Path, argv: &[String], env: &[String]) -> SyscallError {
        let call = format!("execve {}", program.display());
        let invalid = |call: String| SyscallError {
            call: format!("{call} (an argument contains a NUL byte)"),
            errno: nix::errno::Errno::EINVAL,
        };
        let cstrings =
            |v: &[String]| v.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<Vec<_>, _>>();
        let (Ok(path), Ok(args), Ok(envs)) =
            (CString::new(program.as_os_str().as_bytes()), cstrings(argv), cstrings(env))
        else {
            return invalid(call);
        };
        match nix::unistd::execve(&path, &args, &envs) {
            Err(errno) => SyscallError { call, errno },
            Ok(never) => match never {},
        }
    }
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysCall {
    Unshare(Vec<Namespace>),
    Setns(PathBuf, Namespace),
    BindMount { source: PathBuf, target: PathBuf, readonly: bool },
    MountTmpfs { target: PathBuf, tmpfs: Tmpfs },
    MountOverlay { target: PathBuf, overlay: Overlay },
    MakeRprivate(PathBuf),
    Umount { target: PathBuf, detach: bool },
    Sethostname(String),
    Kill(i32, Signal),
    Killpg(i32, Signal),
    Chdir(PathBuf),
    Execve { program: PathBuf, argv: Vec<String>, env: Vec<String> },
}

/// A fake that records every call and succeeds, unless told to fail a given call.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: Mutex<Vec<SysCall>>,
    fail: Mutex<Option<(SysCall, nix::errno::Errno)>>,
}

impl RecordingSyscall {
    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<SysCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Makes `call` fail with `errno` (it is still recorded).
    pub fn fail_on(&self, call: SysCall, errno: nix::errno::Errno) {
        if let Ok(mut f) = self.fail.lock() {
            *f = Some((call, errno));
        }
    }

    fn record(&self, call: SysCall) -> Result<(), SyscallError> {
        let failing = self.fail.lock().ok().and_then(|f| f.clone()).filter(|(c, _)| *c == call);
        let text = format!("{call:?}");
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
        match failing {
            Some((_, errno)) => Err(SyscallError { call: text, errno }),
            None => Ok(()),
        }
    }
}

impl Syscall for RecordingSyscall {
    fn unshare(&self, namespaces: &[Namespace]) -> Result<(), SyscallError> {
        self.record(SysCall::Unshare(namespaces.to_vec()))
    }
    fn setns(&self, path: &Path, namespace: Namespace) -> Result<(), SyscallError> {
        self.record(SysCall::Setns(path.to_owned(), namespace))
    }
    fn bind_mount(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), SyscallError> {
        self.record(SysCall::BindMount { source: source.to_owned(), target: target.to_owned(), readonly })
    }
    fn mount_tmpfs(&self, target: &Path, tmpfs: Tmpfs) -> Result<(), SyscallError> {
        self.record(SysCall::MountTmpfs { target: target.to_owned(), tmpfs })
    }
    fn mount_overlay(&self, target: &Path, overlay: &Overlay) -> Result<(), SyscallError> {
        self.record(SysCall::MountOverlay { target: target.to_owned(), overlay: overlay.clone() })
    }
    fn make_rprivate(&self, target: &Path) -> Result<(), SyscallError> {
        self.record(SysCall::MakeRprivate(target.to_owned()))
    }
    fn umount(&self, target: &Path, detach: bool) -> Result<(), SyscallError> {
        self.record(SysCall::Umount { target: target.to_owned(), detach })
    }
    fn sethostname(&self, name: &str) -> Result<(), SyscallError> {
        self.record(SysCall::Sethostname(name.to_owned()))
    }
    fn kill(&self, pid: i32, signal: Signal) -> Result<(), SyscallError> {
        self.record(SysCall::Kill(pid, signal))
    }
    fn killpg(&self, pgid: i32, signal: Signal) -> Result<(), SyscallError> {
        self.record(SysCall::Killpg(pgid, signal))
    }
    fn chdir(&self, dir: &Path) -> Result<(), SyscallError> {
        self.record(SysCall::Chdir(dir.to_owned()))
    }
    /// Records the call and fails with `ENOSYS`: the fake never replaces the process.
    fn execve(&self, program: &Path, argv: &[String], env: &[String]) -> SyscallError {
        let call = SysCall::Execve { program: program.to_owned(), argv: argv.to_vec(), env: env.to_vec() };
        match self.record(call) {
            Err(e) => e,
            Ok(()) => SyscallError {
                call: format!("execve {} (recording fake)", program.display()),
                errno: nix::errno::Errno::ENOSYS,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_records_in_order_and_fails_on_request() {
        let sys = RecordingSyscall::default();
        sys.unshare(&[Namespace::Net, Namespace::Uts]).expect("unshare");
        sys.fail_on(SysCall::Sethostname("web-0".into()), nix::errno::Errno::EPERM);
        let e = sys.sethostname("web-0").expect_err("fails");
        assert_eq!(e.to_string(), "Sethostname(\"web-0\"): EPERM: Operation not permitted");
        sys.killpg(42, Signal::SIGTERM).expect("killpg");
        assert_eq!(
            sys.calls(),
            [
                SysCall::Unshare(vec![Namespace::Net, Namespace::Uts]),
                SysCall::Sethostname("web-0".into()),
                SysCall::Killpg(42, Signal::SIGTERM)
            ]
        );
    }

    #[test]
    fn real_errors_name_the_call() {
        // Not root-dependent: mounting from a path that does not exist fails for everyone.
        let e = LinuxSyscall
            .bind_mount(Path::new("/nonexistent/stead-src"), Path::new("/nonexistent/stead-dst"), false)
            .expect_err("must fail");
        assert!(
            e.to_string().starts_with("mount --bind /nonexistent/stead-src /nonexistent/stead-dst: "),
            "{e}"
        );
        let e = LinuxSyscall.setns(Path::new("/nonexistent/netns"), Namespace::Net).expect_err("must fail");
        assert_eq!(e.to_string(), "setns Net /nonexistent/netns: ENOENT: No such file or directory");
    }
}
