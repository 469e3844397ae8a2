//! The OCI runtime `config.json` of one container of a pod (pure), and the process it runs.
//!
//! - [`resolve_process`]: argv (the container's `command`/`args`, `$(VAR)`-expanded, against the
//!   image's `Entrypoint`/`Cmd`), env (`HOSTNAME`, the image's `Env`, the container's variables,
//!   a default `PATH`), cwd, and the user from `securityContext` and the image's `User`, checked
//!   against `runAsNonRoot` with the kubelet's messages.
//! - [`runtime_spec`]: the [`Spec`]: the pod's network, UTS and IPC namespaces joined by path, new
//!   mount and PID namespaces; the standard mounts, then the pod's files and volumes as binds; the
//!   default capability set of containerd (`capabilities.add`/`drop` applied by its rule);
//!   runc's masked and read-only paths; `readOnlyRootFilesystem`, `allowPrivilegeEscalation:
//!   false` as `noNewPrivileges`, `privileged`, seccomp `RuntimeDefault` ([`super::seccomp`]), the
//!   pod's `sysctls`, the cgroups path and memory limit.
//!
//! The hostname is not in the spec: the sandbox set it in the pod's UTS namespace, which every
//! container joins.

use super::OciError;
use super::user::{ResolvedUser, UserDb, resolve_image_user};
use crate::env::Environment;
use crate::expand::expand_all;
use crate::sandbox::MountSpec;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, Mount, Process, Root, Spec, User,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use stead_image::container::{Id, ImageUser};

/// The `PATH` given when neither the image nor the container sets one (containerd's).
pub const DEFAULT_PATH: &str = crate::init::DEFAULT_PATH;

/// The default capability set of containerd's CRI plugin (docker's set).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// What a container's process runs, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    /// `NAME=value` strings.
    pub env: Vec<String>,
    /// Absolute, inside the container.
    pub cwd: String,
    pub user: ResolvedUser,
}

/// The pod sandbox's namespaces a container joins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNamespaces {
    pub net: PathBuf,
    pub uts: PathBuf,
    /// `None`: the container gets an IPC namespace of its own.
    pub ipc: Option<PathBuf>,
}

impl PodNamespaces {
    /// The namespaces of a planned sandbox.
    pub fn of(plan: &crate::sandbox::SandboxPlan) -> PodNamespaces {
        PodNamespaces {
            net: plan.netns_path.clone(),
            uts: plan.uts_path.clone(),
            ipc: Some(plan.ipc_path.clone()),
        }
    }
}

/// Everything [`runtime_spec`] needs.
#[derive(Clone, Copy, Debug)]
pub struct SpecInputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub process: &'a ProcessSpec,
    pub namespaces: &'a PodNamespaces,
    /// The mounted root file system (absolute).
    pub rootfs: &'a Path,
    /// The pod's `/etc` files and volumes ([`crate::sandbox::container_mounts`]).
    pub mounts: &'a [MountSpec],
    /// `/stead/<pod uid>/<container>`, relative to each cgroup hierarchy's root.
    pub cgroups_path: Option<&'a str>,
    pub memory_limit: Option<u64>,
    /// The host's devices, given to a privileged container ([`super::host_devices`]).
    pub host_devices: &'a [LinuxDevice],
    /// The capabilities this node can give ([`super::host_capabilities`]).
    pub host_capabilities: &'a Capabilities,
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The container's and the pod's security contexts, the container's winning field by field.
struct Security<'a> {
    pod: Option<&'a PodSecurityContext>,
    container: Option<&'a SecurityContext>,
}

impl<'a> Security<'a> {
    fn of(pod: &'a Pod, container: &'a Container) -> Self {
        Security {
            pod: pod.spec.as_ref().and_then(|s| s.security_context.as_ref()),
            container: container.security_context.as_ref(),
        }
    }
    fn run_as_user(&self) -> Option<i64> {
        self.container.and_then(|c| c.run_as_user).or(self.pod.and_then(|p| p.run_as_user))
    }
    fn run_as_group(&self) -> Option<i64> {
        self.container.and_then(|c| c.run_as_group).or(self.pod.and_then(|p| p.run_as_group))
    }
    fn run_as_non_root(&self) -> bool {
        self.container.and_then(|c| c.run_as_non_root).or(self.pod.and_then(|p| p.run_as_non_root))
            == Some(true)
    }
    fn seccomp(&self) -> Option<(&str, Option<&str>)> {
        let c = self.container.and_then(|c| c.seccomp_profile.as_ref());
        c.or(self.pod.and_then(|p| p.seccomp_profile.as_ref()))
            .map(|p| (p.type_.as_str(), p.localhost_profile.as_deref()))
    }
    fn privileged(&self) -> bool {
        self.container.and_then(|c| c.privileged) == Some(true)
    }
}

fn id_u32(pod: &str, container: &str, field: &str, v: i64) -> Result<u32, OciError> {
    u32::try_from(v).map_err(|_| OciError::Invalid {
        pod: pod.to_owned(),
        container: container.to_owned(),
        problem: format!("securityContext.{field} {v} is not a valid id"),
    })
}

/// Resolves what `container` runs: its argv, env, cwd and user, from the image's `config` and the
/// container's resolved environment `env`, with names looked up in `users` (the container's root
/// file system's `/etc/passwd` and `/etc/group`). `hostname` becomes `HOSTNAME`.
pub fn resolve_process(
    pod: &Pod,
    container: &Container,
    config: &ImageConfiguration,
    env: &Environment,
    users: &UserDb,
    hostname: &str,
) -> Result<ProcessSpec, OciError> {
    let p = pod_ref(pod);
    let c = container.name.as_str();
    let invalid = |problem: String| OciError::Invalid { pod: p.clone(), container: c.to_owned(), problem };
    let lookup = |name: &str| env.get(name);
    let command = expand_all(container.command.as_deref().unwrap_or_default(), lookup);
    let args = expand_all(container.args.as_deref().unwrap_or_default(), lookup);
    let image = container.image.as_deref().unwrap_or_default();
    let argv = stead_image::container::effective_command_for(image, config, &command, &args)
        .map_err(|e| invalid(e.to_string()))?;
    if argv[0].is_empty() {
        return Err(invalid("the program name (argv[0]) is empty".into()));
    }

    let image_cfg = config.config().as_ref();
    let image_env = image_cfg.and_then(|c| c.env().clone()).unwrap_or_default();
    let mut vars = vec![("HOSTNAME".to_owned(), hostname.to_owned())];
    vars.extend(env.vars().iter().cloned());
    let mut merged = stead_image::container::merge_env(&image_env, &vars);
    if !merged.iter().any(|(n, _)| n == "PATH") {
        merged.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    let env = merged.into_iter().map(|(n, v)| format!("{n}={v}")).collect();

    let cwd = stead_image::container::working_dir(container.working_dir.as_deref(), config);
    if !cwd.starts_with('/') {
        return Err(invalid(format!("workingDir {cwd:?} must be an absolute path")));
    }

    let sec = Security::of(pod, container);
    let image_user_text = image_cfg.and_then(|c| c.user().clone()).unwrap_or_default();
    let image_user = ImageUser::parse(&image_user_text).map_err(|e| invalid(e.to_string()))?;
    let run_as_user = sec.run_as_user().map(|u| id_u32(&p, c, "runAsUser", u)).transpose()?;
    let run_as_group = sec.run_as_group().map(|g| id_u32(&p, c, "runAsGroup", g)).transpose()?;
    if sec.run_as_non_root() {
        // The kubelet's checks and messages (verifyRunAsNonRoot).
        match (run_as_user, image_user.as_ref().map(|u| &u.user)) {
            (Some(0), _) => {
                return Err(OciError::NonRoot(format!(
                    "container's runAsUser breaks non-root policy (pod: {p:?}, container: {c})"
                )));
            }
            (Some(_), _) => {}
            (None, Some(Id::Name(name))) => {
                return Err(OciError::NonRoot(format!(
                    "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is \
                     non-root (pod: {p:?}, container: {c})"
                )));
            }
            (None, Some(Id::Number(0)) | None) => {
                return Err(OciError::NonRoot(format!(
                    "container has runAsNonRoot and image will run as root (pod: {p:?}, container: {c})"
                )));
            }
            (None, Some(Id::Number(_))) => {}
        }
    }
    let effective = match run_as_user {
        // runAsUser replaces the image's user and group (containerd's WithUserID).
        Some(uid) => ImageUser { user: Id::Number(uid), group: None },
        None => image_user.unwrap_or(ImageUser { user: Id::Number(0), group: None }),
    };
    let mut user = resolve_image_user(Some(&effective), &users.passwd, &users.groups)
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(gid) = run_as_group {
        user.gid = gid;
    }
    let pod_sec = sec.pod;
    let extra = pod_sec
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(pod_sec.and_then(|s| s.fs_group));
    for g in extra {
        user.additional_gids.push(id_u32(&p, c, "supplementalGroups/fsGroup", g)?);
    }
    user.additional_gids.sort_unstable();
    user.additional_gids.dedup();
    Ok(ProcessSpec { argv, env, cwd, user })
}

fn capability(pod: &str, container: &str, name: &str) -> Result<Capability, OciError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| OciError::Invalid {
        pod: pod.to_owned(),
        container: container.to_owned(),
        problem: format!("unknown capability {name:?}"),
    })
}

/// The capabilities in the kernel's bit order (`CAP_CHOWN` is bit 0).
const KERNEL_ORDER: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities whose bits are set in `mask` (as in `CapBnd:` of `/proc/<pid>/status`).
pub fn capabilities_from_mask(mask: u64) -> Capabilities {
    KERNEL_ORDER
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .filter_map(|(_, n)| capability("", "", n).ok())
        .collect()
}

/// Every capability the spec knows.
pub fn all_capabilities() -> Capabilities {
    capabilities_from_mask(u64::MAX)
}

/// The container's capabilities: the default set, or every one of `host` (the capabilities this
/// node can give, [`super::host_capabilities`]) when privileged; then containerd's rule for
/// `add`/`drop`: `add: [ALL]` starts from `host`, `drop: [ALL]` from none, named drops are
/// removed, named adds added. What `host` lacks is left out (the runtime could not give it).
pub fn capabilities(pod: &Pod, container: &Container, host: &Capabilities) -> Result<Capabilities, OciError> {
    let (p, c) = (pod_ref(pod), container.name.as_str());
    if Security::of(pod, container).privileged() {
        return Ok(host.clone());
    }
    let caps = container.security_context.as_ref().and_then(|s| s.capabilities.as_ref());
    let add = caps.and_then(|c| c.add.clone()).unwrap_or_default();
    let drop = caps.and_then(|c| c.drop.clone()).unwrap_or_default();
    let is_all = |n: &String| n.eq_ignore_ascii_case("ALL");
    let mut set: Capabilities =
        if add.iter().any(is_all) { all_capabilities() } else { DEFAULT_CAPABILITIES.into_iter().collect() };
    if drop.iter().any(is_all) {
        set.clear();
    }
    for d in drop.iter().filter(|n| !is_all(n)) {
        set.remove(&capability(&p, c, d)?);
    }
    for a in add.iter().filter(|n| !is_all(n)) {
        set.insert(capability(&p, c, a)?);
    }
    set.retain(|cap| host.contains(cap));
    Ok(set)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| (*o).to_owned()).collect()));
    m
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_owned));
    ns
}

/// The runtime spec of one container (pure).
pub fn runtime_spec(inputs: &SpecInputs<'_>) -> Result<Spec, OciError> {
    let SpecInputs { pod, container, process, namespaces, rootfs, mounts, .. } = *inputs;
    let (p, c) = (pod_ref(pod), container.name.as_str());
    let sec = Security::of(pod, container);
    let privileged = sec.privileged();
    let csec = container.security_context.as_ref();

    let mut root = Root::default();
    root.set_path(rootfs.to_owned());
    root.set_readonly(Some(csec.and_then(|s| s.read_only_root_filesystem) == Some(true)));

    let caps = capabilities(pod, container, inputs.host_capabilities)?;
    let mut linux_caps = LinuxCapabilities::default();
    linux_caps.set_bounding(Some(caps.clone()));
    linux_caps.set_effective(Some(caps.clone()));
    linux_caps.set_permitted(Some(caps.clone()));
    // Inheritable and ambient stay empty (CVE-2022-24769).
    linux_caps.set_inheritable(Some(Capabilities::new()));
    linux_caps.set_ambient(Some(Capabilities::new()));

    let mut user = User::default();
    user.set_uid(process.user.uid);
    user.set_gid(process.user.gid);
    user.set_additional_gids(Some(process.user.additional_gids.clone()).filter(|g| !g.is_empty()));

    let mut proc = Process::default();
    proc.set_terminal(Some(false));
    proc.set_user(user);
    proc.set_args(Some(process.argv.clone()));
    proc.set_env(Some(process.env.clone()));
    proc.set_cwd(process.cwd.clone().into());
    proc.set_capabilities(Some(linux_caps));
    proc.set_rlimits(None);
    let no_new_privs = !privileged && csec.and_then(|s| s.allow_privilege_escalation) == Some(false);
    proc.set_no_new_privileges(Some(no_new_privs));

    let sys_mode = if privileged { "rw" } else { "ro" };
    let mut all_mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", sys_mode]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", sys_mode]),
    ];
    for m in mounts {
        let target = m.target.to_str().ok_or_else(|| OciError::Invalid {
            pod: p.clone(),
            container: c.to_owned(),
            problem: format!("mount target {} is not UTF-8", m.target.display()),
        })?;
        let mut b = Mount::default();
        b.set_destination(target.into());
        b.set_typ(Some("bind".into()));
        b.set_source(Some(m.source.clone()));
        let mode = if m.readonly { "ro" } else { "rw" };
        b.set_options(Some(vec!["rbind".into(), "rprivate".into(), mode.into()]));
        all_mounts.push(b);
    }

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_namespaces(Some(vec![
        namespace(LinuxNamespaceType::Pid, None),
        namespace(LinuxNamespaceType::Network, Some(&namespaces.net)),
        namespace(LinuxNamespaceType::Ipc, namespaces.ipc.as_deref()),
        namespace(LinuxNamespaceType::Uts, Some(&namespaces.uts)),
        namespace(LinuxNamespaceType::Mount, None),
    ]));
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        linux.set_devices(Some(inputs.host_devices.to_vec()).filter(|d| !d.is_empty()));
    } else {
        linux.set_masked_paths(Some(oci_spec::runtime::get_default_maskedpaths()));
        linux.set_readonly_paths(Some(oci_spec::runtime::get_default_readonly_paths()));
        linux.set_devices(None);
    }
    let mut resources = LinuxResources::default();
    if privileged {
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true);
        all.set_access(Some("rwm".into()));
        resources.set_devices(Some(vec![all]));
    }
    if let Some(limit) = inputs.memory_limit {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(i64::try_from(limit).unwrap_or(i64::MAX)));
        resources.set_memory(Some(mem));
    }
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(inputs.cgroups_path.map(PathBuf::from));
    let sysctls: HashMap<String, String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    linux.set_sysctl(Some(sysctls).filter(|s| !s.is_empty()));
    let seccomp = match sec.seccomp() {
        _ if privileged => None,
        None | Some(("Unconfined", _)) => None,
        Some(("RuntimeDefault", _)) => Some(super::seccomp::runtime_default(&caps)),
        Some((other, profile)) => {
            return Err(OciError::Invalid {
                pod: p,
                container: c.to_owned(),
                problem: format!(
                    "seccompProfile type {other:?}{} is not supported here (RuntimeDefault and Unconfined are)",
                    profile.map(|f| format!(" ({f})")).unwrap_or_default()
                ),
            });
        }
    };
    linux.set_seccomp(seccomp);

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    spec.set_root(Some(root));
    spec.set_process(Some(proc));
    spec.set_hostname(None);
    spec.set_mounts(Some(all_mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations(Some(HashMap::from([
        ("io.kubernetes.pod.namespace".to_owned(), pod.metadata.namespace.clone().unwrap_or_default()),
        ("io.kubernetes.pod.name".to_owned(), pod.metadata.name.clone().unwrap_or_default()),
        ("io.kubernetes.pod.uid".to_owned(), pod.metadata.uid.clone().unwrap_or_default()),
        ("io.kubernetes.container.name".to_owned(), c.to_owned()),
    ])));
    Ok(spec)
}

#[cfg(test)]
mod tests;
