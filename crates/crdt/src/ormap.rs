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

use crate::{CausalContext, CrdtError, CrdtKind, Dot, DotSource, Value};

/// What an ORMap holds: a CRDT of any kind, merged only with one of its own kind. The crate's
/// [`crate::Crdt`] is the one implementation; the map is generic over it only so that the two
/// halves of one recursive type (a `Crdt` may be a map of `Crdt`s) live in two files.
pub trait MapValue: Clone + std::fmt::Debug + PartialEq + Eq {
    fn kind(&self) -> CrdtKind;
    /// The bottom state of `kind`.
    fn empty(kind: CrdtKind) -> Self;
    /// Joins `other`; on an error (two kinds) nothing changed.
    fn merge(&mut self, other: &Self) -> Result<(), CrdtError>;
}

/// The map; crdt.proto's ORMap is [`crate::OrMap`], this map of [`crate::Crdt`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRemoveMap<V> {
    entries: BTreeMap<Value, BTreeMap<Dot, V>>,
    context: CausalContext,
}

impl<V> Default for ObservedRemoveMap<V> {
    fn default() -> Self {
        Self { entries: BTreeMap::new(), context: CausalContext::default() }
    }
}

impl<V: MapValue> ObservedRemoveMap<V> {
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
    pub fn get(&self, key: &Value) -> Option<V> {
        let fragments = self.entries.get(key)?;
        join_fragments(fragments.iter(), None)
    }

    /// The key-value pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, V)> + '_ {
        self.entries.iter().filter_map(|(k, f)| join_fragments(f.iter(), None).map(|v| (k, v)))
    }

    /// Applies `nested_delta` (a delta of `key`'s value, computed against [`OrMap::get`] with
    /// dots from `dots`) at `dots`' replica; returns the map's delta.
    pub fn update(&mut self, dots: &mut DotSource, key: Value, nested_delta: V) -> Result<Self, CrdtError> {
        let kind = nested_delta.kind();
        let own: Vec<(&Dot, &V)> = self
            .entries
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|(d, c)| &d.replica == dots.replica() && c.kind() == kind)
            .collect();
        let mut fragment = join_fragments(own.iter().copied(), Some(kind)).unwrap_or_else(|| V::empty(kind));
        fragment.merge(&nested_delta)?;
        let mut delta = Self::new();
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
    pub fn put(&mut self, dots: &mut DotSource, key: Value, value: V) -> Result<Self, CrdtError> {
        let mut delta = self.removal_of(&key);
        let dot = dots.mint();
        delta.context.insert(dot.clone());
        delta.entries.insert(key, BTreeMap::from([(dot, value)]));
        self.merge(&delta)?;
        Ok(delta)
    }

    /// Removes `key` (the updates this state has seen); returns the delta.
    pub fn remove(&mut self, key: &Value) -> Self {
        let delta = self.removal_of(key);
        self.drop_dots(&delta.context);
        delta
    }

    /// Removes every key this state has seen; returns the delta.
    pub fn clear(&mut self) -> Self {
        let delta = Self { entries: BTreeMap::new(), context: self.context.clone() };
        self.entries.clear();
        delta
    }

    /// Joins a state or delta; fails only when both hold one dot with fragments of two kinds
    /// (a dot minted twice: never between honest replicas). On an error nothing changed.
    pub fn merge(&mut self, other: &Self) -> Result<(), CrdtError> {
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

    pub fn merge_delta(&mut self, delta: &Self) -> Result<(), CrdtError> {
        self.merge(delta)
    }

    /// Adds `dots` to the context (dots minted for this update and used elsewhere).
    pub(crate) fn witness(&mut self, dots: &[Dot]) {
        for dot in dots {
            self.context.insert(dot.clone());
        }
    }

    fn removal_of(&self, key: &Value) -> Self {
        let mut delta = Self::new();
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
fn join_fragments<'a, V: MapValue + 'a>(
    fragments: impl Iterator<Item = (&'a Dot, &'a V)>,
    kind: Option<CrdtKind>,
) -> Option<V> {
    let mut value: Option<V> = None;
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
mod tests;
