//! [`EmbeddedStore`]: a redb database file and its write-ahead log beside it (`<file>-wal`),
//! typically on the pod's volume.
//!
//! Reads run on tokio's blocking pool in their own read transactions (MVCC: they never wait for
//! the writer). All writes go through one writer thread that commits them in batches (see
//! `writer`), so that concurrent entities share fsyncs while every call still returns only after
//! its own write is durable. A batch is made durable by one sequential append to the log (see
//! `log`); redb itself is synced at checkpoints, and the log is replayed into it on open.
//! Acknowledged writes wait in the writer's open transaction until a read needs them.
//!
//! Opening refuses rather than lose acknowledged writes or trust a damaged file: redb checks
//! every page's checksum of the file, and a log that was damaged before its last record,
//! shortened or deleted while it held writes redb does not have is refused (see
//! [`LogDamage`]) unless the caller says to discard what it lost ([`DamagedLog::Discard`]).
//! Nothing is checkpointed before that decision. A store that cannot go on (a failed write, a
//! full disk, a panic of redb on a damaged page) stops for good ([`EmbeddedStore::fault`]):
//! every call fails at once until it is opened again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use prost_types::Any;
use redb::{Database, ReadTransaction, ReadableDatabase as _, ReadableTable as _};
use tokio::sync::{mpsc, oneshot};

mod log;
mod records;
mod writer;

pub use log::LogError;
use log::{End, Found, Log};
use records::{
    EVENTS, LOG_EPOCH, LOG_LENGTH, LOG_OPEN, LOG_SALT, META, SNAPSHOTS, STORE, VALUES, decode_event,
    decode_snapshot, decode_value,
};
use writer::{Counters, Shared, WriteOp, WriteRequest, Writer, unpanicked};
pub use writer::{RecoverError, WriterStats};

use super::{Append, Snapshot, Store, StoreError, StoredEvent, ValueKey, ValueState};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before senders wait too.
const QUEUE: usize = 4096;
/// Size of the write-ahead log file; a batch that does not fit causes a checkpoint.
const LOG_CAPACITY: u64 = 8 << 20;
/// Counts a write in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// redb's page cache (its default is 1 GiB): reads of cold entities come from the OS's cache.
const CACHE_BYTES: usize = 8 << 20;

/// Failure to open an embedded store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The database file could not be opened or created.
    #[error("opening embedded store {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The database file could not be opened or initialized.
    #[error("opening embedded store {path}: {source}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What redb reported.
        source: redb::Error,
    },
    /// The database file is damaged: a page fails its checksum, or redb panicked on it.
    #[error(
        "embedded store {path} is damaged ({detail}); restore the file from a backup, or move it \
         away to start with an empty store"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The write-ahead log lost writes that were acknowledged.
    #[error(
        "opening embedded store {path}: {damage}; to open it without them, start the proxy with \
         --discard-damaged-log (or STEAD_DISCARD_DAMAGED_LOG=true)"
    )]
    DamagedLog {
        /// The database file.
        path: PathBuf,
        /// What is wrong with the log.
        damage: LogDamage,
    },
    /// The write-ahead log could not be opened or replayed.
    #[error("recovering embedded store {path}: {source}")]
    Recover {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: RecoverError,
    },
    /// The writer thread could not be started.
    #[error("starting the writer thread of embedded store {path}: {source}")]
    Writer {
        /// The file.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
}

/// How a write-ahead log lost writes that were acknowledged, as found at open.
#[derive(Debug, thiserror::Error)]
pub enum LogDamage {
    /// The store was not closed cleanly and its log is gone.
    #[error(
        "its write-ahead log {path} is missing, but the store was not closed cleanly: the writes \
         acknowledged since its last checkpoint were only there"
    )]
    Missing {
        /// The log file.
        path: PathBuf,
    },
    /// The store was not closed cleanly and its log is shorter than it was written.
    #[error(
        "its write-ahead log {path} ends at byte {length}, but it was {expected} bytes long and \
         the store was not closed cleanly: records from byte {length} on are lost"
    )]
    Truncated {
        /// The log file.
        path: PathBuf,
        /// Its length now.
        length: u64,
        /// Its length as written.
        expected: u64,
    },
    /// A record is damaged and intact records follow it, so it is not the torn last write of a
    /// crash: it and the records after it were acknowledged.
    #[error(
        "its write-ahead log {path} is damaged at byte {offset}: the record there {why}, but {after} \
         intact records of the same epoch follow (the first at byte {next})"
    )]
    Record {
        /// The log file.
        path: PathBuf,
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

impl LogDamage {
    /// Records of the log that opening without them discards, if known.
    pub fn discarded(&self) -> Option<usize> {
        match self {
            LogDamage::Record { after, .. } => Some(after.saturating_add(1)),
            LogDamage::Missing { .. } | LogDamage::Truncated { .. } => None,
        }
    }
}

/// What opening does when the write-ahead log lost acknowledged writes ([`LogDamage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DamagedLog {
    /// Refuse to open, naming the file and the offset (the default).
    #[default]
    Refuse,
    /// Open with the records before the damage, discarding the rest, with a warning that
    /// counts them (the operator's decision).
    Discard,
}

/// A durable store in one redb file. One process may have a file open at a time.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writes: mpsc::Sender<WriteRequest>,
    counters: Arc<Counters>,
    shared: Arc<Shared>,
    /// The writer's state, locked by the writer thread for each batch, or by a lone write that
    /// commits itself (see [`EmbeddedStore::write`]).
    state: Arc<Mutex<Writer>>,
    writer: JoinHandle<()>,
    path: PathBuf,
    replayed: usize,
    /// Writes sent and not yet answered.
    in_flight: AtomicUsize,
}

impl EmbeddedStore {
    /// Opens the database at `path`, creating the file and its tables if needed, and starts the
    /// writer thread. Blocks while redb checks the file and the log is replayed. Refuses a
    /// damaged log ([`DamagedLog::Refuse`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_recovering(path, DamagedLog::Refuse)
    }

    /// [`EmbeddedStore::open`], doing `damaged` with a log that lost acknowledged writes.
    pub fn open_recovering(path: impl AsRef<Path>, damaged: DamagedLog) -> Result<Self, OpenError> {
        Self::open_with(path.as_ref(), damaged, MAX_BATCH, LOG_CAPACITY, None, |_| {})
    }

    /// Opens with other limits; `gate`, if given, holds the writer before its first batch, and
    /// `prepare` sees the writer before it starts (tests use both).
    fn open_with(
        path: &Path,
        damaged: DamagedLog,
        max_batch: usize,
        log_capacity: u64,
        gate: Option<oneshot::Receiver<()>>,
        prepare: impl FnOnce(&mut Writer),
    ) -> Result<Self, OpenError> {
        let opened =
            unpanicked(|| Self::open_unguarded(path, damaged, max_batch, log_capacity, gate, prepare));
        opened.unwrap_or_else(|panic| {
            Err(OpenError::Damaged {
                path: path.to_path_buf(),
                detail: format!("the database panicked while it was opened: {panic}"),
            })
        })
    }

    /// [`EmbeddedStore::open_with`], where redb may panic.
    fn open_unguarded(
        path: &Path,
        damaged: DamagedLog,
        max_batch: usize,
        log_capacity: u64,
        gate: Option<oneshot::Receiver<()>>,
        prepare: impl FnOnce(&mut Writer),
    ) -> Result<Self, OpenError> {
        let path = path.to_path_buf();
        let recovering = |source| OpenError::Recover { path: path.clone(), source };
        let file = open_file(&path).map_err(|source| OpenError::File { path: path.clone(), source })?;
        let (db, meta) = create(file).map_err(|source| match source {
            redb::Error::Corrupted(detail) => OpenError::Damaged { path: path.clone(), detail },
            source => OpenError::Database { path: path.clone(), source },
        })?;
        let db = Arc::new(db);
        let wal = log_path(&path);
        let found = match meta.log_open {
            // Closed cleanly: the log holds nothing of this epoch.
            Some(false) => Found { bodies: Vec::new(), end: End::Clean, length: None },
            Some(true) | None => log::read(&wal, meta.epoch, meta.salt).map_err(|e| recovering(e.into()))?,
        };
        if let Some(damage) = judge(&wal, &meta, &found) {
            if damaged == DamagedLog::Refuse {
                return Err(OpenError::DamagedLog { path, damage });
            }
            let discarded = damage.discarded().map_or("an unknown number of".to_string(), |n| n.to_string());
            tracing::warn!(
                path = %path.display(), damage = %damage, replayed = found.bodies.len(), %discarded,
                "embedded store: opening without the damaged write-ahead log's lost records, as told; \
                 {discarded} records discarded"
            );
        }
        if let End::Torn { offset } = found.end {
            tracing::info!(
                path = %wal.display(), offset,
                "embedded store: dropped the write-ahead log's torn last record (a write a crash interrupted, \
                 never acknowledged)"
            );
        }
        let log = Log::open(&wal, log_capacity, meta.epoch, meta.salt).map_err(|e| recovering(e.into()))?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared::default());
        let mut state = Writer::new(db.clone(), log, counters.clone(), shared.clone());
        writer::recover(&mut state, &found.bodies).map_err(recovering)?;
        let replayed = found.bodies.len();
        if replayed > 0 {
            tracing::info!(path = %path.display(), records = replayed, "embedded store: replayed the write-ahead log");
        }
        prepare(&mut state);
        let state = Arc::new(Mutex::new(state));
        let (writes, requests) = mpsc::channel(QUEUE);
        let writer = {
            let state = state.clone();
            std::thread::Builder::new()
                .name("stead-store-writer".into())
                .spawn(move || writer::run(state, requests, max_batch, gate))
                .map_err(|source| OpenError::Writer { path: path.clone(), source })?
        };
        Ok(Self {
            db,
            writes,
            counters,
            shared,
            state,
            writer,
            path,
            replayed,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records of the write-ahead log replayed when the store was opened: batches that an
    /// earlier process made durable in the log but had not checkpointed (0 after a clean close).
    pub fn replayed(&self) -> usize {
        self.replayed
    }

    /// Why the store stopped, if it did: a write or sync of the log failed, batches that are
    /// durable in the log could not be committed (a full disk among others), or redb panicked
    /// (a damaged file). Every call fails from then on; opening the store again (restarting the
    /// proxy) replays the log and recovers, or refuses a damaged file.
    pub fn fault(&self) -> Option<String> {
        self.shared.broken.get().cloned()
    }

    /// Waits until the store stops (see [`EmbeddedStore::fault`]); returns why.
    pub async fn stopped(&self) -> String {
        let mut stopped = self.shared.stopped.subscribe();
        // The sender lives as long as the store: the wait ends only when the store stops.
        let _ = stopped.wait_for(|stopped| *stopped).await;
        self.fault().unwrap_or_default()
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// Finishes the queued writes, stops the writer and closes the file, so that it can be
    /// opened again (by this process or another).
    pub async fn close(self) -> Result<(), StoreError> {
        let Self { db, writes, writer, state, .. } = self;
        drop(writes);
        tokio::task::spawn_blocking(move || {
            let joined = writer.join();
            // The last holders of the database: closing it writes to the file.
            unpanicked(move || drop((state, db)))
                .map_err(|panic| format!("the database panicked while it was closed: {panic}"))?;
            joined.map_err(|_| "the writer thread panicked".to_string())
        })
        .await
        .map_err(backend)?
        .map_err(|reason| StoreError::Backend { store: STORE, source: reason.into() })
    }

    /// Sends a write to the writer thread and waits for its answer, or, when it is the only
    /// write in flight and the writer is idle, commits it on this thread.
    ///
    /// Why commit here: a lone entity's command otherwise crosses to the writer thread and back,
    /// and the runtime thread that waits sleeps through the log's sync and must be woken; on a
    /// fast disk those hops cost half as much again as the sync itself. Committing on this
    /// thread (inside `block_in_place`, so the runtime moves its other tasks elsewhere) leaves
    /// only the work. Concurrent writes still meet in the writer thread's batches.
    async fn write(&self, op: WriteOp) -> Result<u64, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let lone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let _in_flight = InFlight(&self.in_flight);
        let request = WriteRequest { op, reply };
        let request = if lone { self.commit_here(request) } else { Some(request) };
        if let Some(request) = request {
            self.writes.send(request).await.map_err(|_| StoreError::Closed { store: STORE })?;
        }
        outcome.await.map_err(|_| StoreError::Closed { store: STORE })?
    }

    /// Commits `request` on this thread if the runtime allows blocking in place and the writer is
    /// idle; otherwise gives it back.
    fn commit_here(&self, request: WriteRequest) -> Option<WriteRequest> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return Some(request);
        }
        match self.state.try_lock() {
            Ok(mut writer) => {
                tokio::task::block_in_place(|| writer.commit_batch(vec![request]));
                self.counters.committed_here.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => Some(request),
        }
    }

    /// Reads in a read transaction that sees every write answered before the call.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if let Some(reason) = self.shared.broken.get() {
            return Err(StoreError::Backend { store: STORE, source: reason.clone().into() });
        }
        if self.shared.unpublished.load(Ordering::Acquire) {
            self.write(WriteOp::Publish).await?;
        }
        let (db, shared) = (self.db.clone(), self.shared.clone());
        tokio::task::spawn_blocking(move || {
            unpanicked(|| f(&db.begin_read().map_err(backend)?)).unwrap_or_else(|panic| {
                let reason = format!("the database panicked on a read ({panic}); its file may be damaged");
                shared.stop(reason.clone());
                Err(StoreError::Backend { store: STORE, source: reason.into() })
            })
        })
        .await
        .map_err(backend)?
    }
}

/// What the database records of its log.
#[derive(Debug)]
struct Meta {
    /// The epoch the log's current records carry.
    epoch: u64,
    /// The database's salt.
    salt: u64,
    /// Whether the log may hold acknowledged writes redb does not have ([`LOG_OPEN`]); `None` in
    /// a database that does not record it.
    log_open: Option<bool>,
    /// The log's length as allocated ([`LOG_LENGTH`]).
    log_length: Option<u64>,
}

/// The database file at `path`, opened for reading and writing or created: never through a
/// symbolic link, and private to its owner when created (as the log).
fn open_file(path: &Path) -> std::io::Result<File> {
    log::options().read(true).write(true).create(true).truncate(false).open(path).map_err(log::nofollow)
}

/// Opens the database in `file` (initializing an empty one) after checking the checksum of
/// every page, creates its tables, and returns it with what it records of its log (a new salt
/// for a new database, whose log holds nothing).
fn create(file: File) -> Result<(Database, Meta), redb::Error> {
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .create_with_backend(redb::backends::FileBackend::new(file)?)?;
    let mut txn = db.begin_write()?;
    txn.set_two_phase_commit(true);
    txn.open_table(EVENTS)?;
    txn.open_table(SNAPSHOTS)?;
    txn.open_table(VALUES)?;
    let meta = {
        let mut meta = txn.open_table(META)?;
        let epoch = meta.get(LOG_EPOCH)?.map_or(0, |e| e.value());
        let stored = meta.get(LOG_SALT)?.map(|s| s.value());
        let salt = match stored {
            Some(salt) => salt,
            None => {
                let salt = random_u64();
                meta.insert(LOG_SALT, salt)?;
                meta.insert(LOG_OPEN, 0)?;
                salt
            }
        };
        let log_open = meta.get(LOG_OPEN)?.map(|open| open.value() != 0);
        let log_length = meta.get(LOG_LENGTH)?.map(|length| length.value());
        Meta { epoch, salt, log_open, log_length }
    };
    txn.commit()?;
    Ok((db, meta))
}

/// Whether the log at `wal`, as `found`, lost writes that were acknowledged: missing or short
/// while `meta` says it may hold some, or damaged before intact records.
fn judge(wal: &Path, meta: &Meta, found: &Found) -> Option<LogDamage> {
    let path = wal.to_path_buf();
    if meta.log_open == Some(true) {
        match (found.length, meta.log_length) {
            (None, _) => return Some(LogDamage::Missing { path }),
            (Some(length), Some(expected)) if length < expected => {
                return Some(LogDamage::Truncated { path, length, expected });
            }
            _ => {}
        }
    }
    match found.end {
        End::Damaged { offset, why, next, after } => {
            Some(LogDamage::Record { path, offset, why, next, after })
        }
        End::Clean | End::Torn { .. } => None,
    }
}

/// A random number from the standard library's per-process hash keys (seeded by the OS).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    hasher.finish()
}

/// The write-ahead log of the database at `path`: `<path>-wal`.
fn log_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

fn backend(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend { store: STORE, source: Box::new(source) }
}

impl Store for EmbeddedStore {
    async fn append(&self, append: Append) -> Result<u64, StoreError> {
        self.write(WriteOp::Append(append)).await
    }

    async fn read_events(&self, persistence_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let pid = persistence_id.to_string();
        self.read(move |txn| {
            let Some(from) = after.checked_add(1) else { return Ok(Vec::new()) };
            let table = txn.open_table(EVENTS).map_err(backend)?;
            let mut events = Vec::new();
            for entry in table.range((pid.as_str(), from)..=(pid.as_str(), u64::MAX)).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let sequence_number = key.value().1;
                events.push(StoredEvent {
                    sequence_number,
                    payload: decode_event(&pid, sequence_number, value.value())?,
                });
            }
            Ok(events)
        })
        .await
    }

    async fn highest_sequence(&self, persistence_id: &str) -> Result<u64, StoreError> {
        let pid = persistence_id.to_string();
        self.read(move |txn| {
            let table = txn.open_table(EVENTS).map_err(backend)?;
            writer::highest(&table, &pid).map_err(backend)
        })
        .await
    }

    async fn save_snapshot(&self, persistence_id: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        self.write(WriteOp::SaveSnapshot { persistence_id: persistence_id.to_string(), snapshot })
            .await
            .map(|_| ())
    }

    async fn latest_snapshot(&self, persistence_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let pid = persistence_id.to_string();
        self.read(move |txn| {
            let table = txn.open_table(SNAPSHOTS).map_err(backend)?;
            match table.get(pid.as_str()).map_err(backend)? {
                None => Ok(None),
                Some(bytes) => decode_snapshot(&pid, bytes.value()).map(Some),
            }
        })
        .await
    }

    async fn get_value(&self, key: &ValueKey) -> Result<ValueState, StoreError> {
        let key = key.clone();
        self.read(move |txn| {
            let table = txn.open_table(VALUES).map_err(backend)?;
            match table.get((key.persistence_id.as_str(), key.entity_id.as_str())).map_err(backend)? {
                None => Ok(ValueState::default()),
                Some(bytes) => decode_value(&key.persistence_id, &key.entity_id, bytes.value()),
            }
        })
        .await
    }

    async fn update_value(
        &self,
        key: &ValueKey,
        expected_revision: u64,
        value: Any,
    ) -> Result<u64, StoreError> {
        self.write(WriteOp::Value { key: key.clone(), expected: expected_revision, value: Some(value) }).await
    }

    async fn delete_value(&self, key: &ValueKey, expected_revision: u64) -> Result<u64, StoreError> {
        self.write(WriteOp::Value { key: key.clone(), expected: expected_revision, value: None }).await
    }
}

#[cfg(test)]
mod tests;
