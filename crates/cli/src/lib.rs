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
    /// Run the sidecar proxy (configured by its environment: HTTP_PORT, USER_FUNCTION_PORT, STEAD_STORE, ...)
    Proxy(ProxyArgs),
    /// Run manifests here, in the foreground: apply, show progress and logs; Ctrl-C stops in order
    Up(UpArgs),
    /// Stop and delete what a set of manifests runs here (volumes stay unless --volumes)
    Down(DownArgs),
    /// Run the local engine in the background, its API on <state-dir>/stead.sock (for apply, get, ...)
    Daemon(commands::daemon::DaemonArgs),
    /// Create or update objects in the daemon from manifests
    Apply(commands::kubectl::ApplyArgs),
    /// List objects of a type, or show one, as kubectl does
    Get(commands::kubectl::GetArgs),
    /// Delete objects (pods stop gracefully unless --force)
    Delete(commands::kubectl::DeleteArgs),
    /// Print a container's log, or several pods' logs merged in time order (-l, sts/NAME)
    Logs(commands::logs::LogsArgs),
    /// Show an object in detail, with its events
    Describe(commands::inspect::DescribeArgs),
    /// List events (LAST SEEN TYPE REASON OBJECT MESSAGE), or watch them with -w
    Events(commands::inspect::EventsArgs),
    /// Run a command in a container of a pod; exits with the command's exit code
    Exec(commands::inspect::ExecArgs),
    /// Forward local ports to a pod (listening on 127.0.0.1)
    PortForward(commands::inspect::PortForwardArgs),
    /// Set the number of replicas of a StatefulSet, Deployment, ReplicaSet or StatefulService
    Scale(commands::rollout::ScaleArgs),
    /// Follow, list, undo or restart the rollout of a StatefulSet or Deployment
    Rollout(commands::rollout::RolloutArgs),
    /// Wait until objects meet a condition (--for=condition=Ready, --for=delete)
    Wait(commands::rollout::WaitArgs),
    /// Pull, list, inspect, remove, prune and load container images (<state-dir>/images)
    Image(commands::image::ImageArgs),
    /// Act as a container's init (used by the pod runtime; not for people)
    #[command(hide = true, name = "container-init")]
    ContainerInit {
        #[arg(long)]
        spec: String,
    },
    /// Run the Kubernetes operator (the default), or install or uninstall it in a cluster
    Operator(OperatorArgs),
    /// Print version information
    Version,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// A file or directory; repeatable [default: stead.yaml in this folder or a parent]
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Exit 0 once everything is Ready, non-zero with the reason when a pod cannot get there
    /// (in the foreground, what was started is stopped on exit; with -d it keeps running)
    #[arg(long)]
    pub wait: bool,
    /// Hand the manifests to the daemon (`stead daemon`, started in the background if none
    /// runs on the state directory) and return
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Give up after this long without Ready (e.g. 90s, 5m)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<std::time::Duration>,
    /// Do not stream the containers' logs
    #[arg(long)]
    pub no_logs: bool,
    /// stead's state directory [default: /var/lib/stead as root, else ~/.local/state/stead]
    #[arg(long, value_name = "DIR", env = "STEAD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The pod network of this machine.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Pod addresses come from this range; the bridge takes its first address
    #[arg(long, value_name = "CIDR", default_value = "10.244.0.0/16", env = "STEAD_POD_CIDR")]
    pub pod_cidr: String,
    /// The bridge pods are attached to
    #[arg(long, value_name = "NAME", default_value = "stead0", env = "STEAD_BRIDGE")]
    pub bridge: String,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// A file or directory; repeatable [default: stead.yaml in this folder or a parent]
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Also delete the StatefulSets' volume claims and their data
    #[arg(long)]
    pub volumes: bool,
    /// stead's state directory
    #[arg(long, value_name = "DIR", env = "STEAD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `90s`, `5m`, `1h`, `250ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 90s or 5m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration {text:?}: unit {unit:?} is not one of ms, s, m, h")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Where manifests come from.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// A file, a directory (read recursively), or - for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Start even if the embedded store's write-ahead log lost acknowledged writes (damaged,
    /// shortened or deleted), discarding them with a warning; without it the proxy refuses
    #[arg(long)]
    pub discard_damaged_log: bool,
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

/// `stead operator [run|install|uninstall]`; with no verb, runs (as the install Deployment does).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OperatorArgs {
    #[command(subcommand)]
    pub command: Option<OperatorCommand>,
    #[command(flatten)]
    pub run: OperatorRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Run the controller in the current cluster context (leader-elected; stops on SIGTERM)
    Run(OperatorRunArgs),
    /// Apply the CRDs, namespace, RBAC and operator Deployment (or print them with --dry-run)
    Install(OperatorInstallArgs),
    /// Remove what install applied; the CRDs, and so every StatefulService, stay unless --purge
    Uninstall(OperatorUninstallArgs),
}

#[derive(Debug, Args)]
pub struct OperatorRunArgs {
    /// Where /metrics, /healthz and /readyz listen
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// The sidecar image rendered into pods [default: stead:<version>]
    #[arg(long, value_name = "IMAGE", env = "STEAD_PROXY_IMAGE")]
    pub proxy_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct OperatorInstallArgs {
    /// Print what would be applied instead of applying it (no cluster needed)
    #[arg(long, conflicts_with = "server_dry_run")]
    pub dry_run: bool,
    /// Send everything to the API server with dryRun=All (validates; nothing is stored)
    #[arg(long)]
    pub server_dry_run: bool,
    /// Output format, with --dry-run
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// The operator (and sidecar) image [default: stead:<version>]
    #[arg(long, value_name = "IMAGE", env = "STEAD_PROXY_IMAGE")]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct OperatorUninstallArgs {
    /// Also delete the CRDs, and with them every StatefulService and StatefulStore in the cluster
    #[arg(long)]
    pub purge: bool,
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
