//! Entity stores: the event journal and snapshots of event-sourced entities, and the state of
//! value entities, behind one trait, [`Store`].
//!
//! Implementations: [`MemoryStore`] (a process-local map, for tests and `inMemory` stores),
//! [`EmbeddedStore`] (a redb file on the pod's volume, with group commit across entities) and
//! [`PostgresStore`] (shared by several replicas).
//! [`AnyStore`] picks one at run time.
//!
//! Rules every implementation keeps (checked once, in `rules`, so they cannot drift apart):
//! - Events of one persistence id have sequence numbers 1, 2, 3, ... without gaps. An append
//!   names the sequence number of its first event; if that number is already taken the append
//!   fails with [`StoreError::EventConflict`] and writes nothing, so an event is never written
//!   twice and a replica with stale state learns it must reload.
//! - An append is atomic: all its events (and its snapshot, if any) or none.
//! - A snapshot's sequence number is that of an event already in the journal (or being appended
//!   with it); only the newest snapshot of a persistence id is kept.
//! - A value entity's state carries a revision, incremented by every update and delete; an
//!   update or delete names the revision it was computed from and fails with
//!   [`StoreError::ValueConflict`] if another writer got there first. Deleting keeps a tombstone
//!   (the revision), so a stale writer cannot mistake "deleted and re-created" for "unchanged".
//! - A call returns success only once its write is durable for that store.

use std::future::Future;

use prost_types::Any;

mod any;
mod embedded;
mod error;
mod memory;
mod postgres;
pub(crate) mod rules;

pub use any::AnyStore;
pub use embedded::{DamagedLog, EmbeddedStore, LogDamage, LogError, OpenError, RecoverError, WriterStats};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use postgres::{ConnectError, PostgresStore};

/// One stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position in the persistence id's journal, from 1.
    pub sequence_number: u64,
    /// The event as the user function emitted it.
    pub payload: Any,
}

/// A snapshot of an entity's state after the event with `sequence_number`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The sequence number of the last event the snapshot includes.
    pub sequence_number: u64,
    /// The state as the user function serialized it.
    pub payload: Any,
}

/// Events to append to one persistence id, with an optional snapshot taken after the last one.
#[derive(Clone, Debug, PartialEq)]
pub struct Append {
    /// The journal, for example `"<persistence id>|<entity id>"`.
    pub persistence_id: String,
    /// The sequence number the first event gets: the journal's highest sequence number plus one.
    pub first_sequence: u64,
    /// The events, in order. Appending none writes nothing and checks nothing.
    pub events: Vec<Any>,
    /// A snapshot of the state after the last event; stored at that event's sequence number.
    pub snapshot: Option<Any>,
}

/// Identifies a value entity's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueKey {
    /// The entity type's persistence id (from discovery).
    pub persistence_id: String,
    /// The entity id.
    pub entity_id: String,
}

impl ValueKey {
    /// A key from its two parts.
    pub fn new(persistence_id: impl Into<String>, entity_id: impl Into<String>) -> Self {
        Self { persistence_id: persistence_id.into(), entity_id: entity_id.into() }
    }
}

/// A value entity's stored state.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ValueState {
    /// 0 if never written; incremented by every update and delete.
    pub revision: u64,
    /// The state; `None` if never written or deleted.
    pub value: Option<Any>,
}

/// The operations the proxy needs from a datastore.
///
/// Futures are `Send` so that entity tasks can run on any runtime thread.
pub trait Store: Send + Sync + 'static {
    /// Appends events (and a snapshot) atomically; returns the sequence number of the last event
    /// (`first_sequence - 1` when there are none).
    fn append(&self, append: Append) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The events of `persistence_id` with a sequence number above `after`, in order.
    fn read_events(
        &self,
        persistence_id: &str,
        after: u64,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// The highest sequence number of `persistence_id`, 0 if it has no events.
    fn highest_sequence(&self, persistence_id: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Saves a snapshot; a snapshot older than the stored one is ignored.
    fn save_snapshot(
        &self,
        persistence_id: &str,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest snapshot of `persistence_id`.
    fn latest_snapshot(
        &self,
        persistence_id: &str,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// A value entity's state (revision 0 and no value if never written).
    fn get_value(&self, key: &ValueKey) -> impl Future<Output = Result<ValueState, StoreError>> + Send;

    /// Replaces a value entity's state if its revision is still `expected_revision`; returns the
    /// new revision.
    fn update_value(
        &self,
        key: &ValueKey,
        expected_revision: u64,
        value: Any,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes a value entity's state if its revision is still `expected_revision`; returns the
    /// new revision (the tombstone's).
    fn delete_value(
        &self,
        key: &ValueKey,
        expected_revision: u64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
