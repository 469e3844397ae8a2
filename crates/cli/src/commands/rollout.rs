//! `scale`, `rollout status|history|undo|restart` and `wait`, as kubectl's, against the daemon.
//! The rules are in `stead_engine::rollout` (served by the daemon); these verbs parse, ask, poll
//! and print. Exit 0 on success, 1 on an error or a timeout.

use super::client::{Client, block_on, encode, failure_line};
use super::state::DaemonAddr;
use crate::{exit, parse_duration};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};
use stead_engine::Kind;
use stead_engine::rollout::{WaitFor, qualified};

/// How often a waiting verb looks again.
const POLL: Duration = Duration::from_millis(200);

/// The objects a verb acts on: `TYPE/NAME...` or `TYPE NAME...`.
#[derive(Debug, Args)]
pub struct Targets {
    /// TYPE/NAME (sts/web, deploy/x, ssvc/notes) or TYPE NAME
    #[arg(required = true, value_name = "TYPE/NAME")]
    pub targets: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// The new number of replicas
    #[arg(long, value_name = "N", required = true)]
    pub replicas: i64,
    /// Only scale when the current number of replicas is this (a precondition)
    #[arg(long, value_name = "N")]
    pub current_replicas: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show a rollout's progress until it completes
    Status(StatusArgs),
    /// List a StatefulSet's or Deployment's revisions, or show one's pod template
    History(HistoryArgs),
    /// Go back to the previous revision (or --to-revision)
    Undo(UndoArgs),
    /// Replace every pod, in the workload's rollout order
    Restart(Targets),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Keep watching until the rollout completes (--watch=false: look once)
    #[arg(
        short,
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub watch: bool,
    /// Give up after this long (e.g. 90s, 5m; 0: never)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// Show this revision's pod template
    #[arg(long, value_name = "N")]
    pub revision: Option<i64>,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// The revision to go back to [default: the previous one]
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub to_revision: i64,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// TYPE/NAME or TYPE NAME...; with -l or --all, TYPE
    #[arg(required = true, value_name = "TYPE/NAME")]
    pub targets: Vec<String>,
    /// condition=NAME, condition=NAME=VALUE, or delete
    #[arg(long = "for", value_name = "CONDITION")]
    pub for_: String,
    /// Give up after this long
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "30s")]
    pub timeout: Duration,
    /// Every object of the type matching this label selector
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every object of the type in the namespace
    #[arg(long)]
    pub all: bool,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

pub fn run_scale(args: &ScaleArgs) -> anyhow::Result<i32> {
    block_on(scale(&args.targets.addr.client(), args, &mut std::io::stdout()))
}

pub fn run_rollout(args: &RolloutArgs) -> anyhow::Result<i32> {
    let mut out = std::io::stdout();
    match &args.command {
        RolloutCommand::Status(a) => block_on(status(&a.targets.addr.client(), a, &mut out)),
        RolloutCommand::History(a) => block_on(history(&a.targets.addr.client(), a, &mut out)),
        RolloutCommand::Undo(a) => block_on(undo(&a.targets.addr.client(), a, &mut out)),
        RolloutCommand::Restart(a) => block_on(restart(&a.addr.client(), a, &mut out)),
    }
}

pub fn run_wait(args: &WaitArgs) -> anyhow::Result<i32> {
    block_on(wait(&args.addr.client(), args, &mut std::io::stdout()))
}

fn fail(status: StatusCode, body: &[u8]) -> i32 {
    eprintln!("{}", failure_line(status, body));
    exit::INVALID
}

/// `sts/web`, `statefulset web`, `sts a b`: kubectl's forms. `TYPE/NAME` forms cannot be mixed
/// with a bare type.
pub fn parse_targets(words: &[String]) -> Result<Vec<(Kind, String)>, String> {
    let lookup = |word: &str| {
        Kind::lookup(word).ok_or_else(|| format!("the server doesn't have a resource type {word:?}"))
    };
    let Some(first) = words.first() else { return Err("you must specify a resource".into()) };
    if first.contains('/') {
        return words
            .iter()
            .map(|w| match w.split_once('/') {
                Some((t, n)) if !n.is_empty() => Ok((lookup(t)?, n.to_string())),
                _ => Err(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'stead get resource/<resource_name>' instead of 'stead get resource resource/<resource_name>'): {w:?}"
                )),
            })
            .collect();
    }
    let kind = lookup(first)?;
    if words.len() < 2 {
        return Err(format!("you must specify the name of the {} (e.g. {first}/NAME)", kind.resource()));
    }
    Ok(words[1..].iter().map(|n| (kind, n.clone())).collect())
}

/// Targets, or the error printed as kubectl does.
fn targets_or_fail(words: &[String]) -> Result<Vec<(Kind, String)>, i32> {
    parse_targets(words).map_err(|e| {
        eprintln!("error: {e}");
        exit::INVALID
    })
}

fn path(verb: &str, kind: Kind, namespace: &str, name: &str) -> String {
    format!("/{verb}/{}/{}/{}", kind.resource(), encode(namespace), encode(name))
}

/// Sends a verb that answers `{"object", "result"}` and prints `<object> <result>`.
async fn act(client: &Client, method: Method, uri: &str, out: &mut impl Write) -> anyhow::Result<i32> {
    let (status, body) = client.call(method, uri, None).await?;
    if !status.is_success() {
        return Ok(fail(status, &body));
    }
    let reply: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
    writeln!(
        out,
        "{} {}",
        reply["object"].as_str().unwrap_or_default(),
        reply["result"].as_str().unwrap_or_default()
    )?;
    Ok(exit::OK)
}

pub async fn scale(client: &Client, args: &ScaleArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let targets = match targets_or_fail(&args.targets.targets) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut code = exit::OK;
    for (kind, name) in targets {
        let mut uri =
            format!("{}?replicas={}", path("scale", kind, &args.targets.namespace, &name), args.replicas);
        if let Some(c) = args.current_replicas {
            uri.push_str(&format!("&currentReplicas={c}"));
        }
        if act(client, Method::POST, &uri, out).await? != exit::OK {
            code = exit::INVALID;
        }
    }
    Ok(code)
}

pub async fn undo(client: &Client, args: &UndoArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let targets = match targets_or_fail(&args.targets.targets) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut code = exit::OK;
    for (kind, name) in targets {
        let uri = format!(
            "{}/undo?toRevision={}",
            path("rollout", kind, &args.targets.namespace, &name),
            args.to_revision
        );
        if act(client, Method::POST, &uri, out).await? != exit::OK {
            code = exit::INVALID;
        }
    }
    Ok(code)
}

pub async fn restart(client: &Client, args: &Targets, out: &mut impl Write) -> anyhow::Result<i32> {
    let targets = match targets_or_fail(&args.targets) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let mut code = exit::OK;
    for (kind, name) in targets {
        let uri = format!("{}/restart", path("rollout", kind, &args.namespace, &name));
        if act(client, Method::POST, &uri, out).await? != exit::OK {
            code = exit::INVALID;
        }
    }
    Ok(code)
}

pub async fn status(client: &Client, args: &StatusArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let targets = match targets_or_fail(&args.targets.targets) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let deadline = args.timeout.filter(|t| !t.is_zero()).map(|t| Instant::now() + t);
    for (kind, name) in targets {
        let uri = format!("{}/status", path("rollout", kind, &args.targets.namespace, &name));
        let mut last = String::new();
        loop {
            let (code, body) = client.call(Method::GET, &uri, None).await?;
            if !code.is_success() {
                let reply: Option<Value> = serde_json::from_slice(&body).ok();
                // Rule errors (a stuck deployment, OnDelete) read as kubectl's `error: ...`.
                match reply
                    .as_ref()
                    .and_then(|r| r["message"].as_str())
                    .filter(|_| code == StatusCode::BAD_REQUEST)
                {
                    Some(m) => eprintln!("error: {m}"),
                    None => eprintln!("{}", failure_line(code, &body)),
                }
                return Ok(exit::INVALID);
            }
            let reply: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
            let message = reply["message"].as_str().unwrap_or_default().to_string();
            if message != last {
                writeln!(out, "{message}")?;
                out.flush()?;
                last = message;
            }
            if reply["done"] == true || !args.watch {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let why = reply["waiting"]
                    .as_str()
                    .filter(|w| !w.is_empty())
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                eprintln!("error: timed out waiting for the condition{why}");
                return Ok(exit::INVALID);
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(exit::OK)
}

pub async fn history(client: &Client, args: &HistoryArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let targets = match targets_or_fail(&args.targets.targets) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    for (kind, name) in targets {
        let uri = format!("{}/history", path("rollout", kind, &args.targets.namespace, &name));
        let (code, body) = client.call(Method::GET, &uri, None).await?;
        if !code.is_success() {
            return Ok(fail(code, &body));
        }
        let reply: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
        let object = reply["object"].as_str().unwrap_or_default();
        let revisions = reply["revisions"].as_array().cloned().unwrap_or_default();
        match args.revision {
            Some(n) => {
                let Some(r) = revisions.iter().find(|r| r["revision"].as_i64() == Some(n)) else {
                    eprintln!("error: unable to find the specified revision");
                    return Ok(exit::INVALID);
                };
                writeln!(out, "{object} with revision #{n}")?;
                write!(out, "{}", describe_template(&r["template"]))?;
            }
            None => write!(out, "{}", history_table(object, &revisions))?,
        }
    }
    Ok(exit::OK)
}

/// kubectl's `REVISION  CHANGE-CAUSE` table under the object's name.
pub fn history_table(object: &str, revisions: &[Value]) -> String {
    let rows: Vec<(String, String)> = revisions
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap_or(0).to_string(),
                r["changeCause"].as_str().unwrap_or("<none>").to_string(),
            )
        })
        .collect();
    let width = rows.iter().map(|(r, _)| r.len()).chain(["REVISION".len()]).max().unwrap_or(8) + 2;
    let mut s = format!("{object}\n{:<width$}CHANGE-CAUSE\n", "REVISION");
    for (r, cause) in rows {
        s.push_str(&format!("{r:<width$}{cause}\n"));
    }
    s
}

fn pairs(map: &Value) -> String {
    let list: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if list.is_empty() { "<none>".into() } else { list.join("\n\t") }
}

/// A pod template as `kubectl describe` shows one (the parts people compare between revisions).
pub fn describe_template(template: &Value) -> String {
    let mut s = String::from("Pod Template:\n");
    s.push_str(&format!("  Labels:\t{}\n", pairs(&template["metadata"]["labels"])));
    if template["metadata"]["annotations"].as_object().is_some_and(|a| !a.is_empty()) {
        s.push_str(&format!("  Annotations:\t{}\n", pairs(&template["metadata"]["annotations"])));
    }
    for (field, title) in [("initContainers", "Init Containers"), ("containers", "Containers")] {
        let Some(containers) = template["spec"][field].as_array() else { continue };
        s.push_str(&format!("  {title}:\n"));
        for c in containers {
            s.push_str(&format!("   {}:\n", c["name"].as_str().unwrap_or_default()));
            s.push_str(&format!("    Image:\t{}\n", c["image"].as_str().unwrap_or("<none>")));
            for (f, t) in [("command", "Command"), ("args", "Args")] {
                if let Some(words) = c[f].as_array() {
                    s.push_str(&format!("    {t}:\n"));
                    for w in words {
                        s.push_str(&format!("      {}\n", w.as_str().unwrap_or_default().trim_end()));
                    }
                }
            }
            let env: Vec<String> = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let value = match e["value"].as_str() {
                        Some(v) => v.to_string(),
                        None if e.get("valueFrom").is_some() => "(from a reference)".into(),
                        None => String::new(),
                    };
                    format!("      {}:\t{value}", e["name"].as_str().unwrap_or_default())
                })
                .collect();
            match env.is_empty() {
                true => s.push_str("    Environment:\t<none>\n"),
                false => s.push_str(&format!("    Environment:\n{}\n", env.join("\n"))),
            }
        }
    }
    let volumes: Vec<&str> = template["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    s.push_str(&format!(
        "  Volumes:\t{}\n",
        if volumes.is_empty() { "<none>".into() } else { volumes.join(", ") }
    ));
    s
}

pub async fn wait(client: &Client, args: &WaitArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let condition = match WaitFor::parse(&args.for_) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::INVALID);
        }
    };
    let ns = encode(&args.namespace);
    let targets = if args.selector.is_some() || args.all {
        let [word] = args.targets.as_slice() else {
            eprintln!("error: with -l or --all, give only the resource type");
            return Ok(exit::INVALID);
        };
        let Some(kind) = Kind::lookup(word) else {
            eprintln!("error: the server doesn't have a resource type {word:?}");
            return Ok(exit::INVALID);
        };
        let mut uri = format!("/api/{}?namespace={ns}", kind.resource());
        if let Some(selector) = &args.selector {
            uri.push_str(&format!("&labelSelector={}", encode(selector)));
        }
        let (code, body) = client.call(Method::GET, &uri, None).await?;
        if !code.is_success() {
            return Ok(fail(code, &body));
        }
        let list: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
        let names: Vec<(Kind, String)> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["metadata"]["name"].as_str().map(|n| (kind, n.to_string())))
            .collect();
        if names.is_empty() {
            if condition == WaitFor::Delete {
                return Ok(exit::OK);
            }
            eprintln!("error: no matching resources found");
            return Ok(exit::INVALID);
        }
        names
    } else {
        match targets_or_fail(&args.targets) {
            Ok(t) => t,
            Err(code) => return Ok(code),
        }
    };
    let deadline = Instant::now() + args.timeout;
    for (kind, name) in targets {
        let uri = format!("/api/{}/{ns}/{}", kind.resource(), encode(&name));
        loop {
            let (code, body) = client.call(Method::GET, &uri, None).await?;
            let object: Option<Value> = match code {
                StatusCode::NOT_FOUND => None,
                c if c.is_success() => {
                    Some(serde_json::from_slice(&body).context("reading the daemon's reply")?)
                }
                _ => return Ok(fail(code, &body)),
            };
            // A missing object fails at once when waiting for it to have a condition (kubectl
            // does not wait for it to appear).
            if object.is_none() && condition != WaitFor::Delete {
                return Ok(fail(code, &body));
            }
            if condition.met(object.as_ref()) {
                writeln!(out, "{} condition met", qualified(kind, &name))?;
                out.flush()?;
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("error: timed out waiting for the condition on {}/{name}", kind.resource());
                return Ok(exit::INVALID);
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests;
