//! `stead up -d`: as `docker compose up -d`, the manifests go to the engine that runs in the
//! background, `stead daemon` on the same state directory, which is started (detached, its log in
//! `<state>/daemon.log`) when none answers. With `--wait`, every workload applied is then
//! followed as `rollout status` does until it is complete.

use super::client::{Client, block_on};
use super::kubectl::{ApplyArgs, DaemonAddr};
use super::rollout::{StatusArgs, Targets};
use crate::{UpArgs, exit};
use hyper::Method;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a freshly started daemon may take to answer.
const DAEMON_START: Duration = Duration::from_secs(20);

pub fn run(args: &UpArgs) -> anyhow::Result<i32> {
    let files = if args.files.is_empty() { vec![super::up::discover()?] } else { args.files.clone() };
    let state = super::up::state_dir(&args.state_dir);
    let addr = DaemonAddr { state_dir: Some(state.clone()) };
    let client = addr.client();
    block_on(async move {
        if !answers(&client).await
            && let Err(code) = start_daemon(args, &state, &client).await
        {
            return Ok(code);
        }
        let mut out = std::io::stdout();
        let apply = ApplyArgs { files, addr: addr.clone() };
        let applied = super::kubectl::apply_objects(&client, &apply, &mut out).await?;
        let Ok(applied) = applied else { return Ok(exit::INVALID) };
        if !args.wait {
            return Ok(exit::OK);
        }
        let workloads: Vec<String> = applied.iter().filter_map(|name| workload_target(name)).collect();
        if workloads.is_empty() {
            return Ok(exit::OK);
        }
        let status = StatusArgs {
            targets: Targets { targets: workloads, namespace: "default".into(), addr },
            watch: true,
            timeout: Some(args.timeout.unwrap_or(Duration::from_secs(300))),
        };
        super::rollout::status(&client, &status, &mut out).await
    })
}

/// `stead down` while a daemon runs on the state directory (it holds the directory's lock): the
/// objects are deleted through it, in reverse order, as `delete` does (pods gracefully, their
/// dependents by the garbage collector). Volumes are kept; `--volumes` is refused here.
pub async fn down(
    client: &Client,
    manifests: &[stead_api::Manifest],
    volumes: bool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<i32> {
    if volumes {
        eprintln!(
            "error: --volumes needs the engine itself: stop the daemon (it runs on this state directory) and run stead down --volumes again"
        );
        return Ok(exit::USAGE);
    }
    let keys = super::up::keys_of(manifests);
    let mut code = exit::OK;
    for key in keys.iter().rev() {
        let path = format!(
            "/api/{}/{}/{}",
            key.kind.resource(),
            super::client::encode(&key.namespace),
            super::client::encode(&key.name)
        );
        let (status, body) = client.call(Method::DELETE, &path, None).await?;
        if status == hyper::StatusCode::NOT_FOUND {
            continue;
        }
        if !status.is_success() {
            eprintln!("{}", super::client::failure_line(status, &body));
            code = exit::INVALID;
            continue;
        }
        writeln!(out, "{}/{} deleted", key.kind.name().to_ascii_lowercase(), key.name)?;
    }
    Ok(code)
}

/// Whether a daemon serves the socket.
pub async fn answers(client: &Client) -> bool {
    client.call(Method::GET, "/api/namespaces", None).await.is_ok()
}

/// Starts `stead daemon` in its own session, detached from this terminal, and waits until it
/// answers; on failure, says why with the end of its log.
async fn start_daemon(args: &UpArgs, state: &Path, client: &Client) -> Result<(), i32> {
    let log_path = state.join("daemon.log");
    let opened = std::fs::create_dir_all(state)
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).open(&log_path));
    let log = match opened {
        Ok(log) => log,
        Err(e) => {
            eprintln!("error: daemon log {}: {e}", log_path.display());
            return Err(exit::INVALID);
        }
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| "stead".into());
    let mut daemon = std::process::Command::new(exe);
    daemon
        .arg("daemon")
        .arg("--state-dir")
        .arg(state)
        .args(["--pod-cidr", &args.node.pod_cidr, "--bridge", &args.node.bridge])
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone().map(std::process::Stdio::from).unwrap_or_else(|_| std::process::Stdio::null()),
        )
        .stderr(std::process::Stdio::from(log))
        // Its own process group: Ctrl-C in this terminal is not for it.
        .process_group(0);
    let mut child = match daemon.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("error: starting stead daemon: {e}");
            return Err(exit::INVALID);
        }
    };
    let deadline = Instant::now() + DAEMON_START;
    while Instant::now() < deadline {
        if answers(client).await {
            println!("stead daemon started (pid {}, log {})", child.id(), log_path.display());
            let _ = std::io::stdout().flush();
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("error: stead daemon exited ({status}); the end of {}:", log_path.display());
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(10)..] {
                eprintln!("  {line}");
            }
            return Err(exit::INVALID);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("error: stead daemon did not answer within {DAEMON_START:?}; see {}", log_path.display());
    Err(exit::INVALID)
}

/// `statefulset/web` → `sts/web`: the applied objects whose rollout `--wait` follows.
fn workload_target(applied: &str) -> Option<String> {
    let (kind, name) = applied.split_once('/')?;
    let short = match kind {
        "statefulset" | "statefulset.apps" => "sts",
        "deployment" | "deployment.apps" => "deploy",
        "statefulservice" | "statefulservice.cloudstate.io" => "ssvc",
        _ => return None,
    };
    Some(format!("{short}/{name}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn workloads_are_followed_and_other_objects_are_not() {
        assert_eq!(super::workload_target("statefulset/web").as_deref(), Some("sts/web"));
        assert_eq!(super::workload_target("statefulset.apps/web").as_deref(), Some("sts/web"));
        assert_eq!(super::workload_target("deployment.apps/x").as_deref(), Some("deploy/x"));
        assert_eq!(super::workload_target("statefulservice.cloudstate.io/n").as_deref(), Some("ssvc/n"));
        assert_eq!(super::workload_target("service/web"), None);
        assert_eq!(super::workload_target("configmap/kv-member"), None);
        assert_eq!(super::workload_target("nonsense"), None);
    }
}
