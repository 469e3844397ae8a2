//! The management endpoints: `/ready` and `/alive` (health port) and `/metrics` (metrics port),
//! as small axum routers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
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

/// A check of whether the proxy can go on, set once its parts exist: `Some(reason)` when it
/// cannot and must be restarted (a store that stopped after a failed sync).
type Check = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// What `/alive` reports: alive while the process serves, unless its check says otherwise.
#[derive(Clone, Default)]
pub struct Liveness(Arc<OnceLock<Check>>);

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Liveness").field(&self.fault()).finish()
    }
}

impl Liveness {
    /// Sets the check (the first one set stays).
    pub fn set_check(&self, check: impl Fn() -> Option<String> + Send + Sync + 'static) {
        let _ = self.0.set(Box::new(check));
    }

    /// Why the proxy cannot go on, if it cannot.
    pub fn fault(&self) -> Option<String> {
        self.0.get().and_then(|check| check())
    }
}

/// `/ready` (200 or 503) and `/alive` (200 while the process serves, 503 with the reason once
/// `liveness` reports a fault, so that the kubelet restarts the container). A fault makes the
/// proxy not ready too: no traffic goes to it while it waits for the restart.
pub fn health_router(readiness: Readiness, liveness: Liveness) -> Router {
    let faulty = liveness.clone();
    Router::new()
        .route(
            "/ready",
            get(|State(readiness): State<Readiness>| async move {
                if let Some(reason) = faulty.fault() {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n"))
                } else if readiness.is_ready().await {
                    (StatusCode::OK, "ready\n".to_string())
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string())
                }
            }),
        )
        .route(
            "/alive",
            get(move || async move {
                match liveness.fault() {
                    None => (StatusCode::OK, "alive\n".to_string()),
                    Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not alive: {reason}\n")),
                }
            }),
        )
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn alive(router: Router) -> (StatusCode, String) {
        get_path(router, "/alive").await
    }

    async fn get_path(router: Router, path: &str) -> (StatusCode, String) {
        let response =
            router.oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("answers");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn alive_reports_a_fault_once_the_check_finds_one() {
        let liveness = Liveness::default();
        let router = health_router(Readiness::Flag(Arc::new(AtomicBool::new(true))), liveness.clone());
        assert_eq!(alive(router.clone()).await, (StatusCode::OK, "alive\n".into()));
        let fault = Arc::new(OnceLock::new());
        let seen = fault.clone();
        liveness.set_check(move || seen.get().cloned());
        assert_eq!(alive(router.clone()).await.0, StatusCode::OK, "no fault yet");
        assert_eq!(get_path(router.clone(), "/ready").await, (StatusCode::OK, "ready\n".into()));
        fault.set("the log could not be synced".to_string()).expect("set once");
        assert_eq!(
            alive(router.clone()).await,
            (StatusCode::SERVICE_UNAVAILABLE, "not alive: the log could not be synced\n".into())
        );
        assert_eq!(
            get_path(router, "/ready").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: the log could not be synced\n".into()),
            "a proxy that must restart takes no traffic"
        );
    }
}
