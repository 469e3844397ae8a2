//! Insta snapshots of a few full plans: what the loop will execute and the status it writes.

mod support;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stead_controller::deployment::{self, DeploymentObserved};
use stead_controller::endpoints::endpoint_slices;
use support::*;

#[test]
fn statefulset_first_plan_with_claims() {
    let set = with_retention(with_claim(sts(3), "data", "1Gi"), "Delete", "Retain");
    let w = World::new(set);
    insta::assert_yaml_snapshot!(w.plan());
}

#[test]
fn statefulset_rolling_update_step() {
    let mut w = World::new(with_rolling(sts(3), Some(1), None));
    w.settle(6);
    set_image(&mut w.set, "busybox:2");
    insta::assert_yaml_snapshot!(w.plan());
}

#[test]
fn deployment_first_plan() {
    let set = sts(2);
    let s = set.spec.unwrap();
    let d = Deployment {
        metadata: ObjectMeta {
            name: Some("api".into()),
            namespace: Some("default".into()),
            uid: Some("uid-api".into()),
            generation: Some(1),
            annotations: Some(labels(&[
                ("team", "a"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ])),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: s.selector,
            template: PodTemplateSpec { metadata: s.template.metadata, spec: s.template.spec },
            ..Default::default()
        }),
        status: None,
    };
    insta::assert_yaml_snapshot!(deployment::plan(&d, &DeploymentObserved::default(), t0()).unwrap());
}

#[test]
fn endpoint_slices_of_a_headless_service() {
    let mut w = World::new(parallel(sts(2)));
    w.settle(2);
    for (i, p) in w.pods.iter_mut().enumerate() {
        p.status.as_mut().unwrap().pod_ip = Some(format!("10.244.0.{}", i + 2));
    }
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-svc".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels(&[("app", "web")])),
            ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        status: None,
    };
    insta::assert_yaml_snapshot!(endpoint_slices(&svc, &w.pods));
}
