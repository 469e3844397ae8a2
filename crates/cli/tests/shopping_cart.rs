//! The official Python support library as a real peer under `stead up`: the shopping cart of
//! `examples/shopping-cart-python` (PyPI `cloudstate==0.1.1`) runs as the user container of a
//! StatefulService, the `stead proxy` sidecar in front of it, and a client drives it through the
//! proxy over gRPC (tonic) and over HTTP/JSON (HTTP/1.1 on a plain socket): add, remove, get, a
//! failing command. The cart then survives a killed user function, a killed sidecar and a deleted
//! pod, and another cart comes back from its snapshot in a sidecar started again, with the
//! embedded store (the example as shipped: a StatefulSet whose claim follows the pod) and with
//! PostgreSQL (the example with its store replaced).
//!
//! Needs root (pods in network namespaces), `STEAD_CLOUDSTATE_PYTHON` (a Python with the library,
//! made by `.ci/run`) and, for PostgreSQL, `STEAD_TEST_POSTGRES_URL`; skips with a message
//! otherwise, or fails under CI (see `stead-testkit`). The example's command names `/opt/cloudstate-python/bin/python` (its README); the
//! tests run a copy of the manifests with that path replaced by `STEAD_CLOUDSTATE_PYTHON`.
//!
//! Pods cannot reach the host's loopback (their own is private), so the PostgreSQL test forwards
//! the bridge's own address (the pods' gateway, inside the test's pod CIDR) to the server on
//! loopback, and the store names that address.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PYTHON_ENV: &str = "STEAD_CLOUDSTATE_PYTHON";
const POSTGRES_ENV: &str = "STEAD_TEST_POSTGRES_URL";
/// The interpreter the example's manifest names (see its README).
const MANIFEST_PYTHON: &str = "/opt/cloudstate-python/bin/python";
/// The sidecar's client port (render's `PORTS.proxy`).
const PROXY_PORT: u16 = 8013;
const SERVICE: &str = "com.example.shoppingcart.ShoppingCart";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shopping-cart-python")
}

/// The cloudstate Python, or `None` after saying why the test skips (it fails under CI instead).
fn python() -> Option<String> {
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
        return None;
    }
    stead_testkit::require_env(
        PYTHON_ENV,
        "a Python with cloudstate==0.1.1 (run .ci/run, or make the venv as \
         examples/shopping-cart-python/README.md says)",
    )
}

/// The shopping cart's messages (`examples/shopping-cart-python/proto/shoppingcart.proto`).
mod api {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AddLineItem {
        #[prost(string, tag = "1")]
        pub user_id: String,
        #[prost(string, tag = "2")]
        pub product_id: String,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(int32, tag = "4")]
        pub quantity: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RemoveLineItem {
        #[prost(string, tag = "1")]
        pub user_id: String,
        #[prost(string, tag = "2")]
        pub product_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetShoppingCart {
        #[prost(string, tag = "1")]
        pub user_id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LineItem {
        #[prost(string, tag = "1")]
        pub product_id: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(int32, tag = "3")]
        pub quantity: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Cart {
        #[prost(message, repeated, tag = "1")]
        pub items: Vec<LineItem>,
    }
}

/// A cart as (product id, name, quantity) triples, in product order.
type Items = Vec<(String, String, i32)>;

fn items(list: &[(&str, &str, i32)]) -> Items {
    list.iter().map(|(id, name, q)| (id.to_string(), name.to_string(), *q)).collect()
}

/// A gRPC client of the cart through the proxy at `addr`, every call bounded in time.
struct Grpc {
    rt: tokio::runtime::Runtime,
}

impl Grpc {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Self { rt }
    }

    fn unary<Req, Resp>(&self, addr: SocketAddr, method: &str, request: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = format!("/{SERVICE}/{method}");
        let call = async move {
            let unavailable = |e: &dyn std::fmt::Display| tonic::Status::unavailable(e.to_string());
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| unavailable(&e))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(15))
                .connect()
                .await
                .map_err(|e| unavailable(&e))?;
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| unavailable(&e))?;
            let path =
                tonic::codegen::http::uri::PathAndQuery::try_from(path).map_err(|e| unavailable(&e))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(tonic::Request::new(request), path, codec).await.map(tonic::Response::into_inner)
        };
        self.rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), call)
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer within 20 s")))
        })
    }

    fn add(
        &self,
        addr: SocketAddr,
        user: &str,
        product: &str,
        name: &str,
        quantity: i32,
    ) -> Result<(), tonic::Status> {
        let request = api::AddLineItem {
            user_id: user.into(),
            product_id: product.into(),
            name: name.into(),
            quantity,
        };
        self.unary::<_, ()>(addr, "AddItem", request)
    }

    fn remove(&self, addr: SocketAddr, user: &str, product: &str) -> Result<(), tonic::Status> {
        let request = api::RemoveLineItem { user_id: user.into(), product_id: product.into() };
        self.unary::<_, ()>(addr, "RemoveItem", request)
    }

    fn get(&self, addr: SocketAddr, user: &str) -> Result<Items, tonic::Status> {
        let cart: api::Cart = self.unary(addr, "GetCart", api::GetShoppingCart { user_id: user.into() })?;
        Ok(cart.items.into_iter().map(|i| (i.product_id, i.name, i.quantity)).collect())
    }
}

/// One HTTP/1.1 request to the proxy: `(status, JSON body)`, or why it could not be made.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let exchange = || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    };
    let raw = exchange().map_err(|e| format!("{method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) =
        text.split_once("\r\n\r\n").ok_or_else(|| format!("{method} {path}: no head in {text:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let payload = if chunked { dechunk(rest) } else { rest.to_string() };
    let json = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload:?}"))?
    };
    Ok((status, json))
}

/// The body of a chunked HTTP/1.1 message.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn http_items(addr: SocketAddr, user: &str) -> Result<Items, String> {
    let (status, body) = http(addr, "GET", &format!("/carts/{user}"), None)?;
    if status != 200 {
        return Err(format!("GET /carts/{user}: {status} {body}"));
    }
    let list = body["items"].as_array().cloned().unwrap_or_default();
    Ok(list
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (s("productId"), s("name"), i["quantity"].as_i64().unwrap_or(0) as i32)
        })
        .collect())
}

/// Polls `f` every 250 ms until it gives `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A pod of the cart, as `stead get pods -o json` shows it.
#[derive(Clone, Debug)]
struct Pod {
    name: String,
    uid: String,
    ip: IpAddr,
    json: Value,
}

impl Pod {
    fn proxy(&self) -> SocketAddr {
        SocketAddr::new(self.ip, PROXY_PORT)
    }

    fn restarts(&self, container: &str) -> u64 {
        let statuses = self.json["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
        statuses.iter().find(|s| s["name"] == container).and_then(|s| s["restartCount"].as_u64()).unwrap_or(0)
    }
}

/// Which process of the pod.
#[derive(Clone, Copy, Debug)]
enum Role {
    UserFunction,
    Sidecar,
}

/// A `stead daemon` with its own state directory, bridge and pod CIDR, and the manifests it runs.
/// Dropped however the test ends: `stead down --volumes`, then SIGTERM (SIGKILL after 60 s).
struct Cluster {
    stead: PathBuf,
    state: PathBuf,
    manifests: PathBuf,
    daemon: Child,
    log: PathBuf,
    /// `--pod-cidr` and `--bridge`, also given to `up` so that it could never start another engine
    /// on the default network.
    network: [String; 4],
}

impl Cluster {
    fn start(state: &Path, manifests: &Path, cidr: &str, bridge: &str) -> Self {
        let stead = assert_cmd::cargo::cargo_bin("stead");
        let log = state.join("daemon.log");
        let log_file = std::fs::File::create(&log).expect("daemon log file");
        let daemon = Command::new(&stead)
            .args(["daemon", "--pod-cidr", cidr, "--bridge", bridge, "--state-dir"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("stead daemon starts");
        let network = ["--pod-cidr".into(), cidr.into(), "--bridge".into(), bridge.into()];
        let cluster = Self {
            stead,
            state: state.to_path_buf(),
            manifests: manifests.to_path_buf(),
            daemon,
            log,
            network,
        };
        let socket = state.join("stead.sock");
        let listening = wait_for(Duration::from_secs(30), || socket.exists().then_some(()));
        assert!(listening.is_some(), "the daemon listens within 30 s: {}", cluster.daemon_log());
        cluster
    }

    fn daemon_log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Runs a client verb against the daemon; `(success, stdout + stderr)`.
    fn stead(&self, args: &[&str]) -> (bool, String) {
        let out = assert_cmd::Command::new(&self.stead)
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .timeout(Duration::from_secs(180))
            .output()
            .expect("stead runs");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// `stead up -d --wait`: the running daemon is found and given the manifests.
    fn up(&self) {
        let dir = self.manifests.display().to_string();
        let mut args = vec!["up", "-d", "--wait", "--timeout", "150s", "-f", &dir];
        args.extend(self.network.iter().map(String::as_str));
        let (ok, text) = self.stead(&args);
        assert!(ok, "stead up:\n{text}\ndaemon log:\n{}", self.daemon_log());
        assert!(text.contains("statefulservice/python-cart"), "{text}");
    }

    /// The one live pod of the cart once both its containers are ready, its IP known.
    fn ready_pod(&self, limit: Duration) -> Pod {
        let mut seen = Value::Null;
        let pod = wait_for(limit, || {
            let (_, text) = self.stead(&["get", "pods", "-o", "json"]);
            seen = serde_json::from_str(&text).unwrap_or(Value::Null);
            let list = seen["items"].as_array()?;
            list.iter().find_map(|p| {
                let name = p["metadata"]["name"].as_str()?;
                if !name.starts_with("python-cart") || !p["metadata"]["deletionTimestamp"].is_null() {
                    return None;
                }
                let statuses = p["status"]["containerStatuses"].as_array()?;
                let ready = statuses.len() == 2 && statuses.iter().all(|s| s["ready"] == true);
                let ip = p["status"]["podIP"].as_str()?.parse().ok()?;
                ready.then(|| Pod {
                    name: name.to_string(),
                    uid: p["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                    ip,
                    json: p.clone(),
                })
            })
        });
        pod.unwrap_or_else(|| panic!("no ready cart pod within {limit:?}: {seen:#}\n{}", self.daemon_log()))
    }

    /// The pod as it is now (for its restart counts).
    fn refresh(&self, pod: &Pod) -> Pod {
        let (_, text) = self.stead(&["get", "pod", &pod.name, "-o", "json"]);
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Pod { json, ..pod.clone() }
    }

    /// The pid of a process of `pod`: in the pod's network namespace (pinned in the state
    /// directory), running the cart program or `stead proxy`.
    fn pid(&self, pod: &Pod, role: Role) -> Option<u32> {
        use std::os::unix::fs::MetadataExt as _;
        let netns = std::fs::metadata(self.state.join("pods").join(&pod.uid).join("ns/net")).ok()?.ino();
        let wanted = format!("net:[{netns}]");
        std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let ns = std::fs::read_link(e.path().join("ns/net")).ok()?;
            if ns.to_str()? != wanted {
                return None;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let is = match role {
                Role::UserFunction => argv.iter().any(|a| a.ends_with("/shopping_cart.py")),
                Role::Sidecar => {
                    argv.first().is_some_and(|a| a.ends_with("stead"))
                        && argv.get(1).is_some_and(|a| a == "proxy")
                }
            };
            is.then_some(pid)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let dir = self.manifests.display().to_string();
        let _ = self.stead(&["down", "--volumes", "-f", &dir]);
        let _ = Command::new("kill").args(["-TERM", &self.daemon.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.daemon.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// The example's manifests in `into`, run with `python`; with `store` (documents to put first),
/// the example's StatefulStore document in `stead.yaml` is left out for them.
fn manifests(into: &Path, python: &str, store: Option<&[Value]>) {
    for file in ["stead.yaml", "program.yaml", "descriptors.yaml"] {
        let text = std::fs::read_to_string(example_dir().join(file)).expect("the example's manifests");
        let text = match file {
            "stead.yaml" => {
                assert!(text.contains(MANIFEST_PYTHON), "the example's command names {MANIFEST_PYTHON}");
                let text = text.replace(MANIFEST_PYTHON, python);
                match store {
                    None => text,
                    Some(documents) => {
                        let service: Vec<&str> = text
                            .split("\n---\n")
                            .filter(|d| !d.contains("\nkind: StatefulStore\n"))
                            .collect();
                        assert_eq!(service.len(), 1, "stead.yaml is the store and the service: {text}");
                        let mut all: Vec<String> = documents.iter().map(Value::to_string).collect();
                        all.push(service[0].to_string());
                        all.join("\n---\n")
                    }
                }
            }
            _ => text,
        };
        std::fs::write(into.join(file), text).expect("writes a manifest");
    }
}

/// Waits until the cart at `pod` reads `expected` over gRPC (commands fail while a process restarts).
fn settled(grpc: &Grpc, pod: &Pod, user: &str, expected: &Items, what: &str) {
    let mut last = None;
    let got = wait_for(Duration::from_secs(90), || match grpc.get(pod.proxy(), user) {
        Ok(cart) if &cart == expected => Some(()),
        other => {
            last = Some(other);
            None
        }
    });
    assert!(got.is_some(), "{what}: the cart is not {expected:?} within 90 s; last {last:?}");
}

/// Kills the process of `role` in `pod`; returns once a new one serves the same cart.
fn kill_and_recover(
    cluster: &Cluster,
    grpc: &Grpc,
    pod: &Pod,
    role: Role,
    container: &str,
    user: &str,
    expected: &Items,
) {
    let before = cluster.refresh(pod).restarts(container);
    let victim = cluster.pid(pod, role).unwrap_or_else(|| panic!("the {role:?} process of {}", pod.name));
    let _ = Command::new("kill").args(["-KILL", &victim.to_string()]).status();
    let replaced = wait_for(Duration::from_secs(90), || cluster.pid(pod, role).filter(|p| *p != victim));
    let Some(replaced) = replaced else {
        panic!("the {role:?} is not restarted within 90 s:\n{}", cluster.daemon_log())
    };
    eprintln!("{role:?} pid {victim} killed; pid {replaced} runs in its place");
    settled(grpc, pod, user, expected, &format!("after the {role:?} was killed"));
    assert_eq!(
        http_items(pod.proxy(), user),
        Ok(expected.clone()),
        "HTTP/JSON after the {role:?} was killed"
    );
    let after = cluster.refresh(pod).restarts(container);
    assert!(after > before, "{container}'s restartCount went from {before} to {after}");
    eprintln!("{container}'s restartCount {before} -> {after}; the cart is intact");
}

/// The whole scenario against a running cluster whose manifests are applied.
fn scenario(cluster: &Cluster, sticky_name: bool) {
    let grpc = Grpc::new();
    let pod = cluster.ready_pod(Duration::from_secs(120));
    let addr = pod.proxy();
    // Unique per run: the PostgreSQL database outlives the test.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let user = format!("ann-{}-{nanos}", std::process::id());

    // The Python process may still be starting when the proxy first answers: retry the first add.
    let first = wait_for(Duration::from_secs(60), || grpc.add(addr, &user, "apple", "Apple", 2).ok());
    assert!(first.is_some(), "the first AddItem over gRPC: {:?}", grpc.add(addr, &user, "apple", "Apple", 2));
    let pear = json!({"productId": "pear", "name": "Pear", "quantity": 1});
    assert_eq!(http(addr, "POST", &format!("/cart/{user}/items/add"), Some(&pear)), Ok((200, json!({}))));
    grpc.add(addr, &user, "apple", "Apple", 3).expect("AddItem over gRPC");
    assert_eq!(http(addr, "POST", &format!("/cart/{user}/items/pear/remove"), None), Ok((200, json!({}))));

    // The entity's failures: gRPC UNKNOWN with the library's message, HTTP 500; nothing persisted.
    let failed = grpc.remove(addr, &user, "cherry").expect_err("removing an absent item fails");
    assert_eq!(failed.code(), tonic::Code::Unknown, "{failed:?}");
    assert!(failed.message().contains("not in the cart"), "{}", failed.message());
    let (status, body) =
        http(addr, "POST", &format!("/cart/{user}/items/cherry/remove"), None).expect("HTTP");
    assert_eq!(status, 500, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("not in the cart"), "{body}");
    let negative = grpc.add(addr, &user, "plum", "Plum", -1).expect_err("a negative quantity fails");
    assert!(negative.message().contains("negative quantity"), "{}", negative.message());

    let banana = json!({"productId": "banana", "name": "Banana", "quantity": 4});
    assert_eq!(http(addr, "POST", &format!("/cart/{user}/items/add"), Some(&banana)), Ok((200, json!({}))));
    let mut expected = items(&[("apple", "Apple", 5), ("banana", "Banana", 4)]);
    assert_eq!(grpc.get(addr, &user).expect("GetCart over gRPC"), expected);
    assert_eq!(http_items(addr, &user), Ok(expected.clone()));
    assert_eq!(grpc.get(addr, "somebody-else").expect("another cart"), Vec::new(), "carts are separate");

    eprintln!("cart {user} of {} ({}) holds {expected:?}", pod.name, pod.ip);

    // The user function is killed: the container restarts and replays the journal.
    kill_and_recover(
        cluster,
        &grpc,
        &pod,
        Role::UserFunction,
        stead_render::USER_CONTAINER,
        &user,
        &expected,
    );
    grpc.add(addr, &user, "cherry", "Cherry", 1).expect("AddItem after the user function restarted");
    expected.push(("cherry".into(), "Cherry".into(), 1));

    // The sidecar is killed: its state is in the store, not in the process.
    kill_and_recover(cluster, &grpc, &pod, Role::Sidecar, stead_render::PROXY_CONTAINER, &user, &expected);
    assert_eq!(http(addr, "POST", &format!("/cart/{user}/items/cherry/remove"), None), Ok((200, json!({}))));
    expected.pop();
    assert_eq!(grpc.get(addr, &user).expect("GetCart after the sidecar restarted"), expected);

    // The pod is deleted: its replacement (with the embedded store, the same name and the same
    // claim) serves the same cart.
    let (ok, text) = cluster.stead(&["delete", "pod", &pod.name]);
    assert!(ok, "stead delete pod: {text}");
    let mut replacement = None;
    let found = wait_for(Duration::from_secs(150), || {
        let next = cluster.ready_pod(Duration::from_secs(150));
        replacement = Some(next.clone());
        (next.uid != pod.uid).then_some(next)
    });
    let next = found.unwrap_or_else(|| panic!("no replacement pod within 150 s: {replacement:?}"));
    if sticky_name {
        assert_eq!(next.name, pod.name, "a StatefulSet's pod comes back with its name");
    }
    eprintln!("pod {} ({}) deleted; {} ({}) replaces it", pod.name, pod.uid, next.name, next.uid);
    settled(&grpc, &next, &user, &expected, "after the pod was recreated");
    assert_eq!(http_items(next.proxy(), &user), Ok(expected));

    // A cart from a snapshot. The library counts events from the last one it replayed, so 4
    // adds, a restart of the user function and 1 add make it snapshot at the fifth; the sidecar
    // started again opens the cart's stream with that snapshot (the library as published could
    // not read it: every command on the cart failed from then on).
    let snapshotted = format!("{user}-snapshot");
    let mut five = Items::new();
    for n in 0..5 {
        if n == 4 {
            kill_and_recover(
                cluster,
                &grpc,
                &next,
                Role::UserFunction,
                stead_render::USER_CONTAINER,
                &snapshotted,
                &five,
            );
        }
        let (product, name) = (format!("p{n}"), format!("P{n}"));
        grpc.add(next.proxy(), &snapshotted, &product, &name, 1).expect("AddItem");
        five.push((product, name, 1));
    }
    kill_and_recover(
        cluster,
        &grpc,
        &next,
        Role::Sidecar,
        stead_render::PROXY_CONTAINER,
        &snapshotted,
        &five,
    );
}

#[test]
fn python_cart_under_stead_up_survives_restarts_with_the_embedded_store() {
    let Some(python) = python() else { return };
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("manifest dir");
    manifests(dir.path(), &python, None);
    let cluster = Cluster::start(state.path(), dir.path(), "10.244.225.0/24", "stup25");
    cluster.up();
    let (_, sts) = cluster.stead(&["get", "statefulsets"]);
    assert!(sts.contains("python-cart"), "the embedded store makes a StatefulSet: {sts}");
    scenario(&cluster, true);
    let (_, claims) = cluster.stead(&["get", "pvc"]);
    assert!(claims.contains("python-cart-0"), "the claim is the pod's: {claims}");
}

/// `postgres://user[:password]@host:port/database` as its parts.
fn postgres_url(url: &str) -> Option<(String, String, SocketAddr, String)> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    let (credentials, rest) = rest.split_once('@')?;
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (host, database) = rest.split_once('/')?;
    let database = database.split('?').next()?;
    let addr: SocketAddr = host.parse().ok()?;
    Some((user.to_string(), password.to_string(), addr, database.to_string()))
}

/// Forwards connections to `listen` (the bridge's address) to `target` (PostgreSQL on loopback),
/// on threads that end with the test process.
fn forward(listen: SocketAddr, target: SocketAddr) {
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("listens on {listen}: {e}"));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else { continue };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                pipe(c, server);
                pipe(s, client);
            }
        }
    });
}

#[test]
fn python_cart_under_stead_up_survives_restarts_with_the_postgres_store() {
    let Some(python) = python() else { return };
    let Some(url) = stead_testkit::require_env(POSTGRES_ENV, "the PostgreSQL to use (run .ci/run)") else {
        return;
    };
    let (user, password, server, database) = postgres_url(&url)
        .unwrap_or_else(|| panic!("{POSTGRES_ENV} is not postgres://user@host:port/db: {url}"));
    assert!(server.ip().is_loopback(), "{POSTGRES_ENV} must name a server on loopback: {url}");
    let state = tempfile::tempdir().expect("state dir");
    let dir = tempfile::tempdir().expect("manifest dir");
    // The bridge's address, the pods' gateway: the first address of the pod CIDR.
    let gateway = Ipv4Addr::new(10, 244, 226, 1);
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("shopping-cart-postgres".into()),
            ..Default::default()
        },
        data: Some(
            [("username", user), ("password", password), ("database", database)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    let mut secret = serde_json::to_value(&secret).expect("json");
    secret["apiVersion"] = json!("v1");
    secret["kind"] = json!("Secret");
    let store = json!({
        "apiVersion": "cloudstate.io/v1alpha1",
        "kind": "StatefulStore",
        "metadata": {"name": "shopping-cart-store"},
        "spec": {"postgres": {
            "host": gateway.to_string(),
            "port": server.port(),
            "credentials": {
                "secret": {"name": "shopping-cart-postgres"},
                "usernameKey": "username",
                "passwordKey": "password",
                "databaseKey": "database",
            },
        }},
    });
    manifests(dir.path(), &python, Some(&[secret, store]));
    let cluster = Cluster::start(state.path(), dir.path(), "10.244.226.0/24", "stup26");
    // The bridge exists once the daemon runs; the forwarder listens on its address only.
    forward(SocketAddr::new(IpAddr::V4(gateway), server.port()), server);
    cluster.up();
    let (_, deployments) = cluster.stead(&["get", "deployments"]);
    assert!(deployments.contains("python-cart"), "PostgreSQL needs no claim, so a Deployment: {deployments}");
    scenario(&cluster, false);
}

/// The descriptors the example ships (`descriptors.yaml`) are its `proto/` files compiled.
/// `STEAD_BLESS_EXAMPLE=1` rewrites the file from the protos.
#[test]
fn the_example_ships_its_protos_compiled() {
    let dir = example_dir();
    let mut compiler = protox::Compiler::new([dir.join("proto")]).expect("a compiler");
    // Every file but protobuf's own (the Python runtime has those), dependencies first.
    compiler.include_imports(false);
    let files = [
        "cloudstate/entity_key.proto",
        "google/api/http.proto",
        "google/api/annotations.proto",
        "shoppingcart_domain.proto",
        "shoppingcart.proto",
    ];
    compiler.open_files(files).expect("the protos compile");
    let compiled = compiler.encode_file_descriptor_set();
    let path = dir.join("descriptors.yaml");
    if std::env::var("STEAD_BLESS_EXAMPLE").is_ok_and(|v| v == "1") {
        let encoded = serde_json::to_value(k8s_openapi::ByteString(compiled.clone())).expect("base64");
        let text = format!(
            "# Generated from proto/: the compiled FileDescriptorSet the program loads (every file there; the\n\
             # google/protobuf ones come with the Python runtime). After editing a .proto, regenerate it:\n\
             #   STEAD_BLESS_EXAMPLE=1 cargo test -p stead-cli --test shopping_cart the_example_ships\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shopping-cart-descriptors\n\
             binaryData:\n  shoppingcart.desc: {}\n",
            encoded.as_str().expect("a string")
        );
        std::fs::write(&path, text).expect("writes descriptors.yaml");
    }
    let text = std::fs::read_to_string(&path).expect("descriptors.yaml");
    let config_map: k8s_openapi::api::core::v1::ConfigMap =
        serde_saphyr::from_str(&text).expect("descriptors.yaml is a ConfigMap");
    let shipped =
        config_map.binary_data.unwrap_or_default().remove("shoppingcart.desc").expect("shoppingcart.desc");
    assert!(
        shipped.0 == compiled,
        "descriptors.yaml is out of date with proto/: run STEAD_BLESS_EXAMPLE=1 cargo test -p stead-cli \
         --test shopping_cart the_example_ships_its_protos_compiled"
    );
}
