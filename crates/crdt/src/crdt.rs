//! [`Crdt`]: any of the types, as an ORMap value and as a CRDT entity's state.

use crate::ormap::{MapValue, ObservedRemoveMap};
use crate::{
    CausalContext, CrdtError, CrdtKind, Dot, Flag, GCounter, GSet, LwwRegister, OrSet, PnCounter, Vote,
};

/// crdt.proto's ORMap: an add-wins observed-remove map from opaque keys to CRDTs of any kind.
pub type OrMap = ObservedRemoveMap<Crdt>;

/// A state (or a delta: deltas are states of the same type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crdt {
    GCounter(GCounter),
    PnCounter(PnCounter),
    GSet(GSet),
    OrSet(OrSet),
    LwwRegister(LwwRegister),
    Flag(Flag),
    OrMap(OrMap),
    Vote(Vote),
}

impl Crdt {
    /// The bottom state of `kind` (the identity of merge).
    pub fn empty(kind: CrdtKind) -> Crdt {
        match kind {
            CrdtKind::GCounter => Crdt::GCounter(GCounter::new()),
            CrdtKind::PnCounter => Crdt::PnCounter(PnCounter::new()),
            CrdtKind::GSet => Crdt::GSet(GSet::new()),
            CrdtKind::OrSet => Crdt::OrSet(OrSet::new()),
            CrdtKind::LwwRegister => Crdt::LwwRegister(LwwRegister::new()),
            CrdtKind::Flag => Crdt::Flag(Flag::new()),
            CrdtKind::OrMap => Crdt::OrMap(OrMap::new()),
            CrdtKind::Vote => Crdt::Vote(Vote::new()),
        }
    }

    pub fn kind(&self) -> CrdtKind {
        match self {
            Crdt::GCounter(_) => CrdtKind::GCounter,
            Crdt::PnCounter(_) => CrdtKind::PnCounter,
            Crdt::GSet(_) => CrdtKind::GSet,
            Crdt::OrSet(_) => CrdtKind::OrSet,
            Crdt::LwwRegister(_) => CrdtKind::LwwRegister,
            Crdt::Flag(_) => CrdtKind::Flag,
            Crdt::OrMap(_) => CrdtKind::OrMap,
            Crdt::Vote(_) => CrdtKind::Vote,
        }
    }

    /// Joins `other` (a state or a delta) into this state. On an error nothing changed.
    pub fn merge(&mut self, other: &Crdt) -> Result<(), CrdtError> {
        match (self, other) {
            (Crdt::GCounter(a), Crdt::GCounter(b)) => a.merge(b),
            (Crdt::PnCounter(a), Crdt::PnCounter(b)) => a.merge(b),
            (Crdt::GSet(a), Crdt::GSet(b)) => a.merge(b),
            (Crdt::OrSet(a), Crdt::OrSet(b)) => a.merge(b),
            (Crdt::LwwRegister(a), Crdt::LwwRegister(b)) => a.merge(b),
            (Crdt::Flag(a), Crdt::Flag(b)) => a.merge(b),
            (Crdt::OrMap(a), Crdt::OrMap(b)) => a.merge(b)?,
            (Crdt::Vote(a), Crdt::Vote(b)) => a.merge(b),
            (a, b) => return Err(CrdtError::KindMismatch { expected: a.kind(), found: b.kind() }),
        }
        Ok(())
    }

    pub fn merge_delta(&mut self, delta: &Crdt) -> Result<(), CrdtError> {
        self.merge(delta)
    }

    /// The causal context of the observed-remove kinds.
    pub fn context(&self) -> Option<&CausalContext> {
        match self {
            Crdt::OrSet(s) => Some(s.context()),
            Crdt::OrMap(m) => Some(m.context()),
            _ => None,
        }
    }

    /// Records dots minted during an update in the context (observed-remove kinds only).
    pub(crate) fn witness(&mut self, dots: &[Dot]) {
        match self {
            Crdt::OrSet(s) => s.witness(dots),
            Crdt::OrMap(m) => m.witness(dots),
            _ => {}
        }
    }
}

impl MapValue for Crdt {
    fn kind(&self) -> CrdtKind {
        Crdt::kind(self)
    }

    fn empty(kind: CrdtKind) -> Self {
        Crdt::empty(kind)
    }

    fn merge(&mut self, other: &Self) -> Result<(), CrdtError> {
        Crdt::merge(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_two_kinds_is_an_error_naming_both() {
        let mut a = Crdt::empty(CrdtKind::GCounter);
        let err = a.merge(&Crdt::empty(CrdtKind::OrSet)).unwrap_err();
        assert_eq!(err, CrdtError::KindMismatch { expected: CrdtKind::GCounter, found: CrdtKind::OrSet });
        assert_eq!(err.to_string(), "cannot merge orset into gcounter");
        assert_eq!(a, Crdt::empty(CrdtKind::GCounter));
    }
}
