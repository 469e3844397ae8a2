//! What the engine needs from a pod runtime, as a trait: the real one is `stead_node::Kubelet`
//! (namespaces, processes, probes); [`FakeRuntime`] runs nothing and reports pods as the test
//! tells it, so the controller loops are tested without root.

use crate::kinds::Kind;
use crate::store::{ObjectKey, Store};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stead_node::env::{LookupError, ObjectLookup};
pub use stead_node::kubelet::ContainerEvent;
use tokio::sync::broadcast;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A pod's status as the runtime reports it.
#[derive(Clone, Debug)]
pub struct PodStatusUpdate {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub status: PodStatus,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

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
    /// The address pods reach the node (and its DNS server) at, when there is a pod network.
    fn node_address(&self) -> Option<Ipv4Addr>;
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
            }),
        }
    }

    /// What the runtime was asked, in order: `start ns/name`, `kill ns/name`.
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
            let mut pods =
                self.inner.pods.lock().map_err(|_| RuntimeError("fake runtime poisoned".into()))?;
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
    serde_json::from_value(object.clone()).map_err(|e| RuntimeError(format!("malformed pod: {e}")))
}
