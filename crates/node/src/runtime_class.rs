//! Which runtime a container runs in: from its image (an OCI runtime bundle over the pulled
//! layers), or as a host process (its `command` on the host's filesystem inside the pod sandbox,
//! [`crate::host_process`]).
//!
//! Kubernetes chooses a runtime with `spec.runtimeClassName`; stead knows two classes:
//! [`HOST_PROCESS_CLASS`], whose pods run every container as a host process, and [`IMAGE_CLASS`]
//! (`runc`, the handler name Kubernetes clusters commonly give it), whose pods run their
//! containers from their images whatever the node's default is. A pod may also name
//! single containers in the annotation [`HOST_PROCESS_ANNOTATION`] (comma-separated): the engine
//! sets it for the stead sidecar, which runs from the `stead` binary because no registry here has
//! its image. A pod with no class runs in the node's default ([`ContainerRuntime`] in
//! `KubeletConfig::default_runtime`). Any other class is an error naming it and the known ones (the
//! kubelet's `CreateContainerConfigError`, as for a RuntimeClass that does not exist).
//!
//! Pure: a pod in, a decision out.

use k8s_openapi::api::core::v1::Pod;

/// The `runtimeClassName` whose containers all run as host processes.
pub const HOST_PROCESS_CLASS: &str = "stead-host-process";

/// The pod annotation listing containers (comma-separated names) that run as host processes.
pub const HOST_PROCESS_ANNOTATION: &str = "stead.io/host-process-containers";

/// The `runtimeClassName` whose containers run from their images under the OCI runtime.
pub const IMAGE_CLASS: &str = "runc";

/// The runtime classes this node knows.
pub const KNOWN_CLASSES: &[&str] = &[HOST_PROCESS_CLASS, IMAGE_CLASS];

/// How a container runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContainerRuntime {
    /// From its image: pulled, unpacked, run by the OCI runtime.
    #[default]
    Image,
    /// Its `command` as a process on the host's filesystem, inside the pod sandbox.
    HostProcess,
}

/// A `runtimeClassName` this node does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("runtimeClassName {name:?} is not known to stead: the known runtime classes are {known}", known = KNOWN_CLASSES.join(", "))]
pub struct UnknownRuntimeClass {
    /// The pod's value.
    pub name: String,
}

/// How `container` of `pod` runs, with `default` for a pod that names no runtime class.
pub fn container_runtime(
    pod: &Pod,
    container: &str,
    default: ContainerRuntime,
) -> Result<ContainerRuntime, UnknownRuntimeClass> {
    let class = pod.spec.as_ref().and_then(|s| s.runtime_class_name.as_deref()).unwrap_or("");
    let default = match class {
        HOST_PROCESS_CLASS => return Ok(ContainerRuntime::HostProcess),
        IMAGE_CLASS => ContainerRuntime::Image,
        "" => default,
        other => return Err(UnknownRuntimeClass { name: other.to_owned() }),
    };
    let listed = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOST_PROCESS_ANNOTATION))
        .is_some_and(|names| names.split(',').any(|n| n.trim() == container));
    Ok(if listed { ContainerRuntime::HostProcess } else { default })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerRuntime::{HostProcess, Image};

    fn pod(class: Option<&str>, annotation: Option<&str>) -> Pod {
        let mut annotations = serde_json::Map::new();
        if let Some(a) = annotation {
            annotations.insert(HOST_PROCESS_ANNOTATION.into(), a.into());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"runtimeClassName": class, "containers": [{"name": "app"}, {"name": "stead"}]},
        }))
        .expect("a pod")
    }

    #[test]
    fn no_class_takes_the_node_default() {
        assert_eq!(container_runtime(&pod(None, None), "app", Image), Ok(Image));
        assert_eq!(container_runtime(&pod(None, None), "app", HostProcess), Ok(HostProcess));
        assert_eq!(container_runtime(&pod(Some(""), None), "app", Image), Ok(Image));
    }

    #[test]
    fn the_host_process_class_runs_every_container_on_the_host() {
        for c in ["app", "stead"] {
            assert_eq!(container_runtime(&pod(Some(HOST_PROCESS_CLASS), None), c, Image), Ok(HostProcess));
        }
    }

    #[test]
    fn the_image_class_runs_from_images_on_a_host_process_node_but_keeps_the_annotation() {
        let p = pod(Some(IMAGE_CLASS), Some("stead"));
        assert_eq!(container_runtime(&p, "app", HostProcess), Ok(Image));
        assert_eq!(container_runtime(&p, "stead", HostProcess), Ok(HostProcess));
    }

    #[test]
    fn the_annotation_names_single_containers() {
        let p = pod(None, Some("other, stead"));
        assert_eq!(container_runtime(&p, "stead", Image), Ok(HostProcess));
        assert_eq!(container_runtime(&p, "app", Image), Ok(Image));
        // names match whole, not as prefixes
        assert_eq!(container_runtime(&pod(None, Some("steady")), "stead", Image), Ok(Image));
        assert_eq!(container_runtime(&pod(None, Some("")), "app", Image), Ok(Image));
    }

    #[test]
    fn an_unknown_class_is_an_error_naming_it_and_the_known_ones() {
        let e = container_runtime(&pod(Some("gvisor"), Some("app")), "app", Image).unwrap_err();
        assert_eq!(
            e.to_string(),
            "runtimeClassName \"gvisor\" is not known to stead: the known runtime classes are \
             stead-host-process, runc"
        );
    }
}
