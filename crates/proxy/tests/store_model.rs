//! Property test: random sequences of store operations give the same results on every store as
//! on a small reference model of the rules (contiguous journals, conflicts, newest snapshot,
//! value revisions), and leave the same state behind. PostgreSQL takes part when
//! `STEAD_TEST_POSTGRES_URL` is set, which CI must do (see `stead-testkit`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use prost_types::Any;
use stead_proxy::store::{
    AnyStore, Append, EmbeddedStore, MemoryStore, PostgresStore, Snapshot, Store, ValueKey,
};

mod common;

#[derive(Clone, Debug)]
enum Op {
    /// Append `count` events starting at the journal's next sequence number plus `offset`.
    Append {
        pid: u8,
        offset: i8,
        count: u8,
        snapshot: bool,
    },
    SaveSnapshot {
        pid: u8,
        sequence_number: u8,
    },
    /// Update (or delete) with the current revision plus `offset` as the expected one.
    Value {
        key: u8,
        offset: i8,
        delete: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, -2..=1i8, 0..4u8, any::<bool>())
            .prop_map(|(pid, offset, count, snapshot)| Op::Append { pid, offset, count, snapshot }),
        1 => (0..3u8, 0..8u8).prop_map(|(pid, sequence_number)| Op::SaveSnapshot { pid, sequence_number }),
        2 => (0..2u8, -1..=1i8, any::<bool>()).prop_map(|(key, offset, delete)| Op::Value { key, offset, delete }),
    ]
}

fn pid(n: u8) -> String {
    format!("entity|{n}")
}

fn key(n: u8) -> ValueKey {
    ValueKey::new("values", format!("v{n}"))
}

fn payload(text: String) -> Any {
    Any { type_url: "type.googleapis.com/test.Payload".into(), value: text.into_bytes() }
}

fn shift(base: u64, offset: i8) -> u64 {
    let magnitude = u64::from(offset.unsigned_abs());
    if offset < 0 { base.saturating_sub(magnitude) } else { base + magnitude }
}

/// The rules, written as plainly as possible.
#[derive(Default, Debug)]
struct Model {
    journals: BTreeMap<String, Vec<Any>>,
    snapshots: BTreeMap<String, Snapshot>,
    values: BTreeMap<ValueKey, (u64, Option<Any>)>,
}

type Outcome = Result<u64, &'static str>;

impl Model {
    fn highest(&self, pid: &str) -> u64 {
        self.journals.get(pid).map_or(0, |j| j.len() as u64)
    }

    fn apply(&mut self, op: &Request) -> Outcome {
        match op {
            Request::Append(append) => {
                let next = self.highest(&append.persistence_id) + 1;
                let count = append.events.len() as u64;
                if count == 0 {
                    return Ok(append.first_sequence.saturating_sub(1));
                }
                if append.first_sequence != 0 && append.first_sequence < next {
                    return Err("event_conflict");
                }
                if append.first_sequence != next {
                    return Err("sequence_gap");
                }
                let last = next + count - 1;
                self.journals.entry(append.persistence_id.clone()).or_default().extend(append.events.clone());
                if let Some(snapshot) = &append.snapshot {
                    let snapshot = Snapshot { sequence_number: last, payload: snapshot.clone() };
                    self.snapshots.insert(append.persistence_id.clone(), snapshot);
                }
                Ok(last)
            }
            Request::SaveSnapshot(pid, snapshot) => {
                if snapshot.sequence_number == 0 || snapshot.sequence_number > self.highest(pid) {
                    return Err("snapshot_without_event");
                }
                if self.snapshots.get(pid).is_none_or(|s| s.sequence_number <= snapshot.sequence_number) {
                    self.snapshots.insert(pid.clone(), snapshot.clone());
                }
                Ok(0)
            }
            Request::Value(key, expected, value) => {
                let current = self.values.get(key).map_or(0, |(revision, _)| *revision);
                if *expected != current {
                    return Err("value_conflict");
                }
                self.values.insert(key.clone(), (current + 1, value.clone()));
                Ok(current + 1)
            }
        }
    }
}

/// An operation made concrete against the model's current state.
#[derive(Debug)]
enum Request {
    Append(Append),
    SaveSnapshot(String, Snapshot),
    Value(ValueKey, u64, Option<Any>),
}

fn concretize(model: &Model, index: usize, op: &Op) -> Request {
    match op {
        Op::Append { pid: p, offset, count, snapshot } => {
            let persistence_id = pid(*p);
            let first_sequence = shift(model.highest(&persistence_id) + 1, *offset);
            let events = (0..*count).map(|k| payload(format!("op{index}-event{k}"))).collect();
            let snapshot = snapshot.then(|| payload(format!("op{index}-snapshot")));
            Request::Append(Append { persistence_id, first_sequence, events, snapshot })
        }
        Op::SaveSnapshot { pid: p, sequence_number } => Request::SaveSnapshot(
            pid(*p),
            Snapshot {
                sequence_number: u64::from(*sequence_number),
                payload: payload(format!("op{index}-snapshot")),
            },
        ),
        Op::Value { key: k, offset, delete } => {
            let current = model.values.get(&key(*k)).map_or(0, |(revision, _)| *revision);
            let value = (!delete).then(|| payload(format!("op{index}-value")));
            Request::Value(key(*k), shift(current, *offset), value)
        }
    }
}

async fn run<S: Store>(store: &S, request: &Request) -> Outcome {
    let result = match request {
        Request::Append(append) => store.append(append.clone()).await,
        Request::SaveSnapshot(pid, snapshot) => store.save_snapshot(pid, snapshot.clone()).await.map(|()| 0),
        Request::Value(key, expected, Some(value)) => store.update_value(key, *expected, value.clone()).await,
        Request::Value(key, expected, None) => store.delete_value(key, *expected).await,
    };
    result.map_err(|e| e.metric_label())
}

async fn assert_same_state<S: Store>(name: &str, model: &Model, store: &S) {
    for p in 0..3 {
        let pid = pid(p);
        let stored = store.read_events(&pid, 0).await.expect("read");
        let sequence: Vec<_> = stored.iter().map(|e| e.sequence_number).collect();
        assert_eq!(sequence, (1..=stored.len() as u64).collect::<Vec<_>>(), "{name}: {pid} is contiguous");
        let payloads: Vec<_> = stored.into_iter().map(|e| e.payload).collect();
        assert_eq!(payloads, model.journals.get(&pid).cloned().unwrap_or_default(), "{name}: journal {pid}");
        let snapshot = store.latest_snapshot(&pid).await.expect("snapshot");
        assert_eq!(snapshot.as_ref(), model.snapshots.get(&pid), "{name}: snapshot of {pid}");
    }
    for k in 0..2 {
        let state = store.get_value(&key(k)).await.expect("value");
        let expected = model.values.get(&key(k)).cloned().unwrap_or_default();
        assert_eq!((state.revision, state.value), expected, "{name}: value {k}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn stores_follow_the_model(ops in proptest::collection::vec(op(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let embedded = EmbeddedStore::open(dir.path().join("model.redb")).expect("open");
            let mut stores = vec![
                ("memory", AnyStore::Memory(MemoryStore::new())),
                ("embedded", AnyStore::Embedded(embedded)),
            ];
            if let Some(config) = common::postgres_schema().await {
                let store = PostgresStore::connect(config, 2).await.expect("connects to the test database");
                stores.push(("postgres", AnyStore::Postgres(store)));
            }
            let mut model = Model::default();
            for (index, op) in ops.iter().enumerate() {
                let request = concretize(&model, index, op);
                let expected = model.apply(&request);
                for (name, store) in &stores {
                    assert_eq!(run(store, &request).await, expected, "{name} store, op {index}: {request:?}");
                }
            }
            for (name, store) in stores {
                assert_same_state(name, &model, &store).await;
                if let AnyStore::Embedded(store) = store {
                    store.close().await.expect("close");
                }
            }
        });
    }
}
