//! The child kinds the operator owns, the desired children (from `stead_render`, never built
//! here), and the comparison that decides whether a live child needs an apply.

use crate::Error;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::ApiResource;
use serde_json::Value as J;
use stead_render::Rendered;

/// A kind of child the operator applies, lists and prunes.
#[derive(Clone, Debug)]
pub struct ChildKind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub resource: ApiResource,
}

/// Every child kind render can produce, in a fixed order (lists and prunes go in this order).
pub fn child_kinds() -> &'static [ChildKind] {
    static KINDS: std::sync::OnceLock<Vec<ChildKind>> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| {
        fn kind<K: kube::Resource<DynamicType = ()> + k8s_openapi::Resource>() -> ChildKind {
            ChildKind { api_version: K::API_VERSION, kind: K::KIND, resource: ApiResource::erase::<K>(&()) }
        }
        vec![
            kind::<Deployment>(),
            kind::<StatefulSet>(),
            kind::<Service>(),
            kind::<NetworkPolicy>(),
            kind::<HorizontalPodAutoscaler>(),
        ]
    })
}

/// The index in [`child_kinds`] of `apiVersion`/`kind`.
pub fn kind_index(api_version: &str, kind: &str) -> Option<usize> {
    child_kinds().iter().position(|k| k.api_version == api_version && k.kind == kind)
}

/// One object render wants to exist, as the exact JSON render produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub kind: usize,
    pub name: String,
    pub body: J,
}

/// Render's objects as apply bodies, in render's order.
pub fn desired(rendered: &Rendered) -> Result<Vec<Desired>, Error> {
    rendered
        .objects
        .iter()
        .map(|m| {
            let body = m.to_json().map_err(|source| Error::Serialize { what: m.reference(), source })?;
            let kind = kind_index(m.api_version(), m.kind())
                .ok_or_else(|| Error::UnmanagedKind(format!("{}/{}", m.api_version(), m.reference())))?;
            Ok(Desired { kind, name: m.name().to_owned(), body })
        })
        .collect()
}

/// Whether `live` (as the API server returned it) already holds every field of `desired`.
///
/// Fields the server added (defaults, status, managedFields) are ignored; an empty or null
/// desired value matches an absent one (the server drops empty fields). Arrays must have the
/// same length and match element by element, so a removed list entry counts as a change. The
/// server rewrites quantities into their canonical form (`1000m` becomes `1`, `0.5Gi` becomes
/// `512Mi`): under `requests`, `limits` and `capacity` the same amount written another way
/// matches.
pub fn contains(live: Option<&J>, desired: &J) -> bool {
    contains_at(live, desired, false)
}

fn contains_at(live: Option<&J>, desired: &J, quantities: bool) -> bool {
    match (live, desired) {
        (None | Some(J::Null), J::Null) => true,
        (None | Some(J::Null), J::Array(d)) => d.is_empty(),
        (None | Some(J::Null), J::Object(d)) => d.values().all(|v| contains_at(None, v, false)),
        (None, _) => false,
        (Some(J::Object(l)), J::Object(d)) => d.iter().all(|(k, v)| {
            let in_quantities = quantities || matches!(k.as_str(), "requests" | "limits" | "capacity");
            contains_at(l.get(k), v, in_quantities)
        }),
        (Some(J::Array(l)), J::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(l, d)| contains_at(Some(l), d, false))
        }
        (Some(J::Number(l)), J::Number(d)) => l == d || l.as_f64() == d.as_f64(),
        (Some(J::String(l)), J::String(d)) if quantities && l != d => same_quantity(l, d),
        (Some(l), d) => l == d,
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    use stead_quantity::Quantity;
    match (Quantity::parse(a), Quantity::parse(b)) {
        (Ok(a), Ok(b)) => a.same_amount(&b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let desired = json!({"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}, "args": []}});
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"a": "b"},
            "clusterIP": "10.0.0.1"}, "status": {}});
        assert!(contains(Some(&live), &desired));
    }

    #[test]
    fn changed_missing_and_removed_fields_count_as_drift() {
        let desired = json!({"spec": {"replicas": 3, "ports": [{"port": 80}]}});
        assert!(!contains(Some(&json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}})), &desired));
        assert!(!contains(Some(&json!({"spec": {"ports": [{"port": 80}]}})), &desired));
        assert!(!contains(
            Some(&json!({"spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 81}]}})),
            &desired
        ));
        assert!(!contains(None, &desired));
    }

    #[test]
    fn a_quantity_the_server_rewrote_is_not_drift() {
        let desired = json!({"resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"},
            "limits": {"memory": "1024Mi"}}, "name": "1000m"});
        let live = json!({"resources": {"requests": {"cpu": "1", "memory": "512Mi"},
            "limits": {"memory": "1Gi"}}, "name": "1000m"});
        assert!(contains(Some(&live), &desired));
        let more = json!({"resources": {"requests": {"cpu": "2", "memory": "512Mi"},
            "limits": {"memory": "1Gi"}}, "name": "1000m"});
        assert!(!contains(Some(&more), &desired), "a different amount is drift");
        // Only under requests, limits and capacity: elsewhere strings compare as written.
        assert!(!contains(Some(&json!({"name": "1"})), &json!({"name": "1000m"})));
        assert!(!contains(Some(&json!({"limits": {"cpu": "lots"}})), &json!({"limits": {"cpu": "1"}})));
    }

    #[test]
    fn every_rendered_kind_is_managed() {
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("v1", "Service"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ] {
            assert!(kind_index(api_version, kind).is_some(), "{api_version} {kind}");
        }
        assert_eq!(child_kinds()[0].resource.plural, "deployments");
    }
}
