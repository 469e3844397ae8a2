//! The daemon's inspection verbs, as kubectl's: `describe` (with events), `events`, `exec` and
//! `port-forward`. Each asks the daemon over its socket and prints; the daemon holds the logic.
//!
//! `port-forward` needs no daemon route: the client runs on the daemon's host, where pod
//! addresses (on the node's bridge) are reachable, so it reads the pod's `status.podIP` from the
//! daemon, listens on loopback and copies each connection to the pod itself.

use super::client::{Client, block_on, encode, failure_line, next_chunk};
use super::state::DaemonAddr;
use super::table::{align, human_duration};
use crate::exit;
use anyhow::Context as _;
use clap::Args;
use hyper::{Method, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use stead_engine::Kind;

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The resource type (pods, sts, svc, ...), or TYPE/NAME
    pub resource: String,
    /// The objects' names [default: every object of the type]
    pub names: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// A label selector (app=web)
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events about this object (TYPE/NAME, e.g. pod/web-0)
    #[arg(long = "for", value_name = "TYPE/NAME")]
    pub for_object: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only events of these types (Normal, Warning); repeatable or comma-separated
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// After listing, watch for new events
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The pod (NAME or pod/NAME)
    pub pod: String,
    /// The container [default: the pod's first]
    #[arg(short, long)]
    pub container: Option<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Pass standard input to the command (read to its end first; there is no TTY)
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// The command and its arguments, after --
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// The pod (NAME, pod/NAME), or a workload or service whose first running pod is used
    /// (sts/NAME, deploy/NAME, svc/NAME)
    pub target: String,
    /// LOCAL:REMOTE, PORT (the same both sides) or :REMOTE (a free local port); REMOTE may be a
    /// container port's name
    #[arg(required = true)]
    pub ports: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The local address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub address: std::net::IpAddr,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

pub fn run_describe(args: &DescribeArgs) -> anyhow::Result<i32> {
    block_on(describe(&args.addr.client(), args, &mut std::io::stdout()))
}

pub fn run_events(args: &EventsArgs) -> anyhow::Result<i32> {
    block_on(events(&args.addr.client(), args, &mut std::io::stdout()))
}

pub fn run_exec(args: &ExecArgs) -> anyhow::Result<i32> {
    let mut input = Vec::new();
    if args.stdin {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut input).context("reading standard input")?;
    }
    block_on(exec(&args.addr.client(), args, input, &mut std::io::stdout(), &mut std::io::stderr()))
}

pub fn run_port_forward(args: &PortForwardArgs) -> anyhow::Result<i32> {
    block_on(port_forward(&args.addr.client(), args, std::future::pending()))
}

fn fail(status: StatusCode, body: &[u8]) -> i32 {
    eprintln!("{}", failure_line(status, body));
    exit::INVALID
}

async fn get_json(client: &Client, path: &str) -> anyhow::Result<Result<Value, i32>> {
    let (status, body) = client.call(Method::GET, path, None).await?;
    if !status.is_success() {
        return Ok(Err(fail(status, &body)));
    }
    Ok(Ok(serde_json::from_slice(&body).context("reading the daemon's reply")?))
}

// ---- describe ----

pub async fn describe(client: &Client, args: &DescribeArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let (resource, mut names) = match args.resource.split_once('/') {
        Some((r, n)) => (r.to_string(), vec![n.to_string()]),
        None => (args.resource.clone(), Vec::new()),
    };
    names.extend(args.names.iter().cloned());
    let Some(kind) = Kind::lookup(&resource) else {
        eprintln!("error: the server doesn't have a resource type {resource:?}");
        return Ok(exit::INVALID);
    };
    let ns = encode(&args.namespace);
    let mut objects = Vec::new();
    let mut code = exit::OK;
    if names.is_empty() {
        let mut path = format!("/api/{}?namespace={ns}", kind.resource());
        if let Some(s) = &args.selector {
            path.push_str(&format!("&labelSelector={}", encode(s)));
        }
        match get_json(client, &path).await? {
            Ok(list) => objects.extend(list["items"].as_array().cloned().unwrap_or_default()),
            Err(c) => return Ok(c),
        }
        if objects.is_empty() {
            eprintln!("No resources found in {} namespace.", args.namespace);
        }
    }
    for name in &names {
        match get_json(client, &format!("/api/{}/{ns}/{}", kind.resource(), encode(name))).await? {
            Ok(o) => objects.push(o),
            Err(c) => code = c,
        }
    }
    let now = Timestamp::now();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
            writeln!(out)?;
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let for_object = format!("{}/{}", kind.resource(), encode(name));
        let events = match get_json(client, &format!("/events?namespace={ns}&for={for_object}")).await? {
            Ok(list) => list["items"].as_array().cloned().unwrap_or_default(),
            Err(c) => return Ok(c),
        };
        // As kubectl's describe: only this object's, not those of an earlier one with its name.
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        let events: Vec<Value> = events
            .into_iter()
            .filter(|e| e["involvedObject"]["uid"].as_str().is_none_or(|u| u.is_empty() || u == uid))
            .collect();
        let extra = match kind {
            Kind::Service => {
                let selector = format!("kubernetes.io/service-name={name}");
                let path = format!("/api/endpointslices?namespace={ns}&labelSelector={}", encode(&selector));
                get_json(client, &path)
                    .await?
                    .ok()
                    .and_then(|l| l["items"].as_array().cloned())
                    .unwrap_or_default()
            }
            Kind::StatefulSet | Kind::Deployment | Kind::ReplicaSet => {
                let selector = match_labels(&object["spec"]["selector"]["matchLabels"]);
                let path = format!("/api/pods?namespace={ns}&labelSelector={}", encode(&selector));
                get_json(client, &path)
                    .await?
                    .ok()
                    .and_then(|l| l["items"].as_array().cloned())
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        write!(out, "{}", describe_text(kind, object, &extra, &events, now))?;
    }
    Ok(code)
}

/// `a=b,c=d` from a label map.
fn match_labels(labels: &Value) -> String {
    labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>())
        .unwrap_or_default()
        .join(",")
}

/// Lines of `Label:  value`, aligned as kubectl's describe does: the values of consecutive
/// labelled lines (whatever their indent) start in one column; a line without a value ends a block.
#[derive(Default)]
struct Doc {
    lines: Vec<(usize, String, Option<String>)>,
}

impl Doc {
    fn field(&mut self, indent: usize, label: &str, value: impl Into<String>) {
        self.lines.push((indent, format!("{label}:"), Some(value.into())));
    }

    fn heading(&mut self, indent: usize, label: &str) {
        self.lines.push((indent, format!("{label}:"), None));
    }

    fn text(&mut self, indent: usize, text: impl Into<String>) {
        self.lines.push((indent, text.into(), None));
    }

    /// A label's `k=v` lines, the first beside the label.
    fn map(&mut self, indent: usize, label: &str, map: &Value) {
        let entries: Vec<String> = map
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
                    .collect()
            })
            .unwrap_or_default();
        match entries.split_first() {
            None => self.field(indent, label, "<none>"),
            Some((first, rest)) => {
                self.field(indent, label, first.clone());
                for e in rest {
                    self.lines.push((indent, String::new(), Some(e.clone())));
                }
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.lines.len() {
            let mut j = i;
            while j < self.lines.len() && self.lines[j].2.is_some() {
                j += 1;
            }
            if j == i {
                let (indent, label, _) = &self.lines[i];
                out.push_str(&format!("{}{label}\n", " ".repeat(*indent)));
                i += 1;
                continue;
            }
            let width = self.lines[i..j].iter().map(|(n, l, _)| n + l.len()).max().unwrap_or(0) + 2;
            for (indent, label, value) in &self.lines[i..j] {
                let cell = format!("{}{label}", " ".repeat(*indent));
                let line = format!("{cell:<width$}{}", value.as_deref().unwrap_or_default());
                out.push_str(line.trim_end());
                out.push('\n');
            }
            i = j;
        }
        out
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_none(v: &Value) -> String {
    let text = s(v);
    if text.is_empty() { "<none>".into() } else { text }
}

/// kubectl's describe time: `Sun, 22 Nov 2026 03:37:25 +0000`.
fn long_time(v: &Value) -> String {
    v.as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_default()
}

/// The whole description of one object, events last.
pub fn describe_text(
    kind: Kind,
    object: &Value,
    extra: &[Value],
    events: &[Value],
    now: Timestamp,
) -> String {
    let mut d = Doc::default();
    let meta = &object["metadata"];
    d.field(0, "Name", s(&meta["name"]));
    d.field(0, "Namespace", s(&meta["namespace"]));
    if kind == Kind::Secret {
        // kubectl's secret describer: never the values, and no events.
        describe_secret(&mut d, object);
        return d.render();
    }
    match kind {
        Kind::Pod => describe_pod(&mut d, object),
        Kind::StatefulSet | Kind::Deployment | Kind::ReplicaSet => {
            describe_workload(&mut d, kind, object, extra)
        }
        Kind::Service => describe_service(&mut d, object, extra),
        _ => {
            d.field(0, "CreationTimestamp", long_time(&meta["creationTimestamp"]));
            d.map(0, "Labels", &meta["labels"]);
            d.map(0, "Annotations", &meta["annotations"]);
            d.field(0, "API Version", s(&object["apiVersion"]));
            d.field(0, "Kind", s(&object["kind"]));
            for part in ["spec", "status", "data"] {
                if let Some(v) = object.get(part).filter(|v| !v.is_null()) {
                    d.heading(0, &capitalize(part));
                    let yaml = serde_saphyr::to_string(v).unwrap_or_default();
                    for line in yaml.lines() {
                        d.text(2, line.to_string());
                    }
                }
            }
        }
    }
    let mut out = d.render();
    out.push_str(&events_section(events, now));
    out
}

/// kubectl's `describe secret`: labels, annotations, the type, then each key with the size of its
/// value (`password:  12 bytes`), keys in order. The values themselves are never printed.
fn describe_secret(d: &mut Doc, object: &Value) {
    let meta = &object["metadata"];
    d.map(0, "Labels", &meta["labels"]);
    d.map(0, "Annotations", &meta["annotations"]);
    d.text(0, "");
    d.field(0, "Type", object["type"].as_str().filter(|t| !t.is_empty()).unwrap_or("Opaque"));
    d.text(0, "");
    d.text(0, "Data");
    d.text(0, "====");
    let secret: Secret = serde_json::from_value(object.clone()).unwrap_or_default();
    let mut sizes: BTreeMap<String, usize> =
        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0.len())).collect();
    // A stored Secret may still carry `stringData` (the API server would have merged it into
    // `data`; its entries win, as there).
    sizes.extend(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.len())));
    for (key, size) in sizes {
        d.field(0, &key, format!("{size} bytes"));
    }
}

fn capitalize(word: &str) -> String {
    let mut c = word.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn describe_pod(d: &mut Doc, pod: &Value) {
    let (meta, spec, status) = (&pod["metadata"], &pod["spec"], &pod["status"]);
    d.field(0, "Service Account", or_none(&spec["serviceAccountName"]).replace("<none>", "default"));
    let node = s(&spec["nodeName"]);
    let host_ip = s(&status["hostIP"]);
    d.field(
        0,
        "Node",
        if host_ip.is_empty() { or_none(&spec["nodeName"]) } else { format!("{node}/{host_ip}") },
    );
    d.field(0, "Start Time", long_time(&status["startTime"]));
    d.map(0, "Labels", &meta["labels"]);
    d.map(0, "Annotations", &meta["annotations"]);
    let phase = if meta.get("deletionTimestamp").is_some_and(|t| !t.is_null()) {
        format!("Terminating (lasts {}s)", meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0))
    } else {
        or_none(&status["phase"])
    };
    d.field(0, "Status", phase);
    if let Some(reason) = status["reason"].as_str() {
        d.field(0, "Reason", reason);
    }
    if let Some(message) = status["message"].as_str() {
        d.field(0, "Message", message);
    }
    d.field(0, "IP", s(&status["podIP"]));
    let controller = meta["ownerReferences"]
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .map(|r| format!("{}/{}", s(&r["kind"]), s(&r["name"])));
    if let Some(c) = controller {
        d.field(0, "Controlled By", c);
    }
    for (field, statuses, title) in [
        ("initContainers", "initContainerStatuses", "Init Containers"),
        ("containers", "containerStatuses", "Containers"),
    ] {
        let Some(containers) = spec[field].as_array().filter(|c| !c.is_empty()) else { continue };
        d.heading(0, title);
        for c in containers {
            let name = s(&c["name"]);
            let st = status[statuses].as_array().and_then(|a| a.iter().find(|x| x["name"] == name.as_str()));
            d.heading(2, &name);
            d.field(4, "Image", s(&c["image"]));
            let ports: Vec<String> = c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", s(&p["containerPort"]), p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            d.field(4, "Port", if ports.is_empty() { "<none>".into() } else { ports.join(", ") });
            for (part, label) in [("command", "Command"), ("args", "Args")] {
                if let Some(words) = c[part].as_array().filter(|w| !w.is_empty()) {
                    d.heading(4, label);
                    for w in words {
                        d.text(6, s(w));
                    }
                }
            }
            let empty = Value::Null;
            let st = st.unwrap_or(&empty);
            state_lines(d, "State", &st["state"]);
            if st["lastState"].as_object().is_some_and(|m| !m.is_empty()) {
                state_lines(d, "Last State", &st["lastState"]);
            }
            d.field(4, "Ready", if st["ready"] == true { "True" } else { "False" });
            d.field(4, "Restart Count", st["restartCount"].as_i64().unwrap_or(0).to_string());
            for (probe, label) in
                [("livenessProbe", "Liveness"), ("readinessProbe", "Readiness"), ("startupProbe", "Startup")]
            {
                if let Some(p) = c.get(probe).filter(|p| p.is_object()) {
                    d.field(4, label, probe_text(p));
                }
            }
            let env: Vec<String> = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| match e.get("value") {
                    Some(v) => format!("{}:  {}", s(&e["name"]), s(v)),
                    None => format!("{}:  <set from a reference>", s(&e["name"])),
                })
                .collect();
            if env.is_empty() {
                d.field(4, "Environment", "<none>");
            } else {
                d.heading(4, "Environment");
                for e in env {
                    d.text(6, e);
                }
            }
            let mounts: Vec<String> = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    let mode = if m["readOnly"] == true { "ro" } else { "rw" };
                    format!("{} from {} ({mode})", s(&m["mountPath"]), s(&m["name"]))
                })
                .collect();
            if mounts.is_empty() {
                d.field(4, "Mounts", "<none>");
            } else {
                d.heading(4, "Mounts");
                for m in mounts {
                    d.text(6, m);
                }
            }
        }
    }
    d.heading(0, "Conditions");
    let mut rows = vec![vec!["Type".to_string(), "Status".to_string()]];
    for c in status["conditions"].as_array().into_iter().flatten() {
        rows.push(vec![s(&c["type"]), s(&c["status"])]);
    }
    for line in super::table::align_with_gap(&rows, 2).lines() {
        d.text(2, line.to_string());
    }
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    if volumes.is_empty() {
        d.field(0, "Volumes", "<none>");
    } else {
        d.heading(0, "Volumes");
        for v in &volumes {
            d.heading(2, &s(&v["name"]));
            if let Some(claim) = v.get("persistentVolumeClaim") {
                d.field(
                    4,
                    "Type",
                    "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
                );
                d.field(4, "ClaimName", s(&claim["claimName"]));
                d.field(4, "ReadOnly", if claim["readOnly"] == true { "true" } else { "false" });
            } else if v.get("emptyDir").is_some() {
                d.field(4, "Type", "EmptyDir (a temporary directory that shares a pod's lifetime)");
            } else if let Some(cm) = v.get("configMap") {
                d.field(4, "Type", "ConfigMap (a volume populated by a ConfigMap)");
                d.field(4, "Name", s(&cm["name"]));
            } else if let Some(secret) = v.get("secret") {
                d.field(4, "Type", "Secret (a volume populated by a Secret)");
                d.field(4, "SecretName", s(&secret["secretName"]));
            } else {
                let other = v.as_object().and_then(|m| m.keys().find(|k| *k != "name").cloned());
                d.field(4, "Type", other.unwrap_or_default());
            }
        }
    }
    d.field(0, "QoS Class", or_none(&status["qosClass"]));
    d.map(0, "Node-Selectors", &spec["nodeSelector"]);
}

fn state_lines(d: &mut Doc, label: &str, state: &Value) {
    if let Some(r) = state.get("running") {
        d.field(4, label, "Running");
        d.field(6, "Started", long_time(&r["startedAt"]));
    } else if let Some(t) = state.get("terminated") {
        d.field(4, label, "Terminated");
        d.field(6, "Reason", s(&t["reason"]));
        if let Some(m) = t["message"].as_str() {
            d.field(6, "Message", m);
        }
        d.field(6, "Exit Code", s(&t["exitCode"]));
        d.field(6, "Started", long_time(&t["startedAt"]));
        d.field(6, "Finished", long_time(&t["finishedAt"]));
    } else if let Some(w) = state.get("waiting") {
        d.field(4, label, "Waiting");
        d.field(6, "Reason", s(&w["reason"]));
        if let Some(m) = w["message"].as_str() {
            d.field(6, "Message", m);
        }
    } else {
        d.field(4, label, "Waiting");
    }
}

/// `exec [cat /tmp/ok] delay=0s timeout=1s period=10s #success=1 #failure=3`.
fn probe_text(p: &Value) -> String {
    let how = stead_engine::local::probe_handler(p);
    let n = |f: &str, default: i64| p[f].as_i64().unwrap_or(default);
    format!(
        "{how} delay={}s timeout={}s period={}s #success={} #failure={}",
        n("initialDelaySeconds", 0),
        n("timeoutSeconds", 1),
        n("periodSeconds", 10),
        n("successThreshold", 1),
        n("failureThreshold", 3)
    )
}

fn describe_workload(d: &mut Doc, kind: Kind, object: &Value, pods: &[Value]) {
    let (meta, spec, status) = (&object["metadata"], &object["spec"], &object["status"]);
    d.field(0, "CreationTimestamp", long_time(&meta["creationTimestamp"]));
    d.field(0, "Selector", match_labels(&spec["selector"]["matchLabels"]));
    d.map(0, "Labels", &meta["labels"]);
    d.map(0, "Annotations", &meta["annotations"]);
    let desired = spec["replicas"].as_i64().unwrap_or(1);
    match kind {
        Kind::Deployment => d.field(
            0,
            "Replicas",
            format!(
                "{desired} desired | {} updated | {} total | {} available | {} unavailable",
                status["updatedReplicas"].as_i64().unwrap_or(0),
                status["replicas"].as_i64().unwrap_or(0),
                status["availableReplicas"].as_i64().unwrap_or(0),
                status["unavailableReplicas"].as_i64().unwrap_or(0)
            ),
        ),
        _ => d.field(
            0,
            "Replicas",
            format!("{desired} desired | {} total", status["replicas"].as_i64().unwrap_or(0)),
        ),
    }
    let strategy = if kind == Kind::StatefulSet { &spec["updateStrategy"] } else { &spec["strategy"] };
    if kind != Kind::ReplicaSet {
        d.field(
            0,
            if kind == Kind::StatefulSet { "Update Strategy" } else { "StrategyType" },
            or_none(&strategy["type"]).replace("<none>", "RollingUpdate"),
        );
        if let Some(p) = strategy["rollingUpdate"]["partition"].as_i64() {
            d.field(2, "Partition", p.to_string());
        }
    }
    if kind == Kind::StatefulSet {
        d.field(0, "Pod Management Policy", spec["podManagementPolicy"].as_str().unwrap_or("OrderedReady"));
    }
    let count = |phase: &str| pods.iter().filter(|p| p["status"]["phase"] == phase).count();
    let waiting =
        pods.iter().filter(|p| p["status"]["phase"].as_str().is_none_or(|ph| ph == "Pending")).count();
    d.field(
        0,
        "Pods Status",
        format!(
            "{} Running / {waiting} Waiting / {} Succeeded / {} Failed",
            count("Running"),
            count("Succeeded"),
            count("Failed")
        ),
    );
    d.heading(0, "Pod Template");
    let template = &spec["template"];
    d.map(2, "Labels", &template["metadata"]["labels"]);
    d.heading(2, "Containers");
    for c in template["spec"]["containers"].as_array().into_iter().flatten() {
        d.heading(3, &s(&c["name"]));
        d.field(4, "Image", s(&c["image"]));
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}/{}", s(&p["containerPort"]), p["protocol"].as_str().unwrap_or("TCP")))
            .collect();
        d.field(4, "Port", if ports.is_empty() { "<none>".into() } else { ports.join(", ") });
    }
    if kind == Kind::StatefulSet {
        let claims = spec["volumeClaimTemplates"].as_array().cloned().unwrap_or_default();
        if claims.is_empty() {
            d.field(0, "Volume Claims", "<none>");
        } else {
            d.heading(0, "Volume Claims");
            for c in &claims {
                d.field(2, "Name", s(&c["metadata"]["name"]));
                d.field(2, "StorageClass", s(&c["spec"]["storageClassName"]));
                d.field(2, "Capacity", s(&c["spec"]["resources"]["requests"]["storage"]));
                let modes: Vec<String> =
                    c["spec"]["accessModes"].as_array().into_iter().flatten().map(s).collect();
                d.field(2, "Access Modes", modes.join(", "));
            }
        }
    }
}

fn describe_service(d: &mut Doc, svc: &Value, slices: &[Value]) {
    let (meta, spec) = (&svc["metadata"], &svc["spec"]);
    d.map(0, "Labels", &meta["labels"]);
    d.map(0, "Annotations", &meta["annotations"]);
    d.field(0, "Selector", {
        let sel = match_labels(&spec["selector"]);
        if sel.is_empty() { "<none>".to_string() } else { sel }
    });
    d.field(0, "Type", spec["type"].as_str().unwrap_or("ClusterIP"));
    d.field(0, "IP", or_none(&spec["clusterIP"]));
    let endpoints: Vec<String> = slices
        .iter()
        .flat_map(|sl| {
            let ports: Vec<i64> =
                sl["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()).collect();
            let addresses: Vec<String> = sl["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["conditions"]["ready"] != false)
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| s(&a))
                .collect();
            addresses
                .into_iter()
                .flat_map(move |a| {
                    let ports = ports.clone();
                    if ports.is_empty() {
                        vec![a]
                    } else {
                        ports.iter().map(|p| format!("{a}:{p}")).collect()
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for p in spec["ports"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("<unset>");
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        d.field(0, "Port", format!("{name}  {}/{proto}", s(&p["port"])));
        let target = if p["targetPort"].is_null() { s(&p["port"]) } else { s(&p["targetPort"]) };
        d.field(0, "TargetPort", format!("{target}/{proto}"));
        d.field(0, "Endpoints", if endpoints.is_empty() { "<none>".into() } else { endpoints.join(",") });
    }
    if spec["ports"].as_array().is_none_or(|p| p.is_empty()) {
        d.field(0, "Endpoints", if endpoints.is_empty() { "<none>".into() } else { endpoints.join(",") });
    }
    d.field(0, "Session Affinity", spec["sessionAffinity"].as_str().unwrap_or("None"));
}

/// `10s`, or `2m (x3 over 5m)` for a repeated event.
fn event_age(e: &Value, now: Timestamp) -> String {
    let since = |f: &str| {
        e[f].as_str().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| now.as_second() - t.as_second())
    };
    let last = since("lastTimestamp").or(since("eventTime")).unwrap_or(0);
    let count = e["count"].as_i64().unwrap_or(1);
    match since("firstTimestamp") {
        Some(first) if count > 1 => {
            format!("{} (x{count} over {})", human_duration(last), human_duration(first))
        }
        _ => human_duration(last),
    }
}

/// describe's `Events:` table (Type Reason Age From Message), or `Events:  <none>`.
pub fn events_section(events: &[Value], now: Timestamp) -> String {
    if events.is_empty() {
        return "Events:  <none>\n".into();
    }
    let mut rows = vec![
        ["Type", "Reason", "Age", "From", "Message"].map(String::from).to_vec(),
        ["----", "------", "----", "----", "-------"].map(String::from).to_vec(),
    ];
    for e in events {
        rows.push(vec![
            s(&e["type"]),
            s(&e["reason"]),
            event_age(e, now),
            e["source"]["component"]
                .as_str()
                .or(e["reportingComponent"].as_str())
                .unwrap_or_default()
                .to_string(),
            s(&e["message"]),
        ]);
    }
    let mut out = "Events:\n".to_string();
    for line in super::table::align_with_gap(&rows, 2).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ---- events ----

/// `kubectl events`' rows: LAST SEEN TYPE REASON OBJECT MESSAGE (NAMESPACE first with -A).
pub fn events_rows(events: &[Value], all_namespaces: bool, header: bool, now: Timestamp) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if header {
        let mut h: Vec<String> =
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"].map(String::from).to_vec();
        if all_namespaces {
            h.insert(0, "NAMESPACE".into());
        }
        rows.push(h);
    }
    for e in events {
        let o = &e["involvedObject"];
        let object =
            format!("{}/{}", o["kind"].as_str().unwrap_or_default().to_ascii_lowercase(), s(&o["name"]));
        let mut row = vec![event_age(e, now), s(&e["type"]), s(&e["reason"]), object, s(&e["message"])];
        if all_namespaces {
            row.insert(0, s(&e["metadata"]["namespace"]));
        }
        rows.push(row);
    }
    rows
}

pub async fn events(client: &Client, args: &EventsArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let mut query = Vec::new();
    if !args.all_namespaces {
        query.push(format!("namespace={}", encode(&args.namespace)));
    }
    let mut about = None;
    if let Some(f) = &args.for_object {
        let Some((kind, name)) =
            f.split_once('/').and_then(|(k, n)| Kind::lookup(k).map(|k| (k, n.to_string())))
        else {
            eprintln!("error: --for {f:?} must be TYPE/NAME of a known type (e.g. pod/web-0)");
            return Ok(exit::USAGE);
        };
        query.push(format!("for={}", encode(&format!("{}/{name}", kind.resource()))));
        about = Some((kind, name));
    }
    let wanted = |e: &Value| {
        (args.types.is_empty()
            || args.types.iter().any(|t| e["type"].as_str().is_some_and(|et| et.eq_ignore_ascii_case(t))))
            && about.as_ref().is_none_or(|(k, n)| {
                e["involvedObject"]["kind"] == k.name() && e["involvedObject"]["name"] == n.as_str()
            })
    };
    let list = match get_json(client, &format!("/events?{}", query.join("&"))).await? {
        Ok(list) => list,
        Err(c) => return Ok(c),
    };
    let items: Vec<Value> =
        list["items"].as_array().into_iter().flatten().filter(|e| wanted(e)).cloned().collect();
    let now = Timestamp::now();
    if items.is_empty() && !args.watch {
        match args.all_namespaces {
            true => eprintln!("No events found."),
            false => eprintln!("No events found in {} namespace.", args.namespace),
        }
        return Ok(exit::OK);
    }
    let mut header = true;
    if !items.is_empty() {
        write!(out, "{}", align(&events_rows(&items, args.all_namespaces, true, now)))?;
        header = false;
    }
    out.flush()?;
    if !args.watch {
        return Ok(exit::OK);
    }
    let seen: std::collections::BTreeSet<String> = items
        .iter()
        .map(|e| format!("{}/{}", s(&e["metadata"]["name"]), s(&e["metadata"]["resourceVersion"])))
        .collect();
    let watch_query: Vec<&String> = query.iter().filter(|q| q.starts_with("namespace=")).collect();
    let path =
        format!("/watch/events?{}", watch_query.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("&"));
    let response = client.send(Method::GET, &path, None).await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
        return Ok(fail(status, &body));
    }
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        buffer.extend_from_slice(&chunk);
        while let Some(i) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=i).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            let object = &event["object"];
            let id =
                format!("{}/{}", s(&object["metadata"]["name"]), s(&object["metadata"]["resourceVersion"]));
            if event["type"] == "DELETED" || seen.contains(&id) || !wanted(object) {
                continue;
            }
            let rows =
                events_rows(std::slice::from_ref(object), args.all_namespaces, header, Timestamp::now());
            write!(out, "{}", align(&rows))?;
            header = false;
            out.flush()?;
        }
    }
    Ok(exit::OK)
}

// ---- exec ----

/// The pod's name from `NAME` or `pod/NAME`.
fn pod_name(word: &str) -> anyhow::Result<String> {
    match word.split_once('/') {
        Some((kind, name)) if Kind::lookup(kind) == Some(Kind::Pod) => Ok(name.to_string()),
        Some((kind, _)) => anyhow::bail!("exec needs a pod, not {kind:?}: use pod/NAME or NAME"),
        None => Ok(word.to_string()),
    }
}

pub async fn exec(
    client: &Client,
    args: &ExecArgs,
    stdin: Vec<u8>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<i32> {
    let pod = pod_name(&args.pod)?;
    let ns = encode(&args.namespace);
    let container = match &args.container {
        Some(c) => c.clone(),
        None => {
            let object = match get_json(client, &format!("/api/pods/{ns}/{}", encode(&pod))).await? {
                Ok(o) => o,
                Err(c) => return Ok(c),
            };
            let names: Vec<String> = object["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| s(&c["name"]))
                .collect();
            let Some(first) = names.first() else {
                eprintln!("error: pod {pod} has no containers");
                return Ok(exit::INVALID);
            };
            if names.len() > 1 {
                writeln!(err, "Defaulted container {first:?} out of: {}", names.join(", "))?;
            }
            first.clone()
        }
    };
    let command = serde_json::to_string(&args.command)?;
    let path = format!("/exec/{ns}/{}/{}?command={}", encode(&pod), encode(&container), encode(&command));
    let body =
        String::from_utf8(stdin).context("standard input must be text (there is no binary stdin yet)")?;
    let response = client.send(Method::POST, &path, Some(body)).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = http_body_util::BodyExt::collect(body).await?.to_bytes();
        return Ok(fail(status, &bytes));
    }
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        buffer.extend_from_slice(&chunk);
        while buffer.len() >= 5 {
            let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
            if buffer.len() < 5 + len {
                break;
            }
            let tag = buffer[0];
            let payload: Vec<u8> = buffer.drain(..5 + len).skip(5).collect();
            match tag {
                stead_engine::daemon::inspect::STDOUT => {
                    out.write_all(&payload)?;
                    out.flush()?;
                }
                stead_engine::daemon::inspect::STDERR => {
                    err.write_all(&payload)?;
                    err.flush()?;
                }
                stead_engine::daemon::inspect::EXIT => {
                    let code: i32 = String::from_utf8_lossy(&payload).trim().parse().unwrap_or(1);
                    if code != 0 {
                        writeln!(err, "command terminated with exit code {code}")?;
                    }
                    return Ok(code);
                }
                _ => {
                    writeln!(err, "error: {}", String::from_utf8_lossy(&payload))?;
                    return Ok(exit::INVALID);
                }
            }
        }
    }
    writeln!(err, "error: the daemon closed the stream before the command's exit code")?;
    Ok(exit::INVALID)
}

// ---- port-forward ----

/// The pod to forward to: the named pod, or the first Running pod of a workload or service.
async fn forward_target(client: &Client, args: &PortForwardArgs) -> anyhow::Result<Result<Value, i32>> {
    let ns = encode(&args.namespace);
    let (kind, name) = match args.target.split_once('/') {
        Some((k, n)) => match Kind::lookup(k) {
            Some(kind) => (kind, n.to_string()),
            None => {
                eprintln!("error: the server doesn't have a resource type {k:?}");
                return Ok(Err(exit::INVALID));
            }
        },
        None => (Kind::Pod, args.target.clone()),
    };
    let object = match get_json(client, &format!("/api/{}/{ns}/{}", kind.resource(), encode(&name))).await? {
        Ok(o) => o,
        Err(c) => return Ok(Err(c)),
    };
    if kind == Kind::Pod {
        return Ok(Ok(object));
    }
    let selector = match kind {
        Kind::Service => match_labels(&object["spec"]["selector"]),
        _ => match_labels(&object["spec"]["selector"]["matchLabels"]),
    };
    if selector.is_empty() {
        eprintln!("error: {}/{name} selects no pods", kind.resource());
        return Ok(Err(exit::INVALID));
    }
    let list =
        match get_json(client, &format!("/api/pods?namespace={ns}&labelSelector={}", encode(&selector)))
            .await?
        {
            Ok(l) => l,
            Err(c) => return Ok(Err(c)),
        };
    let pod =
        list["items"].as_array().into_iter().flatten().find(|p| p["status"]["phase"] == "Running").cloned();
    match pod {
        Some(p) => Ok(Ok(p)),
        None => {
            eprintln!(
                "error: unable to forward port because no pod of {}/{name} is running",
                kind.resource()
            );
            Ok(Err(exit::INVALID))
        }
    }
}

/// `(local, remote)` from `8080:80`, `80`, `:80` (local 0: any free port) or `8080:http`.
fn parse_ports(spec: &str, pod: &Value) -> anyhow::Result<(u16, u16)> {
    let (local, remote) = match spec.split_once(':') {
        Some((l, r)) => (l, r),
        None => (spec, spec),
    };
    let remote: u16 = match remote.parse() {
        Ok(p) => p,
        Err(_) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"] == remote)
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| {
                format!("port {remote:?} is neither a number nor a named container port of the pod")
            })?,
    };
    let local: u16 = match local {
        "" => 0,
        // `http` alone: the same number both sides.
        _ if local == spec && local.parse::<u16>().is_err() => remote,
        _ => local.parse().with_context(|| format!("invalid local port {local:?}"))?,
    };
    Ok((local, remote))
}

/// Forwards until `stop` resolves (the command passes a future that never does: Ctrl-C ends it).
pub async fn port_forward(
    client: &Client,
    args: &PortForwardArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<i32> {
    let pod = match forward_target(client, args).await? {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let name = s(&pod["metadata"]["name"]);
    if pod["status"]["phase"] != "Running" {
        eprintln!(
            "error: unable to forward port because pod is not running. Current status={}",
            or_none(&pod["status"]["phase"])
        );
        return Ok(exit::INVALID);
    }
    let ip: std::net::IpAddr = match pod["status"]["podIP"].as_str().and_then(|ip| ip.parse().ok()) {
        Some(ip) => ip,
        None => {
            eprintln!("error: pod {name} has no IP address yet");
            return Ok(exit::INVALID);
        }
    };
    let mut tasks = Vec::new();
    for spec in &args.ports {
        let (local, remote) = parse_ports(spec, &pod)?;
        let listener = tokio::net::TcpListener::bind((args.address, local))
            .await
            .with_context(|| format!("unable to listen on port {local}"))?;
        let bound = listener.local_addr()?;
        println!("Forwarding from {bound} -> {remote}");
        tasks.push(tokio::spawn(forward(listener, std::net::SocketAddr::new(ip, remote))));
    }
    std::io::stdout().flush()?;
    stop.await;
    for t in tasks {
        t.abort();
    }
    Ok(exit::OK)
}

async fn forward(listener: tokio::net::TcpListener, to: std::net::SocketAddr) {
    let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            // Out of descriptors, most likely: let connections finish before accepting again.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        println!("Handling connection for {local}");
        let _ = std::io::stdout().flush();
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => eprintln!("E: an error occurred forwarding {local} -> {}: {e}", to.port()),
            }
        });
    }
}

#[cfg(test)]
mod tests;
