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
//! database (the file deleted and created again beside its old log) never matches. Reading the
//! log at open ([`read`]) takes records from offset 0 while they are whole, carry the current
//! epoch and match their checksum. Where they stop, the log normally holds zeros (a fresh file)
//! or a record of an earlier epoch that a checkpoint made obsolete.
//!
//! **Telling a torn tail from damage.** A crash may tear only the last write: each record is
//! written and synced before the next one is begun, so nothing of the current epoch can follow
//! a record the crash cut short. When the records stop at one that is not whole, the rest of
//! the file is searched, at every byte offset, for an intact record of the current epoch (its
//! checksum covers the salt and the epoch). None: the stop is the torn tail of a crash, whose
//! batch was never acknowledged, and is dropped. Any: the stop is damage to acknowledged writes
//! ([`End::Damaged`]), which the store refuses to open over unless told to discard them. (Damage
//! to the very last record looks like a torn tail and cannot be told from one.) A log shorter
//! than it was written, or missing, is caught by the store, which records the log's length and
//! whether it may hold records in redb.
//!
//! **How records reach the disk.** Records are packed one after the other, but the log writes
//! whole 4 KiB pages: the page holding the record's first byte (with the earlier records in it,
//! kept in memory), the record, and zeros to the end of its last page. Where the file system
//! allows it the file is opened with `O_DIRECT | O_DSYNC`, so one `pwritev` both writes and syncs
//! and the page cache is not involved; where it refuses them (`EINVAL`, at open or at a write)
//! the same pages are written through the page cache and `fdatasync`ed. Measured on our ext4 virtual disk: a buffered
//! 117-byte write plus `fdatasync` costs 50-75 µs, more when the file's cache pages are large
//! folios (the kernel then walks every block of the folio on each write and sync); the direct
//! page write costs 38-48 µs. Rewriting the earlier records of a page is safe even if the write
//! is torn: their bytes are rewritten with the same values.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, PosixFadviseAdvice, posix_fadvise};

/// Bytes before a record's body.
const HEADER: usize = 16;
/// The unit the log writes in, and the alignment of its buffers and offsets (covers every
/// logical block size up to 4 KiB, which direct I/O needs).
const PAGE: usize = 4096;
/// Pages written at a time while the file is allocated (1 MiB).
const FILL_PAGES: usize = 256;
/// Pages the log keeps allocated between records (64 KiB); a bigger record's are freed.
const KEPT_PAGES: usize = 16;
/// Most buffers one `pwritev` takes (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;

/// Mode of a log file the store creates: only its owner reads or writes it.
pub(super) const FILE_MODE: u32 = 0o600;

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

/// One page of a record being written, aligned as direct I/O needs.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

impl Page {
    const ZERO: Page = Page([0; PAGE]);
}

/// The log file and where the next record goes.
pub(super) struct Log {
    file: File,
    /// Whether `file` was opened with `O_DIRECT | O_DSYNC` (each write is durable when it
    /// returns); otherwise each write is followed by `fdatasync`.
    direct: bool,
    path: PathBuf,
    capacity: u64,
    offset: u64,
    epoch: u64,
    salt: u64,
    /// The pages of the record being written, from the one holding its first byte; between
    /// writes, the first page holds the records already written in the page `offset` is in
    /// (when `offset` starts a page, nothing of it is read).
    pages: Vec<Page>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("path", &self.path)
            .field("direct", &self.direct)
            .field("capacity", &self.capacity)
            .field("offset", &self.offset)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens the log at `path`, creating it, or growing a shorter one, to `capacity` bytes of
    /// zeros rounded up to whole pages (synced, with its directory, before it is used); that is
    /// the log's capacity, or the file's length if it is longer. Writing starts at offset 0 in
    /// epoch `epoch` until [`Log::restart`] says otherwise; `salt` is the database's.
    pub(super) fn open(path: &Path, capacity: u64, epoch: u64, salt: u64) -> Result<Self, LogError> {
        Self::open_with(path, capacity, epoch, salt, true)
    }

    /// [`Log::open`], with direct I/O tried only if `try_direct`.
    fn open_with(
        path: &Path,
        capacity: u64,
        epoch: u64,
        salt: u64,
        try_direct: bool,
    ) -> Result<Self, LogError> {
        let io = |source| LogError::Io { path: path.to_path_buf(), source };
        let (file, direct) = open_file(path, try_direct).map_err(io)?;
        let mut log = Self {
            file,
            direct,
            path: path.to_path_buf(),
            capacity,
            offset: 0,
            epoch,
            salt,
            pages: vec![Page::ZERO],
        };
        let length = log.file.metadata().map_err(io)?.len();
        // Whole pages, and never less than the file already has: every page write then lands
        // inside the file, and the same file gives the same capacity on every open.
        let allocated = capacity.max(length).next_multiple_of(PAGE as u64);
        if length < allocated {
            log.fill_zeros(length, allocated).map_err(io)?;
            log.file.sync_all().map_err(io)?;
            if let Some(dir) = path.parent() {
                sync_dir(dir).map_err(io)?;
            }
        }
        log.capacity = allocated;
        Ok(log)
    }

    /// The epoch records are written in.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The file's length: where records may go.
    pub(super) fn capacity(&self) -> u64 {
        self.capacity
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
        let invalid = |what: String| io(io::Error::new(io::ErrorKind::InvalidInput, what));
        // A zero length marks the end of the records, and a record past the capacity would
        // grow the file: the writer never asks for either.
        if body.is_empty() {
            return Err(invalid("empty record".into()));
        }
        if !self.fits(body.len()) {
            return Err(invalid(format!("record of {} bytes past the log's capacity", body.len())));
        }
        let length = u32::try_from(body.len()).map_err(|_| invalid("record larger than 4 GiB".into()))?;
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&length.to_le_bytes());
        header[4..8].copy_from_slice(&checksum(self.salt, self.epoch, body).to_le_bytes());
        header[8..].copy_from_slice(&self.epoch.to_le_bytes());

        // Lay the record out in whole pages after the earlier records of its first page.
        let start = (self.offset % PAGE as u64) as usize;
        let end = start + HEADER + body.len();
        let count = end.div_ceil(PAGE);
        if self.pages.len() < count {
            self.pages.resize(count, Page::ZERO);
        }
        copy_into(&mut self.pages, start, &header);
        copy_into(&mut self.pages, start + HEADER, body);
        zero_from(&mut self.pages[..count], end);

        let first_page = self.offset - start as u64;
        write_pages(&mut self.file, &mut self.direct, &self.path, &self.pages[..count], first_page)
            .map_err(io)?;
        if !self.direct {
            self.file.sync_data().map_err(io)?;
        }
        self.offset = first_page + end as u64;
        // The next record starts in the record's last page: keep its bytes in front.
        if count > 1 && !end.is_multiple_of(PAGE) {
            self.pages[0] = self.pages[count - 1];
        }
        // A big batch's pages are not kept for good.
        if self.pages.len() > KEPT_PAGES {
            self.pages.truncate(1);
            self.pages.shrink_to_fit();
        }
        Ok(())
    }

    /// Writes zeros from `from` to `to` (a page boundary). The end of a partly written page is
    /// zeroed through the page cache, so that the bytes before `from` stay as they are.
    fn fill_zeros(&mut self, from: u64, to: u64) -> io::Result<()> {
        let mut at = from.next_multiple_of(PAGE as u64);
        if at > from {
            let buffered = options().write(true).open(&self.path).map_err(nofollow)?;
            buffered.write_all_at(&[0; PAGE][..(at - from) as usize], from)?;
            buffered.sync_data()?;
        }
        let zeros = vec![Page::ZERO; FILL_PAGES];
        while at < to {
            let count =
                usize::try_from((to - at).div_ceil(PAGE as u64)).unwrap_or(FILL_PAGES).min(FILL_PAGES);
            write_pages(&mut self.file, &mut self.direct, &self.path, &zeros[..count], at)?;
            at += (count * PAGE) as u64;
        }
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

    /// What [`read`] finds in this log now (tests).
    #[cfg(test)]
    pub(super) fn replay(&self) -> Result<Found, LogError> {
        read(&self.path, self.epoch, self.salt)
    }
}

/// What the log holds for the current epoch, as [`read`] found it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Found {
    /// The bodies of the whole records of the epoch, from offset 0, in order.
    pub bodies: Vec<Vec<u8>>,
    /// How they end.
    pub end: End,
    /// The file's length; `None` if there is no file.
    pub length: Option<u64>,
}

/// How the records of the current epoch end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// At zeros, a record of an earlier epoch, or the end of the file: where writing stopped.
    Clean,
    /// At a record of the epoch that is not whole, with nothing intact after it: the last write,
    /// torn by a crash before it was acknowledged.
    Torn {
        /// Where the torn record starts.
        offset: u64,
    },
    /// At a record that is not whole, with intact records of the epoch after it: damage.
    Damaged {
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        why: &'static str,
        /// Where the first intact record after it starts.
        next: u64,
        /// Intact records after it.
        after: usize,
    },
}

/// Reads the log at `path` (without creating or changing it) for the records of `epoch`.
///
/// Direct I/O would need aligned reads: the file is read through the page cache, and what was
/// read is dropped from it, so that later direct writes find no cached pages to invalidate.
pub(super) fn read(path: &Path, epoch: u64, salt: u64) -> Result<Found, LogError> {
    let io = |source| LogError::Io { path: path.to_path_buf(), source };
    let file = match options().read(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(Found { bodies: Vec::new(), end: End::Clean, length: None });
        }
        Err(error) => return Err(io(nofollow(error))),
    };
    let length = file.metadata().map_err(io)?.len();
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| io(io::ErrorKind::FileTooLarge.into()))?];
    file.read_exact_at(&mut bytes, 0).map_err(io)?;
    // Only advice: a failure leaves the pages cached, which costs time, not correctness.
    let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    let records = Records { bytes: &bytes, epoch, salt };
    let mut bodies = Vec::new();
    let mut offset = 0;
    let stop = loop {
        match records.at(offset) {
            Ok(body) => {
                bodies.push(body.to_vec());
                offset += HEADER + body.len();
            }
            Err(stop) => break stop,
        }
    };
    let end = match (stop, records.next_intact(offset + 1)) {
        (_, Some(next)) => {
            let why = match stop {
                Stop::Ends => "holds zeros",
                Stop::Earlier => "carries another epoch",
                Stop::Incomplete(why) => why,
            };
            End::Damaged { offset: offset as u64, why, next: next as u64, after: records.count_from(next) }
        }
        (Stop::Incomplete(_), None) => End::Torn { offset: offset as u64 },
        (Stop::Ends | Stop::Earlier, None) => End::Clean,
    };
    Ok(Found { bodies, end, length: Some(length) })
}

/// Why the records stop at an offset.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Zeros, or the end of the file.
    Ends,
    /// A record of another epoch.
    Earlier,
    /// A record of the current epoch that is not whole (why).
    Incomplete(&'static str),
}

/// The records of one epoch in a log's bytes.
struct Records<'a> {
    bytes: &'a [u8],
    epoch: u64,
    salt: u64,
}

impl<'a> Records<'a> {
    /// The body of the intact record of the epoch at `offset`, or why there is none.
    fn at(&self, offset: usize) -> Result<&'a [u8], Stop> {
        let Some(header) = self.bytes.get(offset..offset + HEADER) else { return Err(Stop::Ends) };
        let header: &[u8; HEADER] = header.try_into().map_err(|_| Stop::Ends)?;
        let (length, crc, epoch) = split_header(header);
        if header.iter().all(|b| *b == 0) {
            return Err(Stop::Ends);
        }
        if epoch != self.epoch {
            return Err(Stop::Earlier);
        }
        if length == 0 {
            return Err(Stop::Incomplete("has a length of 0"));
        }
        let body = offset + HEADER;
        let Some(body) = self.bytes.get(body..body.saturating_add(length as usize)) else {
            return Err(Stop::Incomplete("runs past the end of the file"));
        };
        if checksum(self.salt, epoch, body) != crc {
            return Err(Stop::Incomplete("fails its checksum"));
        }
        Ok(body)
    }

    /// The first offset from `from` on where an intact record of the epoch starts.
    fn next_intact(&self, from: usize) -> Option<usize> {
        let epoch = self.epoch.to_le_bytes();
        let last = self.bytes.len().checked_sub(HEADER)?;
        (from..=last)
            .find(|&offset| self.bytes[offset + 8..offset + HEADER] == epoch && self.at(offset).is_ok())
    }

    /// Intact records of the epoch from `offset` on: following each to the next, and past
    /// anything that is not one to the next that is.
    fn count_from(&self, offset: usize) -> usize {
        let mut count = 0;
        let mut offset = Some(offset);
        while let Some(at) = offset {
            offset = match self.at(at) {
                Ok(body) => {
                    count += 1;
                    Some(at + HEADER + body.len())
                }
                Err(_) => self.next_intact(at + 1),
            };
        }
        count
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

/// Options every open of a log file starts from: a symbolic link at the path is refused rather
/// than followed (`O_NOFOLLOW`), and a file created is private to its owner ([`FILE_MODE`]).
pub(super) fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE).custom_flags(nix::libc::O_NOFOLLOW);
    options
}

/// `error` from an open with [`options`], with `O_NOFOLLOW`'s refusal (`ELOOP`) said plainly.
pub(super) fn nofollow(error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(nix::libc::ELOOP) {
        io::Error::other("it is a symbolic link, which the store does not follow")
    } else {
        error
    }
}

/// Opens the log file for reading and writing, creating it: with `O_DIRECT | O_DSYNC` where the
/// file system takes them (the `bool` says so), through the page cache where it does not.
fn open_file(path: &Path, try_direct: bool) -> io::Result<(File, bool)> {
    let mut options = options();
    options.read(true).write(true).create(true).truncate(false);
    let open = |options: &OpenOptions| options.open(path).map_err(nofollow);
    if !try_direct {
        return Ok((open(&options)?, false));
    }
    let flags = OFlag::O_DIRECT | OFlag::O_DSYNC | OFlag::O_NOFOLLOW;
    match open(options.clone().custom_flags(flags.bits())) {
        Ok(file) => Ok((file, true)),
        Err(error) if error.raw_os_error() == Some(nix::libc::EINVAL) => Ok((open(&options)?, false)),
        Err(error) => Err(error),
    }
}

/// Writes `pages` at `at` to `file`. A direct write the file refuses (`EINVAL`: an alignment it
/// does not support) turns direct I/O off: `file` is reopened without it and the write made
/// again through the page cache.
fn write_pages(file: &mut File, direct: &mut bool, path: &Path, pages: &[Page], at: u64) -> io::Result<()> {
    #[cfg(test)]
    if *direct && tests::REFUSE_DIRECT.with(|refuse| refuse.replace(false)) {
        return write_pages_after(
            Err(io::Error::from_raw_os_error(nix::libc::EINVAL)),
            file,
            direct,
            path,
            pages,
            at,
        );
    }
    write_pages_after(write_all_pages(file, pages, at), file, direct, path, pages, at)
}

/// What [`write_pages`] does after its direct write returned `result`.
fn write_pages_after(
    result: io::Result<()>,
    file: &mut File,
    direct: &mut bool,
    path: &Path,
    pages: &[Page],
    at: u64,
) -> io::Result<()> {
    match result {
        Err(error) if *direct && error.raw_os_error() == Some(nix::libc::EINVAL) => {
            tracing::warn!(path = %path.display(), %error, "write-ahead log: direct i/o refused, writing through the page cache");
            *file = options().read(true).write(true).open(path).map_err(nofollow)?;
            *direct = false;
            write_all_pages(file, pages, at)
        }
        result => result,
    }
}

/// Writes `pages` at `at`, `MAX_IOV` pages per call, continuing after a short write.
fn write_all_pages(file: &File, pages: &[Page], at: u64) -> io::Result<()> {
    let total = pages.len() * PAGE;
    let mut done = 0;
    while done < total {
        let (page, within) = (done / PAGE, done % PAGE);
        let slices: Vec<IoSlice<'_>> = pages[page..]
            .iter()
            .take(MAX_IOV)
            .enumerate()
            .map(|(i, p)| IoSlice::new(if i == 0 { &p.0[within..] } else { &p.0 }))
            .collect();
        let offset = at + done as u64;
        let offset = nix::libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("offset {offset} too large")))?;
        match nix::sys::uio::pwritev(file, &slices, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

/// Copies `bytes` into `pages` from byte `at` of the first page on.
fn copy_into(pages: &mut [Page], at: usize, bytes: &[u8]) {
    let mut at = at;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (page, within) = (at / PAGE, at % PAGE);
        let n = rest.len().min(PAGE - within);
        pages[page].0[within..within + n].copy_from_slice(&rest[..n]);
        at += n;
        rest = &rest[n..];
    }
}

/// Zeros `pages` from byte `at` to their end.
fn zero_from(pages: &mut [Page], at: usize) {
    let (page, within) = (at / PAGE, at % PAGE);
    if let Some(first) = pages.get_mut(page) {
        first.0[within..].fill(0);
    }
    for page in pages.iter_mut().skip(page + 1) {
        page.0.fill(0);
    }
}

/// Syncs a directory, so that a file created in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Makes this thread's next direct write fail with `EINVAL`, as a file system that
        /// takes `O_DIRECT` at open but not the write's alignment would.
        pub(super) static REFUSE_DIRECT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_refused_direct_write_is_made_through_the_page_cache_and_logging_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        let mut writing = Log::open(&path, 1 << 16, 1, 3).expect("log opens");
        if !writing.direct {
            stead_testkit::not_applicable("the temp directory's file system refuses O_DIRECT at open");
            return;
        }
        let bodies = assorted_bodies();
        writing.append(&bodies[2]).expect("appends");
        REFUSE_DIRECT.with(|refuse| refuse.set(true));
        writing.append(&bodies[1]).expect("appends through the page cache");
        assert!(!writing.direct, "direct i/o is off after a refusal");
        writing.append(&bodies[3]).expect("appends");
        let replayed = Log::open(&path, 1 << 16, 1, 3).expect("reopens").replay().expect("replays").bodies;
        assert_eq!(replayed, vec![bodies[2].clone(), bodies[1].clone(), bodies[3].clone()]);
    }

    fn log(dir: &tempfile::TempDir, capacity: u64, epoch: u64) -> Log {
        Log::open(&dir.path().join("store.wal"), capacity, epoch, 42).expect("log opens")
    }

    #[test]
    fn a_new_log_is_allocated_full_size_and_replays_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = log(&dir, 4096, 1);
        assert_eq!(std::fs::metadata(dir.path().join("store.wal")).expect("file").len(), 4096);
        assert!(log.replay().expect("replays").bodies.is_empty());
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
            reopened.replay().expect("replays").bodies,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        // Another epoch sees none of them.
        assert!(log(&dir, 4096, 8).replay().expect("replays").bodies.is_empty());
    }

    #[test]
    fn another_databases_log_replays_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        let mut writing = Log::open(&path, 4096, 1, 7).expect("log opens");
        writing.append(b"theirs").expect("appends");
        assert!(
            Log::open(&path, 4096, 1, 8).expect("log opens").replay().expect("replays").bodies.is_empty()
        );
        assert_eq!(
            Log::open(&path, 4096, 1, 7).expect("log opens").replay().expect("replays").bodies.len(),
            1
        );
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
        assert_eq!(log(&dir, 4096, 2).replay().expect("replays").bodies, vec![b"new-1".to_vec()]);
    }

    /// Writes `bodies` to a new log of epoch 3 in `dir`; returns where each record starts.
    fn written(dir: &tempfile::TempDir, bodies: &[&[u8]]) -> Vec<u64> {
        let mut writing = log(dir, 4096, 3);
        bodies
            .iter()
            .map(|body| {
                let at = writing.used();
                writing.append(body).expect("appends");
                at
            })
            .collect()
    }

    fn damage(dir: &tempfile::TempDir, offset: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(dir.path().join("store.wal")).expect("opens");
        file.write_all_at(bytes, offset).expect("damages");
    }

    #[test]
    fn a_damaged_record_before_intact_ones_is_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let at = written(&dir, &[b"first", b"second", b"third", b"fourth"]);
        // Four bytes of the second record's body.
        damage(&dir, at[1] + HEADER as u64 + 1, b"XXXX");
        let found = log(&dir, 4096, 3).replay().expect("replays");
        assert_eq!(found.bodies, vec![b"first".to_vec()]);
        let why = "fails its checksum";
        assert_eq!(found.end, End::Damaged { offset: at[1], why, next: at[2], after: 2 });
        // The first record's length, or its epoch: the same, from offset 0.
        damage(&dir, 0, &u32::MAX.to_le_bytes());
        let found = log(&dir, 4096, 3).replay().expect("replays");
        assert!(found.bodies.is_empty());
        let why = "runs past the end of the file";
        assert_eq!(found.end, End::Damaged { offset: 0, why, next: at[2], after: 2 });
        damage(&dir, 8, &[0xff; 8]);
        let why = "carries another epoch";
        assert_eq!(
            log(&dir, 4096, 3).replay().expect("replays").end,
            End::Damaged { offset: 0, why, next: at[2], after: 2 }
        );
    }

    #[test]
    fn a_last_record_cut_short_is_a_torn_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let at = written(&dir, &[b"first", b"second", &[7; 3000]]);
        // The last record's second half never reached the disk.
        damage(&dir, at[2] + 1500, &[0; 1500]);
        let found = log(&dir, 4096, 3).replay().expect("replays");
        assert_eq!(found.bodies, vec![b"first".to_vec(), b"second".to_vec()]);
        assert_eq!(found.end, End::Torn { offset: at[2] });
        // Nor its header: the records simply end.
        damage(&dir, at[2], &[0; HEADER]);
        assert_eq!(log(&dir, 4096, 3).replay().expect("replays").end, End::Clean);
    }

    #[test]
    fn reading_a_missing_or_short_log_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        let missing = read(&path, 1, 42).expect("reads");
        assert_eq!(missing, Found { bodies: Vec::new(), end: End::Clean, length: None });
        assert!(!path.exists(), "reading does not create the log");
        let at = written(&dir, &[b"first", b"second"]);
        OpenOptions::new().write(true).open(&path).expect("opens").set_len(at[1] + 4).expect("truncates");
        let found = read(&path, 3, 42).expect("reads");
        assert_eq!(found.end, End::Clean);
        assert_eq!((found.bodies.len(), found.length), (1, Some(at[1] + 4)));
        assert_eq!(std::fs::metadata(&path).expect("file").len(), at[1] + 4);
    }

    #[test]
    fn a_symbolic_link_at_the_path_is_refused_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        log(&dir, 4096, 1);
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        let target = dir.path().join("elsewhere");
        std::fs::rename(&path, &target).expect("moves");
        std::os::unix::fs::symlink(&target, &path).expect("links");
        for error in [
            Log::open(&path, 4096, 1, 42).expect_err("a link is not followed"),
            read(&path, 1, 42).expect_err("a link is not followed"),
        ] {
            assert_eq!(
                error.to_string(),
                format!(
                    "write-ahead log {}: it is a symbolic link, which the store does not follow",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_full_log_says_so_and_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Capacity is rounded up to whole pages, the same on every open.
        for _ in 0..2 {
            let writing = log(&dir, 64, 1);
            assert!(writing.fits(4096 - HEADER));
            assert!(!writing.fits(4096 - HEADER + 1));
        }
        let mut writing = log(&dir, 64, 1);
        writing.append(&[1; 30]).expect("appends");
        assert!(writing.fits(4096 - 2 * HEADER - 30));
        assert!(!writing.fits(4096 - 2 * HEADER - 29));
        let error = writing.append(&[2; 4096]).expect_err("does not fit");
        assert!(error.to_string().contains("past the log's capacity"), "{error}");
        assert_eq!(std::fs::metadata(dir.path().join("store.wal")).expect("file").len(), 4096);
    }

    #[test]
    fn an_empty_record_is_refused_rather_than_ending_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writing = log(&dir, 4096, 1);
        writing.append(b"a").expect("appends");
        assert!(writing.append(b"").is_err());
        writing.append(b"c").expect("appends");
        assert_eq!(log(&dir, 4096, 1).replay().expect("replays").bodies, vec![b"a".to_vec(), b"c".to_vec()]);
    }

    /// Bodies of sizes from empty-ish to three pages, so that records start and end anywhere in
    /// a page and some span several.
    fn assorted_bodies() -> Vec<Vec<u8>> {
        let mut seed = 0x9e37_79b9_u32;
        (0..300u32)
            .map(|n| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let len = match n % 10 {
                    0 => 4096 - HEADER,
                    1 => 9000 + (seed % 3000) as usize,
                    _ => 1 + (seed % 700) as usize,
                };
                (0..len).map(|i| (i as u32 ^ n) as u8).collect()
            })
            .collect()
    }

    #[test]
    fn records_of_any_size_replay_through_either_write_path() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("store.wal");
            let bodies = assorted_bodies();
            let mut writing = Log::open_with(&path, 1 << 20, 5, 9, direct).expect("log opens");
            for body in &bodies {
                assert!(writing.fits(body.len()));
                writing.append(body).expect("appends");
            }
            let used: usize = bodies.iter().map(|b| HEADER + b.len()).sum();
            assert_eq!(writing.used(), used as u64);
            assert_eq!(
                Log::open_with(&path, 1 << 20, 5, 9, !direct)
                    .expect("reopens")
                    .replay()
                    .expect("replays")
                    .bodies,
                bodies,
                "direct: {direct}"
            );
            // After a restart the new records overwrite the old ones, page by page.
            writing.restart(6);
            writing.append(&bodies[3]).expect("appends");
            writing.append(&bodies[1]).expect("appends");
            let replayed = Log::open_with(&path, 1 << 20, 6, 9, direct)
                .expect("reopens")
                .replay()
                .expect("replays")
                .bodies;
            assert_eq!(replayed, vec![bodies[3].clone(), bodies[1].clone()], "direct: {direct}");
        }
    }

    #[test]
    fn growing_a_log_keeps_the_records_in_its_last_partial_page() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.wal");
        let mut writing = log(&dir, 4096, 2);
        writing.append(b"kept").expect("appends");
        drop(writing);
        // An older, shorter log whose length is not a whole number of pages.
        OpenOptions::new().write(true).open(&path).expect("opens").set_len(100).expect("truncates");
        let grown = log(&dir, 3 * 4096, 2);
        assert_eq!(std::fs::metadata(&path).expect("file").len(), 3 * 4096);
        assert_eq!(grown.replay().expect("replays").bodies, vec![b"kept".to_vec()]);
    }

    #[test]
    fn open_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("store.wal");
        let error = Log::open(&path, 4096, 1, 42).expect_err("no directory");
        assert!(error.to_string().starts_with(&format!("write-ahead log {}: ", path.display())), "{error}");
    }
}
