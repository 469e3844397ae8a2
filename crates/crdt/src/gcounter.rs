//! GCounter: a grow-only counter, one monotonic count per replica; the value is their sum.
//!
//! Invariant: a replica only raises its own count; merge takes each replica's maximum, so the
//! value never decreases.

use std::collections::BTreeMap;

use crate::{CrdtError, ReplicaId};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GCounter {
    counts: BTreeMap<ReplicaId, u64>,
}

impl GCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sum of every replica's count (saturating at `u64::MAX`).
    pub fn value(&self) -> u64 {
        self.counts.values().fold(0u64, |sum, c| sum.saturating_add(*c))
    }

    /// The count `replica` contributed.
    pub fn count_of(&self, replica: &ReplicaId) -> u64 {
        self.counts.get(replica).copied().unwrap_or(0)
    }

    /// Adds `by` to `replica`'s count; returns the delta (that replica's new count).
    pub fn increment(&mut self, replica: &ReplicaId, by: u64) -> Result<GCounter, CrdtError> {
        if by == 0 {
            return Ok(GCounter::new());
        }
        let count = self
            .count_of(replica)
            .checked_add(by)
            .ok_or_else(|| CrdtError::CounterOverflow { replica: replica.clone(), by })?;
        let delta = GCounter { counts: BTreeMap::from([(replica.clone(), count)]) };
        self.merge(&delta);
        Ok(delta)
    }

    /// Joins a state or delta: each replica's larger count.
    pub fn merge(&mut self, other: &GCounter) {
        for (replica, &count) in &other.counts {
            let mine = self.counts.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(count);
        }
    }

    pub fn merge_delta(&mut self, delta: &GCounter) {
        self.merge(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_and_merge_takes_the_maximum() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut x = GCounter::new();
        let mut y = GCounter::new();
        x.increment(&a, 2).unwrap();
        let d = y.increment(&b, 3).unwrap();
        x.merge_delta(&d);
        x.merge_delta(&d);
        assert_eq!(x.value(), 5);
        assert_eq!(x.count_of(&b), 3);
    }

    #[test]
    fn an_overflowing_increment_is_an_error_and_changes_nothing() {
        let a = ReplicaId::from("a");
        let mut x = GCounter::new();
        x.increment(&a, u64::MAX).unwrap();
        let err = x.increment(&a, 1).unwrap_err();
        assert_eq!(err.to_string(), "the count of replica a overflows adding 1");
        assert_eq!(x.value(), u64::MAX);
    }
}
