//! stead's local engine: the object store, the controller loops that run StatefulServices,
//! StatefulSets, Deployments and Services on one machine, and the daemon's API.
//!
//! Code map:
//! - [`store`]: every object with Kubernetes metadata semantics (uid, resourceVersion,
//!   generation, finalizers, graceful deletion), persisted in redb, with a watch stream;
//! - [`gc`]: the garbage collector (owner references; background, foreground, orphan);
//! - [`kinds`]: the kinds served and the words kubectl users type for them;
//! - [`controllers`]: the steps of the loop (StatefulService through `stead_render`, pods);
//! - [`runtime`]: the pod runtime as a trait (the real one is `stead_node`'s kubelet; a fake for
//!   tests);
//! - [`engine`]: the loop;
//! - [`events`]: core/v1 Events the controllers record (deduplicated, capped, expiring);
//! - [`services`]: Service traffic: virtual IPs from the top of the pod CIDR on the bridge, node
//!   ports on 127.0.0.1, and a userspace TCP forwarder to ready endpoints (round robin);
//! - [`daemon`]: the store behind HTTP/JSON on a unix socket (`stead daemon` and its client verbs);
//! - [`rollout`]: `scale`, `rollout status|history|undo|restart` and `wait --for`, as kubectl does
//!   them (pure rules over objects, plus store-facing verbs that retry on conflict).
//!
//! Architecture invariant: the engine runs exactly the objects `stead_render` produces; local
//! differences (host-process commands for images) are applied to the copy handed to the runtime,
//! never to the stored object.
//!
//! Architecture invariant: a pod leaves the store only after the runtime stopped it.

pub mod controllers;
pub mod daemon;
pub mod engine;
pub mod events;
pub mod gc;
pub mod kinds;
pub mod local;
pub mod node_runtime;
pub mod rollout;
pub mod runtime;
pub mod services;
pub mod store;

pub use engine::{Engine, EngineConfig};
pub use kinds::Kind;
pub use store::{DeleteOptions, EventType, ObjectKey, Propagation, Store, StoreError, WatchEvent};
