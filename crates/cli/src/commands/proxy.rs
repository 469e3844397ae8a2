//! `stead proxy`: the sidecar. Configuration comes from the environment (as render writes it),
//! but for the operator's one-off `--discard-damaged-log`; this verb sets up logging and the
//! runtime, then hands over to `stead_proxy::run`.

use anyhow::Context as _;

use crate::{ProxyArgs, exit};

pub fn run(args: &ProxyArgs) -> anyhow::Result<i32> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let mut config = stead_proxy::ProxyConfig::from_env(|name| std::env::var(name).ok())?;
    config.discard_damaged_log |= args.discard_damaged_log;
    let runtime = stead_proxy::build_runtime(None).context("starting the proxy's runtime")?;
    runtime.block_on(stead_proxy::run(config, shutdown_signal()))?;
    Ok(exit::OK)
}

/// Ctrl-C or SIGTERM (what Kubernetes and the local engine send).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
