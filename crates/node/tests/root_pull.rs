//! The pod worker's pull stage against a registry on loopback (Debian's `docker-registry`, through
//! `stead_image::test_util`), with images the tests build from bytes: `imagePullPolicy`, the
//! kubelet's waiting reasons (`ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`) and events,
//! recovery once the image is pushed, and `imagePullSecrets` against basic auth. They need root
//! (the pod sandbox); without it each test says why it is skipped, and fails under CI.
//!
//! Each test has its own state directory, bridge (`skt<N>`) and /24 inside 10.244.0.0/16.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus, Secret};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_image::test_util::{Registry, TestImage, host_busybox_image};
use stead_node::env::MapLookup;
use stead_node::images::RegistryEnv;
use stead_node::kubelet::{ContainerEvent, Kubelet, KubeletConfig};
use stead_node::runtime_class::ContainerRuntime;
use tokio::sync::broadcast;

mod common;
use common::{pod, wait_status};

const INIT: &str = env!("CARGO_BIN_EXE_stead-container-init");

fn needs_root() -> bool {
    stead_testkit::require_root("network, UTS and mount namespaces, cgroups")
}

/// Root, and runc for tests whose containers run (skips outside CI without them).
fn needs_root_and_runc() -> bool {
    needs_root() && stead_testkit::require_program("runc", "apt-get install runc, as .ci/run does").is_some()
}

struct Node {
    kubelet: Kubelet,
    state: tempfile::TempDir,
    _home: tempfile::TempDir,
}

/// A node whose pulls read `registries_conf` (and no credential file of the machine's).
async fn node(n: u8, registries_conf: &str) -> Node {
    let state = tempfile::tempdir().expect("tempdir");
    let home = tempfile::tempdir().expect("tempdir");
    let conf = home.path().join("registries.conf");
    std::fs::write(&conf, registries_conf).expect("registries.conf written");
    let env = BTreeMap::from([
        ("CONTAINERS_REGISTRIES_CONF".to_string(), conf.display().to_string()),
        ("REGISTRY_AUTH_FILE".to_string(), home.path().join("auth.json").display().to_string()),
        ("HOME".to_string(), home.path().display().to_string()),
    ]);
    let cfg = KubeletConfig {
        state_dir: state.path().to_owned(),
        node_name: "test-node".into(),
        pod_cidr: format!("10.244.{n}.0/24").parse().expect("cidr"),
        bridge: format!("skt{n}"),
        cluster_domain: "cluster.local".into(),
        dns_server: None,
        init_program: INIT.into(),
        init_args: vec![],
        default_runtime: ContainerRuntime::Image,
        registry_env: RegistryEnv::Fixed(env),
    };
    let kubelet = Kubelet::start(cfg).await.expect("kubelet starts");
    Node { kubelet, state, _home: home }
}

/// registries.conf for a plain-HTTP registry on loopback.
fn insecure(host: &str) -> String {
    format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n")
}

/// The host's busybox and the libraries it links (at the paths its loader looks for them), with
/// `/srv` (the image's working directory): entrypoint `/bin/busybox`, cmd `sleep 1000`.
fn image() -> TestImage {
    static IMAGE: std::sync::OnceLock<TestImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(host_busybox_image).clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn status_of<'a>(s: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    s.container_statuses.iter().flatten().find(|c| c.name == name)
}

fn waiting(s: &PodStatus, name: &str) -> Option<(String, String)> {
    let w = status_of(s, name)?.state.as_ref()?.waiting.as_ref()?;
    Some((w.reason.clone().unwrap_or_default(), w.message.clone().unwrap_or_default()))
}

/// The events received so far, as `reason: message`.
fn drain(rx: &mut broadcast::Receiver<ContainerEvent>, seen: &mut Vec<String>) -> Vec<String> {
    while let Ok(e) = rx.try_recv() {
        seen.push(format!("{}: {}", e.reason, e.message));
    }
    seen.clone()
}

fn has(events: &[String], prefix: &str) -> bool {
    events.iter().any(|e| e.starts_with(prefix))
}

/// The pulled image's container runs.
fn running(s: &PodStatus) -> bool {
    status_of(s, "app").and_then(|c| c.state.as_ref()).is_some_and(|st| st.running.is_some())
}

async fn finish(n: &Node, name: &str) {
    n.kubelet.kill_pod("e2e", name, Some(Duration::from_secs(1))).await.expect("kill");
    n.kubelet.shutdown().await;
    let pods = n.state.path().join("pods");
    let left: Vec<_> =
        std::fs::read_dir(&pods).map(|d| d.filter_map(Result::ok).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{} not empty: {left:?}", pods.display());
}

#[test]
fn a_missing_image_backs_off_and_is_pulled_once_pushed() {
    if !needs_root_and_runc() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    runtime().block_on(async {
        let n = node(60, &insecure(&registry.host())).await;
        let mut events = n.kubelet.subscribe_events();
        let mut seen = Vec::new();
        let image_name = format!("{}/late:1", registry.host());
        let p = pod("late", json!({"containers": [{"name": "app", "image": image_name}]}));
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        let k = &n.kubelet;
        let st = wait_status(k, "late", Duration::from_secs(20), |s| {
            waiting(s, "app").is_some_and(|(r, _)| r == "ErrImagePull")
        })
        .await;
        let (_, message) = waiting(&st, "app").expect("waiting");
        assert!(message.contains("late"), "{message}");
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let st = wait_status(k, "late", Duration::from_secs(5), |s| {
            waiting(s, "app").is_some_and(|(r, _)| r == "ImagePullBackOff")
        })
        .await;
        let (_, message) = waiting(&st, "app").expect("waiting");
        assert!(
            message.starts_with(&format!("Back-off pulling image \"{image_name}\": ErrImagePull: ")),
            "{message}"
        );
        assert_eq!(st.phase.as_deref(), Some("Pending"), "never Failed");
        let got = drain(&mut events, &mut seen);
        for want in [
            format!("Pulling: Pulling image \"{image_name}\""),
            format!("Failed: Failed to pull image \"{image_name}\": "),
            "Failed: Error: ErrImagePull".into(),
            format!("BackOff: Back-off pulling image \"{image_name}\""),
            "Failed: Error: ImagePullBackOff".into(),
        ] {
            assert!(has(&got, &want), "no event {want:?} in {got:#?}");
        }
        // The retry after 10 s finds it.
        registry.push_image("late", "1", &image()).await;
        wait_status(k, "late", Duration::from_secs(60), running).await;
        let got = drain(&mut events, &mut seen);
        let pulled = got.iter().find(|e| e.starts_with("Pulled: ")).expect("a Pulled event");
        assert!(
            pulled.starts_with(&format!("Pulled: Successfully pulled image \"{image_name}\" in ")),
            "{pulled}"
        );
        assert!(
            pulled.contains(" including waiting). Image size: ") && pulled.ends_with(" bytes."),
            "{pulled}"
        );
        assert!(n.state.path().join("images/index.json").is_file(), "pulled into <state>/images");
        finish(&n, "late").await;
    });
}

#[test]
fn never_without_the_image_waits_with_err_image_never_pull() {
    if !needs_root() {
        return;
    }
    runtime().block_on(async {
        // No registry at all: Never must not ask one.
        let n = node(61, &insecure("127.0.0.1:9")).await;
        let mut events = n.kubelet.subscribe_events();
        let mut seen = Vec::new();
        let p = pod(
            "never",
            json!({"containers": [{"name": "app", "image": "127.0.0.1:9/absent:1", "imagePullPolicy": "Never"}]}),
        );
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        let st = wait_status(&n.kubelet, "never", Duration::from_secs(10), |s| {
            waiting(s, "app").is_some_and(|(r, _)| r == "ErrImageNeverPull")
        })
        .await;
        let message = "Container image \"127.0.0.1:9/absent:1\" is not present with pull policy of Never";
        assert_eq!(waiting(&st, "app").expect("waiting").1, message);
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let got = drain(&mut events, &mut seen);
        assert!(has(&got, &format!("ErrImageNeverPull: {message}")), "{got:#?}");
        assert!(!has(&got, "Pulling"), "{got:#?}");
        finish(&n, "never").await;
    });
}

#[test]
fn if_not_present_uses_the_store_without_asking_the_registry() {
    if !needs_root_and_runc() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    runtime().block_on(async {
        let host = registry.host();
        let n = node(62, &insecure(&host)).await;
        registry.push_image("cached", "1", &image()).await;
        // Pulled by `stead image pull` (the same store), then the registry goes away.
        let store = Arc::new(stead_image::store::Store::open(n.state.path().join("images")).expect("store"));
        let conf = stead_image::registries::RegistriesConf::parse(&insecure(&host), "test").expect("conf");
        let puller = stead_image::pull::Puller::new(store, conf, Default::default());
        let reference = stead_image::reference::ImageRef::parse(&format!("{host}/cached:1")).expect("ref");
        let keyring = stead_image::auth::Keyring::new();
        puller
            .pull(&reference, stead_image::container::PullPolicy::Always, &keyring, None)
            .await
            .expect("pulled");
        drop(registry);
        let mut events = n.kubelet.subscribe_events();
        let mut seen = Vec::new();
        let image_name = format!("{host}/cached:1");
        let p = pod("cached", json!({"containers": [{"name": "app", "image": image_name}]}));
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        wait_status(&n.kubelet, "cached", Duration::from_secs(60), running).await;
        let got = drain(&mut events, &mut seen);
        assert!(
            has(&got, &format!("Pulled: Container image \"{image_name}\" already present on machine")),
            "{got:#?}"
        );
        assert!(!has(&got, "Pulling"), "{got:#?}");
        finish(&n, "cached").await;
    });
}

#[test]
fn image_pull_secrets_authenticate_against_basic_auth() {
    if !needs_root_and_runc() {
        return;
    }
    let Some(registry) = Registry::start_with_basic_auth("puller", "s3cret") else { return };
    runtime().block_on(async {
        let host = registry.host();
        let n = node(63, &insecure(&host)).await;
        registry.push_image("private", "1", &image()).await;
        let image_name = format!("{host}/private:1");
        let config = json!({"auths": {host.clone(): {"username": "puller", "password": "s3cret"}}});
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "regcred", "namespace": "e2e"},
            "type": "kubernetes.io/dockerconfigjson",
        }))
        .expect("secret");
        let secret = Secret {
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(config.to_string().into_bytes()),
            )])),
            ..secret
        };
        let lookup = Arc::new(MapLookup::default().with_secret(secret));
        // Without the Secret: refused by the registry.
        let anonymous = pod("anonymous", json!({"containers": [{"name": "app", "image": image_name}]}));
        n.kubelet.sync_pod(anonymous, lookup.clone()).expect("sync");
        let st = wait_status(&n.kubelet, "anonymous", Duration::from_secs(20), |s| {
            waiting(s, "app").is_some_and(|(r, _)| r == "ErrImagePull")
        })
        .await;
        let (_, message) = waiting(&st, "app").expect("waiting");
        assert!(message.contains("anonymously"), "{message}");
        // With it: pulled.
        let with = pod(
            "with-secret",
            json!({"imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "app", "image": image_name}]}),
        );
        n.kubelet.sync_pod(with, lookup).expect("sync");
        wait_status(&n.kubelet, "with-secret", Duration::from_secs(60), running).await;
        n.kubelet.kill_pod("e2e", "anonymous", Some(Duration::from_secs(1))).await.expect("kill");
        finish(&n, "with-secret").await;
    });
}

#[test]
fn an_unknown_runtime_class_waits_with_a_config_error() {
    if !needs_root() {
        return;
    }
    runtime().block_on(async {
        let n = node(64, "").await;
        let p = pod(
            "gvisor",
            json!({"runtimeClassName": "gvisor", "containers": [{"name": "app", "image": "alpine:3.20"}]}),
        );
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        let st = wait_status(&n.kubelet, "gvisor", Duration::from_secs(10), |s| {
            waiting(s, "app").is_some_and(|(r, _)| r == "CreateContainerConfigError")
        })
        .await;
        let (_, message) = waiting(&st, "app").expect("waiting");
        assert!(message.contains("\"gvisor\"") && message.contains("stead-host-process"), "{message}");
        // A pull policy the API server would refuse is refused at once.
        let bad = pod(
            "sometimes",
            json!({"containers": [{"name": "app", "image": "alpine:3.20", "imagePullPolicy": "Sometimes"}]}),
        );
        let e = n.kubelet.sync_pod(bad, Arc::new(MapLookup::default())).unwrap_err();
        assert!(e.to_string().contains("imagePullPolicy \"Sometimes\""), "{e}");
        finish(&n, "gvisor").await;
    });
}

#[test]
fn a_kill_during_a_pull_ends_the_pod_at_once() {
    if !needs_root() {
        return;
    }
    runtime().block_on(async {
        // A registry that accepts connections and never answers: the pull hangs.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let host = listener.local_addr().expect("addr").to_string();
        let n = node(65, &insecure(&host)).await;
        let p = pod("hung", json!({"containers": [{"name": "app", "image": format!("{host}/slow:1")}]}));
        let mut events = n.kubelet.subscribe_events();
        let mut seen = Vec::new();
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !has(&drain(&mut events, &mut seen), "Pulling") {
            assert!(Instant::now() < deadline, "no Pulling event");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let st = n.kubelet.pod_status("e2e", "hung").expect("status");
        assert_eq!(waiting(&st, "app").map(|w| w.0).as_deref(), Some("ContainerCreating"));
        // The pull would wait at least 30 s for the registry (the client's connect timeout).
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), finish(&n, "hung"))
            .await
            .expect("the kill waits for no pull");
        assert!(t0.elapsed() < Duration::from_secs(20));
        assert!(Path::new(&n.state.path().join("images")).is_dir());
        drop(listener);
    });
}

#[test]
fn a_pulled_image_runs_with_probes_exec_logs_and_exit_codes() {
    if !needs_root_and_runc() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    runtime().block_on(async {
        let host = registry.host();
        let n = node(66, &insecure(&host)).await;
        registry.push_image("box", "1", &image()).await;
        let image_name = format!("{host}/box:1");
        let p = pod(
            "box",
            json!({"restartPolicy": "Never", "containers": [
                {"name": "app", "image": image_name,
                 "readinessProbe": {"exec": {"command": ["/bin/busybox", "test", "-d", "/srv"]}, "periodSeconds": 1}},
                {"name": "quits", "image": image_name,
                 "command": ["/bin/busybox", "sh", "-c", "echo hello from $(WHO) in $PWD; exit 3"],
                 "env": [{"name": "WHO", "value": "the image"}]},
            ]}),
        );
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        let st = wait_status(&n.kubelet, "box", Duration::from_secs(90), |s| {
            status_of(s, "app").is_some_and(|c| c.ready)
                && status_of(s, "quits")
                    .and_then(|c| c.state.as_ref()?.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 3)
        })
        .await;
        assert_eq!(st.phase.as_deref(), Some("Running"));
        let log = n.kubelet.log_path("e2e", "box", "quits", false).expect("a log");
        let text = std::fs::read_to_string(log).expect("the log");
        assert!(text.contains("hello from the image in /srv"), "{text}");
        let mut cmd = n
            .kubelet
            .exec_command("e2e", "box", "app", &["/bin/busybox".into(), "cat".into(), "/etc/hostname".into()])
            .expect("exec");
        cmd.stdout(std::process::Stdio::piped());
        let out = cmd.output().await.expect("exec runs");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "box", "{out:?}");
        // The image's process, not the host's: its root has no /usr.
        let mut cmd = n
            .kubelet
            .exec_command("e2e", "box", "app", &["/bin/busybox".into(), "test".into(), "-e".into(), "/usr".into()])
            .expect("exec");
        assert_eq!(cmd.status().await.expect("exec runs").code(), Some(1));
        finish(&n, "box").await;
        let runc = std::process::Command::new("runc")
            .arg("--root")
            .arg(n.state.path().join("runc"))
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        assert_eq!(String::from_utf8_lossy(&runc.stdout).trim(), "", "containers left behind");
        let uid = format!("box-{}", std::process::id());
        for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().filter_map(Result::ok) {
            let dir = h.path().join("stead").join(&uid);
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let state = n.state.path().display().to_string();
        assert!(!mounts.contains(&state), "mounts left under {state}");
    });
}

#[test]
fn image_and_host_process_containers_share_a_pod_and_its_volumes() {
    if !needs_root_and_runc() {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    runtime().block_on(async {
        let host = registry.host();
        let n = node(67, &insecure(&host)).await;
        registry.push_image("box", "1", &image()).await;
        let image_name = format!("{host}/box:1");
        let mut p = pod(
            "mixed",
            json!({
                "volumes": [{"name": "data", "emptyDir": {}}],
                "initContainers": [{"name": "prepare", "image": image_name,
                    "command": ["/bin/busybox", "sh", "-c", "echo prepared > /data/note"],
                    "securityContext": {"runAsUser": 0},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "containers": [
                    {"name": "app", "image": image_name,
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    // The host's busybox, as the engine runs its sidecar.
                    {"name": "helper", "image": "stead-sidecar:1",
                     "command": ["/bin/busybox", "sleep", "1000"]},
                ],
            }),
        );
        p.metadata.annotations = Some(BTreeMap::from([(
            stead_node::runtime_class::HOST_PROCESS_ANNOTATION.to_string(),
            "helper".to_string(),
        )]));
        n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
        let st = wait_status(&n.kubelet, "mixed", Duration::from_secs(90), |s| {
            ["app", "helper"].iter().all(|c| status_of(s, c).is_some_and(|c| c.ready))
        })
        .await;
        assert_eq!(st.phase.as_deref(), Some("Running"));
        let run = |container: &str, argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let mut cmd = n.kubelet.exec_command("e2e", "mixed", container, &argv).expect("exec");
            cmd.stdout(std::process::Stdio::piped());
            cmd
        };
        // The init container's file, through the volume, in the image container.
        let out = run("app", &["/bin/busybox", "cat", "/data/note"]).output().await.expect("exec");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "prepared", "{out:?}");
        // The image's root has no /usr; the host process sees the host's.
        let status = run("app", &["/bin/busybox", "test", "-d", "/usr/bin"]).status().await.expect("exec");
        assert_eq!(status.code(), Some(1));
        let status = run("helper", &["/bin/busybox", "test", "-d", "/usr/bin"]).status().await.expect("exec");
        assert_eq!(status.code(), Some(0));
        finish(&n, "mixed").await;
    });
}
