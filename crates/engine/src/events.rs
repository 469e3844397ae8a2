//! Kubernetes Event objects (core/v1 `Event`), recorded by the engine's controllers and its pod
//! worker for the transitions kubectl users read in `describe` and `events`: `Scheduled`,
//! `Created`/`Started` per container, `Killing`, `BackOff`, `Unhealthy`, `SuccessfulCreate`,
//! `SuccessfulDelete`, `FailedCreate`, `ScalingReplicaSet`.
//!
//! As Kubernetes' event correlator does, an event that repeats (same object, type, reason, message
//! and container) is not stored twice: the stored one gets `count + 1` and a new
//! `lastTimestamp`. Its name is `<involved name>.<16 hex digits>`, the digits a hash of what makes
//! it the same event, so a repeat finds it by name.
//!
//! Events are owned by nobody (the garbage collector leaves them alone); they go by age
//! ([`TTL`], Kubernetes' default of one hour) and by number ([`MAX_PER_NAMESPACE`], the newest
//! kept), so a crash loop cannot grow the store without bound.
//!
//! Recording is best effort: a failure is logged, never returned to the controller that recorded.

use crate::kinds::Kind;
use crate::store::{ObjectKey, Store, StoreError, meta_str, now_string};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long an event is kept after it last happened (the API server's `--event-ttl` default).
pub const TTL: Duration = Duration::from_secs(3600);
/// How many events a namespace keeps; the oldest go first.
pub const MAX_PER_NAMESPACE: usize = 1000;
/// `source.component` and `reportingComponent` of every event the engine records.
pub const COMPONENT: &str = "stead";

/// An event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

impl Type {
    pub fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event about {object} has no name to be recorded under")]
    NoObject { object: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records an event about `involved` (any stored object), logging a failure.
pub fn record(store: &Store, involved: &Value, ty: Type, reason: &str, message: &str) {
    record_about(store, involved, None, ty, reason, message);
}

/// Records what the runtime reported about a container, if its pod is still the one it ran.
pub fn container_event(store: &Store, event: &crate::runtime::ContainerEvent) {
    let key = ObjectKey::new(Kind::Pod, &event.namespace, &event.name);
    let Some(pod) = store.get(&key) else { return };
    if meta_str(&pod, "uid") != Some(event.uid.as_str()) {
        return;
    }
    let ty = if event.warning { Type::Warning } else { Type::Normal };
    record_container(store, &pod, &event.container, ty, &event.reason, &event.message);
}

/// Records an event about one container of a pod (`involvedObject.fieldPath` names it).
pub fn record_container(store: &Store, pod: &Value, container: &str, ty: Type, reason: &str, message: &str) {
    let field = format!("spec.containers{{{container}}}");
    record_about(store, pod, Some(&field), ty, reason, message);
}

fn record_about(store: &Store, involved: &Value, field: Option<&str>, ty: Type, reason: &str, message: &str) {
    if let Err(e) = try_record(store, involved, field, ty, reason, message, Timestamp::now()) {
        tracing::warn!(error = %e, reason, "recording an event failed");
    }
}

/// Records an event at `now`: creates it, or bumps the stored one that it repeats. Returns the
/// stored event.
pub fn try_record(
    store: &Store,
    involved: &Value,
    field: Option<&str>,
    ty: Type,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Result<Arc<Value>, EventError> {
    write(store, involved, field, ty, reason, message, now, None)
}

/// How often a failure a controller meets on every pass (`FailedCreate`) bumps its event: a bump is
/// a change, and a change wakes the loop, which would otherwise spin on the failure.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(10);

#[allow(clippy::too_many_arguments)]
fn write(
    store: &Store,
    involved: &Value,
    field: Option<&str>,
    ty: Type,
    reason: &str,
    message: &str,
    now: Timestamp,
    at_most_every: Option<Duration>,
) -> Result<Arc<Value>, EventError> {
    let kind = involved["kind"].as_str().unwrap_or_default();
    let name = meta_str(involved, "name").filter(|n| !n.is_empty()).ok_or_else(|| EventError::NoObject {
        object: format!("{kind}/{}", meta_str(involved, "generateName").unwrap_or_default()),
    })?;
    let namespace = meta_str(involved, "namespace").unwrap_or(crate::kinds::DEFAULT_NAMESPACE);
    let uid = meta_str(involved, "uid").unwrap_or_default();
    let hash = fnv1a(&[kind, namespace, name, uid, field.unwrap_or_default(), ty.as_str(), reason, message]);
    let event_name = format!("{name}.{hash:016x}");
    let key = ObjectKey::new(Kind::Event, namespace, &event_name);
    let stamp = time_string(now);
    // Bump a repeat; a concurrent writer's conflict is retried once from a fresh read.
    for _ in 0..2 {
        let Some(current) = store.get(&key) else { break };
        if let Some(every) = at_most_every
            && last_seen(&current).is_some_and(|last| {
                now.as_second() - last < i64::try_from(every.as_secs()).unwrap_or(i64::MAX)
            })
        {
            return Ok(current);
        }
        let mut next = (*current).clone();
        next["count"] = json!(current["count"].as_i64().unwrap_or(1) + 1);
        next["lastTimestamp"] = json!(stamp);
        match store.update(next) {
            Ok(updated) => return Ok(updated),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut involved_object = json!({
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "uid": uid,
        "apiVersion": involved["apiVersion"],
        "resourceVersion": meta_str(involved, "resourceVersion").unwrap_or_default(),
    });
    if let Some(field) = field {
        involved_object["fieldPath"] = json!(field);
    }
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "name": event_name, "namespace": namespace },
        "involvedObject": involved_object,
        "reason": reason,
        "message": message,
        "type": ty.as_str(),
        "source": { "component": COMPONENT },
        "reportingComponent": COMPONENT,
        "reportingInstance": "",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    });
    let created = match store.create(event) {
        Ok(created) => created,
        // Recorded by someone else in between: that one stands.
        Err(StoreError::AlreadyExists { .. }) => {
            return store.get(&key).ok_or_else(|| EventError::Store(StoreError::NotFound { key }));
        }
        Err(e) => return Err(e.into()),
    };
    prune(store, now, MAX_PER_NAMESPACE, TTL, Some(namespace))?;
    Ok(created)
}

/// Removes events last seen more than `ttl` before `now`, and the oldest of a namespace beyond
/// `max` (in `namespace`, or every one). Returns how many it removed.
pub fn prune(
    store: &Store,
    now: Timestamp,
    max: usize,
    ttl: Duration,
    namespace: Option<&str>,
) -> Result<usize, StoreError> {
    let cutoff = now.as_second().saturating_sub(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let mut by_namespace: BTreeMap<String, Vec<(i64, u64, ObjectKey)>> = BTreeMap::new();
    let mut removed = 0;
    for event in store.list(Kind::Event, namespace) {
        let Ok(key) = ObjectKey::of(&event) else { continue };
        let last = last_seen(&event).unwrap_or(0);
        if last < cutoff {
            store.remove(&key)?;
            removed += 1;
            continue;
        }
        let rv = meta_str(&event, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        by_namespace.entry(key.namespace.clone()).or_default().push((last, rv, key));
    }
    for (_, mut events) in by_namespace {
        if events.len() <= max {
            continue;
        }
        events.sort();
        let excess = events.len() - max;
        for (_, _, key) in events.into_iter().take(excess) {
            store.remove(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Prunes every namespace with the defaults, logging a failure (for the engine's loop).
pub fn prune_all(store: &Store) -> usize {
    match prune(store, Timestamp::now(), MAX_PER_NAMESPACE, TTL, None) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "pruning events failed");
            0
        }
    }
}

/// `lastTimestamp` (or `firstTimestamp`, or `eventTime`) in Unix seconds.
pub fn last_seen(event: &Value) -> Option<i64> {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .filter_map(|f| event[f].as_str())
        .find_map(|s| s.parse::<Timestamp>().ok())
        .map(|t| t.as_second())
}

/// Events about one object (by kind and name, and uid when the event has one), oldest first, as
/// `describe` lists them.
pub fn about(store: &Store, namespace: &str, kind: &str, name: &str, uid: Option<&str>) -> Vec<Arc<Value>> {
    let mut out: Vec<Arc<Value>> = store
        .list(Kind::Event, Some(namespace))
        .into_iter()
        .filter(|e| {
            let o = &e["involvedObject"];
            o["kind"] == kind
                && o["name"] == name
                && uid.is_none_or(|u| o["uid"].as_str().is_none_or(|eu| eu.is_empty() || eu == u))
        })
        .collect();
    sort(&mut out);
    out
}

/// Oldest first, by last occurrence, then by resourceVersion.
pub fn sort(events: &mut [Arc<Value>]) {
    events.sort_by_key(|e| {
        let rv: u64 = meta_str(e, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        (last_seen(e).unwrap_or(0), rv)
    });
}

fn time_string(now: Timestamp) -> String {
    now.round(k8s_openapi::jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_else(|_| now_string())
}

/// FNV-1a over the parts (with a separator), stable across runs and builds.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

// ---- What the controllers record ----

fn words(object: &Value) -> (&str, &str) {
    (object["kind"].as_str().unwrap_or_default(), meta_str(object, "name").unwrap_or_default())
}

/// The scheduler's `Scheduled`.
pub fn scheduled(store: &Store, pod: &Value, node: &str) {
    let ns = meta_str(pod, "namespace").unwrap_or_default();
    let name = meta_str(pod, "name").unwrap_or_default();
    let message = format!("Successfully assigned {ns}/{name} to {node}");
    record(store, pod, Type::Normal, "Scheduled", &message);
}

/// A pod that could not start (the runtime refused it).
pub fn failed_to_start(store: &Store, pod: &Value, error: &str) {
    record(store, pod, Type::Warning, "Failed", &format!("Error: {error}"));
}

/// The kubelet's `Killing`, for each container of a pod being stopped.
pub fn killing(store: &Store, pod: &Value) {
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let Some(name) = c["name"].as_str() else { continue };
        record_container(store, pod, name, Type::Normal, "Killing", &format!("Stopping container {name}"));
    }
}

/// The kubelet's events for a pod whose status goes from the stored one to `status`: `Created`
/// and `Started` for each new container instance, `BackOff` when a container enters
/// `CrashLoopBackOff`. (`Unhealthy`, probe-driven `Killing` and `FailedPostStartHook` come from the
/// runtime itself, with its messages: [`container_event`].)
pub fn pod_status_changed(store: &Store, pod: &Value, status: &Value) {
    let old = &pod["status"];
    let pod_name = meta_str(pod, "name").unwrap_or_default();
    let ns = meta_str(pod, "namespace").unwrap_or_default();
    let uid = meta_str(pod, "uid").unwrap_or_default();
    for field in ["initContainerStatuses", "containerStatuses"] {
        for new in status[field].as_array().into_iter().flatten() {
            let Some(name) = new["name"].as_str() else { continue };
            let before = old[field].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name));
            let before_start = before.and_then(instance_start);
            if let Some(start) = instance_start(new)
                && before_start != Some(start)
            {
                let created = format!("Created container: {name}");
                record_container(store, pod, name, Type::Normal, "Created", &created);
                let started = format!("Started container {name}");
                record_container(store, pod, name, Type::Normal, "Started", &started);
            }
            let waiting = |c: &Value| c["state"]["waiting"]["reason"].as_str().map(str::to_string);
            if waiting(new).as_deref() == Some("CrashLoopBackOff")
                && before.and_then(waiting).as_deref() != Some("CrashLoopBackOff")
            {
                let message =
                    format!("Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})");
                record_container(store, pod, name, Type::Warning, "BackOff", &message);
            }
        }
    }
}

/// When a container instance started (running or already terminated).
fn instance_start(c: &Value) -> Option<&str> {
    c["state"]["running"]["startedAt"].as_str().or_else(|| c["state"]["terminated"]["startedAt"].as_str())
}

/// The word a controller uses for a child in its messages (`Pod`, `Claim`).
fn child_word(child: &Value) -> &str {
    match child["kind"].as_str().unwrap_or_default() {
        "PersistentVolumeClaim" => "Claim",
        other => other,
    }
}

/// A controller's `SuccessfulCreate` or `FailedCreate` for `child`, from the create's result
/// (which is passed through). Conflicts with a concurrent change are not failures to report: the
/// next pass plans again.
pub fn created<T>(
    store: &Store,
    owner: &Value,
    child: &Value,
    result: Result<T, StoreError>,
) -> Result<T, StoreError>
where
    T: AsRef<Value>,
{
    let (owner_kind, owner_name) = words(owner);
    let word = child_word(child);
    match &result {
        Ok(stored) => {
            let name = meta_str(stored.as_ref(), "name").unwrap_or_default();
            let message = match owner_kind {
                "StatefulSet" if word == "Claim" => {
                    let pod = name.rfind(&format!("{owner_name}-")).map_or(name, |i| &name[i..]);
                    format!("create Claim {name} Pod {pod} in StatefulSet {owner_name} success")
                }
                "StatefulSet" => format!("create {word} {name} in StatefulSet {owner_name} successful"),
                "Deployment" => {
                    let replicas = stored.as_ref()["spec"]["replicas"].as_i64().unwrap_or(0);
                    let message = format!("Scaled up replica set {name} from 0 to {replicas}");
                    record(store, owner, Type::Normal, "ScalingReplicaSet", &message);
                    return result;
                }
                _ => format!("Created {}: {name}", word.to_ascii_lowercase()),
            };
            record(store, owner, Type::Normal, "SuccessfulCreate", &message);
        }
        Err(StoreError::AlreadyExists { .. } | StoreError::Conflict { .. }) => {}
        Err(e) => {
            let name = meta_str(child, "name").or(meta_str(child, "generateName")).unwrap_or_default();
            let message = match owner_kind {
                "StatefulSet" => {
                    format!("create {word} {name} in StatefulSet {owner_name} failed error: {e}")
                }
                _ => format!("Error creating: {e}"),
            };
            let result = write(
                store,
                owner,
                None,
                Type::Warning,
                "FailedCreate",
                &message,
                Timestamp::now(),
                Some(REPEAT_INTERVAL),
            );
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording an event failed");
            }
        }
    }
    result
}

/// A controller's `SuccessfulDelete` of a pod, when `writes` says it was deleted.
pub fn deleted(store: &Store, owner: &Value, name: &str, writes: usize) {
    if writes == 0 {
        return;
    }
    let (owner_kind, owner_name) = words(owner);
    let message = match owner_kind {
        "StatefulSet" => format!("delete Pod {name} in StatefulSet {owner_name} successful"),
        _ => format!("Deleted pod: {name}"),
    };
    record(store, owner, Type::Normal, "SuccessfulDelete", &message);
}

/// A Deployment's `ScalingReplicaSet`, before its replica set `name` goes to `replicas`.
pub fn scaling(store: &Store, owner: &Value, namespace: &str, name: &str, replicas: i32) {
    let key = ObjectKey::new(Kind::ReplicaSet, namespace, name);
    let Some(before) = store.get(&key).and_then(|rs| rs["spec"]["replicas"].as_i64()) else { return };
    let replicas = i64::from(replicas);
    if before == replicas {
        return;
    }
    let direction = if replicas > before { "up" } else { "down" };
    let message = format!("Scaled {direction} replica set {name} from {before} to {replicas}");
    record(store, owner, Type::Normal, "ScalingReplicaSet", &message);
}

#[cfg(test)]
mod tests;
