//! The controller loops' steps. Each step reads the store, decides, writes; the engine runs every
//! step after every change until nothing changes (level-triggered, like Kubernetes' controllers).

pub mod claims;
pub mod pods;
pub mod statefulservice;
pub mod typed;
pub mod workloads;

use crate::store::{ObjectKey, Store, StoreError, metadata_mut};
use serde_json::Value;
use std::sync::Arc;

/// Creates `desired`, or updates the stored object so that every field `desired` sets matches
/// (metadata's labels, annotations and owner references; every other top-level field but
/// `status`). Returns whether anything was written.
pub fn apply(store: &Store, desired: Value) -> Result<bool, StoreError> {
    let key = ObjectKey::of(&desired)?;
    let Some(current) = store.get(&key) else {
        store.create(desired)?;
        return Ok(true);
    };
    let next = merged(&current, desired);
    if next == *current {
        return Ok(false);
    }
    tracing::debug!(object = %key, "apply changes the object");
    store.update(next)?;
    Ok(true)
}

/// The stored object with `desired`'s fields laid over it.
fn merged(current: &Arc<Value>, desired: Value) -> Value {
    let mut next = (**current).clone();
    let Value::Object(fields) = desired else { return next };
    for (field, value) in fields {
        match field.as_str() {
            "status" => {}
            "metadata" => {
                let meta = metadata_mut(&mut next);
                for part in ["labels", "annotations", "ownerReferences"] {
                    let wanted = match part {
                        "annotations" => with_controller_annotations(&current["metadata"], value.get(part)),
                        _ => value.get(part).cloned(),
                    };
                    match wanted {
                        Some(v) => {
                            meta.insert(part.into(), v);
                        }
                        None => {
                            meta.remove(part);
                        }
                    }
                }
            }
            "spec" if current["kind"] == "Service" => {
                next["spec"] = keep_allocated(&current["spec"], value);
            }
            _ => {
                next[field.as_str()] = value;
            }
        }
    }
    next
}

/// Annotations the workload controllers write on the object itself (a Deployment's
/// `deployment.kubernetes.io/revision`): theirs, not the applier's, as on an API server.
const CONTROLLER_ANNOTATION_PREFIX: &str = "deployment.kubernetes.io/";

/// `desired` annotations plus the controllers' ones the object has. Dropping those would make the
/// applier (a StatefulService's render) and the Deployment controller rewrite the object forever.
fn with_controller_annotations(current_meta: &Value, desired: Option<&Value>) -> Option<Value> {
    let kept: serde_json::Map<String, Value> = current_meta["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .filter(|(k, _)| k.starts_with(CONTROLLER_ANNOTATION_PREFIX))
                .filter(|(k, _)| desired.and_then(|d| d.get(k.as_str())).is_none())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if kept.is_empty() {
        return desired.cloned();
    }
    let mut merged = desired.and_then(Value::as_object).cloned().unwrap_or_default();
    merged.extend(kept);
    Some(Value::Object(merged))
}

/// A Service's `desired` spec with the addresses the engine allocated (`clusterIP`, `clusterIPs`,
/// each port's `nodePort`) kept where `desired` leaves them unset, as the API server keeps them.
fn keep_allocated(current: &Value, mut desired: Value) -> Value {
    for field in ["clusterIP", "clusterIPs"] {
        if desired.get(field).is_none()
            && let Some(v) = current.get(field)
            && let Some(spec) = desired.as_object_mut()
        {
            spec.insert(field.into(), v.clone());
        }
    }
    let old_ports = current["ports"].as_array().cloned().unwrap_or_default();
    let published = matches!(desired["type"].as_str(), Some("NodePort" | "LoadBalancer"));
    if published && let Some(ports) = desired.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
            let same = old_ports.iter().find(|o| {
                o["port"] == p["port"]
                    && o["protocol"].as_str().unwrap_or("TCP") == p["protocol"].as_str().unwrap_or("TCP")
            });
            if let Some(np) = same.and_then(|o| o.get("nodePort"))
                && let Some(port) = p.as_object_mut()
            {
                port.insert("nodePort".into(), np.clone());
            }
        }
    }
    desired
}

/// A controller owner reference to `owner`, as Kubernetes' controllers set it.
pub fn controller_ref(owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether `object` is controlled by the object with `uid`.
pub fn controlled_by(object: &Value, uid: &str) -> bool {
    crate::gc::controller_of(object).is_some_and(|r| r.uid == uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use serde_json::json;

    #[test]
    fn reapplying_a_service_keeps_the_allocated_addresses() {
        let store = Store::in_memory();
        let desired = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30001}]}});
        assert!(apply(&store, desired.clone()).expect("create"));
        let key = ObjectKey::new(Kind::Service, "ns", "web");
        let mut allocated = (*store.get(&key).expect("stored")).clone();
        allocated["spec"]["clusterIP"] = json!("10.244.255.193");
        allocated["spec"]["clusterIPs"] = json!(["10.244.255.193"]);
        allocated["spec"]["ports"][0]["nodePort"] = json!(31234);
        store.update(allocated).expect("allocate");
        assert!(!apply(&store, desired).expect("reapply"), "nothing to change");
        // A port the user sets wins; a type without node ports drops them.
        let clusterip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        assert!(apply(&store, clusterip).expect("reapply"));
        let now = store.get(&key).expect("stored");
        assert_eq!(now["spec"]["clusterIP"], "10.244.255.193");
        assert!(now["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn reapplying_a_deployment_keeps_its_controllers_revision_annotation() {
        let store = Store::in_memory();
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "annotations": {"team": "a", "old": "x"}},
            "spec": {"replicas": 1}});
        assert!(apply(&store, desired).expect("create"));
        let key = ObjectKey::new(Kind::Deployment, "ns", "web");
        let mut revised = (*store.get(&key).expect("stored")).clone();
        revised["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
        store.update(revised).expect("revision");
        let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "annotations": {"team": "a"}},
            "spec": {"replicas": 1}});
        assert!(apply(&store, desired.clone()).expect("reapply"), "the applier's annotation goes");
        assert!(!apply(&store, desired).expect("reapply"), "then nothing changes: no fight");
        let now = store.get(&key).expect("stored");
        assert_eq!(
            now["metadata"]["annotations"],
            json!({"team": "a", "deployment.kubernetes.io/revision": "2"})
        );
        let bare = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns"}, "spec": {"replicas": 1}});
        assert!(apply(&store, bare.clone()).expect("reapply"));
        assert!(!apply(&store, bare).expect("reapply"));
        let now = store.get(&key).expect("stored");
        assert_eq!(now["metadata"]["annotations"], json!({"deployment.kubernetes.io/revision": "2"}));
    }
}
