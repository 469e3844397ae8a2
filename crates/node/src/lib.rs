//! stead's pod runtime ("node"): runs Kubernetes pods on one Linux machine.
//!
//! Architecture invariants:
//! - The input is a `k8s_openapi` `Pod`; the output is processes, files under the state directory,
//!   a `PodStatus` and logs. The crate knows nothing about StatefulSets, Deployments or Services:
//!   names, ordinals and claim names are decided by the caller.
//! - The kubelet's rules (`$(VAR)` expansion, env resolution, restart backoff, probe timing, container
//!   sequencing, pod status) are pure functions and state machines with no IO and no clock of their
//!   own: time comes in as arguments.
//! - Every syscall goes through [`syscall::Syscall`] and every netlink call through
//!   [`netlink::Netlink`]; the kubelet holds them as trait objects ([`kubelet::Host`]), and the
//!   sandbox and kubelet are tested with their recording fakes without root. Real-namespace tests
//!   run only as root (`tests/root_sandbox.rs`, `tests/root_kubelet.rs`). Outside `syscall.rs` and
//!   `netlink.rs` the crate names only nix's value types (`Errno`, `Signal`, `Pid`), checked by
//!   `tests/syscall_seam.rs`. File IO (`std::fs`: cgroup files, pod files, logs) and
//!   spawning processes (`tokio::process`) are not behind the seam.
//! - Nothing outside the state directory given by the caller is written, except kernel objects
//!   (namespaces, links, mounts) that the sandbox's teardown removes again, and `hostPath` volumes
//!   of type `*OrCreate`, which the pod explicitly asks for.
//! - Volumes of persistent claims (`<state>/volumes/<namespace>/<claim>`) are never deleted here.
//! - Nothing panics on input: every bad input is an error naming the pod, container, variable or
//!   volume, and the value.
//! - `unsafe` is allowed only in [`syscall`] by the design; it is not used so far.
//!
//! - A pod's mutable state belongs to its worker task in [`kubelet`]; container and probe tasks only
//!   send it events, and the [`kubelet::Kubelet`] handle reads a snapshot.
//! - Every process of a container is in the container's cgroups ([`cgroups`]) when the machine has
//!   any, so a kill leaves no orphan even when a process left its process group.
//!
//! Code map:
//! - the pod loop: [`kubelet`] ([`kubelet::Kubelet`], the engine's handle), [`prober`] (probe and hook
//!   transports), [`cgroups`] (limits, OOM, kill-all);
//! - kubelet rules: [`expand`], [`env`](mod@env) (with [`quantity`]), [`backoff`], [`probe`], [`lifecycle`],
//!   [`status`], [`host_process`], [`runtime_class`] (image or host process per container);
//! - images: [`images`] (pull policy, one pull per image at a time, progress) over `stead-image`;
//! - sandbox: [`preflight`], [`syscall`], [`netlink`], [`ipam`], [`pod_files`], [`volumes`], [`sandbox`];
//! - processes: [`init`] (the container init, run as `stead-container-init --spec <json>` or through
//!   [`init::init_main`] from another binary), [`process`]
//!   (spawn, log, wait, graceful stop of a process group);
//! - image containers: [`oci`] (bundle, overlay root file system, `config.json`, the runc driver);
//! - output: [`logs`].

pub mod backoff;
pub mod cgroups;
pub mod env;
pub mod expand;
mod fsutil;
pub mod host_process;
pub mod images;
pub mod init;
pub mod ipam;
pub mod kubelet;
pub mod lifecycle;
pub mod logs;
pub mod netlink;
pub mod oci;
pub mod pod_files;
pub mod preflight;
pub mod probe;
pub mod prober;
pub mod process;
pub mod runtime_class;
pub use stead_quantity as quantity;
pub mod sandbox;
pub mod status;
pub mod syscall;
pub mod volumes;
