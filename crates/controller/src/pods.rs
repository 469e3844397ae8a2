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
    // To the nanosecond: `now` is rarely on a whole second, and rounding it down made a requeue
    // up to a second late.
    let wait = (since.as_nanosecond() + i128::from(min_ready_seconds) * 1_000_000_000) - now.as_nanosecond();
    Some(u64::try_from(wait).map_or(Duration::ZERO, Duration::from_nanos))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_at(seconds: i64) -> Pod {
        serde_json::from_value(serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": Timestamp::from_second(seconds).unwrap()}
        ]}}))
        .unwrap()
    }

    #[test]
    fn availability_is_due_to_the_nanosecond_not_the_second() {
        let pod = ready_at(1_000);
        let now = Timestamp::from_millisecond(1_000_800).unwrap();
        assert_eq!(available_in(&pod, 1, now), Some(Duration::from_millis(200)));
        assert_eq!(available_in(&pod, 0, now), Some(Duration::ZERO));
        let later = Timestamp::from_millisecond(1_001_000).unwrap();
        assert_eq!(available_in(&pod, 1, later), Some(Duration::ZERO), "due exactly now");
        assert!(is_available(&pod, 1, later));
        assert_eq!(available_in(&Pod::default(), 1, now), None, "not ready");
    }
}
