//! What the engine needs from a pod runtime, as a trait: the real one is `stead_node::Kubelet`
//! (namespaces, processes, probes); [`FakeRuntime`] runs nothing and reports pods as the test
//! tells it, so the controller loops are tested without root.
//!
//! Everything the engine and its daemon ask of pods goes through [`Runtime`]: start, stop,
//! status, container events, log files and `exec`. Status updates and errors are the node's own
//! types ([`PodStatusUpdate`], [`stead_node::kubelet::KubeletError`] inside [`RuntimeError`]).

use crate::kinds::Kind;
use crate::store::{ObjectKey, Store};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use stead_node::env::{LookupError, ObjectLookup};
pub use stead_node::images::ImageProgress;
use stead_node::kubelet::KubeletError;
pub use stead_node::kubelet::{ContainerEvent, PodStatusUpdate};
use tokio::sync::broadcast;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the runtime did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The kubelet refused (an invalid pod, a name in use, a pod it does not run, ...) or failed.
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    #[error("malformed pod: {0}")]
    MalformedPod(#[source] serde_json::Error),
    /// [`FakeRuntime`] runs no processes, so it cannot run a command in a container.
    #[error("pod {pod:?}: {what} is not supported by the fake runtime, which runs no processes")]
    NotSupportedByFake { pod: String, what: &'static str },
}

/// A pod runtime.
pub trait Runtime: Send + Sync + 'static {
    /// Starts the pod if it is not running (idempotent by uid).
    fn sync_pod(&self, pod: Pod, lookup: Arc<dyn ObjectLookup + Send + Sync>) -> Result<(), RuntimeError>;
    /// Stops the pod gracefully; resolves when nothing of it runs any more.
    fn kill_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        grace: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Every status change.
    fn subscribe(&self) -> broadcast::Receiver<PodStatusUpdate>;
    /// What happened to containers beyond their status (failed probes, probe restarts, failed
    /// hooks), for the pods' Events; `None` when the runtime reports none.
    fn container_events(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        None
    }
    /// Every image pull's progress (layers and bytes); `None` when the runtime pulls no images.
    fn image_pulls(&self) -> Option<broadcast::Receiver<ImageProgress>> {
        None
    }
    /// The address pods reach the node (and its DNS server) at, when there is a pod network.
    fn node_address(&self) -> Option<Ipv4Addr>;
    /// The live log file of a container (`previous`: the instance before the last restart);
    /// `None` when it has not run (or has no previous run).
    fn log_path(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<PathBuf>;
    /// A command that runs `argv` inside a running container (its namespaces, mounts, environment
    /// and cgroups); the caller sets stdio and spawns it. A pod the runtime does not run is
    /// [`KubeletError::NoPod`].
    fn exec_command(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<tokio::process::Command, RuntimeError>;
    /// Stops every pod.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// ConfigMaps and Secrets for the runtime, read from the store when a pod starts.
pub struct StoreLookup(pub Store);

impl StoreLookup {
    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
    ) -> Result<Option<T>, LookupError> {
        let Some(object) = self.0.get(&ObjectKey::new(kind, ns, name)) else { return Ok(None) };
        serde_json::from_value((*object).clone())
            .map(Some)
            .map_err(|e| LookupError(format!("{kind} {ns}/{name} is malformed: {e}")))
    }
}

impl ObjectLookup for StoreLookup {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        self.typed(Kind::ConfigMap, namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError> {
        self.typed(Kind::Secret, namespace, name)
    }
}

/// A runtime that runs nothing: pods it is given are "started" and report what the test sets
/// with [`FakeRuntime::set_ready`] (by default Running and Ready at once).
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<FakeInner>,
}

struct FakeInner {
    pods: Mutex<BTreeMap<(String, String), (String, bool)>>,
    /// Pods that become Ready as soon as they start.
    auto_ready: bool,
    events: broadcast::Sender<PodStatusUpdate>,
    log: Mutex<Vec<String>>,
    /// `(namespace, pod, container, previous)` to the log file the test put there.
    log_paths: Mutex<BTreeMap<(String, String, String, bool), PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeRuntime {
    pub fn new(auto_ready: bool) -> FakeRuntime {
        let (events, _) = broadcast::channel(1024);
        FakeRuntime {
            inner: Arc::new(FakeInner {
                pods: Mutex::new(BTreeMap::new()),
                auto_ready,
                events,
                log: Mutex::new(Vec::new()),
                log_paths: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Makes [`Runtime::log_path`] answer `path` for this container instance.
    pub fn set_log_path(&self, namespace: &str, pod: &str, container: &str, previous: bool, path: PathBuf) {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned(), previous);
        lock(&self.inner.log_paths).insert(key, path);
    }

    /// What the runtime was asked, in order: `start ns/name`, `kill ns/name`,
    /// `exec ns/name/container <argv>`.
    pub fn calls(&self) -> Vec<String> {
        self.inner.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Running pods, as `ns/name`.
    pub fn running(&self) -> Vec<String> {
        self.inner
            .pods
            .lock()
            .map(|p| p.keys().map(|(ns, n)| format!("{ns}/{n}")).collect())
            .unwrap_or_default()
    }

    /// Makes a running pod Ready (or not).
    pub fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        let uid = {
            let Ok(mut pods) = self.inner.pods.lock() else { return };
            let Some(entry) = pods.get_mut(&(namespace.to_string(), name.to_string())) else { return };
            entry.1 = ready;
            entry.0.clone()
        };
        self.publish(namespace, name, &uid, ready);
    }

    fn publish(&self, namespace: &str, name: &str, uid: &str, ready: bool) {
        let status = fake_status(ready);
        let _ = self.inner.events.send(PodStatusUpdate {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            status,
        });
    }

    fn note(&self, line: String) {
        if let Ok(mut log) = self.inner.log.lock() {
            log.push(line);
        }
    }
}

fn fake_status(ready: bool) -> PodStatus {
    let flag = if ready { "True" } else { "False" };
    let value = serde_json::json!({
        "phase": "Running",
        "podIP": "10.244.0.2",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag},
            {"type": "Ready", "status": flag},
        ],
    });
    serde_json::from_value::<PodStatus>(value).unwrap_or_default()
}

impl Runtime for FakeRuntime {
    fn sync_pod(&self, pod: Pod, _lookup: Arc<dyn ObjectLookup + Send + Sync>) -> Result<(), RuntimeError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let started = {
            let mut pods = lock(&self.inner.pods);
            let key = (ns.clone(), name.clone());
            if pods.get(&key).is_some_and(|(u, _)| *u == uid) {
                false
            } else {
                pods.insert(key, (uid.clone(), self.inner.auto_ready));
                true
            }
        };
        if started {
            self.note(format!("start {ns}/{name}"));
            self.publish(&ns, &name, &uid, self.inner.auto_ready);
        }
        Ok(())
    }

    fn kill_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        _grace: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let removed = self
                .inner
                .pods
                .lock()
                .map(|mut p| p.remove(&(namespace.to_string(), name.to_string())).is_some())
                .unwrap_or(false);
            if removed {
                self.note(format!("kill {namespace}/{name}"));
            }
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<PodStatusUpdate> {
        self.inner.events.subscribe()
    }

    fn node_address(&self) -> Option<Ipv4Addr> {
        None
    }

    fn log_path(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<PathBuf> {
        let key = (namespace.to_owned(), pod.to_owned(), container.to_owned(), previous);
        lock(&self.inner.log_paths).get(&key).cloned()
    }

    /// Records the request; a pod it runs gets [`RuntimeError::NotSupportedByFake`], another
    /// [`KubeletError::NoPod`], as from the kubelet.
    fn exec_command(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<tokio::process::Command, RuntimeError> {
        self.note(format!("exec {namespace}/{pod}/{container} {argv:?}"));
        let pod = format!("{namespace}/{pod}");
        let running = self.running().contains(&pod);
        Err(match running {
            true => RuntimeError::NotSupportedByFake { pod, what: "exec" },
            false => KubeletError::NoPod { pod }.into(),
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let pods: Vec<(String, String)> =
                self.inner.pods.lock().map(|p| p.keys().cloned().collect()).unwrap_or_default();
            for (ns, name) in pods {
                let _ = self.kill_pod(&ns, &name, None).await;
            }
        })
    }
}

/// The pod as the runtime wants it (typed), from the store's JSON.
pub fn typed_pod(object: &Value) -> Result<Pod, RuntimeError> {
    serde_json::from_value(object.clone()).map_err(RuntimeError::MalformedPod)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        }))
        .expect("pod")
    }

    #[tokio::test]
    async fn the_fake_refuses_exec_clearly_and_records_it() {
        let fake = FakeRuntime::new(true);
        let lookup = Arc::new(stead_node::env::MapLookup::default());
        fake.sync_pod(pod("web-0"), lookup).expect("sync");
        let argv = vec!["sh".to_owned()];
        let e = fake.exec_command("default", "web-0", "app", &argv).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pod \"default/web-0\": exec is not supported by the fake runtime, which runs no processes"
        );
        let e = fake.exec_command("default", "web-9", "app", &argv).unwrap_err();
        assert!(
            matches!(&e, RuntimeError::Kubelet(KubeletError::NoPod { pod }) if pod == "default/web-9"),
            "{e}"
        );
        assert_eq!(
            fake.calls(),
            ["start default/web-0", "exec default/web-0/app [\"sh\"]", "exec default/web-9/app [\"sh\"]"]
        );
    }

    #[test]
    fn the_fake_answers_the_log_paths_it_was_given() {
        let fake = FakeRuntime::new(true);
        fake.set_log_path("default", "web-0", "app", false, PathBuf::from("/logs/app/1.log"));
        fake.set_log_path("default", "web-0", "app", true, PathBuf::from("/logs/app/0.log"));
        assert_eq!(fake.log_path("default", "web-0", "app", false), Some(PathBuf::from("/logs/app/1.log")));
        assert_eq!(fake.log_path("default", "web-0", "app", true), Some(PathBuf::from("/logs/app/0.log")));
        assert_eq!(fake.log_path("default", "web-0", "db", false), None);
    }

    #[test]
    fn a_malformed_pod_is_a_typed_error() {
        let e = typed_pod(&serde_json::json!({"spec": {"containers": 3}})).unwrap_err();
        assert!(matches!(e, RuntimeError::MalformedPod(_)));
        assert!(e.to_string().starts_with("malformed pod: "), "{e}");
    }
}
