//! [`Lifecycle`]: how background tasks learn that the proxy stops, and how the proxy waits for
//! them to be gone (so that the store can be closed and reopened).

use tokio::sync::{mpsc, watch};

/// Held by every background task: a stop signal, and a token whose drop says "I am gone".
#[derive(Clone, Debug)]
pub struct Lifecycle {
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

/// The proxy's side of [`Lifecycle`].
#[derive(Debug)]
pub struct Stopper {
    stop: watch::Sender<bool>,
    gone: mpsc::Receiver<()>,
}

/// A connected pair.
pub fn lifecycle() -> (Lifecycle, Stopper) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel(1);
    (Lifecycle { stop: stop_rx, _alive: alive_tx }, Stopper { stop: stop_tx, gone: alive_rx })
}

impl Lifecycle {
    /// Completes when the proxy stops.
    pub async fn stopped(&mut self) {
        // An error means the Stopper is gone: the proxy stopped too.
        let _ = self.stop.wait_for(|stop| *stop).await;
    }
}

impl Stopper {
    /// Signals every task, and waits (at most `limit`) until every [`Lifecycle`] is dropped.
    /// The caller must have dropped its own.
    pub async fn stop(mut self, limit: std::time::Duration) -> bool {
        let _ = self.stop.send(true);
        tokio::time::timeout(limit, self.gone.recv()).await.is_ok()
    }
}
