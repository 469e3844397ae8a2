//! The CRDs and the operator's install manifests: namespace, service account, least-privilege
//! RBAC and the operator Deployment.

use crate::store_env::field_ref;
use crate::{RenderOptions, object};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, Namespace, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use serde_json::Value as J;
use std::collections::BTreeMap;
use stead_api::types::{StatefulService, StatefulStore};

pub const NAMESPACE: &str = "stead-system";
pub const OPERATOR: &str = "stead-operator";
/// The operator's metrics and health port.
pub const OPERATOR_PORT: i32 = 8080;

/// The two CustomResourceDefinitions.
pub fn crds() -> Vec<J> {
    vec![object(&StatefulService::crd()), object(&StatefulStore::crd())]
}

/// Everything `stead operator install` applies, in apply order.
pub fn manifests(opts: &RenderOptions) -> Vec<J> {
    let mut all = crds();
    all.push(object(&Namespace { metadata: meta(NAMESPACE, None), ..Namespace::default() }));
    all.push(object(&ServiceAccount {
        metadata: meta(OPERATOR, Some(NAMESPACE)),
        ..ServiceAccount::default()
    }));
    all.push(object(&ClusterRole {
        metadata: meta(OPERATOR, None),
        rules: Some(cluster_rules()),
        aggregation_rule: None,
    }));
    all.push(object(&ClusterRoleBinding {
        metadata: meta(OPERATOR, None),
        role_ref: role_ref("ClusterRole", OPERATOR),
        subjects: Some(vec![operator_subject()]),
    }));
    let election = format!("{OPERATOR}-leader-election");
    all.push(object(&Role {
        metadata: meta(&election, Some(NAMESPACE)),
        rules: Some(vec![rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "list", "watch", "create", "update", "patch"],
        )]),
    }));
    all.push(object(&RoleBinding {
        metadata: meta(&election, Some(NAMESPACE)),
        role_ref: role_ref("Role", &election),
        subjects: Some(vec![operator_subject()]),
    }));
    all.push(object(&operator_deployment(opts)));
    all
}

/// What the operator reads and writes, and nothing more.
fn cluster_rules() -> Vec<PolicyRule> {
    const OWN: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];
    vec![
        rule(
            "cloudstate.io",
            &["statefulservices", "statefulstores"],
            &["get", "list", "watch", "patch", "update"],
        ),
        rule(
            "cloudstate.io",
            &["statefulservices/status", "statefulstores/status"],
            &["get", "patch", "update"],
        ),
        rule("cloudstate.io", &["statefulservices/finalizers"], &["update"]),
        rule("apps", &["deployments", "statefulsets"], OWN),
        rule("", &["services"], OWN),
        rule("networking.k8s.io", &["networkpolicies"], OWN),
        rule("autoscaling", &["horizontalpodautoscalers"], OWN),
        // Claim retention on delete (see the operator's finalizer).
        rule("", &["persistentvolumeclaims"], &["get", "list", "watch", "patch", "delete"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

fn operator_deployment(opts: &RenderOptions) -> Deployment {
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_owned(), OPERATOR.to_owned())]);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: "operator".to_owned(),
        image: Some(opts.proxy_image.clone()),
        command: Some(vec!["stead".to_owned(), "operator".to_owned()]),
        args: Some(vec![format!("--proxy-image={}", opts.proxy_image)]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: OPERATOR_PORT,
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            field_ref("POD_NAME", "metadata.name"),
            field_ref("POD_NAMESPACE", "metadata.namespace"),
        ]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(probe("/healthz")),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("64Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("256Mi".to_owned()))])),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: meta(OPERATOR, Some(NAMESPACE)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(labels.clone()), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    service_account_name: Some(OPERATOR.to_owned()),
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), OPERATOR.to_owned()),
            ("app.kubernetes.io/part-of".to_owned(), "stead".to_owned()),
        ])),
        ..ObjectMeta::default()
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn operator_subject() -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: OPERATOR.to_owned(),
        namespace: Some(NAMESPACE.to_owned()),
        api_group: None,
    }
}
