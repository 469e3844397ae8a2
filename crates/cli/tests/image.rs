//! `stead image pull|ls|inspect|rm|prune|load` through the real binary, on a state directory of
//! each test's own: archives the tests write themselves (`docker save` and OCI image layouts),
//! and pulls from Debian's `docker-registry` on loopback (`stead_image::test_util`; without the
//! binary the pull test skips with a message, and fails under CI).

use std::io::Write;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use stead_image::store::sha256_of;
use stead_image::test_util::{Registry, TestImage, build_image, layer_tar};

fn stead(state: &Path) -> Command {
    let mut cmd = Command::cargo_bin("stead").expect("the stead binary is built");
    cmd.env("NO_COLOR", "1").arg("image").arg("--state-dir").arg(state);
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

fn base_tar() -> Vec<u8> {
    layer_tar(&[
        ("bin/", b""),
        ("bin/hello", b"#!/bin/sh\necho hello\n"),
        ("etc/", b""),
        ("etc/os-release", b"ID=t\n"),
    ])
}

fn top_tar(text: &[u8]) -> Vec<u8> {
    layer_tar(&[("srv/", b""), ("srv/data.txt", text)])
}

/// A tar of `(path, content)` files and `(path, target)` symlinks, gzip-compressed if asked.
fn archive(files: &[(String, Vec<u8>)], symlinks: &[(&str, &str)], gzip: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    for (path, target) in symlinks {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, path, target).unwrap();
    }
    let tar = b.into_inner().unwrap();
    if gzip { stead_image::test_util::gzip(&tar) } else { tar }
}

/// `docker save` of `image` tagged `tags`, in the classic layout (`<id>/layer.tar`, the config
/// as `<hex>.json`); the last layer is a symlink to a shared copy, as docker writes duplicates.
fn docker_save(image: &TestImage, tags: &[&str]) -> Vec<u8> {
    let config_name = format!("{}.json", hex(&sha256_of(&image.config)));
    let mut files = vec![(config_name.clone(), image.config.clone())];
    let mut layers = Vec::new();
    let mut symlinks = Vec::new();
    for (i, tar) in image.tars.iter().enumerate() {
        let path = format!("layer{i}/layer.tar");
        if i + 1 == image.tars.len() {
            files.push(("shared/layer.tar".to_string(), tar.clone()));
            symlinks.push(path.clone());
        } else {
            files.push((path.clone(), tar.clone()));
        }
        layers.push(path);
    }
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": tags, "Layers": layers}]);
    files.push(("manifest.json".to_string(), serde_json::to_vec(&manifest).unwrap()));
    let links: Vec<(&str, &str)> = symlinks.iter().map(|p| (p.as_str(), "../shared/layer.tar")).collect();
    archive(&files, &links, true)
}

/// An OCI image layout of `image` (gzip layers, as pushed) named `name`.
fn oci_layout(image: &TestImage, name: &str) -> Vec<u8> {
    let blob = |bytes: &[u8]| (format!("blobs/sha256/{}", hex(&sha256_of(bytes))), bytes.to_vec());
    let mut files = vec![("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())];
    files.push(blob(&image.config));
    files.push(blob(&image.manifest));
    for layer in &image.layers {
        files.push(blob(layer));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_of(&image.manifest),
            "size": image.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    files.push(("index.json".to_string(), serde_json::to_vec(&index).unwrap()));
    archive(&files, &[], false)
}

fn layer_dirs(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("images/layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn load_docker_save_and_oci_archives_then_ls_inspect_rm_prune() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let docker_img = build_image(vec![base_tar(), top_tar(b"docker\n")], &["/bin/hello"], &["world"]);
    let oci_img = build_image(vec![base_tar(), top_tar(b"oci\n")], &["/bin/sh"], &["-c", "true"]);

    // a gzip-compressed docker save archive, from a file
    let saved = dir.path().join("app.tar.gz");
    std::fs::write(&saved, docker_save(&docker_img, &["stead-test/app:1.0"])).unwrap();
    let out = stdout(stead(&state).args(["load", "-i"]).arg(&saved));
    assert_eq!(out, "Loaded image: docker.io/stead-test/app:1.0\n");

    // an OCI layout, from standard input
    let out = stdout(stead(&state).arg("load").write_stdin(oci_layout(&oci_img, "example.com/team/app:oci")));
    assert_eq!(out, "Loaded image: example.com/team/app:oci\n");
    // the base layer is shared: three layers unpacked in all
    let base = hex(&docker_img.diff_ids[0]).to_string();
    assert_eq!(layer_dirs(&state).len(), 3);

    let (docker_config, oci_config) = (sha256_of(&docker_img.config), sha256_of(&oci_img.config));
    let (docker_id, oci_id) = (&hex(&docker_config)[..12], &hex(&oci_config)[..12]);
    let ls = stdout(stead(&state).arg("ls"));
    let lines: Vec<Vec<&str>> =
        ls.lines().map(|l| l.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect()).collect();
    assert_eq!(lines[0], ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], "{ls}");
    assert_eq!(lines.len(), 3, "{ls}");
    assert_eq!(&lines[1][..3], ["docker.io/stead-test/app", "1.0", docker_id], "{ls}");
    assert_eq!(&lines[2][..3], ["example.com/team/app", "oci", oci_id], "{ls}");
    assert!(lines[1][3].ends_with(" ago"), "{ls}");
    assert!(lines[1][4].ends_with('B'), "{ls}");
    let quiet = stdout(stead(&state).args(["ls", "-q"]));
    assert_eq!(quiet, format!("{docker_id}\n{oci_id}\n"));
    let with_digests = stdout(stead(&state).args(["ls", "--digests"]));
    assert!(with_digests.lines().next().unwrap().contains("DIGEST"), "{with_digests}");
    assert!(with_digests.contains(&sha256_of(&oci_img.manifest)), "{with_digests}");

    // inspect: the image config and layers; by name or by image id
    let json = stdout(stead(&state).args(["inspect", "stead-test/app:1.0"]));
    let details: serde_json::Value = serde_json::from_str(&json).unwrap();
    let d = &details[0];
    assert_eq!(d["Reference"], "docker.io/stead-test/app:1.0");
    assert_eq!(d["Id"], sha256_of(&docker_img.config));
    assert_eq!(d["Config"]["Entrypoint"], serde_json::json!(["/bin/hello"]));
    assert_eq!(d["Config"]["Cmd"], serde_json::json!(["world"]));
    assert_eq!(d["Config"]["Env"], serde_json::json!(["PATH=/bin", "GREETING=hello"]));
    assert_eq!(d["Config"]["WorkingDir"], "/srv");
    assert_eq!(d["Config"]["User"], "1000");
    assert_eq!(d["Config"]["ExposedPorts"], serde_json::json!(["8080/tcp"]));
    let layers = d["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["DiffId"], docker_img.diff_ids[0]);
    assert_eq!(layers[0]["Size"], docker_img.tars[0].len());
    assert!(layers[0]["UnpackedSize"].as_u64().unwrap() > 0);
    let by_id = stdout(stead(&state).args(["inspect", oci_id]));
    assert!(by_id.contains("\"Reference\": \"example.com/team/app:oci\""), "{by_id}");
    assert!(by_id.contains(&format!("\"Digest\": \"{}\"", sha256_of(&oci_img.manifest))), "{by_id}");

    // rm: the name goes, and what only it used; the shared base layer stays
    let out = stdout(stead(&state).args(["rm", "stead-test/app:1.0"]));
    assert!(out.starts_with("Untagged: docker.io/stead-test/app:1.0\n"), "{out}");
    assert!(out.contains(&format!("Deleted: {}", docker_img.diff_ids[1])), "{out}");
    assert!(out.contains(&format!("Deleted: {}", sha256_of(&docker_img.config))), "{out}");
    assert!(!out.contains(&docker_img.diff_ids[0]), "{out}");
    assert_eq!(layer_dirs(&state).len(), 2);
    assert!(layer_dirs(&state).contains(&base));
    stead(&state)
        .args(["rm", "stead-test/app:1.0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error: no such image: stead-test/app:1.0"));
    stead(&state).args(["inspect", "nothing:here"]).assert().code(1);

    // prune: an unreferenced blob and a partial download go; the OCI image stays whole
    let junk = b"left over by nobody";
    std::fs::write(state.join("images/blobs/sha256").join(hex(&sha256_of(junk))), junk).unwrap();
    std::fs::write(state.join("images/partial").join(hex(&sha256_of(b"p"))), b"partial!").unwrap();
    let out = stdout(stead(&state).arg("prune"));
    assert!(out.contains(&format!("Deleted: {}", sha256_of(junk))), "{out}");
    assert!(out.ends_with(&format!("Total reclaimed space: {}B\n", junk.len() + 8)), "{out}");
    let out = stdout(stead(&state).arg("prune"));
    assert_eq!(out, "Total reclaimed space: 0B\n");
    let json = stdout(stead(&state).args(["inspect", "example.com/team/app:oci"]));
    assert!(json.contains("\"Cmd\""), "{json}");
    assert_eq!(
        std::fs::read(state.join("images/layers").join(hex(&oci_img.diff_ids[1])).join("srv/data.txt"))
            .unwrap(),
        b"oci\n"
    );

    // rm by image id takes every reference of the image (the name and its digest)
    let out = stdout(stead(&state).args(["rm", oci_id]));
    assert!(out.contains("Untagged: example.com/team/app:oci\n"), "{out}");
    assert!(
        out.contains(&format!("Untagged: example.com/team/app@{}\n", sha256_of(&oci_img.manifest))),
        "{out}"
    );
    assert!(layer_dirs(&state).is_empty(), "{:?}", layer_dirs(&state));
    assert_eq!(stdout(stead(&state).args(["ls", "-q"])), "");
}

#[test]
fn archives_that_do_not_verify_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let img = build_image(vec![base_tar()], &["/bin/hello"], &[]);

    // an OCI layout whose layer blob holds other bytes than its name's (and descriptor's) digest
    let other_layer = stead_image::test_util::gzip(&top_tar(b"swapped\n"));
    let good_name = format!("blobs/sha256/{}", hex(&sha256_of(&img.layers[0])));
    let swapped = {
        let blob = |bytes: &[u8]| (format!("blobs/sha256/{}", hex(&sha256_of(bytes))), bytes.to_vec());
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_of(&img.manifest), "size": img.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "example.com/app:1"},
        }]});
        archive(
            &[
                blob(&img.config),
                blob(&img.manifest),
                (good_name.clone(), other_layer.clone()),
                ("index.json".to_string(), serde_json::to_vec(&index).unwrap()),
            ],
            &[],
            false,
        )
    };
    stead(&state).arg("load").write_stdin(swapped).assert().code(1).stderr(predicate::str::contains(
        format!(
            "error: {good_name} in the archive has digest {}, not {}",
            sha256_of(&other_layer),
            sha256_of(&img.layers[0])
        ),
    ));

    // a docker save layer that is not the one the config names
    let mut wrong = img.clone();
    wrong.tars[0] = top_tar(b"other\n");
    stead(&state)
        .arg("load")
        .write_stdin(docker_save(&wrong, &["app:1"]))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("but the image config says {}", img.diff_ids[0])));

    // an OCI image named only by a tag
    stead(&state)
        .arg("load")
        .write_stdin(oci_layout(&img, "1.0"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has no name: its org.opencontainers.image.ref.name is \"1.0\""));
    // nothing was recorded, and no scratch files are left
    assert_eq!(stdout(stead(&state).args(["ls", "-q"])), "");
    let leftovers: Vec<PathBuf> =
        std::fs::read_dir(state.join("images/partial")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn pull_through_a_docker_io_mirror_on_loopback() {
    let Some(registry) = Registry::start() else { return };
    let img = build_image(vec![base_tar(), top_tar(b"pulled\n")], &["/bin/hello"], &["world"]);
    let digest = registry.push_image_blocking("library/alpine", "3.20", &img);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let conf = dir.path().join("registries.conf");
    let mut f = std::fs::File::create(&conf).unwrap();
    writeln!(f, "[[registry]]\nprefix = \"docker.io\"\nlocation = \"{}\"\ninsecure = true", registry.host())
        .unwrap();
    let pull = |state: &Path| {
        let mut cmd = stead(state);
        cmd.env("CONTAINERS_REGISTRIES_CONF", &conf)
            .env("HOME", dir.path())
            .env("REGISTRY_AUTH_FILE", dir.path().join("no-auth.json"))
            .args(["pull", "alpine:3.20"]);
        stdout(&mut cmd)
    };

    let out = pull(&state);
    assert!(out.starts_with("3.20: Pulling from library/alpine\n"), "{out}");
    for layer in &img.layers {
        let digest = sha256_of(layer);
        let short = &hex(&digest)[..12];
        for status in ["Pulling fs layer", "Download complete", "Pull complete"] {
            assert!(out.contains(&format!("{short}: {status}\n")), "{short}: {status} in\n{out}");
        }
    }
    assert!(
        out.ends_with(&format!(
            "Digest: {digest}\nStatus: Downloaded newer image for docker.io/library/alpine:3.20\ndocker.io/library/alpine:3.20\n"
        )),
        "{out}"
    );
    let again = pull(&state);
    assert!(again.contains(": Already exists\n"), "{again}");
    assert!(again.contains("Status: Image is up to date for docker.io/library/alpine:3.20\n"), "{again}");

    let ls = stdout(stead(&state).args(["ls", "--digests"]));
    let row = ls.lines().nth(1).unwrap();
    assert!(row.starts_with("docker.io/library/alpine"), "{ls}");
    assert!(row.contains(&digest) && row.contains(&hex(&sha256_of(&img.config))[..12]), "{ls}");
    assert_eq!(ls.lines().count(), 2, "the digest reference is not a row of its own: {ls}");

    // removing the last tag takes the digest reference and every layer
    let out = stdout(stead(&state).args(["rm", "alpine:3.20"]));
    assert!(out.contains("Untagged: docker.io/library/alpine:3.20\n"), "{out}");
    assert!(out.contains(&format!("Untagged: docker.io/library/alpine@{digest}\n")), "{out}");
    assert!(layer_dirs(&state).is_empty());

    // a name the registry does not have fails with the attempts named
    let mut cmd = stead(&state);
    cmd.env("CONTAINERS_REGISTRIES_CONF", &conf).env("HOME", dir.path()).args(["pull", "alpine:9.99"]);
    cmd.assert().code(1).stderr(predicate::str::contains("pulling docker.io/library/alpine:9.99"));
}

#[test]
fn a_docker_25_archive_with_both_layouts_loads_once_by_its_manifest_json() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let img = build_image(vec![base_tar(), top_tar(b"v25\n")], &["/bin/hello"], &[]);
    // docker 25+: blobs named by digest (uncompressed layer tars), an OCI index naming the
    // image with containerd's annotation, and manifest.json pointing into blobs/
    let blob = |bytes: &[u8]| (format!("blobs/sha256/{}", hex(&sha256_of(bytes))), bytes.to_vec());
    let layer_descs: Vec<serde_json::Value> = img
        .tars
        .iter()
        .map(|t| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_of(t), "size": t.len()}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_of(&img.config), "size": img.config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_of(&manifest), "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/app:25", "org.opencontainers.image.ref.name": "25"},
    }]});
    let docker_manifest = serde_json::json!([{
        "Config": blob(&img.config).0, "RepoTags": ["app:25"],
        "Layers": img.tars.iter().map(|t| blob(t).0).collect::<Vec<_>>(),
    }]);
    let mut files = vec![blob(&img.config), blob(&manifest)];
    files.extend(img.tars.iter().map(|t| blob(t)));
    files.push(("index.json".to_string(), serde_json::to_vec(&index).unwrap()));
    files.push(("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    files.push(("manifest.json".to_string(), serde_json::to_vec(&docker_manifest).unwrap()));
    let out = stdout(stead(&state).arg("load").write_stdin(archive(&files, &[], true)));
    assert_eq!(out, "Loaded image: docker.io/library/app:25\n");
    let json = stdout(stead(&state).args(["inspect", "app:25"]));
    let details: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(details[0]["Id"], sha256_of(&img.config));
    assert_eq!(details[0]["Layers"][1]["DiffId"], img.diff_ids[1]);
    assert_eq!(details[0]["Layers"][1]["MediaType"], "application/vnd.oci.image.layer.v1.tar");
}

#[test]
fn rm_and_prune_refuse_while_an_engine_holds_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let lock = std::fs::File::create(state.join("engine.lock")).unwrap();
    lock.try_lock().unwrap();
    for args in [&["prune"][..], &["rm", "alpine:3.20"]] {
        stead(&state).args(args).assert().code(1).stderr(predicate::str::contains(format!(
            "error: an engine (stead up or stead daemon) runs on {}: stop it before removing images",
            state.display()
        )));
    }
    drop(lock);
    stead(&state).arg("prune").assert().success().stdout("Total reclaimed space: 0B\n");
}

/// A pod naming `runtimeClassName: runc` runs from its image under `stead up`: the image loaded
/// from a `docker save` archive (the way kind and podman users bring one), run in its own root
/// with the image's entrypoint, working directory and user.
#[test]
fn a_loaded_image_runs_under_stead_up_with_runtime_class_runc() {
    if !stead_testkit::require_root("stead up makes network namespaces and a bridge") {
        return;
    }
    if stead_testkit::require_program("runc", "Debian's runc package").is_none() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let image = stead_image::test_util::host_busybox_image();
    let archive = state.path().join("busybox.tar.gz");
    std::fs::write(&archive, docker_save(&image, &["localhost/busybox:e2e"])).unwrap();
    stdout(stead(state.path()).arg("load").arg("-i").arg(&archive));
    let file = state.path().join("hello.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  runtimeClassName: runc
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/busybox:e2e
    args: ["sh", "-c", "echo \"hello from the image in $(pwd) as $(/bin/busybox id -u)\"; [ -e /bin/sh ] || echo no-host-sh; exec /bin/busybox sleep 1000"]
"#,
    )
    .unwrap();
    let output = Command::cargo_bin("stead")
        .unwrap()
        .arg("up")
        .arg("-f")
        .arg(&file)
        .args(["--wait", "--timeout", "60s"])
        .arg("--state-dir")
        .arg(state.path())
        .args(["--pod-cidr", "10.244.201.0/24", "--bridge", "stimg0"])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    // The image's working directory and user, and its root: the host's /bin/sh is not there.
    let logged = |message: &str| {
        out.lines()
            .filter_map(|l| l.split_once('|'))
            .any(|(p, m)| p.trim() == "hello/app" && m.trim() == message)
    };
    assert!(logged("hello from the image in /srv as 1000"), "{out}");
    assert!(logged("no-host-sh"), "{out}");
    assert!(out.contains("==> ready in"), "{out}");
}
