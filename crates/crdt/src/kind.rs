//! [`CrdtKind`]: which of the types a state is.

use std::fmt;

/// The kinds of crdt.proto, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrdtKind {
    GCounter,
    PnCounter,
    GSet,
    OrSet,
    LwwRegister,
    Flag,
    OrMap,
    Vote,
}

impl fmt::Display for CrdtKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrdtKind::GCounter => "gcounter",
            CrdtKind::PnCounter => "pncounter",
            CrdtKind::GSet => "gset",
            CrdtKind::OrSet => "orset",
            CrdtKind::LwwRegister => "lwwregister",
            CrdtKind::Flag => "flag",
            CrdtKind::OrMap => "ormap",
            CrdtKind::Vote => "vote",
        })
    }
}
