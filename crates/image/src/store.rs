//! The content-addressed image store, shared by all pods (`<state>/images/`).
//!
//! ```text
//! blobs/sha256/<hex>      manifests, indexes and configs (and layer blobs until unpacked)
//! partial/<hex>           a blob being downloaded: its bytes so far, resumed from its length
//! layers/<hex>/           one unpacked layer per diff id (sha256 of the uncompressed tar)
//! layers/.tmp-<hex>-<n>/  a layer being unpacked
//! partial/.scratch-<n>/   an archive being loaded (`stead image load`), removed on open
//! index.json              pulled references -> manifest digest, config digest, diff ids
//! ```
//!
//! - Architecture invariant: a file under `blobs/` has the digest it is named by: bytes are
//!   written to `partial/`, hashed, synced and only then renamed into place; a mismatch deletes
//!   the partial file and is an error naming both digests.
//! - Architecture invariant: a directory `layers/<hex>/` is complete: layers are unpacked into
//!   a temporary directory, their diff id checked against the image config, the file system
//!   synced (`syncfs`), and the directory renamed. Leftover temporary directories are removed
//!   by [`Store::open`].
//! - A layer's compressed blob is deleted once its layer is unpacked (the unpacked directory is
//!   what is kept; an image is re-downloaded only if that directory goes).
//! - One process uses a store at a time (the engine holds the state directory's lock); within
//!   it, downloads of the same blob are serialized by [`Store::blob_lock`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::unpack::{self, UnpackError, UnpackOptions, Unpacked};

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A digest that is not `sha256:` and 64 lower-case hex digits.
    #[error("unsupported or malformed digest {0:?} (only sha256 is supported)")]
    BadDigest(String),
    /// Content does not match its digest.
    #[error("blob {expected} failed verification: its content has digest {actual}")]
    DigestMismatch {
        /// The digest it should have had.
        expected: String,
        /// The digest of what was received.
        actual: String,
    },
    /// An unpacked layer's diff id is not the one in the image config.
    #[error("layer {blob} unpacked to diff id {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        /// The layer's blob digest.
        blob: String,
        /// The config's diff id.
        expected: String,
        /// What the stream hashed to.
        actual: String,
    },
    /// Unpacking failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A file operation failed.
    #[error("image store: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The index file is not valid.
    #[error("image store index {path} is not valid: {reason}")]
    Index {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// The hex part of a `sha256:<hex>` digest, checked.
pub fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(hex)
        }
        _ => Err(StoreError::BadDigest(digest.to_string())),
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_of(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    unpack::sha256_digest(h)
}

/// What the store remembers of a pulled reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The image manifest's digest (the platform's, when the reference named an index).
    pub manifest: String,
    /// The image index's digest, when the reference named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The config blob's digest.
    pub config: String,
    /// The layers' diff ids, bottom first.
    pub diff_ids: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    images: BTreeMap<String, IndexEntry>,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    index: parking_lot_free::Mutex<()>,
    locks: parking_lot_free::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tmp_counter: AtomicU64,
}

/// std's mutex under a short name; poisoning is ignored (the guarded data is `()` or a map of
/// locks, never left half-changed).
mod parking_lot_free {
    #[derive(Debug, Default)]
    pub struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Self(std::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// A blob being downloaded into `partial/`.
#[derive(Debug)]
pub struct PartialBlob {
    path: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    len: u64,
    digest: String,
}

impl PartialBlob {
    /// Bytes already there (the offset to resume from).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was downloaded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(bytes).map_err(io_err("write", &self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Drops what was downloaded (the server answered with the whole blob, or it was too long).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(io_err("truncate", &self.path))?;
        use std::io::Seek;
        self.file.seek(std::io::SeekFrom::Start(0)).map_err(io_err("seek", &self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }
}

impl Store {
    /// Opens (creating) a store at `root`, removing leftovers of interrupted unpacking.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in ["blobs/sha256", "partial", "layers"] {
            let p = root.join(dir);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        let layers = root.join("layers");
        for entry in std::fs::read_dir(&layers).map_err(io_err("list", &layers))? {
            let entry = entry.map_err(io_err("list", &layers))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                remove_tree(&entry.path())?;
            }
        }
        let partial = root.join("partial");
        for entry in std::fs::read_dir(&partial).map_err(io_err("list", &partial))? {
            let entry = entry.map_err(io_err("list", &partial))?;
            if entry.file_name().to_string_lossy().starts_with(".scratch-") {
                remove_tree(&entry.path())?;
            }
        }
        Ok(Self {
            root,
            index: parking_lot_free::Mutex::new(()),
            locks: parking_lot_free::Mutex::new(BTreeMap::new()),
            tmp_counter: AtomicU64::new(0),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a verified blob lives.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Whether a verified blob is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// A verified blob's bytes.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest)?;
        std::fs::read(&path).map_err(io_err("read", &path))
    }

    /// Stores `bytes` as the blob `digest`, after checking they have it.
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(digest)?;
        let actual = sha256_of(bytes);
        if actual != digest {
            return Err(StoreError::DigestMismatch { expected: digest.to_string(), actual });
        }
        if path.is_file() {
            return Ok(path);
        }
        let tmp = self.root.join("partial").join(format!("{}.{}", digest_hex(digest)?, self.next_tmp()));
        let mut f = std::fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        Ok(path)
    }

    /// A lock per digest, held while downloading or unpacking it.
    pub fn blob_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(digest.to_string()).or_default().clone()
    }

    /// Opens the partial download of `digest`, with the hash of the bytes already there.
    pub fn open_partial(&self, digest: &str) -> Result<PartialBlob, StoreError> {
        let path = self.root.join("partial").join(digest_hex(digest)?);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io_err("read", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok(PartialBlob { path, file, hasher, len, digest: digest.to_string() })
    }

    /// Verifies a finished download and moves it into `blobs/`; on a mismatch the partial file
    /// is deleted (the next attempt starts over).
    pub fn commit_partial(&self, partial: PartialBlob) -> Result<PathBuf, StoreError> {
        let actual = unpack::sha256_digest(partial.hasher);
        if actual != partial.digest {
            let _ = std::fs::remove_file(&partial.path);
            return Err(StoreError::DigestMismatch { expected: partial.digest, actual });
        }
        partial.file.sync_all().map_err(io_err("sync", &partial.path))?;
        let dest = self.blob_path(&partial.digest)?;
        std::fs::rename(&partial.path, &dest).map_err(io_err("rename", &partial.path))?;
        Ok(dest)
    }

    /// Where an unpacked layer lives.
    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, StoreError> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    /// Whether a layer is unpacked.
    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_path(diff_id).is_ok_and(|p| p.is_dir())
    }

    /// Unpacks the blob `blob` (a stored, verified layer blob) as the layer `diff_id`; blocking.
    /// Returns the layer's directory. The blob is deleted afterwards.
    pub fn unpack_blob(
        &self,
        blob: &str,
        diff_id: &str,
        options: &UnpackOptions,
    ) -> Result<PathBuf, StoreError> {
        let dest = self.layer_path(diff_id)?;
        let blob_path = self.blob_path(blob)?;
        if dest.is_dir() {
            let _ = std::fs::remove_file(&blob_path);
            return Ok(dest);
        }
        let file = std::fs::File::open(&blob_path).map_err(io_err("open", &blob_path))?;
        self.unpack_reader(file, blob, diff_id, options)?;
        let _ = std::fs::remove_file(&blob_path);
        Ok(dest)
    }

    /// Unpacks a layer stream into `layers/<diff id>/` (blocking); `label` names it in errors.
    /// The stream's diff id must be `diff_id`.
    pub fn unpack_reader(
        &self,
        reader: impl Read,
        label: &str,
        diff_id: &str,
        options: &UnpackOptions,
    ) -> Result<Unpacked, StoreError> {
        let dest = self.layer_path(diff_id)?;
        let tmp = self.root.join("layers").join(format!(".tmp-{}-{}", digest_hex(diff_id)?, self.next_tmp()));
        std::fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
        let result = unpack::unpack_layer(reader, &tmp, label, options).map_err(StoreError::from).and_then(
            |unpacked| {
                if unpacked.diff_id != diff_id {
                    return Err(StoreError::DiffIdMismatch {
                        blob: label.to_string(),
                        expected: diff_id.to_string(),
                        actual: unpacked.diff_id,
                    });
                }
                Ok(unpacked)
            },
        );
        let unpacked = match result {
            Ok(u) => u,
            Err(e) => {
                let _ = remove_tree(&tmp);
                return Err(e);
            }
        };
        let dir = std::fs::File::open(&tmp).map_err(io_err("open", &tmp))?;
        rustix::fs::syncfs(&dir).map_err(|e| StoreError::Io {
            op: "sync",
            path: tmp.clone(),
            source: e.into(),
        })?;
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => {}
            // unpacked meanwhile by someone else: theirs is as good
            Err(_) if dest.is_dir() => remove_tree(&tmp)?,
            Err(e) => return Err(io_err("rename", &tmp)(e)),
        }
        Ok(unpacked)
    }

    /// A new empty directory for the caller's temporary files (an archive being loaded); it is
    /// removed by the caller, or by the next [`Store::open`].
    pub fn scratch_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("partial").join(format!(".scratch-{}", self.next_tmp()));
        std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
        Ok(dir)
    }

    /// Removes a scratch directory made by [`Store::scratch_dir`].
    pub fn remove_scratch(&self, dir: &Path) -> Result<(), StoreError> {
        remove_tree(dir)
    }

    /// The digests of every verified blob.
    pub fn blobs(&self) -> Result<Vec<String>, StoreError> {
        self.names_in("blobs/sha256")
    }

    /// The diff ids of every unpacked layer.
    pub fn layers(&self) -> Result<Vec<String>, StoreError> {
        self.names_in("layers")
    }

    /// The `sha256:<hex>` names of a directory's entries (others, such as `.tmp-` ones, skipped).
    fn names_in(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let path = self.root.join(dir);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(io_err("list", &path))? {
            let entry = entry.map_err(io_err("list", &path))?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if digest_hex(&digest).is_ok() {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a blob; returns the bytes freed (0 when it was not there).
    pub fn remove_blob(&self, digest: &str) -> Result<u64, StoreError> {
        let path = self.blob_path(digest)?;
        let size = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
        Ok(size)
    }

    /// Removes an unpacked layer; returns the bytes freed (0 when it was not there). The
    /// directory is first renamed to a `.tmp-` name, so that a removal cut short leaves no
    /// half-empty layer behind (the next open finishes it).
    pub fn remove_layer(&self, diff_id: &str) -> Result<u64, StoreError> {
        let path = self.layer_path(diff_id)?;
        if !path.is_dir() {
            return Ok(0);
        }
        let size = disk_usage(&path);
        let doomed =
            self.root.join("layers").join(format!(".tmp-{}-{}", digest_hex(diff_id)?, self.next_tmp()));
        std::fs::rename(&path, &doomed).map_err(io_err("rename", &path))?;
        remove_tree(&doomed)?;
        Ok(size)
    }

    /// The bytes of the unpacked layer `diff_id` (its regular files), 0 when absent.
    pub fn layer_size(&self, diff_id: &str) -> u64 {
        self.layer_path(diff_id).map(|p| disk_usage(&p)).unwrap_or(0)
    }

    /// Partial downloads (`partial/<hex>`): digest and bytes so far.
    pub fn partials(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let path = self.root.join("partial");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(io_err("list", &path))? {
            let entry = entry.map_err(io_err("list", &path))?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if digest_hex(&digest).is_ok() {
                out.push((digest, entry.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a partial download; returns the bytes freed.
    pub fn remove_partial(&self, digest: &str) -> Result<u64, StoreError> {
        let path = self.root.join("partial").join(digest_hex(digest)?);
        match std::fs::symlink_metadata(&path) {
            Ok(m) => {
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                Ok(m.len())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    fn next_tmp(&self) -> String {
        format!("{}-{}", std::process::id(), self.tmp_counter.fetch_add(1, Ordering::Relaxed))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<IndexFile, StoreError> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Index { path, reason: e.to_string() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn write_index(&self, index: &IndexFile) -> Result<(), StoreError> {
        let path = self.index_path();
        let tmp = self.root.join(format!("index.json.{}", self.next_tmp()));
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|e| StoreError::Index { path: path.clone(), reason: e.to_string() })?;
        let mut f = std::fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))
    }

    /// The entry of a reference (its normalized text).
    pub fn lookup(&self, reference: &str) -> Result<Option<IndexEntry>, StoreError> {
        let _g = self.index.lock();
        Ok(self.read_index()?.images.remove(reference))
    }

    /// Records a pulled reference.
    pub fn record(&self, reference: &str, entry: IndexEntry) -> Result<(), StoreError> {
        let _g = self.index.lock();
        let mut index = self.read_index()?;
        index.images.insert(reference.to_string(), entry);
        self.write_index(&index)
    }

    /// Forgets a reference (its blobs and layers stay until pruned).
    pub fn forget(&self, reference: &str) -> Result<Option<IndexEntry>, StoreError> {
        let _g = self.index.lock();
        let mut index = self.read_index()?;
        let old = index.images.remove(reference);
        if old.is_some() {
            self.write_index(&index)?;
        }
        Ok(old)
    }

    /// Every recorded reference.
    pub fn list(&self) -> Result<Vec<(String, IndexEntry)>, StoreError> {
        let _g = self.index.lock();
        Ok(self.read_index()?.images.into_iter().collect())
    }

    /// Whether everything an entry needs is present (manifest, config, every layer).
    pub fn is_complete(&self, entry: &IndexEntry) -> bool {
        self.has_blob(&entry.manifest)
            && self.has_blob(&entry.config)
            && entry.diff_ids.iter().all(|d| self.has_layer(d))
    }
}

/// The bytes of the regular files under `dir` (symlinks not followed; unreadable parts count 0).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Removes a directory tree without following symlinks (std's `remove_dir_all` does not follow
/// them either); read-only directories are made writable first.
fn remove_tree(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            // a directory without write permission (as non-root): open everything up and retry
            let mut stack = vec![path.to_path_buf()];
            while let Some(dir) = stack.pop() {
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            stack.push(e.path());
                        }
                    }
                }
            }
            std::fs::remove_dir_all(path).map_err(io_err("remove", path))
        }
    }
}
