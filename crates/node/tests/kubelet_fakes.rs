//! The pod loop ([`Kubelet`]) on a fake machine, without root: the recording [`Syscall`] and
//! [`Netlink`] fakes and an empty cgroup root stand in for the kernel ([`Host`]). The container
//! processes are real but unprivileged: the "container init" is `sh -c <script>`, which ignores the
//! `--spec` it is given, so what runs is the script, not the pod's command.
//!
//! What these tests check is the kubelet's side of the seam: the calls it makes to set a sandbox up
//! and tear it down, the signals a stop sends, the status and logs it reports. That the calls do
//! what they say is `tests/root_sandbox.rs` and `tests/root_kubelet.rs` (root only).
//!
//! [`Syscall`]: stead_node::syscall::Syscall
//! [`Netlink`]: stead_node::netlink::Netlink

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use nix::sys::signal::Signal;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_node::env::MapLookup;
use stead_node::kubelet::{Host, Kubelet, KubeletConfig, KubeletError};
use stead_node::netlink::{NetnsRef, NlCall, RecordingNetlink};
use stead_node::preflight::PreflightError;
use stead_node::syscall::{LinuxSyscall, Namespace, RecordingSyscall, SysCall, Syscall};

struct FakeNode {
    kubelet: Kubelet,
    sys: Arc<RecordingSyscall>,
    nl: Arc<RecordingNetlink>,
    state: tempfile::TempDir,
    _cgroups: tempfile::TempDir,
}

fn config(state: &Path, script: &str) -> KubeletConfig {
    KubeletConfig {
        state_dir: state.to_owned(),
        node_name: "fake-node".into(),
        pod_cidr: "10.250.0.0/24".parse().expect("cidr"),
        bridge: "fake0".into(),
        cluster_domain: "cluster.local".into(),
        dns_server: None,
        init_program: "/bin/sh".into(),
        // `sh -c <script> init --spec <json>`: the spec lands in $1 and $2, unused.
        init_args: vec!["-c".into(), script.into(), "init".into()],
        default_runtime: stead_node::runtime_class::ContainerRuntime::HostProcess,
        registry_env: stead_node::images::RegistryEnv::Process,
    }
}

fn fakes() -> (Arc<RecordingSyscall>, Arc<RecordingNetlink>, tempfile::TempDir, Host) {
    let (sys, nl) = (Arc::new(RecordingSyscall::default()), Arc::new(RecordingNetlink::default()));
    let cgroups = tempfile::tempdir().expect("tempdir");
    let host = Host { sys: sys.clone(), nl: nl.clone(), cgroup_root: cgroups.path().to_owned() };
    (sys, nl, cgroups, host)
}

async fn node(script: &str) -> FakeNode {
    let state = tempfile::tempdir().expect("tempdir");
    let (sys, nl, cgroups, host) = fakes();
    let kubelet = Kubelet::start_on(config(state.path(), script), host).await.expect("kubelet starts");
    FakeNode { kubelet, sys, nl, state, _cgroups: cgroups }
}

fn pod(name: &str, restart_policy: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "app", "image": "busybox", "command": ["/bin/app"]}],
        },
    }))
    .expect("pod")
}

async fn wait_status(k: &Kubelet, name: &str, pred: impl Fn(&PodStatus) -> bool) -> PodStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = k.pod_status("default", name);
        if let Some(s) = &st
            && pred(s)
        {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "pod {name}: condition not reached; status: {st:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or_default()
}

fn pod_dir(n: &FakeNode, uid: &str) -> PathBuf {
    n.state.path().join("pods").join(uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_brings_the_bridge_up_through_netlink() {
    let n = node("exit 0").await;
    let gateway = "10.250.0.1/24".parse().expect("net");
    assert_eq!(
        n.nl.calls(),
        [
            NlCall::LinkExists(NetnsRef::Host, "fake0".into()),
            NlCall::CreateBridge("fake0".into()),
            NlCall::AddAddress(NetnsRef::Host, "fake0".into(), gateway),
            NlCall::SetUp(NetnsRef::Host, "fake0".into()),
        ]
    );
    assert_eq!(n.kubelet.bridge_address().to_string(), "10.250.0.1");
    assert_eq!(n.sys.calls(), [], "starting makes no syscall beyond the preflight's query");
    n.kubelet.shutdown().await;
    assert_eq!(n.nl.calls().last(), Some(&NlCall::DeleteLink(NetnsRef::Host, "fake0".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_root_the_preflight_refuses_before_anything_is_made() {
    let state = tempfile::tempdir().expect("tempdir");
    let (sys, nl, _cgroups, host) = fakes();
    sys.set_euid(1000);
    let e = Kubelet::start_on(config(state.path(), "exit 0"), host).await.unwrap_err();
    assert!(matches!(e, KubeletError::Preflight(PreflightError::NotRoot { euid: 1000 })), "{e}");
    assert!(e.to_string().contains("sudo stead up"), "{e}");
    assert_eq!((sys.calls(), nl.calls()), (vec![], vec![]));
    assert!(!state.path().join("pods").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_gets_its_sandbox_runs_reports_and_is_torn_down() {
    let n = node("echo hello from the container; exit 0").await;
    n.kubelet.sync_pod(pod("web-0", "Never"), Arc::new(MapLookup::default())).expect("sync");
    let st = wait_status(&n.kubelet, "web-0", |s| phase(s) == "Succeeded").await;

    // The status: an address from the CIDR, the bridge as host, the container completed.
    let ip = st.pod_ip.clone().expect("pod ip");
    assert!(ip.starts_with("10.250.0.") && ip != "10.250.0.1", "{ip}");
    assert_eq!(st.host_ip.as_deref(), Some("10.250.0.1"));
    let app = &st.container_statuses.as_ref().expect("statuses")[0];
    let done = app.state.as_ref().and_then(|s| s.terminated.as_ref()).expect("terminated");
    assert_eq!((done.exit_code, done.reason.as_deref()), (0, Some("Completed")));

    // The sandbox: three pinned namespaces and the hostname ...
    let dir = pod_dir(&n, "web-0-uid");
    let (netns, uts, ipc) = (dir.join("ns/net"), dir.join("ns/uts"), dir.join("ns/ipc"));
    let calls = n.sys.calls();
    assert_eq!(
        calls[..7],
        [
            SysCall::Unshare(vec![Namespace::Net]),
            SysCall::BindMount {
                source: Namespace::Net.thread_self_path(),
                target: netns.clone(),
                readonly: false
            },
            SysCall::Unshare(vec![Namespace::Uts]),
            SysCall::Sethostname("web-0".into()),
            SysCall::BindMount {
                source: Namespace::Uts.thread_self_path(),
                target: uts.clone(),
                readonly: false
            },
            SysCall::Unshare(vec![Namespace::Ipc]),
            SysCall::BindMount {
                source: Namespace::Ipc.thread_self_path(),
                target: ipc.clone(),
                readonly: false
            },
        ]
    );
    // (Without cgroups, what is left of the exited process's group gets a SIGKILL.)
    assert!(matches!(calls[7..], [SysCall::Killpg(_, Signal::SIGKILL)]), "{calls:?}");
    // ... a veth created inside the pod's netns, addressed, routed ...
    let veth = stead_node::sandbox::host_veth_name(&pod("web-0", "Never"));
    let pod_ns = NetnsRef::Path(netns.clone());
    let pod_net = format!("{ip}/24").parse().expect("net");
    assert_eq!(
        n.nl.calls()[4..],
        [
            NlCall::CreateVeth { host: veth.clone(), peer: "eth0".into(), peer_netns: Some(netns.clone()) },
            NlCall::SetMaster(veth.clone(), "fake0".into()),
            NlCall::SetUp(NetnsRef::Host, veth.clone()),
            NlCall::SetUp(pod_ns.clone(), "lo".into()),
            NlCall::AddAddress(pod_ns.clone(), "eth0".into(), pod_net),
            NlCall::SetUp(pod_ns.clone(), "eth0".into()),
            NlCall::AddDefaultRoute(pod_ns, "10.250.0.1".parse().expect("ip")),
        ]
    );
    // ... and the pod's /etc files.
    let hosts = std::fs::read_to_string(dir.join("etc/hosts")).expect("hosts");
    assert!(hosts.contains(&format!("{ip}\tweb-0")), "{hosts}");

    // The log of the (real) process.
    let log = n.kubelet.log_path("default", "web-0", "app", false).expect("log path");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("hello from the container"), "{text}");

    // The kill tears down what the setup made, in reverse, and leaves the status readable.
    let before = (n.sys.calls().len(), n.nl.calls().len());
    n.kubelet.kill_pod("default", "web-0", None).await.expect("kill");
    assert_eq!(n.nl.calls()[before.1..], [NlCall::DeleteLink(NetnsRef::Host, veth)]);
    assert_eq!(
        n.sys.calls()[before.0..],
        [
            SysCall::Umount { target: ipc, detach: true },
            SysCall::Umount { target: uts, detach: true },
            SysCall::Umount { target: netns, detach: true }
        ]
    );
    assert!(!dir.exists(), "the pod directory is removed");
    assert_eq!(
        n.kubelet.pod_status("default", "web-0").map(|s| phase(&s).to_owned()),
        Some("Succeeded".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sends_sigterm_to_the_process_group_then_sigkill() {
    let n = node("exec sleep 60").await;
    n.kubelet.sync_pod(pod("db-0", "Always"), Arc::new(MapLookup::default())).expect("sync");
    wait_status(&n.kubelet, "db-0", |s| phase(s) == "Running").await;

    // The fake only records the SIGTERM: the test delivers it, as the kernel would.
    let sys = n.sys.clone();
    let deliver = tokio::spawn(async move {
        loop {
            let term = sys.calls().iter().find_map(|c| match c {
                SysCall::Killpg(pgid, Signal::SIGTERM) => Some(*pgid),
                _ => None,
            });
            if let Some(pgid) = term {
                LinuxSyscall.killpg(pgid, Signal::SIGTERM).expect("deliver SIGTERM");
                return pgid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let t = Instant::now();
    n.kubelet.kill_pod("default", "db-0", Some(Duration::from_secs(20))).await.expect("kill");
    assert!(t.elapsed() < Duration::from_secs(10), "the stop waited for the grace period");
    let pgid = deliver.await.expect("deliver");
    let signals: Vec<SysCall> =
        n.sys.calls().into_iter().filter(|c| matches!(c, SysCall::Killpg(..) | SysCall::Kill(..))).collect();
    // Without cgroups, the group gets a final SIGKILL once its leader is gone.
    assert_eq!(signals, [SysCall::Killpg(pgid, Signal::SIGTERM), SysCall::Killpg(pgid, Signal::SIGKILL)]);
    let st = n.kubelet.pod_status("default", "db-0").expect("status");
    let app = &st.container_statuses.as_ref().expect("statuses")[0];
    let done = app.state.as_ref().and_then(|s| s.terminated.as_ref()).expect("terminated");
    assert_eq!(done.signal, Some(15), "{done:?}");
    assert!(!pod_dir(&n, "db-0-uid").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sandbox_is_reported_and_what_was_made_is_undone() {
    let n = node("exit 0").await;
    let p = pod("web-1", "Always");
    let veth = stead_node::sandbox::host_veth_name(&p);
    n.nl.fail_on(NlCall::SetMaster(veth.clone(), "fake0".into()));
    n.kubelet.sync_pod(p, Arc::new(MapLookup::default())).expect("sync");
    let st = wait_status(&n.kubelet, "web-1", |s| s.reason.as_deref() == Some("SandboxError")).await;
    assert_eq!(phase(&st), "Pending");
    let message = st.message.unwrap_or_default();
    assert!(message.contains("attach veth to bridge"), "{message}");
    // The veth and the three namespace pins are removed again; no process was started.
    assert!(n.nl.calls().contains(&NlCall::DeleteLink(NetnsRef::Host, veth)));
    let dir = pod_dir(&n, "web-1-uid");
    let umounts: Vec<SysCall> =
        n.sys.calls().into_iter().filter(|c| matches!(c, SysCall::Umount { .. })).collect();
    assert_eq!(
        umounts,
        [
            SysCall::Umount { target: dir.join("ns/ipc"), detach: true },
            SysCall::Umount { target: dir.join("ns/uts"), detach: true },
            SysCall::Umount { target: dir.join("ns/net"), detach: true }
        ]
    );
    assert!(n.kubelet.log_path("default", "web-1", "app", false).is_none());
    n.kubelet.kill_pod("default", "web-1", None).await.expect("kill");
}
