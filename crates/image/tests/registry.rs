//! Pulls from a real registry on loopback: Debian's `docker-registry` (distribution 2.8), one
//! plain-HTTP instance and one with TLS (a test CA made with rcgen) and htpasswd basic auth.
//! The tests build their images from bytes (tar.gz layers, config, manifests, an index) and push
//! them with oci-client.
//!
//! Without the registry binary (`STEAD_TEST_DOCKER_REGISTRY`, else `/usr/bin/docker-registry`)
//! the tests skip with a message, and fail under CI (see `stead-testkit`): `.ci/run` installs
//! `docker-registry` and `apache2-utils` (for `htpasswd`).
//!
//! The registries are started once per test process (nextest runs each test in its own
//! process) and stop when it exits: each runs under `sh`, which kills it when the test's end
//! of its stdin pipe closes.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use stead_image::auth::Keyring;
use stead_image::container::PullPolicy;
use stead_image::pull::{Platform, Progress, PullError, PullOptions, Puller};
use stead_image::reference::ImageRef;
use stead_image::registries::RegistriesConf;
use stead_image::store::{Store, sha256_of};

const USER: &str = "stead";
const PASSWORD: &str = "s3cret-pass";

// === fixtures ===

struct Registry {
    port: u16,
    data: PathBuf,
    /// PEM of the CA that signed its certificate (TLS instances).
    ca: Option<Vec<u8>>,
    /// Whether pushing needs USER:PASSWORD.
    authenticated: bool,
    _dir: tempfile::TempDir,
    _child: Mutex<(Child, ChildStdin)>,
}

fn registry_binary() -> Option<PathBuf> {
    let path = std::env::var_os("STEAD_TEST_DOCKER_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
    stead_testkit::require_program(
        &path.to_string_lossy(),
        "apt-get install docker-registry, as .ci/run does",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain HTTP, anonymous.
    Plain,
    /// TLS with a test CA, htpasswd basic auth.
    TlsBasic,
    /// Plain HTTP, bearer tokens from the test's token server (basic auth there).
    Token,
}

fn start_registry(mode: Mode) -> Option<Registry> {
    let tls_auth = mode == Mode::TlsBasic;
    let binary = registry_binary()?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut extra = String::new();
    let mut ca = None;
    if tls_auth {
        let (ca_pem, cert_pem, key_pem) = test_ca_and_server_cert();
        std::fs::write(dir.path().join("cert.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();
        ca = Some(ca_pem.into_bytes());
        let htpasswd =
            stead_testkit::require_program("htpasswd", "apt-get install apache2-utils, as .ci/run does")?;
        let out = Command::new(htpasswd).args(["-Bbn", USER, PASSWORD]).output().unwrap();
        assert!(out.status.success(), "htpasswd fails: {out:?}");
        let line = out.stdout;
        std::fs::write(dir.path().join("htpasswd"), line).unwrap();
        extra = format!(
            "  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\nauth:\n  htpasswd:\n    realm: stead-test\n    path: {d}/htpasswd\n",
            d = dir.path().display()
        );
    }
    if mode == Mode::Token {
        let server = token_server();
        std::fs::write(dir.path().join("token-ca.pem"), &server.cert_pem).unwrap();
        extra = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}/token-ca.pem\n",
            server.port,
            dir.path().display()
        );
    }
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
        data.display()
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" serve "$1" & pid=$!; read _unused; kill $pid; wait $pid"#)
        .arg(&binary)
        .arg(&config_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the registry did not listen on 127.0.0.1:{port}");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the registry exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Registry {
        port,
        data,
        ca,
        authenticated: mode != Mode::Plain,
        _dir: dir,
        _child: Mutex::new((child, stdin)),
    })
}

fn test_ca_and_server_cert() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "stead test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&server_key, &ca).unwrap();
    (ca.pem(), cert.pem(), server_key.serialize_pem())
}

fn plain() -> Option<&'static Registry> {
    static R: OnceLock<Option<Registry>> = OnceLock::new();
    R.get_or_init(|| start_registry(Mode::Plain)).as_ref()
}

fn secured() -> Option<&'static Registry> {
    static R: OnceLock<Option<Registry>> = OnceLock::new();
    R.get_or_init(|| start_registry(Mode::TlsBasic)).as_ref()
}

fn tokens() -> Option<&'static Registry> {
    static R: OnceLock<Option<Registry>> = OnceLock::new();
    R.get_or_init(|| start_registry(Mode::Token)).as_ref()
}

// === a bearer token server, as Docker Hub's auth service ===

const TOKEN_SERVICE: &str = "stead-test-registry";
const TOKEN_ISSUER: &str = "stead-test-issuer";

struct TokenServer {
    port: u16,
    /// The signing certificate (self-signed; the registry's rootcertbundle).
    cert_pem: String,
    cert_der: Vec<u8>,
    key: ring::signature::EcdsaKeyPair,
}

fn token_server() -> &'static TokenServer {
    static S: OnceLock<TokenServer> = OnceLock::new();
    S.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "stead test token signer");
        let cert = params.self_signed(&key).unwrap();
        let ring_key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve_token_request(stream);
            }
        });
        TokenServer { port, cert_pem: cert.pem(), cert_der: cert.der().to_vec(), key: ring_key }
    })
}

/// A registry JWT for `access` (`[(repository, actions)]`), signed ES256 with the `x5c` chain.
fn make_token(subject: &str, access: &[(String, Vec<String>)]) -> String {
    let server = token_server();
    let b64url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = serde_json::json!({
        "typ": "JWT", "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&server.cert_der)],
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let access: Vec<serde_json::Value> = access
        .iter()
        .map(|(name, actions)| serde_json::json!({"type": "repository", "name": name, "actions": actions}))
        .collect();
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": subject, "aud": TOKEN_SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{subject}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    let signature = server.key.sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64url(signature.as_ref()))
}

/// One HTTP/1.1 request: `GET /token?scope=repository:NAME:ACTIONS&service=...` with basic auth
/// for USER:PASSWORD; anything else is a 401.
fn serve_token_request(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader};
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':')
            && name.eq_ignore_ascii_case("authorization")
            && let Some(b64) = value.trim().strip_prefix("Basic ")
        {
            let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default();
            authorized = decoded == format!("{USER}:{PASSWORD}").into_bytes();
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = scope.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
            let mut parts = scope.splitn(3, ':');
            if let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            {
                access.push((name.to_string(), actions.split(',').map(str::to_string).collect()));
            }
        }
    }
    let (status, body) = if authorized {
        ("200 OK", serde_json::json!({"token": make_token(USER, &access), "expires_in": 600}).to_string())
    } else {
        ("401 Unauthorized", r#"{"details":"credentials required"}"#.to_string())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Registry {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn push_client(&self) -> oci_client::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if self.ca.is_some() { ClientProtocol::Https } else { ClientProtocol::Http },
            extra_root_certificates: self
                .ca
                .iter()
                .map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem.clone() })
                .collect(),
            ..Default::default()
        };
        oci_client::Client::try_from(config).unwrap()
    }

    fn auth(&self) -> RegistryAuth {
        if self.authenticated {
            RegistryAuth::Basic(USER.into(), PASSWORD.into())
        } else {
            RegistryAuth::Anonymous
        }
    }

    /// Pushes blobs and a manifest (or index) under `repo:tag`; returns the manifest's digest.
    async fn push(
        &self,
        repo: &str,
        tag: &str,
        blobs: &[Vec<u8>],
        manifest: &[u8],
        media_type: &str,
    ) -> String {
        let client = self.push_client();
        let reference: Reference = format!("{}/{repo}:{tag}", self.host()).parse().unwrap();
        client.store_auth_if_needed(reference.resolve_registry(), &self.auth()).await;
        client.auth(&reference, &self.auth(), RegistryOperation::Push).await.unwrap();
        for blob in blobs {
            client.push_blob(&reference, blob.clone(), &sha256_of(blob)).await.unwrap();
        }
        client
            .push_manifest_raw(
                &reference,
                manifest.to_vec(),
                http::HeaderValue::from_str(media_type).unwrap(),
            )
            .await
            .unwrap();
        sha256_of(manifest)
    }

    async fn push_image(&self, repo: &str, tag: &str, image: &TestImage) -> String {
        let mut blobs = image.layers.clone();
        blobs.push(image.config.clone());
        self.push(repo, tag, &blobs, &image.manifest, OCI_MANIFEST).await
    }

    /// The registry's own file for a blob.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.data.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

// === images built from bytes ===

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct TestImage {
    layers: Vec<Vec<u8>>,
    diff_ids: Vec<String>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn tar_gz(entries: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
        }
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, *data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let diff_id = sha256_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

fn build_image(arch: &str, layers: Vec<(Vec<u8>, String)>, entrypoint: &[&str], cmd: &[&str]) -> TestImage {
    let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.clone()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/bin", "GREETING=hello"], "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(gz, _)| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_of(gz), "size": gz.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_of(&config), "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    TestImage { layers: layers.into_iter().map(|(gz, _)| gz).collect(), diff_ids, config, manifest }
}

/// Two layers: the second removes a file (whiteout) and replaces a directory's content (opaque).
fn layered_image(arch: &str) -> TestImage {
    let base = tar_gz(&[
        ("etc/", b""),
        ("etc/os-release", b"ID=stead-test\n"),
        ("etc/removed.conf", b"gone soon\n"),
        ("var/", b""),
        ("var/cache/", b""),
        ("var/cache/old", b"old\n"),
        ("bin/", b""),
        ("bin/hello", b"#!/bin/sh\necho hello \"$@\"\n"),
    ]);
    let top = tar_gz(&[
        ("etc/.wh.removed.conf", b""),
        ("var/cache/", b""),
        ("var/cache/.wh..wh..opq", b""),
        ("var/cache/new", b"new\n"),
    ]);
    build_image(arch, vec![base, top], &["/bin/hello"], &["world"])
}

fn host_arch() -> String {
    Platform::host().architecture
}

fn puller(store_dir: &Path, conf: &str, extra_roots: Vec<Vec<u8>>) -> Puller {
    let store = Arc::new(Store::open(store_dir).unwrap());
    let registries = RegistriesConf::parse(conf, "test registries.conf").unwrap();
    Puller::new(store, registries, PullOptions { extra_roots, ..PullOptions::default() })
}

fn insecure_conf(r: &Registry) -> String {
    format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", r.host())
}

fn image(text: &str) -> ImageRef {
    ImageRef::parse(text).unwrap()
}

// === tests ===

#[tokio::test]
async fn pull_by_tag_then_by_digest_with_whiteouts_in_overlay_form() {
    let Some(r) = plain() else { return };
    let img = layered_image(&host_arch());
    let digest = r.push_image("stead/layered", "v1", &img).await;
    let store_dir = tempfile::tempdir().unwrap();
    let p = puller(store_dir.path(), &insecure_conf(r), vec![]);
    let keyring = Keyring::new();

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress: stead_image::pull::ProgressFn =
        Arc::new(move |e: &Progress| sink.lock().unwrap().push(e.clone()));
    let by_tag = image(&format!("{}/stead/layered:v1", r.host()));
    let pulled = p.pull(&by_tag, PullPolicy::IfNotPresent, &keyring, Some(progress)).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.index_digest, None);
    assert_eq!(pulled.source.as_deref(), Some(format!("http://{by_tag}").as_str()));
    assert_eq!(pulled.layers.len(), 2);
    let cfg = pulled.config.config().clone().unwrap();
    assert_eq!(cfg.entrypoint().clone().unwrap(), ["/bin/hello"]);
    assert_eq!(
        stead_image::container::effective_command_for("x", &pulled.config, &[], &["again".into()]).unwrap(),
        ["/bin/hello", "again"]
    );
    for (dir, diff_id) in pulled.layers.iter().zip(&img.diff_ids) {
        assert!(dir.ends_with(diff_id.strip_prefix("sha256:").unwrap()), "{}", dir.display());
    }
    let (base, top) = (&pulled.layers[0], &pulled.layers[1]);
    assert_eq!(std::fs::read(base.join("etc/os-release")).unwrap(), b"ID=stead-test\n");
    assert_eq!(std::fs::read(base.join("var/cache/old")).unwrap(), b"old\n");
    if rustix::process::geteuid().is_root() {
        let wh = std::fs::symlink_metadata(top.join("etc/removed.conf")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "a whiteout device");
        let mut buf = [0u8; 4];
        let n = rustix::fs::lgetxattr(top.join("var/cache"), "trusted.overlay.opaque", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
    }
    assert_eq!(std::fs::read(top.join("var/cache/new")).unwrap(), b"new\n");
    let events = events.lock().unwrap().clone();
    assert!(matches!(&events[0], Progress::Resolved { layers: 2, to_fetch: 2, .. }), "{events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, Progress::LayerDone { .. })).count(), 2);

    // present now: IfNotPresent and Never answer from the store, without the registry
    let local = p.pull(&by_tag, PullPolicy::Never, &keyring, None).await.unwrap();
    assert_eq!((local.source, local.manifest_digest.as_str()), (None, digest.as_str()));

    // by digest: recorded by the first pull, and pulled again with Always (layers kept)
    let by_digest = image(&format!("{}/stead/layered@{digest}", r.host()));
    assert!(p.local(&by_digest).unwrap().is_some());
    let again = p.pull(&by_digest, PullPolicy::Always, &keyring, None).await.unwrap();
    assert_eq!(again.manifest_digest, digest);
    assert!(again.source.is_some());
    assert_eq!(again.layers, pulled.layers);

    // a wrong digest for that name is not found, and Never with nothing local is ErrImageNeverPull
    let missing = image(&format!("{}/stead/layered@{}", r.host(), sha256_of(b"nope")));
    let err = p.pull(&missing, PullPolicy::IfNotPresent, &keyring, None).await.unwrap_err();
    assert!(matches!(err, PullError::Failed { .. }), "{err}");
    let err = p.pull(&missing, PullPolicy::Never, &keyring, None).await.unwrap_err();
    assert_eq!(err.to_string(), format!("image {missing} is not present with pull policy Never"));
}

#[tokio::test]
async fn docker_io_names_through_a_mirror_falling_back_to_the_location() {
    let Some(r) = plain() else { return };
    let alpine = layered_image(&host_arch());
    let alpine_digest = r.push_image("hub/library/alpine", "3.20", &alpine).await;
    let busybox = build_image(&host_arch(), vec![tar_gz(&[("bin/busybox", b"bb")])], &[], &["/bin/busybox"]);
    let busybox_digest = r.push_image("upstream/library/busybox", "1.36", &busybox).await;
    // docker.io is never reached: its location is another namespace of the loopback registry
    let conf = format!(
        "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"{h}/upstream\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{h}/hub\"\ninsecure = true\n",
        h = r.host()
    );
    let dir = tempfile::tempdir().unwrap();
    let conf_file = dir.path().join("registries.conf");
    std::fs::write(&conf_file, &conf).unwrap();
    let registries = RegistriesConf::load(Some(&conf_file)).unwrap();
    let store = Arc::new(Store::open(dir.path().join("images")).unwrap());
    let p = Puller::new(store, registries, PullOptions::default());

    let pulled =
        p.pull(&image("alpine:3.20"), PullPolicy::IfNotPresent, &Keyring::new(), None).await.unwrap();
    assert_eq!(pulled.manifest_digest, alpine_digest);
    assert_eq!(pulled.reference.to_string(), "docker.io/library/alpine:3.20");
    assert_eq!(
        pulled.source.as_deref(),
        Some(format!("http://{}/hub/library/alpine:3.20", r.host()).as_str())
    );
    // recorded under the name the pod uses
    assert!(p.local(&image("docker.io/library/alpine:3.20")).unwrap().is_some());

    // not on the mirror: the location serves it
    let pulled =
        p.pull(&image("busybox:1.36"), PullPolicy::IfNotPresent, &Keyring::new(), None).await.unwrap();
    assert_eq!(pulled.manifest_digest, busybox_digest);
    assert_eq!(
        pulled.source.as_deref(),
        Some(format!("http://{}/upstream/library/busybox:1.36", r.host()).as_str())
    );

    // on neither: the error names both attempts
    let err = p
        .pull(&image("nothere:1"), PullPolicy::IfNotPresent, &Keyring::new(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("pulling docker.io/library/nothere:1: "), "{err}");
    assert!(
        err.contains(&format!("http://{}/hub/library/nothere:1 anonymously: manifest", r.host())),
        "{err}"
    );
    assert!(err.contains(&format!("http://{}/upstream/library/nothere:1 anonymously", r.host())), "{err}");

    // blocked
    let blocked =
        RegistriesConf::parse("[[registry]]\nlocation = \"docker.io\"\nblocked = true\n", "b").unwrap();
    let p = Puller::new(p.store().clone(), blocked, PullOptions::default());
    let err = p.pull(&image("nginx"), PullPolicy::Always, &Keyring::new(), None).await.unwrap_err();
    assert!(err.to_string().contains("is blocked"), "{err}");
}

#[tokio::test]
async fn an_index_gives_the_hosts_platform() {
    let Some(r) = plain() else { return };
    let other_arch = if host_arch() == "s390x" { "ppc64le" } else { "s390x" };
    let mine = build_image(&host_arch(), vec![tar_gz(&[("which", b"mine")])], &["/which"], &[]);
    let theirs = build_image(other_arch, vec![tar_gz(&[("which", b"theirs")])], &["/which"], &[]);
    let mine_digest = r.push_image("stead/multi", "mine", &mine).await;
    let theirs_digest = r.push_image("stead/multi", "theirs", &theirs).await;
    let entry = |m: &TestImage, arch: &str| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": sha256_of(&m.manifest), "size": m.manifest.len(), "platform": {"os": "linux", "architecture": arch}});
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&theirs, other_arch), entry(&mine, &host_arch())],
    }))
    .unwrap();
    let index_digest = r.push("stead/multi", "v1", &[], &index, OCI_INDEX).await;
    let store_dir = tempfile::tempdir().unwrap();
    let p = puller(store_dir.path(), &insecure_conf(r), vec![]);
    let pulled = p
        .pull(&image(&format!("{}/stead/multi:v1", r.host())), PullPolicy::Always, &Keyring::new(), None)
        .await
        .unwrap();
    assert_eq!(pulled.index_digest.as_deref(), Some(index_digest.as_str()));
    assert_eq!(pulled.manifest_digest, mine_digest);
    assert_ne!(pulled.manifest_digest, theirs_digest);
    assert_eq!(std::fs::read(pulled.layers[0].join("which")).unwrap(), b"mine");
    assert_eq!(pulled.config.architecture().to_string(), host_arch());

    // a platform the index lacks is an error naming what it has
    let store = Arc::new(Store::open(store_dir.path().join("other")).unwrap());
    let registries = RegistriesConf::parse(&insecure_conf(r), "t").unwrap();
    let platform = Platform { os: "linux".into(), architecture: "mips64le".into(), variant: None };
    let p = Puller::new(store, registries, PullOptions { platform, ..PullOptions::default() });
    let err = p
        .pull(&image(&format!("{}/stead/multi:v1", r.host())), PullPolicy::Always, &Keyring::new(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no linux/mips64le image (it has linux/"), "{err}");
}

#[tokio::test]
async fn a_corrupted_blob_is_refused_and_named() {
    let Some(r) = plain() else { return };
    let img = build_image(&host_arch(), vec![tar_gz(&[("data", &[7u8; 4096])])], &["/data"], &[]);
    r.push_image("stead/corrupt", "v1", &img).await;
    let layer = sha256_of(&img.layers[0]);
    // flip bytes in the registry's own copy, keeping its length
    let file = r.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    bytes[n / 2] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let store_dir = tempfile::tempdir().unwrap();
    let p = puller(store_dir.path(), &insecure_conf(r), vec![]);
    let err = p
        .pull(&image(&format!("{}/stead/corrupt:v1", r.host())), PullPolicy::Always, &Keyring::new(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "blob {layer} failed verification: its content has digest {}",
            sha256_of(&bytes)
        )),
        "{err}"
    );
    let store = Store::open(store_dir.path()).unwrap();
    assert!(!store.has_blob(&layer));
    assert_eq!(store.open_partial(&layer).unwrap().len(), 0, "the bad download is not kept for resuming");
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_partial_download_is_resumed() {
    let Some(r) = plain() else { return };
    // incompressible content, so that the layer blob is large
    let mut noise = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let img = build_image(&host_arch(), vec![tar_gz(&[("noise", &noise)])], &["/noise"], &[]);
    r.push_image("stead/resume", "v1", &img).await;
    let layer_blob = &img.layers[0];
    let layer = sha256_of(layer_blob);
    let half = layer_blob.len() / 2;

    // an earlier download stopped halfway
    let store_dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(store_dir.path()).unwrap();
        let mut partial = store.open_partial(&layer).unwrap();
        partial.write(&layer_blob[..half]).unwrap();
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress: stead_image::pull::ProgressFn =
        Arc::new(move |e: &Progress| sink.lock().unwrap().push(e.clone()));
    let p = puller(store_dir.path(), &insecure_conf(r), vec![]);
    let pulled = p
        .pull(
            &image(&format!("{}/stead/resume:v1", r.host())),
            PullPolicy::Always,
            &Keyring::new(),
            Some(progress),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(pulled.layers[0].join("noise")).unwrap(), noise);
    let firsts: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Progress::LayerBytes { done, .. } => Some(*done),
            _ => None,
        })
        .collect();
    assert!(firsts[0] > half as u64, "the first bytes counted continue from {half}: {firsts:?}");
    assert!(firsts[0] < layer_blob.len() as u64 || firsts.len() == 1);
    assert_eq!(*firsts.last().unwrap(), layer_blob.len() as u64);

    // a partial file with wrong bytes (torn by a crash): verification fails, and the blob is
    // downloaded once more from the start
    let store_dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(store_dir.path()).unwrap();
        let mut partial = store.open_partial(&layer).unwrap();
        partial.write(&vec![0u8; half]).unwrap();
    }
    let p = puller(store_dir.path(), &insecure_conf(r), vec![]);
    let pulled = p
        .pull(&image(&format!("{}/stead/resume:v1", r.host())), PullPolicy::Always, &Keyring::new(), None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(pulled.layers[0].join("noise")).unwrap(), noise);
}

#[tokio::test]
async fn basic_auth_over_tls_with_a_test_ca() {
    let Some(r) = secured() else { return };
    let img = build_image(&host_arch(), vec![tar_gz(&[("secret", b"s")])], &["/secret"], &[]);
    let digest = r.push_image("stead/private", "v1", &img).await;
    let conf = format!("[[registry]]\nlocation = \"{}\"\n", r.host());
    let reference = image(&format!("{}/stead/private:v1", r.host()));
    let ca = r.ca.clone().unwrap();

    // no credentials: refused, saying so
    let dir = tempfile::tempdir().unwrap();
    let p = puller(dir.path(), &conf, vec![ca.clone()]);
    let err = p.pull(&reference, PullPolicy::Always, &Keyring::new(), None).await.unwrap_err().to_string();
    assert!(err.contains(&format!("https://{reference} anonymously: manifest")), "{err}");
    assert!(err.contains("Not authorized"), "{err}");

    // the CA not trusted: a TLS error
    let p_untrusted = puller(dir.path(), &conf, vec![]);
    let mut keyring = Keyring::new();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let json = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, r.host());
    let auth_file = dir.path().join("auth.json");
    std::fs::write(&auth_file, &json).unwrap();
    keyring.add_file(&auth_file).unwrap();
    let err = p_untrusted.pull(&reference, PullPolicy::Always, &keyring, None).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // a wrong password first (a pull secret), then the right one (the node's file): the second works
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:wrong"));
    let secret = format!(r#"{{"auths":{{"{}/stead":{{"auth":"{wrong}"}}}}}}"#, r.host());
    let mut both = Keyring::new();
    both.add_secret(
        "default/pull",
        Some("kubernetes.io/dockerconfigjson"),
        &BTreeMap::from([(".dockerconfigjson".into(), secret.into_bytes())]),
    )
    .unwrap();
    both.add_file(&auth_file).unwrap();
    let pulled = p.pull(&reference, PullPolicy::Always, &both, None).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.source.as_deref(), Some(format!("https://{reference}").as_str()));
    assert_eq!(std::fs::read(pulled.layers[0].join("secret")).unwrap(), b"s");

    // the CA from a containers-certs.d directory instead
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(r.host())).unwrap();
    std::fs::write(certs.join(r.host()).join("ca.crt"), &ca).unwrap();
    let store = Arc::new(Store::open(dir.path().join("certs-d-store")).unwrap());
    let registries = RegistriesConf::parse(&conf, "t").unwrap();
    let p = Puller::new(store, registries, PullOptions { certs_dirs: vec![certs], ..PullOptions::default() });
    let pulled = p.pull(&reference, PullPolicy::Always, &keyring, None).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);

    // insecure = true: TLS without checking the certificate (no CA given)
    let insecure = format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", r.host());
    let p = puller(&dir.path().join("insecure-store"), &insecure, vec![]);
    let pulled = p.pull(&reference, PullPolicy::Always, &keyring, None).await.unwrap();
    assert_eq!(pulled.source.as_deref(), Some(format!("https://{reference}").as_str()));
}

#[tokio::test]
async fn docker_schema_2_manifests_and_manifest_lists() {
    let Some(r) = plain() else { return };
    let docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";
    let docker_list = "application/vnd.docker.distribution.manifest.list.v2+json";
    let (layer, diff_id) = tar_gz(&[("etc/", b""), ("etc/motd", b"docker format\n")]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": docker_manifest,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256_of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256_of(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest =
        r.push("stead/docker", "single", &[layer, config], &manifest, docker_manifest).await;
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": docker_list,
        "manifests": [{"mediaType": docker_manifest, "digest": manifest_digest, "size": manifest.len(), "platform": {"os": "linux", "architecture": host_arch()}}],
    }))
    .unwrap();
    let list_digest = r.push("stead/docker", "list", &[], &list, docker_list).await;
    let dir = tempfile::tempdir().unwrap();
    let p = puller(dir.path(), &insecure_conf(r), vec![]);
    let single = p
        .pull(&image(&format!("{}/stead/docker:single", r.host())), PullPolicy::Always, &Keyring::new(), None)
        .await
        .unwrap();
    assert_eq!(single.manifest_digest, manifest_digest);
    assert_eq!(std::fs::read(single.layers[0].join("etc/motd")).unwrap(), b"docker format\n");
    let listed = p
        .pull(&image(&format!("{}/stead/docker:list", r.host())), PullPolicy::Always, &Keyring::new(), None)
        .await
        .unwrap();
    assert_eq!(listed.index_digest.as_deref(), Some(list_digest.as_str()));
    assert_eq!(listed.manifest_digest, manifest_digest);
    assert_eq!(listed.layers, single.layers);
}

#[tokio::test]
async fn bearer_tokens_from_the_registrys_token_server() {
    let Some(r) = tokens() else { return };
    let img = build_image(&host_arch(), vec![tar_gz(&[("tokened", b"t")])], &["/tokened"], &[]);
    let digest = r.push_image("stead/tokened", "v1", &img).await;
    let conf = insecure_conf(r);
    let reference = image(&format!("{}/stead/tokened:v1", r.host()));
    let dir = tempfile::tempdir().unwrap();
    let p = puller(dir.path(), &conf, vec![]);

    // anonymous: the token server refuses
    let err = p.pull(&reference, PullPolicy::Always, &Keyring::new(), None).await.unwrap_err().to_string();
    assert!(err.contains(&format!("http://{reference} anonymously: manifest")), "{err}");

    // user and password, exchanged for a token (the registry itself never sees them)
    let mut keyring = Keyring::new();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    keyring
        .add_json(format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, r.host()).as_bytes(), "auth.json")
        .unwrap();
    let pulled = p.pull(&reference, PullPolicy::Always, &keyring, None).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);

    // a registry token given directly (`registrytoken`) is used as the bearer token
    let token = make_token("someone", &[("stead/tokened".to_string(), vec!["pull".to_string()])]);
    let mut keyring = Keyring::new();
    keyring
        .add_json(
            format!(r#"{{"auths":{{"{}":{{"registrytoken":"{token}"}}}}}}"#, r.host()).as_bytes(),
            "auth.json",
        )
        .unwrap();
    let p = puller(&dir.path().join("second"), &conf, vec![]);
    let pulled = p.pull(&reference, PullPolicy::Always, &keyring, None).await.unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(std::fs::read(pulled.layers[0].join("tokened")).unwrap(), b"t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_of_one_image_share_its_layers() {
    let Some(r) = plain() else { return };
    let img = layered_image(&host_arch());
    let digest = r.push_image("stead/shared", "v1", &img).await;
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(puller(dir.path(), &insecure_conf(r), vec![]));
    let reference = image(&format!("{}/stead/shared:v1", r.host()));
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let (p, reference) = (p.clone(), reference.clone());
            tokio::spawn(async move { p.pull(&reference, PullPolicy::Always, &Keyring::new(), None).await })
        })
        .collect();
    let mut layer_sets = Vec::new();
    for pull in pulls {
        let image = pull.await.unwrap().unwrap();
        assert_eq!(image.manifest_digest, digest);
        layer_sets.push(image.layers);
    }
    assert!(layer_sets.iter().all(|l| *l == layer_sets[0]));
    let layers: Vec<_> =
        std::fs::read_dir(dir.path().join("layers")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(layers.len(), 2, "each layer once, no temporary directory left: {layers:?}");
    assert_eq!(std::fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
}
