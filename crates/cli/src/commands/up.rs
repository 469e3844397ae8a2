//! `stead up`: run a set of manifests here, in the foreground, as `docker compose up` does:
//! apply, show each pod's progress, stream every container's log with a `pod/container |`
//! prefix, and on Ctrl-C stop in reverse ordinal order (a second Ctrl-C forces). `stead down`
//! stops and deletes what a set of manifests runs (keeping volumes unless `--volumes`).

use super::state::{discover, is_root, keys_of, state_dir};
use crate::{DownArgs, NodeArgs, UpArgs, diagnostics, exit, inputs};
use anyhow::Context as _;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stead_engine::ObjectKey;
use stead_engine::local::{Local, LocalConfig, LocalError};
use stead_node::logs::LogFollower;

/// Engine warnings to stderr (`STEAD_LOG` sets the filter, as `RUST_LOG` would).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hickory_server=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub fn run_up(args: &UpArgs) -> anyhow::Result<i32> {
    if args.detach {
        return super::detach::run(args);
    }
    init_logging();
    let Some(manifests) = load(&args.files)? else { return Ok(exit::INVALID) };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(up(args, manifests))
}

pub fn run_down(args: &DownArgs) -> anyhow::Result<i32> {
    init_logging();
    let Some(manifests) = load(&args.files)? else { return Ok(exit::INVALID) };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let daemon = super::state::DaemonAddr { state_dir: args.state_dir.clone() }.client();
        if super::detach::answers(&daemon).await {
            return super::detach::down(&daemon, &manifests, args.volumes, &mut std::io::stdout()).await;
        }
        let local = match start(&args.state_dir, &args.node).await {
            Ok(local) => local,
            Err(code) => return Ok(code),
        };
        let keys = keys_of(&manifests);
        let present: Vec<ObjectKey> = keys.into_iter().filter(|k| local.store().get(k).is_some()).collect();
        local.stop(&present, args.volumes, ctrl_c()).await?;
        for key in &present {
            println!("{} deleted", resource_name(key));
        }
        local.shutdown().await;
        Ok(exit::OK)
    })
}

fn load(files: &[PathBuf]) -> anyhow::Result<Option<Vec<stead_api::Manifest>>> {
    let files = if files.is_empty() { vec![discover()?] } else { files.to_vec() };
    let loaded = inputs::load_and_validate(&files);
    if diagnostics::report(&loaded.problems) > 0 {
        return Ok(None);
    }
    Ok(Some(loaded.documents.into_iter().map(|d| d.manifest).collect()))
}

pub(crate) async fn start(state: &Option<PathBuf>, node: &NodeArgs) -> Result<Local, i32> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("stead"));
    let mut config = LocalConfig::new(state_dir(state), exe);
    match node.pod_cidr.parse() {
        Ok(cidr) => config.pod_cidr = cidr,
        Err(e) => {
            eprintln!("error: --pod-cidr {:?}: {e}", node.pod_cidr);
            return Err(exit::USAGE);
        }
    }
    config.bridge = node.bridge.clone();
    match Local::start(config).await {
        Ok(local) => Ok(local),
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, LocalError::Runtime(_)) && !is_root() {
                eprintln!(
                    "hint: the local engine makes network namespaces and a bridge; run it as root (sudo stead up ...)"
                );
            }
            Err(exit::INVALID)
        }
    }
}

fn resource_name(key: &ObjectKey) -> String {
    format!("{}/{}", key.kind.name().to_ascii_lowercase(), key.name)
}

async fn up(args: &UpArgs, manifests: Vec<stead_api::Manifest>) -> anyhow::Result<i32> {
    let started = Instant::now();
    let local = match start(&args.state_dir, &args.node).await {
        Ok(local) => local,
        Err(code) => return Ok(code),
    };
    let mut pulls = local.runtime().image_pulls();
    let mut pull_lines = super::pull_progress::PullLines::default();
    let applied = match local.apply(&manifests) {
        Ok(applied) => applied,
        Err(e) => {
            eprintln!("error: {e}");
            local.shutdown().await;
            return Ok(exit::INVALID);
        }
    };
    // The daemon's API on the state directory's socket while `up` runs, so that `stead get`,
    // `logs`, `exec` and the rest work from another terminal (as `docker compose ps` does).
    let socket = stead_engine::daemon::socket_path(&local.config().state_dir);
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = match stead_engine::daemon::bind_private(&socket) {
        Ok(listener) => Some(tokio::spawn(stead_engine::daemon::serve_router(
            listener,
            stead_engine::daemon::app(&local),
            async move {
                let _ = api_stopped.await;
            },
        ))),
        Err(e) => {
            eprintln!("warning: {e}; `stead get` and the other client verbs cannot reach this engine");
            None
        }
    };
    let out = Output::new();
    for (key, changed) in &applied {
        out.line(&format!("{} {}", resource_name(key), if *changed { "applied" } else { "unchanged" }));
    }
    let keys: Vec<ObjectKey> = applied.into_iter().map(|(k, _)| k).collect();
    let deadline = args.timeout.map(|t| started + t);

    let mut progress = Progress::default();
    let mut logs = Logs::default();
    let mut announced_ready = false;
    let interrupt = ctrl_c();
    tokio::pin!(interrupt);
    let code = loop {
        tokio::select! {
            _ = &mut interrupt => {
                out.note("stopping (press Ctrl-C again to force)");
                break exit::OK;
            }
            _ = tokio::time::sleep(Duration::from_millis(150)) => {}
        }
        progress.show(&local, &keys, &out);
        if let Some(pulls) = pulls.as_mut() {
            progress.pulls(pulls, &mut pull_lines, &out);
        }
        if !args.no_logs {
            logs.follow(&local, &keys, &out);
        }
        let readiness = local.readiness(&keys);
        if readiness.ready && !announced_ready {
            announced_ready = true;
            out.note(&format!("ready in {:.1?}", started.elapsed()));
            if args.wait {
                break exit::OK;
            }
        }
        if args.wait
            && let Some(blocked) = &readiness.blocked
        {
            out.note(&format!("not ready: {blocked}"));
            break exit::INVALID;
        }
        if let Some(deadline) = deadline
            && Instant::now() > deadline
            && !readiness.ready
        {
            let why: Vec<String> = readiness.waiting.iter().map(|(o, w)| format!("{o}: {w}")).collect();
            out.note(&format!("timed out waiting for: {}", why.join("; ")));
            break exit::INVALID;
        }
    };
    let stopping = Instant::now();
    progress.finish();
    local.stop(&keys, false, ctrl_c()).await?;
    if !args.no_logs {
        logs.follow(&local, &keys, &out);
    }
    let _ = api_stop.send(());
    if let Some(api) = api {
        let _ = api.await;
        let _ = std::fs::remove_file(&socket);
    }
    local.shutdown().await;
    out.note(&format!("stopped in {:.1?}", stopping.elapsed()));
    Ok(code)
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Where `up` writes: stdout, coloured when it is a terminal.
struct Output {
    colour: bool,
    /// One spinner line per pod at the bottom of a terminal (every other line goes above them);
    /// `None` when stdout is not a terminal, where pod changes are printed as lines.
    bars: Option<indicatif::MultiProgress>,
}

const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

impl Output {
    fn new() -> Output {
        let terminal = std::io::stdout().is_terminal();
        let bars = terminal.then(|| {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout_with_hz(10))
        });
        Output { colour: terminal && std::env::var_os("NO_COLOR").is_none(), bars }
    }

    fn line(&self, text: &str) {
        if let Some(bars) = &self.bars
            && bars.println(text).is_ok()
        {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    fn note(&self, text: &str) {
        if self.colour {
            self.line(&format!("\x1b[1m==> {text}\x1b[0m"));
        } else {
            self.line(&format!("==> {text}"));
        }
    }

    fn prefixed(&self, prefix: &str, width: usize, text: &str) {
        let padded = format!("{prefix:<width$} |");
        if self.colour {
            let n = prefix.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            let colour = COLOURS[n % COLOURS.len()];
            self.line(&format!("\x1b[{colour}m{padded}\x1b[0m {text}"));
        } else {
            self.line(&format!("{padded} {text}"));
        }
    }
}

/// Pod status, shown when a pod's summary changes: a spinner line per pod on a terminal, else
/// a line each time.
#[derive(Default)]
struct Progress {
    last: BTreeMap<String, String>,
    spinners: BTreeMap<String, indicatif::ProgressBar>,
}

impl Progress {
    fn show(&mut self, local: &Local, keys: &[ObjectKey], out: &Output) {
        let store = local.store();
        let mut seen = BTreeSet::new();
        for key in local.pods_of(keys) {
            let Some(pod) = store.get(&key) else { continue };
            let summary = summary(&pod);
            let name = format!("pod/{}", key.name);
            seen.insert(name.clone());
            if self.last.get(&name) != Some(&summary) {
                match &out.bars {
                    Some(bars) => self.spinner(bars, &name).set_message(summary.clone()),
                    None => out.note(&format!("{name} {summary}")),
                }
                self.last.insert(name, summary);
            }
        }
        let spinners = &mut self.spinners;
        self.last.retain(|name, _| {
            let keep = seen.contains(name);
            if !keep {
                match spinners.remove(name) {
                    Some(spinner) => spinner.finish_and_clear(),
                    None => out.note(&format!("{name} gone")),
                }
            }
            keep
        });
    }

    /// Image pulls: a spinner line per image on a terminal while it is pulled, then one line
    /// with its layers and bytes (the only line when stdout is not a terminal).
    fn pulls(
        &mut self,
        rx: &mut tokio::sync::broadcast::Receiver<stead_engine::runtime::ImageProgress>,
        lines: &mut super::pull_progress::PullLines,
        out: &Output,
    ) {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            let p = match rx.try_recv() {
                Ok(p) => p,
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let line = lines.event(&p.reference, &p.progress);
            let name = format!("image/{}", line.reference);
            if line.complete {
                if let Some(spinner) = self.spinners.remove(&name) {
                    spinner.finish_and_clear();
                }
                out.note(&line.text);
            } else if let Some(bars) = &out.bars {
                self.spinner(bars, &name).set_message(line.text);
            }
        }
    }

    /// Takes the spinners off the terminal (before the lines of a stop).
    fn finish(&mut self) {
        for (_, spinner) in std::mem::take(&mut self.spinners) {
            spinner.finish_and_clear();
        }
    }

    fn spinner(&mut self, bars: &indicatif::MultiProgress, name: &str) -> &indicatif::ProgressBar {
        self.spinners.entry(name.to_string()).or_insert_with(|| {
            let spinner = bars.add(indicatif::ProgressBar::new_spinner());
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}") {
                spinner.set_style(style);
            }
            spinner.set_prefix(name.to_string());
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner
        })
    }
}

/// `Running 2/2`, `Pending`, `CrashLoopBackOff (restarts 3)`: what `kubectl get pods` shows.
fn summary(pod: &serde_json::Value) -> String {
    let spec_containers = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let statuses = pod["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
    let column = match serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(pod.clone()) {
        Ok(p) => stead_node::status::status_column(&p),
        Err(_) => pod["status"]["phase"].as_str().unwrap_or("Pending").to_string(),
    };
    let column = if column.is_empty() { "Pending".to_string() } else { column };
    let terminating = if stead_engine::store::is_deleting(pod) { " (terminating)" } else { "" };
    let restarts = if restarts > 0 { format!(", restarts {restarts}") } else { String::new() };
    format!("{column} {ready}/{spec_containers}{restarts}{terminating}")
}

/// Followers of every container's log, by pod uid, container and instance.
#[derive(Default)]
struct Logs {
    followers: BTreeMap<(String, String), (PathBuf, LogFollower)>,
}

impl Logs {
    fn follow(&mut self, local: &Local, keys: &[ObjectKey], out: &Output) {
        let store = local.store();
        let mut lines = Vec::new();
        let mut visited = BTreeSet::new();
        for key in local.pods_of(keys) {
            let Some(pod) = store.get(&key) else { continue };
            let containers = pod["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(pod["spec"]["containers"].as_array().into_iter().flatten())
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect::<Vec<_>>();
            for container in containers {
                let Some(path) = local.runtime().log_path(&key.namespace, &key.name, &container, false)
                else {
                    continue;
                };
                let prefix = format!("{}/{}", key.name, container);
                visited.insert((key.name.clone(), container.clone()));
                let entry = self.followers.entry((key.name.clone(), container.clone()));
                let follower = match entry {
                    std::collections::btree_map::Entry::Occupied(o) => {
                        let slot = o.into_mut();
                        if slot.0 != path {
                            *slot = (path.clone(), new_follower(&path));
                        }
                        &mut slot.1
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        &mut v.insert((path.clone(), new_follower(&path))).1
                    }
                };
                if let Ok(new) = follower.poll() {
                    for line in new {
                        lines.push((
                            line.time.clone(),
                            prefix.clone(),
                            String::from_utf8_lossy(&line.text).into_owned(),
                        ));
                    }
                }
            }
        }
        // Containers whose pod has gone since the last round: what they wrote last is still read
        // (the follower holds the file open).
        for ((pod, container), (_, follower)) in self.followers.iter_mut() {
            if visited.contains(&(pod.clone(), container.clone())) {
                continue;
            }
            if let Ok(new) = follower.poll() {
                let prefix = format!("{pod}/{container}");
                for line in new {
                    lines.push((
                        line.time.clone(),
                        prefix.clone(),
                        String::from_utf8_lossy(&line.text).into_owned(),
                    ));
                }
            }
        }
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let width = lines.iter().map(|l| l.1.len()).max().unwrap_or(0);
        for (_, prefix, text) in lines {
            out.prefixed(&prefix, width, &text);
        }
    }
}

fn new_follower(path: &Path) -> LogFollower {
    let instance = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".log"))
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    LogFollower::new(path.parent().unwrap_or(Path::new(".")), instance)
}
