//! The garbage collector: dependents whose owners are gone are deleted, foreground deletions wait
//! for their blocking dependents, orphaning deletions release their dependents. Kubernetes' rules,
//! run over the whole store after every change (a local store is small).

use crate::kinds::Kind;
use crate::store::{
    DeleteOptions, FOREGROUND, ORPHAN, ObjectKey, Store, StoreError, finalizers, is_deleting, meta_str,
    metadata_mut,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// One pass. Returns how many objects were changed or deleted. Events are not walked: stead's own
/// have no owners, and they go by age and number instead ([`crate::events`]).
pub fn collect(store: &Store) -> Result<usize, StoreError> {
    let all = store.all_except(Kind::Event);
    let by_uid: BTreeMap<&str, (&ObjectKey, &Value)> =
        all.iter().filter_map(|(k, v)| meta_str(v, "uid").map(|uid| (uid, (k, v.as_ref())))).collect();
    let mut changes = 0;

    // Owners being deleted.
    for (key, object) in &all {
        if !is_deleting(object) {
            continue;
        }
        let fins = finalizers(object);
        let uid = meta_str(object, "uid").unwrap_or_default();
        let dependents: Vec<&(ObjectKey, std::sync::Arc<Value>)> =
            all.iter().filter(|(_, d)| owner_refs(d).iter().any(|r| r.uid == uid)).collect();
        if fins.iter().any(|f| f == ORPHAN) {
            for (dkey, dependent) in &dependents {
                let mut next = (**dependent).clone();
                let kept: Vec<Value> = next["metadata"]["ownerReferences"]
                    .as_array()
                    .map(|refs| refs.iter().filter(|r| r["uid"].as_str() != Some(uid)).cloned().collect())
                    .unwrap_or_default();
                metadata_mut(&mut next).insert("ownerReferences".into(), json!(kept));
                strip_version(&mut next);
                ignore_gone(store.update(next), dkey)?;
                changes += 1;
            }
            drop_finalizer(store, key, object, ORPHAN)?;
            changes += 1;
        } else if fins.iter().any(|f| f == FOREGROUND) {
            let blocking: Vec<_> = dependents
                .iter()
                .filter(|(_, d)| owner_refs(d).iter().any(|r| r.uid == uid && r.block_owner_deletion))
                .collect();
            for (dkey, dependent) in &blocking {
                if !is_deleting(dependent) {
                    ignore_gone(store.delete(dkey, DeleteOptions::default()), dkey)?;
                    changes += 1;
                }
            }
            if blocking.is_empty() {
                drop_finalizer(store, key, object, FOREGROUND)?;
                changes += 1;
            }
        }
    }

    // Dependents whose owners are all gone.
    let gone_owner = |r: &OwnerRef| match by_uid.get(r.uid.as_str()) {
        None => true,
        // A uid reused under another name cannot happen; a different kind means a stale ref.
        Some((k, _)) => k.kind.name() != r.kind || k.name != r.name,
    };
    let mut deleted = BTreeSet::new();
    for (key, object) in &all {
        let refs = owner_refs(object);
        if refs.is_empty() || is_deleting(object) || !refs.iter().all(gone_owner) {
            continue;
        }
        if deleted.insert(key.clone()) {
            ignore_gone(store.delete(key, DeleteOptions::default()), key)?;
            changes += 1;
        }
    }
    Ok(changes)
}

fn drop_finalizer(store: &Store, key: &ObjectKey, object: &Value, finalizer: &str) -> Result<(), StoreError> {
    let mut next = object.clone();
    let kept: Vec<String> = finalizers(object).into_iter().filter(|f| f != finalizer).collect();
    metadata_mut(&mut next).insert("finalizers".into(), json!(kept));
    strip_version(&mut next);
    if kept.is_empty() && key.kind != Kind::Pod {
        return ignore_gone(store.remove(key), key).map(|_| ());
    }
    ignore_gone(store.update(next), key).map(|_| ())
}

fn strip_version(object: &mut Value) {
    metadata_mut(object).remove("resourceVersion");
}

fn ignore_gone<T>(r: Result<T, StoreError>, _key: &ObjectKey) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The parts of an owner reference the collector needs.
#[derive(Debug)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: bool,
}

pub fn owner_refs(object: &Value) -> Vec<OwnerRef> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| OwnerRef {
                    kind: r["kind"].as_str().unwrap_or_default().to_string(),
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    uid: r["uid"].as_str().unwrap_or_default().to_string(),
                    controller: r["controller"].as_bool().unwrap_or(false),
                    block_owner_deletion: r["blockOwnerDeletion"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The controller (the owner reference with `controller: true`) of an object.
pub fn controller_of(object: &Value) -> Option<OwnerRef> {
    owner_refs(object).into_iter().find(|r| r.controller)
}
