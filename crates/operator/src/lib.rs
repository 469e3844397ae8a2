//! The Kubernetes operator: turns StatefulServices into the objects `stead_render` produces and
//! keeps them so. Shaped like kube-rs's controller-rs.
//!
//! Code map:
//! - `controller`: [`Context`], [`reconcile`], [`error_policy`], [`run_controller`] (the kube
//!   `Controller`: StatefulServices, `.owns()` the child kinds, `.watches()` StatefulStores).
//! - `children`: the child kinds, desired children from render, the live-vs-desired check.
//! - status and conditions come from `stead_render::plan_service`, as in the local engine.
//! - `metrics`: prometheus-client metrics; [`server`]: `/metrics`, `/healthz`, `/readyz` (axum).
//! - [`leader`]: leader election on a coordination.k8s.io Lease.
//! - `run`: start-up checks, admin server, election, controller, SIGTERM ([`run()`]).
//! - [`install`]: the install plan, `install`/`uninstall` by SSA in dependency order, the kustomize
//!   folder (`deploy/`).
//! - `error`: the reconciler's error, with a bounded metric label.
//!
//! Architecture invariant: children are built only by `stead_render`; this crate never edits a
//! rendered object before applying it (tested equal to `render_all`'s output).
//!
//! Architecture invariant: every write is server-side apply under [`FIELD_MANAGER`], forced
//! (install uses its own manager). An unchanged service costs reads and no write: children are
//! applied only when the server's copy lacks a rendered field; status only when it changed.
//!
//! Architecture invariant: Events only on condition transitions; a missing StatefulStore gives one
//! status write and one Event, then silence (no requeue, no log line) until the store's watch
//! event. Failures back off per object (1 s doubling to 5 min), never a tight loop.
//!
//! Architecture invariant: no finalizer. Children carry a controller owner reference and the
//! garbage collector removes them; PVC retention is the StatefulSet's own
//! `persistentVolumeClaimRetentionPolicy`, which Kubernetes applies. Pruning deletes only objects
//! with the selector label whose controller owner uid is the service's.

mod children;
mod controller;
mod error;
pub mod install;
pub mod leader;
mod metrics;
mod run;
pub mod server;

pub use children::{ChildKind, child_kinds, contains};
pub use controller::{
    BASE_BACKOFF, Context, FIELD_MANAGER, MAX_BACKOFF, RESYNC, backoff, error_policy, reconcile,
    run as run_controller, services_naming,
};
pub use error::Error;
/// The client every entry point takes (re-exported so callers need no kube dependency).
pub use kube::Client;
pub use metrics::Metrics;
pub use run::{RunConfig, RunError, run};
/// The status rules are render's, shared with the local engine.
pub use stead_render::{Transition, WorkloadState};
