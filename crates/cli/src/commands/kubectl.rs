//! The daemon's client verbs, as kubectl's: `apply -f`, `get`, `delete`, `logs`. Each parses its
//! arguments, sends requests over the socket and prints; exit 0 on success, 1 on any error
//! (`Error from server (NotFound): pods "x" not found`).

use super::client::{Client, block_on, encode, failure_line, next_chunk};
use super::logs::LogsArgs;
use super::state::DaemonAddr;
use super::table::{self, TableOptions};
use crate::{diagnostics, exit, inputs};
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use hyper::{Method, StatusCode};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use stead_engine::Kind;

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A file, a directory (read recursively), or - for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetOutput {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The resource type (pods, po, statefulsets, sts, svc, pvc, ssvc, ...)
    pub resource: String,
    /// One object's name
    pub name: Option<String>,
    /// The namespace
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// A label selector (app=web, tier!=db, ready, !gone)
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format
    #[arg(short, long, value_enum)]
    pub output: Option<GetOutput>,
    /// After listing, watch for changes
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The resource type
    pub resource: String,
    /// The objects' names
    #[arg(required = true)]
    pub names: Vec<String>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Seconds a pod gets to stop (0 with --force: at once)
    #[arg(long, value_name = "SECONDS")]
    pub grace_period: Option<i64>,
    /// Remove the objects now, without waiting for their pods to stop
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub addr: DaemonAddr,
}

pub fn run_apply(args: &ApplyArgs) -> anyhow::Result<i32> {
    block_on(apply(&args.addr.client(), args, &mut std::io::stdout()))
}

pub fn run_get(args: &GetArgs) -> anyhow::Result<i32> {
    block_on(get(&args.addr.client(), args, &mut std::io::stdout()))
}

pub fn run_delete(args: &DeleteArgs) -> anyhow::Result<i32> {
    block_on(delete(&args.addr.client(), args, &mut std::io::stdout()))
}

pub fn run_logs(args: &LogsArgs) -> anyhow::Result<i32> {
    block_on(logs(&args.addr.client(), args, &mut std::io::stdout()))
}

fn fail(status: StatusCode, body: &[u8]) -> i32 {
    eprintln!("{}", failure_line(status, body));
    exit::INVALID
}

/// Validates here (problems drawn with their source), then sends each file to the daemon.
pub async fn apply(client: &Client, args: &ApplyArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    Ok(match apply_objects(client, args, out).await? {
        Ok(_) => exit::OK,
        Err(code) => code,
    })
}

/// The files to send, one request each (the daemon locates problems by file), in the order the
/// engine applies kinds within one: a file of StatefulStores before the services naming them. A
/// file goes by the earliest kind it holds (one with a Namespace and a service goes first).
fn apply_order(documents: &[stead_api::load::Document]) -> Vec<std::sync::Arc<stead_api::SourceFile>> {
    let mut sources: Vec<(u8, std::sync::Arc<stead_api::SourceFile>)> = Vec::new();
    for d in documents {
        let rank = stead_engine::kinds::Kind::from_name(d.manifest.kind())
            .map_or(u8::MAX, stead_engine::local::apply_rank);
        match sources.iter_mut().find(|(_, s)| std::sync::Arc::ptr_eq(s, &d.source)) {
            Some((first, _)) => *first = (*first).min(rank),
            None => sources.push((rank, d.source.clone())),
        }
    }
    sources.sort_by_key(|(rank, _)| *rank);
    sources.into_iter().map(|(_, source)| source).collect()
}

/// `apply`, returning what was applied (`statefulset.apps/web`, ...) or the exit code of a
/// failure already reported.
/// One object an apply created or changed: `statefulset.apps/web` and its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub object: String,
    pub namespace: String,
}

pub async fn apply_objects(
    client: &Client,
    args: &ApplyArgs,
    out: &mut impl Write,
) -> anyhow::Result<Result<Vec<Applied>, i32>> {
    let loaded = inputs::load_and_validate(&args.files);
    if diagnostics::report(&loaded.problems) > 0 {
        return Ok(Err(exit::INVALID));
    }
    let sources = apply_order(&loaded.documents);
    let mut objects = Vec::new();
    for source in sources {
        let path = format!("/apply?filename={}", encode(source.name()));
        let (status, body) = client.call(Method::POST, &path, Some(source.text().to_string())).await?;
        if status == StatusCode::UNPROCESSABLE_ENTITY
            && let Ok(Value::Array(problems)) = serde_json::from_slice::<Value>(&body)
        {
            for p in &problems {
                eprintln!(
                    "{}: {}",
                    p["severity"].as_str().unwrap_or("error"),
                    p["text"].as_str().unwrap_or_default()
                );
            }
            return Ok(Err(exit::INVALID));
        }
        if !status.is_success() {
            return Ok(Err(fail(status, &body)));
        }
        let applied: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
        for a in applied.as_array().into_iter().flatten() {
            let object = a["object"].as_str().unwrap_or_default();
            writeln!(out, "{} {}", object, a["result"].as_str().unwrap_or_default())?;
            let namespace = a["namespace"].as_str().unwrap_or_default().to_string();
            objects.push(Applied { object: object.to_string(), namespace });
        }
    }
    Ok(Ok(objects))
}

fn print_objects(
    kind: Kind,
    objects: &[Value],
    output: Option<GetOutput>,
    all_namespaces: bool,
    header: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match output {
        Some(GetOutput::Name) => {
            for o in objects {
                writeln!(out, "{}", table::resource_name(o))?;
            }
        }
        Some(GetOutput::Json) => {
            for o in objects {
                writeln!(out, "{}", serde_json::to_string_pretty(o)?)?;
            }
        }
        Some(GetOutput::Yaml) => {
            for o in objects {
                writeln!(out, "---\n{}", serde_saphyr::to_string(o).context("writing YAML")?.trim_end())?;
            }
        }
        None | Some(GetOutput::Wide) => {
            let opts = TableOptions { wide: output == Some(GetOutput::Wide), all_namespaces, header };
            write!(out, "{}", table::render(kind, objects, opts, Timestamp::now()))?;
        }
    }
    Ok(())
}

pub async fn get(client: &Client, args: &GetArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let resource = encode(&args.resource);
    let mut query = Vec::new();
    if !args.all_namespaces {
        query.push(format!("namespace={}", encode(&args.namespace)));
    }
    if let Some(selector) = &args.selector {
        query.push(format!("labelSelector={}", encode(selector)));
    }
    let query = query.join("&");
    let (status, body) = match &args.name {
        Some(name) => {
            let path = format!("/api/{resource}/{}/{}", encode(&args.namespace), encode(name));
            client.call(Method::GET, &path, None).await?
        }
        None => client.call(Method::GET, &format!("/api/{resource}?{query}"), None).await?,
    };
    if !status.is_success() {
        return Ok(fail(status, &body));
    }
    let reply: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
    let kind =
        Kind::lookup(&args.resource).context("the daemon served a resource this client does not know")?;
    let (objects, list) = match &args.name {
        Some(_) => (vec![reply.clone()], false),
        None => (reply["items"].as_array().cloned().unwrap_or_default(), true),
    };
    if list && objects.is_empty() && !args.watch {
        match args.all_namespaces {
            true => eprintln!("No resources found"),
            false => eprintln!("No resources found in {} namespace.", args.namespace),
        }
    } else if list && args.output == Some(GetOutput::Json) {
        writeln!(out, "{}", serde_json::to_string_pretty(&reply)?)?;
    } else if list && args.output == Some(GetOutput::Yaml) {
        writeln!(out, "{}", serde_saphyr::to_string(&reply).context("writing YAML")?.trim_end())?;
    } else {
        print_objects(kind, &objects, args.output, args.all_namespaces, true, out)?;
    }
    out.flush()?;
    if !args.watch {
        return Ok(exit::OK);
    }
    // The watch starts with every current object, already printed: skip those.
    let mut seen: Vec<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap_or_default().into(),
                o["metadata"]["resourceVersion"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let response = client.send(Method::GET, &format!("/watch/{resource}?{query}"), None).await?;
    if !response.status().is_success() {
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
        return Ok(fail(status, &body));
    }
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut header = objects.is_empty();
    while let Some(chunk) = next_chunk(&mut body).await? {
        buffer.extend_from_slice(&chunk);
        while let Some(i) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=i).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            let object = &event["object"];
            if args.name.as_deref().is_some_and(|n| object["metadata"]["name"] != n) {
                continue;
            }
            let id = (
                object["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                object["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string(),
            );
            if event["type"] == "ADDED" && seen.contains(&id) {
                seen.retain(|s| *s != id);
                continue;
            }
            print_objects(kind, std::slice::from_ref(object), args.output, args.all_namespaces, header, out)?;
            header = false;
            out.flush()?;
        }
    }
    Ok(exit::OK)
}

pub async fn delete(client: &Client, args: &DeleteArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let Some(kind) = Kind::lookup(&args.resource) else {
        eprintln!("error: the server doesn't have a resource type {:?}", args.resource);
        return Ok(exit::INVALID);
    };
    let mut query = Vec::new();
    if let Some(g) = args.grace_period {
        query.push(format!("gracePeriodSeconds={g}"));
    }
    if args.force {
        query.push("force=true".to_string());
    }
    let mut code = exit::OK;
    for name in &args.names {
        let path = format!(
            "/api/{}/{}/{}?{}",
            kind.resource(),
            encode(&args.namespace),
            encode(name),
            query.join("&")
        );
        let (status, body) = client.call(Method::DELETE, &path, None).await?;
        if !status.is_success() {
            code = fail(status, &body);
            continue;
        }
        if args.force {
            eprintln!(
                "warning: immediate deletion does not wait for confirmation that the running resource has been terminated"
            );
        }
        writeln!(out, "{} {name:?} deleted", kind.name().to_ascii_lowercase())?;
    }
    Ok(code)
}

pub async fn logs(client: &Client, args: &LogsArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    let pod = match args.pod.as_deref().map(|p| p.split_once('/').map_or(("pod", p), |(k, n)| (k, n))) {
        Some((kind, name)) if Kind::lookup(kind) == Some(Kind::Pod) => name.to_string(),
        _ => return super::logs::merged(client, args, out).await,
    };
    if args.prefix || args.all_containers {
        return super::logs::merged(client, args, out).await;
    }
    let ns = encode(&args.namespace);
    let container = match &args.container {
        Some(c) => c.clone(),
        None => {
            let (status, body) =
                client.call(Method::GET, &format!("/api/pods/{ns}/{}", encode(&pod)), None).await?;
            if !status.is_success() {
                return Ok(fail(status, &body));
            }
            let pod: Value = serde_json::from_slice(&body).context("reading the daemon's reply")?;
            let names: Vec<String> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect();
            let Some(first) = names.first() else {
                eprintln!("error: pod {pod} has no containers");
                return Ok(exit::INVALID);
            };
            if names.len() > 1 {
                eprintln!("Defaulted container {first:?} out of: {}", names.join(", "));
            }
            first.clone()
        }
    };
    let path = format!(
        "/logs/{ns}/{}/{}?{}&timestamps={}",
        encode(&pod),
        encode(&container),
        super::logs::query(args)?,
        args.timestamps
    );
    let response = client.send(Method::GET, &path, None).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = http_body_util::BodyExt::collect(body).await?.to_bytes();
        return Ok(fail(status, &bytes));
    }
    while let Some(chunk) = next_chunk(&mut body).await? {
        out.write_all(&chunk)?;
        out.flush()?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use stead_engine::daemon::{ApiState, bind_private, serve_on, socket_path};
    use stead_engine::runtime::{FakeRuntime, Runtime};
    use stead_engine::{Engine, EngineConfig, Store};

    const WEB: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  \
serviceName: web\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        \
app: web\n    spec:\n      containers:\n        - name: app\n          image: busybox\n";

    fn addr(dir: &std::path::Path) -> DaemonAddr {
        DaemonAddr { state_dir: Some(dir.to_path_buf()) }
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verbs_talk_to_a_daemon_over_its_socket() {
        tokio::time::timeout(Duration::from_secs(30), async {
            let dir = tempfile::tempdir().unwrap();
            let runtime: Arc<dyn Runtime> = Arc::new(FakeRuntime::new(true));
            let engine = Engine::new(Store::in_memory(), runtime, EngineConfig::default());
            let (_stop_engine, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(engine.clone().run(rx));
            let listener = bind_private(&socket_path(dir.path())).unwrap();
            let state = ApiState { store: engine.store().clone(), log_paths: None };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve_on(listener, state, async {
                let _ = stopped.await;
            }));
            let client = addr(dir.path()).client();

            let file = dir.path().join("web.yaml");
            std::fs::write(&file, WEB).unwrap();
            let apply_args = ApplyArgs { files: vec![file], addr: addr(dir.path()) };
            let mut out = Vec::new();
            assert_eq!(apply(&client, &apply_args, &mut out).await.unwrap(), exit::OK);
            assert_eq!(text(out), "statefulset/web created\n");

            let get_args = |resource: &str, name: Option<&str>, output: Option<GetOutput>| GetArgs {
                resource: resource.into(),
                name: name.map(str::to_string),
                namespace: "default".into(),
                all_namespaces: false,
                selector: Some("app=web".into()),
                output,
                watch: false,
                addr: addr(dir.path()),
            };
            for _ in 0..500 {
                if engine.store().list(Kind::Pod, None).len() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut out = Vec::new();
            assert_eq!(
                get(&client, &get_args("po", None, Some(GetOutput::Name)), &mut out).await.unwrap(),
                0
            );
            assert_eq!(text(out), "pod/web-0\npod/web-1\n");
            let mut out = Vec::new();
            get(&client, &get_args("pods", None, None), &mut out).await.unwrap();
            let table = text(out);
            assert!(table.starts_with("NAME    READY   STATUS"), "{table}");
            assert!(table.contains("\nweb-1   "), "{table}");
            let mut out = Vec::new();
            get(&client, &get_args("sts", Some("web"), Some(GetOutput::Json)), &mut out).await.unwrap();
            let sts: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(sts["spec"]["replicas"], 2);
            let mut out = Vec::new();
            assert_eq!(
                get(&client, &get_args("pods", Some("nope"), None), &mut out).await.unwrap(),
                exit::INVALID
            );

            let delete_args = DeleteArgs {
                resource: "sts".into(),
                names: vec!["web".into(), "nope".into()],
                namespace: "default".into(),
                grace_period: None,
                force: false,
                addr: addr(dir.path()),
            };
            let mut out = Vec::new();
            assert_eq!(
                delete(&client, &delete_args, &mut out).await.unwrap(),
                exit::INVALID,
                "nope is not found"
            );
            assert_eq!(text(out), "statefulset \"web\" deleted\n");
            assert!(engine.store().list(Kind::StatefulSet, None).is_empty());

            let logs_args = LogsArgs {
                pod: Some("ghost".into()),
                container: None,
                namespace: "default".into(),
                selector: None,
                all_containers: false,
                since: None,
                since_time: None,
                timestamps: false,
                prefix: false,
                follow: false,
                tail: None,
                previous: false,
                addr: addr(dir.path()),
            };
            assert_eq!(logs(&client, &logs_args, &mut Vec::new()).await.unwrap(), exit::INVALID);

            stop.send(()).unwrap();
            server.await.unwrap().unwrap();
            // No daemon: the error names the socket and how to start one.
            let e =
                get(&client, &get_args("pods", None, None), &mut Vec::new()).await.unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("no stead daemon at {}: start one with", client.socket.display())),
                "{e}"
            );
        })
        .await
        .expect("test timed out");
    }

    #[test]
    fn server_failures_print_as_kubectl() {
        let body = br#"{"kind":"Status","reason":"NotFound","message":"pods \"x\" not found","code":404}"#;
        assert_eq!(
            failure_line(StatusCode::NOT_FOUND, body),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let unknown =
            br#"{"reason":"UnknownResource","message":"the server doesn't have a resource type \"podz\""}"#;
        assert_eq!(
            failure_line(StatusCode::NOT_FOUND, unknown),
            "error: the server doesn't have a resource type \"podz\""
        );
    }
}

#[cfg(test)]
mod order_tests {
    use super::apply_order;

    #[test]
    fn files_are_sent_stores_first_whatever_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        write(
            "a-service.yaml",
            "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {name: cart}\nspec:\n  datastore: {name: journal}\n  containers: [{image: cart:1}]\n",
        );
        write(
            "b-store.yaml",
            "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata: {name: journal}\nspec: {inMemory: true}\n",
        );
        let loaded = stead_api::load::load_paths(&[dir.path().to_path_buf()]);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let names: Vec<String> = apply_order(&loaded.documents)
            .iter()
            .map(|s| std::path::Path::new(s.name()).file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["b-store.yaml", "a-service.yaml"]);
    }
}
