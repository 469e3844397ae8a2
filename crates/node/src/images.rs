//! The node's image service: makes a container's image present before it starts, as the
//! kubelet's image manager does (`EnsureImageExists`), over [`stead_image`]'s store and puller.
//!
//! - [`pull_policy`] and [`decide`] are the pure rules: the container's `imagePullPolicy` (or
//!   Kubernetes' default: `Always` for `:latest` or no tag, else `IfNotPresent`) and whether the
//!   store's copy is used, the registry asked, or the start refused (`Never` without the image:
//!   `ErrImageNeverPull`).
//! - [`ImageService::ensure`] applies them against the store under `<state>/images` (shared with
//!   `stead image`). One pull per reference and set of pull Secrets runs at a time, on a task of
//!   its own: pods that need the same image meanwhile wait for it; when every waiter is gone (its
//!   pod was killed) the pull is aborted, leaving only the store's resumable partial files.
//! - Registry settings (registries.conf, auth.json, docker's config.json) are read at each pull
//!   from [`RegistryEnv`], so a daemon pulls with the settings of the environment it was started
//!   in, and a changed file applies to the next pull. Credentials of the pod's `imagePullSecrets`
//!   are tried before the node's files, as the kubelet's keyring does.
//! - Progress events of every pull are published ([`ImageService::subscribe`]) for
//!   docker-pull-like lines.

use k8s_openapi::api::core::v1::Container;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stead_image::auth::Keyring;
use stead_image::container::PullPolicy;
use stead_image::pull::{Image, Progress, ProgressFn, PullError, PullOptions, Puller};
use stead_image::reference::ImageRef;
use stead_image::registries::RegistriesConf;
use stead_image::store::Store;
use tokio::sync::{broadcast, watch};

/// Where registry settings come from when a pull starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistryEnv {
    /// The process environment at pull time (`CONTAINERS_REGISTRIES_CONF`, `REGISTRY_AUTH_FILE`,
    /// `XDG_RUNTIME_DIR`, `XDG_CONFIG_HOME`, `HOME`, `DOCKER_CONFIG`).
    #[default]
    Process,
    /// These variables only (tests, or a caller that passes its own).
    Fixed(BTreeMap<String, String>),
}

impl RegistryEnv {
    fn var(&self, key: &str) -> Option<String> {
        match self {
            RegistryEnv::Process => std::env::var(key).ok(),
            RegistryEnv::Fixed(vars) => vars.get(key).cloned(),
        }
        .filter(|v| !v.is_empty())
    }
}

/// What to do for a container start, from its pull policy and whether the store has the image
/// (the kubelet's `shouldPullImage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The store's copy; the registry is not contacted.
    UseLocal,
    /// Ask the registry (resolving the reference again; unchanged layers are not downloaded).
    Pull,
    /// `Never` without the image: `ErrImageNeverPull`.
    NeverPull,
}

/// The kubelet's decision.
pub fn decide(policy: PullPolicy, present: bool) -> Decision {
    match (policy, present) {
        (PullPolicy::Always, _) => Decision::Pull,
        (_, true) => Decision::UseLocal,
        (PullPolicy::IfNotPresent, false) => Decision::Pull,
        (PullPolicy::Never, false) => Decision::NeverPull,
    }
}

/// An `imagePullPolicy` that is not one of the three (the API server's validation refuses it, so
/// the kubelet never sees one; here `sync_pod` refuses the pod).
pub fn validate_pull_policy(container: &Container) -> Result<(), String> {
    match container.image_pull_policy.as_deref() {
        None | Some("") => Ok(()),
        Some(p) if PullPolicy::parse(p).is_some() => Ok(()),
        Some(p) => Err(format!(
            "container {:?}: imagePullPolicy {p:?} is not Always, IfNotPresent or Never",
            container.name
        )),
    }
}

/// A container's image and pull policy, or why it has none (the kubelet's `InvalidImageName`).
pub fn pull_policy(container: &Container) -> Result<(ImageRef, PullPolicy), String> {
    let text = container.image.as_deref().unwrap_or("");
    if text.is_empty() {
        return Err(format!("container {:?} has no image", container.name));
    }
    let image = ImageRef::parse(text).map_err(|e| e.to_string())?;
    let policy = match container.image_pull_policy.as_deref() {
        None | Some("") => PullPolicy::default_for(&image),
        Some(p) => match PullPolicy::parse(p) {
            Some(policy) => policy,
            None => return Err(validate_pull_policy(container).err().unwrap_or_default()),
        },
    };
    Ok((image, policy))
}

/// One progress event of a pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageProgress {
    /// The reference, as the container names it normalized (`docker.io/library/alpine:3.20`).
    pub reference: String,
    pub progress: Progress,
}

/// An image made present.
#[derive(Clone, Debug)]
pub struct Ensured {
    pub image: Arc<Image>,
    /// Pulled now (`false`: already present, the registry not contacted).
    pub pulled: bool,
    /// How long the pull took, and how long the caller waited (another pod's pull of the same
    /// image included).
    pub pull_time: Duration,
    pub total_time: Duration,
    /// The image's size: its config and compressed layers, as the registry serves them.
    pub size: u64,
}

/// Why an image is not present.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnsureError {
    /// `imagePullPolicy: Never` and the store does not have it.
    #[error("Container image \"{image}\" is not present with pull policy of Never")]
    NeverPull { image: String },
    /// The pull failed (every endpoint and credential tried), or the settings are unreadable.
    #[error("{0}")]
    Pull(String),
}

type PullResult = Option<Result<(Arc<Image>, Duration), String>>;

struct Inflight {
    id: u64,
    result: watch::Receiver<PullResult>,
    waiters: usize,
    abort: tokio::task::AbortHandle,
}

/// The node's images: the store, the pulls in flight, their progress.
pub struct ImageService {
    root: PathBuf,
    env: RegistryEnv,
    store: Mutex<Option<Arc<Store>>>,
    inflight: Arc<Mutex<HashMap<String, Inflight>>>,
    next_id: std::sync::atomic::AtomicU64,
    progress: broadcast::Sender<ImageProgress>,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService").field("root", &self.root).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decrements its pull's waiters when dropped (the waiting pod gone or done); the last one out
/// aborts a pull still running.
struct Waiter {
    key: String,
    id: u64,
    inflight: Arc<Mutex<HashMap<String, Inflight>>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = lock(&self.inflight);
        let Some(entry) = map.get_mut(&self.key).filter(|e| e.id == self.id) else { return };
        entry.waiters = entry.waiters.saturating_sub(1);
        if entry.waiters == 0 {
            entry.abort.abort();
            map.remove(&self.key);
        }
    }
}

impl ImageService {
    /// The service over the store at `root` (opened at the first use).
    pub fn new(root: impl Into<PathBuf>, env: RegistryEnv) -> Self {
        let (progress, _) = broadcast::channel(1024);
        Self {
            root: root.into(),
            env,
            store: Mutex::new(None),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next_id: std::sync::atomic::AtomicU64::new(0),
            progress,
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every pull's progress.
    pub fn subscribe(&self) -> broadcast::Receiver<ImageProgress> {
        self.progress.subscribe()
    }

    fn store(&self) -> Result<Arc<Store>, EnsureError> {
        let mut slot = lock(&self.store);
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let store = Arc::new(Store::open(&self.root).map_err(|e| EnsureError::Pull(e.to_string()))?);
        *slot = Some(store.clone());
        Ok(store)
    }

    /// Makes `image` present per `policy`, with `secrets` (the pod's pull Secrets, already in a
    /// keyring; `secrets_key` names them, so that pods with other Secrets do not share a pull).
    /// `pulling` is called when the registry is about to be asked (the kubelet's `Pulling` event).
    pub async fn ensure(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        secrets: &Keyring,
        secrets_key: &str,
        pulling: impl FnOnce(),
    ) -> Result<Ensured, EnsureError> {
        let started = Instant::now();
        let store = self.store()?;
        let local = Puller::new(store.clone(), RegistriesConf::default(), PullOptions::default())
            .local(image)
            .map_err(|e| EnsureError::Pull(e.to_string()))?;
        let present = local.is_some();
        match decide(policy, present) {
            Decision::UseLocal => {
                let image = Arc::new(local.ok_or_else(|| EnsureError::Pull("the image vanished".into()))?);
                let size = image_size(&image);
                return Ok(Ensured {
                    image,
                    pulled: false,
                    pull_time: Duration::ZERO,
                    total_time: started.elapsed(),
                    size,
                });
            }
            Decision::NeverPull => return Err(EnsureError::NeverPull { image: image.to_string() }),
            Decision::Pull => {}
        }
        pulling();
        let key = format!("{image}\n{secrets_key}");
        let (mut result, _waiter) = self.join_or_start(key, image, store, secrets)?;
        let done = result.wait_for(Option::is_some).await.map(|r| r.clone());
        match done {
            Ok(Some(Ok((image, pull_time)))) => {
                let size = image_size(&image);
                Ok(Ensured { image, pulled: true, pull_time, total_time: started.elapsed(), size })
            }
            Ok(Some(Err(message))) => Err(EnsureError::Pull(message)),
            Ok(None) | Err(_) => {
                Err(EnsureError::Pull(format!("the pull of {image} ended without a result")))
            }
        }
    }

    fn join_or_start(
        &self,
        key: String,
        image: &ImageRef,
        store: Arc<Store>,
        secrets: &Keyring,
    ) -> Result<(watch::Receiver<PullResult>, Waiter), EnsureError> {
        let mut map = lock(&self.inflight);
        if let Some(entry) = map.get_mut(&key) {
            entry.waiters += 1;
            let waiter = Waiter { key, id: entry.id, inflight: self.inflight.clone() };
            return Ok((entry.result.clone(), waiter));
        }
        let registries =
            RegistriesConf::load(self.env.var("CONTAINERS_REGISTRIES_CONF").as_deref().map(Path::new))
                .map_err(|e| EnsureError::Pull(e.to_string()))?;
        let mut keyring = secrets.clone();
        for file in Keyring::node_files(|k| self.env.var(k)) {
            keyring.add_file(&file).map_err(|e| EnsureError::Pull(e.to_string()))?;
        }
        let puller = Puller::new(store, registries, PullOptions::default());
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let reference = image.clone();
        let sink = self.progress.clone();
        let name = image.to_string();
        let progress: ProgressFn = Arc::new(move |p: &Progress| {
            let _ = sink.send(ImageProgress { reference: name.clone(), progress: p.clone() });
        });
        let inflight = self.inflight.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let r = puller.pull(&reference, PullPolicy::Always, &keyring, Some(progress)).await;
            let r = r.map(|i| (Arc::new(i), t0.elapsed())).map_err(|e: PullError| e.to_string());
            // Later ensures start a pull of their own (an `Always` policy resolves again).
            {
                let mut map = lock(&inflight);
                if map.get(&task_key).is_some_and(|e| e.id == id) {
                    map.remove(&task_key);
                }
            }
            let _ = tx.send(Some(r));
        });
        map.insert(key.clone(), Inflight { id, result: rx.clone(), waiters: 1, abort: task.abort_handle() });
        Ok((rx, Waiter { key, id, inflight: self.inflight.clone() }))
    }
}

/// The config and the compressed layers, as the manifest lists them.
fn image_size(image: &Image) -> u64 {
    let layers: u64 = image.manifest.layers().iter().map(|l| l.size()).sum();
    layers + image.manifest.config().size()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_kubelet() {
        use Decision::*;
        use PullPolicy::*;
        let cases = [
            (Always, true, Pull),
            (Always, false, Pull),
            (IfNotPresent, true, UseLocal),
            (IfNotPresent, false, Pull),
            (Never, true, UseLocal),
            (Never, false, NeverPull),
        ];
        for (policy, present, want) in cases {
            assert_eq!(decide(policy, present), want, "{policy} present={present}");
        }
    }

    fn container(image: Option<&str>, policy: Option<&str>) -> Container {
        serde_json::from_value(serde_json::json!({"name": "app", "image": image, "imagePullPolicy": policy}))
            .expect("a container")
    }

    #[test]
    fn policies_default_as_kubernetes_does() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cases = [
            ("alpine", None, PullPolicy::Always),
            ("alpine:latest", None, PullPolicy::Always),
            ("alpine:3.20", None, PullPolicy::IfNotPresent),
            ("alpine:3.20", Some("Always"), PullPolicy::Always),
            ("alpine", Some("Never"), PullPolicy::Never),
            ("alpine", Some(""), PullPolicy::Always),
        ];
        for (image, policy, want) in cases {
            let (r, p) = pull_policy(&container(Some(image), policy)).expect("valid");
            assert_eq!(p, want, "{image} {policy:?}");
            assert!(r.to_string().starts_with("docker.io/library/alpine"), "{r}");
        }
        let (_, p) = pull_policy(&container(Some(&format!("alpine@{d}")), None)).expect("valid");
        assert_eq!(p, PullPolicy::IfNotPresent);
    }

    #[test]
    fn bad_images_and_policies_are_named() {
        assert_eq!(pull_policy(&container(None, None)).unwrap_err(), "container \"app\" has no image");
        let bad = container(Some("alpine"), Some("always"));
        let message = "container \"app\": imagePullPolicy \"always\" is not Always, IfNotPresent or Never";
        assert_eq!(pull_policy(&bad).unwrap_err(), message);
        assert_eq!(validate_pull_policy(&bad).unwrap_err(), message);
        assert_eq!(validate_pull_policy(&container(Some("alpine"), Some("Never"))), Ok(()));
        assert_eq!(validate_pull_policy(&container(None, None)), Ok(()));
        let e = pull_policy(&container(Some("Alpine:x y"), None)).unwrap_err();
        assert!(e.contains("Alpine:x y"), "{e}");
    }

    #[test]
    fn registry_settings_come_from_the_given_variables() {
        let env = RegistryEnv::Fixed(BTreeMap::from([
            ("HOME".to_string(), "/home/u".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]));
        assert_eq!(env.var("HOME").as_deref(), Some("/home/u"));
        assert_eq!(env.var("EMPTY"), None);
        assert_eq!(env.var("CONTAINERS_REGISTRIES_CONF"), None);
    }

    #[tokio::test]
    async fn never_without_the_image_is_refused_without_a_registry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let svc = ImageService::new(dir.path().join("images"), RegistryEnv::Fixed(BTreeMap::new()));
        let image = ImageRef::parse("registry.invalid/app:1").expect("ref");
        let e = svc
            .ensure(&image, PullPolicy::Never, &Keyring::new(), "", || panic!("no pull"))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Container image \"registry.invalid/app:1\" is not present with pull policy of Never"
        );
    }
}
