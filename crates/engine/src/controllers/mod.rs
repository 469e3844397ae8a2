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
                    match value.get(part) {
                        Some(v) => {
                            meta.insert(part.into(), v.clone());
                        }
                        None => {
                            meta.remove(part);
                        }
                    }
                }
            }
            _ => {
                next[field.as_str()] = value;
            }
        }
    }
    next
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
