//! What a planner returns: ordered actions, the owner's computed status, and when to look again.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The result of one planning pass over one owner.
///
/// The loop executes `actions` in order, stopping at the first failure (an `AlreadyExists` or a
/// conflict just means the world moved: re-plan), writes `status` to the owner's status
/// subresource when it differs, and plans again after the next watch event or after
/// `requeue_after`, whichever comes first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan<S> {
    pub actions: Vec<Action>,
    pub status: S,
    /// Look again after this long even without a watch event (minReadySeconds becoming due, a
    /// progress deadline falling due).
    pub requeue_after: Option<Duration>,
    /// What the owner waits on, in words ("pod web-2 is not Running and Ready"), for progress
    /// displays and the Progressing condition's message. None when nothing blocks.
    pub waiting_on: Option<String>,
}

/// Why a pod is deleted; the loop puts it in the event it records on the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DeleteReason {
    /// Phase Failed or Succeeded: a StatefulSet deletes it and recreates the identity later.
    Finished,
    /// The ordinal is outside `[start, start+replicas)` (scale down, or `ordinals.start` raised).
    ScaleDown,
    /// A rolling update replaces a pod of an outdated revision.
    Update,
    /// stead's fix for Kubernetes #67250: a not-Ready pod of a revision that is neither current nor
    /// update (e.g. a broken template since reverted) is replaced instead of waited on.
    StuckRevision,
    /// A ReplicaSet has more pods than replicas.
    Excess,
}

/// One step for the loop to execute. Objects to create carry complete metadata (name,
/// namespace, labels, annotations, owner references). Steps on existing objects name them, with the
/// uid where a precondition guards against acting on a successor of the same name.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Action {
    /// Create this ControllerRevision. `AlreadyExists`: re-plan (a hash collision is then
    /// detected and `collisionCount` bumped).
    CreateRevision(ControllerRevision),
    /// Set `.revision` of an existing ControllerRevision: a rollback reuses an older revision
    /// whose template equals the set's, renumbered as the newest.
    UpdateRevision { name: String, revision: i64 },
    /// Delete a ControllerRevision beyond `revisionHistoryLimit`.
    DeleteRevision { name: String },
    /// Create this PersistentVolumeClaim (always before the pod that mounts it). `AlreadyExists`
    /// is fine: claims are sticky and never replaced.
    CreatePvc(PersistentVolumeClaim),
    /// Raise `spec.resources.requests.storage` of an existing claim to `storage` (stead's
    /// resizable claim templates; never shrinks).
    ResizePvc { name: String, storage: Quantity },
    /// Replace the claim's `metadata.ownerReferences` with this list: the retention policy is
    /// carried out by owner references, which the garbage collector then acts on. References to
    /// owners other than the set and its pods are kept as they were.
    SetPvcOwners { name: String, owner_references: Vec<OwnerReference> },
    /// Create this pod. The name is never one that exists (not even terminating).
    CreatePod(Pod),
    /// Delete the pod gracefully, with `uid` as a precondition.
    DeletePod { name: String, uid: Option<String>, reason: DeleteReason },
    /// Merge these labels into the pod's labels (identity repair: pod-name, pod-index).
    PatchPodLabels { name: String, uid: Option<String>, labels: BTreeMap<String, String> },
    /// Create this ReplicaSet.
    CreateReplicaSet(ReplicaSet),
    /// Set a ReplicaSet's `spec.replicas`, and merge `annotations` (the deployment's desired and
    /// max replicas, kept current as Kubernetes does).
    ScaleReplicaSet { name: String, replicas: i32, annotations: BTreeMap<String, String> },
    /// Merge annotations into a ReplicaSet (the revision bump when a rollback reuses it).
    AnnotateReplicaSet { name: String, annotations: BTreeMap<String, String> },
    /// Delete a ReplicaSet beyond `revisionHistoryLimit` (it has no pods left).
    DeleteReplicaSet { name: String, uid: Option<String> },
    /// Merge annotations into the owner itself (a Deployment's `deployment.kubernetes.io/revision`).
    AnnotateOwner { annotations: BTreeMap<String, String> },
    /// Create this EndpointSlice.
    CreateEndpointSlice(EndpointSlice),
    /// Replace the EndpointSlice of this name with this content.
    UpdateEndpointSlice(EndpointSlice),
    /// Delete an EndpointSlice no longer needed.
    DeleteEndpointSlice { name: String },
}

impl Action {
    /// A short stable word for the action's kind (events, logs, tests).
    pub fn verb(&self) -> &'static str {
        match self {
            Action::CreateRevision(_) => "create-revision",
            Action::UpdateRevision { .. } => "update-revision",
            Action::DeleteRevision { .. } => "delete-revision",
            Action::CreatePvc(_) => "create-pvc",
            Action::ResizePvc { .. } => "resize-pvc",
            Action::SetPvcOwners { .. } => "set-pvc-owners",
            Action::CreatePod(_) => "create-pod",
            Action::DeletePod { .. } => "delete-pod",
            Action::PatchPodLabels { .. } => "patch-pod-labels",
            Action::CreateReplicaSet(_) => "create-replicaset",
            Action::ScaleReplicaSet { .. } => "scale-replicaset",
            Action::AnnotateReplicaSet { .. } => "annotate-replicaset",
            Action::DeleteReplicaSet { .. } => "delete-replicaset",
            Action::AnnotateOwner { .. } => "annotate-owner",
            Action::CreateEndpointSlice(_) => "create-endpointslice",
            Action::UpdateEndpointSlice(_) => "update-endpointslice",
            Action::DeleteEndpointSlice { .. } => "delete-endpointslice",
        }
    }

    /// The name of the object the action is about.
    pub fn object_name(&self) -> &str {
        match self {
            Action::CreateRevision(r) => r.metadata.name.as_deref().unwrap_or(""),
            Action::CreatePvc(c) => c.metadata.name.as_deref().unwrap_or(""),
            Action::CreatePod(p) => p.metadata.name.as_deref().unwrap_or(""),
            Action::CreateReplicaSet(r) => r.metadata.name.as_deref().unwrap_or(""),
            Action::CreateEndpointSlice(s) | Action::UpdateEndpointSlice(s) => {
                s.metadata.name.as_deref().unwrap_or("")
            }
            Action::AnnotateOwner { .. } => "",
            Action::UpdateRevision { name, .. }
            | Action::DeleteRevision { name }
            | Action::ResizePvc { name, .. }
            | Action::SetPvcOwners { name, .. }
            | Action::DeletePod { name, .. }
            | Action::PatchPodLabels { name, .. }
            | Action::ScaleReplicaSet { name, .. }
            | Action::AnnotateReplicaSet { name, .. }
            | Action::DeleteReplicaSet { name, .. }
            | Action::DeleteEndpointSlice { name } => name,
        }
    }
}

/// Earliest of two optional requeue delays.
pub(crate) fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
