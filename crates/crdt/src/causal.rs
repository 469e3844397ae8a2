//! Dots and causal contexts: what the observed-remove types (ORSet, ORMap) know has happened.
//!
//! A [`Dot`] names one event: the `counter`th event minted by a replica. A [`CausalContext`] is a
//! set of dots, kept compact as a version vector (every dot up to a counter, per replica) plus a
//! cloud of dots beyond it (the gaps a delta leaves).
//!
//! Invariants: after every operation the context is compact (no cloud dot is covered by or
//! adjacent to the version vector); a replica mints a dot above every dot of its own it has seen,
//! so dots are never reused.

use std::collections::{BTreeMap, BTreeSet};

use crate::ReplicaId;

/// One event of one replica.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    pub replica: ReplicaId,
    pub counter: u64,
}

impl Dot {
    pub fn new(replica: ReplicaId, counter: u64) -> Self {
        Self { replica, counter }
    }
}

/// A set of dots: a version vector and the dots beyond it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CausalContext {
    vector: BTreeMap<ReplicaId, u64>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, dot: &Dot) -> bool {
        self.vector.get(&dot.replica).is_some_and(|&c| dot.counter <= c) || self.cloud.contains(dot)
    }

    pub fn insert(&mut self, dot: Dot) {
        if !self.contains(&dot) {
            self.cloud.insert(dot);
            self.compact();
        }
    }

    /// Joins another context into this one (set union).
    pub fn union(&mut self, other: &CausalContext) {
        for (replica, &counter) in &other.vector {
            let mine = self.vector.entry(replica.clone()).or_insert(0);
            *mine = (*mine).max(counter);
        }
        self.cloud.extend(other.cloud.iter().cloned());
        self.compact();
    }

    /// The highest counter of `replica` this context holds (0 if none).
    pub fn max_counter(&self, replica: &ReplicaId) -> u64 {
        let in_vector = self.vector.get(replica).copied().unwrap_or(0);
        let in_cloud =
            self.cloud.iter().filter(|d| &d.replica == replica).map(|d| d.counter).max().unwrap_or(0);
        in_vector.max(in_cloud)
    }

    /// Every dot in the context, in order (for tests and small deltas).
    pub fn dots(&self) -> impl Iterator<Item = Dot> + '_ {
        let vector = self.vector.iter().flat_map(|(r, &c)| (1..=c).map(move |n| Dot::new(r.clone(), n)));
        vector.chain(self.cloud.iter().cloned())
    }

    fn compact(&mut self) {
        let cloud = std::mem::take(&mut self.cloud);
        for dot in cloud {
            let counter = self.vector.entry(dot.replica.clone()).or_insert(0);
            if dot.counter == *counter + 1 {
                *counter = dot.counter;
            } else if dot.counter > *counter {
                self.cloud.insert(dot);
            }
        }
        // A dot made contiguous by a later one in the same replica's run was pushed to the cloud
        // before the vector reached it: the cloud is ordered by counter within a replica, so one
        // pass absorbs every run. Drop replicas left at zero.
        self.vector.retain(|_, c| *c > 0);
    }
}

/// Mints fresh dots for one replica during one update, for the top-level type and everything
/// nested in it (an ORSet inside an ORMap takes its dots from here too, so a key removed and
/// added again never reuses a dot).
#[derive(Debug)]
pub struct DotSource {
    replica: ReplicaId,
    next: u64,
    minted: Vec<Dot>,
}

impl DotSource {
    /// Starts above every dot of `replica` that `context` holds.
    pub fn new(replica: ReplicaId, context: Option<&CausalContext>) -> Self {
        let next = context.map_or(0, |c| c.max_counter(&replica)).saturating_add(1);
        Self { replica, next, minted: Vec::new() }
    }

    pub fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    pub fn mint(&mut self) -> Dot {
        let dot = Dot::new(self.replica.clone(), self.next);
        self.next = self.next.saturating_add(1);
        self.minted.push(dot.clone());
        dot
    }

    /// The dots minted so far.
    pub fn minted(&self) -> &[Dot] {
        &self.minted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(r: &str, n: u64) -> Dot {
        Dot::new(ReplicaId::from(r), n)
    }

    #[test]
    fn out_of_order_dots_compact_into_the_vector() {
        let mut c = CausalContext::new();
        c.insert(dot("a", 3));
        c.insert(dot("a", 1));
        assert!(c.contains(&dot("a", 1)) && !c.contains(&dot("a", 2)));
        c.insert(dot("a", 2));
        assert_eq!(c.cloud.len(), 0);
        assert_eq!(c.max_counter(&"a".into()), 3);
        assert_eq!(c.dots().count(), 3);
    }

    #[test]
    fn a_dot_source_mints_above_what_the_context_holds() {
        let mut c = CausalContext::new();
        c.insert(dot("a", 1));
        c.insert(dot("a", 5));
        let mut s = DotSource::new("a".into(), Some(&c));
        assert_eq!(s.mint(), dot("a", 6));
        assert_eq!(s.mint(), dot("a", 7));
        assert_eq!(s.minted().len(), 2);
    }
}
