//! `stead operator run`: start-up checks, the admin server, leader election, the controller,
//! and graceful shutdown on SIGTERM or SIGINT.

use crate::leader::{LeaderElector, LeaderError, LeaseConfig};
use crate::server::{Health, router};
use crate::{Context, Metrics, run_controller};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use kube::api::{Api, ListParams};
use std::net::SocketAddr;
use std::sync::Arc;
use stead_api::types::StatefulService;
use stead_render::RenderOptions;
use tokio::sync::watch;

/// Everything `run` needs, typed and checked before any port is bound.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub metrics_addr: SocketAddr,
    pub render: RenderOptions,
    pub lease: LeaseConfig,
}

impl RunConfig {
    /// The lease namespace and identity come from the pod (`POD_NAMESPACE`, `POD_NAME`, set by
    /// the install Deployment through the downward API); outside a pod, the operator namespace and
    /// the host name.
    pub fn from_env(metrics_addr: SocketAddr, render: RenderOptions) -> Self {
        let namespace =
            std::env::var("POD_NAMESPACE").unwrap_or_else(|_| stead_render::OPERATOR_NAMESPACE.to_owned());
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("stead-operator-{}", std::process::id()));
        Self { metrics_addr, render, lease: LeaseConfig::new(namespace, identity) }
    }
}

/// Why the operator stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot configure the kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot list statefulservices ({0}); are the CRDs installed? run `stead operator install`")]
    CrdMissing(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error("lost the leader lease {0}; exiting so a fresh replica can compete")]
    LeadershipLost(String),
}

/// A shutdown signal that any number of tasks can wait on (and the controller can take: it wants
/// `Send + Sync`).
type Shutdown = Shared<BoxFuture<'static, ()>>;

fn shutdown_future(rx: watch::Receiver<bool>) -> Shutdown {
    async move {
        let mut rx = rx;
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
    .boxed()
    .shared()
}

/// Runs until SIGTERM/SIGINT (then returns Ok after in-flight reconciles finish and the Lease is
/// released) or until leadership is lost (an error: the pod restarts as a follower).
pub async fn run(cfg: RunConfig) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    Api::<StatefulService>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .map_err(RunError::CrdMissing)?;

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr)
        .await
        .map_err(|source| RunError::Bind { addr: cfg.metrics_addr, source })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = shutdown_future(stop_rx);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signal)?;
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        let _ = signal_tx.send(true);
    });

    let server_stop = stop.clone();
    let app = router(metrics.clone(), health.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(server_stop).await {
            tracing::warn!("admin server: {e}");
        }
    });
    health.set_ready(true);

    let elector = LeaderElector::new(client.clone(), cfg.lease.clone());
    let result = lead(&elector, client, cfg, metrics, stop.clone(), stop_tx).await;
    let _ = server.await;
    result
}

async fn lead(
    elector: &LeaderElector,
    client: Client,
    cfg: RunConfig,
    metrics: Arc<Metrics>,
    stop: Shutdown,
    stop_tx: watch::Sender<bool>,
) -> Result<(), RunError> {
    let lease = elector.config().clone();
    // Follow until we hold the Lease (or are told to stop).
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        tokio::select! {
            _ = stop.clone() => return Ok(()),
            _ = tokio::time::sleep(lease.renew_every) => {}
        }
    }
    tracing::info!(identity = %lease.identity, "leading");

    // Renew in the background; a lost Lease stops the controller.
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renew = {
        let lost = lost.clone();
        let stop = stop.clone();
        let elector = LeaderElector::new(client.clone(), lease.clone());
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = stop.clone() => return,
                    _ = tokio::time::sleep(lease.renew_every) => {}
                }
                match elector.try_acquire_or_renew().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => break,
                    Err(e) if last_ok.elapsed() < lease.duration => tracing::warn!("{e}"),
                    Err(_) => break,
                }
            }
            lost.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = stop_tx.send(true);
        })
    };

    let ctx = Arc::new(Context::new(client, cfg.render, metrics, Some(lease.identity.clone())));
    run_controller(ctx, stop).await;
    renew.abort();
    if lost.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(RunError::LeadershipLost(format!("{}/{}", lease.namespace, lease.name)));
    }
    elector.release().await?;
    Ok(())
}
