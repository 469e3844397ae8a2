//! Pulling an image into the store, by the OCI distribution API (oci-client).
//!
//! [`Puller::pull`] takes a normalized reference, the pull policy and a [`Keyring`]:
//! 1. `Never` and `IfNotPresent` answer from the store when it has the reference complete
//!    (`Never` fails with [`PullError::NeverPull`] otherwise: the kubelet's `ErrImageNeverPull`).
//! 2. The reference is resolved through registries.conf into endpoints (mirrors first); each is
//!    tried in turn, and with each the credentials the keyring has for that endpoint's host and
//!    repository (most specific first; anonymous when it has none); an authentication failure
//!    moves to the next credential, any other failure to the next endpoint. An insecure endpoint
//!    is tried over TLS without checking its certificate, then, if the connection fails, over
//!    plain HTTP (as containers/image does). Registry CAs come from the options and from
//!    containers-certs.d(5) directories. The error lists every attempt.
//! 3. The manifest (OCI or Docker v2 schema 2), through an image index or manifest list when the
//!    reference names one (the host's platform: `linux` and the host's architecture, the variant
//!    preferred when it matches), then the config, are fetched, verified against their digests
//!    (and the reference's digest when it pins one) and stored as blobs.
//! 4. Layers not yet unpacked are downloaded concurrently (resuming a partial download from its
//!    length with a `Range` request), verified, unpacked (on blocking threads) and their diff
//!    ids checked against the config.
//! 5. The reference (and `name@digest`) is recorded in the store's index.
//!
//! Progress goes to an optional callback as [`Progress`] events: per image, its layers and
//! bytes, enough for docker-pull-like lines.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use thiserror::Error;

use crate::auth::{Credential, Keyring};
use crate::container::PullPolicy;
use crate::reference::ImageRef;
use crate::registries::{Endpoint, RegistriesConf, RegistriesError};
use crate::store::{IndexEntry, PartialBlob, Store, StoreError, sha256_of};
use crate::unpack::UnpackOptions;

const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPTED: &[&str] = &[MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST];

/// A pull that failed.
#[derive(Debug, Error)]
pub enum PullError {
    /// `imagePullPolicy: Never` and the image is not in the store.
    #[error("image {reference} is not present with pull policy Never")]
    NeverPull {
        /// The reference.
        reference: String,
    },
    /// registries.conf blocks the reference.
    #[error(transparent)]
    Blocked(#[from] RegistriesError),
    /// Every endpoint failed.
    #[error("pulling {reference}: {}", attempts.join("; "))]
    Failed {
        /// The reference.
        reference: String,
        /// One line per endpoint (and credential) tried.
        attempts: Vec<String>,
    },
    /// The local store failed.
    #[error("pulling {reference}: {source}")]
    Store {
        /// The reference.
        reference: String,
        /// Why.
        source: StoreError,
    },
    /// The image in the store is unreadable.
    #[error("image {reference} in the store: {reason}")]
    Local {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

/// A progress event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The manifest is known: `layers` layers, of which `to_fetch` need downloading, `bytes`
    /// (compressed) in all.
    Resolved {
        /// The reference pulled.
        reference: String,
        /// The manifest's digest.
        digest: String,
        /// Where from.
        endpoint: String,
        /// Number of layers.
        layers: usize,
        /// Number of layers not yet in the store.
        to_fetch: usize,
        /// Compressed bytes of the layers to fetch.
        bytes: u64,
    },
    /// A layer already unpacked in the store.
    LayerExists {
        /// The reference.
        reference: String,
        /// The layer's blob digest.
        layer: String,
    },
    /// Bytes of a layer received so far (resumed bytes included).
    LayerBytes {
        /// The reference.
        reference: String,
        /// The layer's blob digest.
        layer: String,
        /// Received.
        done: u64,
        /// Expected.
        total: u64,
    },
    /// A layer is downloaded and verified, now being unpacked.
    LayerUnpacking {
        /// The reference.
        reference: String,
        /// The layer's blob digest.
        layer: String,
    },
    /// A layer is unpacked.
    LayerDone {
        /// The reference.
        reference: String,
        /// The layer's blob digest.
        layer: String,
    },
}

/// The callback progress events go to.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// The platform chosen from an image index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// OCI architecture names: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub architecture: String,
    /// `v7` for 32-bit ARM, `v8` for arm64; none elsewhere.
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Self {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

/// The index entry for `platform`: same OS and architecture, the same variant preferred, then
/// one without a variant, then any variant.
pub fn choose_platform<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == platform.os && p.architecture().to_string() == platform.architecture
            })
        })
        .collect();
    let variant = |d: &Descriptor| d.platform().as_ref().and_then(|p| p.variant().clone());
    candidates
        .iter()
        .find(|d| platform.variant.is_some() && variant(d) == platform.variant)
        .or_else(|| candidates.iter().find(|d| variant(d).is_none()))
        .or_else(|| candidates.first())
        .copied()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Https,
    /// An insecure endpoint: TLS without checking the certificate, as containers/image does.
    HttpsUnverified,
    /// An insecure endpoint that does not speak TLS.
    Http,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Https | Scheme::HttpsUnverified => "https",
            Scheme::Http => "http",
        }
    }
}

/// Options of a [`Puller`].
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// PEM certificates trusted for every registry, besides the system's.
    pub extra_roots: Vec<Vec<u8>>,
    /// Directories of per-registry CA certificates, as containers-certs.d(5): the `*.crt` files
    /// of `<dir>/<host[:port]>/` are trusted for that registry. Default
    /// `/etc/containers/certs.d` and `/etc/docker/certs.d`.
    pub certs_dirs: Vec<PathBuf>,
    /// Layers downloaded at once.
    pub concurrent_layers: usize,
    /// The platform chosen from image indexes.
    pub platform: Platform,
    /// How layers are unpacked.
    pub unpack: UnpackOptions,
    /// Attempts per blob (each resumes where the last stopped).
    pub blob_attempts: u32,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            extra_roots: Vec::new(),
            certs_dirs: vec![PathBuf::from("/etc/containers/certs.d"), PathBuf::from("/etc/docker/certs.d")],
            concurrent_layers: 3,
            platform: Platform::host(),
            unpack: UnpackOptions::default(),
            blob_attempts: 3,
        }
    }
}

/// A pulled image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The reference it was pulled as.
    pub reference: ImageRef,
    /// The image manifest's digest.
    pub manifest_digest: String,
    /// The index's digest, when the reference named an index.
    pub index_digest: Option<String>,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config blob's digest (the image id).
    pub config_digest: String,
    /// The config (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`, ...).
    pub config: ImageConfiguration,
    /// The unpacked layers, bottom first (overlayfs' `lowerdir` wants them top first).
    pub layers: Vec<PathBuf>,
    /// The endpoint it was fetched from, or `None` when it came from the store.
    pub source: Option<String>,
}

/// Pulls images into a store.
pub struct Puller {
    store: Arc<Store>,
    registries: RegistriesConf,
    options: PullOptions,
}

enum Failure {
    /// Try the next credential.
    Auth(String),
    /// The connection (TCP or TLS) failed: an insecure endpoint is tried over plain HTTP next.
    Transport(String),
    /// Try the next endpoint.
    Other(String),
    /// Stop: the store failed.
    Store(StoreError),
}

fn describe(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::RegistryError { envelope, url } => {
            let errs: Vec<String> =
                envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
            format!("{} ({url})", errs.join(", "))
        }
        OciDistributionError::RequestError(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
        other => other.to_string(),
    }
}

fn is_auth(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            true
        }
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

fn is_transport(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::RequestError(r) if r.is_connect())
}

/// The `*.crt` files of `<dir>/<host>/` for each directory (containers-certs.d(5)); unreadable
/// ones are skipped with a warning.
pub fn certs_d_roots(dirs: &[PathBuf], host: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(host)) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for file in files {
            match std::fs::read(&file) {
                Ok(pem) => out.push(pem),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read a registry CA certificate")
                }
            }
        }
    }
    out
}

fn layer_media_type_ok(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

impl Puller {
    /// A puller over `store` with the registry settings `registries`. Installs rustls' `ring`
    /// provider as the process default if none is.
    pub fn new(store: Arc<Store>, registries: RegistriesConf, options: PullOptions) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self { store, registries, options }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The image from the store, if it holds `reference` complete.
    pub fn local(&self, reference: &ImageRef) -> Result<Option<Image>, PullError> {
        let key = reference.to_string();
        let store_err = |source| PullError::Store { reference: key.clone(), source };
        let Some(entry) = self.store.lookup(&key).map_err(store_err)? else {
            return Ok(None);
        };
        if !self.store.is_complete(&entry) {
            return Ok(None);
        }
        let local = |reason: String| PullError::Local { reference: key.clone(), reason };
        let manifest: ImageManifest =
            serde_json::from_slice(&self.store.read_blob(&entry.manifest).map_err(store_err)?)
                .map_err(|e| local(format!("manifest {}: {e}", entry.manifest)))?;
        let config: ImageConfiguration =
            serde_json::from_slice(&self.store.read_blob(&entry.config).map_err(store_err)?)
                .map_err(|e| local(format!("config {}: {e}", entry.config)))?;
        let layers = entry
            .diff_ids
            .iter()
            .map(|d| self.store.layer_path(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_err)?;
        Ok(Some(Image {
            reference: reference.clone(),
            manifest_digest: entry.manifest,
            index_digest: entry.index,
            manifest,
            config_digest: entry.config,
            config,
            layers,
            source: None,
        }))
    }

    /// Makes `reference` present per `policy` and returns it. The future is `Send` (the engine
    /// runs pulls on spawned tasks; `tests/registry.rs` spawns four at once).
    pub async fn pull(
        &self,
        reference: &ImageRef,
        policy: PullPolicy,
        keyring: &Keyring,
        progress: Option<ProgressFn>,
    ) -> Result<Image, PullError> {
        if policy != PullPolicy::Always
            && let Some(image) = self.local(reference)?
        {
            return Ok(image);
        }
        if policy == PullPolicy::Never {
            return Err(PullError::NeverPull { reference: reference.to_string() });
        }
        let endpoints = self.registries.resolve(reference)?;
        let mut attempts = Vec::new();
        for endpoint in &endpoints {
            let found = keyring.lookup(endpoint.reference.registry(), endpoint.reference.repository());
            let mut credentials: Vec<(RegistryAuth, String)> = found
                .iter()
                .map(|f| {
                    let auth = match &f.credential {
                        Credential::Basic { username, password } => {
                            RegistryAuth::Basic(username.clone(), password.clone())
                        }
                        Credential::Bearer(token) => RegistryAuth::Bearer(token.clone()),
                    };
                    (auth, format!("credentials {} from {}", f.key, f.source))
                })
                .collect();
            if credentials.is_empty() {
                credentials.push((RegistryAuth::Anonymous, "anonymously".to_string()));
            }
            let schemes: &[Scheme] =
                if endpoint.insecure { &[Scheme::HttpsUnverified, Scheme::Http] } else { &[Scheme::Https] };
            'schemes: for (i, scheme) in schemes.iter().enumerate() {
                let where_ = format!("{}://{}", scheme.name(), endpoint.reference);
                for (auth, how) in &credentials {
                    match self.pull_from(reference, endpoint, *scheme, auth, progress.as_ref()).await {
                        Ok(image) => return Ok(image),
                        Err(Failure::Store(source)) => {
                            return Err(PullError::Store { reference: reference.to_string(), source });
                        }
                        Err(Failure::Auth(msg)) => attempts.push(format!("{where_} {how}: {msg}")),
                        Err(Failure::Transport(msg)) => {
                            attempts.push(format!("{where_} {how}: {msg}"));
                            if i + 1 < schemes.len() {
                                continue 'schemes;
                            }
                            break 'schemes;
                        }
                        Err(Failure::Other(msg)) => {
                            attempts.push(format!("{where_} {how}: {msg}"));
                            break 'schemes;
                        }
                    }
                }
                break;
            }
        }
        Err(PullError::Failed { reference: reference.to_string(), attempts })
    }

    fn client(&self, endpoint: &Endpoint, scheme: Scheme) -> Result<oci_client::Client, Failure> {
        let mut roots: Vec<Certificate> = self
            .options
            .extra_roots
            .iter()
            .map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem.clone() })
            .collect();
        for pem in certs_d_roots(&self.options.certs_dirs, endpoint.reference.registry()) {
            roots.push(Certificate { encoding: CertificateEncoding::Pem, data: pem });
        }
        let config = ClientConfig {
            protocol: if scheme == Scheme::Http { ClientProtocol::Http } else { ClientProtocol::Https },
            accept_invalid_certificates: scheme == Scheme::HttpsUnverified,
            extra_root_certificates: roots,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        oci_client::Client::try_from(config)
            .map_err(|e| Failure::Other(format!("cannot build the client: {}", describe(&e))))
    }

    async fn fetch_manifest(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        auth: &RegistryAuth,
        want: Option<&str>,
    ) -> Result<(Vec<u8>, String), Failure> {
        let (bytes, _) = client.pull_manifest_raw(oref, auth, ACCEPTED).await.map_err(|e| {
            let msg = format!("manifest {oref}: {}", describe(&e));
            if is_auth(&e) {
                Failure::Auth(msg)
            } else if is_transport(&e) {
                Failure::Transport(msg)
            } else {
                Failure::Other(msg)
            }
        })?;
        let digest = sha256_of(&bytes);
        if let Some(want) = want
            && want != digest
        {
            return Err(Failure::Other(format!("manifest {oref} has digest {digest}, not {want}")));
        }
        Ok((bytes.to_vec(), digest))
    }

    async fn pull_from(
        &self,
        original: &ImageRef,
        endpoint: &Endpoint,
        scheme: Scheme,
        auth: &RegistryAuth,
        progress: Option<&ProgressFn>,
    ) -> Result<Image, Failure> {
        let client = self.client(endpoint, scheme)?;
        let eref = &endpoint.reference;
        let oref = eref.to_oci();
        let (mut bytes, mut digest) = self.fetch_manifest(&client, &oref, auth, eref.digest()).await?;
        let mut index_digest = None;
        let head: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Other(format!("manifest {digest} is not JSON: {e}")))?;
        if head.get("schemaVersion").and_then(|v| v.as_i64()) != Some(2) {
            return Err(Failure::Other(format!(
                "manifest {digest} is not schema version 2 (Docker schema 1 images are not supported)"
            )));
        }
        if head.get("manifests").is_some() {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::Other(format!("image index {digest}: {e}")))?;
            let platform = &self.options.platform;
            let Some(chosen) = choose_platform(&index, platform) else {
                let available: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|d| d.platform().as_ref())
                    .map(|p| format!("{}/{}", p.os(), p.architecture()))
                    .collect();
                return Err(Failure::Other(format!(
                    "image index {digest} has no {}/{} image (it has {})",
                    platform.os,
                    platform.architecture,
                    if available.is_empty() { "none".to_string() } else { available.join(", ") }
                )));
            };
            self.store.write_blob(&digest, &bytes).map_err(Failure::Store)?;
            index_digest = Some(digest);
            let chosen_digest = chosen.digest().to_string();
            let pinned = eref.with_digest(&chosen_digest).to_oci();
            (bytes, digest) = self.fetch_manifest(&client, &pinned, auth, Some(&chosen_digest)).await?;
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| Failure::Other(format!("manifest {digest}: {e}")))?;
        self.store.write_blob(&digest, &bytes).map_err(Failure::Store)?;

        // the config
        let config_desc = manifest.config();
        let config_digest = config_desc.digest().to_string();
        if !self.store.has_blob(&config_digest) {
            let mut out = Vec::new();
            client
                .pull_blob(&oref, &oci_descriptor(config_desc), &mut out)
                .await
                .map_err(|e| Failure::Other(format!("config {config_digest}: {}", describe(&e))))?;
            self.store.write_blob(&config_digest, &out).map_err(Failure::Store)?;
        }
        let config: ImageConfiguration =
            serde_json::from_slice(&self.store.read_blob(&config_digest).map_err(Failure::Store)?)
                .map_err(|e| Failure::Other(format!("config {config_digest}: {e}")))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Failure::Other(format!(
                "manifest {digest} has {} layers but its config {config_digest} lists {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        for layer in manifest.layers() {
            let media_type = layer.media_type().to_string();
            if !layer_media_type_ok(&media_type) {
                return Err(Failure::Other(format!(
                    "layer {} has media type {media_type}, not a container layer",
                    layer.digest()
                )));
            }
        }

        // the layers
        let reference_text = original.to_string();
        let missing: Vec<(usize, &Descriptor)> = manifest
            .layers()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.store.has_layer(&diff_ids[*i]))
            .collect();
        if let Some(p) = progress {
            p(&Progress::Resolved {
                reference: reference_text.clone(),
                digest: digest.clone(),
                endpoint: eref.to_string(),
                layers: diff_ids.len(),
                to_fetch: missing.len(),
                bytes: missing.iter().map(|(_, d)| d.size()).sum(),
            });
            for (i, d) in manifest.layers().iter().enumerate() {
                if self.store.has_layer(&diff_ids[i]) {
                    p(&Progress::LayerExists {
                        reference: reference_text.clone(),
                        layer: d.digest().to_string(),
                    });
                }
            }
        }
        // owned jobs: a closure over borrowed descriptors makes the future not `Send`
        let jobs: Vec<(Descriptor, String)> =
            missing.into_iter().map(|(i, desc)| (desc.clone(), diff_ids[i].clone())).collect();
        let (client_ref, oref_ref, text_ref) = (&client, &oref, &reference_text);
        futures::stream::iter(jobs)
            .map(|(desc, diff_id)| async move {
                self.fetch_layer(client_ref, oref_ref, &desc, &diff_id, text_ref, progress).await
            })
            .buffer_unordered(self.options.concurrent_layers.max(1))
            .try_collect::<Vec<()>>()
            .await?;

        let layers = diff_ids
            .iter()
            .map(|d| self.store.layer_path(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::Store)?;
        let entry = IndexEntry {
            manifest: digest.clone(),
            index: index_digest.clone(),
            config: config_digest.clone(),
            diff_ids: diff_ids.clone(),
        };
        self.store.record(&reference_text, entry.clone()).map_err(Failure::Store)?;
        let top = index_digest.as_deref().unwrap_or(&digest);
        let pinned = original.with_digest(top).to_string();
        if pinned != reference_text {
            self.store.record(&pinned, entry).map_err(Failure::Store)?;
        }
        Ok(Image {
            reference: original.clone(),
            manifest_digest: digest,
            index_digest,
            manifest,
            config_digest,
            config,
            layers,
            source: Some(format!("{}://{eref}", scheme.name())),
        })
    }

    async fn fetch_layer(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        desc: &Descriptor,
        diff_id: &str,
        reference: &str,
        progress: Option<&ProgressFn>,
    ) -> Result<(), Failure> {
        let blob = desc.digest().to_string();
        let lock = self.store.blob_lock(diff_id);
        let _held = lock.lock().await;
        if self.store.has_layer(diff_id) {
            return Ok(());
        }
        if !self.store.has_blob(&blob) {
            self.download(client, oref, desc, reference, progress).await?;
        }
        if let Some(p) = progress {
            p(&Progress::LayerUnpacking { reference: reference.to_string(), layer: blob.clone() });
        }
        let store = self.store.clone();
        let options = self.options.unpack.clone();
        let (b, d) = (blob.clone(), diff_id.to_string());
        tokio::task::spawn_blocking(move || store.unpack_blob(&b, &d, &options))
            .await
            .map_err(|e| Failure::Other(format!("layer {blob}: unpacking stopped: {e}")))?
            .map_err(|e| match e {
                StoreError::Io { .. } => Failure::Store(e),
                other => Failure::Other(other.to_string()),
            })?;
        if let Some(p) = progress {
            p(&Progress::LayerDone { reference: reference.to_string(), layer: blob });
        }
        Ok(())
    }

    /// Downloads a blob into `partial/`, resuming, then verifies and stores it.
    async fn download(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        desc: &Descriptor,
        reference: &str,
        progress: Option<&ProgressFn>,
    ) -> Result<(), Failure> {
        let digest = desc.digest().to_string();
        // a resumed download whose bytes turn out wrong (a torn partial file after a crash) is
        // downloaded once more from the start
        for round in 0..2 {
            let store = self.store.clone();
            let d = digest.clone();
            let partial = tokio::task::spawn_blocking(move || store.open_partial(&d))
                .await
                .map_err(|e| Failure::Other(format!("layer {digest}: {e}")))?
                .map_err(Failure::Store)?;
            let resumed = !partial.is_empty();
            let partial = self.receive(client, oref, desc, partial, reference, progress).await?;
            let store = self.store.clone();
            let committed = tokio::task::spawn_blocking(move || store.commit_partial(partial))
                .await
                .map_err(|e| Failure::Other(format!("layer {digest}: {e}")))?;
            match committed {
                Ok(_) => return Ok(()),
                Err(e @ StoreError::DigestMismatch { .. }) if resumed && round == 0 => {
                    tracing::warn!(layer = %digest, error = %e, "a resumed download was wrong; downloading it again");
                }
                Err(e @ StoreError::DigestMismatch { .. }) => return Err(Failure::Other(e.to_string())),
                Err(other) => return Err(Failure::Store(other)),
            }
        }
        Err(Failure::Other(format!("layer {digest}: failed verification twice")))
    }

    /// Receives the rest of a blob into `partial`, resuming after interruptions.
    async fn receive(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        desc: &Descriptor,
        mut partial: PartialBlob,
        reference: &str,
        progress: Option<&ProgressFn>,
    ) -> Result<PartialBlob, Failure> {
        let digest = desc.digest().to_string();
        let total = desc.size();
        if partial.len() > total {
            partial.reset().map_err(Failure::Store)?;
        }
        let odesc = oci_descriptor(desc);
        let mut attempt = 0u32;
        let mut last_error = String::new();
        while partial.len() < total || total == 0 {
            attempt += 1;
            if attempt > self.options.blob_attempts.max(1) {
                return Err(Failure::Other(format!("layer {digest}: {last_error}")));
            }
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            let offset = partial.len();
            let mut stream = match client.pull_blob_stream_partial(oref, &odesc, offset, None).await {
                Ok(BlobResponse::Full(s)) => {
                    if offset > 0 {
                        partial.reset().map_err(Failure::Store)?;
                    }
                    s.stream
                }
                Ok(BlobResponse::Partial(s)) => s.stream,
                Err(e) => {
                    last_error = describe(&e);
                    if is_auth(&e) {
                        return Err(Failure::Auth(format!("layer {digest}: {last_error}")));
                    }
                    continue;
                }
            };
            let mut failed = false;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        partial.write(&bytes).map_err(Failure::Store)?;
                        if let Some(p) = progress {
                            p(&Progress::LayerBytes {
                                reference: reference.to_string(),
                                layer: digest.clone(),
                                done: partial.len(),
                                total,
                            });
                        }
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        failed = true;
                        break;
                    }
                }
            }
            if total == 0 && !failed {
                break;
            }
            if failed && partial.len() < total {
                tracing::debug!(layer = %digest, at = partial.len(), error = %last_error, "blob download interrupted; resuming");
            }
        }
        Ok(partial)
    }
}

fn oci_descriptor(desc: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: desc.media_type().to_string(),
        digest: desc.digest().to_string(),
        size: desc.size() as i64,
        urls: desc.urls().clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str, Option<&str>, &str)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(os, arch, variant, hex)| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": MEDIA_OCI_MANIFEST,
                    "digest": format!("sha256:{}", hex.repeat(64)),
                    "size": 1,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests})).unwrap()
    }

    fn pick(idx: &ImageIndex, arch: &str, variant: Option<&str>) -> Option<char> {
        let p =
            Platform { os: "linux".into(), architecture: arch.into(), variant: variant.map(str::to_string) };
        choose_platform(idx, &p).map(|d| d.digest().to_string().chars().last().unwrap_or('?'))
    }

    #[test]
    fn platform_choice() {
        let idx = index(&[
            ("windows", "amd64", None, "1"),
            ("linux", "arm", Some("v6"), "2"),
            ("linux", "arm", Some("v7"), "3"),
            ("linux", "arm64", None, "4"),
            ("linux", "amd64", None, "5"),
            ("unknown", "unknown", None, "6"),
        ]);
        assert_eq!(pick(&idx, "amd64", None), Some('5'));
        assert_eq!(pick(&idx, "arm", Some("v7")), Some('3'));
        assert_eq!(pick(&idx, "arm", Some("v5")), Some('2'), "no exact variant: the first");
        assert_eq!(pick(&idx, "arm64", Some("v8")), Some('4'), "no variant given: fine");
        assert_eq!(pick(&idx, "s390x", None), None);
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.architecture, "amd64");
        }
    }

    #[test]
    fn layer_media_types() {
        assert!(layer_media_type_ok("application/vnd.oci.image.layer.v1.tar+zstd"));
        assert!(layer_media_type_ok("application/vnd.docker.image.rootfs.diff.tar.gzip"));
        assert!(!layer_media_type_ok("application/vnd.oci.image.layer.v1.tar+gzip+encrypted"));
        assert!(!layer_media_type_ok("application/vnd.wasm.content.layer.v1+wasm"));
    }
}
