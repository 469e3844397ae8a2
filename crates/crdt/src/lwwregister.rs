//! LWWRegister: one value; the write with the greatest timestamp wins.
//!
//! Writes are ordered by (timestamp, replica, value): the replica and then the value break
//! timestamp ties, so every replica picks the same winner. The timestamp comes from the write's
//! [`Clock`] (crdt.proto's `CrdtClock`) and the caller's wall clock, `now_millis`.

use crate::{ReplicaId, Value};

/// How a write's timestamp is chosen (crdt.proto's `CrdtClock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The wall clock in milliseconds, but past the register's current timestamp: a local write
    /// is never lost to clock skew.
    #[default]
    Default,
    /// The wall clock negated: the earliest write wins.
    Reverse,
    /// `custom_clock_value` as given.
    Custom,
    /// `custom_clock_value`, or the current timestamp plus one when that is not below it.
    CustomAutoIncrement,
}

impl Clock {
    /// The timestamp a write with this clock gets, given the register's current one.
    pub fn timestamp(self, current: Option<i64>, custom_clock_value: i64, now_millis: i64) -> i64 {
        match (self, current) {
            (Clock::Default, Some(c)) if c >= now_millis => c.saturating_add(1),
            (Clock::Default, _) => now_millis,
            (Clock::Reverse, _) => now_millis.saturating_neg(),
            (Clock::Custom, _) => custom_clock_value,
            (Clock::CustomAutoIncrement, Some(c)) if c >= custom_clock_value => c.saturating_add(1),
            (Clock::CustomAutoIncrement, _) => custom_clock_value,
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Write {
    pub timestamp: i64,
    pub replica: ReplicaId,
    pub value: Value,
}

/// Empty until the first write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LwwRegister {
    winner: Option<Write>,
}

impl LwwRegister {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn value(&self) -> Option<&Value> {
        self.winner.as_ref().map(|w| &w.value)
    }

    pub fn timestamp(&self) -> Option<i64> {
        self.winner.as_ref().map(|w| w.timestamp)
    }

    /// Writes `value` at `replica`; returns the delta (the write). A write that loses to the
    /// current one (a reverse or custom clock) leaves the value as it is.
    pub fn set(
        &mut self,
        replica: &ReplicaId,
        value: Value,
        clock: Clock,
        custom_clock_value: i64,
        now_millis: i64,
    ) -> LwwRegister {
        let timestamp = clock.timestamp(self.timestamp(), custom_clock_value, now_millis);
        let delta = LwwRegister { winner: Some(Write { timestamp, replica: replica.clone(), value }) };
        self.merge(&delta);
        delta
    }

    pub fn merge(&mut self, other: &LwwRegister) {
        if other.winner > self.winner {
            self.winner.clone_from(&other.winner);
        }
    }

    pub fn merge_delta(&mut self, delta: &LwwRegister) {
        self.merge(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> Value {
        Value::from_static(s.as_bytes())
    }

    #[test]
    fn default_clock_moves_past_the_current_timestamp() {
        let a = ReplicaId::from("a");
        let mut r = LwwRegister::new();
        r.set(&a, v("one"), Clock::Default, 0, 100);
        r.set(&a, v("two"), Clock::Default, 0, 50);
        assert_eq!(r.value(), Some(&v("two")));
        assert_eq!(r.timestamp(), Some(101));
    }

    #[test]
    fn reverse_clock_keeps_the_first_write() {
        let a = ReplicaId::from("a");
        let mut r = LwwRegister::new();
        r.set(&a, v("first"), Clock::Reverse, 0, 100);
        r.set(&a, v("second"), Clock::Reverse, 0, 200);
        assert_eq!(r.value(), Some(&v("first")));
    }

    #[test]
    fn custom_clocks() {
        let a = ReplicaId::from("a");
        let mut r = LwwRegister::new();
        r.set(&a, v("ten"), Clock::Custom, 10, 0);
        r.set(&a, v("five"), Clock::Custom, 5, 0);
        assert_eq!(r.value(), Some(&v("ten")));
        r.set(&a, v("auto"), Clock::CustomAutoIncrement, 10, 0);
        assert_eq!((r.value(), r.timestamp()), (Some(&v("auto")), Some(11)));
        r.set(&a, v("later"), Clock::CustomAutoIncrement, 20, 0);
        assert_eq!(r.timestamp(), Some(20));
    }
}
