//! What `stead image ls|inspect|rm|prune` show and do, over the store's index.
//!
//! - [`list`]: one row per tagged reference (a `name@digest` reference recorded alongside a tag
//!   of the same image is not repeated), with the image id (the config digest, as docker), the
//!   config's creation time and the unpacked size of its layers.
//! - [`inspect`]: the reference, its manifest, config and layers, for JSON output.
//! - [`remove`]: forgets references (the last tag of an image takes the image's digest
//!   references with it, as `docker rmi`), then deletes the blobs and layers that no remaining
//!   reference uses.
//! - [`prune`]: deletes every blob, layer and partial download no reference uses.
//!
//! Images in use by pods are the engine's to know: this module sees only the store. Removing
//! or pruning an image a running pod uses is kept from happening by the caller (the CLI refuses
//! while the engine holds the state directory).

use std::collections::BTreeSet;

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::Serialize;
use thiserror::Error;

use crate::reference::{ImageRef, ReferenceError};
use crate::store::{IndexEntry, Store, StoreError};

/// A management operation that failed.
#[derive(Debug, Error)]
pub enum ManageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name is not a reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// No image by that name or id.
    #[error("no such image: {0}")]
    NotFound(String),
    /// An image id prefix that matches several images.
    #[error("image id {id} is ambiguous: it starts the ids of {count} images")]
    Ambiguous {
        /// The prefix given.
        id: String,
        /// How many images it matches.
        count: usize,
    },
    /// A stored manifest or config that does not parse.
    #[error("image {reference}: {what} {digest} in the store is not valid: {reason}")]
    Corrupt {
        /// The reference.
        reference: String,
        /// `manifest` or `config`.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Why.
        reason: String,
    },
}

/// One row of `stead image ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// The reference as recorded (`docker.io/library/alpine:3.20`).
    pub reference: String,
    /// `registry/repository`.
    pub repository: String,
    /// The tag, `None` for a reference by digest only.
    pub tag: Option<String>,
    /// The digest a registry knows the image by (the index's when pulled through one).
    pub digest: String,
    /// The config blob's digest (the image id).
    pub id: String,
    /// The config's `created` time (RFC 3339), if it has one.
    pub created: Option<String>,
    /// Bytes of the unpacked layers.
    pub size: u64,
}

impl ImageSummary {
    /// The short image id: the config digest's first 12 hex digits, as docker prints it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }
}

/// The first 12 hex digits of a `sha256:` digest.
pub fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

fn parse_key(key: &str) -> Option<ImageRef> {
    ImageRef::parse(key).ok()
}

/// Whether `key` is a digest-only reference that another recorded reference of the same name
/// and manifest carries with a tag (the `name@digest` recorded by a pull).
fn is_alias(key: &str, entry: &IndexEntry, all: &[(String, IndexEntry)]) -> bool {
    let Some(r) = parse_key(key) else { return false };
    if r.tag().is_some() {
        return false;
    }
    all.iter().any(|(k, e)| {
        e.manifest == entry.manifest
            && parse_key(k).is_some_and(|o| o.tag().is_some() && o.name() == r.name())
    })
}

fn config_of(store: &Store, key: &str, entry: &IndexEntry) -> Result<ImageConfiguration, ManageError> {
    let bytes = store.read_blob(&entry.config)?;
    serde_json::from_slice(&bytes).map_err(|e| ManageError::Corrupt {
        reference: key.to_string(),
        what: "config",
        digest: entry.config.clone(),
        reason: e.to_string(),
    })
}

/// Every image, one row per tagged reference (and per digest reference without a tag), sorted
/// by reference.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>, ManageError> {
    let all = store.list()?;
    let mut rows = Vec::new();
    for (key, entry) in &all {
        if is_alias(key, entry, &all) {
            continue;
        }
        let (repository, tag) = match parse_key(key) {
            Some(r) => (r.name(), r.tag().map(str::to_string)),
            None => (key.clone(), None),
        };
        // a missing or damaged config shows as an image without a creation time
        let created = config_of(store, key, entry).ok().and_then(|c| c.created().clone());
        rows.push(ImageSummary {
            reference: key.clone(),
            repository,
            tag,
            digest: entry.index.clone().unwrap_or_else(|| entry.manifest.clone()),
            id: entry.config.clone(),
            created,
            size: entry.diff_ids.iter().map(|d| store.layer_size(d)).sum(),
        });
    }
    Ok(rows)
}

/// The references `name` selects: the recorded reference it normalizes to, or, for an image id
/// (`sha256:<hex>` or at least 12 hex digits of it), every reference of that image.
pub fn resolve(store: &Store, name: &str) -> Result<Vec<(String, IndexEntry)>, ManageError> {
    let all = store.list()?;
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 12 && hex.len() <= 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        let ids: BTreeSet<&str> = all
            .iter()
            .map(|(_, e)| e.config.as_str())
            .filter(|c| c.strip_prefix("sha256:").is_some_and(|h| h.starts_with(hex)))
            .collect();
        match ids.len() {
            0 => {}
            1 => {
                let id = ids.into_iter().next().unwrap_or_default().to_string();
                return Ok(all.into_iter().filter(|(_, e)| e.config == id).collect());
            }
            count => return Err(ManageError::Ambiguous { id: name.to_string(), count }),
        }
    }
    let key = ImageRef::parse(name)?.to_string();
    all.into_iter()
        .find(|(k, _)| *k == key)
        .map(|found| vec![found])
        .ok_or_else(|| ManageError::NotFound(name.to_string()))
}

/// `stead image inspect`'s JSON for one image.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageDetails {
    /// The reference as recorded.
    pub reference: String,
    /// The config digest (the image id).
    pub id: String,
    /// The image manifest's digest.
    pub digest: String,
    /// The image index's digest, when pulled through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// Every reference of this image in the store.
    pub repo_tags: Vec<String>,
    /// The config's creation time.
    pub created: Option<String>,
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// What a container of this image runs with.
    pub config: RunConfig,
    /// The layers, bottom first.
    pub layers: Vec<LayerDetails>,
    /// Bytes of the unpacked layers.
    pub size: u64,
}

/// The parts of the image config a container uses (`ExposedPorts` for documentation only).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env`, `NAME=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `ExposedPorts` (`80/tcp`).
    pub exposed_ports: Vec<String>,
}

/// One layer of [`ImageDetails`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerDetails {
    /// The blob's digest (compressed, as the registry has it).
    pub digest: String,
    /// The blob's media type.
    pub media_type: String,
    /// The blob's size.
    pub size: u64,
    /// The uncompressed tar's digest (the unpacked directory's name).
    pub diff_id: String,
    /// Bytes of the unpacked layer.
    pub unpacked_size: u64,
}

/// The details of the image `name` (a reference or an image id).
pub fn inspect(store: &Store, name: &str) -> Result<ImageDetails, ManageError> {
    let found = resolve(store, name)?;
    let Some((key, entry)) = found.iter().find(|(k, e)| !is_alias(k, e, &found)).or(found.first()).cloned()
    else {
        return Err(ManageError::NotFound(name.to_string()));
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&store.read_blob(&entry.manifest)?).map_err(|e| ManageError::Corrupt {
            reference: key.clone(),
            what: "manifest",
            digest: entry.manifest.clone(),
            reason: e.to_string(),
        })?;
    let config = config_of(store, &key, &entry)?;
    let run = config.config().clone().map(|c| RunConfig {
        entrypoint: c.entrypoint().clone(),
        cmd: c.cmd().clone(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone(),
        user: c.user().clone(),
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
    });
    let layers: Vec<LayerDetails> = manifest
        .layers()
        .iter()
        .zip(&entry.diff_ids)
        .map(|(d, diff_id)| LayerDetails {
            digest: d.digest().to_string(),
            media_type: d.media_type().to_string(),
            size: d.size(),
            diff_id: diff_id.clone(),
            unpacked_size: store.layer_size(diff_id),
        })
        .collect();
    let repo_tags =
        store.list()?.into_iter().filter(|(_, e)| e.config == entry.config).map(|(k, _)| k).collect();
    Ok(ImageDetails {
        reference: key,
        id: entry.config.clone(),
        digest: entry.manifest.clone(),
        index_digest: entry.index.clone(),
        repo_tags,
        created: config.created().clone(),
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        config: run.unwrap_or_default(),
        size: layers.iter().map(|l| l.unpacked_size).sum(),
        layers,
    })
}

/// What was deleted from the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Blobs, layers (by diff id) and partial downloads deleted.
    pub deleted: Vec<String>,
    /// Bytes freed.
    pub bytes: u64,
}

/// What [`remove`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// References forgotten.
    pub untagged: Vec<String>,
    /// Content deleted.
    pub reclaimed: Reclaimed,
}

fn content_of(entry: &IndexEntry) -> (BTreeSet<String>, BTreeSet<String>) {
    let blobs = [Some(&entry.manifest), entry.index.as_ref(), Some(&entry.config)]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    (blobs, entry.diff_ids.iter().cloned().collect())
}

fn in_use(store: &Store) -> Result<(BTreeSet<String>, BTreeSet<String>), ManageError> {
    let (mut blobs, mut layers) = (BTreeSet::new(), BTreeSet::new());
    for (_, entry) in store.list()? {
        let (b, l) = content_of(&entry);
        blobs.extend(b);
        layers.extend(l);
    }
    Ok((blobs, layers))
}

/// Forgets the image `name` (a reference, or an image id for all its references) and deletes
/// its blobs and layers that no other reference uses. When the last tag of an image goes, its
/// digest references go too.
pub fn remove(store: &Store, name: &str) -> Result<Removed, ManageError> {
    let targets = resolve(store, name)?;
    let mut removed = Removed::default();
    let (mut blobs, mut layers) = (BTreeSet::new(), BTreeSet::new());
    let mut forget = |key: &str, entry: &IndexEntry, removed: &mut Removed| -> Result<(), ManageError> {
        if store.forget(key)?.is_some() {
            removed.untagged.push(key.to_string());
            let (b, l) = content_of(entry);
            blobs.extend(b);
            layers.extend(l);
        }
        Ok(())
    };
    for (key, entry) in &targets {
        forget(key, entry, &mut removed)?;
    }
    // digest references whose image has no tag left under their name
    let rest = store.list()?;
    for (key, entry) in &rest {
        let Some(r) = parse_key(key) else { continue };
        let same_image = targets.iter().any(|(_, t)| t.manifest == entry.manifest);
        if r.tag().is_none() && same_image && !is_alias(key, entry, &rest) {
            forget(key, entry, &mut removed)?;
        }
    }
    let (used_blobs, used_layers) = in_use(store)?;
    for blob in blobs.difference(&used_blobs) {
        removed.reclaimed.bytes += store.remove_blob(blob)?;
        removed.reclaimed.deleted.push(blob.clone());
    }
    for layer in layers.difference(&used_layers) {
        removed.reclaimed.bytes += store.remove_layer(layer)?;
        removed.reclaimed.deleted.push(layer.clone());
    }
    Ok(removed)
}

/// Deletes every blob, unpacked layer and partial download that no recorded reference uses.
pub fn prune(store: &Store) -> Result<Reclaimed, ManageError> {
    let (used_blobs, used_layers) = in_use(store)?;
    let mut reclaimed = Reclaimed::default();
    for blob in store.blobs()? {
        if !used_blobs.contains(&blob) {
            reclaimed.bytes += store.remove_blob(&blob)?;
            reclaimed.deleted.push(blob);
        }
    }
    for layer in store.layers()? {
        if !used_layers.contains(&layer) {
            reclaimed.bytes += store.remove_layer(&layer)?;
            reclaimed.deleted.push(layer);
        }
    }
    for (partial, _) in store.partials()? {
        reclaimed.bytes += store.remove_partial(&partial)?;
        reclaimed.deleted.push(format!("partial {partial}"));
    }
    Ok(reclaimed)
}
