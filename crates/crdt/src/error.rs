//! The crate's errors.

use crate::{CrdtKind, ReplicaId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdtError {
    #[error("cannot merge {found} into {expected}")]
    KindMismatch { expected: CrdtKind, found: CrdtKind },
    #[error("an update of {update} cannot apply to {state}")]
    UpdateKindMismatch { state: CrdtKind, update: CrdtKind },
    #[error("the count of replica {replica} overflows adding {by}")]
    CounterOverflow { replica: ReplicaId, by: u64 },
    #[error("a flag cannot be disabled once enabled")]
    FlagDisable,
    #[error("a view of {before} cannot change into {after}")]
    ViewKindMismatch { before: CrdtKind, after: CrdtKind },
    /// A GCounter that decreased, a GSet that lost items, a flag disabled, a register emptied:
    /// no delta says that (inside an ORMap, the key was replaced).
    #[error("a {kind} view cannot go back to an earlier value")]
    ViewWentBack { kind: CrdtKind },
}
