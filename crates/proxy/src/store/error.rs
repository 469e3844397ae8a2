//! The error type shared by every store.

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The append's first sequence number is already taken: another writer appended first.
    #[error("event {sequence_number} of persistence id {persistence_id:?} already exists")]
    EventConflict {
        /// The journal.
        persistence_id: String,
        /// The sequence number that is taken.
        sequence_number: u64,
    },
    /// The append would leave a hole in the journal.
    #[error(
        "append to persistence id {persistence_id:?} starts at sequence number {given}, \
         but the next one is {expected}"
    )]
    SequenceGap {
        /// The journal.
        persistence_id: String,
        /// The journal's highest sequence number plus one.
        expected: u64,
        /// The append's first sequence number.
        given: u64,
    },
    /// Sequence numbers would not fit in 64 bits.
    #[error("sequence numbers of persistence id {persistence_id:?} would overflow")]
    SequenceOverflow {
        /// The journal.
        persistence_id: String,
    },
    /// A snapshot names an event the journal does not have.
    #[error(
        "snapshot at sequence number {sequence_number} of persistence id {persistence_id:?} \
         does not match an event (the journal ends at {highest})"
    )]
    SnapshotWithoutEvent {
        /// The journal.
        persistence_id: String,
        /// The snapshot's sequence number.
        sequence_number: u64,
        /// The journal's highest sequence number.
        highest: u64,
    },
    /// A value entity's state changed since the writer read it.
    #[error(
        "value of entity {entity_id:?} of {persistence_id:?} is at revision {actual}, \
         not the expected {expected}"
    )]
    ValueConflict {
        /// The entity type's persistence id.
        persistence_id: String,
        /// The entity id.
        entity_id: String,
        /// The revision the writer read.
        expected: u64,
        /// The stored revision.
        actual: u64,
    },
    /// A stored record could not be decoded.
    #[error("{store} store: record {record} is corrupt: {source}")]
    Corrupt {
        /// Which store.
        store: &'static str,
        /// Which record.
        record: String,
        /// Why it does not decode.
        source: prost::DecodeError,
    },
    /// The backing storage failed.
    #[error("{store} store failed: {source}")]
    Backend {
        /// Which store.
        store: &'static str,
        /// The storage error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store was shut down.
    #[error("{store} store is closed")]
    Closed {
        /// Which store.
        store: &'static str,
    },
}

impl StoreError {
    /// A short, stable name of the error's kind, for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::EventConflict { .. } => "event_conflict",
            Self::SequenceGap { .. } => "sequence_gap",
            Self::SequenceOverflow { .. } => "sequence_overflow",
            Self::SnapshotWithoutEvent { .. } => "snapshot_without_event",
            Self::ValueConflict { .. } => "value_conflict",
            Self::Corrupt { .. } => "corrupt",
            Self::Backend { .. } => "backend",
            Self::Closed { .. } => "closed",
        }
    }

    /// Whether another writer got there first (retry against fresh state, or fail cleanly).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::EventConflict { .. } | Self::ValueConflict { .. })
    }
}
