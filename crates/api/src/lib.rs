//! stead's resource model.
//!
//! - [`types`]: `StatefulService` and `StatefulStore` (`cloudstate.io/v1alpha1`).
//! - [`manifest`]: the kinds stead reads, as one enum.
//! - [`load`]: YAML/JSON into manifests, with every structural problem located.
//! - [`validate`]: Kubernetes' rules and ours, across the loaded set.
//!
//! Architecture invariant: this crate does no IO beyond reading the files and the reader its
//! caller names ([`load::load_paths`], [`load::load_reader`]); no network, no writes, no clocks.

pub mod load;
pub mod manifest;
pub mod path;
pub mod problem;
pub mod schema;
pub mod source;
pub mod suggest;
pub mod types;
pub mod validate;
pub mod yaml;

pub use load::{Document, Loaded, load_paths, load_source, load_str};
pub use manifest::{KINDS, KindInfo, Manifest};
pub use path::FieldPath;
pub use problem::{Problem, Severity};
pub use source::{Loc, SourceFile};
pub use validate::validate;
