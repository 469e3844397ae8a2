//! Status conditions, positive polarity (`Ready=True` means ready), as `metav1.Condition`.

/// Condition types a StatefulService reports.
pub mod condition_types {
    /// All replicas are available with the current spec.
    pub const READY: &str = "Ready";
    /// A rollout or scale is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Something keeps the service from working as declared (e.g. a missing StatefulStore).
    pub const DEGRADED: &str = "Degraded";
}

/// The three values of a condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}
