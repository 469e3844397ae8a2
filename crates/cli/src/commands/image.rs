//! `stead image pull|ls|inspect|rm|prune|load`: the image store under `<state-dir>/images`
//! (stead-image does the work; this module parses, prints and guards the state directory).
//!
//! `ls` asks the engine running on the state directory, if any, which pods run from each image
//! (a PODS column; without an engine, no pod does). `rm` and `prune` still refuse while an
//! engine (`up` or `daemon`) holds the state directory: a pull in flight has content no
//! reference names yet, which they would delete.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use k8s_openapi::jiff::Timestamp;
use stead_image::archive;
use stead_image::auth::Keyring;
use stead_image::container::PullPolicy;
use stead_image::manage::{self, Reclaimed};
use stead_image::pull::{Progress, PullOptions, Puller};
use stead_image::reference::ImageRef;
use stead_image::registries::RegistriesConf;
use stead_image::store::Store;
use stead_image::unpack::UnpackOptions;

use super::table::align;
use crate::exit;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
    /// stead's state directory (images are in <state-dir>/images)
    #[arg(long, value_name = "DIR", env = "STEAD_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image (registries.conf and auth.json / ~/.docker/config.json as podman reads them)
    Pull {
        /// The image (alpine:3.20 is docker.io/library/alpine:3.20; NAME@sha256:... pins a digest)
        name: String,
    },
    /// List images: repository, tag, image id, created, size, and the pods that run from each
    /// when an engine runs on the state directory
    #[command(visible_alias = "list")]
    Ls {
        /// Print image ids only
        #[arg(short, long)]
        quiet: bool,
        /// Show the digests registries know the images by
        #[arg(long)]
        digests: bool,
    },
    /// Print images' reference, digests, config and layers as JSON
    Inspect {
        /// Image names or ids
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove images: forget the names, delete the layers no other image uses (refused while an
    /// engine runs on the state directory: which pods use an image is not known here yet)
    #[command(visible_alias = "remove")]
    Rm {
        /// Image names or ids
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Delete the layers, blobs and partial downloads no image references (refused while an
    /// engine runs on the state directory; removing images no pod uses needs the engine and is
    /// not wired yet)
    Prune,
    /// Load images from a `docker save` archive or an OCI image layout archive (tar, tar.gz)
    Load {
        /// The archive [default: standard input]
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
}

pub fn run(args: &ImageArgs) -> anyhow::Result<i32> {
    let state = super::state::state_dir(&args.state_dir);
    match &args.command {
        ImageCommand::Pull { name } => pull(&state, name),
        ImageCommand::Ls { quiet, digests } => ls(&state, *quiet, *digests),
        ImageCommand::Inspect { names } => inspect(&state, names),
        ImageCommand::Rm { names } => rm(&state, names),
        ImageCommand::Prune => prune(&state),
        ImageCommand::Load { input } => load(&state, input.as_deref()),
    }
}

fn open_store(state: &Path) -> anyhow::Result<Store> {
    let dir = state.join("images");
    Store::open(&dir).with_context(|| format!("opening the image store {}", dir.display()))
}

/// The engine's lock on the state directory, held while images are removed: a running engine
/// may be using them.
fn exclusive(state: &Path) -> anyhow::Result<Option<std::fs::File>> {
    if !state.is_dir() {
        return Ok(None);
    }
    let path = state.join("engine.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "an engine (stead up or stead daemon) runs on {}: stop it before removing images \
             (removing images through it, which knows the pods using them, is not wired yet)",
            state.display()
        );
    }
    Ok(Some(lock))
}

// === pull ===

fn short(digest: &str) -> &str {
    manage::short_id(digest)
}

/// Pull progress as `docker pull` prints it: a bar per layer on a terminal, else lines.
struct PullOutput {
    bars: Option<indicatif::MultiProgress>,
    layers: std::collections::BTreeMap<String, indicatif::ProgressBar>,
    started: std::collections::BTreeSet<String>,
    fetched: bool,
}

impl PullOutput {
    fn line(&self, text: &str) {
        if let Some(bars) = &self.bars
            && bars.println(text).is_ok()
        {
            return;
        }
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    fn bar(&mut self, layer: &str) -> Option<indicatif::ProgressBar> {
        let bars = self.bars.as_ref()?;
        let bar = self.layers.entry(layer.to_string()).or_insert_with(|| {
            let bar = bars.add(indicatif::ProgressBar::new(0));
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{prefix}: {msg} {wide_bar} {bytes}/{total_bytes}")
            {
                bar.set_style(style);
            }
            bar.set_prefix(short(layer).to_string());
            bar
        });
        Some(bar.clone())
    }

    /// A layer's status: a line, or its bar's message.
    fn status(&mut self, layer: &str, text: &str, finished: bool) {
        match self.bar(layer) {
            Some(bar) if finished => bar.finish_with_message(text.to_string()),
            Some(bar) => bar.set_message(text.to_string()),
            None => self.line(&format!("{}: {text}", short(layer))),
        }
    }

    fn event(&mut self, event: &Progress) {
        match event {
            Progress::Resolved { reference, to_fetch, .. } => {
                self.fetched = *to_fetch > 0;
                if let Ok(r) = ImageRef::parse(reference) {
                    let what = r.tag().or(r.digest()).unwrap_or("latest").to_string();
                    self.line(&format!("{what}: Pulling from {}", r.repository()));
                }
            }
            Progress::LayerExists { layer, .. } => self.status(layer, "Already exists", true),
            Progress::LayerBytes { layer, done, total, .. } => {
                if self.started.insert(layer.clone()) {
                    self.status(layer, "Pulling fs layer", false);
                }
                if let Some(bar) = self.bar(layer) {
                    bar.set_length(*total);
                    bar.set_position(*done);
                    bar.set_message("Downloading");
                }
            }
            Progress::LayerUnpacking { layer, .. } => {
                if self.started.insert(layer.clone()) {
                    self.status(layer, "Pulling fs layer", false);
                }
                self.status(layer, "Download complete", false);
            }
            Progress::LayerDone { layer, .. } => self.status(layer, "Pull complete", true),
        }
    }
}

fn pull(state: &Path, name: &str) -> anyhow::Result<i32> {
    let reference = ImageRef::parse(name)?;
    let registries = RegistriesConf::load_from_env()?;
    let keyring = Keyring::from_node_files()?;
    let store = Arc::new(open_store(state)?);
    let before = store.lookup(&reference.to_string())?;
    let terminal = std::io::stdout().is_terminal();
    let output = Arc::new(Mutex::new(PullOutput {
        bars: terminal.then(|| {
            indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout_with_hz(10))
        }),
        layers: Default::default(),
        started: Default::default(),
        fetched: false,
    }));
    let sink = output.clone();
    let progress: stead_image::pull::ProgressFn =
        Arc::new(move |e: &Progress| sink.lock().unwrap_or_else(|p| p.into_inner()).event(e));
    let puller = Puller::new(store, registries, PullOptions::default());
    let image = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(puller.pull(&reference, PullPolicy::Always, &keyring, Some(progress)));
    let out = output.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(bars) = &out.bars {
        let _ = bars.clear();
    }
    let image = image?;
    let digest = image.index_digest.as_deref().unwrap_or(&image.manifest_digest);
    out.line(&format!("Digest: {digest}"));
    let unchanged = !out.fetched && before.is_some_and(|b| b.manifest == image.manifest_digest);
    if unchanged {
        out.line(&format!("Status: Image is up to date for {reference}"));
    } else {
        out.line(&format!("Status: Downloaded newer image for {reference}"));
    }
    out.line(&reference.to_string());
    Ok(exit::OK)
}

// === ls, inspect ===

/// Sizes as docker prints them: decimal units, three significant digits (`7.8MB`, `512kB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let text = if unit == 0 || value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", UNITS[unit])
}

/// `docker images`' CREATED: `3 days ago`, `About an hour ago`.
pub fn created_ago(created: Option<&str>, now: Timestamp) -> String {
    let Some(t) = created.and_then(|c| c.parse::<Timestamp>().ok()) else { return "N/A".into() };
    let s = (now.as_second() - t.as_second()).max(0);
    let plural =
        |n: i64, unit: &str| if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") };
    match s {
        0 => "Less than a second ago".into(),
        1..60 => plural(s, "second"),
        60..120 => "About a minute ago".into(),
        120..3600 => plural(s / 60, "minute"),
        3600..7200 => "About an hour ago".into(),
        7200..172_800 => plural(s / 3600, "hour"),
        172_800..1_209_600 => plural(s / 86_400, "day"),
        1_209_600..5_184_000 => plural(s / 604_800, "week"),
        5_184_000..63_072_000 => plural(s / 2_592_000, "month"),
        _ => plural(s / 31_536_000, "year"),
    }
}

/// Which pods run from each image (normalized reference, or `name@digest` for a pinned one →
/// `namespace/pod`), given the engine's pods: containers of an image runtime only (a host
/// process uses no image; `default` is the engine's runtime for pods that name no class). Pure.
pub fn image_users(
    pods: &[serde_json::Value],
    default: stead_node::runtime_class::ContainerRuntime,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for value in pods {
        let Ok(pod) = serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(value.clone()) else {
            continue;
        };
        let who = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
            let runtime = stead_node::runtime_class::container_runtime(&pod, &c.name, default);
            if runtime != Ok(stead_node::runtime_class::ContainerRuntime::Image) {
                continue;
            }
            if let Some(r) = c.image.as_deref().and_then(|i| ImageRef::parse(i).ok()) {
                users.entry(r.to_string()).or_default().insert(who.clone());
            }
        }
    }
    users
}

/// [`image_users`] of the engine running on `state`, or `None` when none answers.
fn pods_by_image(state: &Path) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let socket = stead_engine::daemon::socket_path(state);
    if !socket.exists() {
        return None;
    }
    let client = super::client::Client::new(socket);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let (status, body) = rt.block_on(client.call(hyper::Method::GET, "/api/pods", None)).ok()?;
    if !status.is_success() {
        return None;
    }
    let reply: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let pods = reply["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    Some(image_users(pods, stead_engine::local::DEFAULT_RUNTIME))
}

fn ls(state: &Path, quiet: bool, digests: bool) -> anyhow::Result<i32> {
    let store = open_store(state)?;
    let images = manage::list(&store)?;
    if quiet {
        let mut seen = std::collections::BTreeSet::new();
        for image in &images {
            if seen.insert(image.id.clone()) {
                println!("{}", image.short_id());
            }
        }
        return Ok(exit::OK);
    }
    let now = Timestamp::now();
    let mut header = vec!["REPOSITORY", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    // Which pods use each image, when an engine runs here (without one, none does).
    let users = pods_by_image(state);
    if users.is_some() {
        header.push("PODS");
    }
    let mut rows = vec![header.into_iter().map(str::to_string).collect::<Vec<_>>()];
    for image in &images {
        let mut row = vec![image.repository.clone(), image.tag.clone().unwrap_or_else(|| "<none>".into())];
        if digests {
            row.push(image.digest.clone());
        }
        row.extend([
            image.short_id().to_string(),
            created_ago(image.created.as_deref(), now),
            human_size(image.size),
        ]);
        if let Some(users) = &users {
            let pinned = format!("{}@{}", image.repository, image.digest);
            let pods: BTreeSet<&String> =
                [&image.reference, &pinned].iter().filter_map(|r| users.get(*r)).flatten().collect();
            let pods: Vec<&str> = pods.into_iter().map(String::as_str).collect();
            row.push(if pods.is_empty() { "<none>".to_string() } else { pods.join(",") });
        }
        rows.push(row);
    }
    print!("{}", align(&rows));
    Ok(exit::OK)
}

fn inspect(state: &Path, names: &[String]) -> anyhow::Result<i32> {
    let store = open_store(state)?;
    let mut found = Vec::new();
    let mut code = exit::OK;
    for name in names {
        match manage::inspect(&store, name) {
            Ok(details) => found.push(details),
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::INVALID;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(code)
}

// === rm, prune, load ===

fn print_reclaimed(reclaimed: &Reclaimed) {
    for item in &reclaimed.deleted {
        println!("Deleted: {item}");
    }
}

fn rm(state: &Path, names: &[String]) -> anyhow::Result<i32> {
    let _lock = exclusive(state)?;
    let store = open_store(state)?;
    let mut code = exit::OK;
    for name in names {
        match manage::remove(&store, name) {
            Ok(removed) => {
                for reference in &removed.untagged {
                    println!("Untagged: {reference}");
                }
                print_reclaimed(&removed.reclaimed);
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::INVALID;
            }
        }
    }
    Ok(code)
}

fn prune(state: &Path) -> anyhow::Result<i32> {
    let _lock = exclusive(state)?;
    let store = open_store(state)?;
    let reclaimed = manage::prune(&store)?;
    print_reclaimed(&reclaimed);
    println!("Total reclaimed space: {}", human_size(reclaimed.bytes));
    Ok(exit::OK)
}

fn load(state: &Path, input: Option<&Path>) -> anyhow::Result<i32> {
    let reader: Box<dyn Read> = match input {
        Some(path) if path != Path::new("-") => {
            Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
        }
        _ => {
            if std::io::stdin().is_terminal() {
                anyhow::bail!("no archive: pass -i FILE or pipe one to standard input");
            }
            Box::new(std::io::stdin())
        }
    };
    let store = open_store(state)?;
    let loaded = archive::load(&store, reader, &UnpackOptions::default())?;
    for image in &loaded {
        for reference in &image.references {
            if ImageRef::parse(reference).is_ok_and(|r| r.tag().is_some()) {
                println!("Loaded image: {reference}");
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_use_the_images_their_image_containers_run() {
        let pods = vec![
            serde_json::json!({"metadata": {"name": "web-0", "namespace": "shop",
                "annotations": {"stead.io/host-process-containers": "stead"}}, "spec": {
                "runtimeClassName": "",
                "initContainers": [{"name": "stead", "image": "ghcr.io/x/stead:1"}],
                "containers": [{"name": "app", "image": "alpine:3.20"}],
            }}),
            // Host processes use no image.
            serde_json::json!({"metadata": {"name": "tool", "namespace": "shop"}, "spec": {
                "runtimeClassName": "stead-host-process",
                "containers": [{"name": "app", "image": "alpine:3.20"}],
            }}),
            serde_json::json!({"metadata": {"name": "db-0"}, "spec": {
                "runtimeClassName": "none-such",
                "containers": [{"name": "db", "image": "postgres:16"}],
            }}),
        ];
        use stead_node::runtime_class::ContainerRuntime;
        let users = image_users(&pods, ContainerRuntime::Image);
        let expected = BTreeMap::from([(
            "docker.io/library/alpine:3.20".to_string(),
            BTreeSet::from(["shop/web-0".to_string()]),
        )]);
        assert_eq!(users, expected);
        // With host processes as the default, a pod without a class uses no image.
        assert_eq!(image_users(&pods, ContainerRuntime::HostProcess), BTreeMap::new());
    }

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(7_797_000), "7.8MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_size(512_000), "512kB");
        assert_eq!(human_size(1_234_567_890), "1.23GB");
    }

    #[test]
    fn created_as_docker_prints_it() {
        let now: Timestamp = "2024-05-10T12:00:00Z".parse().unwrap();
        assert_eq!(created_ago(Some("2024-05-10T11:59:30Z"), now), "30 seconds ago");
        assert_eq!(created_ago(Some("2024-05-10T11:00:00Z"), now), "About an hour ago");
        assert_eq!(created_ago(Some("2024-05-07T12:00:00Z"), now), "3 days ago");
        assert_eq!(created_ago(Some("2024-04-10T12:00:00Z"), now), "4 weeks ago");
        assert_eq!(created_ago(None, now), "N/A");
    }
}
