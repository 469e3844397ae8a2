//! Container images for the local engine (issue 15): names, registry settings, credentials, and
//! Kubernetes' rules for what an image's container runs.
//!
//! Code map (pure parts; no IO except the thin file readers named below):
//! - [`reference`]: `ImageRef`, image names normalized as the kubelet does.
//! - [`registries`]: containers-registries.conf(5) v2 parsed from text, merged with drop-ins,
//!   and resolved into the ordered endpoints to pull a reference from (`load` reads the files).
//! - [`auth`]: `Keyring`, credentials from auth.json, docker's config.json and pull Secrets,
//!   most specific key first (`add_file`, `from_node_files` read the files).
//! - [`container`]: `command`/`args` against `Entrypoint`/`Cmd`, env, working directory, the
//!   image's `User`, and `imagePullPolicy`'s default.
//!
//! Architecture invariant: the pure modules do no IO, have no clock and never panic on input.

pub mod auth;
pub mod container;
pub mod reference;
pub mod registries;
pub mod store;
pub mod unpack;
