//! PersistentVolumeClaims: bound at once to a directory of the node (`<state>/volumes/<ns>/<claim>`,
//! made by the runtime when a pod mounts it), as a dynamic provisioner with `Delete` reclaim would
//! bind them; the directory goes when the claim is deleted (see `local::reclaim_volumes`).

use crate::kinds::Kind;
use crate::store::{Store, StoreError, is_deleting, metadata_mut};
use serde_json::json;

/// One pass: every claim without a phase becomes `Bound`. Returns how many writes it made.
pub fn reconcile_all(store: &Store) -> Result<usize, StoreError> {
    let mut writes = 0;
    for claim in store.list(Kind::PersistentVolumeClaim, None) {
        if is_deleting(&claim) || claim["status"]["phase"].is_string() {
            continue;
        }
        let mut next = (*claim).clone();
        let uid = claim["metadata"]["uid"].as_str().unwrap_or_default();
        next["status"] = json!({
            "phase": "Bound",
            "accessModes": claim["spec"]["accessModes"],
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
        });
        next["spec"]["volumeName"] = json!(format!("pvc-{uid}"));
        metadata_mut(&mut next).remove("resourceVersion");
        let updated = store.update(next.clone())?;
        let mut with_status = (*updated).clone();
        with_status["status"] = next["status"].clone();
        store.update_status(with_status)?;
        writes += 2;
    }
    Ok(writes)
}
