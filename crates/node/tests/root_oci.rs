//! Image containers run by runc through `stead_node::oci`, as root. Without root or runc each test
//! says why it is skipped, or fails under CI (see `stead-testkit`).
//!
//! The image is built by the tests from the host's busybox (and the libraries it links, when it is
//! not static): layer 0 holds `/bin`, `/etc/passwd`, `/etc/group`, `/image-only/` and `/gone`;
//! layer 1 whites `/gone` out (overlayfs' 0/0 character device) and adds `/added`. The layers
//! are laid out in overlay form once, under the target's temporary directory, and shared by every
//! test of this file (each test runs in its own process; the first one builds them atomically).
//! Each test makes its own pod sandbox (real network, UTS and IPC namespaces; no links), state
//! directory and runc root, and checks that nothing is left.

use k8s_openapi::api::core::v1::Pod;
use oci_spec::image::ImageConfiguration;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stead_node::env::{EnvContext, MapLookup, resolve_env};
use stead_node::logs::{LogConfig, LogWriter};
use stead_node::netlink::RecordingNetlink;
use stead_node::oci::{self, CreateRequest, OciContainer, OciRuntime};
use stead_node::pod_files::DnsSettings;
use stead_node::process::ContainerProcess;
use stead_node::sandbox::{self, SandboxConfig, SandboxPlan};
use stead_node::status::Exit;
use stead_node::syscall::LinuxSyscall;

const APPLETS: &[&str] = &[
    "sh", "id", "cat", "echo", "sleep", "ls", "touch", "mkdir", "hostname", "grep", "test", "true", "pwd",
    "wc", "head", "unshare", "stat", "readlink", "tr",
];

fn ready() -> Option<PathBuf> {
    if !stead_testkit::require_root("mounts, namespaces and runc") {
        return None;
    }
    stead_testkit::require_program("runc", "Debian's runc package")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The shared image layers: `[layer0, layer1]`, bottom first.
fn layers() -> Vec<PathBuf> {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("root-oci-layers-v3");
    if !base.join("done").exists() {
        let tmp =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(".root-oci-layers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        build_layers(&tmp);
        std::fs::write(tmp.join("done"), "").expect("done");
        if std::fs::rename(&tmp, &base).is_err() {
            // Another test process won the race.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    vec![base.join("0"), base.join("1")]
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

fn build_layers(at: &Path) {
    let l0 = at.join("0");
    let busybox = Path::new("/bin/busybox");
    std::fs::create_dir_all(l0.join("bin")).expect("mkdir");
    std::fs::copy(busybox, l0.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", l0.join("bin").join(a)).expect("applet");
    }
    // The libraries of a dynamic busybox, at the paths the loader looks for them.
    let ldd = std::process::Command::new("ldd").arg(busybox).output().expect("ldd");
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let dest = l0.join(word.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::copy(word, &dest).expect("copy library");
        }
    }
    write(&l0.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
    write(&l0.join("etc/group"), "root:x:0:\napp:x:1000:\nstaff:x:50:app\n");
    write(&l0.join("etc/hosts"), "127.0.0.1 image-hosts\n");
    write(&l0.join("image-only/from-image"), "image\n");
    write(&l0.join("gone"), "should be hidden\n");
    std::fs::create_dir_all(l0.join("srv")).expect("mkdir");
    let l1 = at.join("1");
    std::fs::create_dir_all(&l1).expect("mkdir");
    nix::sys::stat::mknod(
        &l1.join("gone"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .expect("whiteout");
    write(&l1.join("added"), "layer two\n");
}

fn image(config: serde_json::Value) -> ImageConfiguration {
    serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []}}))
    .expect("image config")
}

/// One pod's sandbox and state directory.
struct PodEnv {
    _dir: tempfile::TempDir,
    state: PathBuf,
    plan: SandboxPlan,
    pod: Pod,
    runtime: OciRuntime,
    rt: tokio::runtime::Runtime,
}

impl PodEnv {
    fn new(runc: PathBuf, spec: serde_json::Value) -> PodEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let uid =
            format!("oci-{}-{}", std::process::id(), spec["containers"][0]["name"].as_str().unwrap_or(""));
        let mut spec = spec;
        spec["hostname"] = json!("web-0");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "e2e", "uid": uid}, "spec": spec}))
        .expect("pod");
        let cfg = SandboxConfig {
            state_dir: state.clone(),
            bridge: "unused0".into(),
            gateway: "10.244.7.1/24".parse().expect("gateway"),
            dns: DnsSettings {
                nameservers: vec!["10.244.7.1".parse().expect("ip")],
                cluster_domain: "cluster.local".into(),
                host_resolv_conf: String::new(),
            },
        };
        let plan = sandbox::plan(&cfg, &pod, "10.244.7.9".parse().expect("ip")).expect("plan");
        let rt = rt();
        rt.block_on(sandbox::setup(
            &LinuxSyscall,
            &RecordingNetlink::default(),
            &plan,
            &pod,
            &MapLookup::default(),
            &EnvContext::default(),
        ))
        .expect("sandbox");
        let runtime = OciRuntime::new(runc, oci::runtime::state_root(&state));
        PodEnv { _dir: dir, state, plan, pod, runtime, rt }
    }

    fn create(&self, image: &ImageConfiguration, cgroups_path: Option<&str>) -> OciContainer {
        self.try_create(image, cgroups_path).expect("create")
    }

    fn try_create(
        &self,
        image: &ImageConfiguration,
        cgroups_path: Option<&str>,
    ) -> Result<OciContainer, oci::OciError> {
        let c = &self.pod.spec.as_ref().expect("spec").containers[0];
        let env = resolve_env(&self.pod, c, &EnvContext::default(), &MapLookup::default()).expect("env");
        let mounts = sandbox::container_mounts(&self.plan, c, &env).expect("mounts");
        let layers = layers();
        oci::create(
            &LinuxSyscall,
            &self.runtime,
            &CreateRequest {
                pod: &self.pod,
                container: c,
                image,
                layers: &layers,
                env: &env,
                sandbox: &self.plan,
                mounts: &mounts,
                cgroups_path,
                memory_limit: None,
                instance: 0,
            },
        )
    }

    fn spawn(&self, ctr: &OciContainer) -> ContainerProcess {
        let log = LogWriter::open(&self.state.join("logs/app"), 0, LogConfig::default()).expect("log");
        let _guard = self.rt.enter();
        ctr.spawn(log).expect("spawn")
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(stead_node::logs::log_path(&self.state.join("logs/app"), 0))
            .unwrap_or_default();
        text.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("")).collect::<Vec<_>>().join("\n")
    }

    /// Runs the container to its end; its exit and output.
    fn run(&self, image: &ImageConfiguration) -> (Exit, String) {
        let ctr = self.create(image, None);
        let mut proc = self.spawn(&ctr);
        let exit =
            self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), proc.wait()).await });
        let exit = exit.expect("exits in time").expect("wait");
        ctr.remove(&LinuxSyscall).expect("remove");
        assert!(!ctr.bundle.exists(), "bundle removed");
        (exit, self.log())
    }

    fn exec(&self, ctr: &OciContainer, argv: &[&str]) -> (i32, String) {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        let out = self.rt.block_on(async { ctr.exec_command(&argv).output().await }).expect("exec");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        let left = self.runtime.remove_leftovers(&LinuxSyscall, &self.state);
        let _ = self.rt.block_on(sandbox::teardown(&LinuxSyscall, &RecordingNetlink::default(), &self.plan));
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let cgroups = oci::remove_pod_cgroups(Path::new("/sys/fs/cgroup"), &uid);
        if !std::thread::panicking() {
            assert_eq!(left.expect("cleanup"), Vec::<String>::new(), "containers were left");
            cgroups.expect("pod cgroups removed");
            for h in std::fs::read_dir("/sys/fs/cgroup").expect("cgroups").filter_map(Result::ok) {
                assert!(!h.path().join("stead").join(&uid).exists(), "{} left", h.path().display());
            }
        }
    }
}

/// Waits until the container runs its program (`runc state` says `running`: the init has
/// exec'd); returns the init's host pid. A container killed before that ends `runc run` with 1.
fn wait_running(ctr: &OciContainer) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = ctr.runtime.state(&ctr.id).ok().flatten().is_some_and(|s| s.status == "running");
        if let (true, Some(pid)) = (running, ctr.runtime.init_pid(&ctr.id)) {
            return pid;
        }
        assert!(Instant::now() < deadline, "container {} did not start", ctr.id);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sh(script: &str) -> ImageConfiguration {
    image(json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": [script], "Env": ["PATH=/bin"]}))
}

#[test]
fn image_config_layers_and_pod_files() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"containers": [{"name": "app", "image": "busybox:test",
            "args": ["echo \"$FROM_IMAGE $FROM_POD $(FROM_POD)\"; pwd; test -e /gone || echo whiteout-ok; cat /added; \
                      cat /etc/hostname; hostname; grep -c web-0 /etc/hosts; grep -c image-hosts /etc/hosts; \
                      for n in net uts ipc; do readlink /proc/self/ns/$n; done; exit 7"],
            "env": [{"name": "FROM_POD", "value": "pod"}]}]}),
    );
    let img = image(json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo from-cmd"], "WorkingDir": "/srv",
        "Env": ["PATH=/bin", "FROM_IMAGE=image"]}));
    let (exit, out) = p.run(&img);
    assert_eq!(exit, Exit::Code(7), "{out}");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::metadata(p).expect("pinned namespace").ino();
    let (net, uts, ipc) = (ino(&p.plan.netns_path), ino(&p.plan.uts_path), ino(&p.plan.ipc_path));
    assert_eq!(
        out,
        format!(
            "image pod pod\n/srv\nwhiteout-ok\nlayer two\nweb-0\nweb-0\n1\n0\nnet:[{net}]\nuts:[{uts}]\nipc:[{ipc}]"
        ),
        "the pod's namespaces are joined"
    );
}

#[test]
fn users_groups_and_volumes_at_paths_only_the_image_has_or_none_has() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
            "containers": [{"name": "app", "image": "busybox:test",
                "volumeMounts": [{"name": "data", "mountPath": "/image-only"},
                                 {"name": "fresh", "mountPath": "/nowhere/deep"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "fresh", "emptyDir": {}}]}),
    );
    let img = sh(
        "id -u; id -g; id -G; echo x > /image-only/f && echo wrote1; echo y > /nowhere/deep/f && echo wrote2; \
                  ls /image-only; touch /root-write 2>/dev/null || echo root-denied",
    );
    let (exit, out) = p.run(&img);
    assert_eq!(exit, Exit::Code(0), "{out}");
    // 50: the image's /etc/group lists `app` (uid 1000) in `staff`.
    assert_eq!(out, "1000\n3000\n3000 50 2000\nwrote1\nwrote2\nf\nroot-denied");
    assert!(!Path::new("/nowhere").exists(), "mount points are made inside the root, never on the host");
    let written = p.plan.volumes.iter().find(|v| v.name == "data").expect("volume").path.join("f");
    let meta = std::fs::metadata(&written).expect("written on the volume");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1000, 2000), "fsGroup's set-group-ID directory");
}

#[test]
fn default_isolation() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"containers": [{"name": "app", "image": "busybox:test",
            "securityContext": {"allowPrivilegeEscalation": false, "seccompProfile": {"type": "RuntimeDefault"}}}]}),
    );
    let img = sh(
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; wc -c < /proc/timer_list; ls /sys/firmware | wc -l; \
                  (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo sys-writable || echo sys-readonly; \
                  (echo 1 > /sys/kernel/profiling) 2>/dev/null && echo sysfs-writable || echo sysfs-readonly; \
                  unshare -U true 2>/dev/null && echo unshared || echo unshare-refused",
    );
    let (exit, out) = p.run(&img);
    assert_eq!(exit, Exit::Code(0), "{out}");
    assert_eq!(
        out,
        "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n0\n0\nsys-readonly\nsysfs-readonly\nunshare-refused"
    );
}

#[test]
fn read_only_root_keeps_volumes_writable() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"containers": [{"name": "app", "image": "busybox:test",
            "securityContext": {"readOnlyRootFilesystem": true},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}]}),
    );
    // Unconfined (Kubernetes' default): `unshare` works here, unlike under RuntimeDefault.
    let (exit, out) = p.run(&sh("touch /x 2>/dev/null && echo root-writable || echo root-readonly; \
                                 touch /data/x && echo volume-ok; unshare -U true && echo unshared"));
    assert_eq!((exit, out.as_str()), (Exit::Code(0), "root-readonly\nvolume-ok\nunshared"));
}

#[test]
fn exec_then_stop_with_sigkill_after_the_grace_period() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"containers": [{"name": "app", "image": "busybox:test", "workingDir": "/srv",
            "env": [{"name": "FROM_POD", "value": "pod"}], "securityContext": {"runAsUser": 1000}}]}),
    );
    // pid 1 ignores SIGTERM without a handler, as in every container: the stop must SIGKILL it.
    let ctr = p.create(&sh("exec sleep 1000"), None);
    let mut proc = p.spawn(&ctr);
    wait_running(&ctr);
    let (code, out) = p.exec(&ctr, &["sh", "-c", "echo $FROM_POD; id -u; pwd"]);
    assert_eq!((code, out.as_str()), (0, "pod\n1000\n/srv\n"));
    assert_eq!(p.exec(&ctr, &["sh", "-c", "exit 3"]).0, 3);
    let state = ctr.runtime.state(&ctr.id).expect("state").expect("known");
    assert_eq!(state.status, "running");
    let started = Instant::now();
    let exit = p.rt.block_on(proc.stop(&LinuxSyscall, Duration::from_millis(500))).expect("stop");
    assert_eq!(exit, Exit::Code(137), "128 + SIGKILL");
    assert!(started.elapsed() >= Duration::from_millis(500) && started.elapsed() < Duration::from_secs(10));
    assert_eq!(ctr.runtime.state(&ctr.id).expect("state").map(|s| s.status).as_deref(), Some("stopped"));
    ctr.remove(&LinuxSyscall).expect("remove");
    assert_eq!(ctr.runtime.state(&ctr.id).expect("state"), None);
}

#[test]
fn run_as_non_root_refuses_before_anything_runs() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "app", "image": "busybox:test"}]}),
    );
    let img = image(json!({"Cmd": ["true"], "User": "app"}));
    let e = p.try_create(&img, None).unwrap_err();
    assert!(
        e.to_string().starts_with("container has runAsNonRoot and image has non-numeric user (app)"),
        "{e}"
    );
    assert!(!oci::rootfs::bundle_dir(&p.plan.pod_dir, "app", 0).exists(), "nothing left");
}

#[test]
fn runc_kill_signals_the_container() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(runc, json!({"containers": [{"name": "app", "image": "busybox:test"}]}));
    let ctr = p.create(&sh("exec sleep 1000"), None);
    let mut proc = p.spawn(&ctr);
    wait_running(&ctr);
    ctr.runtime.kill(&ctr.id, nix::sys::signal::Signal::SIGKILL).expect("runc kill");
    let exit = p.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), proc.wait()).await });
    assert_eq!(exit.expect("runc exits").expect("wait"), Exit::Code(137));
    let e = ctr.runtime.kill(&ctr.id, nix::sys::signal::Signal::SIGKILL).unwrap_err();
    assert!(e.to_string().contains(&format!("kill {} SIGKILL", ctr.id)), "{e}");
    ctr.remove(&LinuxSyscall).expect("remove");
}

#[test]
fn leftovers_of_a_dead_daemon_are_removed() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(runc, json!({"containers": [{"name": "app", "image": "busybox:test"}]}));
    let ctr = p.create(&sh("exec sleep 1000"), None);
    let mut proc = p.spawn(&ctr);
    wait_running(&ctr);
    // A new daemon finds the container and its mounted root file system.
    let fresh = OciRuntime::new(ctr.runtime.program().to_owned(), ctr.runtime.root().to_owned());
    assert_eq!(
        fresh.remove_leftovers(&LinuxSyscall, &p.state).expect("cleanup"),
        std::slice::from_ref(&ctr.id)
    );
    let exit = p.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), proc.wait()).await });
    assert_eq!(exit.expect("runc exits").expect("wait"), Exit::Code(137));
    assert!(!ctr.bundle.exists(), "bundle unmounted and removed");
    assert_eq!(fresh.list().expect("list"), Vec::<String>::new());
}

#[test]
fn the_kubelets_cgroups_hold_the_container() {
    let Some(runc) = ready() else { return };
    let cgroups = stead_node::cgroups::Cgroups::detect(Path::new("/sys/fs/cgroup"));
    if !cgroups.any() {
        stead_testkit::not_applicable("no cgroup hierarchy on this machine");
        return;
    }
    let p = PodEnv::new(runc, json!({"containers": [{"name": "app", "image": "busybox:test"}]}));
    let uid = p.pod.metadata.uid.clone().expect("uid");
    let cg = cgroups.create(&uid, "app", Some(64 << 20)).expect("cgroups");
    let path = oci::cgroups_path(&uid, "app");
    let ctr = p.create(&sh("exec sleep 1000"), Some(&path));
    let mut proc = p.spawn(&ctr);
    let pid = wait_running(&ctr);
    assert!(
        cg.members().contains(&pid),
        "init {pid} in {:?}: {:?}",
        cg.dirs().collect::<Vec<_>>(),
        cg.members()
    );
    if let Some(mem) = &cg.memory {
        let limit = std::fs::read_to_string(mem.join("memory.limit_in_bytes")).expect("limit");
        assert_eq!(limit.trim(), (64u64 << 20).to_string());
    }
    cg.kill_all(Duration::from_secs(5)).expect("kill all");
    assert_eq!(cg.oom_kills(), 0);
    let exit = p.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), proc.wait()).await });
    assert_eq!(exit.expect("runc exits").expect("wait"), Exit::Code(137), "{}", p.log());
    ctr.remove(&LinuxSyscall).expect("remove");
    let _ = cgroups.kill_pod(&uid);
    assert!(cg.dirs().all(|d| !d.exists()), "cgroups removed");
}

#[test]
fn privileged_gets_every_capability_and_the_host_devices() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(
        runc,
        json!({"containers": [{"name": "app", "image": "busybox:test", "securityContext": {"privileged": true}}]}),
    );
    let img = sh("grep '^CapEff:' /proc/self/status; head -c 1 /proc/timer_list | wc -c; \
                  test -c /dev/kmsg && echo devices; (echo 1 > /proc/sys/kernel/ns_last_pid) && echo sys-writable");
    let (exit, out) = p.run(&img);
    assert_eq!(exit, Exit::Code(0), "{out}");
    // Every capability this kernel has: the test's own bounding set (it runs as root).
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let bounding = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).expect("CapBnd").trim();
    assert_eq!(out, format!("CapEff:\t{bounding}\n1\ndevices\nsys-writable"));
}

#[test]
fn many_layers_fit_in_overlays_option_page() {
    if !stead_testkit::require_root("overlay mounts") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // 200 layers with long paths: written out, their lowerdir option would be ~20 KiB.
    let long = dir.path().join("a-rather-long-directory-name-for-a-store".repeat(2));
    let layers: Vec<PathBuf> = (0..200)
        .map(|i| {
            let l = long.join(format!("{i:064x}"));
            write(&l.join(format!("file-{i}")), &format!("{i}\n"));
            l
        })
        .collect();
    write(&layers[0].join("shadowed"), "bottom\n");
    write(&layers[199].join("shadowed"), "top\n");
    let bundle = oci::rootfs::bundle_dir(dir.path(), "app", 0);
    let rootfs = oci::rootfs::mount_rootfs(&LinuxSyscall, &bundle, &layers).expect("mount");
    let read = |name: &str| std::fs::read_to_string(rootfs.join(name)).expect(name);
    assert_eq!(
        (read("file-0"), read("file-199"), read("shadowed")),
        ("0\n".into(), "199\n".into(), "top\n".into())
    );
    std::fs::write(rootfs.join("new"), "upper").expect("write");
    assert!(bundle.join("upper/new").exists(), "writes land in the instance's upper layer");
    assert!(!layers.iter().any(|l| l.join("new").exists()), "layers are never written");
    oci::rootfs::remove_bundle(&LinuxSyscall, &bundle).expect("remove");
    assert!(!bundle.exists());
}

#[test]
fn an_oom_kill_is_counted_in_the_kubelets_memory_cgroup() {
    let Some(runc) = ready() else { return };
    let cgroups = stead_node::cgroups::Cgroups::detect(Path::new("/sys/fs/cgroup"));
    if cgroups.memory.is_none() {
        stead_testkit::not_applicable("no cgroup v1 memory hierarchy on this machine");
        return;
    }
    let p = PodEnv::new(runc, json!({"containers": [{"name": "app", "image": "busybox:test"}]}));
    let uid = p.pod.metadata.uid.clone().expect("uid");
    let cg = cgroups.create(&uid, "app", Some(16 << 20)).expect("cgroups");
    let path = oci::cgroups_path(&uid, "app");
    // The shell keeps 64 MiB in a variable under a 16 MiB limit.
    let ctr = p.create(&sh("x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived"), Some(&path));
    let mut proc = p.spawn(&ctr);
    let exit = p.rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), proc.wait()).await });
    assert_eq!(exit.expect("runc exits").expect("wait"), Exit::Code(137), "{}", p.log());
    assert!(cg.oom_kills() >= 1, "the OOM kill is counted after runc run returned (--keep)");
    ctr.remove(&LinuxSyscall).expect("remove");
    let _ = cgroups.kill_pod(&uid);
}

#[test]
fn a_missing_program_fails_the_run_with_runcs_message_in_the_log() {
    let Some(runc) = ready() else { return };
    let p = PodEnv::new(runc, json!({"containers": [{"name": "app", "image": "busybox:test"}]}));
    let (exit, out) = p.run(&image(json!({"Cmd": ["no-such-program"], "Env": ["PATH=/bin"]})));
    assert_eq!(exit, Exit::Code(1), "{out}");
    assert!(out.contains("no-such-program"), "{out}");
}
