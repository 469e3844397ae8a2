//! Registry credentials: containers-auth.json(5), docker's `config.json`, and
//! `kubernetes.io/dockerconfigjson` Secrets (`imagePullSecrets`).
//!
//! All three are the same JSON shape, `{"auths": {"<key>": {"auth": base64("user:password")}}}`
//! (or `username`/`password`, or `registrytoken` for a bearer token), where a key is a registry
//! host (`quay.io`, `localhost:5000`), a host with a namespace or repository
//! (`quay.io/team`, `quay.io/team/app`), a URL (`https://index.docker.io/v1/`, as `docker login`
//! writes for Docker Hub), or a `*.domain` wildcard host (Kubernetes' keyring). The legacy
//! `.dockercfg` form (the same map without the `auths` wrapper) is read too.
//!
//! [`Keyring::lookup`] returns every matching credential, the most specific key first
//! (`host/ns/repo`, then `host/ns`, then `host`, then wildcard hosts), sources in the order they
//! were added: the kubelet adds the pod's pull secrets first, then the node's files, and tries
//! each credential in turn. `docker.io`, `index.docker.io` and `registry-1.docker.io` are one host.
//!
//! Credential helpers (`credHelpers`, `credsStore`) and `identitytoken` (an OAuth refresh token)
//! are not supported; entries that only have those are skipped with a debug log.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use thiserror::Error;

/// A credentials file or Secret that cannot be read.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not valid.
    #[error("invalid credentials in {source_name}: {reason}")]
    Invalid {
        /// The file or Secret.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or token), sent as basic auth or exchanged for a bearer token.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// A registry bearer token, used as is.
    Bearer(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A credential and where it came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The credential.
    pub credential: Credential,
    /// The key that matched (`quay.io/team`).
    pub key: String,
    /// The file or Secret it is from.
    pub source: String,
}

#[derive(Clone, Debug)]
struct Entry {
    host: String,
    path: String,
    credential: Credential,
    key: String,
    source: String,
}

/// Credentials from any number of sources, searched together.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: Option<std::collections::BTreeMap<String, AuthEntry>>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn invalid(source: &str, reason: impl Into<String>) -> AuthError {
    AuthError::Invalid { source_name: source.to_string(), reason: reason.into() }
}

/// The canonical host for Docker Hub's aliases.
fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_string(),
        _ => host,
    }
}

/// `https://index.docker.io/v1/` → (`docker.io`, ``); `quay.io/team/app` → (`quay.io`, `team/app`).
fn parse_key(key: &str) -> Option<(String, String)> {
    let key = key.trim();
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let key = key.trim_end_matches('/');
    let (host, path) = match key.split_once('/') {
        Some((h, p)) => (h, p),
        None => (key, ""),
    };
    if host.is_empty() {
        return None;
    }
    // docker's URL keys carry the API version, not a repository
    let path = match path {
        "v1" | "v2" => "",
        p => p.strip_prefix("v1/").or_else(|| p.strip_prefix("v2/")).unwrap_or(p),
    };
    Some((canonical_host(host), path.trim_matches('/').to_string()))
}

/// Whether a key's host (possibly `*.domain` or with `*` labels) matches the registry's host.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (p_name, p_port) = pattern.rsplit_once(':').map_or((pattern, None), |(n, p)| (n, Some(p)));
    let (h_name, h_port) = host.rsplit_once(':').map_or((host, None), |(n, p)| (n, Some(p)));
    if p_port != h_port {
        return false;
    }
    let p: Vec<&str> = p_name.split('.').collect();
    let h: Vec<&str> = h_name.split('.').collect();
    p.len() == h.len() && p.iter().zip(&h).all(|(p, h)| *p == "*" || p == h)
}

impl Keyring {
    /// An empty keyring (anonymous pulls).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the entries of a `config.json` / `auth.json` / `.dockercfg` text; `source` names it.
    pub fn add_json(&mut self, bytes: &[u8], source: &str) -> Result<(), AuthError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(source, format!("not JSON: {e}")))?;
        let auths: std::collections::BTreeMap<String, AuthEntry> = if value.get("auths").is_some() {
            let config: ConfigJson =
                serde_json::from_value(value).map_err(|e| invalid(source, e.to_string()))?;
            config.auths.unwrap_or_default()
        } else if value.is_object()
            && value.as_object().is_some_and(|o| o.values().all(|v| v.get("auth").is_some()))
        {
            // legacy .dockercfg: the map itself
            serde_json::from_value(value).map_err(|e| invalid(source, e.to_string()))?
        } else {
            // a docker config with only credHelpers etc.: nothing for us
            Default::default()
        };
        for (key, entry) in auths {
            let Some((host, path)) = parse_key(&key) else {
                return Err(invalid(source, format!("key {key:?} names no registry")));
            };
            let credential = if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
                Credential::Bearer(token)
            } else if let (Some(u), Some(p)) = (&entry.username, &entry.password)
                && !u.is_empty()
            {
                Credential::Basic { username: u.clone(), password: p.clone() }
            } else if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| invalid(source, format!("auth of {key:?} is not base64: {e}")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| invalid(source, format!("auth of {key:?} is not UTF-8")))?;
                let Some((username, password)) = decoded.split_once(':') else {
                    return Err(invalid(source, format!("auth of {key:?} is not user:password")));
                };
                Credential::Basic { username: username.to_string(), password: password.to_string() }
            } else {
                if entry.identitytoken.is_some() {
                    tracing::debug!(%source, %key, "skipping an identitytoken entry: not supported");
                }
                continue;
            };
            self.entries.push(Entry { host, path, credential, key, source: source.to_string() });
        }
        Ok(())
    }

    /// Adds a file; a missing file adds nothing.
    pub fn add_file(&mut self, path: &Path) -> Result<(), AuthError> {
        match std::fs::read(path) {
            Ok(bytes) => self.add_json(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(AuthError::Read { path: path.to_path_buf(), source }),
        }
    }

    /// Adds a pull Secret's data (values already base64-decoded, as Kubernetes' `ByteString`
    /// holds them): `kubernetes.io/dockerconfigjson` has `.dockerconfigjson`,
    /// `kubernetes.io/dockercfg` has `.dockercfg`. `name` is `namespace/name`.
    pub fn add_secret(
        &mut self,
        name: &str,
        secret_type: Option<&str>,
        data: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<(), AuthError> {
        let source = format!("secret {name}");
        let key = match secret_type {
            Some("kubernetes.io/dockerconfigjson") => ".dockerconfigjson",
            Some("kubernetes.io/dockercfg") => ".dockercfg",
            other => {
                return Err(invalid(
                    &source,
                    format!(
                        "type {:?} is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg",
                        other.unwrap_or("")
                    ),
                ));
            }
        };
        let bytes = data.get(key).ok_or_else(|| invalid(&source, format!("it has no {key} key")))?;
        self.add_json(bytes, &source)
    }

    /// The node's files, in the order they are searched: `REGISTRY_AUTH_FILE`, else
    /// `${XDG_RUNTIME_DIR}/containers/auth.json`; then `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`;
    /// then `${DOCKER_CONFIG:-~/.docker}/config.json`; then `~/.dockercfg`.
    pub fn node_files(env: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let mut files = Vec::new();
        if let Some(f) = var("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(f));
        } else if let Some(run) = var("XDG_RUNTIME_DIR") {
            files.push(Path::new(&run).join("containers/auth.json"));
        }
        let config_home =
            var("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".config")));
        if let Some(c) = config_home {
            files.push(c.join("containers/auth.json"));
        }
        let docker =
            var("DOCKER_CONFIG").map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".docker")));
        if let Some(d) = docker {
            files.push(d.join("config.json"));
        }
        if let Some(h) = &home {
            files.push(h.join(".dockercfg"));
        }
        files
    }

    /// A keyring of the node's files ([`Keyring::node_files`] from the process environment).
    pub fn from_node_files() -> Result<Self, AuthError> {
        let mut keyring = Self::new();
        for file in Self::node_files(|k| std::env::var(k).ok()) {
            keyring.add_file(&file)?;
        }
        Ok(keyring)
    }

    /// Every credential for `registry` (`host[:port]`) and `repository` (`team/app`), the most
    /// specific key first; among equally specific keys, in the order they were added.
    pub fn lookup(&self, registry: &str, repository: &str) -> Vec<Found> {
        let host = canonical_host(registry);
        let mut matches: Vec<(usize, usize, &Entry)> = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let exact_host = e.host == host;
            if !exact_host && !host_matches(&e.host, &host) {
                continue;
            }
            let path_ok = e.path.is_empty()
                || repository == e.path
                || repository.strip_prefix(&e.path).is_some_and(|rest| rest.starts_with('/'));
            if !path_ok {
                continue;
            }
            // rank: path length (more specific first), exact hosts before wildcards
            let rank = e.path.len() * 2 + usize::from(exact_host);
            matches.push((rank, i, e));
        }
        matches.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        matches
            .into_iter()
            .map(|(_, _, e)| Found {
                credential: e.credential.clone(),
                key: e.key.clone(),
                source: e.source.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(u: &str, p: &str) -> Credential {
        Credential::Basic { username: u.into(), password: p.into() }
    }

    fn found(k: &Keyring, registry: &str, repo: &str) -> Vec<(Credential, String)> {
        k.lookup(registry, repo).into_iter().map(|f| (f.credential, f.key)).collect()
    }

    #[test]
    fn most_specific_key_first() {
        let json = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/team": {{"auth": "{}"}},
                "quay.io/team/app": {{"username": "app", "password": "p:w"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "localhost:5000": {{"registrytoken": "tok"}},
                "*.corp.example.com": {{"auth": "{}"}},
                "only.example.com": {{"identitytoken": "refresh"}}
            }}}}"#,
            b64("host:1"),
            b64("team:2"),
            b64("hub:3:with:colons"),
            b64("wild:4")
        );
        let mut k = Keyring::new();
        k.add_json(json.as_bytes(), "auth.json").unwrap();
        assert_eq!(
            found(&k, "quay.io", "team/app"),
            [
                (basic("app", "p:w"), "quay.io/team/app".into()),
                (basic("team", "2"), "quay.io/team".into()),
                (basic("host", "1"), "quay.io".into()),
            ]
        );
        assert_eq!(
            found(&k, "quay.io", "team/other"),
            [(basic("team", "2"), "quay.io/team".into()), (basic("host", "1"), "quay.io".into())]
        );
        // a namespace matches at a path boundary only
        assert_eq!(found(&k, "quay.io", "teamx/app"), [(basic("host", "1"), "quay.io".into())]);
        assert_eq!(
            found(&k, "docker.io", "library/alpine"),
            [(basic("hub", "3:with:colons"), "https://index.docker.io/v1/".into())]
        );
        assert_eq!(
            found(&k, "localhost:5000", "x"),
            [(Credential::Bearer("tok".into()), "localhost:5000".into())]
        );
        assert!(found(&k, "localhost", "x").is_empty());
        assert_eq!(found(&k, "git.corp.example.com", "a").len(), 1);
        assert!(found(&k, "a.b.corp.example.com", "a").is_empty());
        assert!(found(&k, "only.example.com", "a").is_empty());
        assert!(found(&k, "ghcr.io", "a").is_empty());
    }

    #[test]
    fn sources_in_order_and_secrets() {
        let mut k = Keyring::new();
        let secret = format!(r#"{{"auths":{{"registry.example.com":{{"auth":"{}"}}}}}}"#, b64("s:1"));
        let data = std::collections::BTreeMap::from([(".dockerconfigjson".to_string(), secret.into_bytes())]);
        k.add_secret("default/pull", Some("kubernetes.io/dockerconfigjson"), &data).unwrap();
        let file = format!(r#"{{"auths":{{"registry.example.com":{{"auth":"{}"}}}}}}"#, b64("f:2"));
        k.add_json(file.as_bytes(), "/root/.docker/config.json").unwrap();
        let legacy = format!(r#"{{"registry.example.com":{{"auth":"{}","email":"x@y"}}}}"#, b64("l:3"));
        let data = std::collections::BTreeMap::from([(".dockercfg".to_string(), legacy.into_bytes())]);
        k.add_secret("default/old", Some("kubernetes.io/dockercfg"), &data).unwrap();
        let got = k.lookup("registry.example.com", "app");
        let sources: Vec<&str> = got.iter().map(|f| f.source.as_str()).collect();
        assert_eq!(sources, ["secret default/pull", "/root/.docker/config.json", "secret default/old"]);
        assert_eq!(got[0].credential, basic("s", "1"));
    }

    #[test]
    fn bad_content_is_named() {
        let mut k = Keyring::new();
        let cases: [(&[u8], &str); 4] = [
            (b"{", "invalid credentials in f: not JSON"),
            (br#"{"auths":{"x.io":{"auth":"!!"}}}"#, "auth of \"x.io\" is not base64"),
            (br#"{"auths":{"x.io":{"auth":"bm9jb2xvbg=="}}}"#, "auth of \"x.io\" is not user:password"),
            (br#"{"auths":{"/":{"auth":"YTpi"}}}"#, "names no registry"),
        ];
        for (bytes, want) in cases {
            let err = k.add_json(bytes, "f").unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = k.add_secret("ns/s", Some("Opaque"), &Default::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid credentials in secret ns/s: type \"Opaque\" is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
        );
        let err = k
            .add_secret("ns/s", Some("kubernetes.io/dockerconfigjson"), &Default::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid credentials in secret ns/s: it has no .dockerconfigjson key");
        // credHelpers only: nothing, no error
        k.add_json(br#"{"credHelpers":{"gcr.io":"gcloud"}}"#, "f").unwrap();
        assert!(k.lookup("gcr.io", "x").is_empty());
        // debug output never shows a password
        assert_eq!(format!("{:?}", basic("u", "secret")), "Basic(u, <redacted>)");
    }

    #[test]
    fn node_file_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let files = Keyring::node_files(env(&[("HOME", "/root"), ("XDG_RUNTIME_DIR", "/run/user/0")]));
        let want = [
            "/run/user/0/containers/auth.json",
            "/root/.config/containers/auth.json",
            "/root/.docker/config.json",
            "/root/.dockercfg",
        ];
        assert_eq!(files, want.map(PathBuf::from));
        let files = Keyring::node_files(env(&[
            ("REGISTRY_AUTH_FILE", "/tmp/a.json"),
            ("XDG_RUNTIME_DIR", "/run/user/0"),
            ("DOCKER_CONFIG", "/etc/dock"),
        ]));
        assert_eq!(files, ["/tmp/a.json", "/etc/dock/config.json"].map(PathBuf::from));
    }

    #[test]
    fn files_missing_or_present() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Keyring::new();
        k.add_file(&dir.path().join("none.json")).unwrap();
        let f = dir.path().join("auth.json");
        std::fs::write(&f, format!(r#"{{"auths":{{"h.io":{{"auth":"{}"}}}}}}"#, b64("a:b"))).unwrap();
        k.add_file(&f).unwrap();
        assert_eq!(k.lookup("h.io", "x")[0].source, f.display().to_string());
    }
}
