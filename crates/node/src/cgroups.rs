//! Per-container cgroups: resource limits, OOM detection and a kill that leaves no process behind.
//!
//! Layout: `<root>/<hierarchy>/stead/<pod uid>/<container>` in every hierarchy the machine offers out of
//! - cgroup v1 `memory` (the limit from `resources.limits.memory`, and `oom_kill` counts for `OOMKilled`),
//! - cgroup v1 `pids` and `freezer` (tracking; freezing makes the kill race-free),
//! - cgroup v2 at `unified/` (hybrid layout) or at the root (pure v2): `cgroup.kill` where the kernel
//!   has it.
//!
//! The container init writes its own pid into each directory's `cgroup.procs` before it execs, so
//! every descendant (even one that called `setsid`) stays in the container's cgroups.
//! [`ContainerCgroup::kill_all`] then kills all of them: `cgroup.kill` if present, else freeze,
//! SIGKILL every member, thaw (a frozen task cannot fork away), else SIGKILL members until none is
//! left.
//!
//! A cgroup root of the caller's choice keeps tests apart from a real node; directories are only
//! created and removed below `<hierarchy>/stead/`.
//!
//! Limits the machine cannot enforce (no memory hierarchy, e.g. a pure cgroup v2 machine without the
//! memory controller delegated) are reported by [`ContainerCgroup::unenforced`], and the kubelet puts
//! them in the pod's status.
//!
//! The kills go through [`Syscall::kill`], so a recording fake sees them; the cgroup files are plain
//! file IO on the tree given.

use crate::syscall::Syscall;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory under each hierarchy that holds stead's cgroups.
pub const STEAD_DIR: &str = "stead";

/// Cgroup failures, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: processes are still present after the kill: {pids:?}")]
    NotEmpty { path: PathBuf, pids: Vec<i32> },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_owned(), source }
}

/// The hierarchies found on this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cgroups {
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub freezer: Option<PathBuf>,
    /// A cgroup v2 hierarchy (only used for tracking and `cgroup.kill`).
    pub unified: Option<PathBuf>,
}

impl Cgroups {
    /// Looks for the hierarchies under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Cgroups {
        let has = |p: PathBuf, file: &str| p.join(file).exists().then_some(p);
        let v1 = |name: &str, file: &str| has(root.join(name), file);
        let unified =
            has(root.join("unified"), "cgroup.procs").or_else(|| has(root.to_owned(), "cgroup.controllers"));
        Cgroups {
            memory: v1("memory", "memory.limit_in_bytes"),
            pids: v1("pids", "pids.max").or_else(|| v1("pids", "cgroup.procs")),
            freezer: v1("freezer", "cgroup.procs"),
            unified,
        }
    }

    /// Whether any hierarchy is usable.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.pids.is_some() || self.freezer.is_some() || self.unified.is_some()
    }

    fn pod_dirs(&self, pod_uid: &str) -> Vec<PathBuf> {
        [&self.memory, &self.pids, &self.freezer, &self.unified]
            .into_iter()
            .flatten()
            .map(|h| h.join(STEAD_DIR).join(pod_uid))
            .collect()
    }

    /// Creates the cgroups of one container of a pod and applies its memory limit (bytes).
    pub fn create(
        &self,
        pod_uid: &str,
        container: &str,
        memory_limit: Option<u64>,
    ) -> Result<ContainerCgroup, CgroupError> {
        let dir = |h: &Option<PathBuf>| h.as_ref().map(|h| h.join(STEAD_DIR).join(pod_uid).join(container));
        let cg = ContainerCgroup {
            memory: dir(&self.memory),
            pids: dir(&self.pids),
            freezer: dir(&self.freezer),
            unified: dir(&self.unified),
            memory_limit,
        };
        for d in cg.dirs() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        if let (Some(mem), Some(limit)) = (&cg.memory, memory_limit) {
            // memsw must stay >= the memory limit: lower order matters, so raise memsw last only when
            // growing. A fresh cgroup is unlimited, so memory first, then memsw.
            let value = limit.to_string();
            let file = mem.join("memory.limit_in_bytes");
            std::fs::write(&file, &value).map_err(io(&file))?;
            let memsw = mem.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                std::fs::write(&memsw, &value).map_err(io(&memsw))?;
            }
        }
        Ok(cg)
    }

    /// Removes the pod's cgroup directories (every container's must be removed first).
    pub fn remove_pod(&self, pod_uid: &str) -> Result<(), CgroupError> {
        let mut first = None;
        for d in self.pod_dirs(pod_uid) {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
                    if let Err(e) = remove_dir(&e.path()) {
                        first.get_or_insert(e);
                    }
                }
            }
            if let Err(e) = remove_dir(&d) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Kills every process in every cgroup of the pod (also containers this process did not start,
    /// e.g. after a crash of the runtime) and removes the directories.
    pub fn kill_pod(&self, sys: &dyn Syscall, pod_uid: &str) -> Result<(), CgroupError> {
        let mut containers: Vec<String> = vec![];
        for d in self.pod_dirs(pod_uid) {
            if let Ok(rd) = std::fs::read_dir(&d) {
                containers.extend(
                    rd.filter_map(Result::ok)
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
        }
        containers.sort();
        containers.dedup();
        let mut first = None;
        for c in containers {
            let dir = |h: &Option<PathBuf>| {
                h.as_ref().map(|h| h.join(STEAD_DIR).join(pod_uid).join(&c)).filter(|d| d.exists())
            };
            let cg = ContainerCgroup {
                memory: dir(&self.memory),
                pids: dir(&self.pids),
                freezer: dir(&self.freezer),
                unified: dir(&self.unified),
                memory_limit: None,
            };
            if let Err(e) = cg.kill_and_remove(sys) {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.remove_pod(pod_uid) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

fn remove_dir(d: &Path) -> Result<(), CgroupError> {
    match std::fs::remove_dir(d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(CgroupError::Io { path: d.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

/// The cgroups of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerCgroup {
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub freezer: Option<PathBuf>,
    pub unified: Option<PathBuf>,
    /// The memory limit asked for.
    pub memory_limit: Option<u64>,
}

/// The pids listed in `<dir>/cgroup.procs`.
pub fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

impl ContainerCgroup {
    /// Every directory, for the init to join.
    pub fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.memory, &self.pids, &self.freezer, &self.unified].into_iter().flatten()
    }

    /// What was asked for but cannot be enforced here, as a sentence for the status.
    pub fn unenforced(&self) -> Option<String> {
        match (self.memory_limit, &self.memory) {
            (Some(limit), None) => Some(format!(
                "memory limit {limit} bytes is not enforced: no cgroup v1 memory hierarchy on this machine"
            )),
            _ => None,
        }
    }

    /// The memory cgroup's OOM kill count (`oom_kill` in `memory.oom_control`).
    pub fn oom_kills(&self) -> u64 {
        let Some(mem) = &self.memory else { return 0 };
        std::fs::read_to_string(mem.join("memory.oom_control"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// Every process in the container's cgroups.
    pub fn members(&self) -> Vec<i32> {
        let mut all: Vec<i32> = self.dirs().flat_map(|d| procs(d)).collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Kills every member and waits (up to `wait`) until none is left.
    pub fn kill_all(&self, sys: &dyn Syscall, wait: Duration) -> Result<(), CgroupError> {
        let kill_file = self.unified.as_ref().map(|u| u.join("cgroup.kill")).filter(|f| f.exists());
        if let Some(f) = &kill_file {
            std::fs::write(f, "1").map_err(io(f))?;
        } else if let Some(fz) = &self.freezer {
            let state = fz.join("freezer.state");
            let frozen = std::fs::write(&state, "FROZEN").is_ok();
            if frozen {
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline
                    && std::fs::read_to_string(&state).map(|s| s.trim() != "FROZEN").unwrap_or(false)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            for pid in self.members() {
                kill9(sys, pid);
            }
            if frozen {
                std::fs::write(&state, "THAWED").map_err(io(&state))?;
            }
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = self.members();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let path = self.dirs().next().cloned().unwrap_or_default();
                return Err(CgroupError::NotEmpty { path, pids: left });
            }
            for pid in left {
                kill9(sys, pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Moves `pid` (a container process this runtime just started) into every directory, so it
    /// is counted before its start is reported, even if its init has not yet joined by itself. A
    /// process that already exited is not an error.
    pub fn adopt(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            let f = d.join("cgroup.procs");
            match std::fs::write(&f, pid.to_string()) {
                Err(e) if e.raw_os_error() != Some(Errno::ESRCH as i32) => {
                    return Err(CgroupError::Io { path: f, source: e });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Kills every member, then removes the directories. A process that joined between the kill
    /// and the removal (an init that was starting when its runtime died) makes the removal fail
    /// with EBUSY: it is killed in turn, a few times over, so nothing is left running unseen.
    pub fn kill_and_remove(&self, sys: &dyn Syscall) -> Result<(), CgroupError> {
        let mut attempts = 0;
        loop {
            self.kill_all(sys, Duration::from_secs(5))?;
            match self.remove() {
                Err(CgroupError::Io { source, .. })
                    if source.raw_os_error() == Some(Errno::EBUSY as i32) && attempts < 5 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// Removes the (empty) directories.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in self.dirs() {
            if let Err(e) = remove_dir(d) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn kill9(sys: &dyn Syscall, pid: i32) {
    if pid > 0 {
        let _ = sys.kill(pid, Signal::SIGKILL);
    }
}

/// Joins the calling process to `dirs` (writes its pid to each `cgroup.procs`); used by the init.
pub fn join(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let pid = std::process::id().to_string();
    for d in dirs {
        let f = d.join("cgroup.procs");
        std::fs::write(&f, &pid).map_err(io(&f))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_and_layout_on_a_fake_tree() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        std::fs::create_dir_all(r.join("memory")).expect("mkdir");
        std::fs::write(r.join("memory/memory.limit_in_bytes"), "").expect("write");
        std::fs::create_dir_all(r.join("freezer")).expect("mkdir");
        std::fs::write(r.join("freezer/cgroup.procs"), "").expect("write");
        let cg = Cgroups::detect(r);
        assert_eq!(cg.memory, Some(r.join("memory")));
        assert_eq!(cg.freezer, Some(r.join("freezer")));
        assert_eq!((cg.pids.clone(), cg.unified.clone()), (None, None));
        let c = cg.create("uid-1", "app", Some(64 << 20)).expect("create");
        assert_eq!(c.memory, Some(r.join("memory/stead/uid-1/app")));
        assert_eq!(
            std::fs::read_to_string(r.join("memory/stead/uid-1/app/memory.limit_in_bytes")).expect("read"),
            "67108864"
        );
        assert_eq!(c.unenforced(), None);
        std::fs::write(
            r.join("memory/stead/uid-1/app/memory.oom_control"),
            "oom_kill_disable 0\noom_kill 2\n",
        )
        .expect("write");
        assert_eq!(c.oom_kills(), 2);
        std::fs::write(r.join("freezer/stead/uid-1/app/cgroup.procs"), "").expect("write");
        assert_eq!(c.members(), Vec::<i32>::new());
    }

    #[test]
    fn unenforced_limit_is_reported() {
        let c = ContainerCgroup { memory_limit: Some(1024), ..Default::default() };
        assert_eq!(
            c.unenforced().as_deref(),
            Some("memory limit 1024 bytes is not enforced: no cgroup v1 memory hierarchy on this machine")
        );
        assert!(!Cgroups::default().any());
    }

    #[test]
    fn kill_all_kills_every_member_through_the_syscall_seam() {
        use crate::syscall::{RecordingSyscall, SysCall};
        let root = tempfile::tempdir().expect("tempdir");
        let fz = root.path().join("freezer/stead/uid-1/app");
        std::fs::create_dir_all(&fz).expect("mkdir");
        std::fs::write(fz.join("cgroup.procs"), "4242\n4243\n").expect("write");
        let c = ContainerCgroup { freezer: Some(fz.clone()), ..Default::default() };
        let sys = RecordingSyscall::default();
        // The fake kills nothing, so the members stay and the kill reports them.
        let e = c.kill_all(&sys, Duration::ZERO).unwrap_err();
        assert!(matches!(&e, CgroupError::NotEmpty { pids, .. } if pids == &[4242, 4243]), "{e}");
        assert_eq!(sys.calls(), [SysCall::Kill(4242, Signal::SIGKILL), SysCall::Kill(4243, Signal::SIGKILL)]);
        assert_eq!(std::fs::read_to_string(fz.join("freezer.state")).expect("state"), "THAWED");
    }

    #[test]
    fn join_writes_own_pid() {
        let d = tempfile::tempdir().expect("tempdir");
        join(&[d.path().to_owned()]).expect("join");
        assert_eq!(procs(d.path()), vec![std::process::id() as i32]);
        let e = join(&[d.path().join("missing")]).unwrap_err();
        assert!(e.to_string().contains("missing/cgroup.procs"), "{e}");
    }
}
