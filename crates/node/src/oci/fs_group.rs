//! `fsGroup`: the pod's volumes made group-owned by it, as the kubelet's `SetVolumeOwnership`
//! does: every file and directory gets the group, `g+rw` (`g+r` on a read-only volume), and
//! directories also `g+x` and set-group-ID, so new files inherit the group. Symlinks are
//! re-grouped (`lchown`) but never followed. `hostPath` volumes are left alone.
//! `fsGroupChangePolicy: OnRootMismatch` skips a volume whose root already has the group and
//! permissions.

use super::OciError;
use crate::volumes::{PlannedVolume, VolumeKind};
use nix::unistd::{Gid, chown};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const RW: u32 = 0o060;
const RO: u32 = 0o040;
const DIR_EXTRA: u32 = 0o2010;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io { path: path.to_owned(), source }
}

fn wanted(mode: u32, is_dir: bool, mask: u32) -> u32 {
    mode | mask | if is_dir { DIR_EXTRA } else { 0 }
}

fn apply_one(path: &Path, gid: u32, mask: u32) -> Result<(), OciError> {
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    if meta.gid() != gid {
        if meta.file_type().is_symlink() {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                path,
                None,
                Some(Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        } else {
            chown(path, None, Some(Gid::from_raw(gid)))
        }
        .map_err(|e| io(path)(e.into()))?;
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let want = wanted(mode, meta.is_dir(), mask);
    if want != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).map_err(io(path))?;
    }
    if meta.is_dir() {
        for e in std::fs::read_dir(path).map_err(io(path))? {
            apply_one(&e.map_err(io(path))?.path(), gid, mask)?;
        }
    }
    Ok(())
}

/// Gives `volume` to group `gid`; `on_root_mismatch` is `fsGroupChangePolicy: OnRootMismatch`.
pub fn apply(volume: &PlannedVolume, gid: u32, on_root_mismatch: bool) -> Result<(), OciError> {
    if volume.kind == VolumeKind::HostPath || !volume.path.exists() {
        return Ok(());
    }
    let mask = if volume.force_readonly { RO } else { RW };
    if on_root_mismatch {
        let meta = std::fs::metadata(&volume.path).map_err(io(&volume.path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.gid() == gid && wanted(mode, meta.is_dir(), mask) == mode {
            return Ok(());
        }
    }
    apply_one(&volume.path, gid, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn volume(path: PathBuf, kind: VolumeKind, ro: bool) -> PlannedVolume {
        PlannedVolume { name: "v".into(), kind, path, tmpfs: None, force_readonly: ro }
    }

    #[test]
    fn groups_and_modes_follow_the_kubelet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(root.join("sub/f"), "x").expect("write");
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
        // Our own group, so this runs without root.
        let gid = nix::unistd::getegid().as_raw();
        apply(&volume(root.clone(), VolumeKind::EmptyDir, false), gid, false).expect("apply");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o2770);
        assert_eq!(mode(&root.join("sub")) & 0o2070, 0o2070);
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        assert_ne!(mode(Path::new("/etc/passwd")) & 0o7777, 0o2770, "the symlink's target is untouched");
        // OnRootMismatch: a matching root stops the walk.
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        apply(&volume(root.clone(), VolumeKind::EmptyDir, false), gid, true).expect("apply");
        assert_eq!(mode(&root.join("sub/f")), 0o600);
        // Read-only volumes get g+r only; hostPath nothing.
        let ro = dir.path().join("cfg");
        std::fs::create_dir(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        apply(&volume(ro.clone(), VolumeKind::DownwardApi, true), gid, false).expect("apply");
        assert_eq!(mode(&ro), 0o2750);
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        apply(&volume(ro.clone(), VolumeKind::HostPath, false), gid, false).expect("apply");
        assert_eq!(mode(&ro), 0o700);
    }
}
