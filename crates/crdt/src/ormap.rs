//! ORMap: an add-wins observed-remove map from opaque keys to any CRDT.
//!
//! A key holds *fragments*, each under the dot of the update that wrote it; the key's value is
//! the join of its live fragments. An update at a replica replaces that replica's own fragments
//! of the key with one (their join plus the nested delta) under a fresh dot; removing a key puts
//! all its dots in the delta's context. Merging keeps and drops fragments as the ORSet keeps and
//! drops dots, and joins the two sides' fragment under a dot both hold.
//!
//! Removal semantics: a removed key is gone with its value; added again, it starts empty (its
//! old fragments stay dead). An update concurrent with a remove wins: the key survives with the
//! updating replica's fragment (its contributions, including those from before the remove).
//! Nested ORSets and ORMaps take their dots from the top-level [`DotSource`], so a key removed
//! and re-added never reuses a dot.
//!
//! Invariants: every fragment's dot is in `context`; a key is present iff it has a fragment;
//! one dot is one fragment everywhere. Concurrent puts of two kinds under one key leave fragments
//! of both; the value is then the join of the fragments of the kind of the lowest dot, so every
//! replica reads the same. Cost: a merge walks both maps (O(state), as does an update).

use std::collections::{BTreeMap, BTreeSet};

use crate::{CausalContext, Crdt, CrdtError, CrdtKind, Dot, DotSource, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrMap {
    entries: BTreeMap<Value, BTreeMap<Dot, Crdt>>,
    context: CausalContext,
}

impl OrMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains_key(&self, key: &Value) -> bool {
        self.entries.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Value> {
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

    /// The value of `key`: the join of its live fragments.
    pub fn get(&self, key: &Value) -> Option<Crdt> {
        let fragments = self.entries.get(key)?;
        join_fragments(fragments.iter(), None)
    }

    /// The key-value pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, Crdt)> + '_ {
        self.entries.iter().filter_map(|(k, f)| join_fragments(f.iter(), None).map(|v| (k, v)))
    }

    /// Applies `nested_delta` (a delta of `key`'s value, computed against [`OrMap::get`] with
    /// dots from `dots`) at `dots`' replica; returns the map's delta.
    pub fn update(
        &mut self,
        dots: &mut DotSource,
        key: Value,
        nested_delta: Crdt,
    ) -> Result<OrMap, CrdtError> {
        let kind = nested_delta.kind();
        let own: Vec<(&Dot, &Crdt)> = self
            .entries
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|(d, c)| &d.replica == dots.replica() && c.kind() == kind)
            .collect();
        let mut fragment =
            join_fragments(own.iter().copied(), Some(kind)).unwrap_or_else(|| Crdt::empty(kind));
        fragment.merge(&nested_delta)?;
        let mut delta = OrMap::new();
        for (old, _) in &own {
            delta.context.insert((*old).clone());
        }
        let dot = dots.mint();
        delta.context.insert(dot.clone());
        delta.entries.insert(key, BTreeMap::from([(dot, fragment)]));
        self.merge(&delta)?;
        Ok(delta)
    }

    /// Sets `key` to `value` (a fresh CRDT), replacing whatever it held; returns the delta.
    pub fn put(&mut self, dots: &mut DotSource, key: Value, value: Crdt) -> Result<OrMap, CrdtError> {
        let mut delta = self.removal_of(&key);
        let dot = dots.mint();
        delta.context.insert(dot.clone());
        delta.entries.insert(key, BTreeMap::from([(dot, value)]));
        self.merge(&delta)?;
        Ok(delta)
    }

    /// Removes `key` (the updates this state has seen); returns the delta.
    pub fn remove(&mut self, key: &Value) -> OrMap {
        let delta = self.removal_of(key);
        self.drop_dots(&delta.context);
        delta
    }

    /// Removes every key this state has seen; returns the delta.
    pub fn clear(&mut self) -> OrMap {
        let delta = OrMap { entries: BTreeMap::new(), context: self.context.clone() };
        self.entries.clear();
        delta
    }

    /// Joins a state or delta; fails only when both hold one dot with fragments of two kinds
    /// (a dot minted twice: never between honest replicas). On an error nothing changed.
    pub fn merge(&mut self, other: &OrMap) -> Result<(), CrdtError> {
        let keys: BTreeSet<&Value> = self.entries.keys().chain(other.entries.keys()).collect();
        let empty = BTreeMap::new();
        let mut merged = BTreeMap::new();
        for key in keys {
            let mine = self.entries.get(key).unwrap_or(&empty);
            let theirs = other.entries.get(key).unwrap_or(&empty);
            let mut kept = BTreeMap::new();
            for (dot, fragment) in mine {
                if let Some(other_fragment) = theirs.get(dot) {
                    let mut joined = fragment.clone();
                    joined.merge(other_fragment)?;
                    kept.insert(dot.clone(), joined);
                } else if !other.context.contains(dot) {
                    kept.insert(dot.clone(), fragment.clone());
                }
            }
            for (dot, fragment) in theirs {
                if !mine.contains_key(dot) && !self.context.contains(dot) {
                    kept.insert(dot.clone(), fragment.clone());
                }
            }
            if !kept.is_empty() {
                merged.insert(key.clone(), kept);
            }
        }
        self.entries = merged;
        self.context.union(&other.context);
        Ok(())
    }

    pub fn merge_delta(&mut self, delta: &OrMap) -> Result<(), CrdtError> {
        self.merge(delta)
    }

    /// Adds `dots` to the context (dots minted for this update and used elsewhere).
    pub(crate) fn witness(&mut self, dots: &[Dot]) {
        for dot in dots {
            self.context.insert(dot.clone());
        }
    }

    fn removal_of(&self, key: &Value) -> OrMap {
        let mut delta = OrMap::new();
        for dot in self.entries.get(key).into_iter().flat_map(|f| f.keys()) {
            delta.context.insert(dot.clone());
        }
        delta
    }

    fn drop_dots(&mut self, seen: &CausalContext) {
        for fragments in self.entries.values_mut() {
            fragments.retain(|d, _| !seen.contains(d));
        }
        self.entries.retain(|_, f| !f.is_empty());
        self.context.union(seen);
    }
}

/// Joins fragments in dot order, keeping those of `kind` (or of the first fragment's kind).
fn join_fragments<'a>(
    fragments: impl Iterator<Item = (&'a Dot, &'a Crdt)>,
    kind: Option<CrdtKind>,
) -> Option<Crdt> {
    let mut value: Option<Crdt> = None;
    for (_, fragment) in fragments {
        match &mut value {
            None if kind.is_none_or(|k| k == fragment.kind()) => value = Some(fragment.clone()),
            None => {}
            // Fragments of another kind are skipped; a failed merge (two kinds under one nested
            // dot, from a dishonest replica only) leaves the value as it was.
            Some(v) if v.kind() == fragment.kind() => {
                v.merge(fragment).ok();
            }
            Some(_) => {}
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GCounter, ReplicaId};

    fn v(s: &'static str) -> Value {
        Value::from_static(s.as_bytes())
    }

    fn increment(map: &OrMap, replica: &str, key: &'static str, by: u64) -> Crdt {
        let mut value = map.get(&v(key)).unwrap_or(Crdt::GCounter(GCounter::new()));
        match &mut value {
            Crdt::GCounter(c) => Crdt::GCounter(c.increment(&ReplicaId::from(replica), by).unwrap()),
            other => panic!("not a counter: {other:?}"),
        }
    }

    fn counter(map: &OrMap, key: &'static str) -> Option<u64> {
        match map.get(&v(key)) {
            Some(Crdt::GCounter(c)) => Some(c.value()),
            _ => None,
        }
    }

    #[test]
    fn updates_remove_and_re_add_start_empty() {
        let mut m = OrMap::new();
        let mut dots = DotSource::new("a".into(), Some(m.context()));
        let d = increment(&m, "a", "k", 2);
        m.update(&mut dots, v("k"), d).unwrap();
        let d = increment(&m, "a", "k", 3);
        m.update(&mut dots, v("k"), d).unwrap();
        assert_eq!(counter(&m, "k"), Some(5));
        m.remove(&v("k"));
        assert_eq!(counter(&m, "k"), None);
        let d = increment(&m, "a", "k", 1);
        m.update(&mut dots, v("k"), d).unwrap();
        assert_eq!(counter(&m, "k"), Some(1));
    }

    #[test]
    fn a_concurrent_update_wins_over_a_remove() {
        let mut x = OrMap::new();
        let mut ax = DotSource::new("a".into(), Some(x.context()));
        let d = increment(&x, "a", "k", 2);
        let created = x.update(&mut ax, v("k"), d).unwrap();
        let mut y = OrMap::new();
        y.merge_delta(&created).unwrap();
        let removed = x.remove(&v("k"));
        let mut by = DotSource::new("b".into(), Some(y.context()));
        let d = increment(&y, "b", "k", 1);
        let updated = y.update(&mut by, v("k"), d).unwrap();
        x.merge_delta(&updated).unwrap();
        y.merge_delta(&removed).unwrap();
        assert_eq!(x, y);
        assert_eq!(counter(&x, "k"), Some(1));
    }

    #[test]
    fn merging_fragments_of_two_kinds_under_one_dot_is_an_error() {
        let mut x = OrMap::new();
        let mut y = OrMap::new();
        let mut dx = DotSource::new("a".into(), None);
        let mut dy = DotSource::new("a".into(), None);
        x.put(&mut dx, v("k"), Crdt::GCounter(GCounter::new())).unwrap();
        y.put(&mut dy, v("k"), Crdt::Flag(crate::Flag::new())).unwrap();
        let err = x.merge(&y).unwrap_err();
        assert_eq!(err.to_string(), "cannot merge flag into gcounter");
    }
}
