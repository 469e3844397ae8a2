//! Files in volumes: where a volume's files and a mount's subPath may point, file modes, and the
//! keys of ConfigMaps and Secrets (which become file names).
//!
//! Kubernetes' rules (its `validateLocalDescendingPath`, `validateLocalNonReservedPath`, file
//! modes, host path types), and one of stead's: a hostPath must be absolute, since the local
//! engine would otherwise resolve it against its own working directory.

use super::resources::quantity;
use super::{Findings, names};
use crate::path::FieldPath;
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Volume, VolumeMount};

/// The widest file mode a volume may give its files: `0777`.
const MAX_MODE: i32 = 0o777;

/// The types a hostPath volume may declare.
const HOST_PATH_TYPES: [&str; 8] =
    ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];

/// Checks one volume's source.
pub fn volume(v: &Volume, path: &FieldPath, f: &mut Findings) {
    if let Some(s) = &v.config_map {
        let p = path.key("configMap");
        if s.name.is_empty() {
            f.error(p.key("name"), "missing required field \"name\"");
        }
        mode(f, p.key("defaultMode"), "defaultMode", s.default_mode);
        key_paths(f, &p.key("items"), s.items.as_deref());
    }
    if let Some(s) = &v.secret {
        let p = path.key("secret");
        if s.secret_name.as_deref().unwrap_or_default().is_empty() {
            f.error(p.key("secretName"), "missing required field \"secretName\"");
        }
        mode(f, p.key("defaultMode"), "defaultMode", s.default_mode);
        key_paths(f, &p.key("items"), s.items.as_deref());
    }
    if let Some(s) = &v.downward_api {
        let p = path.key("downwardAPI");
        mode(f, p.key("defaultMode"), "defaultMode", s.default_mode);
        downward_files(f, &p.key("items"), s.items.as_deref());
    }
    if let Some(s) = &v.projected {
        let p = path.key("projected");
        mode(f, p.key("defaultMode"), "defaultMode", s.default_mode);
        for (i, source) in s.sources.iter().flatten().enumerate() {
            let p = p.key("sources").index(i);
            if let Some(c) = &source.config_map {
                key_paths(f, &p.key("configMap").key("items"), c.items.as_deref());
            }
            if let Some(c) = &source.secret {
                key_paths(f, &p.key("secret").key("items"), c.items.as_deref());
            }
            if let Some(d) = &source.downward_api {
                downward_files(f, &p.key("downwardAPI").key("items"), d.items.as_deref());
            }
            if let Some(t) = &source.service_account_token {
                file_path(f, p.key("serviceAccountToken").key("path"), &t.path);
            }
            if let Some(b) = &source.cluster_trust_bundle {
                file_path(f, p.key("clusterTrustBundle").key("path"), &b.path);
            }
        }
    }
    if let Some(h) = &v.host_path {
        let p = path.key("hostPath");
        if h.path.is_empty() {
            f.error(p.key("path"), "missing required field \"path\"");
        } else if !h.path.starts_with('/') {
            f.error(p.key("path"), format!("invalid hostPath {:?}: must be an absolute path", h.path));
        } else if let Err(why) = no_backsteps(&h.path) {
            f.error(p.key("path"), format!("invalid hostPath {:?}: {why}", h.path));
        }
        if let Some(t) = h.type_.as_deref() {
            f.enumeration(p.key("type"), "hostPath type", t, &HOST_PATH_TYPES);
        }
    }
    if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
        quantity(f, path.key("emptyDir").key("sizeLimit"), "sizeLimit", &limit.0);
    }
}

/// Checks a mount's subPath and subPathExpr: relative, and never above the volume.
pub fn mount(m: &VolumeMount, path: &FieldPath, f: &mut Findings) {
    for (field, value) in [("subPath", &m.sub_path), ("subPathExpr", &m.sub_path_expr)] {
        if let Some(value) = value.as_deref()
            && let Err(why) = descending_path(value)
        {
            f.error(path.key(field), format!("invalid {field} {value:?}: {why}"));
        }
    }
    if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
        && m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
    {
        f.error(path.key("subPathExpr"), "subPathExpr and subPath are mutually exclusive");
    }
}

fn key_paths(f: &mut Findings, path: &FieldPath, items: Option<&[KeyToPath]>) {
    for (i, item) in items.into_iter().flatten().enumerate() {
        let p = path.index(i);
        if item.key.is_empty() {
            f.error(p.key("key"), "missing required field \"key\"");
        }
        file_path(f, p.key("path"), &item.path);
        mode(f, p.key("mode"), "mode", item.mode);
    }
}

fn downward_files(f: &mut Findings, path: &FieldPath, items: Option<&[DownwardAPIVolumeFile]>) {
    for (i, item) in items.into_iter().flatten().enumerate() {
        let p = path.index(i);
        file_path(f, p.key("path"), &item.path);
        mode(f, p.key("mode"), "mode", item.mode);
    }
}

/// A file a volume writes: relative to the volume, never above it, and not starting with `..`
/// (the kubelet keeps its own `..data` link beside the files).
fn file_path(f: &mut Findings, path: FieldPath, value: &str) {
    if value.is_empty() {
        f.error(path, "missing required field \"path\"");
        return;
    }
    let checked = descending_path(value).and_then(|()| {
        if value.starts_with("..") { Err("must not start with '..'".to_owned()) } else { Ok(()) }
    });
    if let Err(why) = checked {
        f.error(path, format!("invalid path {value:?}: {why}"));
    }
}

/// A path below a directory: relative, with no `..` element.
pub fn descending_path(value: &str) -> Result<(), String> {
    if value.starts_with('/') {
        return Err("must be a relative path".into());
    }
    no_backsteps(value)
}

fn no_backsteps(value: &str) -> Result<(), String> {
    if value.split('/').any(|part| part == "..") {
        return Err("must not contain '..'".into());
    }
    Ok(())
}

fn mode(f: &mut Findings, path: FieldPath, what: &str, value: Option<i32>) {
    if let Some(m) = value
        && !(0..=MAX_MODE).contains(&m)
    {
        f.error(
            path,
            format!("invalid {what} {m}: must be a file mode between 0 and 0777 (octal; 511 in decimal)"),
        );
    }
}

/// Checks a ConfigMap's or Secret's keys, as `names::config_key` says, each at `field.<key>`.
pub fn keys<'a>(f: &mut Findings, field: &str, keys: impl IntoIterator<Item = &'a String>) {
    let path = FieldPath::root().key(field);
    for key in keys {
        f.check_name(path.key(key.clone()), "key", key, names::config_key);
    }
}
