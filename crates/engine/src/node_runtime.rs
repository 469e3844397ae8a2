//! The real runtime: `stead_node`'s kubelet behind the engine's [`Runtime`] trait.

use crate::runtime::{BoxFuture, ContainerEvent, ImageProgress, PodStatusUpdate, Runtime, RuntimeError};
use k8s_openapi::api::core::v1::Pod;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stead_node::env::ObjectLookup;
use stead_node::kubelet::Kubelet;
use tokio::sync::broadcast;

/// The kubelet; its status updates, events and errors are passed on as they are.
pub struct NodeRuntime {
    kubelet: Kubelet,
}

impl NodeRuntime {
    pub fn new(kubelet: Kubelet) -> NodeRuntime {
        NodeRuntime { kubelet }
    }

    pub fn kubelet(&self) -> &Kubelet {
        &self.kubelet
    }
}

impl Runtime for NodeRuntime {
    fn sync_pod(&self, pod: Pod, lookup: Arc<dyn ObjectLookup + Send + Sync>) -> Result<(), RuntimeError> {
        Ok(self.kubelet.sync_pod(pod, lookup)?)
    }

    fn kill_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        grace: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { Ok(self.kubelet.kill_pod(namespace, name, grace).await?) })
    }

    fn subscribe(&self) -> broadcast::Receiver<PodStatusUpdate> {
        self.kubelet.subscribe()
    }

    fn container_events(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        Some(self.kubelet.subscribe_events())
    }

    fn image_pulls(&self) -> Option<broadcast::Receiver<ImageProgress>> {
        Some(self.kubelet.subscribe_pulls())
    }

    fn node_address(&self) -> Option<Ipv4Addr> {
        Some(self.kubelet.bridge_address())
    }

    fn log_path(&self, namespace: &str, pod: &str, container: &str, previous: bool) -> Option<PathBuf> {
        self.kubelet.log_path(namespace, pod, container, previous)
    }

    fn exec_command(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        argv: &[String],
    ) -> Result<tokio::process::Command, RuntimeError> {
        Ok(self.kubelet.exec_command(namespace, pod, container, argv)?)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.kubelet.shutdown())
    }
}
