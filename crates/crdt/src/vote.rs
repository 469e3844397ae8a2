//! Vote: every replica's own yes/no vote; the value is how many vote yes out of how many vote.
//!
//! Invariants: a replica only writes its own entry, each write with a higher version; merge keeps
//! each replica's highest version. A replica joins the voters by casting its first vote
//! (the proxy casts `false` when the entity starts on a node). A replica that left (scaled down,
//! replaced) is retired by any other: retired ids are a grow-only set and their ballots are
//! dropped for good, which is sound because a [`ReplicaId`] names one incarnation.

use std::collections::{BTreeMap, BTreeSet};

use crate::ReplicaId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ballot {
    version: u64,
    vote: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vote {
    ballots: BTreeMap<ReplicaId, Ballot>,
    retired: BTreeSet<ReplicaId>,
}

impl Vote {
    pub fn new() -> Self {
        Self::default()
    }

    /// Casts (or changes) `replica`'s vote; the delta is that replica's new ballot.
    pub fn vote(&mut self, replica: &ReplicaId, vote: bool) -> Vote {
        let version = self.ballots.get(replica).map_or(0, |b| b.version).saturating_add(1);
        let delta = Vote {
            ballots: BTreeMap::from([(replica.clone(), Ballot { version, vote })]),
            retired: BTreeSet::new(),
        };
        self.merge(&delta);
        delta
    }

    /// Removes `replica` from the voters for good (it left the service); returns the delta.
    pub fn retire(&mut self, replica: &ReplicaId) -> Vote {
        let delta = Vote { ballots: BTreeMap::new(), retired: BTreeSet::from([replica.clone()]) };
        self.merge(&delta);
        delta
    }

    pub fn votes_for(&self) -> u32 {
        let n = self.ballots.values().filter(|b| b.vote).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn total_voters(&self) -> u32 {
        u32::try_from(self.ballots.len()).unwrap_or(u32::MAX)
    }

    /// `replica`'s own vote (false before it voted).
    pub fn self_vote(&self, replica: &ReplicaId) -> bool {
        self.ballots.get(replica).is_some_and(|b| b.vote)
    }

    pub fn merge(&mut self, other: &Vote) {
        self.retired.extend(other.retired.iter().cloned());
        for (replica, &ballot) in &other.ballots {
            let mine = self.ballots.entry(replica.clone()).or_insert(ballot);
            *mine = (*mine).max(ballot);
        }
        let retired = &self.retired;
        self.ballots.retain(|replica, _| !retired.contains(replica));
    }

    pub fn merge_delta(&mut self, delta: &Vote) {
        self.merge(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_replicas_latest_vote() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut x = Vote::new();
        let mut y = Vote::new();
        x.vote(&a, true);
        let d1 = y.vote(&b, true);
        let d2 = y.vote(&b, false);
        x.merge_delta(&d2);
        x.merge_delta(&d1);
        assert_eq!((x.votes_for(), x.total_voters()), (1, 2));
        assert!(x.self_vote(&a) && !x.self_vote(&b));
    }

    #[test]
    fn a_retired_voter_no_longer_counts_even_if_it_votes_again() {
        let (a, b) = (ReplicaId::from("a"), ReplicaId::from("b"));
        let mut x = Vote::new();
        x.vote(&a, true);
        let late = x.vote(&b, true);
        let mut y = x.clone();
        y.retire(&b);
        assert_eq!((y.votes_for(), y.total_voters()), (1, 1));
        y.merge_delta(&late);
        y.merge(&x);
        assert_eq!((y.votes_for(), y.total_voters()), (1, 1));
        x.merge(&y);
        assert_eq!(x, y);
    }
}
