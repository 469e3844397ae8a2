//! ORSet: an add-wins observed-remove set (delta-state, after Almeida, Shoker and Baquero).
//!
//! Each present element carries the dots of the adds that put it there; the causal context holds
//! every dot this state has seen. Removing an element puts its dots in the delta's context and
//! nothing in its entries; merging drops a dot one side has seen and the other no longer holds.
//!
//! Invariants: every dot in `entries` is in `context`; an element is present iff it has a dot;
//! an add concurrent with a remove survives (its dot is new to the remover).

use std::collections::{BTreeMap, BTreeSet};

use crate::{CausalContext, Dot, ReplicaId, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrSet {
    entries: BTreeMap<Value, BTreeSet<Dot>>,
    context: CausalContext,
}

impl OrSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, item: &Value) -> bool {
        self.entries.contains_key(item)
    }

    pub fn items(&self) -> impl Iterator<Item = &Value> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn context(&self) -> &CausalContext {
        &self.context
    }

    /// Adds `item` at `replica` with a fresh dot; returns the delta.
    pub fn add(&mut self, replica: &ReplicaId, item: Value) -> OrSet {
        let dot = Dot::new(replica.clone(), self.context.max_counter(replica).saturating_add(1));
        self.add_with_dot(dot, item)
    }

    /// Adds `item` under `dot`, which must be fresh (from a [`crate::DotSource`]).
    pub fn add_with_dot(&mut self, dot: Dot, item: Value) -> OrSet {
        let mut delta = OrSet::new();
        for old in self.entries.get(&item).into_iter().flatten() {
            delta.context.insert(old.clone());
        }
        delta.context.insert(dot.clone());
        delta.entries.insert(item, BTreeSet::from([dot]));
        self.merge(&delta);
        delta
    }

    /// Removes `item` (the adds this state has seen); returns the delta.
    pub fn remove(&mut self, item: &Value) -> OrSet {
        let mut delta = OrSet::new();
        for old in self.entries.get(item).into_iter().flatten() {
            delta.context.insert(old.clone());
        }
        self.merge(&delta);
        delta
    }

    /// Removes every element this state has seen; returns the delta.
    pub fn clear(&mut self) -> OrSet {
        let delta = OrSet { entries: BTreeMap::new(), context: self.context.clone() };
        self.merge(&delta);
        delta
    }

    /// Joins a state or delta.
    pub fn merge(&mut self, other: &OrSet) {
        let keys: BTreeSet<Value> = self.entries.keys().chain(other.entries.keys()).cloned().collect();
        let empty = BTreeSet::new();
        for key in keys {
            let mine = self.entries.get(&key).unwrap_or(&empty);
            let theirs = other.entries.get(&key).unwrap_or(&empty);
            let kept: BTreeSet<Dot> = mine
                .iter()
                .filter(|d| theirs.contains(d) || !other.context.contains(d))
                .chain(theirs.iter().filter(|d| !self.context.contains(d)))
                .cloned()
                .collect();
            if kept.is_empty() {
                self.entries.remove(&key);
            } else {
                self.entries.insert(key, kept);
            }
        }
        self.context.union(&other.context);
    }

    pub fn merge_delta(&mut self, delta: &OrSet) {
        self.merge(delta);
    }

    /// Adds `dots` to the context (dots minted for this update and used elsewhere).
    pub(crate) fn witness(&mut self, dots: &[Dot]) {
        for dot in dots {
            self.context.insert(dot.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> Value {
        Value::from_static(s.as_bytes())
    }

    #[test]
    fn add_remove_and_concurrent_add_wins() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut x = OrSet::new();
        let d = x.add(&a, v("e"));
        let mut y = OrSet::new();
        y.merge_delta(&d);
        let removed = x.remove(&v("e"));
        let readded = y.add(&b, v("e"));
        x.merge_delta(&readded);
        y.merge_delta(&removed);
        assert!(x.contains(&v("e")) && y.contains(&v("e")));
        assert_eq!(x, y);
        let cleared = x.clear();
        y.merge_delta(&cleared);
        assert!(x.is_empty() && y.is_empty());
    }
}
