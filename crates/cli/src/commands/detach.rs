//! `stead up -d`: as `docker compose up -d`, the manifests go to the engine that runs in the
//! background, `stead daemon` on the same state directory, which is started (detached, its log in
//! `<state>/daemon.log`) when none answers. With `--wait`, every workload applied is then
//! followed as `rollout status` does until it is complete.

use super::client::{Client, block_on};
use super::kubectl::{Applied, ApplyArgs};
use super::rollout::{StatusArgs, Targets};
use super::state::DaemonAddr;
use crate::{UpArgs, exit};
use anyhow::Context as _;
use hyper::Method;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a freshly started daemon may take to answer.
const DAEMON_START: Duration = Duration::from_secs(20);

pub fn run(args: &UpArgs) -> anyhow::Result<i32> {
    let files = if args.files.is_empty() { vec![super::state::discover()?] } else { args.files.clone() };
    let state = super::state::state_dir(&args.state_dir);
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
        // Each workload is followed in its own namespace, one `rollout status` per namespace,
        // all within the one timeout.
        let deadline = Instant::now() + args.timeout.unwrap_or(Duration::from_secs(300));
        for (namespace, targets) in workload_targets(&applied) {
            let status = StatusArgs {
                targets: Targets { targets, namespace, addr: addr.clone() },
                watch: true,
                timeout: Some(
                    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
                ),
            };
            let code = super::rollout::status(&client, &status, &mut out).await?;
            if code != exit::OK {
                return Ok(code);
            }
        }
        Ok(exit::OK)
    })
}

/// The applied workloads `--wait` follows, by namespace (in the order first applied).
fn workload_targets(applied: &[Applied]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for a in applied {
        let Some(target) = workload_target(&a.object) else { continue };
        let namespace = if a.namespace.is_empty() { "default" } else { a.namespace.as_str() };
        match out.iter_mut().find(|(ns, _)| ns == namespace) {
            Some((_, targets)) => targets.push(target),
            None => out.push((namespace.to_string(), vec![target])),
        }
    }
    out
}

/// `stead down` while a daemon runs on the state directory (it holds the directory's lock): the
/// daemon does what `down` does without one (`POST /down`): the ordered stop, the objects deleted,
/// and with `volumes` the claims of their StatefulSets, whose data goes with them.
pub async fn down(
    client: &Client,
    manifests: &[stead_api::Manifest],
    volumes: bool,
    out: &mut impl std::io::Write,
) -> anyhow::Result<i32> {
    let objects: Vec<serde_json::Value> = super::state::keys_of(manifests)
        .iter()
        .map(|k| serde_json::json!({"kind": k.kind.name(), "namespace": k.namespace, "name": k.name}))
        .collect();
    let path = format!("/down?volumes={volumes}");
    let (status, body) = client.call(Method::POST, &path, Some(serde_json::to_string(&objects)?)).await?;
    if !status.is_success() {
        eprintln!("{}", super::client::failure_line(status, &body));
        return Ok(exit::INVALID);
    }
    let deleted: serde_json::Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
    for d in deleted.as_array().into_iter().flatten() {
        writeln!(
            out,
            "{} {}",
            d["object"].as_str().unwrap_or_default(),
            d["result"].as_str().unwrap_or_default()
        )?;
    }
    Ok(exit::OK)
}

/// Whether a daemon serves the socket.
pub async fn answers(client: &Client) -> bool {
    client.call(Method::GET, "/api/namespaces", None).await.is_ok()
}

/// Starts `stead daemon` in its own session, detached from this terminal, and waits until it
/// answers; on failure, says why with the end of its log.
async fn start_daemon(args: &UpArgs, state: &Path, client: &Client) -> Result<(), i32> {
    let log_path = state.join("daemon.log");
    // The state directory is private (as the daemon makes it); so is its log.
    let opened = stead_engine::local::private_dir(state)
        .and_then(|_| std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&log_path));
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

    #[test]
    fn workloads_are_followed_in_the_namespace_they_were_applied_to() {
        let applied = |object: &str, namespace: &str| super::Applied {
            object: object.into(),
            namespace: namespace.into(),
        };
        let targets = super::workload_targets(&[
            applied("namespace/shop", ""),
            applied("statefulservice.cloudstate.io/orders", "shop"),
            applied("service/orders", "shop"),
            applied("statefulset.apps/web", "default"),
            applied("deployment.apps/carts", "shop"),
        ]);
        assert_eq!(
            targets,
            [
                ("shop".to_string(), vec!["ssvc/orders".to_string(), "deploy/carts".to_string()]),
                ("default".to_string(), vec!["sts/web".to_string()]),
            ]
        );
    }
}
