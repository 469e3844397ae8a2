//! Pods: scheduling (the one node), handing pods to the runtime, stopping pods marked for
//! deletion and removing them once stopped, and writing the runtime's status back.
//!
//! Architecture invariant: a pod is removed from the store only after the runtime has stopped
//! it, so a controller never creates a pod with the same identity while the old one still runs.

use crate::kinds::Kind;
use crate::runtime::{PodStatusUpdate, Runtime, StoreLookup, typed_pod};
use crate::store::{ObjectKey, Store, StoreError, is_deleting, meta_str};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stead_node::runtime_class::HOST_PROCESS_ANNOTATION;

/// How the local engine runs what Kubernetes would pull as an image (host-process mode).
#[derive(Clone, Debug, Default)]
pub struct LocalImages {
    /// The sidecar image's repository (before the `:tag`) and the `stead` binary: its containers
    /// run this binary (`stead proxy` when they have no command; `stead` as the program is this
    /// binary's path, since the host's PATH may not have it).
    pub stead: Option<(String, String)>,
}

impl LocalImages {
    /// The pod as the runtime runs it: the sidecar's containers run this binary as host
    /// processes (named in the annotation [`HOST_PROCESS_ANNOTATION`]). The stored pod stays
    /// exactly as rendered.
    pub fn localize(&self, mut pod: Value) -> Value {
        let Some((repo, exe)) = &self.stead else { return pod };
        let Some(containers) = pod["spec"]["containers"].as_array_mut() else { return pod };
        let mut host_processes = Vec::new();
        for c in containers {
            let image = c["image"].as_str().unwrap_or_default();
            let repository = image.rsplit_once(':').map_or(image, |(repo, _)| repo);
            if repository != repo {
                continue;
            }
            host_processes.push(c["name"].as_str().unwrap_or_default().to_owned());
            match c["command"].as_array_mut() {
                Some(command) if !command.is_empty() => {
                    if command[0] == "stead" {
                        command[0] = json!(exe);
                    }
                }
                _ => c["command"] = json!([exe, "proxy"]),
            }
        }
        if !host_processes.is_empty() {
            let listed = pod["metadata"]["annotations"][HOST_PROCESS_ANNOTATION].as_str().unwrap_or_default();
            let names: Vec<&str> = listed
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .chain(host_processes.iter().map(String::as_str))
                .collect();
            let joined = names.join(",");
            if let Some(meta) = pod["metadata"].as_object_mut() {
                let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert(HOST_PROCESS_ANNOTATION.into(), json!(joined));
                }
            }
        }
        pod
    }
}

pub struct PodWorker {
    store: Store,
    runtime: Arc<dyn Runtime>,
    node_name: String,
    images: LocalImages,
    /// Uids handed to the runtime.
    started: Mutex<BTreeSet<String>>,
    /// Uids being stopped.
    stopping: Arc<Mutex<BTreeSet<String>>>,
}

impl PodWorker {
    pub fn new(store: Store, runtime: Arc<dyn Runtime>, node_name: String, images: LocalImages) -> PodWorker {
        PodWorker {
            store,
            runtime,
            node_name,
            images,
            started: Mutex::new(BTreeSet::new()),
            stopping: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }

    /// One pass over every pod. Returns how many writes it made.
    pub fn reconcile_all(&self) -> Result<usize, StoreError> {
        let mut writes = 0;
        for pod in self.store.list(Kind::Pod, None) {
            let uid = meta_str(&pod, "uid").unwrap_or_default().to_string();
            if is_deleting(&pod) {
                self.stop(&pod, uid);
                continue;
            }
            if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
                writes += self.schedule(&pod)?;
                continue;
            }
            let phase = pod["status"]["phase"].as_str().unwrap_or_default();
            if matches!(phase, "Succeeded" | "Failed") {
                continue;
            }
            let fresh = self.started.lock().map(|mut s| s.insert(uid.clone())).unwrap_or(false);
            if fresh {
                writes += self.start(&pod)?;
            }
        }
        Ok(writes)
    }

    /// Binds the pod to this node, as the scheduler does.
    fn schedule(&self, pod: &Value) -> Result<usize, StoreError> {
        let mut bound = pod.clone();
        bound["spec"]["nodeName"] = json!(self.node_name);
        if let Some(meta) = bound["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        let bound = self.store.update(bound)?;
        let mut with_status = (*bound).clone();
        with_status["status"] = json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": crate::store::now_string()}],
            "qosClass": stead_node::status::qos_class(&typed_pod(pod).map(|p| p.spec.unwrap_or_default()).unwrap_or_default()),
        });
        self.store.update_status(with_status)?;
        crate::events::scheduled(&self.store, pod, &self.node_name);
        Ok(2)
    }

    fn start(&self, pod: &Value) -> Result<usize, StoreError> {
        let local = self.images.localize(pod.clone());
        let lookup = Arc::new(StoreLookup(self.store.clone()));
        let result = typed_pod(&local).and_then(|p| self.runtime.sync_pod(p, lookup));
        let Err(e) = result else { return Ok(0) };
        tracing::warn!(pod = %describe(pod), error = %e, "pod could not start");
        crate::events::failed_to_start(&self.store, pod, &e.to_string());
        let mut failed = pod.clone();
        failed["status"]["phase"] = json!("Failed");
        failed["status"]["reason"] = json!("StartError");
        failed["status"]["message"] = json!(e.to_string());
        self.store.update_status(failed)?;
        Ok(1)
    }

    /// Stops a pod marked for deletion, then removes it (once; in the background).
    fn stop(&self, pod: &Value, uid: String) {
        let fresh = self.stopping.lock().map(|mut s| s.insert(uid.clone())).unwrap_or(false);
        if !fresh {
            return;
        }
        let Ok(key) = ObjectKey::of(pod) else { return };
        crate::events::killing(&self.store, pod);
        let grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .map(|s| Duration::from_secs(s.max(0) as u64));
        let (store, runtime, stopping) = (self.store.clone(), self.runtime.clone(), self.stopping.clone());
        if let Ok(mut started) = self.started.lock() {
            started.remove(&uid);
        }
        tokio::spawn(async move {
            if let Err(e) = runtime.kill_pod(&key.namespace, &key.name, grace).await {
                tracing::warn!(pod = %key, error = %e, "stopping the pod failed; removing it anyway");
            }
            // Only the pod that was stopped: a new pod with the same name has another uid.
            if store.get(&key).is_some_and(|p| meta_str(&p, "uid") == Some(uid.as_str()))
                && let Err(e) = store.remove(&key)
            {
                tracing::warn!(pod = %key, error = %e, "removing the stopped pod failed");
            }
            if let Ok(mut s) = stopping.lock() {
                s.remove(&uid);
            }
        });
    }

    /// Writes a status the runtime reported, if the pod is still the one it ran.
    pub fn record(&self, update: &PodStatusUpdate) -> Result<bool, StoreError> {
        let key = ObjectKey::new(Kind::Pod, &update.namespace, &update.name);
        let Some(pod) = self.store.get(&key) else { return Ok(false) };
        if meta_str(&pod, "uid") != Some(update.uid.as_str()) {
            return Ok(false);
        }
        let Ok(mut status) = serde_json::to_value(&update.status) else { return Ok(false) };
        // The scheduler's condition is ours, not the runtime's.
        keep_scheduled(&pod, &mut status);
        if pod.get("status") == Some(&status) {
            return Ok(false);
        }
        crate::events::pod_status_changed(&self.store, &pod, &status);
        let mut next = (*pod).clone();
        next["status"] = status;
        if let Some(meta) = next["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        self.store.update_status(next)?;
        Ok(true)
    }
}

fn keep_scheduled(pod: &Value, status: &mut Value) {
    let Some(scheduled) = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
    else {
        return;
    };
    match status["conditions"].as_array_mut() {
        Some(conditions) => {
            if let Some(c) = conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
                *c = scheduled;
            } else {
                conditions.insert(0, scheduled);
            }
        }
        None => status["conditions"] = json!([scheduled]),
    }
}

fn describe(pod: &Value) -> String {
    format!(
        "{}/{}",
        meta_str(pod, "namespace").unwrap_or_default(),
        meta_str(pod, "name").unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_runs_this_binary_as_a_host_process() {
        let images = LocalImages { stead: Some(("ghcr.io/x/stead".into(), "/usr/bin/stead".into())) };
        let pod = json!({
            "metadata": {"name": "p", "annotations": {HOST_PROCESS_ANNOTATION: "tool"}},
            "spec": {"containers": [
                {"name": "app", "image": "shop:1"},
                {"name": "stead", "image": "ghcr.io/x/stead:0.1"},
            ]},
        });
        let local = images.localize(pod);
        assert_eq!(local["metadata"]["annotations"][HOST_PROCESS_ANNOTATION], json!("tool,stead"));
        assert_eq!(local["spec"]["containers"][1]["command"], json!(["/usr/bin/stead", "proxy"]));
        assert_eq!(local["spec"]["containers"][0].get("command"), None);
        let typed = typed_pod(&local).expect("a pod");
        let runtime = |c| {
            stead_node::runtime_class::container_runtime(
                &typed,
                c,
                stead_node::runtime_class::ContainerRuntime::Image,
            )
        };
        assert_eq!(runtime("stead"), Ok(stead_node::runtime_class::ContainerRuntime::HostProcess));
        assert_eq!(runtime("app"), Ok(stead_node::runtime_class::ContainerRuntime::Image));
        // A pod without the sidecar is left alone.
        let plain =
            json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "app", "image": "shop:1"}]}});
        assert_eq!(images.localize(plain.clone()), plain);
    }
}
