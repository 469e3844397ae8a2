//! Host-process mode: containers run their `command` on the host's filesystem inside the pod sandbox.
//!
//! No image is pulled or unpacked: `image` is recorded in the status only. A container therefore needs
//! a `command` (an image's ENTRYPOINT is unknown here); one without it is an error naming the pod and
//! the container. `args` follow `command`, both `$(VAR)`-expanded against the container's environment.

use crate::env::Environment;
use crate::expand::expand_all;
use k8s_openapi::api::core::v1::{Container, Pod};

/// A container that cannot run in host-process mode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostProcessError {
    #[error(
        "pod {pod:?}: container {container:?} has no command: stead runs containers as host processes \
         and does not pull images (image {image:?} is recorded only), so set `command` to the program to run"
    )]
    NoCommand { pod: String, container: String, image: String },
    #[error("pod {pod:?}: container {container:?} has an empty program name in command[0]")]
    EmptyProgram { pod: String, container: String },
}

/// What to execute for one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    /// `command` followed by `args`, expanded; `argv[0]` is the program.
    pub argv: Vec<String>,
    /// `NAME=value` strings.
    pub env: Vec<String>,
    /// `workingDir`, if set.
    pub working_dir: Option<String>,
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Checks that every init and app container of `pod` can run in host-process mode.
pub fn check_pod(pod: &Pod) -> Result<(), HostProcessError> {
    let Some(spec) = pod.spec.as_ref() else { return Ok(()) };
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        check_container(pod, c)?;
    }
    Ok(())
}

/// Checks one container.
pub fn check_container(pod: &Pod, container: &Container) -> Result<(), HostProcessError> {
    match container.command.as_deref() {
        None | Some([]) => Err(HostProcessError::NoCommand {
            pod: pod_name(pod),
            container: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
        }),
        Some([first, ..]) if first.is_empty() => {
            Err(HostProcessError::EmptyProgram { pod: pod_name(pod), container: container.name.clone() })
        }
        Some(_) => Ok(()),
    }
}

/// The exec spec of `container` with its resolved environment.
pub fn exec_spec(pod: &Pod, container: &Container, env: &Environment) -> Result<ExecSpec, HostProcessError> {
    check_container(pod, container)?;
    let lookup = |name: &str| env.get(name);
    let mut argv = expand_all(container.command.as_deref().unwrap_or_default(), lookup);
    argv.extend(expand_all(container.args.as_deref().unwrap_or_default(), lookup));
    Ok(ExecSpec { argv, env: env.to_env_strings(), working_dir: container.working_dir.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": containers}),
        )
        .expect("pod")
    }

    #[test]
    fn missing_command_is_explained() {
        let p = pod(
            json!({"containers": [{"name": "ok", "command": ["sleep", "1"]}, {"name": "nginx", "image": "nginx:1.27"}]}),
        );
        assert_eq!(
            check_pod(&p).unwrap_err().to_string(),
            "pod \"shop/web-0\": container \"nginx\" has no command: stead runs containers as host processes and \
             does not pull images (image \"nginx:1.27\" is recorded only), so set `command` to the program to run"
        );
    }

    #[test]
    fn init_containers_are_checked_first() {
        let p = pod(
            json!({"initContainers": [{"name": "setup", "command": []}], "containers": [{"name": "app"}]}),
        );
        assert!(
            matches!(check_pod(&p), Err(HostProcessError::NoCommand { container, .. }) if container == "setup")
        );
        let p = pod(json!({"containers": [{"name": "app", "command": [""]}]}));
        assert_eq!(
            check_pod(&p).unwrap_err().to_string(),
            "pod \"shop/web-0\": container \"app\" has an empty program name in command[0]"
        );
    }

    proptest::proptest! {
        /// A container is accepted exactly when its command has a non-empty program name.
        #[test]
        fn accepted_iff_command(cmd in proptest::option::of(proptest::collection::vec("[a-z]{0,3}", 0..3))) {
            let p = pod(json!({"containers": [{"name": "app", "command": cmd.clone()}]}));
            let ok = cmd.as_ref().and_then(|c| c.first()).is_some_and(|c| !c.is_empty());
            proptest::prop_assert_eq!(check_pod(&p).is_ok(), ok);
        }
    }

    #[test]
    fn exec_spec_expands() {
        let p = pod(json!({"containers": [{"name": "app", "command": ["sh", "-c"],
            "args": ["echo $(GREETING) $$(HOME) $(NOPE)"], "workingDir": "/tmp"}]}));
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let mut env = Environment::default();
        env.set("GREETING".into(), "hi".into());
        let spec = exec_spec(&p, c, &env).expect("spec");
        assert_eq!(spec.argv, ["sh", "-c", "echo hi $(HOME) $(NOPE)"]);
        assert_eq!(spec.env, ["GREETING=hi"]);
        assert_eq!(spec.working_dir.as_deref(), Some("/tmp"));
    }
}
