//! Per-core shards: threads with a single-threaded runtime each, serving the connections that
//! [`super::serve`] accepted. A connection stays on its shard for its whole life, so its client
//! and upstream sockets are always polled by the same thread.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::forward::{Timeouts, serve_connection};
use crate::connections::Permit;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;

/// A connection on its way to a shard, with its permit.
type Arrival = (std::net::TcpStream, Permit);

/// A shard's inbox.
pub(super) struct Shard {
    inbox: mpsc::UnboundedSender<Arrival>,
}

impl Shard {
    /// Gives a connection (with its permit) to the shard; returns it if the shard has stopped.
    pub(super) fn hand_over(&self, (client, permit): (TcpStream, Permit)) -> Result<(), (TcpStream, Permit)> {
        let std = match client.into_std() {
            Ok(std) => std,
            Err(error) => {
                // Deregistering failed: the socket is closed; nothing left to serve.
                tracing::debug!(%error, "handing a connection to a shard failed");
                return Ok(());
            }
        };
        match self.inbox.send((std, permit)) {
            Ok(()) => Ok(()),
            // Back to the caller's runtime; if even that fails the connection is dropped.
            Err(mpsc::error::SendError((std, permit))) => match TcpStream::from_std(std) {
                Ok(client) => Err((client, permit)),
                Err(error) => {
                    tracing::debug!(%error, "re-registering a connection no shard took failed");
                    Ok(())
                }
            },
        }
    }
}

/// Serves each connection handed to this shard, until the shard's [`Shard`] is dropped.
///
/// Connection tasks are spawned without the lifecycle: the shard ends them all at once (see
/// [`start`]).
async fn take_arrivals(
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    upstream: SocketAddr,
    timeouts: Timeouts,
    metrics: &Arc<Metrics>,
) {
    while let Some((client, permit)) = arrivals.recv().await {
        match TcpStream::from_std(client) {
            Ok(client) => {
                tokio::spawn(serve_connection((client, permit), upstream, timeouts, metrics.clone()));
            }
            Err(error) => tracing::debug!(%error, "registering a handed-over connection failed"),
        }
    }
}

/// At most this many shards: a sidecar shares its node with many pods, and a few threads carry
/// far more than one pod's traffic.
const MAX_SHARDS: usize = 4;

/// Starts one shard per available core, at most [`MAX_SHARDS`] (none if only one core: the
/// caller's runtime is then as good). A shard ends, and its connections with it, when its
/// [`Shard`] is dropped or the lifecycle stops.
pub(super) fn start(
    upstream: SocketAddr,
    timeouts: Timeouts,
    metrics: &Arc<Metrics>,
    lifecycle: &Lifecycle,
) -> Vec<Shard> {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1).min(MAX_SHARDS);
    if cores < 2 {
        return Vec::new();
    }
    let mut shards = Vec::with_capacity(cores);
    for n in 0..cores {
        let (inbox, mut arrivals) = mpsc::unbounded_channel::<Arrival>();
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::warn!(%error, "starting a passthrough shard's runtime failed");
                break;
            }
        };
        let (metrics, mut lifecycle) = (metrics.clone(), lifecycle.clone());
        let started = std::thread::Builder::new().name(format!("stead-pass-{n}")).spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    () = take_arrivals(&mut arrivals, upstream, timeouts, &metrics) => {}
                    () = lifecycle.stopped() => {}
                }
            });
            // Dropping the runtime drops its connection tasks, closing their sockets, before
            // the lifecycle is released: whoever waits for every lifecycle to go then knows
            // the connections are gone.
            drop(runtime);
            drop(lifecycle);
        });
        match started {
            Ok(_) => shards.push(Shard { inbox }),
            Err(error) => {
                tracing::warn!(%error, "starting a passthrough shard thread failed");
                break;
            }
        }
    }
    shards
}
