//! Helpers shared by the store tests.

#![allow(dead_code)]

const POSTGRES_ENV: &str = "STEAD_TEST_POSTGRES_URL";

/// A connection config whose tables live in a fresh schema of the test database, so that tests
/// do not see each other's data; `None` (with a message) when no test database is configured,
/// which fails the test under CI (see `stead-testkit`).
pub async fn postgres_schema() -> Option<tokio_postgres::Config> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let url = stead_testkit::require_env(
        POSTGRES_ENV,
        "the PostgreSQL to test against, a database URL such as postgres://postgres@127.0.0.1:5432/stead_test",
    )?;
    let mut config: tokio_postgres::Config = url.parse().expect("STEAD_TEST_POSTGRES_URL is a postgres URL");
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("stead_test_{}_{n}", std::process::id());
    let (client, connection) =
        config.connect(tokio_postgres::NoTls).await.expect("connects to the test database");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
        .await
        .expect("creates a test schema");
    drop(client);
    connection.await.expect("connection task ends").expect("connection closes cleanly");
    config.options(format!("-c search_path={schema}"));
    Some(config)
}

pub mod cart;
pub mod http;
pub mod streams_model;

/// Proxy settings for a fresh schema of the test database (see [`postgres_schema`]).
pub async fn postgres_proxy_config() -> Option<stead_proxy::config::PostgresConfig> {
    let config = postgres_schema().await?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let options = config.get_options().unwrap_or_default();
    let schema = options.strip_prefix("-c search_path=").map(str::to_string);
    Some(stead_proxy::config::PostgresConfig {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config.get_dbname().unwrap_or("postgres").to_string(),
        username: config.get_user().unwrap_or("postgres").to_string(),
        password: config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default(),
        schema,
        pool_size: 8,
    })
}

/// A free loopback address (bound then released).
pub fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds a loopback port");
    listener.local_addr().expect("local address")
}

/// A proxy running in this process.
pub struct RunningProxy {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    /// `/ready`, `/alive`.
    pub health: std::net::SocketAddr,
    /// `/metrics`.
    pub metrics: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), stead_proxy::ProxyError>>,
}

/// Starts a proxy in front of `user_function` with `store`, on loopback ports chosen by the system.
pub async fn start_proxy(
    user_function: std::net::SocketAddr,
    store: stead_proxy::StoreConfig,
) -> RunningProxy {
    let mut config = stead_proxy::ProxyConfig::local("127.0.0.1:0".parse().expect("addr"), user_function);
    config.store = store;
    start_configured(config).await
}

/// Starts a proxy with `config`.
pub async fn start_configured(config: stead_proxy::ProxyConfig) -> RunningProxy {
    let proxy = stead_proxy::Proxy::bind(config).await.expect("the proxy binds its ports");
    let (addr, health, metrics) = (proxy.local_addr(), proxy.health_addr(), proxy.metrics_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(proxy.serve(async move {
        let _ = stopped.await;
    }));
    RunningProxy { addr, health, metrics, stop, task }
}

impl RunningProxy {
    /// Stops the proxy and returns how its run ended.
    pub async fn stop(self) -> Result<(), stead_proxy::ProxyError> {
        let _ = self.stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(20), self.task)
            .await
            .expect("the proxy stops within 20 s")
            .expect("the proxy task does not panic")
    }
}

/// A plain HTTP/1.1 GET on loopback; returns the status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("reads");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
