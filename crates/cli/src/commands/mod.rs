//! One module per verb.

pub mod client;
mod crd;
pub mod daemon;
mod detach;
pub mod image;
pub mod inspect;
pub mod kubectl;
pub mod logs;
mod operator;
mod proxy;
mod pull_progress;
mod render;
pub mod rollout;
pub mod state;
mod table;
mod up;
mod validate;

use crate::{Cli, Command, exit};
use clap::CommandFactory;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Crd(args) => crd::run(&args),
        Command::Operator(args) => operator::run(args),
        Command::Proxy(args) => proxy::run(&args),
        Command::Up(args) => up::run_up(&args),
        Command::Down(args) => up::run_down(&args),
        Command::Daemon(args) => daemon::run(&args),
        Command::Apply(args) => kubectl::run_apply(&args),
        Command::Get(args) => kubectl::run_get(&args),
        Command::Delete(args) => kubectl::run_delete(&args),
        Command::Logs(args) => kubectl::run_logs(&args),
        Command::Describe(args) => inspect::run_describe(&args),
        Command::Events(args) => inspect::run_events(&args),
        Command::Exec(args) => inspect::run_exec(&args),
        Command::PortForward(args) => inspect::run_port_forward(&args),
        Command::Scale(args) => rollout::run_scale(&args),
        Command::Rollout(args) => rollout::run_rollout(&args),
        Command::Wait(args) => rollout::run_wait(&args),
        Command::Image(args) => image::run(&args),
        // main() runs the init before anything else; reaching this means it was not first.
        Command::ContainerInit { .. } => Ok(stead_node::init::init_main()),
        Command::Version => {
            println!("stead {}", env!("CARGO_PKG_VERSION"));
            println!("api: {}", stead_api::types::API_VERSION);
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "stead", &mut std::io::stdout());
            Ok(exit::OK)
        }
    }
}
