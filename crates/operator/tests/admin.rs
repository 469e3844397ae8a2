//! The admin endpoints over a real loopback socket.

use std::sync::Arc;
use std::time::Duration;
use stead_operator::Metrics;
use stead_operator::server::{Health, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    metrics.failure("conflict");
    drop(metrics.measure());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(axum::serve(listener, router(metrics, health.clone())).into_future());
    let work = async {
        assert!(fetch(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(fetch(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(fetch(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let text = fetch(addr, "/metrics").await;
        assert!(text.contains("stead_operator_reconciles_total 1"), "{text}");
        assert!(text.contains("stead_operator_reconcile_failures_total{reason=\"conflict\"} 1"), "{text}");
        assert!(text.contains("stead_operator_reconcile_duration_seconds_count 1"), "{text}");
    };
    tokio::time::timeout(Duration::from_secs(10), work).await.expect("timed out");
    server.abort();
}
