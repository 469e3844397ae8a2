//! The writer thread: the only place that writes to the database file and its log, but for a
//! lone write, which its caller commits itself through the same [`Writer`] (under its lock;
//! see `EmbeddedStore::write`).
//!
//! Group commit: requests from every entity queue on one channel. The writer takes the first
//! waiting request plus everything queued behind it (up to `max_batch`), applies them in order
//! to its open write transaction, and appends the rows they put to the write-ahead log as one
//! record (one write, one `fdatasync`) before answering. While it works, new requests queue up
//! and form the next batch. A request that fails its checks writes nothing and does not affect
//! the others in its batch; a storage failure fails every request in the batch.
//!
//! The transaction stays open across batches and is committed without a sync ("published")
//! when a reader needs to see the writes, every [`PUBLISH_EVERY`] batches, or durably at a
//! checkpoint: when a batch does not fit in the log, at open (after replaying the log) and at
//! close. A checkpoint also starts the next log epoch, which empties the log.
//!
//! Architecture invariant: a request is answered only after its rows are durable, in a synced
//! log record or a durable commit; redb never commits a row the log or that commit does not
//! hold; a read sees every write answered before it began.
//!
//! Architecture invariant: no panic leaves the store. redb may panic on a damaged file; every
//! call into it runs under [`unpanicked`], and a panic stops the store (see [`Shared::broken`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use prost::Message as _;
use prost_types::Any;
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot, watch};

use super::log::{Log, LogError};
use super::records::{
    EVENTS, LOG_EPOCH, LOG_LENGTH, LOG_OPEN, LogBatch, LogPut, LogTable, META, SNAPSHOTS, STORE, VALUES,
    decode_snapshot, decode_value, encode_snapshot, encode_value,
};
use crate::store::rules::{check_append, check_revision, check_snapshot};
use crate::store::{Append, Snapshot, StoreError, ValueKey, ValueState};

/// A write, as sent to the writer thread.
pub(super) enum WriteOp {
    Append(Append),
    SaveSnapshot {
        persistence_id: String,
        snapshot: Snapshot,
    },
    /// Update (`Some`) or delete (`None`) a value.
    Value {
        key: ValueKey,
        expected: u64,
        value: Option<Any>,
    },
    /// Make every acknowledged write visible to readers (answered with 0).
    Publish,
    /// Panics while the batch is applied, as redb does on a damaged page (tests).
    #[cfg(test)]
    Panic,
}

/// A write and where its result goes: the last sequence number, the new revision, or 0.
pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// Counters of the writer's work, for metrics and tests.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
    pub checkpoints: AtomicU64,
    pub committed_here: AtomicU64,
}

/// What the writer has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches committed (each one sync: of the log, or of the database at a checkpoint).
    pub commits: u64,
    /// Write requests handled (committed or failed).
    pub requests: u64,
    /// Durable database commits that emptied the log (at open, when the log filled, at close).
    pub checkpoints: u64,
    /// Lone writes committed by their caller's thread instead of the writer thread's.
    pub committed_here: u64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            committed_here: self.committed_here.load(Ordering::Relaxed),
        }
    }
}

/// Runs until every sender is gone, then checkpoints (so the next open has nothing to replay).
/// `gate`, if given, is awaited before the first batch (tests use it to queue requests first and
/// observe one batch).
pub(super) fn run(
    writer: Arc<Mutex<Writer>>,
    mut requests: mpsc::Receiver<WriteRequest>,
    max_batch: usize,
    gate: Option<oneshot::Receiver<()>>,
) {
    if let Some(gate) = gate {
        // A dropped gate opens it too.
        let _ = gate.blocking_recv();
    }
    let mut previous = Previous { size: 1, commit: Duration::ZERO };
    while let Some(first) = next_request(&mut requests) {
        let mut batch = vec![first];
        drain(&mut requests, &mut batch, max_batch);
        linger(&mut requests, &mut batch, max_batch, &previous);
        let size = batch.len();
        let started = Instant::now();
        lock(&writer).commit_batch(batch);
        previous = Previous { size, commit: started.elapsed() };
    }
    let mut writer = lock(&writer);
    if writer.shared.broken.get().is_none() {
        let closed = unpanicked(|| writer.checkpoint(Marker::Closed));
        if let Err(error) = closed.unwrap_or_else(|panic| Err(BatchError::Broken(panic))) {
            tracing::warn!(%error, "embedded store: final checkpoint failed; the log will be replayed on open");
        }
    }
}

/// Runs `f`, turning a panic into its message. redb panics on some damage to its file; the
/// store calls it only through this, and stops when it panics.
pub(super) fn unpanicked<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload.downcast_ref::<&str>().map(|s| (*s).to_string());
        let message = message.or_else(|| payload.downcast_ref::<String>().cloned());
        message.unwrap_or_else(|| "a panic without a message".into())
    })
}

/// The writer, whoever holds it. Nothing panics while holding it; if something did, the state
/// is still the writer's own (a broken batch stops the store), so a poisoned lock is taken.
pub(super) fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the writer polls for the next request before it sleeps (see [`next_request`]).
const SPIN: Duration = Duration::from_micros(60);

/// The next request, `None` once every sender is gone.
///
/// Why poll first: a lone entity sends its next command's write a few microseconds after the
/// last one was answered. Sleeping in between costs a wake-up of this thread per command, as much
/// as a third of a fast disk's sync; polling for a moment catches the request awake. The poll
/// ends after [`SPIN`], so an idle store sleeps.
fn next_request(requests: &mut mpsc::Receiver<WriteRequest>) -> Option<WriteRequest> {
    let started = Instant::now();
    while started.elapsed() < SPIN {
        match requests.try_recv() {
            Ok(request) => return Some(request),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    requests.blocking_recv()
}

/// The last batch: how many requests it held and how long its commit took.
struct Previous {
    size: usize,
    commit: Duration,
}

/// Longest a batch waits for stragglers (see [`linger`]).
const MAX_LINGER: Duration = Duration::from_millis(2);

fn drain(requests: &mut mpsc::Receiver<WriteRequest>, batch: &mut Vec<WriteRequest>, max_batch: usize) {
    while batch.len() < max_batch {
        match requests.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
}

/// When the last batch held several requests, waits briefly for this one to grow as large.
///
/// Why: writers whose requests were just committed are still being woken when the next batch is
/// taken, so without waiting, batches alternate between a few requests and the rest, and every
/// second fsync is nearly wasted. The wait is bounded by a quarter of the last commit's time
/// (and [`MAX_LINGER`]), so it costs little next to the fsync it saves; a lone writer (last
/// batch of one) never waits, keeping one entity at one fsync per command.
fn linger(
    requests: &mut mpsc::Receiver<WriteRequest>,
    batch: &mut Vec<WriteRequest>,
    max_batch: usize,
    previous: &Previous,
) {
    if previous.size <= 1 {
        return;
    }
    let want = previous.size.min(max_batch);
    let deadline = Instant::now() + (previous.commit / 4).min(MAX_LINGER);
    while batch.len() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
        drain(requests, batch, max_batch);
    }
}

/// `From` each of redb's error types for an error enum with a `Database(redb::Error)` variant.
macro_rules! database_errors {
    ($error:ty) => {
        database_errors!($error: redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);
    };
    ($error:ty: $($source:ty),*) => {$(
        impl From<$source> for $error {
            fn from(e: $source) -> Self {
                Self::Database(e.into())
            }
        }
    )*};
}

/// Why a batch failed as a whole.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Database(#[from] redb::Error),
    #[error("{0}")]
    Broken(String),
}

database_errors!(BatchError);

/// Acknowledged batches published (committed, unsynced) at least this often, so that the open
/// transaction stays small.
const PUBLISH_EVERY: usize = 64;

/// What the writer and the store's readers share.
#[derive(Debug)]
pub(super) struct Shared {
    /// Acknowledged writes wait in the writer's open transaction, not yet visible to readers:
    /// a read first asks the writer to publish them ([`WriteOp::Publish`]).
    pub unpublished: AtomicBool,
    /// Why the store stopped: this process's view of the database may be behind what the log
    /// holds durably, so every read and write fails until the store is opened again (which
    /// replays the log). Set by a failed log write or sync (after which the page cache cannot be
    /// trusted, as PostgreSQL concluded), a failed commit of acknowledged batches (a full disk
    /// among others), or a panic of redb (a damaged file). Set only through [`Shared::stop`].
    pub broken: OnceLock<String>,
    /// `true` once `broken` is set, for those who wait for it (see `EmbeddedStore::stopped`).
    pub stopped: watch::Sender<bool>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            unpublished: AtomicBool::new(false),
            broken: OnceLock::new(),
            stopped: watch::Sender::new(false),
        }
    }
}

impl Shared {
    /// Stops the store for good with `reason` (the first reason stays), and logs it.
    pub(super) fn stop(&self, reason: String) {
        if self.broken.set(reason.clone()).is_ok() {
            tracing::error!(reason = %reason, "embedded store stopped");
            self.stopped.send_replace(true);
        }
    }
}

/// What a checkpoint records of the log in redb (see [`LOG_OPEN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    /// The store is open: the log may hold records redb does not have.
    Open,
    /// The store is closing: the log holds nothing redb does not have.
    Closed,
}

/// The database, its write-ahead log, and the transaction acknowledged batches accumulate in.
pub(super) struct Writer {
    pub db: Arc<Database>,
    pub log: Log,
    pub counters: Arc<Counters>,
    pub shared: Arc<Shared>,
    /// Open across batches (without sync, [`Durability::None`]) and committed when a reader
    /// needs it, every [`PUBLISH_EVERY`] batches, or durably at a checkpoint: a commit per batch
    /// cost as much as the log's sync on a fast disk.
    pub txn: Option<WriteTransaction>,
    /// Acknowledged batches in `txn`.
    pub pending: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("pending", &self.pending)
            .field("epoch", &self.log.epoch())
            .field("broken", &self.shared.broken.get())
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(super) fn new(db: Arc<Database>, log: Log, counters: Arc<Counters>, shared: Arc<Shared>) -> Self {
        Self { db, log, counters, shared, txn: None, pending: 0 }
    }

    /// Applies a batch, makes it durable and answers every request in it.
    pub(super) fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let result = unpanicked(|| self.apply_all(&batch)).unwrap_or_else(|panic| {
            Err(self.stop(format!("the database panicked ({panic}); its file may be damaged")))
        });
        self.counters.requests.fetch_add(u64::try_from(batch.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
        match result {
            Ok(outcomes) => {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // The caller may have gone away; its write stands regardless.
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                let message = error.to_string();
                for request in batch {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Backend { store: STORE, source: message.clone().into() }));
                }
            }
        }
    }

    /// Applies the batch in the open transaction and makes it durable: through the log (one
    /// write and one sync), or, when it does not fit in the log, by a checkpoint.
    fn apply_all(&mut self, batch: &[WriteRequest]) -> Result<Outcomes, BatchError> {
        if let Some(reason) = self.shared.broken.get() {
            return Err(BatchError::Broken(reason.clone()));
        }
        let txn = match self.txn.take() {
            Some(txn) => txn,
            None => {
                let mut txn = self.db.begin_write()?;
                txn.set_durability(Durability::None).map_err(|e| BatchError::Broken(e.to_string()))?;
                txn
            }
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut puts = Vec::new();
        let mut publish = false;
        if let Err(error) = apply_ops(&txn, batch, &mut outcomes, &mut puts, &mut publish) {
            // The transaction holds part of this batch: drop it, and with it any acknowledged
            // batches not yet published (which only the log now has).
            return Err(self.lose(txn, error));
        }
        self.txn = Some(txn);
        if !puts.is_empty() {
            let record = LogBatch { puts }.encode_to_vec();
            if self.log.fits(record.len()) {
                if let Err(error) = self.log.append(&record) {
                    return Err(self.stop(format!(
                        "{error}; whether this batch reached the disk is unknown, the store must be opened \
                         again"
                    )));
                }
                self.pending += 1;
                self.shared.unpublished.store(true, Ordering::Release);
            } else {
                self.checkpoint(Marker::Open)?;
            }
        }
        if (publish || self.pending >= PUBLISH_EVERY)
            && let Err(error) = self.publish()
        {
            // The batch's writes are durable in the log, so their outcomes stand; only the
            // requests that asked to see them fail (and the store stops).
            let message = error.to_string();
            for (request, outcome) in batch.iter().zip(outcomes.iter_mut()) {
                if matches!(request.op, WriteOp::Publish) {
                    *outcome = Err(StoreError::Backend { store: STORE, source: message.clone().into() });
                }
            }
        }
        Ok(outcomes)
    }

    /// Makes the acknowledged batches visible to readers: commits the open transaction without
    /// a sync (they are durable in the log already).
    fn publish(&mut self) -> Result<(), BatchError> {
        if let Some(txn) = self.txn.take()
            && let Err(error) = txn.commit()
        {
            return Err(self.stop(format!(
                "committing batches that are durable in the write-ahead log failed ({error}); \
                 the store must be opened again"
            )));
        }
        self.pending = 0;
        self.shared.unpublished.store(false, Ordering::Release);
        Ok(())
    }

    /// Commits the open transaction (or an empty one) durably with the next epoch, which makes
    /// every record in the log obsolete, and `marker` (with the log's length).
    ///
    /// Two-phase: redb then refuses a file whose last commit is damaged rather than silently
    /// falling back to the commit before it (which the log no longer holds).
    fn checkpoint(&mut self, marker: Marker) -> Result<(), BatchError> {
        let txn = match self.txn.take() {
            Some(txn) => txn,
            None => self.db.begin_write()?,
        };
        let result = (|| -> Result<u64, BatchError> {
            let mut txn = txn;
            txn.set_durability(Durability::Immediate).map_err(|e| BatchError::Broken(e.to_string()))?;
            txn.set_two_phase_commit(true);
            let next = self.log.epoch().saturating_add(1);
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(LOG_EPOCH, next)?;
                meta.insert(LOG_OPEN, u64::from(marker == Marker::Open))?;
                meta.insert(LOG_LENGTH, self.log.capacity())?;
            }
            txn.commit()?;
            Ok(next)
        })();
        match result {
            Ok(next) => {
                self.log.restart(next);
                self.pending = 0;
                self.shared.unpublished.store(false, Ordering::Release);
                self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            // A durable commit that failed leaves redb unable to write again (it latches an I/O
            // failure), so the store stops whether or not batches were pending: a store that can
            // no longer write must say so (and fail `/alive`), not answer each command with an error.
            Err(error) => Err(self.stop(format!(
                "a checkpoint failed ({error}); the store can no longer write and must be opened again"
            ))),
        }
    }

    /// A failure while `txn` was being written: the batch fails, and unless the batch itself was
    /// at fault, so does the store.
    fn lose(&mut self, txn: WriteTransaction, error: redb::Error) -> BatchError {
        let _ = txn.abort();
        // Only a value too large for redb is this batch's own fault; any other failure is the
        // storage's (I/O, corruption), after which redb writes nothing more: the store stops.
        if self.pending == 0 && matches!(error, redb::Error::ValueTooLarge(_)) {
            return BatchError::Database(error);
        }
        let held = match self.pending {
            0 => "",
            _ => "; acknowledged writes are only in the write-ahead log",
        };
        self.stop(format!("{error}{held}; the store can no longer write and must be opened again"))
    }

    /// Stops the store for good (see [`Shared::broken`]).
    fn stop(&mut self, reason: String) -> BatchError {
        self.shared.stop(reason.clone());
        if let Some(txn) = self.txn.take() {
            let _ = unpanicked(|| txn.abort());
        }
        BatchError::Broken(reason)
    }
}

/// Applies every request of a batch to `txn`; the outer error is a storage failure.
fn apply_ops(
    txn: &WriteTransaction,
    batch: &[WriteRequest],
    outcomes: &mut Outcomes,
    puts: &mut Vec<LogPut>,
    publish: &mut bool,
) -> Result<(), redb::Error> {
    let mut tables = Tables { txn, events: None, snapshots: None, values: None, puts };
    for request in batch {
        if matches!(request.op, WriteOp::Publish) {
            *publish = true;
            outcomes.push(Ok(0));
        } else {
            outcomes.push(tables.apply(&request.op)?);
        }
    }
    Ok(())
}

type Outcomes = Vec<Result<u64, StoreError>>;

/// Replays `bodies`, the log's records, into the database's tables, then checkpoints: the
/// database then holds everything any earlier process acknowledged, and the log starts empty.
pub(super) fn recover(writer: &mut Writer, bodies: &[Vec<u8>]) -> Result<(), RecoverError> {
    let txn = writer.db.begin_write()?;
    {
        let mut events = txn.open_table(EVENTS)?;
        let mut snapshots = txn.open_table(SNAPSHOTS)?;
        let mut values = txn.open_table(VALUES)?;
        for (index, body) in bodies.iter().enumerate() {
            let batch = LogBatch::decode(body.as_slice()).map_err(|source| RecoverError::Record {
                index,
                epoch: writer.log.epoch(),
                source,
            })?;
            for put in batch.puts {
                let pid = put.persistence_id.as_str();
                match LogTable::try_from(put.table) {
                    Ok(LogTable::Events) => {
                        events.insert((pid, put.sequence_number), put.value.as_slice())?;
                    }
                    Ok(LogTable::Snapshots) => {
                        snapshots.insert(pid, put.value.as_slice())?;
                    }
                    Ok(LogTable::Values) => {
                        values.insert((pid, put.entity_id.as_str()), put.value.as_slice())?;
                    }
                    Ok(LogTable::Unknown) | Err(_) => {
                        return Err(RecoverError::Table { index, table: put.table });
                    }
                }
            }
        }
    }
    writer.txn = Some(txn);
    writer.checkpoint(Marker::Open).map_err(|e| match e {
        BatchError::Database(e) => RecoverError::Database(e),
        other => RecoverError::Database(redb::Error::Corrupted(other.to_string())),
    })
}

/// Failure to replay the write-ahead log into the database.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The database could not be written.
    #[error("replaying the write-ahead log: {0}")]
    Database(#[from] redb::Error),
    /// A record passed its checksum but is not a batch: written by something else.
    #[error("write-ahead log record {index} of epoch {epoch} is not a batch: {source}")]
    Record {
        /// Its place in the log, from 0.
        index: usize,
        /// The epoch it was written in.
        epoch: u64,
        /// What decoding reported.
        source: prost::DecodeError,
    },
    /// A record names a table the store does not have.
    #[error("write-ahead log record {index} writes to unknown table {table}")]
    Table {
        /// Its place in the log, from 0.
        index: usize,
        /// The table's number.
        table: i32,
    },
}

database_errors!(RecoverError);

type EventsTable<'txn> = Table<'txn, (&'static str, u64), &'static [u8]>;
type SnapshotsTable<'txn> = Table<'txn, &'static str, &'static [u8]>;
type ValuesTable<'txn> = Table<'txn, (&'static str, &'static str), &'static [u8]>;

/// The tables a batch writes, opened when first used (an open table is written back to the
/// transaction when dropped, which costs even if nothing changed), and the rows the batch put so
/// far (for the log).
struct Tables<'txn, 'p> {
    txn: &'txn WriteTransaction,
    events: Option<EventsTable<'txn>>,
    snapshots: Option<SnapshotsTable<'txn>>,
    values: Option<ValuesTable<'txn>>,
    puts: &'p mut Vec<LogPut>,
}

/// The table in `slot`, opened in `txn` first if needed.
fn opened<'s, 'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'txn WriteTransaction,
    slot: &'s mut Option<Table<'txn, K, V>>,
    definition: redb::TableDefinition<'static, K, V>,
) -> Result<&'s mut Table<'txn, K, V>, redb::TableError> {
    match slot {
        Some(table) => Ok(table),
        None => Ok(slot.insert(txn.open_table(definition)?)),
    }
}

impl Tables<'_, '_> {
    /// The outer error is a storage failure (abort everything); the inner one is this request's.
    fn apply(&mut self, op: &WriteOp) -> Result<Result<u64, StoreError>, redb::Error> {
        match op {
            WriteOp::Append(append) => self.append(append),
            WriteOp::SaveSnapshot { persistence_id, snapshot } => {
                self.save_snapshot(persistence_id, snapshot)
            }
            WriteOp::Value { key, expected, value } => self.write_value(key, *expected, value.as_ref()),
            WriteOp::Publish => Ok(Ok(0)),
            #[cfg(test)]
            WriteOp::Panic => panic!("simulated panic of the database"),
        }
    }

    fn append(&mut self, append: &Append) -> Result<Result<u64, StoreError>, redb::Error> {
        let pid = append.persistence_id.as_str();
        let last = match check_append(append, highest(opened(self.txn, &mut self.events, EVENTS)?, pid)?) {
            Ok(last) => last,
            Err(e) => return Ok(Err(e)),
        };
        let mut sequence = append.first_sequence;
        for event in &append.events {
            let bytes = event.encode_to_vec();
            opened(self.txn, &mut self.events, EVENTS)?.insert((pid, sequence), bytes.as_slice())?;
            self.puts.push(put(LogTable::Events, pid, sequence, "", bytes));
            sequence = sequence.saturating_add(1);
        }
        if let (Some(payload), false) = (&append.snapshot, append.events.is_empty()) {
            let bytes = encode_snapshot(&Snapshot { sequence_number: last, payload: payload.clone() });
            opened(self.txn, &mut self.snapshots, SNAPSHOTS)?.insert(pid, bytes.as_slice())?;
            self.puts.push(put(LogTable::Snapshots, pid, 0, "", bytes));
        }
        Ok(Ok(last))
    }

    fn save_snapshot(
        &mut self,
        pid: &str,
        snapshot: &Snapshot,
    ) -> Result<Result<u64, StoreError>, redb::Error> {
        if let Err(e) = check_snapshot(
            pid,
            snapshot.sequence_number,
            highest(opened(self.txn, &mut self.events, EVENTS)?, pid)?,
        ) {
            return Ok(Err(e));
        }
        let stored = match opened(self.txn, &mut self.snapshots, SNAPSHOTS)?.get(pid)? {
            None => None,
            Some(bytes) => match decode_snapshot(pid, bytes.value()) {
                Ok(stored) => Some(stored.sequence_number),
                Err(e) => return Ok(Err(e)),
            },
        };
        if stored.is_none_or(|seq| seq <= snapshot.sequence_number) {
            let bytes = encode_snapshot(snapshot);
            opened(self.txn, &mut self.snapshots, SNAPSHOTS)?.insert(pid, bytes.as_slice())?;
            self.puts.push(put(LogTable::Snapshots, pid, 0, "", bytes));
        }
        Ok(Ok(0))
    }

    fn write_value(
        &mut self,
        key: &ValueKey,
        expected: u64,
        value: Option<&Any>,
    ) -> Result<Result<u64, StoreError>, redb::Error> {
        let db_key = (key.persistence_id.as_str(), key.entity_id.as_str());
        let actual = match opened(self.txn, &mut self.values, VALUES)?.get(db_key)? {
            None => 0,
            Some(bytes) => match decode_value(&key.persistence_id, &key.entity_id, bytes.value()) {
                Ok(state) => state.revision,
                Err(e) => return Ok(Err(e)),
            },
        };
        let revision = match check_revision(key, expected, actual) {
            Ok(revision) => revision,
            Err(e) => return Ok(Err(e)),
        };
        let bytes = encode_value(&ValueState { revision, value: value.cloned() });
        opened(self.txn, &mut self.values, VALUES)?.insert(db_key, bytes.as_slice())?;
        self.puts.push(put(LogTable::Values, &key.persistence_id, 0, &key.entity_id, bytes));
        Ok(Ok(revision))
    }
}

fn put(
    table: LogTable,
    persistence_id: &str,
    sequence_number: u64,
    entity_id: &str,
    value: Vec<u8>,
) -> LogPut {
    LogPut {
        table: table as i32,
        persistence_id: persistence_id.to_string(),
        sequence_number,
        entity_id: entity_id.to_string(),
        value,
    }
}

/// The highest sequence number of `pid` in `events`, 0 if none.
pub(super) fn highest(
    events: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    pid: &str,
) -> Result<u64, redb::StorageError> {
    let mut range = events.range((pid, 0)..=(pid, u64::MAX))?;
    match range.next_back() {
        None => Ok(0),
        Some(entry) => Ok(entry?.0.value().1),
    }
}
