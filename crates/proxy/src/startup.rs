//! Start-up and shutdown: [`Proxy::bind`] takes the ports, [`Proxy::serve`] runs until
//! shutdown; [`run`] does both. [`build_runtime`] is the tokio runtime it runs on.
//!
//! Entity mode, in order: health and metrics servers (not ready yet), the store, discovery
//! (retried with backoff), the version check and the [`Catalog`] (every problem reported to
//! the user function and logged; startup stops), the HTTP rules (a bad rule is reported to the
//! user function through `reportError` and logged, then left out: the proxy still becomes ready
//! and serves everything else, gRPC included, since one bad route should not take a whole
//! service down), ready, then clients. Passthrough mode: see [`crate::passthrough`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::catalog::{Catalog, CatalogError};
use crate::config::{ProxyConfig, ProxyMode, StoreConfig};
use crate::connections;
use crate::discovery::{self, DiscoveryError};
use crate::entities::{Dispatcher, Host, Registry};
use crate::frontend::reflection::Reflection;
use crate::frontend::transcode::Transcoder;
use crate::frontend::{self, Frontend};
use crate::health::{self, Readiness};
use crate::lifecycle::{self, Lifecycle};
use crate::metrics::Metrics;
use crate::protocol::entity_type;
use crate::store::{
    AnyStore, ConnectError, DamagedLog, EmbeddedStore, MemoryStore, OpenError, PostgresStore, StoreError,
};

/// Why the proxy could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A port could not be bound.
    #[error("binding the {what} port {addr}: {source}")]
    Bind {
        /// Which port.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded store did not open.
    #[error(transparent)]
    Embedded(#[from] OpenError),
    /// PostgreSQL was not reachable or its tables could not be created.
    #[error(transparent)]
    Postgres(#[from] ConnectError),
    /// Closing the store failed.
    #[error("closing the store: {0}")]
    Close(#[from] StoreError),
    /// Discovery failed for good.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The user function declared something the proxy cannot serve.
    #[error("the user function's entities cannot be served: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Catalog(Vec<CatalogError>),
}

/// A proxy with its ports bound.
#[derive(Debug)]
pub struct Proxy {
    config: ProxyConfig,
    listener: TcpListener,
    health: TcpListener,
    metrics: TcpListener,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr).await.map_err(|source| ProxyError::Bind { what, addr, source })
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Blocking threads the proxy's runtime keeps at most: the embedded store's reads run there
/// (`spawn_blocking`), as do the threads that take over a worker while a lone write commits in
/// place. Tokio's default (512) let a burst of entity activations start one thread each, and
/// every thread kept a stack and a malloc arena: 1,000 active carts measured 20 threads and
/// about 5 MiB more than the in-memory store. Reads beyond the cap wait in the pool's queue.
pub const MAX_BLOCKING_THREADS: usize = 4;

/// The runtime `stead proxy` runs on: multi-threaded with `worker_threads` workers (`None` or
/// `Some(0)`: one per core), or single-threaded for `Some(1)`, with at most
/// [`MAX_BLOCKING_THREADS`] blocking threads.
pub fn build_runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) if n > 1 => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.max_blocking_threads(MAX_BLOCKING_THREADS).enable_all().build()
}

/// Binds and serves until `shutdown` completes.
pub async fn run(config: ProxyConfig, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProxyError> {
    Proxy::bind(config).await?.serve(shutdown).await
}

impl Proxy {
    /// Binds the client, health and metrics ports (port 0: chosen by the system), after
    /// raising the soft open-file limit to the hard one.
    pub async fn bind(config: ProxyConfig) -> Result<Self, ProxyError> {
        crate::connections::raise_open_file_limit();
        let listener = bind("proxy", config.listen).await?;
        let health = bind("health", config.health).await?;
        let metrics = bind("metrics", config.metrics).await?;
        Ok(Self { config, listener, health, metrics })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        local(&self.listener)
    }

    /// Where `/ready` and `/alive` are.
    pub fn health_addr(&self) -> SocketAddr {
        local(&self.health)
    }

    /// Where `/metrics` is.
    pub fn metrics_addr(&self) -> SocketAddr {
        local(&self.metrics)
    }

    /// Serves until `shutdown` completes (or startup fails).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProxyError> {
        let Self { config, listener, health, metrics: metrics_listener } = self;
        let metrics = Metrics::new();
        let (lifecycle, stopper) = lifecycle::lifecycle();
        let ready = Arc::new(AtomicBool::new(false));
        let readiness = match config.mode {
            ProxyMode::Entity => Readiness::Flag(ready.clone()),
            ProxyMode::Passthrough => Readiness::UserPort(config.user_function),
        };
        let liveness = health::Liveness::default();
        let health_router = health::health_router(readiness, liveness.clone());
        spawn_http(health, health_router, "health", &config, lifecycle.clone());
        spawn_http(
            metrics_listener,
            health::metrics_router(metrics.clone()),
            "metrics",
            &config,
            lifecycle.clone(),
        );
        let max_connections = connections::max_connections(&config.connections);
        tracing::info!(
            mode = ?config.mode, listen = %local(&listener), user_function = %config.user_function,
            max_connections, "stead-proxy starting"
        );
        let listener = connections::Acceptor::new(listener, max_connections, "client");
        let store = match config.mode {
            ProxyMode::Entity => open_store(&config.store, config.discard_damaged_log).await,
            ProxyMode::Passthrough => Ok(None),
        };
        if let Ok(Some(store)) = &store {
            let store = Arc::downgrade(store);
            liveness.set_check(move || store.upgrade().and_then(|store| store.fault()));
        }
        let result = match store {
            Err(error) => Err(error),
            Ok(store) => {
                let result = tokio::select! {
                    result = async {
                        match config.mode {
                            ProxyMode::Passthrough => {
                                crate::passthrough::serve(listener, config.user_function, &config.connections, metrics.clone(), lifecycle.clone()).await;
                                Ok(())
                            }
                            ProxyMode::Entity => {
                                entity_mode(&config, listener, store.clone(), metrics.clone(), lifecycle.clone(), ready).await
                            }
                        }
                    } => result,
                    () = shutdown => Ok(()),
                };
                result.map(|()| store)
            }
        };
        drop(lifecycle);
        if !stopper.stop(Duration::from_secs(10)).await {
            tracing::warn!("some proxy tasks did not stop within 10s");
        }
        match result {
            Ok(Some(store)) => close(store).await,
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Serves a management port (its own listener and connection limit) until the lifecycle stops.
fn spawn_http(
    listener: TcpListener,
    router: axum::Router,
    port: &'static str,
    config: &ProxyConfig,
    lifecycle: Lifecycle,
) {
    let limits = config.connections.clone();
    tokio::spawn(async move {
        connections::serve_management(listener, router, port, &limits, lifecycle).await;
    });
}

/// Closes the store once nothing else holds it (the embedded store's file is then free).
async fn close(store: Arc<AnyStore>) -> Result<(), ProxyError> {
    match Arc::try_unwrap(store) {
        Ok(AnyStore::Embedded(store)) => Ok(store.close().await?),
        Ok(_) => Ok(()),
        Err(_) => {
            tracing::warn!("the store is still in use at shutdown; it closes when its last user ends");
            Ok(())
        }
    }
}

async fn open_store(
    config: &StoreConfig,
    discard_damaged_log: bool,
) -> Result<Option<Arc<AnyStore>>, ProxyError> {
    Ok(match config {
        StoreConfig::None => None,
        StoreConfig::Memory => Some(Arc::new(AnyStore::Memory(MemoryStore::new()))),
        StoreConfig::Embedded { path } => {
            let damaged = if discard_damaged_log { DamagedLog::Discard } else { DamagedLog::Refuse };
            Some(Arc::new(AnyStore::Embedded(EmbeddedStore::open_recovering(path, damaged)?)))
        }
        StoreConfig::Postgres(pg) => {
            Some(Arc::new(AnyStore::Postgres(PostgresStore::connect(pg.connection(), pg.pool_size).await?)))
        }
    })
}

/// The entity types a proxy with (or without) a store serves; CRDTs are not supported yet.
pub fn supported_entity_types(has_store: bool) -> Vec<String> {
    let mut types = vec![entity_type::ACTION.to_string()];
    if has_store {
        types.insert(0, entity_type::VALUE_ENTITY.to_string());
        types.insert(0, entity_type::EVENT_SOURCED.to_string());
    }
    types
}

/// Entity mode until the lifecycle stops.
async fn entity_mode(
    config: &ProxyConfig,
    listener: connections::Acceptor,
    store: Option<Arc<AnyStore>>,
    metrics: Arc<Metrics>,
    lifecycle: Lifecycle,
    ready: Arc<AtomicBool>,
) -> Result<(), ProxyError> {
    let channel = discovery::channel(config.user_function)?;
    let info = discovery::proxy_info(supported_entity_types(store.is_some()));
    let spec = discovery::discover(
        channel.clone(),
        info,
        config.discovery_backoff_min,
        config.discovery_backoff_max,
    )
    .await;
    if let Err(error) = discovery::check_version(&spec) {
        discovery::report_error(channel, error.to_string()).await;
        return Err(error.into());
    }
    let catalog = match Catalog::build(&spec, store.is_some()) {
        Ok(catalog) => catalog,
        Err(problems) => {
            for problem in &problems {
                discovery::report_error(channel.clone(), problem.to_string()).await;
            }
            return Err(ProxyError::Catalog(problems));
        }
    };
    let services: Vec<String> =
        catalog.services().map(|s| format!("{} ({})", s.name, s.kind.label())).collect();
    tracing::info!(services = ?services, "discovered the user function's entities; ready");
    let host = Arc::new(Host {
        channel: channel.clone(),
        store,
        metrics,
        lifecycle: lifecycle.clone(),
        passivation: config.passivation_timeout,
        event_sourced: Registry::default(),
        value_entities: Registry::default(),
    });
    let dispatcher = Arc::new(Dispatcher { catalog, host, relay_timeout: config.relay_timeout });
    let (http, problems) = Transcoder::build(&dispatcher.catalog);
    // Each bad rule is logged (here, and as the report) and reported; the rest is served.
    let reports = problems.iter().map(|problem| {
        tracing::warn!(method = %problem.method, error = %problem.error, "an HTTP rule is invalid and left out");
        discovery::report_error(channel.clone(), problem.to_string())
    });
    futures::future::join_all(reports).await;
    let reflection = Arc::new(Reflection::new(
        dispatcher.catalog.pool(),
        dispatcher.catalog.services().map(|s| s.name.clone()),
    ));
    tracing::info!(http_rules = http.len(), "HTTP/JSON transcoding and server reflection ready");
    let frontend = Arc::new(Frontend { dispatcher, http, reflection, cors: config.cors.clone() });
    ready.store(true, Ordering::Release);
    frontend::serve(listener, frontend, &config.connections, lifecycle).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_runs_at_most_its_cap_of_blocking_threads() {
        for workers in [None, Some(0), Some(1), Some(2)] {
            let runtime = build_runtime(workers).expect("runtime");
            let threads = runtime.block_on(async {
                let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let seen = seen.clone();
                        tokio::task::spawn_blocking(move || {
                            std::thread::sleep(Duration::from_millis(10));
                            seen.lock().expect("lock").insert(std::thread::current().id());
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("blocking task");
                }
                seen.lock().expect("lock").len()
            });
            assert!(threads <= MAX_BLOCKING_THREADS, "{workers:?}: {threads} blocking threads");
        }
    }
}
