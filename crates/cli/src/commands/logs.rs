//! `logs` over several containers: the pods of a selector (`-l app=web`), of a workload or a
//! service (`sts/web`, `deploy/api`, `svc/web`), or every container of a pod (`--all-containers`),
//! merged in time order with a `[pod/NAME/CONTAINER]` prefix on each line (kubectl's `--prefix`).
//! kubectl reads one pod for `sts/web`; stead reads them all, which is what a user of a
//! StatefulSet usually wants.
//!
//! Without `-f`, every container's lines are read with their stored times and printed in time
//! order. With `-f`, each container is followed at once and lines are printed as they arrive.

use super::client::{Client, encode, failure_line, next_chunk};
use super::state::DaemonAddr;
use crate::exit;
use anyhow::Context as _;
use clap::Args;
use hyper::Method;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::io::Write;
use stead_engine::Kind;

/// The query of one container's log request (without `timestamps`).
pub fn query(args: &LogsArgs) -> anyhow::Result<String> {
    let mut q = format!("previous={}&follow={}", args.previous, args.follow);
    if let Some(n) = args.tail {
        q.push_str(&format!("&tail={n}"));
    }
    if let Some(since) = since_time(args)? {
        q.push_str(&format!("&sinceTime={}", encode(&since)));
    }
    Ok(q)
}

/// `--since` as a time, or `--since-time` checked.
fn since_time(args: &LogsArgs) -> anyhow::Result<Option<String>> {
    if let Some(d) = args.since {
        let d = k8s_openapi::jiff::SignedDuration::try_from(d).context("--since is too long")?;
        let t = Timestamp::now().checked_sub(d).context("--since is too long")?;
        return Ok(Some(t.to_string()));
    }
    match &args.since_time {
        Some(t) => {
            let parsed: Timestamp =
                t.parse().with_context(|| format!("invalid --since-time {t:?}: expected RFC 3339"))?;
            Ok(Some(parsed.to_string()))
        }
        None => Ok(None),
    }
}

/// The label selector of a workload or service, as `a=b,c=d`.
fn selector_of(object: &Value, kind: Kind) -> String {
    let labels = match kind {
        Kind::Service => &object["spec"]["selector"],
        _ => &object["spec"]["selector"]["matchLabels"],
    };
    labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>())
        .unwrap_or_default()
        .join(",")
}

async fn get_json(client: &Client, path: &str) -> anyhow::Result<Result<Value, i32>> {
    let (status, body) = client.call(Method::GET, path, None).await?;
    if !status.is_success() {
        eprintln!("{}", failure_line(status, &body));
        return Ok(Err(exit::INVALID));
    }
    Ok(Ok(serde_json::from_slice(&body).context("reading the daemon's reply")?))
}

/// The pods the arguments name, ordered by name.
async fn pods(client: &Client, args: &LogsArgs) -> anyhow::Result<Result<Vec<Value>, i32>> {
    let ns = encode(&args.namespace);
    let selector = match (&args.selector, args.pod.as_deref()) {
        (Some(s), _) => s.clone(),
        (None, Some(target)) => {
            let (kind, name) = match target.split_once('/') {
                Some((k, n)) => match Kind::lookup(k) {
                    Some(kind) => (kind, n),
                    None => {
                        eprintln!("error: the server doesn't have a resource type {k:?}");
                        return Ok(Err(exit::INVALID));
                    }
                },
                None => (Kind::Pod, target),
            };
            let object =
                match get_json(client, &format!("/api/{}/{ns}/{}", kind.resource(), encode(name))).await? {
                    Ok(o) => o,
                    Err(c) => return Ok(Err(c)),
                };
            if kind == Kind::Pod {
                return Ok(Ok(vec![object]));
            }
            let selector = selector_of(&object, kind);
            if selector.is_empty() {
                eprintln!("error: {}/{name} selects no pods", kind.resource());
                return Ok(Err(exit::INVALID));
            }
            selector
        }
        (None, None) => {
            eprintln!("error: a pod, TYPE/NAME or -l SELECTOR is required");
            return Ok(Err(exit::USAGE));
        }
    };
    let path = format!("/api/pods?namespace={ns}&labelSelector={}", encode(&selector));
    Ok(get_json(client, &path).await?.map(|l| l["items"].as_array().cloned().unwrap_or_default()))
}

/// `(pod, container)` pairs to read.
fn sources(pods: &[Value], args: &LogsArgs) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for pod in pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let names = |field: &str| -> Vec<String> {
            pod["spec"][field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        };
        let containers = match (&args.container, args.all_containers) {
            (Some(c), _) => vec![c.clone()],
            (None, true) => names("initContainers").into_iter().chain(names("containers")).collect(),
            (None, false) => {
                let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
                    .as_str()
                    .map(str::to_string);
                default.or_else(|| names("containers").into_iter().next()).into_iter().collect()
            }
        };
        out.extend(containers.into_iter().map(|c| (name.clone(), c)));
    }
    out
}

/// One line of a merged read: its time, the source's prefix and its text.
struct Line {
    time: String,
    prefix: String,
    text: Vec<u8>,
}

fn render(line: &Line, prefix: bool, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if prefix {
        out.extend_from_slice(line.prefix.as_bytes());
        out.push(b' ');
    }
    if timestamps {
        out.extend_from_slice(line.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.text);
    out.push(b'\n');
    out
}

/// Splits `TIME text` lines (the daemon's `timestamps=true` form).
fn parse_lines(body: &[u8], prefix: &str) -> Vec<Line> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (time, text) = match l.iter().position(|b| *b == b' ') {
                Some(i) => (&l[..i], &l[i + 1..]),
                None => (l, &[][..]),
            };
            Line {
                time: String::from_utf8_lossy(time).into_owned(),
                prefix: prefix.to_string(),
                text: text.to_vec(),
            }
        })
        .collect()
}

/// Reads (or follows) several containers' logs; see the module's documentation.
pub async fn merged(client: &Client, args: &LogsArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let pods = match pods(client, args).await? {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let sources = sources(&pods, args);
    if sources.is_empty() {
        eprintln!("No resources found in {} namespace.", args.namespace);
        return Ok(exit::OK);
    }
    let prefix = args.prefix || sources.len() > 1;
    let query = query(args)?;
    let ns = encode(&args.namespace);
    let path_of = |pod: &str, container: &str| {
        format!("/logs/{ns}/{}/{}?{query}&timestamps=true", encode(pod), encode(container))
    };
    let mut code = exit::OK;
    if !args.follow {
        let mut lines = Vec::new();
        for (pod, container) in &sources {
            let (status, body) = client.call(Method::GET, &path_of(pod, container), None).await?;
            if !status.is_success() {
                eprintln!("{}", failure_line(status, &body));
                code = exit::INVALID;
                continue;
            }
            lines.extend(parse_lines(&body, &format!("[pod/{pod}/{container}]")));
        }
        // Stable: lines of one container with one time keep their order.
        lines.sort_by(|a, b| a.time.cmp(&b.time));
        for line in &lines {
            out.write_all(&render(line, prefix, args.timestamps))?;
        }
        out.flush()?;
        return Ok(code);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(64);
    for (pod, container) in sources {
        let (client, tx, path) = (client.clone(), tx.clone(), path_of(&pod, &container));
        let (tag, timestamps) = (format!("[pod/{pod}/{container}]"), args.timestamps);
        tokio::spawn(async move {
            let response = match client.send(Method::GET, &path, None).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(format!("error: {e}"))).await;
                    return;
                }
            };
            let status = response.status();
            let mut body = response.into_body();
            if !status.is_success() {
                let bytes =
                    http_body_util::BodyExt::collect(body).await.map(|b| b.to_bytes()).unwrap_or_default();
                let _ = tx.send(Err(failure_line(status, &bytes))).await;
                return;
            }
            let mut buffer = Vec::new();
            while let Ok(Some(chunk)) = next_chunk(&mut body).await {
                buffer.extend_from_slice(&chunk);
                let Some(end) = buffer.iter().rposition(|b| *b == b'\n') else { continue };
                let complete: Vec<u8> = buffer.drain(..=end).collect();
                let bytes: Vec<u8> =
                    parse_lines(&complete, &tag).iter().flat_map(|l| render(l, prefix, timestamps)).collect();
                if tx.send(Ok(bytes)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    while let Some(item) = rx.recv().await {
        match item {
            Ok(bytes) => {
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Err(line) => {
                eprintln!("{line}");
                code = exit::INVALID;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_several_containers_merge_by_time_with_their_prefix() {
        let a = parse_lines(
            b"2026-01-01T00:00:01.000000000Z one\n2026-01-01T00:00:03.000000000Z three\n",
            "[pod/a/c]",
        );
        let b = parse_lines(b"2026-01-01T00:00:02.000000000Z two words\n", "[pod/b/c]");
        let mut lines: Vec<Line> = a.into_iter().chain(b).collect();
        lines.sort_by(|x, y| x.time.cmp(&y.time));
        let text: Vec<u8> = lines.iter().flat_map(|l| render(l, true, false)).collect();
        assert_eq!(String::from_utf8(text).unwrap(), "[pod/a/c] one\n[pod/b/c] two words\n[pod/a/c] three\n");
        let stamped = render(&lines[0], false, true);
        assert_eq!(stamped, b"2026-01-01T00:00:01.000000000Z one\n");
    }

    #[test]
    fn selectors_come_from_workloads_and_services() {
        let sts = serde_json::json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}}}});
        assert_eq!(selector_of(&sts, Kind::StatefulSet), "app=web,tier=x");
        let svc = serde_json::json!({"spec": {"selector": {"app": "web"}}});
        assert_eq!(selector_of(&svc, Kind::Service), "app=web");
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod (NAME or pod/NAME), or a workload or service (sts/NAME, deploy/NAME, svc/NAME)
    /// whose pods' logs are merged in time order
    #[arg(required_unless_present = "selector", conflicts_with = "selector")]
    pub pod: Option<String>,
    /// The container [default: the pod's first]
    #[arg(short, long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The pods of this label selector (app=web), merged in time order
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every container of each pod (init containers first)
    #[arg(long)]
    pub all_containers: bool,
    /// Only lines newer than this (5s, 2m, 3h)
    #[arg(long, value_parser = crate::parse_duration, value_name = "DURATION", conflicts_with = "since_time")]
    pub since: Option<std::time::Duration>,
    /// Only lines at or after this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub since_time: Option<String>,
    /// Start each line with its time (RFC 3339)
    #[arg(long)]
    pub timestamps: bool,
    /// Start each line with [pod/NAME/CONTAINER] (always so when several containers are read)
    #[arg(long)]
    pub prefix: bool,
    /// Keep streaming new lines
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// The previous instance of the container (before its last restart)
    #[arg(short, long)]
    pub previous: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}
