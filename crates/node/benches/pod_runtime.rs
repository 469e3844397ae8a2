//! Pod runtime benchmark (needs root; prints why and exits without it). Run with
//! `cargo bench -p stead-node --bench pod_runtime`.
//!
//! Prints, each with its ratio to a baseline measured in the same process (spawning `/bin/true`):
//! - sandbox setup and teardown (netns, UTS ns, veth, bridge port, /etc files) for 1, 10 and 100 pods,
//!   median and p99 per pod;
//! - process start to Ready through the kubelet (`sync_pod` until the Ready condition), 20 pods;
//! - memory held by the runtime per running pod (RSS growth of this process / pods).
//!
//! Load is bounded (at most 100 pods) and everything is removed at the end.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_node::env::{EnvContext, MapLookup};
use stead_node::kubelet::{Kubelet, KubeletConfig};
use stead_node::netlink::{Netlink, NetnsRef, RtNetlink};
use stead_node::pod_files::DnsSettings;
use stead_node::sandbox::{self, SandboxConfig};
use stead_node::syscall::LinuxSyscall;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (pct(&v, 0.5), pct(&v, 0.99))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn pod(name: &str, command: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "bench", "uid": format!("bench-{name}-{}", std::process::id())},
        "spec": {"containers": [{"name": "app", "command": command}]}
    }))
    .expect("pod")
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the pod runtime benchmark needs root (namespaces, veths, cgroups)");
        return;
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    let mut base = vec![];
    for _ in 0..50 {
        let t = Instant::now();
        let _ = std::process::Command::new("/bin/true").status();
        base.push(t.elapsed());
    }
    let (base_med, base_p99) = summary(base);
    println!("baseline spawn /bin/true: median {:.2} ms, p99 {:.2} ms", ms(base_med), ms(base_p99));
    let ratio = |d: Duration| d.as_secs_f64() / base_med.as_secs_f64().max(1e-9);

    let state = tempfile::tempdir().expect("tempdir");
    let cfg = SandboxConfig {
        state_dir: state.path().to_owned(),
        bridge: "skb1".into(),
        gateway: "10.244.90.1/24".parse().expect("gateway"),
        dns: DnsSettings {
            nameservers: vec![Ipv4Addr::new(10, 244, 90, 1).into()],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: String::new(),
        },
    };
    rt.block_on(async {
        let nl = RtNetlink::new().expect("netlink");
        sandbox::ensure_bridge(&nl, &cfg).await.expect("bridge");
        for n in [1usize, 10, 100] {
            let pods: Vec<Pod> = (0..n).map(|i| pod(&format!("s{n}-{i}"), &["true"])).collect();
            let plans: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, p)| sandbox::plan(&cfg, p, Ipv4Addr::new(10, 244, 90, 10 + i as u8)).expect("plan"))
                .collect();
            let (mut up, mut down) = (vec![], vec![]);
            for (plan, p) in plans.iter().zip(&pods) {
                let t = Instant::now();
                sandbox::setup(&LinuxSyscall, &nl, plan, p, &MapLookup::default(), &EnvContext::default())
                    .await
                    .expect("setup");
                up.push(t.elapsed());
            }
            for plan in &plans {
                let t = Instant::now();
                sandbox::teardown(&LinuxSyscall, &nl, plan).await.expect("teardown");
                down.push(t.elapsed());
            }
            let (um, u99) = summary(up);
            let (dm, d99) = summary(down);
            println!(
                "sandbox setup, {n:>3} pods: median {:.2} ms ({:.1}x baseline), p99 {:.2} ms; \
                 teardown: median {:.2} ms ({:.1}x), p99 {:.2} ms",
                ms(um),
                ratio(um),
                ms(u99),
                ms(dm),
                ratio(dm),
                ms(d99)
            );
        }
        let _ = nl.delete_link(&NetnsRef::Host, &cfg.bridge).await;
    });

    let kstate = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let k = Kubelet::start(KubeletConfig {
            state_dir: kstate.path().to_owned(),
            node_name: "bench".into(),
            pod_cidr: "10.244.91.0/24".parse().expect("cidr"),
            bridge: "skb2".into(),
            cluster_domain: "cluster.local".into(),
            dns_server: None,
            init_program: env!("CARGO_BIN_EXE_stead-container-init").into(),
            init_args: vec![],
            default_runtime: stead_node::runtime_class::ContainerRuntime::HostProcess,
            registry_env: stead_node::images::RegistryEnv::Process,
        })
        .await
        .expect("kubelet");
        let rss_before = rss_kib();
        let n = 20;
        let mut ready = vec![];
        for i in 0..n {
            let name = format!("r{i}");
            let t = Instant::now();
            k.sync_pod(pod(&name, &["sleep", "600"]), Arc::new(MapLookup::default())).expect("sync");
            let deadline = t + Duration::from_secs(30);
            loop {
                let is_ready = k
                    .pod_status("bench", &name)
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if is_ready {
                    break;
                }
                assert!(Instant::now() < deadline, "pod {name} not ready");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            ready.push(t.elapsed());
        }
        let rss_after = rss_kib();
        let (rm, r99) = summary(ready);
        println!(
            "start to Ready (sync_pod, sandbox, init, exec), {n} pods: median {:.2} ms ({:.1}x baseline), p99 {:.2} ms",
            ms(rm),
            ratio(rm),
            ms(r99)
        );
        println!(
            "runtime memory per running pod: {:.0} KiB (RSS {} -> {} KiB over {n} pods)",
            rss_after.saturating_sub(rss_before) as f64 / n as f64,
            rss_before,
            rss_after
        );
        let t = Instant::now();
        k.shutdown().await;
        println!("shutdown of {n} pods (parallel, graceful): {:.1} ms", ms(t.elapsed()));
    });
}
