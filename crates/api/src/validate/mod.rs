//! Kubernetes' rules and stead's, over a loaded set of documents.
//!
//! Checks are pure functions of typed objects that record [`Finding`]s against field paths; the
//! paths are then placed in the source through each document's located tree. Every finding is kept:
//! one run reports all of them.

mod core;
pub mod names;
mod pod;
mod resources;
mod service;
mod store;
mod volume;
mod workload;

use crate::load::Document;
use crate::manifest::Manifest;
use crate::path::{FieldPath, Seg};
use crate::problem::{self, Problem, Severity};
use crate::types::StatefulStore;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Something a check found, about one field.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub path: FieldPath,
    pub message: String,
    pub help: Option<String>,
}

/// Collects findings.
#[derive(Debug, Default)]
pub struct Findings(Vec<Finding>);

impl Findings {
    /// Records a value outside a set, with a suggestion.
    pub fn enumeration(&mut self, path: FieldPath, what: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let finding = self
                .error(path, format!("unsupported {what} {value:?}: expected one of {}", allowed.join(", ")));
            finding.help = crate::suggest::did_you_mean(value, allowed.iter().copied());
        }
    }

    pub fn error(&mut self, path: FieldPath, message: impl Into<String>) -> &mut Finding {
        self.push(Severity::Error, path, message)
    }

    pub fn warn(&mut self, path: FieldPath, message: impl Into<String>) -> &mut Finding {
        self.push(Severity::Warning, path, message)
    }

    fn push(&mut self, severity: Severity, path: FieldPath, message: impl Into<String>) -> &mut Finding {
        self.0.push(Finding { severity, path, message: message.into(), help: None });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    /// Runs a name rule and records its complaint.
    pub fn check_name(
        &mut self,
        path: FieldPath,
        what: &str,
        value: &str,
        rule: fn(&str) -> Result<(), String>,
    ) {
        if let Err(why) = rule(value) {
            self.error(path, format!("invalid {what} {value:?}: {why}"));
        }
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.0
    }
}

impl Finding {
    pub fn with_help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}

/// The loaded set, indexed once for the checks that look from one object to another.
#[derive(Debug, Default)]
pub struct Set<'a> {
    /// StatefulStores by namespace, then name (the first declared, if declared twice).
    stores: HashMap<&'a str, BTreeMap<&'a str, &'a StatefulStore>>,
}

impl<'a> Set<'a> {
    pub fn new(documents: &'a [Document]) -> Self {
        let mut set = Set::default();
        for doc in documents {
            if let Manifest::StatefulStore(store) = &doc.manifest {
                let m = &doc.manifest;
                set.stores.entry(m.namespace()).or_default().entry(m.name()).or_insert(store.as_ref());
            }
        }
        set
    }

    /// The StatefulStore `name` in `namespace`.
    pub fn store(&self, namespace: &str, name: &str) -> Option<&'a StatefulStore> {
        self.stores.get(namespace)?.get(name).copied()
    }

    /// The names of the StatefulStores in `namespace`, in order.
    pub fn store_names(&self, namespace: &str) -> impl Iterator<Item = &'a str> + '_ {
        self.stores.get(namespace).into_iter().flat_map(|s| s.keys().copied())
    }
}

/// Validates every document, and the references between them.
pub fn validate(documents: &[Document]) -> Vec<Problem> {
    let set = Set::new(documents);
    let mut problems = Vec::new();
    for doc in documents {
        // A field the schema check rejected was reported already; what parsing made of it is not
        // worth a second message.
        let rejected: HashSet<&[Seg]> = doc.rejected.iter().map(FieldPath::segments).collect();
        let already = |f: &Finding| {
            let segments = f.path.segments();
            !rejected.is_empty() && (0..=segments.len()).any(|n| rejected.contains(&segments[..n]))
        };
        for finding in validate_manifest(&doc.manifest, &set).into_iter().filter(|f| !already(f)) {
            let problem = match finding.severity {
                Severity::Error => Problem::error(finding.message),
                Severity::Warning => Problem::warning(finding.message),
            };
            problems.push(doc.problem(problem.help(finding.help), finding.path));
        }
    }
    duplicates(documents, &mut problems);
    problem::sort(&mut problems);
    problems
}

/// Checks one manifest; `all` is the set it was loaded with, for references.
pub fn validate_manifest(manifest: &Manifest, all: &Set<'_>) -> Vec<Finding> {
    let mut f = Findings::default();
    let is_namespace = matches!(manifest, Manifest::Namespace(_));
    let service_like = matches!(manifest, Manifest::StatefulService(_) | Manifest::Service(_));
    metadata(manifest.metadata(), &mut f, is_namespace, service_like);
    match manifest {
        Manifest::StatefulService(s) => service::stateful_service(s, all, &mut f),
        Manifest::StatefulStore(s) => store::stateful_store(s, &mut f),
        Manifest::StatefulSet(s) => core::stateful_set(s, &mut f),
        Manifest::Deployment(d) => core::deployment(d, &mut f),
        Manifest::Service(s) => core::service(s, &mut f),
        Manifest::Pod(p) => {
            if let Some(spec) = &p.spec {
                pod::pod_spec(spec, &FieldPath::root().key("spec"), &mut f);
            }
        }
        Manifest::PersistentVolumeClaim(c) => core::claim(c, &FieldPath::root(), &mut f),
        Manifest::ConfigMap(c) => core::config_map(c, &mut f),
        Manifest::Secret(s) => core::secret(s, &mut f),
        Manifest::Namespace(_) | Manifest::NetworkPolicy(_) | Manifest::HorizontalPodAutoscaler(_) => {}
    }
    f.into_vec()
}

fn metadata(meta: &ObjectMeta, f: &mut Findings, is_namespace: bool, service_like: bool) {
    let path = FieldPath::root().key("metadata");
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_none() => {
            f.error(path.key("name"), "missing required field \"name\"");
        }
        None | Some("") => {}
        Some(name) if is_namespace || service_like => {
            f.check_name(path.key("name"), "name", name, names::dns1035_or_label(is_namespace))
        }
        Some(name) => f.check_name(path.key("name"), "name", name, names::dns1123_subdomain),
    }
    if let Some(ns) = meta.namespace.as_deref() {
        f.check_name(path.key("namespace"), "namespace", ns, names::dns1123_label);
    }
    for (key, value) in meta.labels.iter().flatten() {
        let p = path.key("labels").key(key.clone());
        f.check_name(p.clone(), "label key", key, names::label_key);
        f.check_name(p, "label value", value, names::label_value);
    }
    for key in meta.annotations.iter().flatten().map(|(k, _)| k) {
        f.check_name(path.key("annotations").key(key.clone()), "annotation key", key, names::label_key);
    }
}

/// Two documents declaring the same object: the later silently replaces the earlier on apply.
fn duplicates(documents: &[Document], problems: &mut Vec<Problem>) {
    let mut seen: std::collections::HashMap<(&str, &str, &str), &Document> = std::collections::HashMap::new();
    for doc in documents {
        let m = &doc.manifest;
        if m.name().is_empty() {
            continue;
        }
        if let Some(first) = seen.insert((m.kind(), m.namespace(), m.name()), doc) {
            let at = doc.problem(
                Problem::error(format!("{} is declared twice", m.reference())),
                FieldPath::root().key("metadata").key("name"),
            );
            let first_at = first.node.locate(&FieldPath::root().key("metadata").key("name"));
            problems.push(at.help(Some(format!(
                "first declared at {}:{}:{}",
                first.source.name(),
                first_at.line,
                first_at.column
            ))));
        }
    }
}
