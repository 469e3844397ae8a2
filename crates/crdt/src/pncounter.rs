//! PNCounter: a counter that goes up and down, as two GCounters (increments, decrements).

use crate::{CrdtError, GCounter, ReplicaId};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PnCounter {
    up: GCounter,
    down: GCounter,
}

impl PnCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Increments minus decrements, clamped to the `i64` range.
    pub fn value(&self) -> i64 {
        let v = i128::from(self.up.value()) - i128::from(self.down.value());
        i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
    }

    /// Adds `change` (negative: subtracts) at `replica`; returns the delta.
    pub fn change(&mut self, replica: &ReplicaId, change: i64) -> Result<PnCounter, CrdtError> {
        let mut delta = PnCounter::new();
        if change > 0 {
            delta.up = self.up.increment(replica, change.unsigned_abs())?;
        } else if change < 0 {
            delta.down = self.down.increment(replica, change.unsigned_abs())?;
        }
        Ok(delta)
    }

    pub fn merge(&mut self, other: &PnCounter) {
        self.up.merge(&other.up);
        self.down.merge(&other.down);
    }

    pub fn merge_delta(&mut self, delta: &PnCounter) {
        self.merge(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_up_and_down() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut x = PnCounter::new();
        let mut y = PnCounter::new();
        x.change(&a, 5).unwrap();
        let d = y.change(&b, -7).unwrap();
        x.merge_delta(&d);
        assert_eq!(x.value(), -2);
        assert_eq!(x.change(&a, 0).unwrap(), PnCounter::new());
    }
}
