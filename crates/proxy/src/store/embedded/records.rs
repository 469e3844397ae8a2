//! The redb tables, how their values are encoded (protobuf, via prost derive), and the
//! write-ahead log's record of a batch ([`LogBatch`]).

use prost::Message as _;
use prost_types::Any;
use redb::TableDefinition;

use crate::store::{Snapshot, StoreError, ValueState};

/// The store's name in error messages.
pub(super) const STORE: &str = "embedded";

/// `(persistence id, sequence number)` to an encoded `google.protobuf.Any`.
pub(super) const EVENTS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("events");
/// Persistence id to its newest snapshot ([`SnapshotRecord`]).
pub(super) const SNAPSHOTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("snapshots");
/// `(persistence id, entity id)` to a value entity's state ([`ValueRecord`]).
pub(super) const VALUES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("values");
/// The store's own settings: [`LOG_EPOCH`], [`LOG_SALT`], [`LOG_OPEN`], [`LOG_LENGTH`].
pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Checkpoints so far: the epoch the write-ahead log's current records carry.
pub(super) const LOG_EPOCH: &str = "log_epoch";
/// A random number given to the database when it is created, part of every log record's
/// checksum, so that only this database's log is ever replayed into it.
pub(super) const LOG_SALT: &str = "log_salt";
/// 1 from the checkpoint at open to the one at close (0): while it is 1, the log may hold
/// acknowledged writes that only it has, so it must be there, whole, at the next open. Absent in
/// a database written before it was kept (nothing is then known of the log).
pub(super) const LOG_OPEN: &str = "log_open";
/// The log's length in bytes, as allocated when the store was last opened: a shorter log has
/// lost records.
pub(super) const LOG_LENGTH: &str = "log_length";

/// What one batch wrote, as the write-ahead log keeps it: the rows it put, in order. Replaying
/// it puts them again, which is harmless if they are already there.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct LogBatch {
    #[prost(message, repeated, tag = "1")]
    pub puts: Vec<LogPut>,
}

/// One row written: to which table, under which key, the encoded value.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct LogPut {
    #[prost(enumeration = "LogTable", tag = "1")]
    pub table: i32,
    #[prost(string, tag = "2")]
    pub persistence_id: String,
    /// The event's, in [`LogTable::Events`].
    #[prost(uint64, tag = "3")]
    pub sequence_number: u64,
    /// The value entity's, in [`LogTable::Values`].
    #[prost(string, tag = "4")]
    pub entity_id: String,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// The table a [`LogPut`] writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(super) enum LogTable {
    Unknown = 0,
    Events = 1,
    Snapshots = 2,
    Values = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SnapshotRecord {
    #[prost(uint64, tag = "1")]
    pub sequence_number: u64,
    #[prost(message, optional, tag = "2")]
    pub payload: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ValueRecord {
    #[prost(uint64, tag = "1")]
    pub revision: u64,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

pub(super) fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    SnapshotRecord { sequence_number: snapshot.sequence_number, payload: Some(snapshot.payload.clone()) }
        .encode_to_vec()
}

pub(super) fn decode_event(
    persistence_id: &str,
    sequence_number: u64,
    bytes: &[u8],
) -> Result<Any, StoreError> {
    Any::decode(bytes).map_err(|source| StoreError::Corrupt {
        store: STORE,
        record: format!("event {sequence_number} of {persistence_id:?}"),
        source,
    })
}

pub(super) fn decode_snapshot(persistence_id: &str, bytes: &[u8]) -> Result<Snapshot, StoreError> {
    let record = SnapshotRecord::decode(bytes).map_err(|source| StoreError::Corrupt {
        store: STORE,
        record: format!("snapshot of {persistence_id:?}"),
        source,
    })?;
    Ok(Snapshot { sequence_number: record.sequence_number, payload: record.payload.unwrap_or_default() })
}

pub(super) fn encode_value(state: &ValueState) -> Vec<u8> {
    ValueRecord { revision: state.revision, value: state.value.clone() }.encode_to_vec()
}

pub(super) fn decode_value(
    persistence_id: &str,
    entity_id: &str,
    bytes: &[u8],
) -> Result<ValueState, StoreError> {
    let record = ValueRecord::decode(bytes).map_err(|source| StoreError::Corrupt {
        store: STORE,
        record: format!("value of entity {entity_id:?} of {persistence_id:?}"),
        source,
    })?;
    Ok(ValueState { revision: record.revision, value: record.value })
}
