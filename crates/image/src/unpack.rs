//! Unpacking one layer into its own directory, in overlayfs' form.
//!
//! A layer is a tar stream, uncompressed or compressed with gzip or zstd (detected from its first
//! bytes, whatever the media type says). [`unpack_layer`] writes it into an empty directory and
//! returns its diff id (the sha256 of the uncompressed stream, which the caller checks against the
//! image config's `rootfs.diff_ids`). Layers are stacked later with overlayfs, each layer a
//! lower directory, so OCI whiteouts become overlayfs' own:
//! - `dir/.wh.name` → a character device 0/0 at `dir/name` (unless this layer itself has
//!   `dir/name`: a whiteout only hides lower layers);
//! - `dir/.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on `dir`;
//! - other `.wh..wh.*` names (aufs metadata) are skipped.
//!
//! Safety: every file system call is relative to a directory descriptor and never follows a
//! symlink. Each entry's parent is opened component by component from the layer's root with
//! `O_NOFOLLOW | O_DIRECTORY` (missing ones are created 0755), so an entry whose path goes
//! through a symlink, even one this layer created, is refused rather than written elsewhere;
//! the final component is created with `O_CREAT | O_EXCL | O_NOFOLLOW` (or `mkdirat`,
//! `symlinkat`, `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`) after removing what was there.
//! Paths are cleaned: a leading `/` and `.` components are dropped, `..` is refused. A hard
//! link's target must already be in this layer, reached the same way. An archive's own
//! `trusted.overlay.*` attributes are refused (only whiteouts may make overlay metadata).
//!
//! Ownership, modes (setuid included: `chown` comes first) and modification times are kept;
//! ownership, device nodes and extended attributes only when running as root (else owned by the
//! caller, device nodes skipped with a warning, whiteouts refused: overlayfs needs root to read
//! them anyway). Directory modes and times are applied at the end, so that a read-only directory
//! can still be filled.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The overlayfs attribute that makes a directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// A layer that could not be unpacked.
#[derive(Debug, Error)]
pub enum UnpackError {
    /// The stream could not be read or decompressed.
    #[error("layer {layer}: cannot read the archive: {source}")]
    Read {
        /// The layer (its digest).
        layer: String,
        /// Why.
        source: io::Error,
    },
    /// An entry is refused.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Refused {
        /// The layer.
        layer: String,
        /// The entry's path in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A file system call failed.
    #[error("layer {layer}: entry {entry:?}: {op}: {source}")]
    Io {
        /// The layer.
        layer: String,
        /// The entry's path.
        entry: String,
        /// What was being done.
        op: &'static str,
        /// Why it failed.
        source: io::Error,
    },
}

/// How a layer's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from the stream's first bytes.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What unpacking produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed stream.
    pub diff_id: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// The compression found.
    pub compression: Compression,
}

/// Options for [`unpack_layer`].
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Keep owners, device nodes and extended attributes (default: when running as root).
    pub as_root: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self { as_root: rustix::process::geteuid().is_root() }
    }
}

struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// `sha256:<hex>` of a finished hasher.
pub(crate) fn sha256_digest(hasher: Sha256) -> String {
    let bytes = hasher.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in bytes.iter() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Unpacks the (possibly compressed) tar stream `reader` into `dest`, an existing empty
/// directory; `layer` names the layer in errors.
pub fn unpack_layer(
    reader: impl Read,
    dest: &Path,
    layer: &str,
    options: &UnpackOptions,
) -> Result<Unpacked, UnpackError> {
    let read_err = |source| UnpackError::Read { layer: layer.to_string(), source };
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let compression = Compression::sniff(buffered.fill_buf().map_err(read_err)?);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(read_err)?),
    };
    let hashing = Hashing { inner: decompressed, hasher: Sha256::new(), bytes: 0 };
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Io {
        layer: layer.to_string(),
        entry: String::new(),
        op: "open the layer directory",
        source: e.into(),
    })?;
    let mut unpacker = Unpacker {
        layer,
        root,
        as_root: options.as_root,
        cached: None,
        dirs: Vec::new(),
        buf: vec![0; 256 * 1024],
    };
    let mut archive = tar::Archive::new(hashing);
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        unpacker.entry(entry)?;
    }
    unpacker.finish_dirs()?;
    // the diff id covers the whole stream, the end-of-archive blocks and padding included
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
    Ok(Unpacked { diff_id: sha256_digest(hashing.hasher), size: hashing.bytes, compression })
}

struct DirMeta {
    path: Vec<OsString>,
    mode: u32,
    mtime: i64,
}

struct Unpacker<'a> {
    layer: &'a str,
    root: OwnedFd,
    as_root: bool,
    /// The last parent directory opened, by its components.
    cached: Option<(Vec<OsString>, OwnedFd)>,
    dirs: Vec<DirMeta>,
    /// The copy buffer for file contents.
    buf: Vec<u8>,
}

/// Copies with a large buffer (std's `io::copy` uses 8 KiB between a reader and a file).
fn copy_content(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> io::Result<()> {
    use std::io::Write;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
    }
}

fn clean_path(raw: &[u8]) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("the path contains `..`".to_string()),
            p => out.push(OsStr::from_bytes(p).to_os_string()),
        }
    }
    Ok(out)
}

fn display(path: &[OsString]) -> String {
    let parts: Vec<String> = path.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    parts.join("/")
}

impl Unpacker<'_> {
    fn refused(&self, entry: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::Refused {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn io(&self, entry: &str, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + use<> {
        let layer = self.layer.to_string();
        let entry = entry.to_string();
        move |e| UnpackError::Io { layer, entry, op, source: e.into() }
    }

    /// Gives the entry `name` in `parent` its owner (as root), never following a symlink.
    fn chown(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        owner: Option<(rustix::fs::Uid, rustix::fs::Gid)>,
        entry: &str,
    ) -> Result<(), UnpackError> {
        let Some((uid, gid)) = owner else { return Ok(()) };
        rustix::fs::chownat(parent, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.io(entry, "chown"))
    }

    /// Opens `dir` (components from the root) without following symlinks, creating missing
    /// directories when `create`.
    fn open_dir(&mut self, dir: &[OsString], entry: &str, create: bool) -> Result<OwnedFd, UnpackError> {
        if let Some((path, fd)) = &self.cached
            && path.as_slice() == dir
        {
            return fd.try_clone().map_err(|e| UnpackError::Io {
                layer: self.layer.to_string(),
                entry: entry.to_string(),
                op: "duplicate a directory descriptor",
                source: e,
            });
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut cur = rustix::io::dup(&self.root).map_err(self.io(entry, "duplicate the root descriptor"))?;
        for (i, comp) in dir.iter().enumerate() {
            let next = match rustix::fs::openat(&cur, comp.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.io(entry, "create a parent directory")(e)),
                    }
                    rustix::fs::openat(&cur, comp.as_os_str(), flags, Mode::empty())
                        .map_err(self.io(entry, "open a parent directory"))?
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(self.refused(
                        entry,
                        format!("its parent {} is not a directory (a symlink or a file); refusing to write through it", display(&dir[..=i])),
                    ));
                }
                Err(Errno::NOENT) => {
                    return Err(
                        self.refused(entry, format!("{} does not exist in this layer", display(&dir[..=i])))
                    );
                }
                Err(e) => return Err(self.io(entry, "open a parent directory")(e)),
            };
            cur = next;
        }
        let copy = cur.try_clone().map_err(|e| UnpackError::Io {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            op: "duplicate a directory descriptor",
            source: e,
        })?;
        self.cached = Some((dir.to_vec(), copy));
        Ok(cur)
    }

    /// Removes whatever is at `name` in `parent`, unless it is a directory and `keep_dir`.
    /// Returns whether a directory was kept.
    fn clear(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &str,
        keep_dir: bool,
    ) -> Result<bool, UnpackError> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.io(entry, "stat")(e)),
            Ok(st) => {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    if keep_dir {
                        return Ok(true);
                    }
                    return Err(self.refused(entry, "it would replace a directory of this layer"));
                }
                rustix::fs::unlinkat(parent, name, AtFlags::empty())
                    .map_err(self.io(entry, "remove the previous entry"))?;
                self.cached = None;
                Ok(false)
            }
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = clean_path(&raw).map_err(|reason| self.refused(&shown, reason))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| self.read(&shown, e))? & 0o7777;
        // as Go's archive/tar (which wrote most layers), an empty numeric field is 0
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0) as i64;
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);

        let Some((name, dir)) = path.split_last() else {
            // the root itself ("./"): its mode and owner
            if kind.is_dir() {
                self.dirs.push(DirMeta { path: Vec::new(), mode, mtime });
                if self.as_root {
                    rustix::fs::fchown(
                        &self.root,
                        Some(rustix::fs::Uid::from_raw(uid as u32)),
                        Some(rustix::fs::Gid::from_raw(gid as u32)),
                    )
                    .map_err(self.io(&shown, "chown"))?;
                }
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();

        // whiteouts
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if name_bytes == OPAQUE_MARKER.as_bytes() {
                let fd = self.open_dir(dir, &shown, true)?;
                self.need_root(&shown, "an opaque directory")?;
                rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(self.io(&shown, "set trusted.overlay.opaque"))?;
                return Ok(());
            }
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
                tracing::debug!(layer = self.layer, entry = %shown, "skipping whiteout metadata");
                return Ok(());
            }
            self.need_root(&shown, "a whiteout")?;
            let parent = self.open_dir(dir, &shown, true)?;
            let hidden = OsStr::from_bytes(hidden);
            match rustix::fs::statat(&parent, hidden, AtFlags::SYMLINK_NOFOLLOW) {
                // this layer has the file: a whiteout hides only lower layers
                Ok(_) => return Ok(()),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(self.io(&shown, "stat")(e)),
            }
            rustix::fs::mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(self.io(&shown, "create a whiteout device"))?;
            return Ok(());
        }

        let xattrs = self.xattrs(&mut entry, &shown)?;
        let parent = self.open_dir(dir, &shown, true)?;
        let owner = self
            .as_root
            .then(|| (rustix::fs::Uid::from_raw(uid as u32), rustix::fs::Gid::from_raw(gid as u32)));
        let times = Timestamps {
            last_access: Timespec { tv_sec: mtime, tv_nsec: 0 },
            last_modification: Timespec { tv_sec: mtime, tv_nsec: 0 },
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.replace_whiteout_or_clear(&parent, name, &shown)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(self.io(&shown, "create"))?;
                let mut file = File::from(fd);
                copy_content(&mut entry, &mut file, &mut self.buf).map_err(|e| UnpackError::Io {
                    layer: self.layer.to_string(),
                    entry: shown.clone(),
                    op: "write",
                    source: e,
                })?;
                if let Some((u, g)) = owner {
                    rustix::fs::fchown(&file, Some(u), Some(g)).map_err(self.io(&shown, "chown"))?;
                }
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(self.io(&shown, "chmod"))?;
                self.set_xattrs(file.as_fd(), &xattrs, &shown)?;
                rustix::fs::futimens(&file, &times).map_err(self.io(&shown, "set times"))?;
            }
            tar::EntryType::Directory => {
                let existed = self.clear(&parent, name, &shown, true)?;
                if !existed {
                    rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(self.io(&shown, "create a directory"))?;
                }
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(self.io(&shown, "open a directory"))?;
                if let Some((u, g)) = owner {
                    rustix::fs::fchown(&fd, Some(u), Some(g)).map_err(self.io(&shown, "chown"))?;
                }
                self.set_xattrs(fd.as_fd(), &xattrs, &shown)?;
                self.dirs.push(DirMeta { path: path.clone(), mode, mtime });
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refused(&shown, "a symlink without a target"))?
                    .into_owned();
                self.replace_whiteout_or_clear(&parent, name, &shown)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                    .map_err(self.io(&shown, "create a symlink"))?;
                self.chown(&parent, name, owner, &shown)?;
                rustix::fs::utimensat(&parent, name.as_os_str(), &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(self.io(&shown, "set times"))?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refused(&shown, "a hard link without a target"))?
                    .into_owned();
                let target = clean_path(&target_raw)
                    .map_err(|r| self.refused(&shown, format!("hard link target: {r}")))?;
                let Some((tname, tdir)) = target.split_last() else {
                    return Err(self.refused(&shown, "a hard link to the layer's root"));
                };
                if target == path {
                    return Ok(());
                }
                let tparent = self.open_dir(tdir, &shown, false).map_err(|e| match e {
                    UnpackError::Refused { .. } => self.refused(
                        &shown,
                        format!(
                            "hard link target {} is not in this layer or goes through a symlink",
                            display(&target)
                        ),
                    ),
                    other => other,
                })?;
                let parent = self.open_dir(dir, &shown, true)?;
                self.replace_whiteout_or_clear(&parent, name, &shown)?;
                rustix::fs::linkat(&tparent, tname.as_os_str(), &parent, name.as_os_str(), AtFlags::empty())
                    .map_err(|e| {
                        if e == Errno::NOENT {
                            self.refused(
                                &shown,
                                format!("hard link target {} is not in this layer", display(&target)),
                            )
                        } else {
                            self.io(&shown, "create a hard link")(e)
                        }
                    })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !self.as_root {
                    tracing::warn!(layer = self.layer, entry = %shown, "skipping a device node: not running as root");
                    return Ok(());
                }
                self.replace_whiteout_or_clear(&parent, name, &shown)?;
                rustix::fs::mknodat(
                    &parent,
                    name.as_os_str(),
                    file_type,
                    Mode::from_raw_mode(mode),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(self.io(&shown, "create a device node"))?;
                self.chown(&parent, name, owner, &shown)?;
                rustix::fs::chmodat(&parent, name.as_os_str(), Mode::from_raw_mode(mode), AtFlags::empty())
                    .map_err(self.io(&shown, "chmod"))?;
            }
            other => {
                tracing::debug!(layer = self.layer, entry = %shown, kind = ?other, "skipping an entry of an unsupported type");
            }
        }
        Ok(())
    }

    fn read(&self, entry: &str, source: io::Error) -> UnpackError {
        UnpackError::Io {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            op: "read the header",
            source,
        }
    }

    fn need_root(&self, entry: &str, what: &str) -> Result<(), UnpackError> {
        if self.as_root {
            Ok(())
        } else {
            Err(self.refused(
                entry,
                format!("{what} needs root (overlayfs' whiteouts are device nodes and trusted.* attributes)"),
            ))
        }
    }

    /// A regular entry replaces a whiteout this layer made earlier for the same name, or any
    /// other non-directory.
    fn replace_whiteout_or_clear(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &str,
    ) -> Result<(), UnpackError> {
        self.clear(parent, name, entry, false).map(|_| ())
    }

    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, UnpackError> {
        let mut out = Vec::new();
        let Some(exts) = entry.pax_extensions().map_err(|e| self.read(shown, e))? else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.read(shown, e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name.starts_with("trusted.overlay.") {
                    return Err(self.refused(shown, format!("it sets the overlay attribute {name}")));
                }
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
        Ok(out)
    }

    fn set_xattrs(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        xattrs: &[(String, Vec<u8>)],
        shown: &str,
    ) -> Result<(), UnpackError> {
        if !self.as_root {
            return Ok(());
        }
        for (name, value) in xattrs {
            match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::OPNOTSUPP | Errno::PERM)) => {
                    tracing::warn!(layer = self.layer, entry = %shown, xattr = %name, error = %e, "extended attribute not kept");
                }
                Err(e) => return Err(self.io(shown, "set an extended attribute")(e)),
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dirs);
        // deepest first, so that no later change touches a directory already finished
        let mut dirs = dirs;
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.len()));
        for d in dirs {
            let shown = display(&d.path);
            let fd = self.open_dir(&d.path, &shown, false)?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(d.mode)).map_err(self.io(&shown, "chmod"))?;
            let times = Timestamps {
                last_access: Timespec { tv_sec: d.mtime, tv_nsec: 0 },
                last_modification: Timespec { tv_sec: d.mtime, tv_nsec: 0 },
            };
            rustix::fs::futimens(&fd, &times).map_err(self.io(&shown, "set times"))?;
        }
        self.cached = None;
        Ok(())
    }
}
