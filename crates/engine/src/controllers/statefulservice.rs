//! StatefulService → its children, through `stead_render` (exactly what the operator applies),
//! and the service's status from its workload's.

use super::{apply, controlled_by};
use crate::kinds::Kind;
use crate::store::{DeleteOptions, ObjectKey, Store, StoreError, is_deleting, meta_str};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use stead_api::types::{StatefulService, StatefulStore};
use stead_render::RenderOptions;

/// A problem with one service; the others are still reconciled.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("statefulservice {namespace}/{name} is malformed: {source}")]
    Malformed { namespace: String, name: String, source: serde_json::Error },
    #[error("statefulservice {namespace}/{name} would have two children named {child}")]
    Duplicate { namespace: String, name: String, child: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One pass over every StatefulService. Returns how many writes it made.
pub fn reconcile_all(store: &Store, opts: &RenderOptions) -> (usize, Vec<ServiceError>) {
    let mut writes = 0;
    let mut errors = Vec::new();
    for object in store.list(Kind::StatefulService, None) {
        if is_deleting(&object) {
            continue;
        }
        match reconcile(store, &object, opts) {
            Ok(n) => writes += n,
            Err(e) => errors.push(e),
        }
    }
    (writes, errors)
}

fn reconcile(store: &Store, object: &Value, opts: &RenderOptions) -> Result<usize, ServiceError> {
    let namespace = meta_str(object, "namespace").unwrap_or_default().to_string();
    let name = meta_str(object, "name").unwrap_or_default().to_string();
    let uid = meta_str(object, "uid").unwrap_or_default().to_string();
    let svc: StatefulService = serde_json::from_value(object.clone()).map_err(|source| {
        ServiceError::Malformed { namespace: namespace.clone(), name: name.clone(), source }
    })?;
    let store_name = svc.spec.store_name().map(str::to_string);
    let stateful_store: Option<StatefulStore> = store_name
        .as_deref()
        .and_then(|s| store.get(&ObjectKey::new(Kind::StatefulStore, &namespace, s)))
        .and_then(|o| serde_json::from_value((*o).clone()).ok());
    let rendered = stead_render::render_service(&svc, stateful_store.as_ref(), opts);

    let mut writes = 0;
    let mut wanted = BTreeSet::new();
    let mut workload = None;
    for child in &rendered.objects {
        let Ok(value) = child.to_json() else { continue };
        let key = ObjectKey::of(&value)?;
        if matches!(key.kind, Kind::StatefulSet | Kind::Deployment) {
            workload = Some(key.clone());
        }
        if !wanted.insert(key.clone()) {
            // Two children with one name would overwrite each other on every pass.
            return Err(ServiceError::Duplicate { namespace, name, child: key.to_string() });
        }
        writes += usize::from(apply(store, value)?);
    }
    // Children a previous render made and this one does not.
    for (key, child) in store.all_except(Kind::Event) {
        if key.namespace == namespace && controlled_by(&child, &uid) && !wanted.contains(&key) {
            match store.delete(&key, DeleteOptions::default()) {
                Ok(_) | Err(StoreError::NotFound { .. }) => writes += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    let workload_status =
        workload.and_then(|k| store.get(&k)).map(|w| w["status"].clone()).unwrap_or(Value::Null);
    let store_missing = store_name.is_some() && stateful_store.is_none();
    let status = status(object, &workload_status, store_name.as_deref().filter(|_| store_missing));
    if object.get("status") != Some(&status) {
        tracing::debug!(service = %name, old = %object["status"], new = %status, "status changes");
        let mut next = object.clone();
        next["status"] = status;
        if let Some(meta) = next["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        store.update_status(next)?;
        writes += 1;
    }
    Ok(writes)
}

/// The service's status: counts from the workload, conditions from them and from the store check.
fn status(svc: &Value, workload: &Value, missing_store: Option<&str>) -> Value {
    let desired = svc["spec"]["replicas"].as_i64().unwrap_or(1);
    let replicas = workload["replicas"].as_i64().unwrap_or(0);
    let ready = workload["readyReplicas"].as_i64().unwrap_or(0);
    let updated = workload["updatedReplicas"].as_i64().unwrap_or(0);
    let name = meta_str(svc, "name").unwrap_or_default();
    let all_ready = ready == desired && updated == desired && replicas == desired;
    let (ready_reason, ready_message) = if all_ready {
        ("AllReplicasReady", format!("{ready}/{desired} replicas ready"))
    } else {
        ("ReplicasNotReady", format!("{ready}/{desired} replicas ready, {updated} updated"))
    };
    let degraded = match missing_store {
        Some(store) => ("True", "StoreNotFound", format!("StatefulStore {store:?} not found")),
        None => ("False", "AsExpected", String::new()),
    };
    let old = svc["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let conditions = vec![
        condition(&old, "Ready", if all_ready { "True" } else { "False" }, ready_reason, &ready_message),
        condition(
            &old,
            "Progressing",
            if all_ready { "False" } else { "True" },
            if all_ready { "RolloutComplete" } else { "RollingOut" },
            "",
        ),
        condition(&old, "Degraded", degraded.0, degraded.1, &degraded.2),
    ];
    json!({
        "observedGeneration": svc["metadata"]["generation"],
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "selector": format!("{}={name}", stead_render::SELECTOR_LABEL),
        "conditions": conditions,
    })
}

/// A condition, keeping `lastTransitionTime` when the status did not change.
pub fn condition(old: &[Value], kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let since = old
        .iter()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
        .unwrap_or_else(crate::store::now_string);
    json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since})
}
