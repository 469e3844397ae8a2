//! End-to-end sandbox tests with real namespaces, veths and a bridge. They need root: without it
//! each test prints why it is skipped and returns, or fails under CI (see `stead-testkit`).
//!
//! Everything they create is test-specific (bridge `stt<pid>`, a /24 inside 10.244.0.0/16, a temporary
//! state directory) and removed at the end; the tests check that nothing is left. Traffic only goes
//! between namespaces the test made.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;
use stead_node::env::{EnvContext, MapLookup, resolve_env};
use stead_node::netlink::{Netlink, NetnsRef, RtNetlink};
use stead_node::pod_files::DnsSettings;
use stead_node::sandbox::{self, SandboxConfig, SandboxPlan};
use stead_node::syscall::{LinuxSyscall, Namespace, Syscall};

/// The tests of this binary run one at a time: the first counts this process's open sockets.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether the test may run: it needs root (skips on a developer machine, fails under CI).
fn needs_root() -> bool {
    stead_testkit::require_root("real network, UTS and mount namespaces")
}

fn subnet() -> (String, u8) {
    let pid = std::process::id();
    (format!("stt{}", pid % 100_000), 200 + (pid % 50) as u8)
}

fn config(state: &Path) -> SandboxConfig {
    let (bridge, third) = subnet();
    SandboxConfig {
        state_dir: state.to_owned(),
        bridge,
        gateway: format!("10.244.{third}.1/24").parse().expect("gateway"),
        dns: DnsSettings {
            nameservers: vec![format!("10.244.{third}.1").parse().expect("ip")],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: String::new(),
        },
    }
}

fn pod(name: &str, uid: &str, mount_target: &Path) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "e2e", "uid": uid},
        "spec": {
            "hostname": name, "subdomain": "web",
            "containers": [{"name": "app", "command": ["sleep", "1"],
                "volumeMounts": [{"name": "data", "mountPath": mount_target.to_str().expect("utf8")}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}]
        }
    }))
    .expect("pod")
}

fn check(cond: bool, what: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// In a thread that joined `plan`'s netns: listen on 0.0.0.0:8080 and answer one connection.
fn serve_once(
    plan: &SandboxPlan,
    reply: &'static [u8],
) -> Result<std::thread::JoinHandle<Result<(), String>>, String> {
    let netns = plan.netns_path.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || -> Result<(), String> {
        LinuxSyscall.setns(&netns, Namespace::Net).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("0.0.0.0:8080").map_err(|e| format!("bind: {e}"))?;
        let _ = tx.send(());
        let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        conn.write_all(reply).map_err(|e| format!("write: {e}"))
    });
    rx.recv_timeout(Duration::from_secs(5)).map_err(|_| "server did not start".to_string())?;
    Ok(handle)
}

/// From a thread in `plan`'s netns, connect to `ip:8080` and read the reply.
fn fetch_from(plan: &SandboxPlan, ip: Ipv4Addr) -> Result<Vec<u8>, String> {
    let netns = plan.netns_path.clone();
    std::thread::spawn(move || -> Result<Vec<u8>, String> {
        LinuxSyscall.setns(&netns, Namespace::Net).map_err(|e| e.to_string())?;
        let mut s = TcpStream::connect_timeout(&(ip, 8080).into(), Duration::from_secs(5))
            .map_err(|e| format!("connect {ip}:8080: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let mut buf = vec![];
        s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
        Ok(buf)
    })
    .join()
    .map_err(|_| "client thread panicked".to_string())?
}

/// Inside a thread: enter the sandbox as a container would and report what it sees.
fn look_inside(plan: &SandboxPlan, pod: &Pod) -> Result<(String, String, bool), String> {
    let plan = plan.clone();
    let pod = pod.clone();
    std::thread::spawn(move || -> Result<(String, String, bool), String> {
        let c = &pod.spec.as_ref().ok_or("no spec")?.containers[0];
        let env =
            resolve_env(&pod, c, &EnvContext::default(), &MapLookup::default()).map_err(|e| e.to_string())?;
        let mounts = sandbox::container_mounts(&plan, c, &env).map_err(|e| e.to_string())?;
        sandbox::enter_sandbox(&LinuxSyscall, &plan, &mounts).map_err(|e| e.to_string())?;
        let hostname = nix::unistd::gethostname().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let etc_hostname = std::fs::read_to_string("/etc/hostname").map_err(|e| e.to_string())?;
        let target = mounts
            .iter()
            .find(|m| m.source.ends_with(format!("data-{}", hostname)))
            .ok_or("no claim mount")?;
        let marker = target.target.join("marker");
        Ok((hostname, etc_hostname, marker.exists()))
    })
    .join()
    .map_err(|_| "inside thread panicked".to_string())?
}

/// Open socket file descriptors of this process (a leaked netlink socket would pin a pod netns).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let needle = dir.to_string_lossy().into_owned();
    info.lines().filter(|l| l.contains(&needle)).map(str::to_owned).collect()
}

#[test]
fn two_pods_talk_over_the_bridge_and_nothing_is_left() {
    if !needs_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let state = tempfile::tempdir().expect("tempdir");
    let targets = tempfile::tempdir().expect("targets");
    let cfg = config(state.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let nl = rt.block_on(async { RtNetlink::new() }).expect("netlink");
    let sys = LinuxSyscall;
    let third = subnet().1;
    let ips = [Ipv4Addr::new(10, 244, third, 10), Ipv4Addr::new(10, 244, third, 11)];
    let pods = [
        pod("web-0", &format!("e2e-{}-0", std::process::id()), &targets.path().join("m0")),
        pod("web-1", &format!("e2e-{}-1", std::process::id()), &targets.path().join("m1")),
    ];
    std::fs::create_dir_all(targets.path().join("m0")).expect("m0");
    std::fs::create_dir_all(targets.path().join("m1")).expect("m1");
    let plans: Vec<SandboxPlan> =
        pods.iter().zip(ips).map(|(p, ip)| sandbox::plan(&cfg, p, ip).expect("plan")).collect();

    let sockets_before = open_sockets();
    let body = || -> Result<(), String> {
        rt.block_on(sandbox::ensure_bridge(&nl, &cfg)).map_err(|e| e.to_string())?;
        for (plan, p) in plans.iter().zip(&pods) {
            rt.block_on(sandbox::setup(&sys, &nl, plan, p, &MapLookup::default(), &EnvContext::default()))
                .map_err(|e| e.to_string())?;
        }
        std::fs::write(state.path().join("volumes/e2e/data-web-0/marker"), b"x")
            .map_err(|e| e.to_string())?;
        // Both pods listen on 0.0.0.0:8080 at once, each in its own netns.
        let s0 = serve_once(&plans[0], b"pod0")?;
        let s1 = serve_once(&plans[1], b"pod1")?;
        check(fetch_from(&plans[1], ips[0])? == b"pod0", "web-1 should reach web-0")?;
        check(fetch_from(&plans[0], ips[1])? == b"pod1", "web-0 should reach web-1")?;
        s0.join().map_err(|_| "server panicked")??;
        s1.join().map_err(|_| "server panicked")??;
        let (hostname, etc_hostname, marker) = look_inside(&plans[0], &pods[0])?;
        check(hostname == "web-0", format!("uts hostname {hostname:?}"))?;
        check(etc_hostname == "web-0\n", format!("/etc/hostname {etc_hostname:?}"))?;
        check(marker, "the claim directory is mounted at its mountPath")?;
        check(nix::unistd::gethostname().map(|h| h != "web-0").unwrap_or(false), "host hostname untouched")?;
        Ok(())
    };
    let result = body();

    // Teardown whatever happened, then check nothing is left.
    let mut cleanup_errors = vec![];
    for plan in &plans {
        if let Err(e) = rt.block_on(sandbox::teardown(&sys, &nl, plan)) {
            cleanup_errors.push(e.to_string());
        }
    }
    if let Err(e) = rt.block_on(nl.delete_link(&NetnsRef::Host, &cfg.bridge)) {
        cleanup_errors.push(e.to_string());
    }
    let leftover_links: Vec<String> = plans
        .iter()
        .map(|p| p.host_veth.clone())
        .chain([cfg.bridge.clone()])
        .filter(|l| rt.block_on(nl.link_exists(&NetnsRef::Host, l)).unwrap_or(true))
        .collect();
    let leftover_mounts = mounts_under(state.path());
    // Let aborted per-netns connection tasks be dropped.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let sockets_after = open_sockets();
    let pods_left = plans.iter().filter(|p| p.pod_dir.exists()).count();
    let claim_kept = state.path().join("volumes/e2e/data-web-0/marker").exists();

    assert_eq!(result, Ok(()));
    assert_eq!(cleanup_errors, Vec::<String>::new());
    assert_eq!(leftover_links, Vec::<String>::new(), "links left behind");
    assert_eq!(leftover_mounts, Vec::<String>::new(), "mounts left behind");
    assert_eq!(pods_left, 0, "pod directories left behind");
    assert!(claim_kept, "claim data survives pod teardown");
    assert_eq!(sockets_after, sockets_before, "sockets left open (they would keep pod namespaces alive)");
}

#[test]
fn container_process_runs_inside_the_pod_sandbox() {
    if !needs_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let state = tempfile::tempdir().expect("tempdir");
    let targets = tempfile::tempdir().expect("targets");
    let logs = tempfile::tempdir().expect("logs");
    let mut cfg = config(state.path());
    // A bridge and subnet of its own, in case the previous test left its own behind.
    cfg.bridge = format!("{}p", cfg.bridge);
    let third = subnet().1 - 50;
    cfg.gateway = format!("10.244.{third}.1/24").parse().expect("gateway");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let nl = rt.block_on(async { RtNetlink::new() }).expect("netlink");
    let sys = LinuxSyscall;
    let mount_target = targets.path().join("data");
    std::fs::create_dir_all(&mount_target).expect("target");
    let p = pod("web-0", &format!("e2e-{}-p", std::process::id()), &mount_target);
    let ip = Ipv4Addr::new(10, 244, third, 10);
    let plan = sandbox::plan(&cfg, &p, ip).expect("plan");

    let body = || -> Result<(i32, Vec<String>), String> {
        rt.block_on(sandbox::ensure_bridge(&nl, &cfg)).map_err(|e| e.to_string())?;
        rt.block_on(sandbox::setup(&sys, &nl, &plan, &p, &MapLookup::default(), &EnvContext::default()))
            .map_err(|e| e.to_string())?;
        std::fs::write(state.path().join("volumes/e2e/data-web-0/marker"), b"from the claim")
            .map_err(|e| e.to_string())?;
        let c = &p.spec.as_ref().ok_or("no spec")?.containers[0];
        let env =
            resolve_env(&p, c, &EnvContext::default(), &MapLookup::default()).map_err(|e| e.to_string())?;
        let mounts = sandbox::container_mounts(&plan, c, &env).map_err(|e| e.to_string())?;
        let script = format!(
            "hostname; cat /etc/hostname; cat {}/marker; echo; grep web-0 /etc/hosts; \
             tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' '",
            mount_target.display()
        );
        let spec = stead_node::init::InitSpec {
            netns: Some(plan.netns_path.clone()),
            uts: Some(plan.uts_path.clone()),
            mounts,
            argv: vec!["sh".into(), "-c".into(), script],
            env: vec!["PATH=/usr/bin:/bin".into()],
            working_dir: None,
            cgroups: vec![],
        };
        let log = stead_node::logs::LogWriter::open(logs.path(), 0, Default::default())
            .map_err(|e| e.to_string())?;
        let exit = rt.block_on(async {
            let mut proc = stead_node::process::spawn(
                "app",
                Path::new(env!("CARGO_BIN_EXE_stead-container-init")),
                &spec,
                log,
            )
            .map_err(|e| e.to_string())?;
            proc.wait().await.map_err(|e| e.to_string())
        })?;
        let code = match exit {
            stead_node::status::Exit::Code(c) => c,
            other => return Err(format!("unexpected exit {other:?}")),
        };
        let lines = stead_node::logs::read_logs(logs.path(), "app", 0, Default::default())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect();
        Ok((code, lines))
    };
    let result = body();
    let cleanup = rt.block_on(sandbox::teardown(&sys, &nl, &plan)).map_err(|e| e.to_string());
    let bridge = rt.block_on(nl.delete_link(&NetnsRef::Host, &cfg.bridge)).map_err(|e| e.to_string());
    let leftover_mounts = mounts_under(state.path());
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();

    let (code, lines) = result.expect("container ran");
    assert_eq!(cleanup, Ok(()));
    assert_eq!(bridge, Ok(true));
    assert_eq!(leftover_mounts, Vec::<String>::new());
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0], "web-0", "uts hostname");
    assert_eq!(lines[1], "web-0", "/etc/hostname");
    assert_eq!(lines[2], "from the claim", "claim mounted at its mountPath");
    assert_eq!(lines[3], format!("{ip}\tweb-0.web.e2e.svc.cluster.local\tweb-0"), "pod /etc/hosts");
    assert_eq!(lines[4].trim(), "eth0 lo", "only the pod's interfaces are visible");
    assert!(!host_hosts.contains("web-0.web.e2e"), "the host's /etc/hosts is untouched");
}

/// A Secret volume on a real tmpfs: root's, mode 0755 (not tmpfs's world-writable 1777), the
/// files at `defaultMode` or their item's `mode`; a ConfigMap volume's directory 0755 too.
#[test]
fn secret_volumes_are_root_owned_0755_tmpfs_with_files_at_their_modes() {
    if !needs_root() {
        return;
    }
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let state = tempfile::tempdir().expect("tempdir");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "e2e", "uid": format!("e2e-{}-s", std::process::id())},
        "spec": {
            "containers": [{"name": "app", "command": ["true"]}],
            "volumes": [
                {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400,
                    "items": [{"key": "password", "path": "password"},
                              {"key": "password", "path": "group/password", "mode": 0o440}]}},
                {"name": "plain", "secret": {"secretName": "db"}},
                {"name": "cfg", "configMap": {"name": "cfg"}}
            ]
        }
    }))
    .expect("pod");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "db", "namespace": "e2e"}, "data": {"password": "aHVudGVyMg=="}}),
    )
    .expect("secret");
    let cm: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg", "namespace": "e2e"}, "data": {"k": "v"}}))
            .expect("cm");
    let lookup = MapLookup::default().with_secret(secret).with_config_map(cm);
    let planned = stead_node::volumes::plan_volumes(state.path(), &p).expect("plan");
    let meta = |path: &Path| std::fs::metadata(path).map(|m| (m.permissions().mode() & 0o7777, m.uid()));
    let mut mounted = vec![];
    let mut body = || -> Result<(), String> {
        for v in &planned {
            if let Some(tmpfs) = v.tmpfs {
                std::fs::create_dir_all(&v.path).map_err(|e| e.to_string())?;
                LinuxSyscall.mount_tmpfs(&v.path, tmpfs).map_err(|e| e.to_string())?;
                mounted.push(v.path.clone());
                // As mounted, before anything is written into it.
                check(meta(&v.path).ok() == Some((0o755, 0)), format!("fresh tmpfs {:?}", meta(&v.path)))?;
            }
        }
        stead_node::volumes::populate(&p, &planned, &lookup, &EnvContext::default())
            .map_err(|e| e.to_string())
    };
    let result = body();
    let creds = planned[0].path.clone();
    let observed = [
        ("creds", meta(&creds)),
        ("creds/password", meta(&creds.join("password"))),
        ("creds/group/password", meta(&creds.join("group/password"))),
        ("plain/password", meta(&planned[1].path.join("password"))),
        ("cfg", meta(&planned[2].path)),
        ("cfg/k", meta(&planned[2].path.join("k"))),
    ];
    let mounts = mounts_under(state.path());
    for m in &mounted {
        let _ = LinuxSyscall.umount(m, true);
    }
    result.expect("volumes populated");
    assert_eq!(mounts.len(), 2, "a tmpfs per Secret volume: {mounts:?}");
    let observed: Vec<(&str, (u32, u32))> =
        observed.into_iter().map(|(what, m)| (what, m.expect("metadata"))).collect();
    assert_eq!(
        observed,
        [
            ("creds", (0o755, 0)),
            ("creds/password", (0o400, 0)),
            ("creds/group/password", (0o440, 0)),
            ("plain/password", (0o644, 0)),
            ("cfg", (0o755, 0)),
            ("cfg/k", (0o644, 0)),
        ]
    );
    assert_eq!(mounts_under(state.path()), Vec::<String>::new());
}
