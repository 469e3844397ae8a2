//! What the kubelet's root tests share: pods in namespace `e2e` and a bounded wait for a status.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use stead_node::kubelet::Kubelet;

/// A pod `name` in namespace `e2e` with `spec`, its uid unique to this test process.
pub fn pod(name: &str, spec: Value) -> Pod {
    let uid = format!("{name}-{}", std::process::id());
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "e2e", "uid": uid}, "spec": spec}))
        .expect("pod")
}

/// Polls the pod's status until `pred` holds (bounded).
pub async fn wait_status(
    k: &Kubelet,
    name: &str,
    limit: Duration,
    pred: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    let deadline = Instant::now() + limit;
    loop {
        let st = k.pod_status("e2e", name);
        if let Some(s) = &st
            && pred(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "pod {name}: condition not reached within {limit:?}; status: {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
