use super::*;
use crate::env::MapLookup;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn pod(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "uid-0", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "command": ["true"]}], "volumes": volumes}
    }))
    .expect("pod")
}

fn lookup(cm_data: serde_json::Value) -> MapLookup {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg", "namespace": "shop"}, "data": cm_data}))
            .expect("cm");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}
    }))
    .expect("secret");
    MapLookup::default().with_config_map(cm).with_secret(secret)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn plan_paths() {
    let state = Path::new("/state");
    let p = pod(json!([
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
        {"name": "ro", "persistentVolumeClaim": {"claimName": "shared", "readOnly": true}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "creds", "secret": {"secretName": "db"}},
        {"name": "info", "downwardAPI": {"items": []}},
        {"name": "host", "hostPath": {"path": "/var/log"}}
    ]));
    let planned = plan_volumes(state, &p).expect("plan");
    let got: Vec<(&str, &str, Option<Tmpfs>, bool)> = planned
        .iter()
        .map(|v| (v.name.as_str(), v.path.to_str().unwrap_or(""), v.tmpfs, v.force_readonly))
        .collect();
    // A Secret's tmpfs is root's, 0755, never tmpfs's world-writable default.
    let secret = Tmpfs { size: None, mode: 0o755 };
    let memory = Tmpfs { size: Some(64 * 1024 * 1024), mode: 0o1777 };
    assert_eq!(
        got,
        vec![
            ("data", "/state/volumes/shop/data-web-0", None, false),
            ("ro", "/state/volumes/shop/shared", None, true),
            ("scratch", "/state/pods/uid-0/volumes/empty-dir/scratch", None, false),
            ("mem", "/state/pods/uid-0/volumes/empty-dir/mem", Some(memory), false),
            ("cfg", "/state/pods/uid-0/volumes/configmap/cfg", None, true),
            ("creds", "/state/pods/uid-0/volumes/secret/creds", Some(secret), true),
            ("info", "/state/pods/uid-0/volumes/downward-api/info", None, true),
            ("host", "/var/log", None, false),
        ]
    );
}

#[test]
fn plan_errors() {
    let state = Path::new("/state");
    let cases = [
        (
            json!([{"name": "x", "nfs": {"server": "a", "path": "/"}}]),
            "pod \"shop/web-0\": volume \"x\": unsupported volume type (supported: persistentVolumeClaim, emptyDir, configMap, secret, downwardAPI, hostPath)",
        ),
        (
            json!([{"name": "x", "persistentVolumeClaim": {"claimName": "../etc"}}]),
            "pod \"shop/web-0\": volume \"x\": claimName \"../etc\" must be a relative path without '..'",
        ),
        (
            json!([{"name": "x", "emptyDir": {"medium": "Memory", "sizeLimit": "lots"}}]),
            "pod \"shop/web-0\": volume \"x\": invalid emptyDir.sizeLimit \"lots\"",
        ),
    ];
    for (vols, want) in cases {
        assert_eq!(plan_volumes(state, &pod(vols)).unwrap_err().to_string(), want);
    }
}

#[test]
fn configmap_items_modes_and_atomic_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod(json!([
        {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o640,
            "items": [{"key": "app.conf", "path": "conf/app.conf"}, {"key": "mode", "path": "mode", "mode": 0o600}]}},
        {"name": "all", "configMap": {"name": "cfg"}},
        {"name": "creds", "secret": {"secretName": "db"}}
    ]));
    let planned = plan_volumes(dir.path(), &p).expect("plan");
    let ctx = EnvContext::default();
    populate(&p, &planned, &lookup(json!({"app.conf": "v1", "mode": "prod", "extra": "x"})), &ctx)
        .expect("populate");

    let cfg = &planned[0].path;
    assert_eq!(fs::read_to_string(cfg.join("conf/app.conf")).expect("read"), "v1");
    assert_eq!(fs::read_link(cfg.join("conf")).expect("link"), Path::new("..data/conf"));
    assert_eq!(mode(&cfg.join("conf/app.conf")), 0o640);
    assert_eq!(mode(&cfg.join("mode")), 0o600);
    assert!(!cfg.join("extra").exists());
    let all = &planned[1].path;
    assert_eq!(fs::read_to_string(all.join("extra")).expect("extra"), "x");
    assert_eq!(mode(&all.join("extra")), 0o644);
    let creds = &planned[2].path;
    assert_eq!(fs::read_to_string(creds.join("password")).expect("secret"), "hunter2");
    assert_eq!(mode(&creds.join("password")), 0o644, "Kubernetes' default mode for secrets is 0644");

    // Update: new content appears through the same path, the old timestamped dir is gone.
    let before = fs::read_link(all.join("..data")).expect("data link");
    populate(&p, &planned, &lookup(json!({"app.conf": "v2", "mode": "prod"})), &ctx).expect("update");
    let after = fs::read_link(all.join("..data")).expect("data link");
    assert_ne!(before, after);
    assert!(!all.join(&before).exists());
    assert_eq!(fs::read_to_string(all.join("app.conf")).expect("read"), "v2");
    assert!(!all.join("extra").exists(), "removed keys disappear");
    assert_eq!(fs::read_to_string(cfg.join("conf/app.conf")).expect("read"), "v2");

    // Unchanged content: no swap.
    populate(&p, &planned, &lookup(json!({"app.conf": "v2", "mode": "prod"})), &ctx).expect("noop");
    assert_eq!(fs::read_link(all.join("..data")).expect("data link"), after);
}

#[test]
fn volume_directories_are_never_writable_by_others_and_files_keep_their_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod(json!([
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "deep/er/app.conf"}]}},
        {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400,
            "items": [{"key": "password", "path": "password"}, {"key": "password", "path": "shared", "mode": 0o440}]}}
    ]));
    let planned = plan_volumes(dir.path(), &p).expect("plan");
    // Left world-writable (a umask of 0, or an earlier run): tightened.
    for v in &planned {
        fs::create_dir_all(&v.path).expect("mkdir");
        fs::set_permissions(&v.path, fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    populate(&p, &planned, &lookup(json!({"app.conf": "v1"})), &EnvContext::default()).expect("populate");
    let cfg = &planned[0].path;
    let data = cfg.join(fs::read_link(cfg.join("..data")).expect("data link"));
    for d in [cfg.clone(), data.clone(), data.join("deep"), data.join("deep/er")] {
        assert_eq!(mode(&d), 0o755, "{}", d.display());
    }
    assert_eq!(mode(&cfg.join("deep/er/app.conf")), 0o644);
    let creds = &planned[1].path;
    assert_eq!(mode(creds), 0o755);
    assert_eq!(mode(&creds.join("password")), 0o400, "defaultMode");
    assert_eq!(mode(&creds.join("shared")), 0o440, "items[].mode overrides defaultMode");
}

#[test]
fn reader_sees_old_or_new_never_a_mix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("vol");
    fs::create_dir_all(&target).expect("mkdir");
    let files = |v: &str| -> BTreeMap<String, FileContent> {
        ["a", "b", "c"]
            .iter()
            .map(|k| (k.to_string(), FileContent { data: v.as_bytes().to_vec(), mode: 0o644 }))
            .collect()
    };
    write_payload(&target, &files("0")).expect("first");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Read through ..data once, as a consumer resolving the link would.
                let Ok(t) = fs::read_link(target.join("..data")) else { continue };
                let d = target.join(t);
                let vals: Vec<String> =
                    ["a", "b", "c"].iter().filter_map(|k| fs::read_to_string(d.join(k)).ok()).collect();
                if vals.len() == 3 {
                    assert!(vals.iter().all(|v| *v == vals[0]), "mixed read {vals:?}");
                    seen += 1;
                }
            }
            seen
        });
        for i in 1..40 {
            write_payload(&target, &files(&i.to_string())).expect("update");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("reader") > 0);
    });
}

#[test]
fn missing_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = EnvContext::default();
    let cases = [
        (
            json!([{"name": "v", "configMap": {"name": "nope"}}]),
            Some("pod \"shop/web-0\": volume \"v\": configmap \"shop/nope\" not found"),
        ),
        (json!([{"name": "v", "configMap": {"name": "nope", "optional": true}}]), None),
        (
            json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}}]),
            Some("pod \"shop/web-0\": volume \"v\": key \"k\" not found in configmap \"shop/cfg\""),
        ),
        (
            json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../a"}]}}]),
            Some("pod \"shop/web-0\": volume \"v\": item path \"../a\" must be a relative path without '..'"),
        ),
        (
            json!([{"name": "v", "secret": {"secretName": "db", "defaultMode": 4096}}]),
            Some("pod \"shop/web-0\": volume \"v\": invalid secret.defaultMode \"10000\""),
        ),
    ];
    for (vols, want) in cases {
        let p = pod(vols);
        let planned = plan_volumes(dir.path(), &p).expect("plan");
        let got = populate(&p, &planned, &lookup(json!({"a": "1"})), &ctx);
        assert_eq!(got.err().map(|e| e.to_string()).as_deref(), want);
    }
}

#[test]
fn downward_api_and_claims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pod(json!([
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400}]}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}
    ]));
    let planned = plan_volumes(dir.path(), &p).expect("plan");
    populate(&p, &planned, &MapLookup::default(), &EnvContext::default()).expect("populate");
    assert_eq!(fs::read_to_string(planned[0].path.join("labels")).expect("labels"), "app=\"web\"");
    assert_eq!(mode(&planned[0].path.join("name")), 0o400);
    let claim = dir.path().join("volumes/shop/data-web-0");
    assert!(claim.is_dir());
    fs::write(claim.join("keep"), b"x").expect("write");
    populate(&p, &planned, &MapLookup::default(), &EnvContext::default()).expect("again");
    assert_eq!(fs::read(claim.join("keep")).expect("kept"), b"x");
}

#[test]
fn host_path_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_str().expect("utf8").to_owned();
    let ctx = EnvContext::default();
    let run = |ty: &str, path: &str| {
        let p = pod(json!([{"name": "h", "hostPath": {"path": path, "type": ty}}]));
        let planned = plan_volumes(dir.path(), &p).expect("plan");
        populate(&p, &planned, &MapLookup::default(), &ctx).map_err(|e| e.to_string())
    };
    assert_eq!(run("Directory", &base), Ok(()));
    assert_eq!(
        run("File", &base),
        Err(format!("pod \"shop/web-0\": volume \"h\": hostPath {base} is not an existing file (type File)"))
    );
    assert_eq!(run("DirectoryOrCreate", &format!("{base}/made")), Ok(()));
    assert!(dir.path().join("made").is_dir());
    assert_eq!(run("FileOrCreate", &format!("{base}/f")), Ok(()));
    assert!(dir.path().join("f").is_file());
    assert_eq!(
        run("Weird", &base),
        Err("pod \"shop/web-0\": volume \"h\": invalid hostPath.type \"Weird\"".into())
    );
}
