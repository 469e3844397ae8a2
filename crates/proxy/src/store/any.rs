//! [`AnyStore`]: the store chosen by configuration at run time.

use prost_types::Any;

use super::{
    Append, EmbeddedStore, MemoryStore, PostgresStore, Snapshot, Store, StoreError, StoredEvent, ValueKey,
    ValueState,
};

/// One of the store implementations.
#[derive(Debug)]
pub enum AnyStore {
    /// Process memory.
    Memory(MemoryStore),
    /// A redb file.
    Embedded(EmbeddedStore),
    /// A PostgreSQL database.
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Why the store cannot go on until it is opened again, if it cannot (see
    /// [`EmbeddedStore::fault`]); the other stores recover by themselves.
    pub fn fault(&self) -> Option<String> {
        match self {
            AnyStore::Embedded(store) => store.fault(),
            AnyStore::Memory(_) | AnyStore::Postgres(_) => None,
        }
    }

    /// Waits until the store cannot go on (see [`AnyStore::fault`]); returns why. Only the
    /// embedded store ever does.
    pub async fn stopped(&self) -> String {
        match self {
            AnyStore::Embedded(store) => store.stopped().await,
            AnyStore::Memory(_) | AnyStore::Postgres(_) => std::future::pending().await,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call.await,
            AnyStore::Embedded($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn append(&self, append: Append) -> Result<u64, StoreError> {
        delegate!(self, s => s.append(append))
    }

    async fn read_events(&self, persistence_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        delegate!(self, s => s.read_events(persistence_id, after))
    }

    async fn highest_sequence(&self, persistence_id: &str) -> Result<u64, StoreError> {
        delegate!(self, s => s.highest_sequence(persistence_id))
    }

    async fn save_snapshot(&self, persistence_id: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        delegate!(self, s => s.save_snapshot(persistence_id, snapshot))
    }

    async fn latest_snapshot(&self, persistence_id: &str) -> Result<Option<Snapshot>, StoreError> {
        delegate!(self, s => s.latest_snapshot(persistence_id))
    }

    async fn get_value(&self, key: &ValueKey) -> Result<ValueState, StoreError> {
        delegate!(self, s => s.get_value(key))
    }

    async fn update_value(
        &self,
        key: &ValueKey,
        expected_revision: u64,
        value: Any,
    ) -> Result<u64, StoreError> {
        delegate!(self, s => s.update_value(key, expected_revision, value))
    }

    async fn delete_value(&self, key: &ValueKey, expected_revision: u64) -> Result<u64, StoreError> {
        delegate!(self, s => s.delete_value(key, expected_revision))
    }
}
