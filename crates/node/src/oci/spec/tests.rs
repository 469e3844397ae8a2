use super::*;
use crate::oci::user::{parse_group, parse_passwd};
use oci_spec::runtime::LinuxNamespaceType as Ns;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"}, "spec": spec}),
    )
    .expect("pod")
}

fn image(config: serde_json::Value) -> ImageConfiguration {
    serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []}}))
    .expect("image config")
}

fn users() -> UserDb {
    UserDb {
        passwd: parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n",
        ),
        groups: parse_group("root:x:0:\nnogroup:x:65534:\nwheel:x:10:nobody\n"),
    }
}

fn env(vars: &[(&str, &str)]) -> Environment {
    let mut e = Environment::default();
    for (n, v) in vars {
        e.set((*n).into(), (*v).into());
    }
    e
}

fn resolve(p: &Pod, img: &ImageConfiguration) -> Result<ProcessSpec, OciError> {
    let c = &p.spec.as_ref().expect("spec").containers[0];
    resolve_process(p, c, img, &env(&[("GREETING", "hi"), ("MODE", "pod")]), &users(), "web-0")
}

fn spec_of(p: &Pod) -> Spec {
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let process = ProcessSpec {
        argv: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: ResolvedUser::default(),
    };
    let ns =
        PodNamespaces { net: "/s/ns/net".into(), uts: "/s/ns/uts".into(), ipc: Some("/s/ns/ipc".into()) };
    let mounts = [
        MountSpec { source: "/s/etc/hosts".into(), target: "/etc/hosts".into(), readonly: false },
        MountSpec { source: "/s/volumes/cfg".into(), target: "/config".into(), readonly: true },
    ];
    runtime_spec(&SpecInputs {
        pod: p,
        container: c,
        process: &process,
        namespaces: &ns,
        rootfs: Path::new("/s/containers/app-0/rootfs"),
        mounts: &mounts,
        cgroups_path: Some("/stead/u1/app"),
        memory_limit: Some(64 << 20),
        host_devices: &[],
        host_capabilities: &all_capabilities(),
    })
    .expect("spec")
}

fn caps(s: &Spec) -> Vec<String> {
    let set =
        s.process().as_ref().and_then(|p| p.capabilities().as_ref()).and_then(|c| c.effective().clone());
    let mut v: Vec<String> = set.expect("effective").iter().map(|c| format!("{c}")).collect();
    v.sort();
    v
}

#[test]
fn argv_env_and_cwd_merge_the_image_config() {
    let img =
        image(json!({"Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/opt/bin", "MODE=image"],
        "WorkingDir": "/srv"}));
    let p = pod(json!({"containers": [{"name": "app", "image": "shop:1", "args": ["--say", "$(GREETING)"],
        "env": [{"name": "MODE", "value": "pod"}]}]}));
    let r = resolve(&p, &img).expect("resolve");
    assert_eq!(r.argv, ["/entry", "--say", "hi"], "entrypoint + expanded args");
    assert_eq!(r.env, ["PATH=/opt/bin", "MODE=pod", "HOSTNAME=web-0", "GREETING=hi"]);
    assert_eq!(r.cwd, "/srv");
    let p = pod(
        json!({"containers": [{"name": "app", "image": "shop:1", "command": ["/bin/sh"], "workingDir": "/w"}]}),
    );
    let r = resolve(&p, &image(json!({"Cmd": ["serve"]}))).expect("resolve");
    assert_eq!(r.argv, ["/bin/sh"], "command replaces entrypoint and cmd");
    assert_eq!(r.cwd, "/w");
    assert!(r.env.contains(&format!("PATH={DEFAULT_PATH}")), "{:?}", r.env);
    let e = resolve(&pod(json!({"containers": [{"name": "app", "image": "empty"}]})), &image(json!({})))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pod \"shop/web-0\": container \"app\": image empty has no entrypoint or cmd and the container gives no command"
    );
}

#[test]
fn users_come_from_the_security_context_then_the_image() {
    let img = image(json!({"Cmd": ["sh"], "User": "nobody"}));
    let r = resolve(&pod(json!({"containers": [{"name": "app"}]})), &img).expect("image user");
    assert_eq!((r.user.uid, r.user.gid, r.user.additional_gids.clone()), (65534, 65534, vec![10]));
    let p = pod(json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
        "supplementalGroups": [4000]}, "containers": [{"name": "app", "securityContext": {"runAsUser": 1001}}]}));
    let r = resolve(&p, &img).expect("run as");
    assert_eq!((r.user.uid, r.user.gid), (1001, 3000), "the container's runAsUser wins");
    assert_eq!(r.user.additional_gids, [2000, 4000], "fsGroup and supplementalGroups");
    let r = resolve(
        &pod(json!({"containers": [{"name": "app"}]})),
        &image(json!({"Cmd": ["sh"], "User": "7:8"})),
    )
    .expect("numeric");
    assert_eq!((r.user.uid, r.user.gid), (7, 8));
    let e = resolve(
        &pod(json!({"containers": [{"name": "app"}]})),
        &image(json!({"Cmd": ["sh"], "User": "ghost"})),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pod \"shop/web-0\": container \"app\": user \"ghost\" is not in the image's /etc/passwd"
    );
}

#[test]
fn run_as_non_root_refuses_root_and_unverifiable_names() {
    let non_root =
        |sc: serde_json::Value| pod(json!({"securityContext": sc, "containers": [{"name": "app"}]}));
    let root_img = image(json!({"Cmd": ["sh"]}));
    let e = resolve(&non_root(json!({"runAsNonRoot": true})), &root_img).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container has runAsNonRoot and image will run as root (pod: \"shop/web-0\", container: app)"
    );
    let e = resolve(&non_root(json!({"runAsNonRoot": true, "runAsUser": 0})), &root_img).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container's runAsUser breaks non-root policy (pod: \"shop/web-0\", container: app)"
    );
    let named = image(json!({"Cmd": ["sh"], "User": "nobody"}));
    let e = resolve(&non_root(json!({"runAsNonRoot": true})), &named).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root \
         (pod: \"shop/web-0\", container: app)"
    );
    assert!(matches!(e, OciError::NonRoot(_)));
    assert!(resolve(&non_root(json!({"runAsNonRoot": true, "runAsUser": 10})), &named).is_ok());
    assert!(
        resolve(&non_root(json!({"runAsNonRoot": true})), &image(json!({"Cmd": ["sh"], "User": "10"})))
            .is_ok()
    );
}

#[test]
fn the_default_spec_isolates_like_containerd() {
    let s = spec_of(&pod(json!({"containers": [{"name": "app"}]})));
    assert_eq!(
        caps(&s),
        [
            "AUDIT_WRITE",
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "FSETID",
            "KILL",
            "MKNOD",
            "NET_BIND_SERVICE",
            "NET_RAW",
            "SETFCAP",
            "SETGID",
            "SETPCAP",
            "SETUID",
            "SYS_CHROOT"
        ]
    );
    let linux = s.linux().as_ref().expect("linux");
    let ns: Vec<(Ns, Option<PathBuf>)> =
        linux.namespaces().iter().flatten().map(|n| (n.typ(), n.path().clone())).collect();
    assert_eq!(
        ns,
        [
            (Ns::Pid, None),
            (Ns::Network, Some("/s/ns/net".into())),
            (Ns::Ipc, Some("/s/ns/ipc".into())),
            (Ns::Uts, Some("/s/ns/uts".into())),
            (Ns::Mount, None)
        ]
    );
    assert!(linux.masked_paths().iter().flatten().any(|p| p == "/proc/kcore"));
    assert!(linux.readonly_paths().iter().flatten().any(|p| p == "/proc/sys"));
    assert_eq!(linux.cgroups_path().as_deref(), Some(Path::new("/stead/u1/app")));
    assert!(linux.seccomp().is_none(), "Unconfined unless asked, as Kubernetes' default");
    let process = s.process().as_ref().expect("process");
    assert_eq!(process.no_new_privileges(), Some(false));
    assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(false));
    let json = serde_json::to_value(&s).expect("json");
    assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert!(json.get("hostname").is_none(), "the sandbox's UTS namespace has it");
    let mounts: Vec<(String, String, Vec<String>)> = json["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            let opts =
                m["options"].as_array().expect("options").iter().map(|o| o.as_str().expect("str").to_owned());
            (
                m["destination"].as_str().expect("dest").to_owned(),
                m["type"].as_str().expect("type").to_owned(),
                opts.collect(),
            )
        })
        .collect();
    let find = |d: &str| mounts.iter().find(|m| m.0 == d).cloned().expect(d);
    assert!(find("/sys").2.contains(&"ro".to_owned()));
    assert!(find("/sys/fs/cgroup").2.contains(&"ro".to_owned()));
    assert_eq!(find("/dev/mqueue").1, "mqueue");
    assert_eq!(
        find("/etc/hosts"),
        ("/etc/hosts".into(), "bind".into(), vec!["rbind".into(), "rprivate".into(), "rw".into()])
    );
    assert_eq!(find("/config").2.last().map(String::as_str), Some("ro"));
    assert_eq!(mounts.last().map(|m| m.0.as_str()), Some("/config"), "binds after the standard mounts");
}

#[test]
fn the_security_context_is_honoured() {
    let s = spec_of(&pod(json!({"containers": [{"name": "app", "securityContext": {
        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "CAP_CHOWN"]},
        "seccompProfile": {"type": "RuntimeDefault"}}}]})));
    assert_eq!(caps(&s), ["CHOWN", "NET_ADMIN"]);
    assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(true));
    assert_eq!(s.process().as_ref().and_then(|p| p.no_new_privileges()), Some(true));
    let seccomp = s.linux().as_ref().and_then(|l| l.seccomp().clone()).expect("RuntimeDefault");
    assert!(seccomp.syscalls().iter().flatten().any(|r| r.names().iter().any(|n| n == "mount")));

    let s = spec_of(&pod(json!({"containers": [{"name": "app", "securityContext": {
        "capabilities": {"add": ["SYS_ADMIN"], "drop": ["NET_RAW", "MKNOD"]}}}]})));
    let c = caps(&s);
    assert!(
        c.contains(&"SYS_ADMIN".into()) && !c.contains(&"NET_RAW".into()) && !c.contains(&"MKNOD".into())
    );
    assert_eq!(c.len(), 13);
    assert_eq!(
        caps(&spec_of(&pod(json!({"containers": [{"name": "app",
        "securityContext": {"capabilities": {"add": ["ALL"]}}}]}))))
        .len(),
        all_capabilities().len()
    );

    let s = spec_of(&pod(json!({"containers": [{"name": "app", "securityContext": {"privileged": true,
        "allowPrivilegeEscalation": false, "seccompProfile": {"type": "RuntimeDefault"}}}]})));
    assert_eq!(caps(&s).len(), all_capabilities().len());
    let linux = s.linux().as_ref().expect("linux");
    assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none() && linux.seccomp().is_none());
    let json = serde_json::to_value(&s).expect("json");
    assert_eq!(json["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));
    assert_eq!(json["process"]["noNewPrivileges"], false);
}

#[test]
fn capabilities_are_limited_to_what_the_node_has() {
    let mask = 0x0000_01ff_feff_ffff_u64; // every capability but CAP_SYS_RESOURCE (bit 24)
    let host = capabilities_from_mask(mask);
    assert_eq!(host.len(), 40);
    assert!(!host.contains(&Capability::SysResource) && host.contains(&Capability::CheckpointRestore));
    let p = pod(json!({"containers": [{"name": "app", "securityContext": {"privileged": true}}]}));
    assert_eq!(capabilities(&p, &p.spec.as_ref().expect("spec").containers[0], &host).expect("caps"), host);
    let p = pod(json!({"containers": [{"name": "app",
        "securityContext": {"capabilities": {"add": ["SYS_RESOURCE", "NET_ADMIN"]}}}]}));
    let caps = capabilities(&p, &p.spec.as_ref().expect("spec").containers[0], &host).expect("caps");
    assert!(caps.contains(&Capability::NetAdmin) && !caps.contains(&Capability::SysResource));
}

#[test]
fn bad_security_contexts_are_named() {
    let p =
        pod(json!({"containers": [{"name": "app", "securityContext": {"capabilities": {"add": ["FLY"]}}}]}));
    let c = &p.spec.as_ref().expect("spec").containers[0];
    assert_eq!(
        capabilities(&p, c, &all_capabilities()).unwrap_err().to_string(),
        "pod \"shop/web-0\": container \"app\": unknown capability \"FLY\""
    );
    let p = pod(
        json!({"containers": [{"name": "app", "securityContext": {"seccompProfile": {"type": "Localhost",
        "localhostProfile": "my.json"}}}]}),
    );
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let process =
        ProcessSpec { argv: vec!["sh".into()], env: vec![], cwd: "/".into(), user: ResolvedUser::default() };
    let ns = PodNamespaces { net: "/n".into(), uts: "/u".into(), ipc: None };
    let e = runtime_spec(&SpecInputs {
        pod: &p,
        container: c,
        process: &process,
        namespaces: &ns,
        rootfs: Path::new("/r"),
        mounts: &[],
        cgroups_path: None,
        memory_limit: None,
        host_devices: &[],
        host_capabilities: &all_capabilities(),
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pod \"shop/web-0\": container \"app\": seccompProfile type \"Localhost\" (my.json) is not supported here \
         (RuntimeDefault and Unconfined are)"
    );
    let p = pod(json!({"securityContext": {"runAsUser": -1}, "containers": [{"name": "app"}]}));
    let e = resolve(&p, &image(json!({"Cmd": ["sh"]}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pod \"shop/web-0\": container \"app\": securityContext.runAsUser -1 is not a valid id"
    );
}
