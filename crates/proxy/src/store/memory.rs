//! [`MemoryStore`]: everything in a map in this process. Writes are durable for as long as the
//! process lives, which is what the `inMemory` store type promises.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prost_types::Any;

use super::rules::{check_append, check_revision, check_snapshot};
use super::{Append, Snapshot, Store, StoreError, StoredEvent, ValueKey, ValueState};

/// A store kept in memory. Clones share the same data.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per persistence id, the events in order: index `i` holds sequence number `i + 1`.
    journals: HashMap<String, Vec<Any>>,
    snapshots: HashMap<String, Snapshot>,
    values: HashMap<ValueKey, ValueState>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section below checks before it mutates, so a panic elsewhere cannot
        // leave the data half-written: recovering from poisoning is safe.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn highest(journal: Option<&Vec<Any>>) -> u64 {
    journal.map_or(0, |events| u64::try_from(events.len()).unwrap_or(u64::MAX))
}

impl Store for MemoryStore {
    async fn append(&self, append: Append) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let last = check_append(&append, highest(inner.journals.get(&append.persistence_id)))?;
        if append.events.is_empty() {
            return Ok(last);
        }
        let Append { persistence_id, events, snapshot, .. } = append;
        if let Some(payload) = snapshot {
            inner.snapshots.insert(persistence_id.clone(), Snapshot { sequence_number: last, payload });
        }
        inner.journals.entry(persistence_id).or_default().extend(events);
        Ok(last)
    }

    async fn read_events(&self, persistence_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let inner = self.lock();
        let Some(events) = inner.journals.get(persistence_id) else { return Ok(Vec::new()) };
        let skip = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(events
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, payload)| StoredEvent {
                sequence_number: u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1),
                payload: payload.clone(),
            })
            .collect())
    }

    async fn highest_sequence(&self, persistence_id: &str) -> Result<u64, StoreError> {
        Ok(highest(self.lock().journals.get(persistence_id)))
    }

    async fn save_snapshot(&self, persistence_id: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut inner = self.lock();
        check_snapshot(
            persistence_id,
            snapshot.sequence_number,
            highest(inner.journals.get(persistence_id)),
        )?;
        let newer = inner
            .snapshots
            .get(persistence_id)
            .is_none_or(|stored| stored.sequence_number <= snapshot.sequence_number);
        if newer {
            inner.snapshots.insert(persistence_id.to_string(), snapshot);
        }
        Ok(())
    }

    async fn latest_snapshot(&self, persistence_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(persistence_id).cloned())
    }

    async fn get_value(&self, key: &ValueKey) -> Result<ValueState, StoreError> {
        Ok(self.lock().values.get(key).cloned().unwrap_or_default())
    }

    async fn update_value(
        &self,
        key: &ValueKey,
        expected_revision: u64,
        value: Any,
    ) -> Result<u64, StoreError> {
        self.write_value(key, expected_revision, Some(value))
    }

    async fn delete_value(&self, key: &ValueKey, expected_revision: u64) -> Result<u64, StoreError> {
        self.write_value(key, expected_revision, None)
    }
}

impl MemoryStore {
    fn write_value(&self, key: &ValueKey, expected: u64, value: Option<Any>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let actual = inner.values.get(key).map_or(0, |v| v.revision);
        let revision = check_revision(key, expected, actual)?;
        inner.values.insert(key.clone(), ValueState { revision, value });
        Ok(revision)
    }
}
