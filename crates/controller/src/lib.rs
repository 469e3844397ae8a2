//! Pure planners: what Kubernetes' StatefulSet, Deployment, ReplicaSet and endpoint controllers
//! would do next, as data. The engine's loops feed them observed objects and the time, execute the
//! returned actions in order, write the returned status, and plan again after the next watch event
//! or `requeue_after`.
//!
//! Code map:
//! - `plan.rs`: [`plan::Plan`] (actions, status, requeue, what it waits on) and [`plan::Action`],
//!   the one vocabulary of side effects.
//! - `statefulset/`: the StatefulSet planner. `mod.rs` one sync (slots, condemned, OrderedReady /
//!   Parallel, rolling update with partition and maxUnavailable, OnDelete); `revisions.rs`
//!   ControllerRevisions (hash names, reuse on rollback, history); `claims.rs` PVCs (names,
//!   sticky creation, retention policy as owner references, resizing); `pod.rs` the pod for an
//!   ordinal; `status.rs` status arithmetic and the Progressing condition.
//! - `deployment.rs`, `replicaset.rs`: Deployments (ReplicaSets by template hash, RollingUpdate,
//!   Recreate, revisions, history, conditions) and ReplicaSets (pods `<rs>-<5 chars>`).
//! - `endpoints.rs`: EndpointSlices and Endpoints for a Service; `dns.rs`: the DNS records a
//!   Service implies, as plain data for the DNS server; `services.rs`: Service addresses
//!   (virtual IPs, node ports) and the listeners of the engine's userspace forwarder.
//! - `pods.rs` pod predicates (Ready, available, terminating); `meta.rs` owner references,
//!   selectors, int-or-percent, quantities; `hash.rs` FNV and Kubernetes' safe encoding.
//!
//! Architecture invariant: pure. No IO, no clock (time is the `now` argument), no randomness
//! (generated names derive from hashes), no async. Same inputs, same plan.
//!
//! Architecture invariant: never a second pod with one identity. A StatefulSet plan never creates
//! a pod whose name any observed pod holds, of any owner, terminating or not (property tested);
//! a ReplicaSet plan never picks a taken name.
//!
//! Architecture invariant: volumes are deleted only by the retention policy, and only through
//! owner references the garbage collector acts on; no action deletes a claim (property tested).
//!
//! Architecture invariant: no panics on any input; bad input is a `thiserror` error naming the
//! object and the value.
//!
//! Differences from Kubernetes, on purpose (each documented where it is done): a Progressing
//! condition with a progress deadline on StatefulSets; replacing a not-Ready pod of a revision that
//! is neither current nor update (Kubernetes #67250); larger claim templates resize claims;
//! OnDelete promotes `currentRevision` (upstream from 1.36); generated names are deterministic.

pub mod deployment;
pub mod dns;
pub mod endpoints;
mod hash;
pub mod meta;
pub mod plan;
pub mod pods;
pub mod replicaset;
pub mod services;
pub mod statefulset;

pub use hash::{canonical_json, fnv1_32, fnv1a_32, safe_encode};
pub use plan::{Action, DeleteReason, Plan};
