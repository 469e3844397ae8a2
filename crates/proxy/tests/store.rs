//! The behaviour every store must have, run against each implementation.

use std::collections::BTreeSet;
use std::sync::Arc;

mod common;

use prost_types::Any;
use stead_proxy::store::{
    AnyStore, Append, EmbeddedStore, MemoryStore, PostgresStore, Snapshot, Store, StoreError, ValueKey,
    ValueState,
};

fn payload(text: &str) -> Any {
    Any { type_url: "type.googleapis.com/test.Event".into(), value: text.as_bytes().to_vec() }
}

fn text(any: &Any) -> String {
    String::from_utf8_lossy(&any.value).into_owned()
}

fn events(pid: &str, first_sequence: u64, texts: &[&str]) -> Append {
    Append {
        persistence_id: pid.into(),
        first_sequence,
        events: texts.iter().map(|t| payload(t)).collect(),
        snapshot: None,
    }
}

async fn journal<S: Store>(store: &S, pid: &str) -> Vec<(u64, String)> {
    let stored = store.read_events(pid, 0).await.expect("events can be read");
    stored.iter().map(|e| (e.sequence_number, text(&e.payload))).collect()
}

/// A store under test, and what keeps its files alive; `None` when the test must be skipped.
trait Fixture: Store + Sized {
    async fn make() -> Option<(Self, Option<tempfile::TempDir>)>;
}

impl Fixture for MemoryStore {
    async fn make() -> Option<(Self, Option<tempfile::TempDir>)> {
        Some((MemoryStore::new(), None))
    }
}

impl Fixture for EmbeddedStore {
    async fn make() -> Option<(Self, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path().join("store.redb")).expect("store opens");
        Some((store, Some(dir)))
    }
}

impl Fixture for AnyStore {
    async fn make() -> Option<(Self, Option<tempfile::TempDir>)> {
        let (store, dir) = EmbeddedStore::make().await?;
        Some((AnyStore::Embedded(store), dir))
    }
}

impl Fixture for PostgresStore {
    async fn make() -> Option<(Self, Option<tempfile::TempDir>)> {
        let config = common::postgres_schema().await?;
        Some((PostgresStore::connect(config, 8).await.expect("connects to the test database"), None))
    }
}

async fn appends_number_events_from_one_and_reads_after<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    assert_eq!(store.highest_sequence("cart|1").await.expect("highest"), 0);
    assert_eq!(store.append(events("cart|1", 1, &["a", "b"])).await.expect("append"), 2);
    assert_eq!(store.append(events("cart|1", 3, &["c"])).await.expect("append"), 3);
    assert_eq!(store.highest_sequence("cart|1").await.expect("highest"), 3);
    assert_eq!(journal(&store, "cart|1").await, vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]);
    let after = store.read_events("cart|1", 2).await.expect("read");
    assert_eq!(after.iter().map(|e| e.sequence_number).collect::<Vec<_>>(), vec![3]);
    assert!(store.read_events("cart|1", 3).await.expect("read").is_empty());
    assert!(store.read_events("cart|1", u64::MAX).await.expect("read").is_empty());
}

async fn a_taken_sequence_number_is_a_conflict_and_writes_nothing<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    store.append(events("cart|1", 1, &["a", "b", "c"])).await.expect("append");
    for first in [1, 2, 3] {
        let error = store.append(events("cart|1", first, &["stale", "stale2"])).await.expect_err("conflict");
        assert!(error.is_conflict(), "{error}");
        assert_eq!(error.to_string(), format!("event {first} of persistence id \"cart|1\" already exists"),);
    }
    // The failed appends wrote nothing, snapshot included.
    let mut with_snapshot = events("cart|1", 2, &["stale"]);
    with_snapshot.snapshot = Some(payload("stale-state"));
    assert!(store.append(with_snapshot).await.is_err());
    assert_eq!(journal(&store, "cart|1").await.len(), 3);
    assert_eq!(store.latest_snapshot("cart|1").await.expect("snapshot"), None);
}

async fn gaps_are_rejected<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let error = store.append(events("p", 0, &["a"])).await.expect_err("0 is not a sequence number");
    assert!(matches!(error, StoreError::SequenceGap { expected: 1, given: 0, .. }), "{error}");
    store.append(events("p", 1, &["a"])).await.expect("append");
    let error = store.append(events("p", 3, &["c"])).await.expect_err("gap");
    assert_eq!(
        error.to_string(),
        "append to persistence id \"p\" starts at sequence number 3, but the next one is 2"
    );
    assert!(!error.is_conflict());
    assert_eq!(journal(&store, "p").await.len(), 1);
}

async fn an_empty_append_writes_nothing<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    assert_eq!(store.append(events("p", 1, &[])).await.expect("empty append"), 0);
    assert_eq!(store.highest_sequence("p").await.expect("highest"), 0);
}

async fn journals_are_separate<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    store.append(events("a", 1, &["a1"])).await.expect("append");
    store.append(events("ab", 1, &["ab1", "ab2"])).await.expect("append");
    store.append(events("a|b", 1, &["x"])).await.expect("append");
    store.append(events("", 1, &["empty"])).await.expect("append");
    assert_eq!(journal(&store, "a").await, vec![(1, "a1".into())]);
    assert_eq!(journal(&store, "ab").await.len(), 2);
    assert_eq!(journal(&store, "").await, vec![(1, "empty".into())]);
    assert_eq!(store.highest_sequence("a").await.expect("highest"), 1);
    assert_eq!(store.highest_sequence("b").await.expect("highest"), 0);
}

async fn snapshots_keep_the_newest<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let mut append = events("p", 1, &["a", "b"]);
    append.snapshot = Some(payload("state-2"));
    store.append(append).await.expect("append with snapshot");
    assert_eq!(
        store.latest_snapshot("p").await.expect("snapshot"),
        Some(Snapshot { sequence_number: 2, payload: payload("state-2") })
    );
    store.append(events("p", 3, &["c"])).await.expect("append");
    store
        .save_snapshot("p", Snapshot { sequence_number: 3, payload: payload("state-3") })
        .await
        .expect("save");
    // An older snapshot does not replace a newer one.
    store
        .save_snapshot("p", Snapshot { sequence_number: 1, payload: payload("state-1") })
        .await
        .expect("save");
    assert_eq!(store.latest_snapshot("p").await.expect("snapshot").map(|s| s.sequence_number), Some(3));
    assert_eq!(store.latest_snapshot("other").await.expect("snapshot"), None);
}

async fn a_snapshot_needs_its_event<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    store.append(events("p", 1, &["a"])).await.expect("append");
    for sequence_number in [0, 2] {
        let error = store
            .save_snapshot("p", Snapshot { sequence_number, payload: payload("s") })
            .await
            .expect_err("no such event");
        assert_eq!(
            error.to_string(),
            format!(
                "snapshot at sequence number {sequence_number} of persistence id \"p\" does not match an event \
                 (the journal ends at 1)"
            )
        );
    }
    assert_eq!(store.latest_snapshot("p").await.expect("snapshot"), None);
}

async fn values_have_revisions<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let key = ValueKey::new("carts", "c1");
    assert_eq!(store.get_value(&key).await.expect("get"), ValueState::default());
    assert_eq!(store.update_value(&key, 0, payload("v1")).await.expect("create"), 1);
    let error = store.update_value(&key, 0, payload("stale")).await.expect_err("stale write");
    assert!(error.is_conflict());
    assert_eq!(error.to_string(), "value of entity \"c1\" of \"carts\" is at revision 1, not the expected 0");
    assert_eq!(store.update_value(&key, 1, payload("v2")).await.expect("update"), 2);
    assert_eq!(
        store.get_value(&key).await.expect("get"),
        ValueState { revision: 2, value: Some(payload("v2")) }
    );
    assert_eq!(store.delete_value(&key, 2).await.expect("delete"), 3);
    assert_eq!(store.get_value(&key).await.expect("get"), ValueState { revision: 3, value: None });
    // A writer that saw the entity before the delete cannot resurrect it unknowingly.
    assert!(store.update_value(&key, 2, payload("stale")).await.expect_err("stale").is_conflict());
    assert!(store.delete_value(&key, 0).await.expect_err("stale").is_conflict());
    assert_eq!(store.update_value(&key, 3, payload("v4")).await.expect("re-create"), 4);
    // Other entities are untouched.
    assert_eq!(store.get_value(&ValueKey::new("carts", "c2")).await.expect("get"), ValueState::default());
    assert_eq!(store.get_value(&ValueKey::new("other", "c1")).await.expect("get"), ValueState::default());
}

/// Many writers race for the same sequence number: exactly one wins, the journal holds its
/// event only, and every loser is told of the conflict.
async fn racing_appends_have_one_winner<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { (i, store.append(events("race", 1, &[&format!("w{i}")])).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.expect("task completes");
        match result {
            Ok(last) => {
                assert_eq!(last, 1);
                winners.push(i);
            }
            Err(e) => assert!(matches!(e, StoreError::EventConflict { sequence_number: 1, .. }), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one append wins: {winners:?}");
    assert_eq!(journal(&*store, "race").await, vec![(1, format!("w{}", winners[0]))]);
}

/// Writers that retry against fresh state after a conflict: no event is lost or duplicated.
async fn retrying_writers_lose_nothing<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let store = Arc::new(store);
    let (writers, commands) = (8, 10);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for c in 0..commands {
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "writer {w} keeps conflicting");
                        let next = store.highest_sequence("shared").await.expect("highest") + 1;
                        match store.append(events("shared", next, &[&format!("{w}-{c}")])).await {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => {}
                            Err(e) => panic!("unexpected store error: {e}"),
                        }
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer completes");
    }
    let stored = journal(&*store, "shared").await;
    let total = writers * commands;
    assert_eq!(stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=total).collect::<Vec<u64>>());
    let distinct: BTreeSet<_> = stored.iter().map(|(_, t)| t.clone()).collect();
    let expected: BTreeSet<_> =
        (0..writers).flat_map(|w| (0..commands).map(move |c| format!("{w}-{c}"))).collect();
    assert_eq!(distinct, expected);
}

/// Value writers that retry after a conflict: every increment counts once.
async fn retrying_value_writers_lose_nothing<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let store = Arc::new(store);
    let key = ValueKey::new("counters", "c");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "value writer keeps conflicting");
                        let state = store.get_value(&key).await.expect("get");
                        let count: u64 =
                            state.value.as_ref().map_or(0, |v| text(v).parse().expect("a number"));
                        match store
                            .update_value(&key, state.revision, payload(&(count + 1).to_string()))
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => tokio::task::yield_now().await,
                            Err(e) => panic!("unexpected store error: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer completes");
    }
    let state = store.get_value(&key).await.expect("get");
    assert_eq!((state.revision, state.value.map(|v| text(&v))), (80, Some("80".into())));
}

/// Many entities writing at once each get their own contiguous journal.
async fn many_entities_in_parallel<S: Fixture>() {
    let Some((store, _dir)) = S::make().await else { return };
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..64)
        .map(|e| {
            let store = store.clone();
            tokio::spawn(async move {
                let pid = format!("entity|{e}");
                for seq in 1..=5 {
                    store.append(events(&pid, seq, &[&format!("{e}:{seq}")])).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("entity completes");
    }
    for e in 0..64 {
        let expected: Vec<_> = (1..=5).map(|seq| (seq, format!("{e}:{seq}"))).collect();
        assert_eq!(journal(&*store, &format!("entity|{e}")).await, expected);
    }
}

macro_rules! suite {
    ($module:ident, $store:ty) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn appends_number_events_from_one_and_reads_after() {
                super::appends_number_events_from_one_and_reads_after::<$store>().await;
            }
            #[tokio::test]
            async fn a_taken_sequence_number_is_a_conflict_and_writes_nothing() {
                super::a_taken_sequence_number_is_a_conflict_and_writes_nothing::<$store>().await;
            }
            #[tokio::test]
            async fn gaps_are_rejected() {
                super::gaps_are_rejected::<$store>().await;
            }
            #[tokio::test]
            async fn an_empty_append_writes_nothing() {
                super::an_empty_append_writes_nothing::<$store>().await;
            }
            #[tokio::test]
            async fn journals_are_separate() {
                super::journals_are_separate::<$store>().await;
            }
            #[tokio::test]
            async fn snapshots_keep_the_newest() {
                super::snapshots_keep_the_newest::<$store>().await;
            }
            #[tokio::test]
            async fn a_snapshot_needs_its_event() {
                super::a_snapshot_needs_its_event::<$store>().await;
            }
            #[tokio::test]
            async fn values_have_revisions() {
                super::values_have_revisions::<$store>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_appends_have_one_winner() {
                super::racing_appends_have_one_winner::<$store>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retrying_writers_lose_nothing() {
                super::retrying_writers_lose_nothing::<$store>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retrying_value_writers_lose_nothing() {
                super::retrying_value_writers_lose_nothing::<$store>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_entities_in_parallel() {
                super::many_entities_in_parallel::<$store>().await;
            }
        }
    };
}

suite!(memory, MemoryStore);
suite!(embedded, EmbeddedStore);
suite!(any_embedded, AnyStore);
suite!(postgres, PostgresStore);

/// Three replicas (three separate connection pools) serving the same entity through one
/// PostgreSQL, retrying after conflicts: no event is lost or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_replicas_lose_nothing() {
    let Some(config) = common::postgres_schema().await else { return };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Arc::new(PostgresStore::connect(config.clone(), 4).await.expect("replica connects")));
    }
    let (writers, commands) = (9u64, 8u64);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = replicas[(w % 3) as usize].clone();
            tokio::spawn(async move {
                for c in 0..commands {
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "writer {w} keeps conflicting");
                        let next = store.highest_sequence("cart|shared").await.expect("highest") + 1;
                        match store.append(events("cart|shared", next, &[&format!("{w}-{c}")])).await {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => tokio::task::yield_now().await,
                            Err(e) => panic!("unexpected store error: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer completes");
    }
    let stored = journal(&*replicas[0], "cart|shared").await;
    let total = writers * commands;
    assert_eq!(stored.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=total).collect::<Vec<u64>>());
    let distinct: BTreeSet<_> = stored.into_iter().map(|(_, t)| t).collect();
    assert_eq!(distinct.len() as u64, total, "every event is stored once");
}

#[tokio::test]
async fn postgres_connect_errors_name_the_server() {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(1).dbname("nowhere").user("nobody");
    config.connect_timeout(std::time::Duration::from_secs(5));
    let error = PostgresStore::connect(config, 1).await.expect_err("nothing listens on port 1");
    let message = error.to_string();
    assert!(message.starts_with("connecting to postgres at 127.0.0.1:1/nowhere: "), "{message}");
}
