use clap::Parser;
use stead_cli::{Cli, exit};

fn main() {
    // The container init must run before any thread exists (it changes this thread's
    // namespaces and then execs), so it is recognised before anything else.
    if std::env::args().nth(1).as_deref() == Some("container-init") {
        std::process::exit(stead_node::init::init_main());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match stead_cli::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::INVALID
        }
    };
    std::process::exit(code);
}
