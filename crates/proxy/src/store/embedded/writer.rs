//! The writer thread: the only place that writes to the database file.
//!
//! Group commit: requests from every entity queue on one channel. The writer takes the first
//! waiting request plus everything queued behind it (up to `max_batch`), applies them in order
//! in one write transaction and commits once, so one fsync covers the whole batch. While it
//! commits, new requests queue up and form the next batch. A request that fails its checks
//! writes nothing and does not affect the others in its batch; a storage failure aborts the
//! transaction and fails every request in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost_types::Any;
use redb::{Database, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::STORE;
use super::records::{
    EVENTS, SNAPSHOTS, VALUES, decode_snapshot, decode_value, encode_snapshot, encode_value,
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
}

/// What the writer has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterStats {
    /// Write transactions committed (each one fsync).
    pub commits: u64,
    /// Write requests handled (committed or failed).
    pub requests: u64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// Runs until every sender is gone. `gate`, if given, is awaited before the first batch (tests
/// use it to queue requests first and observe one batch).
pub(super) fn run(
    db: Arc<Database>,
    mut requests: mpsc::Receiver<WriteRequest>,
    counters: Arc<Counters>,
    max_batch: usize,
    gate: Option<oneshot::Receiver<()>>,
) {
    if let Some(gate) = gate {
        // A dropped gate opens it too.
        let _ = gate.blocking_recv();
    }
    let mut previous = Previous { size: 1, commit: Duration::ZERO };
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        drain(&mut requests, &mut batch, max_batch);
        linger(&mut requests, &mut batch, max_batch, &previous);
        let size = batch.len();
        let started = Instant::now();
        commit_batch(&db, batch, &counters);
        previous = Previous { size, commit: started.elapsed() };
    }
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

fn commit_batch(db: &Database, batch: Vec<WriteRequest>, counters: &Counters) {
    let result = apply_all(db, &batch);
    counters.requests.fetch_add(u64::try_from(batch.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
    match result {
        Ok(outcomes) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
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

type Outcomes = Vec<Result<u64, StoreError>>;

fn apply_all(db: &Database, batch: &[WriteRequest]) -> Result<Outcomes, redb::Error> {
    let txn = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut tables = Tables {
            events: txn.open_table(EVENTS)?,
            snapshots: txn.open_table(SNAPSHOTS)?,
            values: txn.open_table(VALUES)?,
        };
        for request in batch {
            outcomes.push(tables.apply(&request.op)?);
        }
    }
    txn.commit()?;
    Ok(outcomes)
}

struct Tables<'txn> {
    events: Table<'txn, (&'static str, u64), &'static [u8]>,
    snapshots: Table<'txn, &'static str, &'static [u8]>,
    values: Table<'txn, (&'static str, &'static str), &'static [u8]>,
}

impl Tables<'_> {
    /// The outer error is a storage failure (abort everything); the inner one is this request's.
    fn apply(&mut self, op: &WriteOp) -> Result<Result<u64, StoreError>, redb::Error> {
        match op {
            WriteOp::Append(append) => self.append(append),
            WriteOp::SaveSnapshot { persistence_id, snapshot } => {
                self.save_snapshot(persistence_id, snapshot)
            }
            WriteOp::Value { key, expected, value } => self.write_value(key, *expected, value.as_ref()),
        }
    }

    fn append(&mut self, append: &Append) -> Result<Result<u64, StoreError>, redb::Error> {
        let pid = append.persistence_id.as_str();
        let last = match check_append(append, highest(&self.events, pid)?) {
            Ok(last) => last,
            Err(e) => return Ok(Err(e)),
        };
        let mut sequence = append.first_sequence;
        for event in &append.events {
            let bytes = prost::Message::encode_to_vec(event);
            self.events.insert((pid, sequence), bytes.as_slice())?;
            sequence = sequence.saturating_add(1);
        }
        if let (Some(payload), false) = (&append.snapshot, append.events.is_empty()) {
            let bytes = encode_snapshot(&Snapshot { sequence_number: last, payload: payload.clone() });
            self.snapshots.insert(pid, bytes.as_slice())?;
        }
        Ok(Ok(last))
    }

    fn save_snapshot(
        &mut self,
        pid: &str,
        snapshot: &Snapshot,
    ) -> Result<Result<u64, StoreError>, redb::Error> {
        if let Err(e) = check_snapshot(pid, snapshot.sequence_number, highest(&self.events, pid)?) {
            return Ok(Err(e));
        }
        let stored = match self.snapshots.get(pid)? {
            None => None,
            Some(bytes) => match decode_snapshot(pid, bytes.value()) {
                Ok(stored) => Some(stored.sequence_number),
                Err(e) => return Ok(Err(e)),
            },
        };
        if stored.is_none_or(|seq| seq <= snapshot.sequence_number) {
            self.snapshots.insert(pid, encode_snapshot(snapshot).as_slice())?;
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
        let actual = match self.values.get(db_key)? {
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
        self.values.insert(db_key, bytes.as_slice())?;
        Ok(Ok(revision))
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
