//! Unpacking layers into overlay form, and the content store around it.
//!
//! Whiteouts, device nodes, owners and `trusted.*` attributes need root: those tests skip with a
//! message when not root, and fail under CI, which runs as root (see `stead-testkit`).

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::Digest;
use stead_image::store::{IndexEntry, Store, StoreError, sha256_of};
use stead_image::unpack::{Compression, OPAQUE_XATTR, UnpackOptions, unpack_layer};

/// Whether a root-only test may run here; under CI not being root is a failure.
fn need_root() -> bool {
    stead_testkit::require_root("whiteouts, device nodes, owners and trusted.* attributes")
}

/// A tar entry, written with raw names so that tests can build hostile archives.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Owned(&'a str, u32, u32, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    Char(&'a str, u32, u32),
    Xattr(&'a str, &'a str, &'a [u8]),
}

fn raw_header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(name, mode) => {
                let mut h = raw_header(tar::EntryType::Directory, name, *mode, 0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::File(name, mode, data) => {
                let mut h = raw_header(tar::EntryType::Regular, name, *mode, data.len() as u64);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Owned(name, mode, uid, gid, data) => {
                let mut h = raw_header(tar::EntryType::Regular, name, *mode, data.len() as u64);
                h.set_uid(u64::from(*uid));
                h.set_gid(u64::from(*gid));
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Symlink(name, target) | E::Hardlink(name, target) => {
                let kind =
                    if matches!(e, E::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                let mut h = raw_header(kind, name, 0o777, 0);
                let t = target.as_bytes();
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Fifo(name) => {
                let mut h = raw_header(tar::EntryType::Fifo, name, 0o600, 0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Char(name, major, minor) => {
                let mut h = raw_header(tar::EntryType::Char, name, 0o666, 0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Xattr(name, key, value) => {
                let pax_key = format!("SCHILY.xattr.{key}");
                b.append_pax_extensions([(pax_key.as_str(), *value)]).unwrap();
                let mut h = raw_header(tar::EntryType::Regular, name, 0o644, 1);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn unpack(
    tar: &[u8],
    dest: &Path,
) -> Result<stead_image::unpack::Unpacked, stead_image::unpack::UnpackError> {
    unpack_layer(tar, dest, "sha256:test", &UnpackOptions::default())
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn files_dirs_links_modes_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        E::Dir("usr/", 0o755),
        E::Dir("usr/bin/", 0o555),
        E::File("usr/bin/tool", 0o4755, b"#!/bin/sh\necho hi\n"),
        E::Symlink("bin", "usr/bin"),
        E::Hardlink("usr/bin/tool2", "usr/bin/tool"),
        E::File("deep/implicit/parents.txt", 0o640, b"p"),
        E::File("/abs/is/relative", 0o644, b"a"),
        E::File("./dot/./file", 0o644, b"d"),
        E::Fifo("run/fifo"),
        E::File("replaced", 0o644, b"old"),
        E::File("replaced", 0o600, b"new"),
    ]);
    let got = unpack(&tar, dir.path()).unwrap();
    assert_eq!(got.compression, Compression::None);
    assert_eq!(got.diff_id, format!("sha256:{}", sha256_hex(&tar)));
    assert_eq!(got.size, tar.len() as u64);

    let root = dir.path();
    let tool = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(tool.mtime(), 1_700_000_000);
    assert_eq!(std::fs::read(root.join("usr/bin/tool2")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(std::fs::metadata(root.join("usr/bin/tool2")).unwrap().ino(), tool.ino(), "a hard link");
    assert_eq!(std::fs::read_link(root.join("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(std::fs::metadata(root.join("usr/bin")).unwrap().permissions().mode() & 0o7777, 0o555);
    assert_eq!(std::fs::metadata(root.join("usr/bin")).unwrap().mtime(), 1_700_000_000);
    assert_eq!(std::fs::read(root.join("deep/implicit/parents.txt")).unwrap(), b"p");
    assert_eq!(std::fs::read(root.join("abs/is/relative")).unwrap(), b"a");
    assert_eq!(std::fs::read(root.join("dot/file")).unwrap(), b"d");
    assert!(std::fs::symlink_metadata(root.join("run/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::read(root.join("replaced")).unwrap(), b"new");
    assert_eq!(std::fs::metadata(root.join("replaced")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn gzip_zstd_and_plain_give_the_same_layer_and_diff_id() {
    let tar = tar_of(&[E::Dir("etc/", 0o755), E::File("etc/os-release", 0o644, b"ID=test\n")]);
    let zstd = zstd::encode_all(&tar[..], 3).unwrap();
    let mut ids = Vec::new();
    for (bytes, want) in
        [(tar.clone(), Compression::None), (gzip(&tar), Compression::Gzip), (zstd, Compression::Zstd)]
    {
        let dir = tempfile::tempdir().unwrap();
        let got = unpack(&bytes, dir.path()).unwrap();
        assert_eq!(got.compression, want);
        assert_eq!(std::fs::read(dir.path().join("etc/os-release")).unwrap(), b"ID=test\n");
        ids.push(got.diff_id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[test]
fn nothing_escapes_the_layer() {
    let outside = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tar_of(&[E::File("../escape", 0o644, b"x")]), "the path contains `..`"),
        (tar_of(&[E::File("a/../../escape", 0o644, b"x")]), "the path contains `..`"),
        (
            tar_of(&[
                E::Symlink("evil", outside.path().to_str().unwrap()),
                E::File("evil/planted", 0o644, b"x"),
            ]),
            "its parent evil is not a directory (a symlink or a file)",
        ),
        (
            tar_of(&[E::Symlink("rel", "../../.."), E::File("rel/planted", 0o644, b"x")]),
            "its parent rel is not a directory",
        ),
        (
            tar_of(&[E::File("file", 0o644, b"x"), E::File("file/child", 0o644, b"x")]),
            "its parent file is not a directory",
        ),
        (tar_of(&[E::Hardlink("passwd", "../../etc/passwd")]), "hard link target: the path contains `..`"),
        (
            tar_of(&[E::Hardlink("link", "not/here")]),
            "hard link target not/here is not in this layer or goes through a symlink",
        ),
        (
            tar_of(&[E::Dir("d/", 0o755), E::Hardlink("link", "d/missing")]),
            "hard link target d/missing is not in this layer",
        ),
        (
            tar_of(&[E::Dir("d/", 0o755), E::File("d", 0o644, b"x")]),
            "it would replace a directory of this layer",
        ),
    ];
    for (tar, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&tar, dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("layer sha256:test: entry "), "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
    // a symlink whose target is outside is just data: it is created, never followed
    let dir = tempfile::tempdir().unwrap();
    unpack(&tar_of(&[E::Symlink("etc-passwd", "/etc/passwd")]), dir.path()).unwrap();
    assert_eq!(std::fs::read_link(dir.path().join("etc-passwd")).unwrap(), Path::new("/etc/passwd"));
}

#[test]
fn whiteouts_and_opaque_directories_in_overlay_form() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        E::Dir("etc/", 0o755),
        E::File("etc/.wh.removed.conf", 0o644, b""),
        E::File("var/cache/.wh..wh..opq", 0o644, b""),
        E::File("var/cache/fresh", 0o644, b"f"),
        // a whiteout for a name this layer has: the file stays
        E::File("etc/kept", 0o644, b"k"),
        E::File("etc/.wh.kept", 0o644, b""),
        // a whiteout, then the file again in the same layer: the file wins
        E::File("etc/.wh.back", 0o644, b""),
        E::File("etc/back", 0o644, b"b"),
        E::File(".wh..wh.plnk", 0o644, b""),
    ]);
    unpack(&tar, dir.path()).unwrap();
    let root = dir.path();
    let wh = std::fs::symlink_metadata(root.join("etc/removed.conf")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0, "a 0/0 device");
    assert!(!root.join("etc/.wh.removed.conf").exists());
    let opaque = xattr_of(&root.join("var/cache"), OPAQUE_XATTR);
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    assert!(!root.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(std::fs::read(root.join("var/cache/fresh")).unwrap(), b"f");
    assert_eq!(std::fs::read(root.join("etc/kept")).unwrap(), b"k");
    assert_eq!(std::fs::read(root.join("etc/back")).unwrap(), b"b");
    assert!(!root.join(".wh..wh.plnk").exists() && !root.join(".wh.plnk").exists());
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

#[test]
fn owners_devices_and_attributes_as_root() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[
        E::Owned("home/app/data", 0o2750, 1000, 1001, b"d"),
        E::Char("dev/null", 1, 3),
        E::Xattr("bin/ping", "user.stead-test", b"v"),
    ]);
    unpack(&tar, dir.path()).unwrap();
    let m = std::fs::metadata(dir.path().join("home/app/data")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.permissions().mode() & 0o7777, 0o2750, "setgid kept after chown");
    let null = std::fs::symlink_metadata(dir.path().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(xattr_of(&dir.path().join("bin/ping"), "user.stead-test").as_deref(), Some(&b"v"[..]));

    let err = unpack(
        &tar_of(&[E::Xattr("x", "trusted.overlay.redirect", b"/etc")]),
        tempfile::tempdir().unwrap().path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("it sets the overlay attribute trusted.overlay.redirect"), "{err}");
}

#[test]
fn unprivileged_unpacking_refuses_whiteouts_and_keeps_going_without_owners() {
    let dir = tempfile::tempdir().unwrap();
    let options = UnpackOptions { as_root: false };
    let tar = tar_of(&[E::Owned("f", 0o644, 4242, 4242, b"x"), E::Char("dev/null", 1, 3)]);
    unpack_layer(&tar[..], dir.path(), "l", &options).unwrap();
    assert_ne!(std::fs::metadata(dir.path().join("f")).unwrap().uid(), 4242);
    assert!(!dir.path().join("dev/null").exists(), "device nodes skipped");
    let err = unpack_layer(
        &tar_of(&[E::File(".wh.x", 0o644, b"")])[..],
        tempfile::tempdir().unwrap().path(),
        "l",
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("a whiteout needs root"), "{err}");
}

#[test]
fn corrupt_streams_are_errors_naming_the_layer() {
    let tar = tar_of(&[E::File("f", 0o644, b"hello")]);
    let mut gz = gzip(&tar);
    let n = gz.len();
    gz.truncate(n / 2);
    let err = unpack(&gz, tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
    assert!(err.starts_with("layer sha256:test: "), "{err}");
}

// === the store ===

#[test]
fn blobs_are_verified_before_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = sha256_of(b"config");
    store.write_blob(&good, b"config").unwrap();
    assert!(store.has_blob(&good));
    assert_eq!(store.read_blob(&good).unwrap(), b"config");
    let err = store.write_blob(&good, b"tampered").unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }));
    assert_eq!(
        err.to_string(),
        format!("blob {good} failed verification: its content has digest {}", sha256_of(b"tampered"))
    );
    let err = store.blob_path("sha256:ABC").unwrap_err().to_string();
    assert_eq!(err, "unsupported or malformed digest \"sha256:ABC\" (only sha256 is supported)");
    assert!(store.blob_path("md5:00").is_err());
}

#[test]
fn a_partial_download_resumes_from_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_of(&data);
    {
        let mut p = store.open_partial(&digest).unwrap();
        assert_eq!(p.len(), 0);
        p.write(&data[..40_000]).unwrap();
        // dropped: the process "died" here
    }
    let mut p = store.open_partial(&digest).unwrap();
    assert_eq!(p.len(), 40_000);
    p.write(&data[40_000..]).unwrap();
    let path = store.commit_partial(p).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert!(store.has_blob(&digest));

    // a wrong download is dropped, so the next attempt starts over
    let other = sha256_of(b"other");
    let mut p = store.open_partial(&other).unwrap();
    p.write(b"not other").unwrap();
    let err = store.commit_partial(p).unwrap_err().to_string();
    assert!(err.starts_with(&format!("blob {other} failed verification")), "{err}");
    assert_eq!(store.open_partial(&other).unwrap().len(), 0);
}

#[test]
fn layers_are_unpacked_once_and_checked_against_the_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar = tar_of(&[E::File("hello", 0o644, b"world")]);
    let gz = gzip(&tar);
    let blob = sha256_of(&gz);
    let diff_id = sha256_of(&tar);
    store.write_blob(&blob, &gz).unwrap();

    // a wrong diff id: refused, nothing left behind, the blob kept
    let wrong = sha256_of(b"wrong");
    let err = store.unpack_blob(&blob, &wrong, &UnpackOptions::default()).unwrap_err().to_string();
    assert_eq!(err, format!("layer {blob} unpacked to diff id {diff_id}, but the image config says {wrong}"));
    assert!(!store.has_layer(&wrong));
    assert!(store.has_blob(&blob));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("layers")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let path = store.unpack_blob(&blob, &diff_id, &UnpackOptions::default()).unwrap();
    assert_eq!(std::fs::read(path.join("hello")).unwrap(), b"world");
    assert!(store.has_layer(&diff_id));
    assert!(!store.has_blob(&blob), "the compressed blob goes once unpacked");

    // an interrupted unpacking leaves a .tmp- directory, which the next open removes
    std::fs::create_dir_all(dir.path().join("layers/.tmp-abc-1/sub")).unwrap();
    std::fs::set_permissions(
        dir.path().join("layers/.tmp-abc-1/sub"),
        std::fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!dir.path().join("layers/.tmp-abc-1").exists());
    assert!(store.has_layer(&diff_id));
}

#[test]
fn the_index_records_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = IndexEntry {
        manifest: sha256_of(b"m"),
        index: None,
        config: sha256_of(b"c"),
        diff_ids: vec![sha256_of(b"l")],
    };
    assert_eq!(store.lookup("docker.io/library/alpine:3.20").unwrap(), None);
    store.record("docker.io/library/alpine:3.20", entry.clone()).unwrap();
    assert_eq!(store.lookup("docker.io/library/alpine:3.20").unwrap(), Some(entry.clone()));
    assert!(!store.is_complete(&entry));
    store.write_blob(&entry.manifest, b"m").unwrap();
    store.write_blob(&entry.config, b"c").unwrap();
    std::fs::create_dir(store.layer_path(&entry.diff_ids[0]).unwrap()).unwrap();
    assert!(store.is_complete(&entry));
    // reopened: still there
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.forget("docker.io/library/alpine:3.20").unwrap(), Some(entry));
    assert!(store.list().unwrap().is_empty());
    std::fs::write(dir.path().join("index.json"), "{").unwrap();
    let err = store.list().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "image store index {} is not valid",
            dir.path().join("index.json").display()
        )),
        "{err}"
    );
}
