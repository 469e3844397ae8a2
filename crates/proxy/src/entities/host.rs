//! The seam between the dispatcher and the entity types: [`Host`] is what an entity's task
//! needs from the proxy, [`Driver`] what the dispatcher needs from an entity type. The
//! dispatcher routes every entity command through one function generic over [`Driver`], and a
//! driver knows only its [`Host`], never the dispatcher: a new entity type (CRDTs) is a machine,
//! a driver implementing [`Driver`], a registry here and one line in the dispatcher's match.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::command::Request;
use super::registry::{Inbox, Registry};
use crate::catalog::Service;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::store::{AnyStore, StoreError};

/// What every entity's task shares: the user function, the store, the proxy's metrics and
/// lifecycle, and the active entities of each type (a task passivates itself there).
#[derive(Debug)]
pub struct Host {
    pub(crate) channel: Channel,
    pub(crate) store: Option<Arc<AnyStore>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lifecycle: Lifecycle,
    /// How long an entity stays active without a command, unless its service says otherwise.
    pub(crate) passivation: Duration,
    pub(crate) event_sourced: Registry<Request>,
    pub(crate) value_entities: Registry<Request>,
}

/// An entity type whose active entities each run as one task fed through a [`Registry`].
pub(crate) trait Driver {
    /// The registry of this type's active entities.
    fn registry(host: &Host) -> &Registry<Request>;

    /// The task of one active entity, until passivation or shutdown; `commands` holds at least
    /// the command that activated it.
    fn run(
        host: Arc<Host>,
        service: Arc<Service>,
        entity_id: String,
        commands: Inbox<Request>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// The `outcome` label of a store operation's metric.
pub(crate) fn outcome_label<T>(result: &Result<T, StoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error.metric_label(),
    }
}
