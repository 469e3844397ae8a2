//! The write-ahead log: how a batch becomes durable with one sequential write and one
//! `fdatasync`.
//!
//! Why: a durable redb commit writes every page the batch touched (the leaves, the branches above
//! them, the header) in place, and `fdatasync` then flushes those scattered pages. On a fast disk
//! that fixed cost dominated a lone entity's command. Instead the writer commits redb without
//! syncing and makes the batch durable here first; redb is synced only at a checkpoint.
//!
//! The file is allocated once at full size and filled with zeros, so a sync never has to record
//! a new file size or extent, only the data. Records are written from offset 0 and, after a
//! checkpoint, again from offset 0 over the old ones:
//!
//! ```text
//! record = length (u32 LE) | crc32 of (salt | epoch | body) (u32 LE) | epoch (u64 LE) | body
//! ```
//!
//! The epoch is the checkpoint count, kept durably in redb. The salt is a random number the
//! database is given when it is created, also kept in redb: a log left behind by another
//! database (the file deleted and created again beside its old log) never matches. Replay reads records from offset 0
//! while they are whole, carry the current epoch and match their checksum, and stops at the first
//! one that does not: the torn tail of a crash, the zeros of a fresh file, or a record of an
//! earlier epoch that a checkpoint made obsolete.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// Bytes before a record's body.
const HEADER: usize = 16;
/// Zeros written at a time while the file is allocated.
const FILL_CHUNK: usize = 1 << 20;

/// Failure of the log file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be created, allocated, read, written or synced.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
}

/// The log file and where the next record goes.
#[derive(Debug)]
pub(super) struct Log {
    file: File,
    path: PathBuf,
    capacity: u64,
    offset: u64,
    epoch: u64,
    salt: u64,
    /// The record being written, kept to reuse its allocation.
    buffer: Vec<u8>,
}

impl Log {
    /// Opens the log at `path`, creating it, or growing a shorter one, to `capacity` bytes of
    /// zeros (synced, with its directory, before it is used). Writing starts at offset 0 in epoch
    /// `epoch` until [`Log::restart`] says otherwise; `salt` is the database's.
    pub(super) fn open(path: &Path, capacity: u64, epoch: u64, salt: u64) -> Result<Self, LogError> {
        let io = |source| LogError::Io { path: path.to_path_buf(), source };
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        let length = file.metadata().map_err(io)?.len();
        if length < capacity {
            fill_zeros(&file, length, capacity).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent() {
                sync_dir(dir).map_err(io)?;
            }
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            capacity: capacity.max(length),
            offset: 0,
            epoch,
            salt,
            buffer: Vec::new(),
        })
    }

    /// The epoch records are written in.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records written so far in this epoch take this many bytes.
    #[cfg(test)]
    pub(super) fn used(&self) -> u64 {
        self.offset
    }

    /// Whether a record with a body of `body` bytes fits after the ones written.
    pub(super) fn fits(&self, body: usize) -> bool {
        u64::try_from(HEADER + body).is_ok_and(|len| self.offset.saturating_add(len) <= self.capacity)
            && u32::try_from(body).is_ok()
    }

    /// Writes one record after the last and syncs it. On failure the record may or may not be
    /// on disk (a failed sync says nothing of what reached it), so its outcome is unknown and
    /// nothing may be written after it: the writer stops the store, and reopening replays
    /// whatever the disk holds.
    pub(super) fn append(&mut self, body: &[u8]) -> Result<(), LogError> {
        let io = |source| LogError::Io { path: self.path.clone(), source };
        let length = u32::try_from(body.len())
            .map_err(|_| io(io::Error::new(io::ErrorKind::InvalidInput, "record larger than 4 GiB")))?;
        self.buffer.clear();
        self.buffer.extend_from_slice(&length.to_le_bytes());
        self.buffer.extend_from_slice(&checksum(self.salt, self.epoch, body).to_le_bytes());
        self.buffer.extend_from_slice(&self.epoch.to_le_bytes());
        self.buffer.extend_from_slice(body);
        self.file.write_all_at(&self.buffer, self.offset).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.offset = self.offset.saturating_add(self.buffer.len() as u64);
        Ok(())
    }

    /// Swaps the file for a read-only handle to it, so that every later write fails with the
    /// OS's error, as on a failing disk.
    #[cfg(test)]
    pub(super) fn fail_writes(&mut self) {
        self.file = File::open(&self.path).expect("the log reopens read-only");
    }

    /// Starts a new epoch at offset 0: every record written before is obsolete.
    pub(super) fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.offset = 0;
    }

    /// The bodies of the whole records of the current epoch, from offset 0, in order.
    pub(super) fn replay(&self) -> Result<Vec<Vec<u8>>, LogError> {
        let io = |source| LogError::Io { path: self.path.clone(), source };
        let mut bodies = Vec::new();
        let mut offset = 0u64;
        let mut header = [0u8; HEADER];
        loop {
            if offset.saturating_add(HEADER as u64) > self.capacity {
                break;
            }
            self.file.read_exact_at(&mut header, offset).map_err(io)?;
            let (length, crc, epoch) = split_header(&header);
            let end = offset.saturating_add(HEADER as u64).saturating_add(u64::from(length));
            if length == 0 || epoch != self.epoch || end > self.capacity {
                break;
            }
            let mut body = vec![0u8; length as usize];
            self.file.read_exact_at(&mut body, offset + HEADER as u64).map_err(io)?;
            if checksum(self.salt, epoch, &body) != crc {
                break;
            }
            bodies.push(body);
            offset = end;
        }
        Ok(bodies)
    }
}

fn split_header(header: &[u8; HEADER]) -> (u32, u32, u64) {
    let [l0, l1, l2, l3, c0, c1, c2, c3, e0, e1, e2, e3, e4, e5, e6, e7] = *header;
    (
        u32::from_le_bytes([l0, l1, l2, l3]),
        u32::from_le_bytes([c0, c1, c2, c3]),
        u64::from_le_bytes([e0, e1, e2, e3, e4, e5, e6, e7]),
    )
}

fn checksum(salt: u64, epoch: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(&epoch.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn fill_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; FILL_CHUNK];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).unwrap_or(FILL_CHUNK).min(FILL_CHUNK);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Syncs a directory, so that a file created in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &tempfile::TempDir, capacity: u64, epoch: u64) -> Log {
        Log::open(&dir.path().join("store.wal"), capacity, epoch, 42).expect("log opens")
    }

    #[test]
    fn a_new_log_is_allocated_full_size_and_replays_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = log(&dir, 4096, 1);
        assert_eq!(std::fs::metadata(dir.path().join("store.wal")).expect("file").len(), 4096);
        assert!(log.replay().expect("replays").is_empty());
    }

    #[test]
    fn records_replay_in_order_within_their_epoch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writing = log(&dir, 4096, 7);
        for body in [&b"one"[..], b"two", b"three"] {
            writing.append(body).expect("appends");
        }
        assert_eq!(writing.used(), 3 * HEADER as u64 + 11);
        let reopened = log(&dir, 4096, 7);
        assert_eq!(
            reopened.replay().expect("replays"),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        // Another epoch sees none of them.
        assert!(log(&dir, 4096, 8).replay().expect("replays").is_empty());
    }

    #[test]
    fn another_databases_log_replays_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        let mut writing = Log::open(&path, 4096, 1, 7).expect("log opens");
        writing.append(b"theirs").expect("appends");
        assert!(Log::open(&path, 4096, 1, 8).expect("log opens").replay().expect("replays").is_empty());
        assert_eq!(Log::open(&path, 4096, 1, 7).expect("log opens").replay().expect("replays").len(), 1);
    }

    #[test]
    fn a_restarted_epoch_hides_the_old_records_behind_the_new_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writing = log(&dir, 4096, 1);
        for body in [&b"old-1"[..], b"old-2", b"old-3"] {
            writing.append(body).expect("appends");
        }
        writing.restart(2);
        writing.append(b"new-1").expect("appends");
        assert_eq!(log(&dir, 4096, 2).replay().expect("replays"), vec![b"new-1".to_vec()]);
    }

    #[test]
    fn replay_stops_at_a_torn_or_corrupt_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        let mut writing = log(&dir, 4096, 3);
        for body in [&b"first"[..], b"second", b"third"] {
            writing.append(body).expect("appends");
        }
        // Flip one byte of the second record's body: it and everything after it are dropped.
        let file = OpenOptions::new().write(true).open(&path).expect("opens");
        let second_body = (HEADER + 5 + HEADER) as u64;
        file.write_all_at(b"S", second_body).expect("corrupts");
        assert_eq!(log(&dir, 4096, 3).replay().expect("replays"), vec![b"first".to_vec()]);
        // A length running past the end of the file stops replay too.
        file.write_all_at(&u32::MAX.to_le_bytes(), 0).expect("corrupts");
        assert!(log(&dir, 4096, 3).replay().expect("replays").is_empty());
    }

    #[test]
    fn a_full_log_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writing = log(&dir, 64, 1);
        assert!(writing.fits(64 - HEADER));
        assert!(!writing.fits(64 - HEADER + 1));
        writing.append(&[1; 30]).expect("appends");
        assert!(writing.fits(64 - 2 * HEADER - 30));
        assert!(!writing.fits(64 - 2 * HEADER - 29));
    }

    #[test]
    fn open_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("store.wal");
        let error = Log::open(&path, 4096, 1, 42).expect_err("no directory");
        assert!(error.to_string().starts_with(&format!("write-ahead log {}: ", path.display())), "{error}");
    }
}
