//! StatefulSets, Deployments, ReplicaSets and Services' endpoints: the pure planners of
//! `stead_controller`, fed from the store; their actions executed against the store in order.

use crate::kinds::Kind;
use crate::store::{DeleteOptions, ObjectKey, Store, StoreError, is_deleting, meta_str, metadata_mut};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use stead_controller::{Action, Plan, deployment, endpoints, replicaset, statefulset};

use super::typed::TypedCache;

/// A failure while reconciling one object; the others go on.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("{object}: {message}")]
    Plan { object: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one pass.
#[derive(Debug, Default)]
pub struct Pass {
    pub writes: usize,
    pub errors: Vec<WorkloadError>,
    /// The earliest time a planner asked to look again.
    pub requeue_after: Option<Duration>,
    /// What each owner waits on (`statefulset/web` → "pod web-2 is not Running and Ready").
    pub waiting: BTreeMap<String, String>,
}

impl Pass {
    fn requeue(&mut self, after: Option<Duration>) {
        self.requeue_after = match (self.requeue_after, after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The typed objects the planners read, kept across passes (see [`TypedCache`]).
pub struct Observed {
    pods: TypedCache<Pod>,
    claims: TypedCache<PersistentVolumeClaim>,
    revisions: TypedCache<ControllerRevision>,
    replica_sets: TypedCache<ReplicaSet>,
    slices: TypedCache<EndpointSlice>,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            pods: TypedCache::new(Kind::Pod),
            claims: TypedCache::new(Kind::PersistentVolumeClaim),
            revisions: TypedCache::new(Kind::ControllerRevision),
            replica_sets: TypedCache::new(Kind::ReplicaSet),
            slices: TypedCache::new(Kind::EndpointSlice),
        }
    }
}

fn namespaces(store: &Store, kind: Kind) -> Vec<String> {
    let mut out: Vec<String> =
        store.list(kind, None).iter().filter_map(|o| meta_str(o, "namespace").map(str::to_string)).collect();
    out.dedup();
    out
}

/// One pass over every workload and Service, except the owners in `paused` (uids) which are
/// being stopped in order by someone else.
pub fn reconcile_all(store: &Store, observed: &Observed, now: Timestamp, paused: &BTreeSet<String>) -> Pass {
    let mut pass = Pass::default();
    for ns in namespaces(store, Kind::StatefulSet) {
        let pods = observed.pods.get(store, &ns);
        let claims = observed.claims.get(store, &ns);
        let revisions = observed.revisions.get(store, &ns);
        for object in store.list(Kind::StatefulSet, Some(&ns)) {
            if is_deleting(&object) || meta_str(&object, "uid").is_some_and(|u| paused.contains(u)) {
                continue;
            }
            let label = format!("statefulset/{}", meta_str(&object, "name").unwrap_or_default());
            let Ok(set) = serde_json::from_value::<StatefulSet>((*object).clone()) else { continue };
            let observed =
                statefulset::StatefulSetObserved { pods: &pods, claims: &claims, revisions: &revisions };
            let planned = statefulset::plan(&set, &observed, now).map_err(|e| e.to_string());
            carry_out(store, &object, &ns, &label, planned, &mut pass);
        }
    }
    for ns in namespaces(store, Kind::Deployment) {
        let pods = observed.pods.get(store, &ns);
        let sets = observed.replica_sets.get(store, &ns);
        for object in store.list(Kind::Deployment, Some(&ns)) {
            if is_deleting(&object) || meta_str(&object, "uid").is_some_and(|u| paused.contains(u)) {
                continue;
            }
            let label = format!("deployment/{}", meta_str(&object, "name").unwrap_or_default());
            let Ok(d) = serde_json::from_value::<Deployment>((*object).clone()) else { continue };
            let observed = deployment::DeploymentObserved { replica_sets: &sets, pods: &pods };
            let planned = deployment::plan(&d, &observed, now).map_err(|e| e.to_string());
            carry_out(store, &object, &ns, &label, planned, &mut pass);
        }
    }
    for ns in namespaces(store, Kind::ReplicaSet) {
        let pods = observed.pods.get(store, &ns);
        for object in store.list(Kind::ReplicaSet, Some(&ns)) {
            if is_deleting(&object) || meta_str(&object, "uid").is_some_and(|u| paused.contains(u)) {
                continue;
            }
            let label = format!("replicaset/{}", meta_str(&object, "name").unwrap_or_default());
            let Ok(rs) = serde_json::from_value::<ReplicaSet>((*object).clone()) else { continue };
            let observed = replicaset::ReplicaSetObserved { pods: &pods };
            let planned = replicaset::plan(&rs, &observed, now).map_err(|e| e.to_string());
            carry_out(store, &object, &ns, &label, planned, &mut pass);
        }
    }
    for ns in namespaces(store, Kind::Service) {
        let pods = observed.pods.get(store, &ns);
        let slices = observed.slices.get(store, &ns);
        for object in store.list(Kind::Service, Some(&ns)) {
            if is_deleting(&object) {
                continue;
            }
            let label = format!("service/{}", meta_str(&object, "name").unwrap_or_default());
            let Ok(svc) = serde_json::from_value::<Service>((*object).clone()) else { continue };
            for action in endpoints::plan(&svc, &pods, &slices) {
                match execute(store, &object, &ns, action) {
                    Ok(n) => pass.writes += n,
                    Err(e) => {
                        pass.errors
                            .push(WorkloadError::Plan { object: label.clone(), message: e.to_string() });
                        break;
                    }
                }
            }
        }
    }
    pass
}

/// Executes a plan's actions in order (stopping at the first failure: the world moved, the next
/// pass re-plans) and writes its status.
fn carry_out<S: Serialize>(
    store: &Store,
    owner: &Value,
    ns: &str,
    label: &str,
    planned: Result<Plan<S>, String>,
    pass: &mut Pass,
) {
    let plan = match planned {
        Ok(plan) => plan,
        Err(message) => {
            pass.errors.push(WorkloadError::Plan { object: label.into(), message });
            return;
        }
    };
    pass.requeue(plan.requeue_after);
    if let Some(waiting) = &plan.waiting_on {
        pass.waiting.insert(label.into(), waiting.clone());
    }
    for action in plan.actions {
        match execute(store, owner, ns, action) {
            Ok(n) => pass.writes += n,
            Err(
                StoreError::AlreadyExists { .. } | StoreError::Conflict { .. } | StoreError::NotFound { .. },
            ) => {
                pass.writes += 1;
                return;
            }
            Err(e) => {
                pass.errors.push(WorkloadError::Store(e));
                return;
            }
        }
    }
    let Ok(status) = serde_json::to_value(&plan.status) else { return };
    let Ok(key) = ObjectKey::of(owner) else { return };
    let Some(current) = store.get(&key) else { return };
    if current.get("status") != Some(&status) {
        let mut next = (*current).clone();
        next["status"] = status;
        metadata_mut(&mut next).remove("resourceVersion");
        match store.update_status(next) {
            Ok(_) => pass.writes += 1,
            Err(e) => pass.errors.push(e.into()),
        }
    }
}

fn as_object<K: k8s_openapi::Resource + Serialize>(k: &K) -> Value {
    stead_render::object(k)
}

/// Reads, changes and writes back one object; a missing one is `NotFound`.
fn modify(store: &Store, key: ObjectKey, f: impl FnOnce(&mut Value)) -> Result<usize, StoreError> {
    let current = store.get(&key).ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
    let mut next = (*current).clone();
    f(&mut next);
    if next == *current {
        return Ok(0);
    }
    store.update(next)?;
    Ok(1)
}

fn uid_matches(store: &Store, key: &ObjectKey, uid: Option<&str>) -> bool {
    match (store.get(key), uid) {
        (Some(o), Some(uid)) => meta_str(&o, "uid") == Some(uid),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn merge_map(target: &mut Value, map: &BTreeMap<String, String>) {
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in map {
        target[k.as_str()] = json!(v);
    }
}

/// Carries out one action. Returns how many writes it made.
fn execute(store: &Store, owner: &Value, ns: &str, action: Action) -> Result<usize, StoreError> {
    let key = |kind: Kind, name: &str| ObjectKey::new(kind, ns, name);
    match action {
        Action::CreateRevision(r) => store.create(as_object(&r)).map(|_| 1),
        Action::UpdateRevision { name, revision } => {
            modify(store, key(Kind::ControllerRevision, &name), |o| o["revision"] = json!(revision))
        }
        Action::DeleteRevision { name } => delete(store, &key(Kind::ControllerRevision, &name), None),
        Action::CreatePvc(pvc) => {
            match crate::events::created(store, owner, &as_object(&pvc), store.create(as_object(&pvc))) {
                Ok(_) => Ok(1),
                // Claims are sticky: an existing one is used as it is.
                Err(StoreError::AlreadyExists { .. }) => Ok(0),
                Err(e) => Err(e),
            }
        }
        Action::ResizePvc { name, storage } => modify(store, key(Kind::PersistentVolumeClaim, &name), |o| {
            o["spec"]["resources"]["requests"]["storage"] = json!(storage.0);
        }),
        Action::SetPvcOwners { name, owner_references } => {
            modify(store, key(Kind::PersistentVolumeClaim, &name), |o| {
                o["metadata"]["ownerReferences"] = json!(owner_references);
            })
        }
        Action::CreatePod(pod) => {
            crate::events::created(store, owner, &as_object(&pod), store.create(as_object(&pod))).map(|_| 1)
        }
        Action::DeletePod { name, uid, .. } => delete(store, &key(Kind::Pod, &name), uid.as_deref())
            .inspect(|n| crate::events::deleted(store, owner, &name, *n)),
        Action::PatchPodLabels { name, uid, labels } => {
            let k = key(Kind::Pod, &name);
            if !uid_matches(store, &k, uid.as_deref()) {
                return Err(StoreError::NotFound { key: k });
            }
            modify(store, k, |o| merge_map(&mut o["metadata"]["labels"], &labels))
        }
        Action::CreateReplicaSet(rs) => {
            crate::events::created(store, owner, &as_object(&rs), store.create(as_object(&rs))).map(|_| 1)
        }
        Action::ScaleReplicaSet { name, replicas, annotations } => {
            crate::events::scaling(store, owner, ns, &name, replicas);
            modify(store, key(Kind::ReplicaSet, &name), |o| {
                o["spec"]["replicas"] = json!(replicas);
                merge_map(&mut o["metadata"]["annotations"], &annotations);
            })
        }
        Action::AnnotateReplicaSet { name, annotations } => {
            modify(store, key(Kind::ReplicaSet, &name), |o| {
                merge_map(&mut o["metadata"]["annotations"], &annotations)
            })
        }
        Action::DeleteReplicaSet { name, uid } => {
            delete(store, &key(Kind::ReplicaSet, &name), uid.as_deref())
        }
        Action::AnnotateOwner { annotations } => {
            let k = ObjectKey::of(owner)?;
            modify(store, k, |o| merge_map(&mut o["metadata"]["annotations"], &annotations))
        }
        Action::CreateEndpointSlice(slice) => store.create(as_object(&slice)).map(|_| 1),
        Action::UpdateEndpointSlice(slice) => {
            let desired = as_object(&slice);
            let name = slice.metadata.name.clone().unwrap_or_default();
            modify(store, key(Kind::EndpointSlice, &name), |o| {
                for field in ["endpoints", "ports", "addressType"] {
                    o[field] = desired[field].clone();
                }
                o["metadata"]["labels"] = desired["metadata"]["labels"].clone();
                o["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"].clone();
            })
        }
        Action::DeleteEndpointSlice { name } => delete(store, &key(Kind::EndpointSlice, &name), None),
    }
}

fn delete(store: &Store, key: &ObjectKey, uid: Option<&str>) -> Result<usize, StoreError> {
    if !uid_matches(store, key, uid) {
        return Ok(0);
    }
    match store.get(key) {
        Some(o) if is_deleting(&o) => Ok(0),
        Some(_) => store.delete(key, DeleteOptions::default()).map(|_| 1),
        None => Ok(0),
    }
}
