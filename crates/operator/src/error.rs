//! The reconciler's error.

/// Why one reconcile failed. `error_policy` records [`Error::metric_label`] and backs off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("statefulservice has no {0}")]
    MissingField(&'static str),
    #[error("rendered object {0} is not a kind the operator manages")]
    UnmanagedKind(String),
}

impl Error {
    /// A short, bounded label for the failures metric (never an object name: label cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) => match status.code {
                404 => "not_found",
                409 => "conflict",
                422 => "invalid",
                403 => "forbidden",
                401 => "unauthorized",
                429 => "throttled",
                500..=599 => "server_error",
                _ => "api_error",
            },
            Self::Kube(_) => "transport",
            Self::Serialize { .. } => "serialize",
            Self::MissingField(_) => "missing_field",
            Self::UnmanagedKind(_) => "unmanaged_kind",
        }
    }
}
