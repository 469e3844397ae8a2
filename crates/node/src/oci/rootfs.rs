//! A container instance's bundle directory and root file system: overlayfs of the image's layers
//! with an upper and work directory of the instance's own.
//!
//! Layout, `<pod dir>/containers/<container>-<instance>/`:
//! - `l/0`, `l/1`, ...: symlinks to the image's layer directories, bottom first;
//! - `upper/`, `work/`: overlayfs' writable layer and its work directory;
//! - `rootfs/`: the overlay mount, the OCI bundle's root;
//! - `config.json`: the runtime spec.
//!
//! The overlay is mounted from the bundle directory with relative paths (`lowerdir=l/2:l/1:l/0`),
//! so its option string grows by four or five bytes per layer, whatever the length of the state
//! directory's path or the layer names (overlayfs takes one page of options; images have at most
//! a few hundred layers, overlayfs stacks at most 500).

use super::OciError;
use crate::syscall::{Overlay, Syscall};
use std::path::{Path, PathBuf};

/// The bundle directory of one instance of a container.
pub fn bundle_dir(pod_dir: &Path, container: &str, instance: u32) -> PathBuf {
    pod_dir.join("containers").join(format!("{container}-{instance}"))
}

/// The root file system's mount point inside a bundle.
pub fn rootfs_dir(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// The overlay of `layers` (bottom first) for the bundle at `bundle` (pure). An image without
/// layers gets the empty directory `l/empty` as its only lower layer.
pub fn plan_overlay(bundle: &Path, layers: &[PathBuf]) -> Overlay {
    let lower = if layers.is_empty() {
        vec![PathBuf::from("l/empty")]
    } else {
        (0..layers.len()).rev().map(|i| PathBuf::from(format!("l/{i}"))).collect()
    };
    Overlay { dir: bundle.to_owned(), lower, upper: "upper".into(), work: "work".into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io { path: path.to_owned(), source }
}

/// Creates the bundle directory and mounts the root file system; returns its path. A bundle left
/// at the same place (by a runtime that died) is removed first.
pub fn mount_rootfs<S: Syscall>(sys: &S, bundle: &Path, layers: &[PathBuf]) -> Result<PathBuf, OciError> {
    remove_bundle(sys, bundle)?;
    let links = bundle.join("l");
    for d in [links.as_path(), &bundle.join("upper"), &bundle.join("work"), &rootfs_dir(bundle)] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    if layers.is_empty() {
        let empty = links.join("empty");
        std::fs::create_dir_all(&empty).map_err(io(&empty))?;
    }
    for (i, layer) in layers.iter().enumerate() {
        let link = links.join(i.to_string());
        std::os::unix::fs::symlink(layer, &link).map_err(io(&link))?;
    }
    let rootfs = rootfs_dir(bundle);
    let overlay = plan_overlay(bundle, layers);
    if let Err(source) = sys.mount_overlay(&rootfs, &overlay) {
        let _ = std::fs::remove_dir_all(bundle);
        return Err(OciError::Syscall { step: "mount the root file system", source });
    }
    Ok(rootfs)
}

/// Unmounts the root file system (if mounted) and removes the bundle directory. Idempotent.
pub fn remove_bundle<S: Syscall>(sys: &S, bundle: &Path) -> Result<(), OciError> {
    if !bundle.exists() {
        return Ok(());
    }
    let rootfs = rootfs_dir(bundle);
    match sys.umount(&rootfs, true) {
        Err(e) if !matches!(e.errno, nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {
            return Err(OciError::Syscall { step: "unmount the root file system", source: e });
        }
        _ => {}
    }
    match std::fs::remove_dir_all(bundle) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(OciError::Io { path: bundle.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{RecordingSyscall, SysCall};

    #[test]
    fn overlay_options_stay_short() {
        let layers: Vec<PathBuf> =
            (0..128).map(|i| PathBuf::from(format!("/var/lib/stead/images/layers/{i:064x}"))).collect();
        let o = plan_overlay(Path::new("/var/lib/stead/pods/uid/containers/app-0"), &layers);
        assert_eq!(o.lower.first(), Some(&PathBuf::from("l/127")), "top first");
        assert_eq!(o.lower.last(), Some(&PathBuf::from("l/0")));
        assert!(o.data().len() < 1024, "{} bytes", o.data().len());
        assert_eq!(plan_overlay(Path::new("/b"), &[]).data(), "lowerdir=l/empty,upperdir=upper,workdir=work");
    }

    #[test]
    fn mounts_then_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layers = vec![dir.path().join("layer-a"), dir.path().join("layer-b")];
        let bundle = bundle_dir(&dir.path().join("pod"), "app", 3);
        assert!(bundle.ends_with("pod/containers/app-3"));
        let sys = RecordingSyscall::default();
        let rootfs = mount_rootfs(&sys, &bundle, &layers).expect("mount");
        assert_eq!(std::fs::read_link(bundle.join("l/1")).expect("link"), layers[1]);
        assert!(bundle.join("upper").is_dir() && bundle.join("work").is_dir());
        assert_eq!(
            sys.calls(),
            [SysCall::MountOverlay {
                target: rootfs.clone(),
                overlay: Overlay {
                    dir: bundle.clone(),
                    lower: vec!["l/1".into(), "l/0".into()],
                    upper: "upper".into(),
                    work: "work".into()
                }
            }]
        );
        remove_bundle(&sys, &bundle).expect("remove");
        assert!(!bundle.exists());
        assert_eq!(sys.calls().last(), Some(&SysCall::Umount { target: rootfs, detach: true }));
        remove_bundle(&sys, &bundle).expect("idempotent");
    }

    #[test]
    fn a_failed_mount_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = bundle_dir(dir.path(), "app", 0);
        let sys = RecordingSyscall::default();
        sys.fail_on(
            SysCall::MountOverlay { target: rootfs_dir(&bundle), overlay: plan_overlay(&bundle, &[]) },
            nix::errno::Errno::EINVAL,
        );
        let e = mount_rootfs(&sys, &bundle, &[]).unwrap_err();
        assert!(e.to_string().starts_with("mount the root file system: MountOverlay"), "{e}");
        assert!(!bundle.exists());
    }
}
