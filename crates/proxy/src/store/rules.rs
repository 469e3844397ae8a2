//! The checks every store applies before writing, so that all stores agree on them.

use super::{Append, StoreError, ValueKey};

/// Checks an append against the journal's current highest sequence number; returns the sequence
/// number of the append's last event. Appending no events is always accepted.
pub(crate) fn check_append(append: &Append, highest: u64) -> Result<u64, StoreError> {
    let pid = &append.persistence_id;
    let Some(count) = u64::try_from(append.events.len()).ok() else {
        return Err(StoreError::SequenceOverflow { persistence_id: pid.clone() });
    };
    if count == 0 {
        return Ok(append.first_sequence.saturating_sub(1));
    }
    let expected =
        highest.checked_add(1).ok_or_else(|| StoreError::SequenceOverflow { persistence_id: pid.clone() })?;
    if append.first_sequence != 0 && append.first_sequence < expected {
        // The number is taken: the writer's view of the journal is stale.
        return Err(StoreError::EventConflict {
            persistence_id: pid.clone(),
            sequence_number: append.first_sequence,
        });
    }
    if append.first_sequence != expected {
        return Err(StoreError::SequenceGap {
            persistence_id: pid.clone(),
            expected,
            given: append.first_sequence,
        });
    }
    append
        .first_sequence
        .checked_add(count - 1)
        .ok_or_else(|| StoreError::SequenceOverflow { persistence_id: pid.clone() })
}

/// Checks that a snapshot names an event in the journal (sequence number 1..=highest).
pub(crate) fn check_snapshot(
    persistence_id: &str,
    sequence_number: u64,
    highest: u64,
) -> Result<(), StoreError> {
    if sequence_number == 0 || sequence_number > highest {
        return Err(StoreError::SnapshotWithoutEvent {
            persistence_id: persistence_id.to_string(),
            sequence_number,
            highest,
        });
    }
    Ok(())
}

/// Checks a value write's expected revision; returns the revision the write creates.
pub(crate) fn check_revision(key: &ValueKey, expected: u64, actual: u64) -> Result<u64, StoreError> {
    if expected != actual {
        return Err(StoreError::ValueConflict {
            persistence_id: key.persistence_id.clone(),
            entity_id: key.entity_id.clone(),
            expected,
            actual,
        });
    }
    // A revision cannot realistically reach u64::MAX; saturate rather than wrap to be safe.
    Ok(actual.saturating_add(1))
}
