//! The `stead` command line: argument definitions (this module) and one module per verb
//! (`commands`). Verbs parse arguments, call the libraries and print; the work is in the libraries.

pub mod commands;
pub mod diagnostics;
pub mod inputs;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Exit codes, as `sysexits.h` and kubectl use them.
pub mod exit {
    pub const OK: i32 = 0;
    /// The input was read but is invalid.
    pub const INVALID: i32 = 1;
    /// The command line itself is wrong.
    pub const USAGE: i32 = 64;
}

/// Declare a stateful service once, run it on one machine, deploy it to Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "stead", version, about, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests and report every problem, located
    Validate(FileArgs),
    /// Print the Kubernetes objects a set of manifests becomes (what the operator would apply)
    Render(RenderArgs),
    /// Print the CustomResourceDefinitions (and, with --install, the operator's install manifests)
    Crd(CrdArgs),
    /// Print version information
    Version,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where manifests come from.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A file, a directory (read recursively), or - for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// The sidecar image [default: stead:<version>]
    #[arg(long, value_name = "IMAGE", env = "STEAD_PROXY_IMAGE")]
    pub proxy_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Also print the namespace, service account, RBAC and Deployment of the operator
    #[arg(long)]
    pub install: bool,
    /// The operator image, with --install [default: stead:<version>]
    #[arg(long, value_name = "IMAGE", env = "STEAD_PROXY_IMAGE")]
    pub image: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

impl From<OutputFormat> for stead_render::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Yaml => Self::Yaml,
            OutputFormat::Json => Self::Json,
        }
    }
}
