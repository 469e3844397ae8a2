//! The proxy as a child process of a benchmark, so that its memory is its own (the benchmark runs
//! its own binary again with `STEAD_BENCH_ROLE=proxy` and the proxy's environment), and how a
//! benchmark's child processes end.

/// The child: `stead proxy`'s behaviour (a multi-thread runtime, unless
/// `STEAD_BENCH_PROXY_THREADS` says otherwise) without its logging, on loopback, until stdin
/// closes.
pub fn child_proxy() {
    let mut config = stead_proxy::ProxyConfig::from_env(|name| std::env::var(name).ok()).expect("config");
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    config.listen.set_ip(loopback);
    config.health.set_ip(loopback);
    config.metrics.set_ip(loopback);
    let threads = std::env::var("STEAD_BENCH_PROXY_THREADS").ok().and_then(|n| n.parse::<usize>().ok());
    let runtime = stead_proxy::build_runtime(threads).expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = stop.send(());
    });
    let _ = runtime.block_on(stead_proxy::run(config, async move {
        let _ = stopped.await;
    }));
}

/// The malloc arenas the rendered sidecar's environment allows (`stead-render`'s
/// `SIDECAR_MALLOC_ARENAS`), unless the benchmark's own environment sets `MALLOC_ARENA_MAX` (to
/// compare).
pub fn malloc_arenas() -> String {
    std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into())
}

/// Waits up to `grace` for `child` to exit by itself, then kills it; reaps it either way.
pub fn wait_then_kill(child: &mut std::process::Child, grace: std::time::Duration) {
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
