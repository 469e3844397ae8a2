//! Replica identities: which node made a change.

use std::fmt;

/// A node's identity among the replicas of one entity (the proxy's pod, say). Given by the caller;
/// two live replicas never share one, and a replica that lost its state (a restarted pod that has
/// not fetched it back) takes a new one (say, the pod name and its start time): the dots it mints
/// count up from what its state holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ReplicaId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}
