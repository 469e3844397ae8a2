use super::*;
use crate::env::MapLookup;
use crate::netlink::{NlCall, RecordingNetlink};
use crate::syscall::{RecordingSyscall, SysCall};
use crate::volumes::Tmpfs;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

fn cfg(state: &Path) -> SandboxConfig {
    SandboxConfig {
        state_dir: state.to_owned(),
        bridge: "stead0".into(),
        gateway: "10.244.0.1/16".parse().expect("gateway"),
        dns: DnsSettings {
            nameservers: vec!["10.244.0.1".parse().expect("ip")],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: String::new(),
        },
    }
}

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "3f1c"},
        "spec": {
            "hostname": "web-1", "subdomain": "web",
            "containers": [{"name": "app", "image": "nginx", "command": ["sleep", "60"],
                "env": [{"name": "SHARD", "value": "s1"}],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/app"},
                    {"name": "cfg", "mountPath": "/etc/app"},
                    {"name": "cache", "mountPath": "/var/lib/app/cache", "subPathExpr": "$(SHARD)"},
                    {"name": "data", "mountPath": "/srv/ro", "readOnly": true, "subPath": "public"}
                ]}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}}
            ]
        }
    }))
    .expect("pod")
}

fn lookup() -> MapLookup {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg", "namespace": "shop"}, "data": {"k": "v"}}))
            .expect("cm");
    MapLookup::default().with_config_map(cm)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn plan_names_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(&cfg(dir.path()), &pod(), "10.244.0.11".parse().expect("ip")).expect("plan");
    let pd = dir.path().join("pods/3f1c");
    assert_eq!(plan.pod, "shop/web-1");
    assert_eq!(plan.pod_dir, pd);
    assert_eq!(plan.netns_path, pd.join("ns/net"));
    assert_eq!(plan.uts_path, pd.join("ns/uts"));
    assert_eq!(plan.ipc_path, pd.join("ns/ipc"));
    assert_eq!(plan.host_veth, host_veth_name(&pod()));
    assert!(plan.host_veth.starts_with("sv") && plan.host_veth.len() == 10);
    assert_eq!(plan.pod_ip.to_string(), "10.244.0.11/16");
    assert_eq!(plan.gateway, Ipv4Addr::new(10, 244, 0, 1));
    assert_eq!(plan.hostname.domain.as_deref(), Some("web.shop.svc.cluster.local"));
    let names: Vec<_> =
        plan.files.iter().map(|(p, _)| p.strip_prefix(&pd).expect("in pod dir").to_owned()).collect();
    assert_eq!(names, [PathBuf::from("etc/hosts"), "etc/resolv.conf".into(), "etc/hostname".into()]);
    assert!(plan.files[0].1.contains("10.244.0.11\tweb-1.web.shop.svc.cluster.local\tweb-1\n"));
}

#[test]
fn plan_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path());
    let ip = "10.244.0.11".parse().expect("ip");
    // A container without a command is the kubelet's to report (CreateContainerError, retried),
    // not the sandbox's.
    let mut no_cmd = pod();
    if let Some(s) = no_cmd.spec.as_mut() {
        s.containers[0].command = None;
    }
    assert!(plan(&c, &no_cmd, ip).is_ok());
    let mut host_net = pod();
    if let Some(s) = host_net.spec.as_mut() {
        s.host_network = Some(true);
    }
    assert_eq!(
        plan(&c, &host_net, ip).unwrap_err().to_string(),
        "pod \"shop/web-1\": hostNetwork pods are not supported by the local runtime"
    );
    for bad in ["10.245.0.2", "10.244.0.1", "10.244.255.255", "10.244.0.0"] {
        assert_eq!(
            plan(&c, &pod(), bad.parse().expect("ip")).unwrap_err().to_string(),
            format!("pod \"shop/web-1\": pod IP {bad} is not inside the pod CIDR 10.244.0.0/16")
        );
    }
}

#[test]
fn setup_then_teardown_exact_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod();
    let plan = plan(&cfg(dir.path()), &p, "10.244.0.11".parse().expect("ip")).expect("plan");
    let (sys, nl) = (RecordingSyscall::default(), RecordingNetlink::default());
    rt().block_on(setup(&sys, &nl, &plan, &p, &lookup(), &EnvContext::default())).expect("setup");

    let pd = dir.path().join("pods/3f1c");
    let cache = pd.join("volumes/empty-dir/cache");
    assert_eq!(
        sys.calls(),
        [
            SysCall::Unshare(vec![Namespace::Net]),
            SysCall::BindMount {
                source: "/proc/thread-self/ns/net".into(),
                target: pd.join("ns/net"),
                readonly: false
            },
            SysCall::Unshare(vec![Namespace::Uts]),
            SysCall::Sethostname("web-1".into()),
            SysCall::BindMount {
                source: "/proc/thread-self/ns/uts".into(),
                target: pd.join("ns/uts"),
                readonly: false
            },
            SysCall::Unshare(vec![Namespace::Ipc]),
            SysCall::BindMount {
                source: "/proc/thread-self/ns/ipc".into(),
                target: pd.join("ns/ipc"),
                readonly: false
            },
            SysCall::MountTmpfs { target: cache.clone(), tmpfs: Tmpfs { size: None, mode: 0o1777 } },
        ]
    );
    let ns = NetnsRef::Path(pd.join("ns/net"));
    let veth = plan.host_veth.clone();
    assert_eq!(
        nl.calls(),
        [
            NlCall::CreateVeth {
                host: veth.clone(),
                peer: "eth0".into(),
                peer_netns: Some(pd.join("ns/net"))
            },
            NlCall::SetMaster(veth.clone(), "stead0".into()),
            NlCall::SetUp(NetnsRef::Host, veth.clone()),
            NlCall::SetUp(ns.clone(), "lo".into()),
            NlCall::AddAddress(ns.clone(), "eth0".into(), "10.244.0.11/16".parse().expect("net")),
            NlCall::SetUp(ns.clone(), "eth0".into()),
            NlCall::AddDefaultRoute(ns, "10.244.0.1".parse().expect("ip")),
        ]
    );
    // Files on disk.
    assert_eq!(std::fs::read_to_string(pd.join("etc/hostname")).expect("hostname"), "web-1\n");
    assert!(
        std::fs::read_to_string(pd.join("etc/resolv.conf"))
            .expect("resolv")
            .starts_with("nameserver 10.244.0.1\n")
    );
    assert_eq!(std::fs::read_to_string(pd.join("volumes/configmap/cfg/k")).expect("cm"), "v");
    let claim = dir.path().join("volumes/shop/data-web-1");
    assert!(claim.is_dir());
    std::fs::write(claim.join("state"), b"keep me").expect("write");

    let (sys2, nl2) = (RecordingSyscall::default(), RecordingNetlink::default());
    nl2.add_existing_link(NetnsRef::Host, &veth);
    rt().block_on(teardown(&sys2, &nl2, &plan)).expect("teardown");
    assert_eq!(nl2.calls(), [NlCall::DeleteLink(NetnsRef::Host, veth.clone())]);
    assert_eq!(
        sys2.calls(),
        [
            SysCall::Umount { target: cache, detach: true },
            SysCall::Umount { target: pd.join("ns/ipc"), detach: true },
            SysCall::Umount { target: pd.join("ns/uts"), detach: true },
            SysCall::Umount { target: pd.join("ns/net"), detach: true },
        ]
    );
    assert!(!pd.exists(), "pod dir removed");
    assert_eq!(std::fs::read(claim.join("state")).expect("claim kept"), b"keep me");
    // Idempotent.
    rt().block_on(teardown(&sys2, &nl2, &plan)).expect("second teardown");
}

#[test]
fn a_secret_volume_gets_a_root_only_writable_tmpfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = pod();
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = Some(vec![
            serde_json::from_value(
                json!({"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}}),
            )
            .expect("volume"),
        ]);
        spec.containers[0].volume_mounts = None;
    }
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(
        json!({"metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}}),
    )
    .expect("secret");
    let plan = plan(&cfg(dir.path()), &p, "10.244.0.11".parse().expect("ip")).expect("plan");
    let (sys, nl) = (RecordingSyscall::default(), RecordingNetlink::default());
    let lookup = MapLookup::default().with_secret(secret);
    rt().block_on(setup(&sys, &nl, &plan, &p, &lookup, &EnvContext::default())).expect("setup");
    let target = dir.path().join("pods/3f1c/volumes/secret/creds");
    assert_eq!(
        sys.calls().last(),
        Some(&SysCall::MountTmpfs { target, tmpfs: Tmpfs { size: None, mode: 0o755 } }),
        "mode=0755, not tmpfs's world-writable 1777"
    );
}

#[test]
fn failed_setup_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod();
    let plan = plan(&cfg(dir.path()), &p, "10.244.0.11".parse().expect("ip")).expect("plan");
    let (sys, nl) = (RecordingSyscall::default(), RecordingNetlink::default());
    nl.fail_on(NlCall::AddDefaultRoute(plan.netns(), "10.244.0.1".parse().expect("ip")));
    let err = rt().block_on(setup(&sys, &nl, &plan, &p, &lookup(), &EnvContext::default())).unwrap_err();
    assert!(err.to_string().starts_with("pod \"shop/web-1\": add default route: AddDefaultRoute("), "{err}");
    assert_eq!(nl.calls().last(), Some(&NlCall::DeleteLink(NetnsRef::Host, plan.host_veth.clone())));
    let tail: Vec<SysCall> = sys.calls().into_iter().skip(7).collect();
    assert_eq!(
        tail,
        [
            SysCall::Umount { target: plan.volumes[2].path.clone(), detach: true },
            SysCall::Umount { target: plan.ipc_path.clone(), detach: true },
            SysCall::Umount { target: plan.uts_path.clone(), detach: true },
            SysCall::Umount { target: plan.netns_path.clone(), detach: true },
        ]
    );
    assert!(!plan.pod_dir.exists());
}

#[test]
fn failed_namespace_creation_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod();
    let plan = plan(&cfg(dir.path()), &p, "10.244.0.11".parse().expect("ip")).expect("plan");
    let (sys, nl) = (RecordingSyscall::default(), RecordingNetlink::default());
    sys.fail_on(SysCall::Unshare(vec![Namespace::Net]), nix::errno::Errno::EPERM);
    let err = rt().block_on(setup(&sys, &nl, &plan, &p, &lookup(), &EnvContext::default())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod \"shop/web-1\": create network namespace: Unshare([Net]): EPERM: Operation not permitted"
    );
}

#[test]
fn bridge_is_created_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(dir.path());
    let nl = RecordingNetlink::default();
    rt().block_on(ensure_bridge(&nl, &c)).expect("bridge");
    assert_eq!(
        nl.calls(),
        [
            NlCall::LinkExists(NetnsRef::Host, "stead0".into()),
            NlCall::CreateBridge("stead0".into()),
            NlCall::AddAddress(NetnsRef::Host, "stead0".into(), "10.244.0.1/16".parse().expect("net")),
            NlCall::SetUp(NetnsRef::Host, "stead0".into()),
        ]
    );
    nl.clear_calls();
    rt().block_on(ensure_bridge(&nl, &c)).expect("bridge again");
    assert_eq!(
        nl.calls(),
        [NlCall::LinkExists(NetnsRef::Host, "stead0".into()), NlCall::SetUp(NetnsRef::Host, "stead0".into())]
    );
}

#[test]
fn container_mount_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod();
    let plan = plan(&cfg(dir.path()), &p, "10.244.0.11".parse().expect("ip")).expect("plan");
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let env = crate::env::resolve_env(&p, c, &EnvContext::default(), &lookup()).expect("env");
    let mounts = container_mounts(&plan, c, &env).expect("mounts");
    let pd = dir.path().join("pods/3f1c");
    let claim = dir.path().join("volumes/shop/data-web-1");
    let m = |s: PathBuf, t: &str, ro| MountSpec { source: s, target: t.into(), readonly: ro };
    assert_eq!(
        mounts,
        [
            m(pd.join("etc/hosts"), "/etc/hosts", false),
            m(pd.join("etc/resolv.conf"), "/etc/resolv.conf", false),
            m(pd.join("etc/hostname"), "/etc/hostname", false),
            m(pd.join("volumes/configmap/cfg"), "/etc/app", true),
            m(claim.join("public"), "/srv/ro", true),
            m(claim.clone(), "/var/lib/app", false),
            m(pd.join("volumes/empty-dir/cache/s1"), "/var/lib/app/cache", false),
        ]
    );

    let sys = RecordingSyscall::default();
    enter_sandbox(&sys, &plan, &mounts[..1]).expect("enter");
    assert_eq!(
        sys.calls(),
        [
            SysCall::Setns(pd.join("ns/net"), Namespace::Net),
            SysCall::Setns(pd.join("ns/uts"), Namespace::Uts),
            SysCall::Unshare(vec![Namespace::Mount]),
            SysCall::MakeRprivate("/".into()),
            SysCall::BindMount { source: pd.join("etc/hosts"), target: "/etc/hosts".into(), readonly: false },
        ]
    );
}

#[test]
fn container_mount_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod();
    let plan = plan(&cfg(dir.path()), &p, "10.244.0.11".parse().expect("ip")).expect("plan");
    let cases = [
        (
            json!({"name": "nope", "mountPath": "/x"}),
            "volumeMount \"/x\": volume \"nope\" is not defined in the pod",
        ),
        (json!({"name": "data", "mountPath": "rel"}), "volumeMount \"rel\": mountPath must be absolute"),
        (
            json!({"name": "data", "mountPath": "/x", "subPath": "../../etc"}),
            "volumeMount \"/x\": subPath \"../../etc\" must be a relative path without '..'",
        ),
    ];
    for (vm, want) in cases {
        let c: Container =
            serde_json::from_value(json!({"name": "app", "command": ["x"], "volumeMounts": [vm]}))
                .expect("c");
        let err = container_mounts(&plan, &c, &Environment::default()).unwrap_err().to_string();
        assert_eq!(err, format!("pod \"shop/web-1\": container \"app\": {want}"));
    }
    // A container that mounts its own /etc/hosts keeps it.
    let c: Container = serde_json::from_value(json!({"name": "app", "command": ["x"],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/hosts", "subPath": "k"}]}))
    .expect("c");
    let mounts = container_mounts(&plan, &c, &Environment::default()).expect("mounts");
    assert_eq!(mounts.iter().filter(|m| m.target == Path::new("/etc/hosts")).count(), 1);
    assert!(mounts.iter().any(|m| m.target == Path::new("/etc/hosts") && m.readonly));
}
