//! Where stead keeps its state and finds its input: the state directory, the daemon's address
//! in it, and the stead file `up` and `down` look for.

use super::client::Client;
use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};
use stead_engine::ObjectKey;

/// Files `up` and `down` look for when no `-f` is given, in the current folder and then its
/// parents (as compose looks for `compose.yaml`).
pub const SPEC_FILES: &[&str] = &["stead.yaml", "stead.yml"];

/// Where the daemon is.
#[derive(Debug, Clone, Args)]
pub struct DaemonAddr {
    /// stead's state directory (the daemon's socket is stead.sock in it)
    #[arg(long, value_name = "DIR", env = "STEAD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl DaemonAddr {
    pub fn client(&self) -> Client {
        Client::new(stead_engine::daemon::socket_path(&state_dir(&self.state_dir)))
    }
}

/// `stead.yaml` in the current folder or the nearest parent that has one.
pub fn discover() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("reading the current folder")?;
    for dir in cwd.ancestors() {
        for name in SPEC_FILES {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    anyhow::bail!(
        "no {} in {} or its parents; pass the manifests with -f PATH",
        SPEC_FILES.join(" or "),
        cwd.display()
    )
}

/// stead's state directory: `--state-dir`, else `/var/lib/stead` as root, else the user's.
pub fn state_dir(given: &Option<PathBuf>) -> PathBuf {
    if let Some(dir) = given {
        return dir.clone();
    }
    if is_root() {
        return PathBuf::from("/var/lib/stead");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")));
    base.unwrap_or_else(std::env::temp_dir).join("stead")
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

pub fn keys_of(manifests: &[stead_api::Manifest]) -> Vec<ObjectKey> {
    manifests.iter().filter_map(|m| m.to_json().ok()).filter_map(|v| ObjectKey::of(&v).ok()).collect()
}
