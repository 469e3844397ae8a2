//! A container's environment, resolved as the kubelet's `makeEnvironmentVariables` does.
//!
//! Order of work, as in the kubelet:
//! 1. `envFrom` sources, in order; later sources override earlier ones; a `prefix` is prepended.
//! 2. `env` entries in declaration order: a literal `value` is `$(VAR)`-expanded against the variables
//!    defined so far (then the service variables); otherwise `valueFrom` is resolved.
//! 3. Service variables not already set are appended.
//!
//! The result keeps declaration order (the kubelet's is a Go map, so unordered). A missing optional
//! ConfigMap, Secret or key leaves the variable unset (not empty). Secret bytes that are not UTF-8 are
//! converted lossily (a local limitation: the kubelet passes raw bytes).

use crate::expand::expand;
use crate::quantity::{Quantity, div_ceil};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, ObjectFieldSelector, Pod, Secret};
use std::collections::{BTreeMap, HashMap};

/// Where ConfigMaps and Secrets come from (the engine's store; a map in tests).
pub trait ObjectLookup {
    /// The ConfigMap `namespace/name`, or `None` when it does not exist.
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError>;
    /// The Secret `namespace/name`, or `None` when it does not exist.
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError>;
}

/// A lookup that failed for a reason other than "not found".
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct LookupError(pub String);

/// An in-memory [`ObjectLookup`] keyed by `(namespace, name)`.
#[derive(Debug, Default, Clone)]
pub struct MapLookup {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

impl MapLookup {
    /// Adds a ConfigMap, keyed by its own namespace (default `default`) and name.
    pub fn with_config_map(mut self, cm: ConfigMap) -> Self {
        let key = object_key(&cm.metadata);
        self.config_maps.insert(key, cm);
        self
    }

    /// Adds a Secret, keyed by its own namespace (default `default`) and name.
    pub fn with_secret(mut self, secret: Secret) -> Self {
        let key = object_key(&secret.metadata);
        self.secrets.insert(key, secret);
        self
    }
}

fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_else(|| "default".to_owned()), meta.name.clone().unwrap_or_default())
}

impl ObjectLookup for MapLookup {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        Ok(self.config_maps.get(&(namespace.to_owned(), name.to_owned())).cloned())
    }
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError> {
        Ok(self.secrets.get(&(namespace.to_owned(), name.to_owned())).cloned())
    }
}

/// Facts about the pod that are not in its spec.
#[derive(Debug, Default, Clone)]
pub struct EnvContext {
    /// The pod's IP (`status.podIP`).
    pub pod_ip: Option<String>,
    /// The node's IP (`status.hostIP`).
    pub host_ip: Option<String>,
    /// Node allocatable CPU, used for `limits.cpu` when the container sets no limit.
    pub node_allocatable_cpu: Option<String>,
    /// Node allocatable memory, used for `limits.memory` when the container sets no limit.
    pub node_allocatable_memory: Option<String>,
    /// Service link variables (`FOO_SERVICE_HOST`, ...), lowest precedence.
    pub service_env: BTreeMap<String, String>,
}

/// Why a container's environment could not be built: names the container, the variable (or the
/// `envFrom` entry) and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("container {container:?}: {what}: {problem}")]
pub struct EnvError {
    pub container: String,
    /// `env var "NAME"` or `envFrom[i]`.
    pub what: String,
    pub problem: Box<EnvProblem>,
}

/// What is wrong with one variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvProblem {
    #[error("{kind} \"{namespace}/{name}\" not found")]
    ObjectNotFound { kind: &'static str, namespace: String, name: String },
    #[error("key {key:?} not found in {kind} \"{namespace}/{name}\"")]
    KeyNotFound { kind: &'static str, namespace: String, name: String, key: String },
    #[error("looking up {kind} \"{namespace}/{name}\": {source}")]
    Lookup { kind: &'static str, namespace: String, name: String, source: LookupError },
    #[error("unsupported fieldRef path {0:?}")]
    UnsupportedFieldPath(String),
    #[error("unsupported resourceFieldRef resource {0:?}")]
    UnsupportedResource(String),
    #[error("resourceFieldRef for container {0:?}, which is not in the pod")]
    UnknownResourceContainer(String),
    #[error(transparent)]
    Quantity(crate::quantity::QuantityError),
    #[error("resourceFieldRef divisor {0:?} must be positive")]
    BadDivisor(String),
    #[error("resource value {0:?} is out of range")]
    OutOfRange(String),
}

fn env_err(container: &str, what: &str, problem: EnvProblem) -> EnvError {
    EnvError { container: container.to_owned(), what: what.to_owned(), problem: Box::new(problem) }
}

fn var_what(name: &str) -> String {
    format!("env var {name:?}")
}

/// An ordered environment with last-write-wins by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Environment {
    /// Sets `name`, replacing an earlier value in place.
    pub fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }

    /// The variables, in the order they were first set.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// `NAME=value` strings, for `execve`.
    pub fn to_env_strings(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

/// Resolves `container`'s environment in `pod`.
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
    lookup: &dyn ObjectLookup,
) -> Result<Environment, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cname = container.name.as_str();
    let mut cache = Cache::default();
    let mut env = Environment::default();

    for (i, from) in container.env_from.iter().flatten().enumerate() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(cm_ref) = &from.config_map_ref {
            let what = format!("envFrom[{i}]");
            let optional = cm_ref.optional == Some(true);
            let Some(cm) = cache.config_map(lookup, namespace, &cm_ref.name, cname, &what)? else {
                if optional {
                    continue;
                }
                return Err(not_found(cname, what, "configmap", namespace, &cm_ref.name));
            };
            for (k, v) in cm.data.iter().flatten() {
                if valid_env_name(prefix, k) {
                    env.set(format!("{prefix}{k}"), v.clone());
                }
            }
        } else if let Some(s_ref) = &from.secret_ref {
            let what = format!("envFrom[{i}]");
            let optional = s_ref.optional == Some(true);
            let Some(secret) = cache.secret(lookup, namespace, &s_ref.name, cname, &what)? else {
                if optional {
                    continue;
                }
                return Err(not_found(cname, what, "secret", namespace, &s_ref.name));
            };
            for (k, v) in secret_strings(&secret) {
                if valid_env_name(prefix, &k) {
                    env.set(format!("{prefix}{k}"), v);
                }
            }
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let svc = &ctx.service_env;
                expand(v, |name| env.get(name).or_else(|| svc.get(name).map(String::as_str)))
            }
            (_, Some(_)) => match value_from(pod, container, var, ctx, lookup, namespace, &mut cache)? {
                Some(v) => v,
                None => continue,
            },
            _ => String::new(),
        };
        env.set(var.name.clone(), value);
    }

    for (k, v) in &ctx.service_env {
        if env.get(k).is_none() {
            env.set(k.clone(), v.clone());
        }
    }
    Ok(env)
}

/// Kubernetes (1.34+, relaxed validation) accepts any printable ASCII but `=`; we also drop empty names.
fn valid_env_name(prefix: &str, key: &str) -> bool {
    let full = prefix.len() + key.len();
    full > 0 && prefix.chars().chain(key.chars()).all(|c| (c.is_ascii_graphic() || c == ' ') && c != '=')
}

fn secret_strings(secret: &Secret) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    // stringData is write-only in the API server; honour it locally when present.
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out.into_iter().collect()
}

fn not_found(container: &str, what: String, kind: &'static str, namespace: &str, name: &str) -> EnvError {
    env_err(
        container,
        &what,
        EnvProblem::ObjectNotFound { kind, namespace: namespace.to_owned(), name: name.to_owned() },
    )
}

#[derive(Default)]
struct Cache {
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Cache {
    fn config_map(
        &mut self,
        lookup: &dyn ObjectLookup,
        namespace: &str,
        name: &str,
        container: &str,
        what: &str,
    ) -> Result<Option<ConfigMap>, EnvError> {
        let fetch = || lookup.config_map(namespace, name);
        memo(&mut self.config_maps, "configmap", namespace, name, fetch)
            .map_err(|p| env_err(container, what, p))
    }

    fn secret(
        &mut self,
        lookup: &dyn ObjectLookup,
        namespace: &str,
        name: &str,
        container: &str,
        what: &str,
    ) -> Result<Option<Secret>, EnvError> {
        let fetch = || lookup.secret(namespace, name);
        memo(&mut self.secrets, "secret", namespace, name, fetch).map_err(|p| env_err(container, what, p))
    }
}

/// One lookup per object and pod start: the cached answer, else `fetch`'s, remembered.
fn memo<T: Clone>(
    cache: &mut HashMap<String, Option<T>>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    fetch: impl FnOnce() -> Result<Option<T>, LookupError>,
) -> Result<Option<T>, EnvProblem> {
    if let Some(hit) = cache.get(name) {
        return Ok(hit.clone());
    }
    let got = fetch().map_err(|source| EnvProblem::Lookup {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    })?;
    cache.insert(name.to_owned(), got.clone());
    Ok(got)
}

/// Resolves a `valueFrom`; `Ok(None)` means "optional and absent: leave the variable unset".
fn value_from(
    pod: &Pod,
    container: &Container,
    var: &EnvVar,
    ctx: &EnvContext,
    lookup: &dyn ObjectLookup,
    namespace: &str,
    cache: &mut Cache,
) -> Result<Option<String>, EnvError> {
    let Some(src) = &var.value_from else { return Ok(Some(String::new())) };
    let cname = container.name.as_str();
    let what = var_what(&var.name);
    if let Some(field) = &src.field_ref {
        return field_value(pod, field, ctx).map(Some).ok_or_else(|| {
            env_err(cname, &what, EnvProblem::UnsupportedFieldPath(field.field_path.clone()))
        });
    }
    if let Some(res) = &src.resource_field_ref {
        return resource_value(pod, container, &var.name, res, ctx).map(Some);
    }
    if let Some(key_ref) = &src.config_map_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(cm) = cache.config_map(lookup, namespace, &key_ref.name, cname, &what)? else {
            return if optional {
                Ok(None)
            } else {
                Err(not_found(cname, what, "configmap", namespace, &key_ref.name))
            };
        };
        return match cm.data.as_ref().and_then(|d| d.get(&key_ref.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(env_err(
                cname,
                &what,
                EnvProblem::KeyNotFound {
                    kind: "configmap",
                    namespace: namespace.to_owned(),
                    name: key_ref.name.clone(),
                    key: key_ref.key.clone(),
                },
            )),
        };
    }
    if let Some(key_ref) = &src.secret_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(secret) = cache.secret(lookup, namespace, &key_ref.name, cname, &what)? else {
            return if optional {
                Ok(None)
            } else {
                Err(not_found(cname, what, "secret", namespace, &key_ref.name))
            };
        };
        return match secret_strings(&secret).into_iter().find(|(k, _)| *k == key_ref.key) {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(env_err(
                cname,
                &what,
                EnvProblem::KeyNotFound {
                    kind: "secret",
                    namespace: namespace.to_owned(),
                    name: key_ref.name.clone(),
                    key: key_ref.key.clone(),
                },
            )),
        };
    }
    Ok(Some(String::new()))
}

/// The downward-API value of a `fieldRef`, or `None` for an unsupported path.
pub fn field_value(pod: &Pod, field: &ObjectFieldSelector, ctx: &EnvContext) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    if let Some((map, key)) = subscript(path) {
        let source = match map {
            "metadata.labels" => &meta.labels,
            "metadata.annotations" => &meta.annotations,
            _ => return None,
        };
        return Some(source.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".to_owned()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone().unwrap_or_default(),
        _ => return None,
    })
}

/// Splits `metadata.labels['key']` into `("metadata.labels", "key")`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (map, key) = inner.split_once("['")?;
    Some((map, key))
}

/// The kubelet's `FormatMap`: sorted `key="value"` lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let Some(map) = map else { return String::new() };
    map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// Close to Go's `%q` for the characters that matter in labels and annotations.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn resource_value(
    pod: &Pod,
    container: &Container,
    variable: &str,
    sel: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    ctx: &EnvContext,
) -> Result<String, EnvError> {
    let cname = container.name.as_str();
    let what = var_what(variable);
    let fail = |problem| env_err(cname, &what, problem);
    let target = match sel.container_name.as_deref() {
        None | Some("") => container,
        Some(other) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == other)
            .ok_or_else(|| fail(EnvProblem::UnknownResourceContainer(other.to_owned())))?,
    };
    let divisor_text = sel.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
    let mut divisor = Quantity::parse(divisor_text).map_err(|e| fail(EnvProblem::Quantity(e)))?;
    if divisor.is_zero() {
        divisor = Quantity::parse("1").map_err(|e| fail(EnvProblem::Quantity(e)))?;
    }
    let (kind, resource) = sel.resource.split_once('.').unwrap_or(("", ""));
    let supported =
        matches!(resource, "cpu" | "memory" | "ephemeral-storage") || resource.starts_with("hugepages-");
    if !matches!(kind, "limits" | "requests") || !supported {
        return Err(fail(EnvProblem::UnsupportedResource(sel.resource.clone())));
    }
    let resources = target.resources.as_ref();
    let listed = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()).and_then(|m| m.get(resource)),
        _ => resources.and_then(|r| r.requests.as_ref()).and_then(|m| m.get(resource)),
    };
    // Unset limits default to node allocatable, as the kubelet merges them; unset requests are 0.
    let text = match (listed, kind, resource) {
        (Some(q), _, _) => q.0.clone(),
        (None, "limits", "cpu") => ctx.node_allocatable_cpu.clone().unwrap_or_else(|| "0".into()),
        (None, "limits", "memory") => ctx.node_allocatable_memory.clone().unwrap_or_else(|| "0".into()),
        _ => "0".to_owned(),
    };
    let value = Quantity::parse(&text).map_err(|e| fail(EnvProblem::Quantity(e)))?;
    let (v, d) = if resource == "cpu" {
        (value.milli_value(), divisor.milli_value())
    } else {
        (value.value(), divisor.value())
    };
    let (Some(v), Some(d)) = (v, d) else { return Err(fail(EnvProblem::OutOfRange(text))) };
    div_ceil(v, d).map(|n| n.to_string()).ok_or_else(|| fail(EnvProblem::BadDivisor(divisor_text.to_owned())))
}

#[cfg(test)]
mod tests;
