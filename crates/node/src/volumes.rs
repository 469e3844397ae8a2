//! Pod volumes as directories under the state directory.
//!
//! Layout (`<state>` is the runtime's state directory, `<uid>` the pod's UID):
//! - `persistentVolumeClaim`: `<state>/volumes/<namespace>/<claimName>`. Naming the claim
//!   (`<template>-<set>-<ordinal>`) is the caller's job. **Never deleted by this crate.**
//! - `emptyDir`: `<state>/pods/<uid>/volumes/empty-dir/<volume>`; `medium: Memory` is a tmpfs there
//!   (with `sizeLimit`), mounted by the sandbox.
//! - `configMap`, `secret`, `downwardAPI`: `<state>/pods/<uid>/volumes/<kind>/<volume>`, written like the
//!   kubelet's AtomicWriter: files live in a timestamped `..<time>` directory, `..data` is a symlink to
//!   it, and each top-level name is a symlink into `..data`. An update writes a new directory and
//!   swaps `..data` with one `rename`, so readers see the old or the new set, never a mix. Secret
//!   volumes are planned on tmpfs, as the kubelet does, so their content never reaches the disk.
//! - `hostPath`: the host path itself; `type` is checked; `DirectoryOrCreate`/`FileOrCreate` create
//!   it (the only writes outside the state directory, and only because the pod asks).
//!
//! File modes: `items[].mode`, else `defaultMode`, else **0644 for both ConfigMaps and Secrets**. That is
//! Kubernetes' real default (`SecretVolumeSourceDefaultMode = 0644`); the issue text said 0400 for
//! secrets, but we keep Kubernetes semantics: set `defaultMode: 0400` to get that. Their directories
//! are 0755 whatever the umask, and a Secret volume's tmpfs is mounted `mode=0755` by root (not
//! tmpfs's world-writable 1777); what keeps other local users out is the state directory (0700)
//! above them all.

use crate::env::{EnvContext, ObjectLookup, field_value};
use crate::fsutil::replace_file;
use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The default file mode of configMap, secret and downwardAPI volume files.
pub const DEFAULT_MODE: u32 = 0o644;

/// The mode of configMap, secret and downwardAPI volume directories (and of a Secret volume's
/// tmpfs): readable by the container whatever its user, writable by root only.
pub const DIR_MODE: u32 = 0o755;

/// The mode of a memory-backed emptyDir's tmpfs: writable by every user of the pod, as
/// Kubernetes' emptyDirs are, with the sticky bit tmpfs sets by default.
pub const EMPTY_DIR_TMPFS_MODE: u32 = 0o1777;

/// A tmpfs mounted on a volume's path before it is populated (root-owned: the runtime mounts it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tmpfs {
    /// The size limit in bytes; `None`: tmpfs's default (half the memory).
    pub size: Option<u64>,
    /// The permission bits of its root directory (`mode=`).
    pub mode: u32,
}

/// What a volume is, once planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    Claim { claim: String },
    EmptyDir,
    ConfigMap { name: String },
    Secret { name: String },
    DownwardApi,
    HostPath,
}

/// One planned volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub kind: VolumeKind,
    /// The host path that containers bind-mount.
    pub path: PathBuf,
    /// A tmpfs must be mounted on `path` before use.
    pub tmpfs: Option<Tmpfs>,
    /// Mounted read-only whatever the volumeMount says (configMap, secret, downwardAPI, readOnly claims).
    pub force_readonly: bool,
}

/// A volume error, naming the pod and the volume.
#[derive(Debug, thiserror::Error)]
#[error("pod {pod:?}: volume {volume:?}: {problem}")]
pub struct VolumeError {
    pub pod: String,
    pub volume: String,
    pub problem: Box<VolumeProblem>,
}

/// What is wrong with a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeProblem {
    #[error(
        "unsupported volume type (supported: persistentVolumeClaim, emptyDir, configMap, secret, downwardAPI, hostPath)"
    )]
    Unsupported,
    #[error("{what} {value:?} must be a relative path without '..'")]
    BadPath { what: &'static str, value: String },
    #[error("{kind} \"{namespace}/{name}\" not found")]
    SourceNotFound { kind: &'static str, namespace: String, name: String },
    #[error("key {key:?} not found in {kind} \"{namespace}/{name}\"")]
    KeyNotFound { kind: &'static str, namespace: String, name: String, key: String },
    #[error("looking up {kind} \"{namespace}/{name}\": {message}")]
    Lookup { kind: &'static str, namespace: String, name: String, message: String },
    #[error("hostPath {path} {problem}")]
    HostPath { path: PathBuf, problem: String },
    #[error("invalid {what} {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn verr(pod: String, volume: String, problem: VolumeProblem) -> VolumeError {
    VolumeError { pod, volume, problem: Box::new(problem) }
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// `<state>/pods/<uid>`: everything the runtime keeps for one pod (removed with the pod).
pub fn pod_dir(state: &Path, pod: &Pod) -> PathBuf {
    let uid = pod.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        )
    });
    state.join("pods").join(uid)
}

/// `<state>/volumes/<namespace>/<claim>`.
pub fn claim_dir(state: &Path, namespace: &str, claim: &str) -> PathBuf {
    state.join("volumes").join(namespace).join(claim)
}

/// True for a relative path with no `..`, no root and no empty name.
pub fn is_safe_relative(p: &str) -> bool {
    !p.is_empty() && Path::new(p).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Plans every volume of `pod` (no IO).
pub fn plan_volumes(state: &Path, pod: &Pod) -> Result<Vec<PlannedVolume>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let base = pod_dir(state, pod).join("volumes");
    let mut out = vec![];
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        out.push(plan_one(state, &base, ns, pod, v)?);
    }
    Ok(out)
}

fn plan_one(
    state: &Path,
    base: &Path,
    ns: &str,
    pod: &Pod,
    v: &Volume,
) -> Result<PlannedVolume, VolumeError> {
    let name = v.name.clone();
    if !is_safe_relative(&name) || name.contains('/') {
        return Err(verr(
            pod_ref(pod),
            name.clone(),
            VolumeProblem::BadPath { what: "volume name", value: name },
        ));
    }
    let planned = |kind, path, tmpfs, force_readonly| PlannedVolume {
        name: name.clone(),
        kind,
        path,
        tmpfs,
        force_readonly,
    };
    if let Some(c) = &v.persistent_volume_claim {
        if !is_safe_relative(&c.claim_name) || c.claim_name.contains('/') {
            let value = c.claim_name.clone();
            return Err(verr(pod_ref(pod), name, VolumeProblem::BadPath { what: "claimName", value }));
        }
        let kind = VolumeKind::Claim { claim: c.claim_name.clone() };
        return Ok(planned(kind, claim_dir(state, ns, &c.claim_name), None, c.read_only == Some(true)));
    }
    if let Some(e) = &v.empty_dir {
        let path = base.join("empty-dir").join(&name);
        let tmpfs = if e.medium.as_deref() == Some("Memory") {
            let limit = match &e.size_limit {
                Some(q) => Some(
                    crate::quantity::Quantity::parse(&q.0)
                        .ok()
                        .and_then(|q| q.value())
                        .and_then(|v| u64::try_from(v).ok())
                        .ok_or_else(|| {
                            verr(
                                pod_ref(pod),
                                name.clone(),
                                VolumeProblem::Invalid { what: "emptyDir.sizeLimit", value: q.0.clone() },
                            )
                        })?,
                ),
                None => None,
            };
            Some(Tmpfs { size: limit, mode: EMPTY_DIR_TMPFS_MODE })
        } else {
            None
        };
        return Ok(planned(VolumeKind::EmptyDir, path, tmpfs, false));
    }
    if let Some(c) = &v.config_map {
        let kind = VolumeKind::ConfigMap { name: c.name.clone() };
        return Ok(planned(kind, base.join("configmap").join(&name), None, true));
    }
    if let Some(s) = &v.secret {
        let kind = VolumeKind::Secret { name: s.secret_name.clone().unwrap_or_default() };
        let tmpfs = Tmpfs { size: None, mode: DIR_MODE };
        return Ok(planned(kind, base.join("secret").join(&name), Some(tmpfs), true));
    }
    if v.downward_api.is_some() {
        return Ok(planned(VolumeKind::DownwardApi, base.join("downward-api").join(&name), None, true));
    }
    if let Some(h) = &v.host_path {
        return Ok(planned(VolumeKind::HostPath, PathBuf::from(&h.path), None, false));
    }
    Err(verr(pod_ref(pod), name, VolumeProblem::Unsupported))
}

/// Creates the volume directories and writes their content. Call after any tmpfs is mounted.
/// Calling it again updates configMap, secret and downwardAPI volumes atomically.
pub fn populate(
    pod: &Pod,
    planned: &[PlannedVolume],
    lookup: &dyn ObjectLookup,
    ctx: &EnvContext,
) -> Result<(), VolumeError> {
    let volumes: BTreeMap<&str, &Volume> =
        pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).map(|v| (v.name.as_str(), v)).collect();
    for p in planned {
        let Some(v) = volumes.get(p.name.as_str()) else { continue };
        let io = |path: &Path| {
            let (pod, volume, path) = (pod_ref(pod), p.name.clone(), path.to_owned());
            move |source| verr(pod, volume, VolumeProblem::Io { path, source })
        };
        match &p.kind {
            VolumeKind::Claim { .. } | VolumeKind::EmptyDir => {
                fs::create_dir_all(&p.path).map_err(io(&p.path))?
            }
            VolumeKind::HostPath => check_host_path(pod, p, v)?,
            VolumeKind::ConfigMap { .. } | VolumeKind::Secret { .. } | VolumeKind::DownwardApi => {
                let Some(files) = payload(pod, p, v, lookup, ctx)? else { continue };
                shared_dir(&p.path).map_err(io(&p.path))?;
                write_payload(&p.path, &files).map_err(io(&p.path))?;
            }
        }
    }
    Ok(())
}

fn check_host_path(pod: &Pod, p: &PlannedVolume, v: &Volume) -> Result<(), VolumeError> {
    let ty = v.host_path.as_ref().and_then(|h| h.type_.clone()).unwrap_or_default();
    let fail = |problem: &str| {
        verr(
            pod_ref(pod),
            p.name.clone(),
            VolumeProblem::HostPath { path: p.path.clone(), problem: problem.to_owned() },
        )
    };
    let meta = fs::metadata(&p.path).ok();
    match ty.as_str() {
        "" => Ok(()),
        "Directory" if meta.as_ref().is_some_and(|m| m.is_dir()) => Ok(()),
        "Directory" => Err(fail("is not an existing directory (type Directory)")),
        "File" if meta.as_ref().is_some_and(|m| m.is_file()) => Ok(()),
        "File" => Err(fail("is not an existing file (type File)")),
        "DirectoryOrCreate" => match meta {
            Some(m) if m.is_dir() => Ok(()),
            Some(_) => Err(fail("exists and is not a directory (type DirectoryOrCreate)")),
            None => fs::create_dir_all(&p.path).map_err(|e| fail(&format!("could not be created: {e}"))),
        },
        "FileOrCreate" => match meta {
            Some(m) if m.is_file() => Ok(()),
            Some(_) => Err(fail("exists and is not a file (type FileOrCreate)")),
            None => fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p.path)
                .map(drop)
                .map_err(|e| fail(&format!("could not be created: {e}"))),
        },
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_some() => Ok(()),
        "Socket" | "CharDevice" | "BlockDevice" => Err(fail(&format!("does not exist (type {ty})"))),
        other => Err(verr(
            pod_ref(pod),
            p.name.clone(),
            VolumeProblem::Invalid { what: "hostPath.type", value: other.to_owned() },
        )),
    }
}

/// One file of a projected volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileContent {
    pub data: Vec<u8>,
    pub mode: u32,
}

fn mode_of(
    pod: &Pod,
    volume: &str,
    value: Option<i32>,
    default: u32,
    what: &'static str,
) -> Result<u32, VolumeError> {
    match value {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m.unsigned_abs()),
        Some(m) => Err(verr(
            pod_ref(pod),
            volume.to_owned(),
            VolumeProblem::Invalid { what, value: format!("{m:o}") },
        )),
    }
}

/// The files a configMap, secret or downwardAPI volume holds; `None` for an optional missing source.
fn payload(
    pod: &Pod,
    p: &PlannedVolume,
    v: &Volume,
    lookup: &dyn ObjectLookup,
    ctx: &EnvContext,
) -> Result<Option<BTreeMap<String, FileContent>>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let lookup_err = |kind: &'static str, name: &str| {
        let (pod, volume, namespace, name) = (pod_ref(pod), p.name.clone(), ns.to_owned(), name.to_owned());
        move |e: crate::env::LookupError| {
            verr(pod, volume, VolumeProblem::Lookup { kind, namespace, name, message: e.0 })
        }
    };
    let (kind, name, data, items, default_mode, optional): (
        &'static str,
        String,
        Option<BTreeMap<String, Vec<u8>>>,
        _,
        _,
        _,
    ) = if let Some(src) = &v.config_map {
        let cm = lookup.config_map(ns, &src.name).map_err(lookup_err("configmap", &src.name))?;
        let data = cm.map(|cm| {
            let mut d: BTreeMap<String, Vec<u8>> =
                cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            d.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            d
        });
        ("configmap", src.name.clone(), data, &src.items, src.default_mode, src.optional == Some(true))
    } else if let Some(src) = &v.secret {
        let name = src.secret_name.clone().unwrap_or_default();
        let secret = lookup.secret(ns, &name).map_err(lookup_err("secret", &name))?;
        let data = secret.map(|s| {
            let mut d: BTreeMap<String, Vec<u8>> =
                s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            d.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
            d
        });
        ("secret", name, data, &src.items, src.default_mode, src.optional == Some(true))
    } else if let Some(src) = &v.downward_api {
        let default = mode_of(pod, &p.name, src.default_mode, DEFAULT_MODE, "downwardAPI.defaultMode")?;
        let mut files = BTreeMap::new();
        for item in src.items.iter().flatten() {
            if !is_safe_relative(&item.path) {
                let value = item.path.clone();
                return Err(verr(
                    pod_ref(pod),
                    p.name.clone(),
                    VolumeProblem::BadPath { what: "item path", value },
                ));
            }
            let value = match (&item.field_ref, &item.resource_field_ref) {
                (Some(f), _) => field_value(pod, f, ctx).ok_or_else(|| {
                    verr(
                        pod_ref(pod),
                        p.name.clone(),
                        VolumeProblem::Invalid { what: "fieldRef.fieldPath", value: f.field_path.clone() },
                    )
                })?,
                _ => {
                    return Err(verr(
                        pod_ref(pod),
                        p.name.clone(),
                        VolumeProblem::Invalid {
                            what: "downwardAPI item (only fieldRef is supported)",
                            value: item.path.clone(),
                        },
                    ));
                }
            };
            let mode = mode_of(pod, &p.name, item.mode, default, "item mode")?;
            files.insert(item.path.clone(), FileContent { data: value.into_bytes(), mode });
        }
        return Ok(Some(files));
    } else {
        return Ok(None);
    };
    let what = if kind == "secret" { "secret.defaultMode" } else { "configMap.defaultMode" };
    let default = mode_of(pod, &p.name, default_mode, DEFAULT_MODE, what)?;
    let Some(data) = data else {
        if optional {
            return Ok(Some(BTreeMap::new()));
        }
        let (pod, volume, namespace) = (pod_ref(pod), p.name.clone(), ns.to_owned());
        return Err(verr(pod, volume, VolumeProblem::SourceNotFound { kind, namespace, name }));
    };
    let selected: Vec<KeyToPath> = match items {
        Some(items) if !items.is_empty() => items.clone(),
        _ => data.keys().map(|k| KeyToPath { key: k.clone(), path: k.clone(), mode: None }).collect(),
    };
    let mut files = BTreeMap::new();
    for item in selected {
        if !is_safe_relative(&item.path) || item.path.starts_with("..") {
            let value = item.path.clone();
            return Err(verr(
                pod_ref(pod),
                p.name.clone(),
                VolumeProblem::BadPath { what: "item path", value },
            ));
        }
        let Some(bytes) = data.get(&item.key) else {
            if optional {
                continue;
            }
            let (pod, volume, namespace, key) =
                (pod_ref(pod), p.name.clone(), ns.to_owned(), item.key.clone());
            return Err(verr(
                pod,
                volume,
                VolumeProblem::KeyNotFound { kind, namespace, name: name.clone(), key },
            ));
        };
        let mode = mode_of(pod, &p.name, item.mode, default, "item mode")?;
        files.insert(item.path.clone(), FileContent { data: bytes.clone(), mode });
    }
    Ok(Some(files))
}

/// Creates `dir` and any missing parents with [`DIR_MODE`] (whatever the umask), and sets an
/// existing `dir` to it: never writable by others.
fn shared_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// Writes `files` into `dir` with the kubelet's `..data` symlink swap. Directories are
/// [`DIR_MODE`]; each file has its own mode.
pub fn write_payload(dir: &Path, files: &BTreeMap<String, FileContent>) -> std::io::Result<()> {
    let data_link = dir.join("..data");
    let old_target = fs::read_link(&data_link).ok();
    if let Some(old) = &old_target
        && current_matches(&dir.join(old), files)
    {
        return Ok(());
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut ts_name = format!("..{}_{:09}", now.as_secs(), now.subsec_nanos());
    let mut n = 0;
    while dir.join(&ts_name).exists() {
        n += 1;
        ts_name = format!("..{}_{:09}_{n}", now.as_secs(), now.subsec_nanos());
    }
    let ts_dir = dir.join(&ts_name);
    fs::create_dir(&ts_dir)?;
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(DIR_MODE))?;
    for (path, content) in files {
        let file = ts_dir.join(path);
        if let Some(parent) = file.parent().filter(|p| *p != ts_dir) {
            shared_dir(parent)?;
        }
        replace_file(&file, &content.data, content.mode)?;
    }
    // User-visible names: one symlink per top-level component, into ..data.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').find(|c| !c.is_empty() && *c != ".").map(str::to_owned))
        .collect();
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&ts_name, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;
    for top in &tops {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    // Remove names that are gone, then the old timestamped directory.
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) && entry.file_type()?.is_symlink() {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old_target {
        let old_dir = dir.join(old);
        if old_dir != ts_dir {
            fs::remove_dir_all(old_dir)?;
        }
    }
    Ok(())
}

fn current_matches(dir: &Path, files: &BTreeMap<String, FileContent>) -> bool {
    let mut count = 0;
    let ok = files.iter().all(|(path, c)| {
        let p = dir.join(path);
        fs::read(&p).is_ok_and(|d| d == c.data)
            && fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == c.mode)
    });
    if let Ok(walk) = count_files(dir, &mut count) { ok && walk && count == files.len() } else { false }
}

fn count_files(dir: &Path, count: &mut usize) -> std::io::Result<bool> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            count_files(&e.path(), count)?;
        } else {
            *count += 1;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
