//! Loading image archives into the store (`stead image load`): the way kind and podman users
//! bring an image built on their machine.
//!
//! Two formats, as a tar stream, uncompressed or gzip- or zstd-compressed (detected from the
//! first bytes):
//! - `docker save`: `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`), the config JSON and
//!   one tar per layer (`<id>/layer.tar` in older archives, `blobs/sha256/<hex>` since Docker
//!   25, which also writes an OCI layout next to it; `manifest.json` is preferred then).
//! - An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): each manifest of
//!   `index.json` named by its `io.containerd.image.name` annotation, else by its
//!   `org.opencontainers.image.ref.name` when that is a full name (`alpine:3.20`, as
//!   `skopeo copy ... oci-archive:FILE:alpine:3.20` writes it); an image index inside is
//!   resolved to the host's platform.
//!
//! The archive's files are copied into a scratch directory of the store while their sha256 is
//! computed; symlinks and hard links between them (older `docker save` archives link shared
//! layers) are followed inside the archive only. Nothing is trusted by name: a blob named by a
//! digest (or a descriptor's digest) must hash to it, and each layer's diff id must match the
//! config's `rootfs.diff_ids` ([`Store::unpack_reader`] checks it). A `docker save` image has no
//! registry manifest: an OCI manifest is written for it (its layers described by the tars'
//! digests), so that the store's index is the same for loaded and pulled images.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::pull::{Platform, choose_platform};
use crate::reference::{ImageRef, ReferenceError};
use crate::store::{IndexEntry, Store, StoreError, sha256_of};
use crate::unpack::{UnpackOptions, sha256_digest};

const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An archive that could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The stream is not a readable tar (or compressed tar).
    #[error("cannot read the archive: {0}")]
    Read(std::io::Error),
    /// Neither `manifest.json` nor `index.json` is in it.
    #[error(
        "the archive is neither a docker save archive (no manifest.json) nor an OCI image layout (no index.json)"
    )]
    UnknownFormat,
    /// A file the archive's metadata names is not in it.
    #[error("the archive has no file {0:?}")]
    Missing(String),
    /// A metadata file does not parse or says something impossible.
    #[error("{file} in the archive: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A file's content does not have the digest it is named or described by.
    #[error("{file} in the archive has digest {actual}, not {expected}")]
    DigestMismatch {
        /// The file.
        file: String,
        /// The digest it should have.
        expected: String,
        /// What it hashed to.
        actual: String,
    },
    /// An image without a name to record it under.
    #[error("image {manifest} in the archive has no name: {reason}")]
    NoName {
        /// Its manifest (or config) digest.
        manifest: String,
        /// What was there instead.
        reason: String,
    },
    /// A name that is not a reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store failed (a layer whose diff id does not match included).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An image loaded from an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The references recorded (normalized: `docker.io/library/alpine:3.20`).
    pub references: Vec<String>,
    /// The manifest's digest in the store.
    pub manifest: String,
    /// The config's digest (the image id).
    pub config: String,
}

/// A regular file of the archive, copied into the scratch directory.
struct Member {
    file: PathBuf,
    digest: String,
    size: u64,
}

/// The archive's files, by their cleaned path.
struct Contents {
    files: BTreeMap<String, Member>,
    /// Symlinks (already resolved against their directory) and hard links: path -> target path.
    links: BTreeMap<String, String>,
}

impl Contents {
    fn get(&self, path: &str) -> Result<&Member, LoadError> {
        let mut path = clean(path).ok_or_else(|| LoadError::Missing(path.to_string()))?;
        for _ in 0..16 {
            if let Some(m) = self.files.get(&path) {
                return Ok(m);
            }
            match self.links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        Err(LoadError::Missing(path))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        let member = self.get(path)?;
        std::fs::read(&member.file)
            .map_err(|source| StoreError::Io { op: "read", path: member.file.clone(), source }.into())
    }

    /// A blob of an OCI layout, checked against its descriptor.
    fn blob(&self, desc: &Descriptor) -> Result<(&Member, String), LoadError> {
        let digest = desc.digest().to_string();
        let hex = crate::store::digest_hex(&digest)?;
        let path = format!("blobs/sha256/{hex}");
        let member = self.get(&path)?;
        if member.digest != digest {
            return Err(LoadError::DigestMismatch {
                file: path,
                expected: digest,
                actual: member.digest.clone(),
            });
        }
        if member.size != desc.size() {
            return Err(LoadError::Invalid {
                file: path,
                reason: format!("it has {} bytes but its descriptor says {}", member.size, desc.size()),
            });
        }
        Ok((member, path))
    }
}

/// A path inside the archive without `.`, leading `/` or trailing `/`; `None` if it has `..`.
fn clean(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// A symlink's target as an archive path, relative to the link's directory; `None` if it leaves
/// the archive.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<String> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut dir: Vec<String> = link.split('/').map(str::to_string).collect();
        dir.pop();
        dir
    };
    for c in Path::new(target).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// A reader over the decompressed stream.
fn decompressed(reader: impl Read + 'static) -> Result<Box<dyn Read>, LoadError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf().map_err(LoadError::Read)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(LoadError::Read)?)
    } else {
        Box::new(buffered)
    })
}

fn extract(reader: Box<dyn Read>, scratch: &Path) -> Result<Contents, LoadError> {
    let mut contents = Contents { files: BTreeMap::new(), links: BTreeMap::new() };
    let mut archive = tar::Archive::new(reader);
    let mut buf = vec![0u8; 256 * 1024];
    for (n, entry) in archive.entries().map_err(LoadError::Read)?.enumerate() {
        let mut entry = entry.map_err(LoadError::Read)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = clean(&raw) else {
            return Err(LoadError::Invalid { file: raw, reason: "its path leaves the archive".into() });
        };
        let kind = entry.header().entry_type();
        if kind.is_file() {
            let file = scratch.join(n.to_string());
            let io = |op, source| LoadError::Store(StoreError::Io { op, path: file.clone(), source });
            let mut out = std::fs::File::create(&file).map_err(|e| io("create", e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                let got = entry.read(&mut buf).map_err(LoadError::Read)?;
                if got == 0 {
                    break;
                }
                hasher.update(&buf[..got]);
                out.write_all(&buf[..got]).map_err(|e| io("write", e))?;
                size += got as u64;
            }
            contents.files.insert(path, Member { file, digest: sha256_digest(hasher), size });
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(LoadError::Read)?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() { resolve_link(&path, &target) } else { clean(&target) };
            if let Some(resolved) = resolved {
                contents.links.insert(path, resolved);
            }
        }
    }
    Ok(contents)
}

/// Loads every image of the archive `reader` into `store`.
pub fn load(
    store: &Store,
    reader: impl Read + 'static,
    options: &UnpackOptions,
) -> Result<Vec<Loaded>, LoadError> {
    let scratch = store.scratch_dir()?;
    let result = decompressed(reader).and_then(|r| extract(r, &scratch)).and_then(|contents| {
        if contents.get("manifest.json").is_ok() {
            load_docker(store, &contents, options)
        } else if contents.get("index.json").is_ok() {
            load_oci(store, &contents, options)
        } else {
            Err(LoadError::UnknownFormat)
        }
    });
    let cleaned = store.remove_scratch(&scratch);
    let loaded = result?;
    cleaned?;
    Ok(loaded)
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The digest a file's name claims (`blobs/sha256/<hex>`, `<hex>.json`, `<hex>/layer.tar` is
/// not one: older archives name layers by a chain id), if any.
fn named_digest(path: &str) -> Option<String> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json").filter(|p| !p.contains('/')))?;
    let digest = format!("sha256:{hex}");
    crate::store::digest_hex(&digest).is_ok().then_some(digest)
}

fn check_named(path: &str, member: &Member) -> Result<(), LoadError> {
    match named_digest(path) {
        Some(expected) if expected != member.digest => {
            Err(LoadError::DigestMismatch { file: path.to_string(), expected, actual: member.digest.clone() })
        }
        _ => Ok(()),
    }
}

fn parse_config(bytes: &[u8], file: &str) -> Result<ImageConfiguration, LoadError> {
    serde_json::from_slice(bytes)
        .map_err(|e| LoadError::Invalid { file: file.to_string(), reason: e.to_string() })
}

/// Unpacks the layers not yet in the store; `layers` are (archive path, member) pairs.
fn unpack_layers(
    store: &Store,
    layers: &[(String, &Member)],
    diff_ids: &[String],
    options: &UnpackOptions,
) -> Result<(), LoadError> {
    for ((path, member), diff_id) in layers.iter().zip(diff_ids) {
        if store.has_layer(diff_id) {
            continue;
        }
        let file = std::fs::File::open(&member.file).map_err(|source| StoreError::Io {
            op: "open",
            path: member.file.clone(),
            source,
        })?;
        store.unpack_reader(file, &format!("{path} ({})", member.digest), diff_id, options)?;
    }
    Ok(())
}

fn layer_media_type(member: &Member) -> Result<&'static str, LoadError> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(&member.file).map_err(|source| StoreError::Io {
        op: "open",
        path: member.file.clone(),
        source,
    })?;
    let n = f.read(&mut head).map_err(|source| StoreError::Io {
        op: "read",
        path: member.file.clone(),
        source,
    })?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    })
}

fn load_docker(
    store: &Store,
    contents: &Contents,
    options: &UnpackOptions,
) -> Result<Vec<Loaded>, LoadError> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(&contents.read("manifest.json")?)
        .map_err(|e| LoadError::Invalid { file: "manifest.json".into(), reason: e.to_string() })?;
    let mut loaded = Vec::new();
    for entry in entries {
        let config_member = contents.get(&entry.config)?;
        check_named(&entry.config, config_member)?;
        let config_bytes = contents.read(&entry.config)?;
        let config = parse_config(&config_bytes, &entry.config)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != entry.layers.len() {
            return Err(LoadError::Invalid {
                file: "manifest.json".into(),
                reason: format!(
                    "image {} has {} layers but its config lists {} diff ids",
                    config_member.digest,
                    entry.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            return Err(LoadError::NoName {
                manifest: config_member.digest.clone(),
                reason: "its RepoTags are empty (docker save it by name, not by id)".into(),
            });
        }
        let mut layers = Vec::new();
        for path in &entry.layers {
            let member = contents.get(path)?;
            check_named(path, member)?;
            layers.push((path.clone(), member));
        }
        unpack_layers(store, &layers, &diff_ids, options)?;
        store.write_blob(&config_member.digest, &config_bytes)?;
        let mut layer_descs = Vec::new();
        for (_, member) in &layers {
            layer_descs.push(serde_json::json!({
                "mediaType": layer_media_type(member)?,
                "digest": member.digest,
                "size": member.size,
            }));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_member.digest,
                "size": config_member.size,
            },
            "layers": layer_descs,
        }))
        .map_err(|e| LoadError::Invalid { file: "manifest.json".into(), reason: e.to_string() })?;
        let manifest_digest = sha256_of(&manifest);
        store.write_blob(&manifest_digest, &manifest)?;
        let index_entry = IndexEntry {
            manifest: manifest_digest.clone(),
            index: None,
            config: config_member.digest.clone(),
            diff_ids: diff_ids.clone(),
        };
        let mut references = Vec::new();
        for tag in &tags {
            let key = ImageRef::parse(tag)?.to_string();
            store.record(&key, index_entry.clone())?;
            references.push(key);
        }
        loaded.push(Loaded { references, manifest: manifest_digest, config: config_member.digest.clone() });
    }
    Ok(loaded)
}

/// The name of an `index.json` entry, normalized.
fn oci_name(desc: &Descriptor) -> Result<ImageRef, LoadError> {
    let annotations = desc.annotations().clone().unwrap_or_default();
    if let Some(name) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Ok(ImageRef::parse(name)?);
    }
    match annotations.get(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => Ok(ImageRef::parse(name)?),
        Some(tag) => Err(LoadError::NoName {
            manifest: desc.digest().to_string(),
            reason: format!(
                "its {ANNOTATION_REF_NAME} is {tag:?}, a tag without a repository (write the archive with a full name, e.g. oci-archive:FILE:example.com/app:{tag})"
            ),
        }),
        None => Err(LoadError::NoName {
            manifest: desc.digest().to_string(),
            reason: format!("it has neither {ANNOTATION_REF_NAME} nor {ANNOTATION_CONTAINERD_NAME}"),
        }),
    }
}

fn load_oci(store: &Store, contents: &Contents, options: &UnpackOptions) -> Result<Vec<Loaded>, LoadError> {
    let index: ImageIndex = serde_json::from_slice(&contents.read("index.json")?)
        .map_err(|e| LoadError::Invalid { file: "index.json".into(), reason: e.to_string() })?;
    let mut loaded = Vec::new();
    for top in index.manifests() {
        let name = oci_name(top)?;
        let (member, path) = contents.blob(top)?;
        let mut bytes = std::fs::read(&member.file).map_err(|source| StoreError::Io {
            op: "read",
            path: member.file.clone(),
            source,
        })?;
        let mut desc = top.clone();
        let mut index_digest = None;
        let media_type = top.media_type().to_string();
        let is_index = media_type == MEDIA_OCI_INDEX
            || media_type == MEDIA_DOCKER_LIST
            || serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v.get("manifests").is_some());
        if is_index {
            let inner: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| LoadError::Invalid { file: path.clone(), reason: e.to_string() })?;
            let platform = Platform::host();
            let chosen = choose_platform(&inner, &platform).ok_or_else(|| LoadError::Invalid {
                file: path.clone(),
                reason: format!("the image index has no {}/{} image", platform.os, platform.architecture),
            })?;
            store.write_blob(top.digest().as_ref(), &bytes)?;
            index_digest = Some(top.digest().to_string());
            desc = chosen.clone();
            let (inner_member, _) = contents.blob(&desc)?;
            bytes = std::fs::read(&inner_member.file).map_err(|source| StoreError::Io {
                op: "read",
                path: inner_member.file.clone(),
                source,
            })?;
        }
        let manifest_digest = desc.digest().to_string();
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| LoadError::Invalid {
            file: format!("blobs/sha256/{}", manifest_digest.trim_start_matches("sha256:")),
            reason: e.to_string(),
        })?;
        let (config_member, config_path) = contents.blob(manifest.config())?;
        let config_bytes = contents.read(&config_path)?;
        let config = parse_config(&config_bytes, &config_path)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(LoadError::Invalid {
                file: config_path,
                reason: format!(
                    "the manifest {manifest_digest} has {} layers but this config lists {} diff ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::new();
        for layer in manifest.layers() {
            let (m, p) = contents.blob(layer)?;
            layers.push((p, m));
        }
        unpack_layers(store, &layers, &diff_ids, options)?;
        store.write_blob(&config_member.digest, &config_bytes)?;
        store.write_blob(&manifest_digest, &bytes)?;
        let entry = IndexEntry {
            manifest: manifest_digest.clone(),
            index: index_digest.clone(),
            config: config_member.digest.clone(),
            diff_ids,
        };
        let key = name.to_string();
        store.record(&key, entry.clone())?;
        let mut references = vec![key.clone()];
        let pinned = name.with_digest(index_digest.as_deref().unwrap_or(&manifest_digest)).to_string();
        if pinned != key {
            store.record(&pinned, entry)?;
            references.push(pinned);
        }
        loaded.push(Loaded { references, manifest: manifest_digest, config: config_member.digest.clone() });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths() {
        assert_eq!(clean("./blobs/sha256/ab").as_deref(), Some("blobs/sha256/ab"));
        assert_eq!(clean("/manifest.json").as_deref(), Some("manifest.json"));
        assert_eq!(clean("a/../../etc"), None);
        assert_eq!(resolve_link("abc/layer.tar", "../def/layer.tar").as_deref(), Some("def/layer.tar"));
        assert_eq!(resolve_link("layer.tar", "../../x"), None);
        assert_eq!(
            named_digest(&format!("blobs/sha256/{}", "a".repeat(64))),
            Some(format!("sha256:{}", "a".repeat(64)))
        );
        assert_eq!(
            named_digest(&format!("{}.json", "b".repeat(64))),
            Some(format!("sha256:{}", "b".repeat(64)))
        );
        assert_eq!(named_digest("abc/layer.tar"), None);
    }
}
