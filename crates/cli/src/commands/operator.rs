//! `stead operator [run|install|uninstall]`: arguments to `stead_operator` calls, results printed.

use crate::{OperatorArgs, OperatorCommand, OperatorInstallArgs, OperatorRunArgs, exit};
use anyhow::Context;
use stead_render::RenderOptions;

pub fn run(args: OperatorArgs) -> anyhow::Result<i32> {
    match args.command {
        None => run_controller(args.run),
        Some(OperatorCommand::Run(run)) => run_controller(run),
        Some(OperatorCommand::Install(install)) => run_install(&install),
        Some(OperatorCommand::Uninstall(u)) => {
            let plan = stead_operator::install::plan(&RenderOptions::default());
            let deleted = runtime()?.block_on(async {
                let client =
                    stead_operator::Client::try_default().await.context("cannot reach the cluster")?;
                Ok::<_, anyhow::Error>(stead_operator::install::uninstall(&client, &plan, !u.purge).await?)
            })?;
            for object in &deleted {
                println!("{object} deleted");
            }
            if !u.purge {
                eprintln!(
                    "kept the CRDs and every StatefulService and StatefulStore (use --purge to delete them)"
                );
            }
            Ok(exit::OK)
        }
    }
}

fn options(image: Option<&String>) -> RenderOptions {
    let mut opts = RenderOptions::default();
    if let Some(image) = image {
        opts.proxy_image = image.clone();
    }
    opts
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn run_controller(args: OperatorRunArgs) -> anyhow::Result<i32> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let cfg = stead_operator::RunConfig::from_env(args.metrics_addr, options(args.proxy_image.as_ref()));
    runtime()?.block_on(stead_operator::run(cfg))?;
    Ok(exit::OK)
}

fn run_install(args: &OperatorInstallArgs) -> anyhow::Result<i32> {
    let plan = stead_operator::install::plan(&options(args.image.as_ref()));
    if args.dry_run {
        print!("{}", stead_render::to_string(&plan, args.output.into())?);
        return Ok(exit::OK);
    }
    let applied = runtime()?.block_on(async {
        let client = stead_operator::Client::try_default().await.context("cannot reach the cluster")?;
        Ok::<_, anyhow::Error>(stead_operator::install::install(&client, &plan, args.server_dry_run).await?)
    })?;
    let suffix = if args.server_dry_run { " (server dry run)" } else { "" };
    for object in &applied {
        println!("{object} applied{suffix}");
    }
    Ok(exit::OK)
}
