//! Test support (feature `test-util`, for other crates' tests): a plain-HTTP registry on
//! loopback (Debian's `docker-registry`), anonymous or with htpasswd basic auth, images built
//! from bytes, and pushing them.
//!
//! Without the registry binary (`STEAD_TEST_DOCKER_REGISTRY`, else `/usr/bin/docker-registry`)
//! [`Registry::start`] returns `None` after printing why, and panics under CI (`stead_testkit`):
//! `.ci/run` installs `docker-registry`. The registry runs under `sh`, which kills it when the
//! [`Registry`] is dropped (its stdin pipe closes) or the test process exits.
//!
//! This is test code: it panics, with a message, on anything unexpected.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};

use crate::store::sha256_of;

/// The OCI manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A running registry over plain HTTP on 127.0.0.1, anonymous or with basic auth.
pub struct Registry {
    port: u16,
    auth: RegistryAuth,
    _dir: tempfile::TempDir,
    _child: Mutex<(Child, ChildStdin)>,
}

/// The registry binary, or `None` (after saying so) when it is missing outside CI.
pub fn registry_binary() -> Option<PathBuf> {
    let path = std::env::var_os("STEAD_TEST_DOCKER_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
    stead_testkit::require_program(
        &path.to_string_lossy(),
        "apt-get install docker-registry, as .ci/run does",
    )
}

impl Registry {
    /// Starts an anonymous registry; `None` when the binary is missing outside CI.
    pub fn start() -> Option<Registry> {
        Self::start_with(None)
    }

    /// Starts a registry that wants `user` and `password` (htpasswd basic auth over plain HTTP,
    /// which the registry allows); `None` when the registry or `htpasswd` (apache2-utils) is
    /// missing outside CI. Pushes use the same credentials.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Option<Registry> {
        Self::start_with(Some((user, password)))
    }

    fn start_with(basic: Option<(&str, &str)>) -> Option<Registry> {
        let binary = registry_binary()?;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let mut auth = RegistryAuth::Anonymous;
        if let Some((user, password)) = basic {
            let htpasswd =
                stead_testkit::require_program("htpasswd", "apt-get install apache2-utils, as .ci/run does")?;
            let out = Command::new(htpasswd).args(["-Bbn", user, password]).output().expect("htpasswd runs");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("the htpasswd file written");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: stead-test\n    path: {}\n",
                file.display()
            ));
            auth = RegistryAuth::Basic(user.to_string(), password.to_string());
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("the registry's config written");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" serve "$1" & pid=$!; read _unused; kill $pid; wait $pid"#)
            .arg(&binary)
            .arg(&config_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the registry started");
        let stdin = child.stdin.take().expect("the registry's stdin");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen on 127.0.0.1:{port}");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the registry exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Registry { port, auth, _dir: dir, _child: Mutex::new((child, stdin)) })
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an image's blobs and manifest as `repo:tag`; returns the manifest's digest.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &TestImage) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = oci_client::Client::try_from(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        })
        .expect("a registry client");
        let reference: Reference =
            format!("{}/{repo}:{tag}", self.host()).parse().expect("a valid test reference");
        let auth = self.auth.clone();
        client.auth(&reference, &auth, RegistryOperation::Push).await.expect("push authorized");
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            client.push_blob(&reference, blob.clone(), &sha256_of(blob)).await.expect("blob pushed");
        }
        client
            .push_manifest_raw(
                &reference,
                image.manifest.clone(),
                http::HeaderValue::from_static(OCI_MANIFEST),
            )
            .await
            .expect("manifest pushed");
        sha256_of(&image.manifest)
    }

    /// [`Registry::push_image`] on a runtime of its own, for synchronous tests.
    pub fn push_image_blocking(&self, repo: &str, tag: &str, image: &TestImage) -> String {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(self.push_image(repo, tag, image))
    }
}

/// An image built from bytes.
#[derive(Clone, Debug)]
pub struct TestImage {
    /// The layer blobs (gzip-compressed tars), bottom first.
    pub layers: Vec<Vec<u8>>,
    /// The uncompressed tars.
    pub tars: Vec<Vec<u8>>,
    /// The diff ids (sha256 of each uncompressed tar).
    pub diff_ids: Vec<String>,
    /// The config JSON.
    pub config: Vec<u8>,
    /// The OCI manifest JSON.
    pub manifest: Vec<u8>,
}

/// A layer tar of `(path, content)` entries; a path ending in `/` is a directory. Files are
/// mode 0755, owned by root, with a fixed modification time.
pub fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
        }
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, *data).expect("a tar entry");
    }
    b.into_inner().expect("a tar")
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// An image of the host's architecture from layer tars, with this entrypoint and command,
/// `Env` `PATH=/bin` and `GREETING=hello`, `WorkingDir` `/srv`, `User` `1000`, port 8080 exposed.
pub fn build_image(tars: Vec<Vec<u8>>, entrypoint: &[&str], cmd: &[&str]) -> TestImage {
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256_of(t)).collect();
    let layers: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2024-05-01T12:00:00Z",
        "architecture": crate::pull::Platform::host().architecture,
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/bin", "GREETING=hello"],
            "WorkingDir": "/srv", "User": "1000", "ExposedPorts": {"8080/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("a config");
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|gz| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_of(gz), "size": gz.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_of(&config), "size": config.len()},
        "layers": layer_descs,
    }))
    .expect("a manifest");
    TestImage { layers, tars, diff_ids, config, manifest }
}

/// An image of the host's busybox and the libraries it links (at the paths its loader looks for
/// them), with `/srv` (the image's working directory) and `/tmp`: entrypoint `/bin/busybox`, cmd
/// `sleep 1000`, user 1000 (as [`build_image`] sets). Panics when the host has no busybox.
pub fn host_busybox_image() -> TestImage {
    let files = {
        let busybox = std::path::Path::new("/bin/busybox");
        let mut files = vec![("bin/busybox".to_string(), std::fs::read(busybox).expect("/bin/busybox"))];
        let ldd = std::process::Command::new("ldd").arg(busybox).output().expect("ldd");
        for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if word.starts_with('/') {
                let bytes = std::fs::read(word).expect("a library");
                files.push((word.trim_start_matches('/').to_string(), bytes));
            }
        }
        files
    };
    let dirs: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _)| std::path::Path::new(p).parent())
        .flat_map(|d| d.ancestors().map(|a| format!("{}/", a.display())).collect::<Vec<_>>())
        .chain(["bin/".to_string(), "srv/".to_string(), "tmp/".to_string()])
        .filter(|d| d != "/")
        .collect();
    let mut entries: Vec<(&str, &[u8])> = dirs.iter().map(|d| (d.as_str(), &b""[..])).collect();
    entries.sort_by_key(|(p, _)| p.matches('/').count());
    entries.extend(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    build_image(vec![layer_tar(&entries)], &["/bin/busybox"], &["sleep", "1000"])
}
