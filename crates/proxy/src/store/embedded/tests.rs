//! Tests of the writer's batching and of durability across reopening. The behaviour shared
//! with other stores is tested in `tests/store.rs`.

use std::time::Duration;

use prost_types::Any;
use tokio::sync::oneshot;

use super::writer::{WriteOp, WriteRequest};
use super::{DamagedLog, EmbeddedStore, LOG_CAPACITY, OpenError, QUEUE};
use crate::store::{Append, Snapshot, Store, StoreError, ValueKey};

fn event(text: &str) -> Any {
    Any { type_url: "type.googleapis.com/test.Event".into(), value: text.as_bytes().to_vec() }
}

/// An append of one event, `text`, at `seq` to `pid`.
fn one_event(pid: &str, seq: u64, text: &str) -> Append {
    Append { persistence_id: pid.into(), first_sequence: seq, events: vec![event(text)], snapshot: None }
}

fn append(pid: &str, first_sequence: u64, texts: &[&str]) -> WriteOp {
    WriteOp::Append(Append {
        persistence_id: pid.into(),
        first_sequence,
        events: texts.iter().map(|t| event(t)).collect(),
        snapshot: None,
    })
}

/// Opens a store whose writer waits for the returned gate before its first batch.
fn gated(dir: &tempfile::TempDir, max_batch: usize) -> (EmbeddedStore, oneshot::Sender<()>) {
    let (open, gate) = oneshot::channel();
    let store =
        EmbeddedStore::open_with(&dir.path().join("store.redb"), DamagedLog::Refuse, max_batch, LOG_CAPACITY, Some(gate), |_| {})
            .expect("store opens in a fresh directory");
    (store, open)
}

/// Queues requests in this order, without waiting for results.
fn queue(store: &EmbeddedStore, ops: Vec<WriteOp>) -> Vec<oneshot::Receiver<Result<u64, StoreError>>> {
    ops.into_iter()
        .map(|op| {
            let (reply, outcome) = oneshot::channel();
            store.writes.try_send(WriteRequest { op, reply }).expect("queue has room");
            outcome
        })
        .collect()
}

async fn results(outcomes: Vec<oneshot::Receiver<Result<u64, StoreError>>>) -> Vec<Result<u64, String>> {
    let mut out = Vec::new();
    for outcome in outcomes {
        let result = tokio::time::timeout(Duration::from_secs(10), outcome)
            .await
            .expect("writer answers within 10s")
            .expect("writer keeps the reply channel");
        out.push(result.map_err(|e| e.metric_label().to_string()));
    }
    out
}

#[tokio::test]
async fn queued_writes_share_one_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, gate) = gated(&dir, 1024);
    let ops = (0..50).map(|i| append(&format!("cart|{i}"), 1, &["added"])).collect();
    let outcomes = queue(&store, ops);
    assert_eq!(store.writes.capacity(), QUEUE - 50);
    gate.send(()).expect("writer waits on the gate");
    assert!(results(outcomes).await.iter().all(|r| *r == Ok(1)));
    let stats = store.stats();
    assert_eq!((stats.commits, stats.requests), (1, 50));
    for i in 0..50 {
        assert_eq!(store.highest_sequence(&format!("cart|{i}")).await.expect("read"), 1);
    }
}

#[tokio::test]
async fn batches_are_capped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, gate) = gated(&dir, 2);
    let outcomes = queue(&store, (0..5).map(|i| append(&format!("e{i}"), 1, &["x"])).collect());
    gate.send(()).expect("writer waits on the gate");
    assert_eq!(results(outcomes).await.len(), 5);
    assert_eq!(store.stats().commits, 3);
}

#[tokio::test]
async fn a_conflict_in_a_batch_does_not_affect_the_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, gate) = gated(&dir, 1024);
    let outcomes = queue(
        &store,
        vec![
            append("a", 1, &["a1"]),
            append("a", 1, &["a1-stale"]),
            append("b", 1, &["b1", "b2"]),
            append("a", 2, &["a2"]),
            append("a", 9, &["gap"]),
        ],
    );
    gate.send(()).expect("writer waits on the gate");
    assert_eq!(
        results(outcomes).await,
        vec![Ok(1), Err("event_conflict".into()), Ok(2), Ok(2), Err("sequence_gap".into())]
    );
    assert_eq!(store.stats().commits, 1);
    let a: Vec<_> = store.read_events("a", 0).await.expect("read").into_iter().map(|e| e.payload).collect();
    assert_eq!(a, vec![event("a1"), event("a2")]);
}

#[tokio::test]
async fn everything_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let key = ValueKey::new("carts", "c1");
    {
        let store = EmbeddedStore::open(&path).expect("open");
        let append = Append {
            persistence_id: "cart|1".into(),
            first_sequence: 1,
            events: vec![event("e1"), event("e2")],
            snapshot: Some(event("state-2")),
        };
        assert_eq!(store.append(append).await.expect("append"), 2);
        assert_eq!(store.update_value(&key, 0, event("v1")).await.expect("update"), 1);
        store.close().await.expect("close");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    let events = store.read_events("cart|1", 0).await.expect("read");
    assert_eq!(events.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(events[1].payload, event("e2"));
    let snapshot = store.latest_snapshot("cart|1").await.expect("snapshot");
    assert_eq!(snapshot, Some(Snapshot { sequence_number: 2, payload: event("state-2") }));
    let value = store.get_value(&key).await.expect("value");
    assert_eq!((value.revision, value.value), (1, Some(event("v1"))));
    // The journal continues where it ended.
    let next = one_event("cart|1", 2, "x");
    assert!(matches!(store.append(next).await, Err(StoreError::EventConflict { sequence_number: 2, .. })));
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_full_log_checkpoints_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    // One page, room for about 60 one-event batches: most appends go to the log, some
    // checkpoint.
    let store = EmbeddedStore::open_with(&path, DamagedLog::Refuse, 1024, 4096, None, |_| {}).expect("open");
    let opened = store.stats().checkpoints;
    for seq in 1..=400 {
        assert_eq!(store.append(one_event("cart|1", seq, &format!("e{seq}"))).await.expect("append"), seq);
    }
    let stats = store.stats();
    assert!(stats.checkpoints - opened >= 5, "a 4 KiB log must fill: {stats:?}");
    assert!(stats.checkpoints - opened < 20, "most batches go to the log: {stats:?}");
    store.close().await.expect("close");
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.replayed(), 0, "a clean close leaves nothing to replay");
    let events = store.read_events("cart|1", 0).await.expect("read");
    assert_eq!(events.len(), 400);
    assert!(events.iter().enumerate().all(|(i, e)| e.payload == event(&format!("e{}", i + 1))));
    store.close().await.expect("close");
}

#[tokio::test]
async fn acknowledged_writes_are_published_before_a_read() {
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path().join("store.redb")).expect("open");
    let raw_events = |store: &EmbeddedStore| {
        let txn = store.db.begin_read().expect("read txn");
        txn.open_table(super::records::EVENTS).expect("events table").len().expect("len")
    };
    for seq in 1..=3 {
        store.append(one_event("p", seq, "e")).await.expect("append");
    }
    // Durable in the log, but still in the writer's open transaction.
    assert_eq!(raw_events(&store), 0);
    assert_eq!(store.read_events("p", 0).await.expect("read").len(), 3);
    assert_eq!(raw_events(&store), 3);
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_batch_larger_than_the_log_is_committed_by_a_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        EmbeddedStore::open_with(&dir.path().join("store.redb"), DamagedLog::Refuse, 1024, 256, None, |_| {}).expect("open");
    let opened = store.stats().checkpoints;
    let big = Any { type_url: "type.googleapis.com/test.Big".into(), value: vec![7; 5000] };
    let append =
        Append { persistence_id: "p".into(), first_sequence: 1, events: vec![big.clone()], snapshot: None };
    assert_eq!(store.append(append).await.expect("append"), 1);
    assert_eq!(store.stats().checkpoints, opened + 1);
    assert_eq!(store.read_events("p", 0).await.expect("read")[0].payload, big);
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_failed_log_write_stops_the_store_until_it_is_opened_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let one = |seq: u64| one_event("p", seq, &format!("e{seq}"));
    {
        let store = EmbeddedStore::open(&path).expect("open");
        assert_eq!(store.append(one(1)).await.expect("append"), 1);
        assert_eq!(store.fault(), None);
        store.close().await.expect("close");
    }
    let store =
        EmbeddedStore::open_with(&path, DamagedLog::Refuse, 1024, LOG_CAPACITY, None, |w| w.log.fail_writes()).expect("open");
    let error = store.append(one(2)).await.expect_err("the log cannot be written");
    assert!(error.to_string().contains("write-ahead log"), "{error}");
    let fault = store.fault().expect("the store reports its fault");
    assert!(fault.contains("must be opened again"), "{fault}");
    // Reads fail too: this process's view may be behind the log.
    assert!(store.read_events("p", 0).await.is_err());
    assert!(store.append(one(2)).await.is_err(), "no write is taken after the fault");
    store.close().await.expect("close");
    // Opened again, the store has what was acknowledged and takes writes.
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.fault(), None);
    assert_eq!(store.read_events("p", 0).await.expect("read").len(), 1);
    assert_eq!(store.append(one(2)).await.expect("append"), 2);
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_log_left_by_a_deleted_database_is_not_replayed_into_a_new_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let wal = dir.path().join("store.redb-wal");
    let store = EmbeddedStore::open(&path).expect("open");
    for seq in 1..=3 {
        store.append(one_event("old", seq, "e")).await.expect("append");
    }
    // The log as a crash would leave it: three records of the database's first epoch.
    let crashed_log = std::fs::read(&wal).expect("log");
    store.close().await.expect("close");
    std::fs::remove_file(&path).expect("delete the database");
    std::fs::write(&wal, &crashed_log).expect("the old log stays");
    // A new database, created beside the old log, ends without its closing checkpoint (as in a
    // crash; a stopped store skips it), so it is at the epoch the old records carry.
    let store = EmbeddedStore::open_with(&path, DamagedLog::Refuse, 1024, LOG_CAPACITY, None, |w| {
        let _ = w.shared.broken.set("ended as a crash would".into());
    })
    .expect("open a new database");
    assert_eq!(store.replayed(), 0);
    store.close().await.expect("close");
    std::fs::write(&wal, &crashed_log).expect("the old log again");
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.replayed(), 0, "another database's records are never replayed");
    assert!(store.read_events("old", 0).await.expect("read").is_empty());
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_write_commits_on_its_own_thread_and_concurrent_ones_meet_in_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).expect("open"));
    let one = |pid: &str, seq: u64| one_event(pid, seq, &format!("{pid}{seq}"));
    for seq in 1..=10 {
        assert_eq!(store.append(one("lone", seq)).await.expect("append"), seq);
    }
    assert_eq!(store.stats().committed_here, 10, "{:?}", store.stats());
    // Many at once: each still answered once, journals whole, most through the writer thread.
    let mut tasks = Vec::new();
    for task in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let pid = format!("many{task}");
            for seq in 1..=20 {
                assert_eq!(store.append(one(&pid, seq)).await.expect("append"), seq);
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    for task in 0..16 {
        let events = store.read_events(&format!("many{task}"), 0).await.expect("read");
        assert_eq!(
            events.iter().map(|e| e.sequence_number).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
    }
    let stats = store.stats();
    assert!(stats.committed_here < 10 + 16 * 20, "concurrent writes go to the writer thread: {stats:?}");
    let store = std::sync::Arc::try_unwrap(store).expect("the only owner");
    store.close().await.expect("close");
}

#[tokio::test]
async fn a_current_thread_runtime_always_uses_the_writer_thread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path().join("store.redb")).expect("open");
    assert_eq!(store.append(one_event("p", 1, "e")).await.expect("append"), 1);
    assert_eq!(store.stats().committed_here, 0);
    store.close().await.expect("close");
}

#[test]
fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir").join("store.redb");
    let error = EmbeddedStore::open(&path).expect_err("a file in a missing directory cannot be created");
    assert!(matches!(error, OpenError::Database { .. }));
    let message = error.to_string();
    assert!(message.starts_with(&format!("opening embedded store {}: ", path.display())), "{message}");
}
