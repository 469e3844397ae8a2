//! containers-registries.conf(5), version 2: where a reference is pulled from.
//!
//! [`RegistriesConf::parse`] reads one file's text (pure); [`RegistriesConf::merge`] lays drop-ins
//! over it; [`RegistriesConf::load`] is the thin IO layer that finds the files; and
//! [`RegistriesConf::resolve`] turns a normalized reference into the ordered list of
//! [`Endpoint`]s to try (the matching registry's mirrors, then its location), or says it is
//! blocked.
//!
//! The rules, as containers/image applies them:
//! - `[[registry]]` has `prefix` (defaults to `location`), `location`, `insecure`, `blocked`,
//!   `mirror-by-digest-only` and `[[registry.mirror]]` tables (`location`, `insecure`,
//!   `pull-from-mirror` = `all` | `digest-only` | `tag-only`).
//! - A prefix matches a reference (its full text, `docker.io/library/alpine:3.20`) when it is
//!   equal to it or is followed in it by `/`, `:` or `@`; `*.example.com` matches any subdomain of
//!   `example.com` in the host part. The longest match wins.
//! - The endpoint's reference is the endpoint's `location` followed by what follows the matched
//!   prefix (so `prefix = "docker.io"`, `location = "127.0.0.1:5000/hub"` pulls `alpine:3.20` as
//!   `127.0.0.1:5000/hub/library/alpine:3.20`); an empty location (wildcard prefixes only) keeps
//!   the reference.
//! - A blocked registry refuses the pull, mirrors included.
//! - With no matching entry, the reference's own registry is the only endpoint, over TLS.
//! - Within a file the first entry of a prefix wins; a drop-in's entry replaces an earlier
//!   file's entry of the same prefix; a drop-in that sets `unqualified-search-registries`
//!   replaces the list.
//!
//! `unqualified-search-registries` is parsed and kept, but never used to resolve names:
//! Kubernetes normalizes short names to `docker.io` (see [`crate::reference`]), and so do we.
//! Short-name `[aliases]`, `credential-helpers` and `short-name-mode` are accepted and ignored.
//! The v1 format (`[registries.search]` etc.) is refused with an error naming the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::reference::ImageRef;

/// The system file read when `CONTAINERS_REGISTRIES_CONF` is not set.
pub const SYSTEM_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
/// Its drop-in directory (`*.conf`, in name order).
pub const SYSTEM_REGISTRIES_CONF_D: &str = "/etc/containers/registries.conf.d";

/// A registries.conf problem, naming the file.
#[derive(Debug, Error)]
pub enum RegistriesError {
    /// The file could not be read.
    #[error("cannot read registries configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid registries configuration {source_name}: {reason}")]
    Invalid {
        /// The file (or the name the text was given under).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The reference matches a blocked registry.
    #[error("registry {prefix} is blocked in the registries configuration; refusing to pull {reference}")]
    Blocked {
        /// The matching entry's prefix.
        prefix: String,
        /// The reference.
        reference: String,
    },
    /// A rewritten reference is not a valid name.
    #[error("registry entry {prefix} rewrites {reference} to {rewritten:?}, which is not a valid reference")]
    Rewrite {
        /// The matching entry's prefix.
        prefix: String,
        /// The reference.
        reference: String,
        /// What it became.
        rewritten: String,
    },
}

/// When a mirror is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullFromMirror {
    /// For references by tag and by digest.
    #[default]
    All,
    /// Only for references with a digest.
    DigestOnly,
    /// Only for references without a digest.
    TagOnly,
}

/// A `[[registry.mirror]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port][/namespace…]`.
    pub location: String,
    /// TLS without a certificate check, or plain HTTP.
    pub insecure: bool,
    /// When it is used.
    pub pull_from_mirror: PullFromMirror,
}

/// A `[[registry]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// What references it applies to (`host[:port][/namespace…]`, or `*.domain`).
    pub prefix: String,
    /// Where they are pulled from; empty only for wildcard prefixes (no rewrite).
    pub location: String,
    /// TLS without a certificate check, or plain HTTP.
    pub insecure: bool,
    /// Pulls are refused.
    pub blocked: bool,
    /// Mirrors only for references with a digest.
    pub mirror_by_digest_only: bool,
    /// Tried in order before `location`.
    pub mirrors: Vec<Mirror>,
}

/// The merged configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    /// `unqualified-search-registries`: kept for display, never used (Kubernetes' names are
    /// always qualified to `docker.io`).
    pub unqualified_search_registries: Vec<String>,
    /// `[[registry]]` entries, one per prefix.
    pub registries: Vec<Registry>,
    /// Whether the last file that set `unqualified-search-registries` did.
    search_set: bool,
}

/// One place to pull a reference from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference as that endpoint names it (registry host and repository rewritten).
    pub reference: ImageRef,
    /// TLS without a certificate check, or plain HTTP when the endpoint does not speak TLS.
    pub insecure: bool,
    /// A mirror (else the registry's own location).
    pub mirror: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileV2 {
    #[serde(default)]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RegistryV2>,
    #[serde(default)]
    registries: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryV2 {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    pull_from_mirror: Option<String>,
    #[serde(default)]
    mirror: Vec<MirrorV2>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorV2 {
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: Option<String>,
}

fn clean_location(source: &str, field: &str, text: &str) -> Result<String, RegistriesError> {
    let trimmed = text.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(invalid(source, format!("{field} {text:?}: URI schemes are not supported")));
    }
    Ok(trimmed.to_string())
}

fn invalid(source: &str, reason: String) -> RegistriesError {
    RegistriesError::Invalid { source_name: source.to_string(), reason }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let labels_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    labels_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl RegistriesConf {
    /// Parses one file's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, RegistriesError> {
        let file: FileV2 =
            toml::from_str(text).map_err(|e| invalid(source, e.to_string().trim_end().to_string()))?;
        if file.registries.is_some() {
            return Err(invalid(
                source,
                "the v1 format ([registries.search], [registries.insecure], [registries.block]) is not supported; \
                 write [[registry]] tables"
                    .to_string(),
            ));
        }
        let mut registries: Vec<Registry> = Vec::new();
        for entry in file.registry {
            let location = clean_location(source, "location", &entry.location)?;
            let prefix = if entry.prefix.is_empty() {
                if location.is_empty() {
                    return Err(invalid(
                        source,
                        "a [[registry]] has neither prefix nor location".to_string(),
                    ));
                }
                location.clone()
            } else {
                clean_location(source, "prefix", &entry.prefix)?
            };
            let wildcard = prefix.starts_with("*.");
            let good_wildcard = wildcard && !prefix[1..].contains(['*', '/', ':', '@']);
            if prefix.contains('*') && !good_wildcard {
                return Err(invalid(
                    source,
                    format!(
                        "prefix {prefix:?}: a wildcard prefix is *.domain, with no path, port, tag or digest"
                    ),
                ));
            }
            if location.is_empty() && !wildcard {
                return Err(invalid(
                    source,
                    format!("registry {prefix:?} has no location (only *.domain prefixes may omit it)"),
                ));
            }
            if entry.pull_from_mirror.is_some() {
                return Err(invalid(
                    source,
                    format!(
                        "pull-from-mirror is set on registry {prefix:?}; it belongs to its [[registry.mirror]] tables"
                    ),
                ));
            }
            let mut mirrors = Vec::new();
            for m in entry.mirror {
                let mlocation = clean_location(source, "mirror location", &m.location)?;
                if mlocation.is_empty() {
                    return Err(invalid(source, format!("a mirror of registry {prefix:?} has no location")));
                }
                if entry.mirror_by_digest_only && m.pull_from_mirror.is_some() {
                    return Err(invalid(
                        source,
                        format!(
                            "registry {prefix:?} sets mirror-by-digest-only and its mirror {mlocation:?} sets pull-from-mirror; set one"
                        ),
                    ));
                }
                let pull_from_mirror = match m.pull_from_mirror.as_deref() {
                    None | Some("") | Some("all") => PullFromMirror::All,
                    Some("digest-only") => PullFromMirror::DigestOnly,
                    Some("tag-only") => PullFromMirror::TagOnly,
                    Some(other) => {
                        return Err(invalid(
                            source,
                            format!(
                                "mirror {mlocation:?}: pull-from-mirror {other:?} is not all, digest-only or tag-only"
                            ),
                        ));
                    }
                };
                mirrors.push(Mirror { location: mlocation, insecure: m.insecure, pull_from_mirror });
            }
            let registry = Registry {
                prefix,
                location,
                insecure: entry.insecure,
                blocked: entry.blocked,
                mirror_by_digest_only: entry.mirror_by_digest_only,
                mirrors,
            };
            // the same location twice must agree on insecure and blocked
            if let Some(other) =
                registries.iter().find(|r| !registry.location.is_empty() && r.location == registry.location)
            {
                if other.insecure != registry.insecure {
                    return Err(invalid(
                        source,
                        format!(
                            "registry {:?} is defined twice with different insecure settings",
                            registry.location
                        ),
                    ));
                }
                if other.blocked != registry.blocked {
                    return Err(invalid(
                        source,
                        format!(
                            "registry {:?} is defined twice with different blocked settings",
                            registry.location
                        ),
                    ));
                }
            }
            // the first entry of a prefix wins, as in containers/image
            if !registries.iter().any(|r| r.prefix == registry.prefix) {
                registries.push(registry);
            }
        }
        let search_set = file.unqualified_search_registries.is_some();
        let mut search = Vec::new();
        for host in file.unqualified_search_registries.unwrap_or_default() {
            let host = clean_location(source, "unqualified-search-registries entry", &host)?;
            if !valid_host(&host) {
                return Err(invalid(
                    source,
                    format!("unqualified-search-registries entry {host:?} is not a host[:port]"),
                ));
            }
            search.push(host);
        }
        Ok(Self { unqualified_search_registries: search, registries, search_set })
    }

    /// Lays `drop_in` over `self`: its entries replace those with the same prefix, and its
    /// `unqualified-search-registries`, when set, replaces the list.
    pub fn merge(mut self, drop_in: Self) -> Self {
        for registry in drop_in.registries {
            match self.registries.iter_mut().find(|r| r.prefix == registry.prefix) {
                Some(slot) => *slot = registry,
                None => self.registries.push(registry),
            }
        }
        if drop_in.search_set {
            self.unqualified_search_registries = drop_in.unqualified_search_registries;
            self.search_set = true;
        }
        self
    }

    /// Reads the configuration the container tools use: the file named by
    /// `CONTAINERS_REGISTRIES_CONF` alone when `env_file` is `Some` (a missing file is an error),
    /// else `/etc/containers/registries.conf` (if present) and then each
    /// `/etc/containers/registries.conf.d/*.conf` in name order.
    ///
    /// Unlike containers/image, the variable also replaces the drop-in directory, so that a
    /// caller (or a test) gets exactly the file it names; and `~/.config/containers/` is not read
    /// (the daemon runs as root, for every user).
    pub fn load(env_file: Option<&Path>) -> Result<Self, RegistriesError> {
        match env_file {
            Some(path) => Self::read(path),
            None => Self::load_system(Path::new(SYSTEM_REGISTRIES_CONF), Path::new(SYSTEM_REGISTRIES_CONF_D)),
        }
    }

    /// [`RegistriesConf::load`] with the variable read from the environment.
    pub fn load_from_env() -> Result<Self, RegistriesError> {
        let var = std::env::var_os("CONTAINERS_REGISTRIES_CONF").filter(|v| !v.is_empty());
        Self::load(var.as_deref().map(Path::new))
    }

    /// A main file (optional) and a drop-in directory (optional).
    pub fn load_system(file: &Path, dir: &Path) -> Result<Self, RegistriesError> {
        let mut conf = match std::fs::read_to_string(file) {
            Ok(text) => Self::parse(&text, &file.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(source) => {
                return Err(RegistriesError::Read { path: file.to_path_buf(), source });
            }
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(conf),
            Err(source) => {
                return Err(RegistriesError::Read { path: dir.to_path_buf(), source });
            }
        };
        let mut drop_ins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        drop_ins.sort();
        for path in drop_ins {
            conf = conf.merge(Self::read(&path)?);
        }
        Ok(conf)
    }

    fn read(path: &Path) -> Result<Self, RegistriesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RegistriesError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The entry that applies to `reference`, with the length of the matched text.
    pub fn find(&self, reference: &ImageRef) -> Option<(&Registry, usize)> {
        let text = reference.to_string();
        let mut best: Option<(&Registry, usize)> = None;
        for registry in &self.registries {
            if let Some(len) = matching_prefix(&text, &registry.prefix)
                && best.is_none_or(|(_, l)| len > l)
            {
                best = Some((registry, len));
            }
        }
        best
    }

    /// The endpoints to try for `reference`, in order: mirrors (those that apply), then the
    /// registry's location; or [`RegistriesError::Blocked`].
    pub fn resolve(&self, reference: &ImageRef) -> Result<Vec<Endpoint>, RegistriesError> {
        let Some((registry, len)) = self.find(reference) else {
            return Ok(vec![Endpoint { reference: reference.clone(), insecure: false, mirror: false }]);
        };
        if registry.blocked {
            return Err(RegistriesError::Blocked {
                prefix: registry.prefix.clone(),
                reference: reference.to_string(),
            });
        }
        let by_digest = reference.digest().is_some();
        let mut out = Vec::new();
        for m in &registry.mirrors {
            let applies = if registry.mirror_by_digest_only {
                by_digest
            } else {
                match m.pull_from_mirror {
                    PullFromMirror::All => true,
                    PullFromMirror::DigestOnly => by_digest,
                    PullFromMirror::TagOnly => !by_digest,
                }
            };
            if applies {
                out.push(Endpoint {
                    reference: rewrite(reference, &registry.prefix, len, &m.location)?,
                    insecure: m.insecure,
                    mirror: true,
                });
            }
        }
        out.push(Endpoint {
            reference: rewrite(reference, &registry.prefix, len, &registry.location)?,
            insecure: registry.insecure,
            mirror: false,
        });
        Ok(out)
    }
}

/// The length of `reference` matched by `prefix`, as containers/image's `refMatchingPrefix`.
fn matching_prefix(reference: &str, prefix: &str) -> Option<usize> {
    let end = if let Some(domain) = prefix.strip_prefix('*') {
        // "*.example.com": ".example.com" inside the host part
        let at = reference.find(domain)?;
        if reference[..at].contains('/') || at == 0 {
            return None;
        }
        at + domain.len()
    } else {
        if !reference.starts_with(prefix) {
            return None;
        }
        prefix.len()
    };
    match reference.as_bytes().get(end) {
        None | Some(b'/' | b':' | b'@') => Some(end),
        Some(_) => None,
    }
}

/// `location` followed by what follows the first `len` bytes of the reference's text.
fn rewrite(
    reference: &ImageRef,
    prefix: &str,
    len: usize,
    location: &str,
) -> Result<ImageRef, RegistriesError> {
    if location.is_empty() {
        return Ok(reference.clone());
    }
    let text = reference.to_string();
    let rewritten = format!("{location}{}", &text[len..]);
    let fail = || RegistriesError::Rewrite {
        prefix: prefix.to_string(),
        reference: text.clone(),
        rewritten: rewritten.clone(),
    };
    // split without docker.io normalization: the first component is the host
    let (host, rest) = rewritten.split_once('/').ok_or_else(fail)?;
    if !valid_host(host) {
        return Err(fail());
    }
    let (name, digest) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (rest, None),
    };
    let (repository, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
        _ => (name, None),
    };
    // check the pieces with the full parser, on a host it cannot mistake for docker.io
    let check = format!("{host}/{rest}");
    let parsed = ImageRef::parse(&check).map_err(|_| fail())?;
    if parsed.repository() != repository || parsed.registry() != host {
        return Err(fail());
    }
    let (tag, digest) = if tag.is_none() && digest.is_none() {
        (reference.tag().map(str::to_string), reference.digest().map(str::to_string))
    } else {
        (tag, digest)
    };
    Ok(ImageRef::from_raw(host, repository, tag, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> ImageRef {
        ImageRef::parse(text).unwrap()
    }

    fn endpoints(conf: &RegistriesConf, image: &str) -> Vec<(String, bool, bool)> {
        conf.resolve(&r(image))
            .unwrap()
            .into_iter()
            .map(|e| (e.reference.to_string(), e.insecure, e.mirror))
            .collect()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn no_entry_means_the_registry_itself_over_tls() {
        let conf = RegistriesConf::parse("", "empty").unwrap();
        assert_eq!(
            endpoints(&conf, "alpine:3.20"),
            [("docker.io/library/alpine:3.20".to_string(), false, false)]
        );
    }

    #[test]
    fn mirrors_then_location_rewritten_by_prefix() {
        let conf = RegistriesConf::parse(
            r#"
unqualified-search-registries = ["docker.io", "quay.io"]

[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"

[[registry.mirror]]
location = "127.0.0.1:5000/hub"
insecure = true

[[registry.mirror]]
location = "mirror.example.com"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "docker.io/library/alpine"
location = "internal.example.com:8443/base/alpine"
"#,
            "test.conf",
        )
        .unwrap();
        assert_eq!(conf.unqualified_search_registries, ["docker.io", "quay.io"]);
        assert_eq!(
            endpoints(&conf, "user/app:1"),
            [
                ("127.0.0.1:5000/hub/user/app:1".to_string(), true, true),
                ("registry-1.docker.io/user/app:1".to_string(), false, false),
            ]
        );
        assert_eq!(
            endpoints(&conf, &format!("busybox@{D}")),
            [
                (format!("127.0.0.1:5000/hub/library/busybox@{D}"), true, true),
                (format!("mirror.example.com/library/busybox@{D}"), false, true),
                (format!("registry-1.docker.io/library/busybox@{D}"), false, false),
            ]
        );
        // the longer prefix wins
        assert_eq!(
            endpoints(&conf, "alpine:3.20"),
            [("internal.example.com:8443/base/alpine:3.20".to_string(), false, false)]
        );
        // a prefix matches only at a separator
        assert_eq!(
            endpoints(&conf, "alpine-extra:1"),
            [
                ("127.0.0.1:5000/hub/library/alpine-extra:1".to_string(), true, true),
                ("registry-1.docker.io/library/alpine-extra:1".to_string(), false, false),
            ]
        );
    }

    #[test]
    fn prefix_matching_table() {
        let cases = [
            ("docker.io/library/alpine:3", "docker.io", Some(9)),
            ("docker.io/library/alpine:3", "docker.io/library/alpine", Some(24)),
            ("docker.io/library/alpine:3", "docker.io/library/alp", None),
            ("docker.io/library/alpine@sha256:x", "docker.io/library/alpine", Some(24)),
            ("docker.io/library/alpine", "docker.io/library/alpine", Some(24)),
            ("docker.io.evil.com/x:1", "docker.io", None),
            ("a.b.example.com/x:1", "*.example.com", Some(15)),
            ("example.com/x:1", "*.example.com", None),
            ("other.com/a.example.com/x:1", "*.example.com", None),
            ("a.example.com:5000/x:1", "*.example.com", Some(13)),
            ("a.example.community/x:1", "*.example.com", None),
        ];
        for (reference, prefix, want) in cases {
            assert_eq!(matching_prefix(reference, prefix), want, "{reference} vs {prefix}");
        }
    }

    #[test]
    fn wildcards_blocked_and_mirror_rules() {
        let conf = RegistriesConf::parse(
            r#"
[[registry]]
prefix = "*.corp.example.com"
insecure = true

[[registry]]
prefix = "*.mirrored.example.com"
location = "cache.example.com"

[[registry]]
location = "bad.example.com"
blocked = true
[[registry.mirror]]
location = "never.example.com"

[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "quay-mirror.example.com"

[[registry]]
location = "ghcr.io"
[[registry.mirror]]
location = "ghcr-tags.example.com"
pull-from-mirror = "tag-only"
"#,
            "test.conf",
        )
        .unwrap();
        assert_eq!(
            endpoints(&conf, "git.corp.example.com/team/app:1"),
            [("git.corp.example.com/team/app:1".to_string(), true, false)]
        );
        assert_eq!(
            endpoints(&conf, "eu.mirrored.example.com/app:1"),
            [("cache.example.com/app:1".to_string(), false, false)]
        );
        let err = conf.resolve(&r("bad.example.com/x:1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "registry bad.example.com is blocked in the registries configuration; refusing to pull bad.example.com/x:1"
        );
        assert_eq!(endpoints(&conf, "quay.io/a/b:1"), [("quay.io/a/b:1".to_string(), false, false)]);
        assert_eq!(endpoints(&conf, &format!("quay.io/a/b@{D}")).len(), 2);
        assert_eq!(endpoints(&conf, "ghcr.io/a/b:1").len(), 2);
        assert_eq!(endpoints(&conf, &format!("ghcr.io/a/b@{D}")).len(), 1);
    }

    #[test]
    fn first_entry_of_a_prefix_wins_and_drop_ins_replace() {
        let main = RegistriesConf::parse(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "first.example.com"
[[registry]]
prefix = "docker.io"
location = "second.example.com"
[[registry]]
location = "quay.io"
"#,
            "main",
        )
        .unwrap();
        assert_eq!(main.registries.len(), 2);
        assert_eq!(main.registries[0].location, "first.example.com");
        let drop_in = RegistriesConf::parse(
            r#"
[[registry]]
prefix = "docker.io"
location = "127.0.0.1:5000"
insecure = true
"#,
            "drop-in",
        )
        .unwrap();
        let merged = main.clone().merge(drop_in);
        assert_eq!(merged.unqualified_search_registries, ["docker.io"]);
        assert_eq!(
            endpoints(&merged, "alpine"),
            [("127.0.0.1:5000/library/alpine:latest".to_string(), true, false)]
        );
        assert_eq!(merged.registries.len(), 2);
        let search = RegistriesConf::parse(r#"unqualified-search-registries = []"#, "d2").unwrap();
        assert!(merged.merge(search).unqualified_search_registries.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let cases = [
            ("[[registry]]\ninsecure = true", "a [[registry]] has neither prefix nor location"),
            ("[[registry]]\nlocation = \"https://x.io\"", "URI schemes are not supported"),
            ("[[registry]]\nprefix = \"x.io/a\"", "has no location"),
            ("[[registry]]\nprefix = \"*.x.io/a\"", "a wildcard prefix is *.domain"),
            ("[[registry]]\nprefix = \"a.*.x.io\"\nlocation = \"y\"", "a wildcard prefix is *.domain"),
            (
                "[[registry]]\nlocation = \"x.io\"\npull-from-mirror = \"all\"",
                "belongs to its [[registry.mirror]]",
            ),
            (
                "[[registry]]\nlocation = \"x.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"all\"",
                "set one",
            ),
            (
                "[[registry]]\nlocation = \"x.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"some\"",
                "is not all",
            ),
            ("[[registry]]\nlocation = \"x.io\"\n[[registry.mirror]]\ninsecure = true", "has no location"),
            (
                "[[registry]]\nlocation = \"x.io\"\nprefix = \"a.io\"\n[[registry]]\nlocation = \"x.io\"\nprefix = \"b.io\"\ninsecure = true",
                "different insecure settings",
            ),
            ("unqualified-search-registries = [\"not a host\"]", "is not a host[:port]"),
            ("[registries.search]\nregistries = [\"docker.io\"]", "v1 format"),
            ("[[registry]\n", "invalid registries configuration conf.d/x.conf"),
            ("[[registry]]\nlocation = 5", "invalid"),
        ];
        for (text, want) in cases {
            let err = RegistriesConf::parse(text, "conf.d/x.conf").expect_err(text);
            let msg = err.to_string();
            assert!(msg.starts_with("invalid registries configuration conf.d/x.conf: "), "{msg}");
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
    }

    #[test]
    fn a_rewrite_into_an_invalid_name_is_an_error() {
        let conf =
            RegistriesConf::parse("[[registry]]\nprefix = \"docker.io\"\nlocation = \"Bad_Host\"", "t")
                .unwrap();
        let err = conf.resolve(&r("alpine")).unwrap_err();
        assert!(err.to_string().contains("not a valid reference"), "{err}");
    }

    #[test]
    fn loads_main_file_then_drop_ins_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        let d = dir.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(&main, "[[registry]]\nprefix = \"docker.io\"\nlocation = \"a.example.com\"\n")
            .unwrap();
        std::fs::write(
            d.join("20-b.conf"),
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"c.example.com\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.conf"),
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"b.example.com\"\n",
        )
        .unwrap();
        std::fs::write(d.join("30-ignored.txt"), "not toml [").unwrap();
        let conf = RegistriesConf::load_system(&main, &d).unwrap();
        assert_eq!(endpoints(&conf, "x/y:1"), [("c.example.com/x/y:1".to_string(), false, false)]);
        // missing files are fine for the system locations, not for the variable
        let none = RegistriesConf::load_system(&dir.path().join("no"), &dir.path().join("no.d")).unwrap();
        assert!(none.registries.is_empty());
        let err = RegistriesConf::load(Some(&dir.path().join("missing.conf"))).unwrap_err();
        assert!(err.to_string().starts_with("cannot read registries configuration"), "{err}");
        let only = RegistriesConf::load(Some(&d.join("10-a.conf"))).unwrap();
        assert_eq!(endpoints(&only, "x/y:1"), [("b.example.com/x/y:1".to_string(), false, false)]);
    }
}
