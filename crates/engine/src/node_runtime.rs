//! The real runtime: `stead_node`'s kubelet behind the engine's [`Runtime`] trait.

use crate::runtime::{BoxFuture, ContainerEvent, PodStatusUpdate, Runtime, RuntimeError};
use k8s_openapi::api::core::v1::Pod;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use stead_node::env::ObjectLookup;
use stead_node::kubelet::Kubelet;
use tokio::sync::broadcast;

/// The kubelet, and a task that forwards its status updates in the engine's shape.
pub struct NodeRuntime {
    kubelet: Kubelet,
    updates: broadcast::Sender<PodStatusUpdate>,
}

impl NodeRuntime {
    /// Must be called inside a tokio runtime.
    pub fn new(kubelet: Kubelet) -> NodeRuntime {
        let (updates, _) = broadcast::channel(1024);
        let mut from = kubelet.subscribe();
        let to = updates.clone();
        tokio::spawn(async move {
            loop {
                match from.recv().await {
                    Ok(u) => {
                        let _ = to.send(PodStatusUpdate {
                            namespace: u.namespace,
                            name: u.name,
                            uid: u.uid,
                            status: u.status,
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        NodeRuntime { kubelet, updates }
    }

    pub fn kubelet(&self) -> &Kubelet {
        &self.kubelet
    }
}

impl Runtime for NodeRuntime {
    fn sync_pod(&self, pod: Pod, lookup: Arc<dyn ObjectLookup + Send + Sync>) -> Result<(), RuntimeError> {
        self.kubelet.sync_pod(pod, lookup).map_err(|e| RuntimeError(e.to_string()))
    }

    fn kill_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        grace: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.kubelet.kill_pod(namespace, name, grace).await.map_err(|e| RuntimeError(e.to_string()))
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<PodStatusUpdate> {
        self.updates.subscribe()
    }

    fn container_events(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        Some(self.kubelet.subscribe_events())
    }

    fn node_address(&self) -> Option<Ipv4Addr> {
        Some(self.kubelet.bridge_address())
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.kubelet.shutdown())
    }
}
