//! `stead daemon`: the local engine behind its API on `<state_dir>/stead.sock` until Ctrl-C or
//! SIGTERM, which stop every pod gracefully before exiting.

use super::state::DaemonAddr;
use crate::exit;
use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub addr: DaemonAddr,
    #[command(flatten)]
    pub node: crate::NodeArgs,
}

pub fn run(args: &DaemonArgs) -> anyhow::Result<i32> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    super::up::init_logging();
    runtime.block_on(async {
        let dir = super::state::state_dir(&args.addr.state_dir);
        let local = match super::up::start(&args.addr.state_dir, &args.node).await {
            Ok(local) => local,
            Err(code) => return Ok(code),
        };
        eprintln!("stead daemon: serving on {}", stead_engine::daemon::socket_path(&dir).display());
        stead_engine::daemon::serve(local, stop_signal()).await?;
        eprintln!("stead daemon: stopped");
        Ok(exit::OK)
    })
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => if r.is_err() { std::future::pending::<()>().await },
        _ = term => {}
    }
}
