//! StatefulService → its children and its status, through `stead_render::plan_service`: the
//! same plan the operator carries out (the same children, the same hold on a missing store, the
//! same status and condition Events).

use super::{apply, controlled_by};
use crate::kinds::Kind;
use crate::store::{DeleteOptions, ObjectKey, Store, StoreError, is_deleting, meta_str};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use stead_api::types::{StatefulService, StatefulStore};
use stead_render::{Children, RenderOptions, WorkloadState};

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

/// The outcome of one pass over every StatefulService.
#[derive(Debug, Default)]
pub struct Pass {
    pub writes: usize,
    pub errors: Vec<ServiceError>,
    /// What each service waits on (`statefulservice/shop` → "0/1 replicas ready, ...").
    pub waiting: BTreeMap<String, String>,
}

/// One pass over every StatefulService, at time `now`.
pub fn reconcile_all(store: &Store, opts: &RenderOptions, now: Timestamp) -> Pass {
    let mut pass = Pass::default();
    for object in store.list(Kind::StatefulService, None) {
        if is_deleting(&object) {
            continue;
        }
        match reconcile(store, &object, opts, now) {
            Ok((n, waiting)) => {
                pass.writes += n;
                if let Some(waiting) = waiting {
                    let name = meta_str(&object, "name").unwrap_or_default();
                    pass.waiting.insert(format!("statefulservice/{name}"), waiting);
                }
            }
            Err(e) => pass.errors.push(e),
        }
    }
    pass
}

/// Carries out the service's plan: its children applied and pruned (unless held), then its
/// status from the workload as it now stands. Returns the writes and what the service waits on.
fn reconcile(
    store: &Store,
    object: &Value,
    opts: &RenderOptions,
    now: Timestamp,
) -> Result<(usize, Option<String>), ServiceError> {
    let namespace = meta_str(object, "namespace").unwrap_or_default().to_string();
    let name = meta_str(object, "name").unwrap_or_default().to_string();
    let uid = meta_str(object, "uid").unwrap_or_default().to_string();
    let svc: StatefulService = serde_json::from_value(object.clone()).map_err(|source| {
        ServiceError::Malformed { namespace: namespace.clone(), name: name.clone(), source }
    })?;
    let stateful_store: Option<StatefulStore> = svc
        .spec
        .store_name()
        .and_then(|s| store.get(&ObjectKey::new(Kind::StatefulStore, &namespace, s)))
        .and_then(|o| serde_json::from_value((*o).clone()).ok());
    let plan = stead_render::plan_service(&svc, stateful_store.as_ref(), opts);

    let mut writes = 0;
    let mut workload = None;
    if let Children::Apply(rendered) = &plan.children {
        let mut wanted = BTreeSet::new();
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
    }

    let workload = workload.and_then(|k| store.get(&k)).and_then(|w| WorkloadState::from_json(&w));
    let planned = plan.status(workload.as_ref(), now);
    let status = serde_json::to_value(&planned.status).map_err(|source| ServiceError::Malformed {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    })?;
    if object.get("status") != Some(&status) {
        tracing::debug!(service = %name, old = %object["status"], new = %status, "status changes");
        let mut next = object.clone();
        next["status"] = status;
        if let Some(meta) = next["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        store.update_status(next)?;
        writes += 1;
        for t in stead_render::transitions(&svc, &planned.status) {
            let ty = if t.warning { crate::events::Type::Warning } else { crate::events::Type::Normal };
            crate::events::record(store, object, ty, &t.reason, &t.message);
        }
    }
    Ok((writes, planned.waiting_on))
}
