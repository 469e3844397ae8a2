//! One module per verb.

mod crd;
mod render;
mod validate;

use crate::{Cli, Command, exit};
use clap::CommandFactory;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Crd(args) => crd::run(&args),
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
