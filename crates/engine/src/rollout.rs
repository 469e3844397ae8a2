//! What `kubectl scale`, `rollout status|history|undo|restart` and `wait --for` do to objects,
//! as Kubernetes' client does them, so the daemon can serve them and the CLI only prints.
//!
//! The pure part takes objects and returns objects or answers: [`scaled`], [`restarted`],
//! [`history_of`] (StatefulSets' ControllerRevisions, Deployments' ReplicaSets), [`undone`] (the
//! template of a revision laid over the owner), [`status_of`] (kubectl's status viewers' lines)
//! and [`WaitFor`]. The store-facing part ([`scale`], [`restart`], [`history`], [`undo`],
//! [`status`]) reads, calls the pure part and writes with optimistic concurrency, retrying a
//! conflict with a fresh read.
//!
//! Differences from kubectl, on purpose: `undo` without `--to-revision` names the revision it
//! skipped to ("matches revision 2", where kubectl prints 0); `rollout status` also follows a
//! StatefulService (kubectl has no status viewer for custom resources).

use crate::gc::controller_of;
use crate::kinds::Kind;
use crate::store::{ObjectKey, Store, StoreError, meta_str, metadata_mut};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};
use std::sync::Arc;

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The annotation `rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// A Deployment's revision, on it and on its ReplicaSets.
const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";
/// The label a Deployment adds to its ReplicaSets' templates (not part of the user's template).
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// How often a write is retried after a conflict with another writer (the controllers).
const RETRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{resource} {name:?} not found")]
    NotFound { resource: &'static str, name: String },
    #[error("{verb} is not supported for {resource} (only {supported})")]
    Unsupported { verb: &'static str, resource: &'static str, supported: &'static str },
    #[error("invalid replicas {replicas}: must not be negative")]
    NegativeReplicas { replicas: i64 },
    #[error("expected replicas to be {expected}, was {actual}")]
    Precondition { expected: i64, actual: i64 },
    #[error("no rollout history found for {resource} {name:?}")]
    NoHistory { resource: &'static str, name: String },
    #[error("no last revision to roll back to")]
    NoPrevious,
    #[error("unable to find specified revision {revision} in history")]
    RevisionNotFound { revision: i64 },
    #[error("revision {revision} of {resource} {name:?} has no readable pod template: {reason}")]
    RevisionData { resource: &'static str, name: String, revision: i64, reason: String },
    #[error("you cannot rollback a paused deployment; resume it first and try again")]
    Paused,
    #[error(
        "rollout status is only available for RollingUpdate strategy type (statefulset {name:?} uses {strategy})"
    )]
    NotRollingUpdate { name: String, strategy: String },
    #[error("deployment {name:?} exceeded its progress deadline")]
    ProgressDeadline { name: String },
    #[error("invalid --for {given:?}: expected condition=NAME, condition=NAME=VALUE or delete")]
    InvalidWaitFor { given: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `statefulset.apps/web`, `pod/x`, `statefulservice.cloudstate.io/notes`: how kubectl names an
/// object in what it prints.
pub fn qualified(kind: Kind, name: &str) -> String {
    let group = kind.api_version().rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
    let kind = kind.name().to_ascii_lowercase();
    match group {
        "" => format!("{kind}/{name}"),
        group => format!("{kind}.{group}/{name}"),
    }
}

const SCALABLE: &str = "statefulsets, deployments, replicasets, statefulservices";
const ROLLABLE: &str = "statefulsets, deployments";

fn name_of(object: &Value) -> String {
    meta_str(object, "name").unwrap_or_default().to_string()
}

/// The object with `spec.replicas` set; `current` is `--current-replicas` (a precondition).
pub fn scaled(object: &Value, replicas: i64, current: Option<i64>) -> Result<Value, RolloutError> {
    let kind = Kind::of(object);
    if !matches!(kind, Some(Kind::StatefulSet | Kind::Deployment | Kind::ReplicaSet | Kind::StatefulService))
    {
        return Err(RolloutError::Unsupported {
            verb: "scale",
            resource: kind.map_or("this kind", Kind::resource),
            supported: SCALABLE,
        });
    }
    if replicas < 0 {
        return Err(RolloutError::NegativeReplicas { replicas });
    }
    // Kubernetes defaults replicas to 1 for every scalable kind.
    let actual = object["spec"]["replicas"].as_i64().unwrap_or(1);
    if let Some(expected) = current
        && expected != actual
    {
        return Err(RolloutError::Precondition { expected, actual });
    }
    let mut next = object.clone();
    if !next["spec"].is_object() {
        next["spec"] = json!({});
    }
    next["spec"]["replicas"] = json!(replicas);
    Ok(next)
}

fn rollable(object: &Value, verb: &'static str) -> Result<Kind, RolloutError> {
    match Kind::of(object) {
        Some(k @ (Kind::StatefulSet | Kind::Deployment)) => Ok(k),
        other => Err(RolloutError::Unsupported {
            verb,
            resource: other.map_or("this kind", Kind::resource),
            supported: ROLLABLE,
        }),
    }
}

/// The object with its pod template annotated `restartedAt: at`, which rolls every pod.
pub fn restarted(object: &Value, at: &str) -> Result<Value, RolloutError> {
    rollable(object, "rollout restart")?;
    let mut next = object.clone();
    if !next["spec"].is_object() {
        next["spec"] = json!({});
    }
    let template = &mut next["spec"]["template"];
    if !template.is_object() {
        *template = json!({});
    }
    let meta = metadata_mut(template);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[RESTARTED_AT] = json!(at);
    Ok(next)
}

/// One entry of `rollout history`.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub revision: i64,
    /// The ControllerRevision or ReplicaSet holding it.
    pub source: String,
    pub change_cause: Option<String>,
    /// The pod template it restores.
    pub template: Value,
}

impl Revision {
    pub fn to_json(&self) -> Value {
        json!({
            "revision": self.revision,
            "source": self.source,
            "changeCause": self.change_cause,
            "template": self.template,
        })
    }
}

fn owned_by(object: &Value, owner: &Value) -> bool {
    let uid = meta_str(owner, "uid").unwrap_or_default();
    !uid.is_empty() && controller_of(object).is_some_and(|r| r.uid == uid)
}

fn change_cause(object: &Value) -> Option<String> {
    object["metadata"]["annotations"][CHANGE_CAUSE].as_str().map(str::to_string)
}

/// The revisions of `owner` among `candidates` (the ControllerRevisions of a StatefulSet's
/// namespace, or a Deployment's ReplicaSets), oldest first.
pub fn history_of(owner: &Value, candidates: &[Arc<Value>]) -> Result<Vec<Revision>, RolloutError> {
    let kind = rollable(owner, "rollout history")?;
    let mut out = Vec::new();
    for c in candidates.iter().filter(|c| owned_by(c, owner)) {
        let source = name_of(c);
        let revision = match kind {
            Kind::StatefulSet => c["revision"].as_i64().unwrap_or(0),
            _ => c["metadata"]["annotations"][DEPLOYMENT_REVISION]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
        };
        let template = match kind {
            Kind::StatefulSet => {
                let mut t = c["data"]["spec"]["template"].clone();
                if let Some(map) = t.as_object_mut() {
                    map.remove("$patch");
                }
                t
            }
            _ => {
                let mut t = c["spec"]["template"].clone();
                if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
                    labels.remove(POD_TEMPLATE_HASH);
                }
                t
            }
        };
        if !template.is_object() {
            return Err(RolloutError::RevisionData {
                resource: kind.resource(),
                name: name_of(owner),
                revision,
                reason: format!("{source} holds no spec.template"),
            });
        }
        out.push(Revision { revision, source, change_cause: change_cause(c), template });
    }
    out.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| a.source.cmp(&b.source)));
    Ok(out)
}

/// The outcome of `rollout undo`.
#[derive(Clone, Debug, PartialEq)]
pub enum Undo {
    /// The owner with the revision's template, to be written.
    RolledBack { object: Value, revision: i64 },
    /// The owner's template already is the revision's.
    Skipped { revision: i64 },
}

/// Two pod templates are the same when they decode to the same typed template (so JSON spelling
/// such as key order or an empty map never counts as a change).
fn same_template(a: &Value, b: &Value) -> bool {
    let typed = |v: &Value| serde_json::from_value::<PodTemplateSpec>(v.clone()).ok();
    match (typed(a), typed(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Rolls `owner` back to revision `to` of `history` (0: the one before the newest), as kubectl's
/// rollbackers do: the pod template is replaced by the revision's, nothing else changes.
pub fn undone(owner: &Value, history: &[Revision], to: i64) -> Result<Undo, RolloutError> {
    let kind = rollable(owner, "rollout undo")?;
    if kind == Kind::Deployment && owner["spec"]["paused"].as_bool() == Some(true) {
        return Err(RolloutError::Paused);
    }
    if history.is_empty() {
        return Err(RolloutError::NoHistory { resource: kind.resource(), name: name_of(owner) });
    }
    let target = if to == 0 {
        if history.len() < 2 {
            return Err(RolloutError::NoPrevious);
        }
        let mut sorted: Vec<&Revision> = history.iter().collect();
        sorted.sort_by_key(|r| r.revision);
        sorted[sorted.len() - 2]
    } else {
        history.iter().find(|r| r.revision == to).ok_or(RolloutError::RevisionNotFound { revision: to })?
    };
    if same_template(&owner["spec"]["template"], &target.template) {
        return Ok(Undo::Skipped { revision: target.revision });
    }
    let mut object = owner.clone();
    if !object["spec"].is_object() {
        object["spec"] = json!({});
    }
    object["spec"]["template"] = target.template.clone();
    Ok(Undo::RolledBack { object, revision: target.revision })
}

/// One look at a rollout, as kubectl's status viewers print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutStatus {
    /// The line to print (without the newline).
    pub message: String,
    pub done: bool,
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// kubectl's status viewers for StatefulSets and Deployments, and one in their manner for
/// StatefulServices.
pub fn status_of(object: &Value) -> Result<RolloutStatus, RolloutError> {
    let kind = Kind::of(object);
    let name = name_of(object);
    let spec = &object["spec"];
    let status = &object["status"];
    let generation = int(&object["metadata"]["generation"]);
    let observed = status["observedGeneration"].as_i64();
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    let waiting = |message: String| Ok(RolloutStatus { message, done: false });
    let done = |message: String| Ok(RolloutStatus { message, done: true });
    match kind {
        Some(Kind::StatefulService) => {
            // Its status carries no revisions: done when every replica is updated and Ready.
            if observed.is_none_or(|o| o == 0 || generation > o) {
                return waiting("Waiting for statefulservice spec update to be observed...".into());
            }
            let ready = int(&status["readyReplicas"]);
            let updated = int(&status["updatedReplicas"]);
            if updated < replicas {
                return waiting(format!(
                    "Waiting for statefulservice {name:?} rollout to finish: {updated} out of {replicas} new pods have been updated..."
                ));
            }
            if ready < replicas {
                return waiting(format!("Waiting for {} pods to be ready...", replicas - ready));
            }
            done(format!("statefulservice {name:?} successfully rolled out"))
        }
        Some(Kind::StatefulSet) => {
            let strategy = spec["updateStrategy"]["type"].as_str().unwrap_or("RollingUpdate");
            if strategy != "RollingUpdate" {
                return Err(RolloutError::NotRollingUpdate { name, strategy: strategy.into() });
            }
            if observed.is_none_or(|o| o == 0 || generation > o) {
                return waiting("Waiting for statefulset spec update to be observed...".into());
            }
            let ready = int(&status["readyReplicas"]);
            if ready < replicas {
                return waiting(format!("Waiting for {} pods to be ready...", replicas - ready));
            }
            let updated = int(&status["updatedReplicas"]);
            if let Some(partition) = spec["updateStrategy"]["rollingUpdate"]["partition"].as_i64() {
                let want = replicas - partition;
                if updated < want {
                    return waiting(format!(
                        "Waiting for partitioned roll out to finish: {updated} out of {want} new pods have been updated..."
                    ));
                }
                return done(format!(
                    "partitioned roll out complete: {updated} new pods have been updated..."
                ));
            }
            let update = status["updateRevision"].as_str().unwrap_or_default();
            let current = status["currentRevision"].as_str().unwrap_or_default();
            if update != current {
                return waiting(format!(
                    "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
                ));
            }
            done(format!(
                "statefulset rolling update complete {} pods at revision {current}...",
                int(&status["currentReplicas"])
            ))
        }
        Some(Kind::Deployment) => {
            if observed.is_none_or(|o| generation > o) {
                return waiting("Waiting for deployment spec update to be observed...".into());
            }
            let timed_out = status["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
            });
            if timed_out {
                return Err(RolloutError::ProgressDeadline { name });
            }
            let updated = int(&status["updatedReplicas"]);
            let total = int(&status["replicas"]);
            let available = int(&status["availableReplicas"]);
            if updated < replicas {
                return waiting(format!(
                    "Waiting for deployment {name:?} rollout to finish: {updated} out of {replicas} new replicas have been updated..."
                ));
            }
            if total > updated {
                return waiting(format!(
                    "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                    total - updated
                ));
            }
            if available < updated {
                return waiting(format!(
                    "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
                ));
            }
            done(format!("deployment {name:?} successfully rolled out"))
        }
        other => Err(RolloutError::Unsupported {
            verb: "rollout status",
            resource: other.map_or("this kind", Kind::resource),
            supported: "statefulsets, deployments, statefulservices",
        }),
    }
}

/// What `wait --for` waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// `condition=Ready` (value `True`) or `condition=Ready=false`.
    Condition { name: String, value: String },
    /// `delete`: the object is gone.
    Delete,
}

impl WaitFor {
    pub fn parse(text: &str) -> Result<WaitFor, RolloutError> {
        let invalid = || RolloutError::InvalidWaitFor { given: text.to_string() };
        if text.eq_ignore_ascii_case("delete") {
            return Ok(WaitFor::Delete);
        }
        let rest = text.strip_prefix("condition=").ok_or_else(invalid)?;
        let (name, value) = rest.split_once('=').unwrap_or((rest, "True"));
        if name.is_empty() || value.is_empty() {
            return Err(invalid());
        }
        Ok(WaitFor::Condition { name: name.into(), value: value.into() })
    }

    /// Whether `object` (`None`: it does not exist) satisfies the wait. Condition names and values
    /// compare without case, and a condition that records an older `observedGeneration` than the
    /// object's does not count, as with kubectl.
    pub fn met(&self, object: Option<&Value>) -> bool {
        match (self, object) {
            (WaitFor::Delete, object) => object.is_none(),
            (WaitFor::Condition { .. }, None) => false,
            (WaitFor::Condition { name, value }, Some(object)) => {
                let generation = object["metadata"]["generation"].as_i64();
                object["status"]["conditions"].as_array().into_iter().flatten().any(|c| {
                    c["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(name))
                        && c["status"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(value))
                        && match (c["observedGeneration"].as_i64(), generation) {
                            (Some(seen), Some(generation)) => seen >= generation,
                            _ => true,
                        }
                })
            }
        }
    }
}

fn get(store: &Store, key: &ObjectKey) -> Result<Arc<Value>, RolloutError> {
    store
        .get(key)
        .ok_or_else(|| RolloutError::NotFound { resource: key.kind.resource(), name: key.name.clone() })
}

/// Reads `key`, applies `change`, writes with the read's resourceVersion; a conflict (a controller
/// wrote in between) reads again.
fn read_modify_write(
    store: &Store,
    key: &ObjectKey,
    mut change: impl FnMut(&Value) -> Result<Option<Value>, RolloutError>,
) -> Result<Option<Arc<Value>>, RolloutError> {
    let mut last = None;
    for _ in 0..RETRIES {
        let current = get(store, key)?;
        let Some(next) = change(&current)? else { return Ok(None) };
        match store.update(next) {
            Ok(written) => return Ok(Some(written)),
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .map_or(RolloutError::NotFound { resource: key.kind.resource(), name: key.name.clone() }, Into::into))
}

/// `kubectl scale`: sets `spec.replicas` of a StatefulSet, Deployment, ReplicaSet or
/// StatefulService.
pub fn scale(
    store: &Store,
    key: &ObjectKey,
    replicas: i64,
    current: Option<i64>,
) -> Result<Arc<Value>, RolloutError> {
    let written = read_modify_write(store, key, |o| scaled(o, replicas, current).map(Some))?;
    written.map_or_else(|| get(store, key), Ok)
}

/// `kubectl rollout restart`: stamps the pod template with the time `at`.
pub fn restart(store: &Store, key: &ObjectKey, at: &str) -> Result<Arc<Value>, RolloutError> {
    let written = read_modify_write(store, key, |o| restarted(o, at).map(Some))?;
    written.map_or_else(|| get(store, key), Ok)
}

/// `kubectl rollout history`: the revisions of a StatefulSet or Deployment, oldest first.
pub fn history(store: &Store, key: &ObjectKey) -> Result<Vec<Revision>, RolloutError> {
    let owner = get(store, key)?;
    let source = match rollable(&owner, "rollout history")? {
        Kind::StatefulSet => Kind::ControllerRevision,
        _ => Kind::ReplicaSet,
    };
    history_of(&owner, &store.list(source, Some(&key.namespace)))
}

/// `kubectl rollout undo [--to-revision]`.
pub fn undo(store: &Store, key: &ObjectKey, to: i64) -> Result<Undo, RolloutError> {
    let mut outcome = None;
    read_modify_write(store, key, |owner| {
        let source = match rollable(owner, "rollout undo")? {
            Kind::StatefulSet => Kind::ControllerRevision,
            _ => Kind::ReplicaSet,
        };
        let history = history_of(owner, &store.list(source, Some(&key.namespace)))?;
        let undo = undone(owner, &history, to)?;
        let next = match &undo {
            Undo::RolledBack { object, .. } => Some(object.clone()),
            Undo::Skipped { .. } => None,
        };
        outcome = Some(undo);
        Ok(next)
    })?;
    outcome.ok_or(RolloutError::NoPrevious)
}

/// `kubectl rollout status`, one look.
pub fn status(store: &Store, key: &ObjectKey) -> Result<RolloutStatus, RolloutError> {
    let object = get(store, key)?;
    status_of(&object)
}

#[cfg(test)]
mod tests;
