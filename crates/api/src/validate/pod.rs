//! Pod-level rules: containers, ports, volumes, mounts, probes.

use super::{Findings, names};
use crate::path::FieldPath;
use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, Volume};
use std::collections::{BTreeSet, HashMap};

/// Where a container list sits and what it is.
pub struct ContainerList<'a> {
    pub path: FieldPath,
    pub containers: Vec<&'a Container>,
    pub init: bool,
    /// The first container's name may be omitted (a StatefulService's user container).
    pub first_name_optional: bool,
}

impl<'a> ContainerList<'a> {
    /// A pod's init containers and app containers, which share one name and port space.
    pub fn pod(
        path: &FieldPath,
        init: Vec<&'a Container>,
        app: Vec<&'a Container>,
        first_name_optional: bool,
    ) -> [Self; 2] {
        [
            Self {
                path: path.key("initContainers"),
                containers: init,
                init: true,
                first_name_optional: false,
            },
            Self { path: path.key("containers"), containers: app, init: false, first_name_optional },
        ]
    }
}

/// Checks a whole pod spec.
pub fn pod_spec(spec: &PodSpec, path: &FieldPath, f: &mut Findings) {
    let volume_names = volumes(spec.volumes.as_deref().unwrap_or_default(), &path.key("volumes"), f);
    let lists = ContainerList::pod(
        path,
        spec.init_containers.iter().flatten().collect(),
        spec.containers.iter().collect(),
        false,
    );
    if spec.containers.is_empty() {
        f.error(path.key("containers"), "a pod needs at least one container");
    }
    containers(&lists, &volume_names, f);
    if let Some(policy) = spec.restart_policy.as_deref() {
        f.enumeration(path.key("restartPolicy"), "restartPolicy", policy, &["Always", "OnFailure", "Never"]);
    }
    if let Some(grace) = spec.termination_grace_period_seconds
        && grace < 0
    {
        f.error(path.key("terminationGracePeriodSeconds"), format!("must not be negative (is {grace})"));
    }
}

/// Checks volumes; returns their names.
pub fn volumes(volumes: &[Volume], path: &FieldPath, f: &mut Findings) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = path.index(i).key("name");
        f.check_name(p.clone(), "volume name", &v.name, names::dns1123_label);
        if !seen.insert(v.name.clone()) {
            f.error(p, format!("duplicate volume name {:?}", v.name));
        }
        super::volume::volume(v, &path.index(i), f);
    }
    seen
}

/// Checks container lists that share one pod (so one port space and one name space).
pub fn containers(lists: &[ContainerList<'_>], volume_names: &BTreeSet<String>, f: &mut Findings) {
    let mut names_seen: HashMap<String, FieldPath> = HashMap::new();
    let mut ports_seen: HashMap<(i32, String), FieldPath> = HashMap::new();
    for list in lists {
        for (i, c) in list.containers.iter().enumerate() {
            let path = list.path.index(i);
            if c.name.is_empty() {
                if !(list.first_name_optional && i == 0) {
                    f.error(path.key("name"), "missing required field \"name\"");
                }
            } else {
                f.check_name(path.key("name"), "container name", &c.name, names::dns1123_label);
                if let Some(first) = names_seen.insert(c.name.clone(), path.key("name")) {
                    f.error(path.key("name"), format!("duplicate container name {:?}", c.name))
                        .with_help(format!("also used at {first}"));
                }
            }
            match c.image.as_deref() {
                None | Some("") => {
                    f.error(path.key("image"), "missing required field \"image\"")
                        .with_help("every container names an image; stead records it and, on this machine, runs `command` on the host");
                }
                Some(image) if image.chars().any(char::is_whitespace) => {
                    f.error(path.key("image"), format!("invalid image {image:?}: must not contain spaces"));
                }
                Some(_) => {}
            }
            ports(c, &path, list.init, &mut ports_seen, f);
            if let Some(r) = &c.resources {
                let p = path.key("resources");
                super::resources::requirements(f, &p, r.requests.as_ref(), r.limits.as_ref());
            }
            env(c, &path, f);
            mounts(c, &path, volume_names, f);
            for (field, probe) in [
                ("livenessProbe", &c.liveness_probe),
                ("readinessProbe", &c.readiness_probe),
                ("startupProbe", &c.startup_probe),
            ] {
                if let Some(probe) = probe {
                    self::probe(probe, &path.key(field), f);
                    if list.init {
                        f.error(path.key(field), format!("init containers may not have a {field}"));
                    }
                }
            }
            if let Some(policy) = c.image_pull_policy.as_deref() {
                f.enumeration(
                    path.key("imagePullPolicy"),
                    "imagePullPolicy",
                    policy,
                    &["Always", "IfNotPresent", "Never"],
                );
            }
        }
    }
}

fn ports(
    c: &Container,
    path: &FieldPath,
    init: bool,
    seen: &mut HashMap<(i32, String), FieldPath>,
    f: &mut Findings,
) {
    let mut port_names = BTreeSet::new();
    for (j, port) in c.ports.iter().flatten().enumerate() {
        let p = path.key("ports").index(j);
        if !(1..=65535).contains(&port.container_port) {
            f.error(
                p.key("containerPort"),
                format!("invalid port {}: must be between 1 and 65535", port.container_port),
            );
        }
        if let Some(host_port) = port.host_port
            && !(0..=65535).contains(&host_port)
        {
            f.error(p.key("hostPort"), format!("invalid port {host_port}: must be between 1 and 65535"));
        }
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        f.enumeration(p.key("protocol"), "protocol", &protocol, &["TCP", "UDP", "SCTP"]);
        if let Some(name) = port.name.as_deref() {
            f.check_name(p.key("name"), "port name", name, names::port_name);
            if !port_names.insert(name.to_owned()) {
                f.error(p.key("name"), format!("duplicate port name {name:?}"));
            }
        }
        if !init
            && let Some(first) = seen.insert((port.container_port, protocol.clone()), p.key("containerPort"))
        {
            f.error(
                p.key("containerPort"),
                format!(
                    "duplicate port {}/{protocol}: containers of a pod share one network",
                    port.container_port
                ),
            )
            .with_help(format!("also declared at {first}"));
        }
    }
}

fn env(c: &Container, path: &FieldPath, f: &mut Findings) {
    for (j, var) in c.env.iter().flatten().enumerate() {
        let p = path.key("env").index(j);
        let valid = !var.name.is_empty()
            && !var.name.starts_with(|c: char| c.is_ascii_digit())
            && !var.name.contains('=');
        if !valid {
            f.error(p.key("name"), format!("invalid environment variable name {:?}: must not be empty, start with a digit or contain '='", var.name));
        }
        if var.value.is_some() && var.value_from.is_some() {
            f.error(p.clone(), format!("{:?} sets both value and valueFrom", var.name));
        }
        if let Some(from) = &var.value_from {
            let sources = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
                from.file_key_ref.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                f.error(p.key("valueFrom"), "valueFrom needs exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef, fileKeyRef");
            }
        }
    }
}

fn mounts(c: &Container, path: &FieldPath, volume_names: &BTreeSet<String>, f: &mut Findings) {
    let mut paths = BTreeSet::new();
    for (j, mount) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.key("volumeMounts").index(j);
        super::volume::mount(mount, &p, f);
        if !volume_names.contains(&mount.name) {
            let help = crate::suggest::did_you_mean(&mount.name, volume_names.iter().map(String::as_str));
            let finding = f.error(p.key("name"), format!("volume {:?} is not declared", mount.name));
            finding.help = help.or_else(|| Some("declare it under volumes (or volumeClaimTemplates)".into()));
        }
        if !mount.mount_path.starts_with('/') {
            f.error(
                p.key("mountPath"),
                format!("invalid mountPath {:?}: must be an absolute path", mount.mount_path),
            );
        } else if !paths.insert(mount.mount_path.trim_end_matches('/').to_owned()) {
            f.error(p.key("mountPath"), format!("duplicate mountPath {:?}", mount.mount_path));
        }
    }
}

fn probe(probe: &Probe, path: &FieldPath, f: &mut Findings) {
    let handlers =
        [probe.exec.is_some(), probe.http_get.is_some(), probe.tcp_socket.is_some(), probe.grpc.is_some()];
    if handlers.iter().filter(|h| **h).count() != 1 {
        f.error(path.clone(), "a probe needs exactly one of exec, httpGet, tcpSocket, grpc");
    }
    for (field, value, min) in [
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("periodSeconds", probe.period_seconds, 1),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("successThreshold", probe.success_threshold, 1),
        ("failureThreshold", probe.failure_threshold, 1),
    ] {
        if let Some(v) = value
            && v < min
        {
            f.error(path.key(field), format!("{field} must be at least {min} (is {v})"));
        }
    }
}
