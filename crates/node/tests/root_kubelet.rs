//! End-to-end tests of the pod loop ([`Kubelet`]) with real namespaces, processes, probes and cgroups.
//! They need root: without it each test prints why it is skipped and returns, or fails under CI
//! (see `stead-testkit`).
//!
//! Each test has its own state directory, bridge (`skt<N>`) and /24 inside 10.244.0.0/16, so they can
//! run in parallel; each checks that its pods leave nothing behind. Traffic goes only between the
//! host and the pods' namespaces.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_node::env::MapLookup;
use stead_node::kubelet::{Kubelet, KubeletConfig};

mod common;
use common::{pod, wait_status};

const INIT: &str = env!("CARGO_BIN_EXE_stead-container-init");

/// Whether the test may run: it needs root (skips on a developer machine, fails under CI).
fn needs_root() -> bool {
    stead_testkit::require_root("network, UTS and mount namespaces, cgroups")
}

struct Node {
    kubelet: Kubelet,
    state: tempfile::TempDir,
    bridge: String,
}

fn config(state: &Path, n: u8) -> KubeletConfig {
    KubeletConfig {
        state_dir: state.to_owned(),
        node_name: "test-node".into(),
        pod_cidr: format!("10.244.{n}.0/24").parse().expect("cidr"),
        bridge: format!("skt{n}"),
        cluster_domain: "cluster.local".into(),
        dns_server: None,
        init_program: INIT.into(),
        init_args: vec![],
        // These tests run host programs.
        default_runtime: stead_node::runtime_class::ContainerRuntime::HostProcess,
        registry_env: stead_node::images::RegistryEnv::Process,
    }
}

async fn node(n: u8) -> Node {
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(state.path(), n);
    let bridge = cfg.bridge.clone();
    let kubelet = Kubelet::start(cfg).await.expect("kubelet starts");
    Node { kubelet, state, bridge }
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn lookup() -> Arc<MapLookup> {
    Arc::new(MapLookup::default())
}

fn condition(s: &PodStatus, type_: &str) -> bool {
    s.conditions.iter().flatten().any(|c| c.type_ == type_ && c.status == "True")
}

fn container<'a>(s: &'a PodStatus, name: &str) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    s.init_container_statuses
        .iter()
        .flatten()
        .chain(s.container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .expect("container status")
}

fn pod_ip(s: &PodStatus) -> Ipv4Addr {
    s.pod_ip.as_deref().and_then(|ip| ip.parse().ok()).expect("pod ip")
}

/// Every pid in the pod's pids cgroups.
fn pod_pids(uid: &str) -> Vec<i32> {
    let dir = Path::new("/sys/fs/cgroup/pids/stead").join(uid);
    let Ok(rd) = std::fs::read_dir(&dir) else { return vec![] };
    rd.filter_map(Result::ok).flat_map(|e| stead_node::cgroups::procs(&e.path())).collect()
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("Z");
    !stat.is_empty() && !state.starts_with('Z') && !state.starts_with('X')
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let needle = dir.to_string_lossy().into_owned();
    info.lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn log_text(k: &Kubelet, pod: &str, c: &str, previous: bool) -> String {
    k.log_path("e2e", pod, c, previous).and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
}

/// Kills the pod and checks that nothing of it is left: processes, cgroups, veth, mounts, pod dir.
async fn kill_and_check(n: &Node, p: &Pod, grace: Option<Duration>) {
    let name = p.metadata.name.clone().unwrap_or_default();
    let pids = pod_pids(&uid(p));
    n.kubelet.kill_pod("e2e", &name, grace).await.expect("kill");
    let survivors: Vec<i32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert_eq!(survivors, Vec::<i32>::new(), "processes of pod {name} survived");
    for h in ["pids", "memory", "freezer"] {
        let d = Path::new("/sys/fs/cgroup").join(h).join("stead").join(uid(p));
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let veth = stead_node::sandbox::host_veth_name(p);
    assert!(!Path::new("/sys/class/net").join(&veth).exists(), "veth {veth} left behind");
    let pod_dir = n.state.path().join("pods").join(uid(p));
    assert!(!pod_dir.exists(), "{} left behind", pod_dir.display());
    assert_eq!(mounts_under(&pod_dir), Vec::<String>::new(), "mounts left behind");
}

/// Runs a test body against a fresh node; the node is shut down whatever the body did (a failed
/// assertion included), then checked for leftovers, then the body's panic is raised again.
fn run<F: Future<Output = ()>>(subnet: u8, body: impl FnOnce(Arc<Node>) -> F) {
    use futures::FutureExt;
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let n = Arc::new(node(subnet).await);
        let result =
            std::panic::AssertUnwindSafe(tokio::time::timeout(Duration::from_secs(120), body(n.clone())))
                .catch_unwind()
                .await;
        let shut = tokio::time::timeout(Duration::from_secs(60), n.kubelet.shutdown()).await;
        match result {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(_)) => panic!("test timed out"),
            Ok(Ok(())) => {}
        }
        assert!(shut.is_ok(), "shutdown timed out");
        assert!(!Path::new("/sys/class/net").join(&n.bridge).exists(), "bridge left behind");
        assert_eq!(mounts_under(n.state.path()), Vec::<String>::new());
    });
}

#[test]
fn init_then_two_apps_ready_through_http_readiness() {
    if !needs_root() {
        return;
    }
    run(21, |n| async move {
        let mut updates = n.kubelet.subscribe();
        let p = pod(
            "web",
            json!({
                "terminationGracePeriodSeconds": 5,
                "initContainers": [{"name": "prepare", "image": "busybox",
                    "command": ["sh", "-c", "echo initialized by $(POD_NAME) > /mnt/index.html"],
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "www", "mountPath": "/mnt"}]}],
                "containers": [
                    {"name": "server", "image": "python",
                     "command": ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/mnt"],
                     "ports": [{"name": "http", "containerPort": 8080}],
                     "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 30},
                     "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
                     "volumeMounts": [{"name": "www", "mountPath": "/mnt"}]},
                    {"name": "sidecar", "image": "busybox",
                     "command": ["sh", "-c", "echo node=$NODE host=$(hostname); exec sleep 1000"],
                     "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}
                ],
                "volumes": [{"name": "www", "emptyDir": {}}]
            }),
        );
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync");
        // A second sync of the same uid does nothing.
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync again");
        let st = wait_status(&n.kubelet, "web", Duration::from_secs(30), |s| condition(s, "Ready")).await;
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(
            condition(&st, "Initialized")
                && condition(&st, "ContainersReady")
                && condition(&st, "PodScheduled")
        );
        let init = container(&st, "prepare");
        let term = init.state.as_ref().and_then(|s| s.terminated.as_ref()).expect("init terminated");
        assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));
        assert!(container(&st, "server").ready && container(&st, "sidecar").ready);
        assert_eq!(container(&st, "server").started, Some(true), "the startup probe succeeded");
        let ip = pod_ip(&st);
        let body = http_get(ip, 8080, "/index.html").expect("GET from the host");
        assert!(body.ends_with("initialized by web\n"), "{body}");
        assert!(log_text(&n.kubelet, "web", "sidecar", false).contains("node=test-node host=web"));
        assert_eq!(n.kubelet.log_path("e2e", "web", "sidecar", true), None, "no previous run");
        // Updates were broadcast, and the last one so far says Ready.
        let mut saw_ready = false;
        while let Ok(u) = updates.try_recv() {
            assert_eq!((u.namespace.as_str(), u.name.as_str(), u.uid.clone()), ("e2e", "web", uid(&p)));
            saw_ready |= condition(&u.status, "Ready");
        }
        assert!(saw_ready, "a Ready update was broadcast");
        // exec runs inside the container: its mounts and hostname.
        let out = n
            .kubelet
            .exec_command(
                "e2e",
                "web",
                "server",
                &["sh".into(), "-c".into(), "hostname; cat /mnt/index.html".into()],
            )
            .expect("exec")
            .stdout(std::process::Stdio::piped())
            .output()
            .await
            .expect("exec runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "web\ninitialized by web\n");
        kill_and_check(&n, &p, None).await;
        let last = n.kubelet.pod_status("e2e", "web").expect("last status stays");
        assert!(!condition(&last, "Ready"));
    });
}

#[test]
fn liveness_failure_restarts_the_container() {
    if !needs_root() {
        return;
    }
    run(22, |n| async move {
        let p = pod(
            "live",
            json!({
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": "busybox",
                    "command": ["sh", "-c", "echo run; touch /mnt/healthy; sleep 2; rm /mnt/healthy; exec sleep 1000"],
                    "livenessProbe": {"exec": {"command": ["test", "-f", "/mnt/healthy"]},
                                      "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 1},
                    "volumeMounts": [{"name": "scratch", "mountPath": "/mnt"}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}}]
            }),
        );
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync");
        // Killed by the liveness probe, then restarted after the 10 s backoff.
        let st = wait_status(&n.kubelet, "live", Duration::from_secs(40), |s| {
            let c = container(s, "app");
            c.restart_count == 1 && c.state.as_ref().is_some_and(|st| st.running.is_some())
        })
        .await;
        let last = container(&st, "app").last_state.clone().and_then(|s| s.terminated).expect("last state");
        // SIGTERM from the stop ends the shell (143); it had run for about two seconds.
        assert_eq!((last.exit_code, last.signal, last.reason.as_deref()), (143, Some(15), Some("Error")));
        assert!(log_text(&n.kubelet, "live", "app", true).contains("run"), "previous log kept");
        kill_and_check(&n, &p, Some(Duration::from_secs(1))).await;
    });
}

#[test]
fn crash_loop_shows_backoff_and_reasons() {
    if !needs_root() {
        return;
    }
    run(23, |n| async move {
        let crash = pod(
            "crash",
            json!({"containers": [{"name": "app", "command": ["sh", "-c", "echo crashing; exit 3"]}]}),
        );
        let done = pod(
            "done",
            json!({"restartPolicy": "Never", "containers": [{"name": "app", "command": ["true"]}]}),
        );
        n.kubelet.sync_pod(crash.clone(), lookup()).expect("sync");
        n.kubelet.sync_pod(done.clone(), lookup()).expect("sync");
        let st = wait_status(&n.kubelet, "crash", Duration::from_secs(20), |s| {
            container(s, "app")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("CrashLoopBackOff")
        })
        .await;
        let c = container(&st, "app");
        let last = c.last_state.clone().and_then(|s| s.terminated).expect("last state");
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
        let message = c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.message.clone());
        assert!(
            message
                .is_some_and(|m| m.starts_with("back-off 10s restarting failed container=app pod=crash_e2e"))
        );
        let shown = Pod { status: Some(st), ..crash.clone() };
        assert_eq!(stead_node::status::status_column(&shown), "CrashLoopBackOff");
        assert!(log_text(&n.kubelet, "crash", "app", false).contains("crashing"));
        let st = wait_status(&n.kubelet, "done", Duration::from_secs(20), |s| {
            s.phase.as_deref() == Some("Succeeded")
        })
        .await;
        let t = container(&st, "app").state.clone().and_then(|s| s.terminated).expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        kill_and_check(&n, &crash, None).await;
        kill_and_check(&n, &done, None).await;
    });
}

#[test]
fn kill_escalates_to_sigkill_and_leaves_no_orphan() {
    if !needs_root() {
        return;
    }
    run(24, |n| async move {
        // The main process ignores SIGTERM; a child leaves the process group with setsid.
        let script = "trap '' TERM; setsid sh -c \"trap '' TERM; exec sleep 1000\" & echo started; \
                      while :; do sleep 0.1; done";
        let p = pod(
            "stubborn",
            json!({
                "terminationGracePeriodSeconds": 30,
                "containers": [{"name": "app", "command": ["sh", "-c", script],
                    "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop > /mnt/marker"]}},
                                  "postStart": {"exec": {"command": ["sh", "-c", "sleep 1; echo poststart > /mnt/post"]}}},
                    "volumeMounts": [{"name": "data", "mountPath": "/mnt"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-stubborn"}}]
            }),
        );
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync");
        let post = n.state.path().join("volumes/e2e/data-stubborn/post");
        // As in Kubernetes, the container stays Waiting (ContainerCreating) while its postStart hook
        // (which sleeps 1 s, then writes its file) runs, and is Running only once the hook is done.
        let saw_creating = std::cell::Cell::new(false);
        let st = wait_status(&n.kubelet, "stubborn", Duration::from_secs(20), |s| {
            let Some(cs) = s.container_statuses.iter().flatten().find(|c| c.name == "app") else {
                return false;
            };
            let state = cs.state.clone().unwrap_or_default();
            if let Some(w) = &state.waiting
                && w.reason.as_deref() == Some("ContainerCreating")
                && log_text(&n.kubelet, "stubborn", "app", false).contains("started")
            {
                saw_creating.set(true);
            }
            if state.running.is_some() {
                assert!(post.exists(), "Running before the postStart hook finished: {s:#?}");
            }
            condition(s, "Ready")
        })
        .await;
        assert!(saw_creating.get(), "the running process was shown ContainerCreating during postStart");
        let running = container(&st, "app").state.clone().and_then(|s| s.running).expect("running");
        // startedAt is the process's start, so it precedes the hook's file (written 1 s later).
        let started = running.started_at.expect("startedAt").0;
        let written = std::fs::metadata(&post).and_then(|m| m.modified()).expect("hook file mtime");
        let written = written.duration_since(std::time::UNIX_EPOCH).expect("mtime after 1970");
        let written_ms = i64::try_from(written.as_millis()).expect("mtime in range");
        assert!(
            started.as_millisecond() + 500 < written_ms,
            "startedAt {started} is the process's start, before the hook wrote its file at {written_ms} ms"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log_text(&n.kubelet, "stubborn", "app", false).contains("started")
            || pod_pids(&uid(&p)).len() < 3
            || !post.exists()
        {
            assert!(Instant::now() < deadline, "the container did not start its children");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = Instant::now();
        kill_and_check(&n, &p, Some(Duration::from_secs(1))).await;
        let took = t.elapsed();
        assert!(took >= Duration::from_secs(1), "waited the grace period ({took:?})");
        assert!(took < Duration::from_secs(20), "did not wait the pod's 30 s ({took:?})");
        let claim: PathBuf = n.state.path().join("volumes/e2e/data-stubborn/marker");
        assert_eq!(std::fs::read_to_string(&claim).expect("preStop ran; the claim stays"), "prestop\n");
        assert_eq!(std::fs::read_to_string(&post).expect("postStart ran"), "poststart\n");
        let st = n.kubelet.pod_status("e2e", "stubborn").expect("status");
        let term = container(&st, "app").state.clone().and_then(|s| s.terminated).expect("terminated");
        assert_eq!(term.exit_code, 137, "SIGKILL after the grace period");
    });
}

#[test]
fn failed_post_start_hook_kills_the_container() {
    if !needs_root() {
        return;
    }
    run(29, |n| async move {
        // The hook fails: the container is killed (FailedPostStartHook), never shown Running, and
        // restartPolicy Never ends the pod Failed.
        let p = pod(
            "badhook",
            json!({
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "command": ["sh", "-c", "exec sleep 1000"],
                    "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "sleep 0.3; exit 3"]}}}}]
            }),
        );
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync");
        let st = wait_status(&n.kubelet, "badhook", Duration::from_secs(20), |s| {
            let running = s
                .container_statuses
                .iter()
                .flatten()
                .any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()));
            assert!(!running, "shown Running although its postStart hook failed: {s:#?}");
            s.phase.as_deref() == Some("Failed")
        })
        .await;
        let c = container(&st, "app");
        let t = c.state.clone().and_then(|s| s.terminated).expect("terminated");
        assert_ne!(t.exit_code, 0, "killed: {t:?}");
        assert_eq!(c.restart_count, 0);
        kill_and_check(&n, &p, None).await;
    });
}

#[test]
fn two_pods_reach_each_other_by_pod_ip() {
    if !needs_root() {
        return;
    }
    run(25, |n| async move {
        let server = pod(
            "server",
            json!({"containers": [{"name": "http", "command": ["sh", "-c",
                "mkdir -p /mnt/www && echo hello from $(hostname) > /mnt/www/hello.txt && \
                 exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /mnt/www"],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                "volumeMounts": [{"name": "s", "mountPath": "/mnt"}]}],
              "volumes": [{"name": "s", "emptyDir": {}}]}),
        );
        n.kubelet.sync_pod(server.clone(), lookup()).expect("sync");
        let st = wait_status(&n.kubelet, "server", Duration::from_secs(30), |s| condition(s, "Ready")).await;
        let ip = pod_ip(&st);
        let client = pod(
            "client",
            json!({"restartPolicy": "Never", "containers": [{"name": "get", "command": ["sh", "-c",
                format!("for i in $(seq 50); do busybox wget -q -O - http://{ip}:8080/hello.txt && exit 0; sleep 0.2; done; exit 1")]}]}),
        );
        n.kubelet.sync_pod(client.clone(), lookup()).expect("sync");
        let st = wait_status(&n.kubelet, "client", Duration::from_secs(30), |s| {
            matches!(s.phase.as_deref(), Some("Succeeded" | "Failed"))
        })
        .await;
        let got = log_text(&n.kubelet, "client", "get", false);
        assert_eq!(st.phase.as_deref(), Some("Succeeded"), "{got}");
        assert!(got.contains("hello from server"), "{got}");
        assert_ne!(pod_ip(&st), ip, "each pod has its own address");
        kill_and_check(&n, &client, None).await;
        kill_and_check(&n, &server, None).await;
    });
}

#[test]
fn memory_limit_kills_with_oomkilled() {
    if !needs_root() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        stead_testkit::not_applicable("no cgroup v1 memory hierarchy on this machine");
        return;
    }
    run(26, |n| async move {
        let p = pod(
            "hog",
            json!({"restartPolicy": "Never", "containers": [{"name": "app",
                "command": ["python3", "-c", "b = [bytearray(8 << 20) for _ in range(64)]"],
                "resources": {"limits": {"memory": "32Mi"}}}]}),
        );
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync");
        let st =
            wait_status(&n.kubelet, "hog", Duration::from_secs(30), |s| s.phase.as_deref() == Some("Failed"))
                .await;
        let t = container(&st, "app").state.clone().and_then(|s| s.terminated).expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
        kill_and_check(&n, &p, None).await;
    });
}

#[test]
fn invalid_pods_are_refused_synchronously() {
    if !needs_root() {
        return;
    }
    run(27, |n| async move {
        let p = pod(
            "bad-restart",
            json!({"restartPolicy": "Sometimes", "containers": [{"name": "app", "command": ["true"]}]}),
        );
        let e = n.kubelet.sync_pod(p, lookup()).unwrap_err().to_string();
        assert!(e.contains("unknown restartPolicy \"Sometimes\""), "{e}");
        assert_eq!(n.kubelet.pod_status("e2e", "bad-restart"), None);
        // A missing ConfigMap is not a sync error: the container waits, as the kubelet shows it.
        let p = pod(
            "needs-config",
            json!({"containers": [{"name": "app", "command": ["true"],
                "envFrom": [{"configMapRef": {"name": "settings"}}]}]}),
        );
        n.kubelet.sync_pod(p.clone(), lookup()).expect("sync");
        let st = wait_status(&n.kubelet, "needs-config", Duration::from_secs(20), |s| {
            container(s, "app")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some("CreateContainerConfigError")
        })
        .await;
        let w = container(&st, "app").state.clone().and_then(|s| s.waiting).expect("waiting");
        assert_eq!(
            w.message.as_deref(),
            Some("container \"app\": envFrom[0]: configmap \"e2e/settings\" not found")
        );
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        kill_and_check(&n, &p, None).await;
    });
}

/// A container that cannot be created (an image without a command: stead runs host processes)
/// keeps its pod Pending, Waiting `CreateContainerError` with the reason, one `Failed` event per
/// attempt, retried on the back-off (10 s first; the schedule itself is `backoff`'s unit test).
#[test]
fn a_container_that_cannot_be_created_waits_pending_and_is_retried_on_backoff() {
    if !needs_root() {
        return;
    }
    run(30, |n| async move {
        let mut events = n.kubelet.subscribe_events();
        let p = pod("nocmd", json!({"containers": [{"name": "app", "image": "nginx"}]}));
        n.kubelet.sync_pod(p.clone(), lookup()).expect("a pod without a command is accepted");
        let waiting_reason = |s: &PodStatus| {
            container(s, "app")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.clone())
        };
        let st = wait_status(&n.kubelet, "nocmd", Duration::from_secs(20), |s| {
            waiting_reason(s).as_deref() == Some("CreateContainerError")
        })
        .await;
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let w = container(&st, "app").state.clone().and_then(|s| s.waiting).expect("waiting");
        let message = w.message.unwrap_or_default();
        assert!(
            message.contains("container \"app\" has no command")
                && message.contains("image \"nginx\" is recorded only")
                && message.contains("set `command`"),
            "{message}"
        );
        assert_eq!(container(&st, "app").restart_count, 0);
        let first =
            tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("event").expect("event");
        assert_eq!((first.reason.as_str(), first.warning), ("Failed", true));
        assert_eq!(first.message, format!("Error: {message}"));
        // The next attempt is 10 s away: nothing more for now, and the pod is the same Pending pod.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(events.try_recv().is_err(), "retried before its back-off");
        let st = n.kubelet.pod_status("e2e", "nocmd").expect("status");
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        assert_eq!(waiting_reason(&st).as_deref(), Some("CreateContainerError"));
        kill_and_check(&n, &p, None).await;
    });
}

#[test]
fn a_restarted_runtime_cleans_up_after_a_crashed_one() {
    if !needs_root() {
        return;
    }
    let state = tempfile::tempdir().expect("tempdir");
    let cfg = config(state.path(), 28);
    let p = pod("orphan", json!({"containers": [{"name": "app", "command": ["sleep", "1000"]}]}));
    let veth = stead_node::sandbox::host_veth_name(&p);
    let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    // The first runtime goes away without stopping its pod, as a crash would.
    let pids = runtime().expect("runtime").block_on(async {
        let k = Kubelet::start(cfg.clone()).await.expect("start");
        k.sync_pod(p.clone(), lookup()).expect("sync");
        wait_status(&k, "orphan", Duration::from_secs(20), |s| condition(s, "Ready")).await;
        pod_pids(&uid(&p))
    });
    assert!(!pids.is_empty() && pids.iter().all(|p| alive(*p)), "the pod outlived its runtime: {pids:?}");
    let rt = runtime().expect("runtime");
    rt.block_on(async {
        let k = Kubelet::start(cfg.clone()).await.expect("restart");
        let survivors: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        assert_eq!(survivors, Vec::<i32>::new(), "processes of the crashed run survived");
        assert!(!state.path().join("pods").join(uid(&p)).exists(), "pod directory left");
        assert_eq!(mounts_under(state.path()), Vec::<String>::new(), "mounts left");
        assert!(!Path::new("/sys/class/net").join(&veth).exists(), "veth left");
        // The same pod starts again on the restarted runtime.
        k.sync_pod(p.clone(), lookup()).expect("sync again");
        wait_status(&k, "orphan", Duration::from_secs(20), |s| condition(s, "Ready")).await;
        tokio::time::timeout(Duration::from_secs(60), k.shutdown()).await.expect("shutdown");
    });
    assert!(!Path::new("/sys/class/net").join(&cfg.bridge).exists(), "bridge left behind");
    assert_eq!(mounts_under(state.path()), Vec::<String>::new());
}
