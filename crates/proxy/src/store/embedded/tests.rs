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
    let store = EmbeddedStore::open_with(
        &dir.path().join("store.redb"),
        DamagedLog::Refuse,
        max_batch,
        LOG_CAPACITY,
        Some(gate),
        |_| {},
    )
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
        EmbeddedStore::open_with(&dir.path().join("store.redb"), DamagedLog::Refuse, 1024, 256, None, |_| {})
            .expect("open");
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
    let store = EmbeddedStore::open_with(&path, DamagedLog::Refuse, 1024, LOG_CAPACITY, None, |w| {
        w.log.fail_writes()
    })
    .expect("open");
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
    assert!(matches!(error, OpenError::File { .. }));
    let message = error.to_string();
    assert!(message.starts_with(&format!("opening embedded store {}: ", path.display())), "{message}");
}

/// A store at `dir/store.redb` that acknowledged `count` one-event appends to `"p"` and then
/// ended as a crash would: without its closing checkpoint, so that they are only in its log.
/// Returns the store's path and where each record starts in the log.
async fn crashed(dir: &tempfile::TempDir, count: u64) -> (std::path::PathBuf, Vec<u64>) {
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path).expect("open");
    for seq in 1..=count {
        store.append(one_event("p", seq, &format!("event number {seq}"))).await.expect("append");
    }
    let _ = store.shared.broken.set("ended as a crash would".into());
    store.close().await.expect("close");
    let offsets = record_offsets(&std::fs::read(wal(dir)).expect("log"));
    assert_eq!(offsets.len() as u64, count, "one record per append");
    (path, offsets)
}

fn wal(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("store.redb-wal")
}

/// Where the records of the log's first epoch start.
fn record_offsets(log: &[u8]) -> Vec<u64> {
    let word = |at: usize, n: usize| log[at..at + n].iter().rev().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    let epoch = word(8, 8);
    let mut offsets = Vec::new();
    let mut at = 0;
    while word(at, 4) != 0 && word(at + 8, 8) == epoch {
        offsets.push(at as u64);
        at += 16 + word(at, 4) as usize;
    }
    offsets
}

fn damage(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("opens");
    file.write_all_at(bytes, offset).expect("damages");
}

/// Opening refuses; the message names the problem.
fn refused(path: &std::path::Path) -> String {
    let error = EmbeddedStore::open(path).expect_err("a log that lost acknowledged writes is refused");
    assert!(matches!(error, OpenError::DamagedLog { .. }), "{error:?}");
    error.to_string()
}

/// The events of `"p"` in a store opened at `path`.
async fn sequences(path: &std::path::Path) -> Vec<u64> {
    let store = EmbeddedStore::open(path).expect("opens");
    let events = store.read_events("p", 0).await.expect("read");
    store.close().await.expect("close");
    events.iter().map(|e| e.sequence_number).collect()
}

#[tokio::test]
async fn files_are_created_private_and_symbolic_links_are_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    EmbeddedStore::open(&path).expect("open").close().await.expect("close");
    for file in [&path, &wal(&dir)] {
        let mode = std::fs::metadata(file).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", file.display());
    }
    // A link at either path, even to the store's own file, is not followed.
    let moved = dir.path().join("moved");
    for (file, named) in [
        (&path, format!("opening embedded store {}", path.display())),
        (&wal(&dir), format!("write-ahead log {}", wal(&dir).display())),
    ] {
        std::fs::rename(file, &moved).expect("moves");
        std::os::unix::fs::symlink(&moved, file).expect("links");
        let error = EmbeddedStore::open(&path).expect_err("a symbolic link is refused");
        let message = error.to_string();
        assert!(
            message.contains(&format!("{named}: it is a symbolic link, which the store does not follow")),
            "{message}"
        );
        std::fs::remove_file(file).expect("unlinks");
        std::fs::rename(&moved, file).expect("moves back");
    }
    EmbeddedStore::open(&path).expect("opens again").close().await.expect("close");
}

#[tokio::test]
async fn a_damaged_record_in_the_middle_of_the_log_is_refused_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, at) = crashed(&dir, 5).await;
    damage(&wal(&dir), at[2] + 20, b"\xde\xad\xbe\xef");
    let damaged = std::fs::read(wal(&dir)).expect("log");
    let message = refused(&path);
    let expected = format!(
        "opening embedded store {}: its write-ahead log {} is damaged at byte {}: the record there fails its \
         checksum, but 2 intact records of the same epoch follow (the first at byte {}); to open it without \
         them, start the proxy with --discard-damaged-log (or STEAD_DISCARD_DAMAGED_LOG=true)",
        path.display(),
        wal(&dir).display(),
        at[2],
        at[3]
    );
    assert_eq!(message, expected);
    // Refusing changed nothing: the same again, and the log is as it was.
    assert_eq!(refused(&path), expected);
    assert!(std::fs::read(wal(&dir)).expect("log") == damaged, "the log is unchanged");
}

#[tokio::test]
async fn a_damaged_first_record_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, at) = crashed(&dir, 3).await;
    damage(&wal(&dir), 17, b"\x00");
    let message = refused(&path);
    assert!(message.contains(&format!("{} is damaged at byte 0:", wal(&dir).display())), "{message}");
    assert!(
        message.contains(&format!("2 intact records of the same epoch follow (the first at byte {})", at[1]))
    );
}

#[tokio::test]
async fn a_truncated_log_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, at) = crashed(&dir, 3).await;
    let cut = at[1] + 10;
    std::fs::OpenOptions::new().write(true).open(wal(&dir)).expect("opens").set_len(cut).expect("truncates");
    let message = refused(&path);
    assert!(
        message.contains(&format!(
            "its write-ahead log {} ends at byte {cut}, but it was {LOG_CAPACITY} bytes long and the store was not \
             closed cleanly",
            wal(&dir).display()
        )),
        "{message}"
    );
    // Even cut to nothing, or where no record was.
    for cut in [0, LOG_CAPACITY - 4096] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(wal(&dir))
            .expect("opens")
            .set_len(cut)
            .expect("truncates");
        assert!(refused(&path).contains(&format!("ends at byte {cut}")));
    }
}

#[tokio::test]
async fn a_deleted_log_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, _) = crashed(&dir, 3).await;
    std::fs::remove_file(wal(&dir)).expect("deletes");
    let message = refused(&path);
    assert!(
        message.contains(&format!(
            "its write-ahead log {} is missing, but the store was not closed cleanly",
            wal(&dir).display()
        )),
        "{message}"
    );
    assert!(!wal(&dir).exists(), "refusing does not create the log");
}

#[tokio::test]
async fn a_torn_last_record_is_dropped_and_the_rest_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, at) = crashed(&dir, 4).await;
    // The last write's end never reached the disk.
    damage(&wal(&dir), at[3] + 20, &[0; 8]);
    assert_eq!(sequences(&path).await, vec![1, 2, 3]);
    // A missing or damaged log after a clean close loses nothing: nothing depends on it.
    std::fs::remove_file(wal(&dir)).expect("deletes");
    assert_eq!(sequences(&path).await, vec![1, 2, 3]);
    damage(&wal(&dir), 0, &[0xff; 64]);
    assert_eq!(sequences(&path).await, vec![1, 2, 3]);
}

/// Runs `open` with a subscriber that keeps what is logged; returns its result and the lines.
fn logged<T>(open: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let result = tracing::subscriber::with_default(subscriber, open);
    let text = String::from_utf8_lossy(&lines.0.lock().expect("lines")).into_owned();
    (result, text)
}

#[tokio::test]
async fn told_to_discard_the_store_opens_with_what_came_before_the_damage_and_warns_with_the_count() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, at) = crashed(&dir, 6).await;
    damage(&wal(&dir), at[2] + 20, b"\xde\xad\xbe\xef");
    let (store, lines) = logged(|| EmbeddedStore::open_recovering(&path, DamagedLog::Discard));
    let store = store.expect("opens when told to discard");
    assert_eq!(store.replayed(), 2);
    assert!(lines.contains("WARN"), "{lines}");
    assert!(lines.contains("4 records discarded"), "{lines}");
    assert!(lines.contains(&format!("is damaged at byte {}", at[2])), "{lines}");
    assert_eq!(store.read_events("p", 0).await.expect("read").len(), 2);
    // The journal goes on from there.
    assert_eq!(store.append(one_event("p", 3, "again")).await.expect("append"), 3);
    store.close().await.expect("close");
    assert_eq!(sequences(&path).await, vec![1, 2, 3]);

    // A deleted log: the count is not known, and said so.
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, _) = crashed(&dir, 2).await;
    std::fs::remove_file(wal(&dir)).expect("deletes");
    let (store, lines) = logged(|| EmbeddedStore::open_recovering(&path, DamagedLog::Discard));
    store.expect("opens when told to discard").close().await.expect("close");
    assert!(lines.contains("an unknown number of records discarded"), "{lines}");
    assert!(lines.contains("is missing"), "{lines}");
    assert_eq!(sequences(&path).await, Vec::<u64>::new());
}

#[tokio::test]
async fn a_damaged_database_page_is_refused_at_open_without_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let marker = "a payload easy to find in the file";
    {
        let store = EmbeddedStore::open(&path).expect("open");
        for seq in 1..=20 {
            store.append(one_event("p", seq, &format!("{marker} {seq:02}"))).await.expect("append");
        }
        store.close().await.expect("clean close");
    }
    let bytes = std::fs::read(&path).expect("database");
    let found =
        bytes.windows(marker.len()).position(|w| w == marker.as_bytes()).expect("the events are in the file");
    damage(&path, found as u64, b"\xde\xad\xbe\xef");
    for _ in 0..2 {
        let error = EmbeddedStore::open(&path).expect_err("a damaged page is refused");
        assert!(matches!(error, OpenError::Damaged { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.starts_with(&format!("embedded store {} is damaged (", path.display())), "{message}");
        assert!(
            message.ends_with("restore the file from a backup, or move it away to start with an empty store")
        );
    }
}

#[tokio::test]
async fn a_panic_of_the_database_stops_the_store_and_every_call_fails_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path).expect("open");
    assert_eq!(store.append(one_event("p", 1, "e1")).await.expect("append"), 1);
    // A read on which redb panics.
    let stopped = store.stopped();
    let read = store.read(|_| -> Result<(), StoreError> { panic!("simulated panic of the database") });
    let error = read.await.expect_err("the panic is an error");
    assert!(error.to_string().contains("the database panicked on a read (simulated panic"), "{error}");
    let fault = store.fault().expect("the store reports its fault");
    assert!(fault.contains("its file may be damaged"), "{fault}");
    let reason =
        tokio::time::timeout(Duration::from_secs(1), stopped).await.expect("waiters learn it at once");
    assert_eq!(reason, fault);
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert!(store.read_events("p", 0).await.is_err());
        assert!(store.append(one_event("p", 2, "e2")).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(500), "fails fast: {:?}", started.elapsed());
    }
    store.close().await.expect("close");

    // A write on which redb panics: its batch fails, the writer lives on, the store stops.
    let store = EmbeddedStore::open(&path).expect("reopen");
    let outcomes = queue(&store, vec![append("q", 1, &["q1"]), WriteOp::Panic]);
    let results = results(outcomes).await;
    assert_eq!(results, vec![Err("backend".to_string()), Err("backend".to_string())]);
    let fault = store.fault().expect("the store reports its fault");
    assert!(fault.contains("the database panicked (simulated panic"), "{fault}");
    assert!(store.append(one_event("q", 1, "q1")).await.is_err(), "no write is taken after the fault");
    store.close().await.expect("the writer thread did not die");
    // Opened again, the store has what was acknowledged.
    assert_eq!(sequences(&path).await, vec![1]);

    // A panic while the store opens is a named error too.
    let error = EmbeddedStore::open_with(&path, DamagedLog::Refuse, 1024, LOG_CAPACITY, None, |_| {
        panic!("simulated panic of the database")
    })
    .expect_err("the panic is an error");
    assert!(matches!(error, OpenError::Damaged { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("the database panicked while it was opened: simulated panic"), "{message}");
    assert_eq!(sequences(&path).await, vec![1]);
}

/// A tmpfs of `size` mounted on a new directory until dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// Mounts one as root; otherwise says why not (and fails under CI, where tests run as root).
    fn mount(size: &str) -> Option<Tmpfs> {
        if !stead_testkit::require_root("mounts a small tmpfs") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let options = format!("size={size},mode=0700");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .expect("mounts a tmpfs");
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_writes_at_once_and_stops_the_store() {
    fills_the_disk(false).await;
}

/// Reads publish what the log holds, so no batch is pending when the checkpoint that finds the
/// disk full fails: the store must still stop (redb writes nothing after a failed commit).
#[tokio::test]
async fn a_full_disk_stops_the_store_even_with_every_write_published() {
    fills_the_disk(true).await;
}

async fn fills_the_disk(read_between: bool) {
    let Some(disk) = Tmpfs::mount("1m") else { return };
    let path = disk.0.path().join("store.redb");
    let store =
        EmbeddedStore::open_with(&path, DamagedLog::Refuse, 1024, 64 << 10, None, |_| {}).expect("open");
    let big = |seq: u64| Append {
        persistence_id: "p".into(),
        first_sequence: seq,
        events: vec![Any {
            type_url: "type.googleapis.com/test.Big".into(),
            value: vec![seq as u8; 16 << 10],
        }],
        snapshot: None,
    };
    let mut acknowledged = 0;
    let error = loop {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(5), store.append(big(acknowledged + 1)))
            .await
            .expect("a write on a full disk is answered, not left hanging");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        match result {
            Ok(seq) => acknowledged = seq,
            Err(error) => break error,
        }
        if read_between {
            store.read_events("p", acknowledged).await.expect("a read before the disk is full");
        }
        assert!(acknowledged < 1000, "a 1 MiB disk fills");
    };
    assert!(acknowledged > 0, "the disk took some writes first");
    let fault = store.fault().expect("the store reports the full disk");
    assert!(fault.contains("No space left on device"), "{fault}; the write failed with {error}");
    let started = std::time::Instant::now();
    assert!(store.append(big(acknowledged + 1)).await.is_err());
    assert!(store.read_events("p", 0).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast: {:?}", started.elapsed());
    store.close().await.expect("close");
}
