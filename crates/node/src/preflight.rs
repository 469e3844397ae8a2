//! What the runtime needs from the machine, checked before anything is created.
//!
//! Built: root mode only. Without root the runtime refuses with [`PreflightError::NotRoot`], which
//! says what is missing and how to run. The rootless design (one user+net+mount namespace acting as
//! the node, pods inside it, host access through a forwarder; see the runtime probe) is not built yet.

use crate::syscall::Syscall;
use std::path::{Path, PathBuf};

/// A missing requirement, saying what is needed and how to get it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error(
        "the pod runtime needs root (effective uid is {euid}): it creates network and UTS namespaces, veth pairs, \
         the bridge and bind mounts; run stead as root (e.g. `sudo stead up`); rootless mode is not implemented yet"
    )]
    NotRoot { euid: u32 },
    #[error(
        "the kernel has no {kind} namespaces ({path} does not exist): the pod runtime needs CONFIG_{config}_NS"
    )]
    NoNamespace { kind: &'static str, path: PathBuf, config: &'static str },
}

/// Checks the current process (its effective uid through `sys`).
pub fn preflight(sys: &dyn Syscall) -> Result<(), PreflightError> {
    check(sys.geteuid(), Path::new("/proc/self/ns"))
}

/// Checks an effective uid and a `/proc/<pid>/ns` directory.
pub fn check(euid: u32, ns_dir: &Path) -> Result<(), PreflightError> {
    if euid != 0 {
        return Err(PreflightError::NotRoot { euid });
    }
    for (file, kind, config) in [("net", "network", "NET"), ("uts", "UTS", "UTS"), ("mnt", "mount", "MNT")] {
        let path = ns_dir.join(file);
        if !path.exists() {
            return Err(PreflightError::NoNamespace { kind, path, config });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_root_says_what_and_how() {
        assert_eq!(
            check(1000, Path::new("/proc/self/ns")).unwrap_err().to_string(),
            "the pod runtime needs root (effective uid is 1000): it creates network and UTS namespaces, veth pairs, \
             the bridge and bind mounts; run stead as root (e.g. `sudo stead up`); rootless mode is not implemented yet"
        );
    }

    #[test]
    fn missing_namespace_support() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("net"), b"").expect("net");
        assert_eq!(
            check(0, dir.path()).unwrap_err(),
            PreflightError::NoNamespace { kind: "UTS", path: dir.path().join("uts"), config: "UTS" }
        );
        assert_eq!(check(0, Path::new("/proc/self/ns")), Ok(()));
    }

    #[test]
    fn preflight_asks_the_syscall_seam_for_the_uid() {
        let sys = crate::syscall::RecordingSyscall::default();
        assert_eq!(preflight(&sys), Ok(()));
        sys.set_euid(1000);
        assert_eq!(preflight(&sys), Err(PreflightError::NotRoot { euid: 1000 }));
    }
}
