//! Service traffic end to end, as root: two busybox pods behind a ClusterIP Service answer on its
//! virtual IP in turn, a NodePort Service answers on 127.0.0.1, and deleting a Service closes its
//! listener and takes its address off the bridge. Own pod CIDR 10.244.220.0/24 and bridge stup20;
//! traffic goes only to that network and to loopback.
//!
//! The harness is this file's `main`: the test binary is also the container init (`<exe>
//! container-init --spec ...`), as the `stead` binary is for the real engine.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use stead_engine::Kind;
use stead_engine::local::{Local, LocalConfig};
use stead_engine::store::{DeleteOptions, ObjectKey};
use stead_node::netlink::{Netlink, NetnsRef, RtNetlink};

const BRIDGE: &str = "stup20";

fn main() {
    if std::env::args().nth(1).as_deref() == Some("container-init") {
        std::process::exit(stead_node::init::init_main());
    }
    // The libtest interface cargo test and nextest use: `--list` (nothing is `--ignored`) and
    // name filters (with `--exact`, the whole name).
    const NAME: &str = "services_answer_on_virtual_ips_and_node_ports";
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("{NAME}: test");
        }
        return;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty()
        && !filters.iter().any(|f| if exact { f.as_str() == NAME } else { NAME.contains(f.as_str()) })
    {
        return;
    }
    // Skips on a developer machine without them, fails under CI (see `stead-testkit`).
    if !stead_testkit::require_root("network namespaces, a bridge and its addresses")
        || stead_testkit::require_program("/usr/bin/busybox", "apt-get install busybox").is_none()
    {
        return;
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let outcome = rt.block_on(async { tokio::time::timeout(Duration::from_secs(120), scenario()).await });
    assert!(outcome.is_ok(), "the scenario timed out after 120 s");
    assert!(!Path::new("/sys/class/net").join(BRIDGE).exists(), "the bridge is removed");
    println!("test services_answer_on_virtual_ips_and_node_ports ... ok");
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: echo-a, labels: {app: echo}}
spec:
  containers:
  - name: nc
    image: busybox
    command: ["/usr/bin/busybox", "nc", "-ll", "-p", "8080", "-e", "/usr/bin/busybox", "echo", "echo-a"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, labels: {app: echo}}
spec:
  containers:
  - name: nc
    image: busybox
    command: ["/usr/bin/busybox", "nc", "-ll", "-p", "8080", "-e", "/usr/bin/busybox", "echo", "echo-b"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  containers:
  - name: nc
    image: busybox
    command: ["/usr/bin/busybox", "sh", "-c", "while true; do /usr/bin/busybox nc echo.default.svc.cluster.local 80; /usr/bin/busybox sleep 0.2; done"]
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: tcp, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-np}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 81, targetPort: 8080}]
"#;

/// One connection: what the backend said (trimmed), or None when nothing answered.
fn ask(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let out = out.trim().to_string();
    (!out.is_empty()).then_some(out)
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bridge_has(nl: &RtNetlink, ip: Ipv4Addr) -> bool {
    nl.addresses(&NetnsRef::Host, BRIDGE)
        .await
        .map(|a| a.iter().any(|n| n.addr() == std::net::IpAddr::V4(ip) && n.prefix_len() == 32))
        .unwrap_or(false)
}

async fn scenario() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut config = LocalConfig::new(state.path().to_owned(), std::env::current_exe().expect("exe"));
    config.pod_cidr = "10.244.220.0/24".parse().expect("cidr");
    config.bridge = BRIDGE.into();
    let local = Local::start(config).await.expect("engine starts");
    let loaded = stead_api::load_str("services.yaml", MANIFESTS);
    let manifests: Vec<_> = loaded.documents.into_iter().map(|d| d.manifest).collect();
    let keys: Vec<ObjectKey> = local.apply(&manifests).expect("apply").into_iter().map(|(k, _)| k).collect();
    let store = local.store().clone();
    let svc = ObjectKey::new(Kind::Service, "default", "echo");
    let np_svc = ObjectKey::new(Kind::Service, "default", "echo-np");
    let vip: Ipv4Addr =
        until("a cluster IP", || store.get(&svc)?["spec"]["clusterIP"].as_str()?.parse().ok()).await;
    assert!("10.244.220.192/26".parse::<ipnet::Ipv4Net>().expect("range").contains(&vip), "{vip}");
    let node_port: u16 = until("a node port", || {
        store.get(&np_svc)?["spec"]["ports"][0]["nodePort"].as_u64().and_then(|p| u16::try_from(p).ok())
    })
    .await;
    until("both pods ready", || local.readiness(&keys).ready.then_some(())).await;
    let nl = RtNetlink::new().expect("netlink");
    assert!(bridge_has(&nl, vip).await, "the VIP {vip} is on {BRIDGE}");

    // The Service's DNS name is its virtual IP.
    let object = store.get(&svc).expect("service");
    let typed: k8s_openapi::api::core::v1::Service =
        serde_json::from_value((*object).clone()).expect("typed");
    let records = stead_controller::dns::service_records(&typed, &[], "cluster.local");
    assert_eq!(records.a, vec![("echo.default.svc.cluster.local".to_string(), vip)]);

    // Round robin over both ready backends through the VIP.
    let target = SocketAddr::from((vip, 80));
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && Instant::now() < deadline {
        let addr = target;
        if let Ok(Some(who)) = tokio::task::spawn_blocking(move || ask(addr)).await {
            *seen.entry(who).or_insert(0) += 1;
        }
    }
    for _ in 0..4 {
        let who = tokio::task::spawn_blocking(move || ask(target)).await.expect("join").expect("an answer");
        *seen.entry(who).or_insert(0) += 1;
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), vec!["echo-a", "echo-b"], "{seen:?}");

    // A pod reaches the Service by its DNS name, through the VIP on its bridge.
    let log = local.runtime().log_path("default", "client", "nc", false).expect("client log");
    until("the client pod to hear both backends", || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("echo-a") && text.contains("echo-b")).then_some(())
    })
    .await;

    // The NodePort Service on loopback.
    let np = SocketAddr::from((Ipv4Addr::LOCALHOST, node_port));
    let who = tokio::task::spawn_blocking(move || ask(np)).await.expect("join");
    assert!(matches!(who.as_deref(), Some("echo-a" | "echo-b")), "{who:?}");

    // Deleting the Service closes its listener and removes its address.
    store.delete(&svc, DeleteOptions::default()).expect("delete");
    let deadline = Instant::now() + Duration::from_secs(20);
    while bridge_has(&nl, vip).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!bridge_has(&nl, vip).await, "the VIP {vip} is gone from {BRIDGE}");
    assert!(
        TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_err(),
        "nothing listens on {target}"
    );
    let who = tokio::task::spawn_blocking(move || ask(np)).await.expect("join");
    assert!(who.is_some(), "the other Service still answers");

    local.shutdown().await;
    assert!(TcpStream::connect_timeout(&np, Duration::from_millis(500)).is_err(), "the node port is closed");
}
