//! Pod predicates the planners gate on, as Kubernetes' `podutil` defines them.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// `status.phase`, or "" when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Failed: evicted, node shut down, `activeDeadlineSeconds`. The owner deletes and recreates it.
pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

/// Succeeded: every container exited 0 under a non-Always restart policy.
pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

/// `deletionTimestamp` set: the pod is going away; its name stays taken until the object is gone.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running and not yet scheduled/initialised pods are Pending.
pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

/// The Ready condition, if present and True, with the time it became True.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

/// `podutil.IsPodReady`: the Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// `isRunningAndReady`: phase Running and Ready.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// How long until a Ready pod becomes available (`podutil.IsPodAvailable`: Ready for at least
/// `minReadySeconds`): `Some(ZERO)` when available now, `Some(d)` when it will be in `d`, `None`
/// when not Ready. A Ready condition without a transition time counts as available (Kubernetes
/// treats the zero time the same way).
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let Some(since) = since else { return Some(Duration::ZERO) };
    let due = since.as_second().saturating_add(i64::from(min_ready_seconds));
    let now_s = now.as_second();
    if due <= now_s { Some(Duration::ZERO) } else { Some(Duration::from_secs((due - now_s).unsigned_abs())) }
}

/// `podutil.IsPodAvailable`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    available_in(pod, min_ready_seconds, now) == Some(Duration::ZERO)
}

/// `isRunningAndAvailable`: Running, Ready, and Ready for `minReadySeconds`.
pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && is_available(pod, min_ready_seconds, now)
}

/// The pod's name ("" when unset).
pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// A label's value.
pub fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}
