//! Service policy: whitelists as a NetworkPolicy, autoscaling as a HorizontalPodAutoscaler.

use crate::labels::{Identity, NAME_LABEL};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier,
    MetricSpec, MetricTarget, PodsMetricSource,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// The label Kubernetes puts on every Namespace with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The per-pod metric the sidecar exports and the HPA targets.
pub const CONCURRENCY_METRIC: &str = "stead_proxy_requests_in_flight";
/// In-flight requests per pod the autoscaler aims for when the service does not say.
pub const DEFAULT_TARGET_CONCURRENCY: i32 = 50;
pub const DEFAULT_MAX_REPLICAS: i32 = 10;

/// Space Cloud's whitelist semantics, as ingress rules:
/// `{projectId: "*"}` opens the service to everyone; `{projectId: p, service: "*"}` admits every pod
/// of namespace `p`; `{projectId: p, service: s}` admits the pods of service `s` in `p`. An empty
/// list admits no one. No `whitelists` field: no policy.
pub fn whitelist(id: &Identity<'_>) -> Option<NetworkPolicy> {
    let entries = id.svc.spec.whitelists.as_ref()?;
    let open = entries.iter().any(|w| w.project_id == "*");
    let ingress = if open {
        vec![NetworkPolicyIngressRule::default()]
    } else if entries.is_empty() {
        Vec::new()
    } else {
        let from = entries
            .iter()
            .map(|w| NetworkPolicyPeer {
                namespace_selector: Some(match_labels(NAMESPACE_NAME_LABEL, &w.project_id)),
                pod_selector: (w.service != "*").then(|| match_labels(NAME_LABEL, &w.service)),
                ip_block: None,
            })
            .collect();
        vec![NetworkPolicyIngressRule { from: Some(from), ports: None }]
    };
    Some(NetworkPolicy {
        metadata: id.meta(format!("{}-whitelist", id.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(id.selector()), match_expressions: None }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}

fn match_labels(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        match_expressions: None,
    }
}

/// An HPA on the StatefulService's scale subresource, targeting in-flight requests per pod.
/// Rendered when `autoscaling.enabled` is true, or unset with `maxReplicas` given.
pub fn autoscaler(id: &Identity<'_>) -> Option<HorizontalPodAutoscaler> {
    let a = id.svc.spec.autoscaling.as_ref()?;
    if !a.enabled.unwrap_or(a.max_replicas.is_some()) {
        return None;
    }
    let target = a.target_concurrency.or(a.request_target_concurrency).unwrap_or(DEFAULT_TARGET_CONCURRENCY);
    Some(HorizontalPodAutoscaler {
        metadata: id.meta(id.name),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(stead_api::types::API_VERSION.to_owned()),
                kind: "StatefulService".to_owned(),
                name: id.name.to_owned(),
            },
            min_replicas: Some(a.min_replicas.unwrap_or(1)),
            max_replicas: a.max_replicas.unwrap_or(DEFAULT_MAX_REPLICAS),
            metrics: Some(vec![MetricSpec {
                type_: "Pods".to_owned(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier { name: CONCURRENCY_METRIC.to_owned(), selector: None },
                    target: MetricTarget {
                        type_: "AverageValue".to_owned(),
                        average_value: Some(Quantity(target.to_string())),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    })
}
