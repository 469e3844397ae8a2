//! The management endpoints: `/ready` and `/alive` (health port) and `/metrics` (metrics port),
//! as small axum routers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What `/ready` reports.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// Ready once the flag is set (entity mode: after discovery succeeded).
    Flag(Arc<AtomicBool>),
    /// Ready while the user container accepts connections on this address (passthrough mode).
    UserPort(SocketAddr),
}

impl Readiness {
    /// Whether the proxy should receive traffic now.
    pub async fn is_ready(&self) -> bool {
        match self {
            Readiness::Flag(flag) => flag.load(Ordering::Acquire),
            Readiness::UserPort(addr) => {
                let connect = tokio::net::TcpStream::connect(*addr);
                matches!(tokio::time::timeout(Duration::from_secs(1), connect).await, Ok(Ok(_)))
            }
        }
    }
}

/// `/ready` (200 or 503) and `/alive` (always 200 while the process serves).
pub fn health_router(readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/ready",
            get(|State(readiness): State<Readiness>| async move {
                if readiness.is_ready().await {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route("/alive", get(|| async { (StatusCode::OK, "alive\n") }))
        .with_state(readiness)
}

/// `/metrics` in the Prometheus text format.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }),
        )
        .with_state(metrics)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
