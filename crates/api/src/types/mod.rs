//! The resource types: our two CustomResources and the core kinds we accept.

pub mod condition;
pub mod container;
pub mod stateful_service;
pub mod stateful_store;

pub use condition::{ConditionStatus, condition_types};
pub use container::ServiceContainer;
pub use stateful_service::*;
pub use stateful_store::*;

/// The API group of stead's (and CloudState's) resources.
pub const GROUP: &str = "cloudstate.io";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "cloudstate.io/v1alpha1";
