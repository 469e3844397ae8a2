//! Container images for the local engine (issue 15): names, registry settings, credentials,
//! pulling over the OCI distribution API, the content-addressed store, layer unpacking, and
//! Kubernetes' rules for what an image's container runs.
//!
//! Code map:
//! - [`reference`](mod@reference): `ImageRef`, image names normalized as the kubelet does (`alpine:3.20` is
//!   `docker.io/library/alpine:3.20`). Pure.
//! - [`registries`]: containers-registries.conf(5) v2 parsed from text, merged with drop-ins,
//!   and resolved into the ordered endpoints to pull a reference from (mirrors, then the
//!   location), or blocked. Pure, except `load` which reads the files.
//! - [`auth`]: `Keyring`, credentials from auth.json, docker's config.json and pull Secrets,
//!   most specific key first. Pure, except the file readers.
//! - [`container`]: `command`/`args` against `Entrypoint`/`Cmd`, env, working directory, the
//!   image's `User`, and `imagePullPolicy`'s default. Pure.
//! - [`store`]: `Store`, the content-addressed directory (`<state>/images/`): verified blobs,
//!   resumable partial downloads, unpacked layers by diff id, an index of pulled references.
//! - [`unpack`]: one layer (tar, gzip, zstd) into its own directory in overlayfs' form
//!   (whiteouts as 0/0 character devices, opaque directories as `trusted.overlay.opaque=y`).
//! - [`manage`]: what `stead image ls|inspect|rm|prune` show and do: listing with sizes,
//!   image details, removing references and the content only they used, pruning.
//! - [`archive`]: `docker save` archives and OCI image layouts (tar, gzip, zstd) loaded into the
//!   store, every file verified (`stead image load`).
//! - `test_util` (feature `test-util`): a loopback registry and images built from bytes, for
//!   other crates' tests.
//! - [`pull`]: `Puller::pull(reference, policy, keyring, progress) -> Image`, with oci-client:
//!   endpoints from registries.conf, credentials tried in turn, image indexes resolved to the
//!   host's platform, concurrent resumable layer downloads, progress events.
//!
//! Architecture invariants:
//! - The pure modules do no IO, have no clock and never panic on input; their errors name the
//!   reference, file or key and the value.
//! - Nothing in the store is trusted by name alone: a blob is renamed into `blobs/` only after
//!   its digest is checked, and a layer into `layers/` only after its diff id matches the image
//!   config. A partial or interrupted pull leaves only `partial/` files (resumed) and `.tmp-`
//!   directories (removed on open).
//! - Unpacking never follows a symlink and never writes outside the layer's directory.
//! - This crate knows nothing of pods, the engine or the CLI: it turns a reference into
//!   unpacked layers and a config. Stacking them (overlayfs), the OCI runtime bundle and the
//!   kubelet's waiting reasons belong to the node.

pub mod archive;
pub mod auth;
pub mod container;
pub mod manage;
pub mod pull;
pub mod reference;
pub mod registries;
pub mod store;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod unpack;
