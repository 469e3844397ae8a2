//! Reconcile scenarios against the strict fake API server: every request the operator makes is
//! listed, in order, with its exact body; the server's answers are played back.

mod support;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value as J, json};
use std::sync::Arc;
use std::time::Duration;
use stead_api::Manifest;
use stead_api::types::{StatefulService, StatefulStore};
use stead_operator::{Context, Error, Metrics, RESYNC, error_policy, reconcile};
use stead_render::RenderOptions;
use support::{Exchange, Expect, get, not_found, patch};

const NOW: &str = "2026-11-22T01:00:00Z";
const EARLIER: &str = "2026-11-21T00:00:00Z";
const SELECTOR: &str = "labelSelector=cloudstate.io%2Fstateful-service%3Dshop";
const APPLY: &str = "?&force=true&fieldManager=stead-operator";

fn now() -> Timestamp {
    NOW.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn opts() -> RenderOptions {
    RenderOptions { proxy_image: "stead:test".into() }
}

fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(Context::new(client, opts(), Arc::new(Metrics::default()), Some("op-0".into())).with_clock(now))
}

/// The service as the API server holds it.
fn svc(generation: i64, image: &str, store: Option<&str>) -> StatefulService {
    let mut store_ref = String::new();
    if let Some(s) = store {
        store_ref = format!(", \"datastore\": {{\"name\": \"{s}\"}}");
    }
    let text = format!(
        r#"{{"apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService",
            "metadata": {{"name": "shop", "namespace": "apps", "uid": "uid-shop", "generation": {generation},
                          "resourceVersion": "100"}},
            "spec": {{"containers": [{{"image": "{image}"}}]{store_ref}}}}}"#
    );
    serde_json::from_str(&text).expect("service fixture")
}

fn store() -> StatefulStore {
    serde_json::from_value(json!({"apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulStore",
        "metadata": {"name": "pg", "namespace": "apps", "uid": "uid-pg"},
        "spec": {"inMemory": true}}))
    .expect("store fixture")
}

/// What `stead render` produces for the service (and store): the apply bodies expected.
fn rendered(svc: &StatefulService, store: Option<&StatefulStore>) -> Vec<J> {
    let mut input = vec![Manifest::StatefulService(Box::new(svc.clone()))];
    if let Some(s) = store {
        input.push(Manifest::StatefulStore(Box::new(s.clone())));
    }
    stead_render::render_all(&input, &opts()).objects.iter().map(|m| m.to_json().expect("json")).collect()
}

/// A child as the server returns it: the applied body plus server-set fields and a status.
fn live(body: &J, generation: i64, status: J) -> J {
    let mut o = body.clone();
    o["metadata"]["uid"] = json!(format!("uid-{}", body["kind"].as_str().unwrap_or("x")));
    o["metadata"]["resourceVersion"] = json!("7");
    o["metadata"]["generation"] = json!(generation);
    o["metadata"]["managedFields"] = json!([{"manager": "stead-operator", "operation": "Apply"}]);
    if o["kind"] == "Service" {
        o["spec"]["clusterIP"] = json!("10.96.0.10");
        if let Some(ports) = o["spec"]["ports"].as_array_mut() {
            for p in ports {
                p["protocol"] = json!("TCP");
            }
        }
    }
    o["status"] = status;
    o
}

fn ready_status(replicas: i32, generation: i64) -> J {
    json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
        "updatedReplicas": replicas, "availableReplicas": replicas})
}

const KINDS: [(&str, &str); 5] = [
    ("apis/apps/v1", "deployments"),
    ("apis/apps/v1", "statefulsets"),
    ("api/v1", "services"),
    ("apis/networking.k8s.io/v1", "networkpolicies"),
    ("apis/autoscaling/v2", "horizontalpodautoscalers"),
];

/// The five LISTs, answering `items[i]` for kind i.
fn lists(items: [Vec<J>; 5]) -> Vec<Exchange> {
    KINDS
        .iter()
        .zip(items)
        .map(|((prefix, plural), items)| {
            get(
                format!("/{prefix}/namespaces/apps/{plural}?&{SELECTOR}"),
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "9"}, "items": items}),
            )
        })
        .collect()
}

fn apply_uri(index: usize, name: &str) -> String {
    let (prefix, plural) = KINDS[index];
    format!("/{prefix}/namespaces/apps/{plural}/{name}{APPLY}")
}

fn status_uri() -> String {
    format!("/apis/cloudstate.io/v1alpha1/namespaces/apps/statefulservices/shop/status{APPLY}")
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: i64, at: &str) -> J {
    json!({"lastTransitionTime": at, "message": message, "observedGeneration": generation,
        "reason": reason, "status": status, "type": type_})
}

/// The server's answer to a status apply: the service.
fn svc_reply() -> J {
    json!({"apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService",
        "metadata": {"name": "shop", "namespace": "apps", "uid": "uid-shop"}, "spec": {"containers": []}})
}

fn status_body(status: J) -> J {
    json!({"apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService", "status": status})
}

/// The status of a service whose single replica is ready.
fn settled_status(generation: i64, at: &str) -> J {
    json!({
        "observedGeneration": generation, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
        "selector": "cloudstate.io/stateful-service=shop",
        "conditions": [
            condition("Ready", "True", "ReplicasReady", "1/1 replicas ready (deployment/shop)", generation, at),
            condition("Progressing", "False", "RolloutComplete", "", generation, at),
            condition("Degraded", "False", "AsExpected", "", generation, at),
        ]
    })
}

fn with_status(mut svc: StatefulService, status: J) -> StatefulService {
    svc.status = Some(serde_json::from_value(status).expect("status fixture"));
    svc
}

async fn run(
    ctx: &Arc<Context>,
    handle: support::ApiHandle,
    svc: StatefulService,
    script: Vec<Exchange>,
) -> (Result<Action, Error>, Vec<J>) {
    support::scenario(handle, script, reconcile(Arc::new(svc), ctx.clone())).await
}

#[tokio::test]
async fn first_apply_creates_the_rendered_children_and_reports_status() {
    let (client, handle) = support::client();
    let ctx = context(client);
    let svc = svc(1, "shop:1", None);
    let want = rendered(&svc, None);
    assert_eq!(want.len(), 2, "a deployment and a client service");
    let mut script = lists(Default::default());
    script.push(patch(apply_uri(0, "shop"), want[0].clone(), live(&want[0], 1, json!({}))));
    script.push(patch(apply_uri(2, "shop"), want[1].clone(), live(&want[1], 1, json!({}))));
    script.push(patch(
        status_uri(),
        status_body(json!({
            "observedGeneration": 1, "replicas": 0, "readyReplicas": 0, "updatedReplicas": 0,
            "selector": "cloudstate.io/stateful-service=shop",
            "conditions": [
                condition("Ready", "False", "ReplicasNotReady", "0/1 replicas ready (deployment/shop)", 1, NOW),
                condition("Progressing", "True", "RollingOut", "0/1 replicas updated (deployment/shop)", 1, NOW),
                condition("Degraded", "False", "AsExpected", "", 1, NOW),
            ]
        })),
        svc_reply(),
    ));
    let (result, _) = run(&ctx, handle, svc, script).await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
}

#[tokio::test]
async fn applied_objects_are_exactly_what_render_all_produces() {
    // A service with every optional child: a StatefulSet (embedded-store fields), headless
    // service, network policy and autoscaler, plus a store; bodies compared as JSON values.
    let (client, handle) = support::client();
    let ctx = context(client);
    let mut svc: StatefulService = serde_json::from_value(json!({
        "apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService",
        "metadata": {"name": "shop", "namespace": "apps", "uid": "uid-shop", "generation": 1,
                     "labels": {"team": "a"}},
        "spec": {"containers": [{"image": "shop:1", "env": [{"name": "A", "value": "1"}]}],
                 "datastore": {"name": "pg"}, "serviceName": "shop-peers", "replicas": 3,
                 "whitelists": [{"projectId": "apps", "service": "web"}],
                 "autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 5}}
    }))
    .expect("fixture");
    svc.status = None;
    let want = rendered(&svc, Some(&store()));
    let mut script =
        vec![get("/apis/cloudstate.io/v1alpha1/namespaces/apps/statefulstores/pg", 200, json!(store()))];
    script.extend(lists(Default::default()));
    for body in &want {
        let kind = stead_operator::child_kinds()
            .iter()
            .position(|k| body["apiVersion"] == k.api_version && body["kind"] == k.kind)
            .expect("managed kind");
        let name = body["metadata"]["name"].as_str().expect("name");
        script.push(patch(apply_uri(kind, name), body.clone(), live(body, 1, json!({}))));
    }
    script.push(Exchange {
        method: "PATCH",
        uri: status_uri(),
        body: Expect::Check(Box::new(|b| assert_eq!(b["status"]["replicas"], 0))),
        status: 200,
        reply: svc_reply(),
    });
    let (result, seen) = run(&ctx, handle, svc, script).await;
    result.expect("reconcile");
    let applied: Vec<&J> = seen.iter().filter(|b| b.get("spec").is_some()).collect();
    assert_eq!(applied.len(), want.len());
    assert!(want.len() >= 5, "statefulset, two services, policy, autoscaler: {want:#?}");
    for (a, w) in applied.iter().zip(&want) {
        assert_eq!(*a, w);
    }
}

/// The status the local engine writes for `svc` (its store, if it names one, missing) once its
/// workload reports `workload_status`: its StatefulService step, on an in-memory store at [`NOW`].
fn engine_status(svc: &StatefulService, workload_status: &J) -> J {
    use stead_engine::{Kind, ObjectKey, Store};
    let objects = Store::in_memory();
    let strip = |mut o: J| {
        let meta = o["metadata"].as_object_mut().expect("metadata");
        for field in ["uid", "resourceVersion", "generation"] {
            meta.remove(field);
        }
        o
    };
    objects.create(strip(json!(svc))).expect("service");
    let step = || {
        let pass = stead_engine::controllers::statefulservice::reconcile_all(&objects, &opts(), now());
        assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    };
    step();
    let workload = ObjectKey::new(Kind::Deployment, "apps", "shop");
    if let Some(current) = objects.get(&workload) {
        let mut next = (*current).clone();
        next["status"] = workload_status.clone();
        next["metadata"].as_object_mut().expect("metadata").remove("resourceVersion");
        objects.update_status(next).expect("workload status");
        step();
    }
    objects.get(&ObjectKey::new(Kind::StatefulService, "apps", "shop")).expect("service")["status"].clone()
}

#[tokio::test]
async fn both_engines_report_the_same_status_for_the_same_service_and_workload() {
    // Settled, rolling out (the new generation not observed), past its progress deadline, and
    // held on a missing store: the operator's status body equals the local engine's status.
    let deadline = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet \"shop-1\" has timed out progressing."}]});
    let cases: [(&str, Option<&str>, J, &[&str]); 4] = [
        ("settled", None, ready_status(1, 1), &["Ready"]),
        ("rolling out", None, json!({"observedGeneration": 0, "replicas": 1, "readyReplicas": 1}), &[]),
        ("deadline", None, deadline, &["ProgressDeadlineExceeded"]),
        ("store missing", Some("pg"), ready_status(1, 1), &["StoreMissing"]),
    ];
    for (case, store_name, workload_status, events) in cases {
        let (client, handle) = support::client();
        let ctx = context(client);
        let svc = svc(1, "shop:1", store_name);
        let mut script = Vec::new();
        if store_name.is_some() {
            script.push(get(
                "/apis/cloudstate.io/v1alpha1/namespaces/apps/statefulstores/pg",
                404,
                not_found("statefulstores pg"),
            ));
        } else {
            let want = rendered(&svc, None);
            script.extend(lists([
                vec![live(&want[0], 1, workload_status.clone())],
                vec![],
                vec![live(&want[1], 1, json!({"loadBalancer": {}}))],
                vec![],
                vec![],
            ]));
        }
        script.push(Exchange {
            method: "PATCH",
            uri: status_uri(),
            body: Expect::Check(Box::new(|_| {})),
            status: 200,
            reply: svc_reply(),
        });
        for reason in events {
            script.push(Exchange {
                method: "POST",
                uri: "/apis/events.k8s.io/v1/namespaces/apps/events?".into(),
                body: Expect::Check(Box::new(move |b| assert_eq!(b["reason"], *reason))),
                status: 201,
                reply: json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": "e", "namespace": "apps"}, "eventTime": NOW}),
            });
        }
        let (result, seen) = run(&ctx, handle, svc.clone(), script).await;
        result.expect(case);
        let operator = seen.iter().find_map(|b| b.get("status")).expect("a status write").clone();
        let engine = engine_status(&svc, &workload_status);
        assert_eq!(operator, engine, "{case}");
    }
}

/// The children as the server holds them once the service has settled.
fn settled(svc: &StatefulService, replicas: i32) -> [Vec<J>; 5] {
    let want = rendered(svc, None);
    let generation = svc.metadata.generation.unwrap_or(1);
    [
        vec![live(&want[0], generation, ready_status(replicas, generation))],
        vec![],
        vec![live(&want[1], 1, json!({"loadBalancer": {}}))],
        vec![],
        vec![],
    ]
}

#[tokio::test]
async fn re_reconciling_an_unchanged_service_writes_nothing() {
    let (client, handle) = support::client();
    let ctx = context(client);
    let svc = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    let script = lists(settled(&svc, 1));
    let (result, seen) = run(&ctx, handle, svc, script).await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert!(seen.iter().all(J::is_null), "only reads: {seen:?}");
}

#[tokio::test]
async fn a_spec_change_applies_the_workload_and_reports_the_rollout() {
    let (client, handle) = support::client();
    let ctx = context(client);
    let old = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    let mut new = svc(2, "shop:2", None);
    new.status = old.status.clone();
    let want = rendered(&new, None);
    let mut script = lists(settled(&old, 1));
    // The server bumped the Deployment's generation; its controller has not observed it yet.
    let mut applied = live(&want[0], 2, ready_status(1, 1));
    applied["status"]["updatedReplicas"] = json!(0);
    script.push(patch(apply_uri(0, "shop"), want[0].clone(), applied));
    script.push(patch(
        status_uri(),
        status_body(json!({
            "observedGeneration": 2, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 0,
            "selector": "cloudstate.io/stateful-service=shop",
            "conditions": [
                condition("Ready", "False", "ReplicasNotReady", "1/1 replicas ready (deployment/shop)", 2, NOW),
                condition("Progressing", "True", "RollingOut", "0/1 replicas updated (deployment/shop)", 2, NOW),
                condition("Degraded", "False", "AsExpected", "", 2, EARLIER),
            ]
        })),
        svc_reply(),
    ));
    let (result, _) = run(&ctx, handle, new, script).await;
    result.expect("reconcile");
}

#[tokio::test]
async fn drift_in_a_child_is_repaired_with_the_rendered_object() {
    let (client, handle) = support::client();
    let ctx = context(client);
    let svc = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    let want = rendered(&svc, None);
    let mut children = settled(&svc, 1);
    // Someone edited the Deployment: more replicas and another image.
    children[0][0]["spec"]["replicas"] = json!(4);
    children[0][0]["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:1");
    let mut script = lists(children);
    script.push(patch(apply_uri(0, "shop"), want[0].clone(), live(&want[0], 1, ready_status(1, 1))));
    let (result, _) = run(&ctx, handle, svc, script).await;
    result.expect("reconcile");
}

#[tokio::test]
async fn a_deleted_child_is_recreated() {
    let (client, handle) = support::client();
    let ctx = context(client);
    let svc = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    let want = rendered(&svc, None);
    let mut children = settled(&svc, 1);
    children[2].clear();
    let mut script = lists(children);
    script.push(patch(apply_uri(2, "shop"), want[1].clone(), live(&want[1], 1, json!({}))));
    let (result, _) = run(&ctx, handle, svc, script).await;
    result.expect("reconcile");
}

#[tokio::test]
async fn children_render_no_longer_produces_are_pruned_and_foreign_ones_kept() {
    let (client, handle) = support::client();
    let ctx = context(client);
    let svc = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    let mut children = settled(&svc, 1);
    let policy = |owner_uid: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "shop", "namespace": "apps", "uid": format!("np-{owner_uid}"),
                "labels": {"cloudstate.io/stateful-service": "shop"},
                "ownerReferences": [{"apiVersion": "cloudstate.io/v1alpha1", "kind": "StatefulService",
                    "name": "shop", "uid": owner_uid, "controller": true}]},
            "spec": {"podSelector": {}}})
    };
    children[3] = vec![policy("uid-shop"), policy("uid-someone-else")];
    let mut script = lists(children);
    script.push(Exchange {
        method: "DELETE",
        uri: "/apis/networking.k8s.io/v1/namespaces/apps/networkpolicies/shop?".into(),
        body: Expect::Json(
            json!({"propagationPolicy": "Background", "preconditions": {"uid": "np-uid-shop"}}),
        ),
        status: 200,
        reply: json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
    });
    let (result, _) = run(&ctx, handle, svc, script).await;
    result.expect("reconcile");
}

#[tokio::test]
async fn a_missing_store_degrades_once_and_recovers_when_it_appears() {
    let svc = svc(1, "shop:1", Some("pg"));
    let store_uri = "/apis/cloudstate.io/v1alpha1/namespaces/apps/statefulstores/pg";
    let message =
        "StatefulStore \"pg\" not found in namespace \"apps\"; children are left as they are until it exists";
    let degraded = json!({
        "observedGeneration": 1, "selector": "cloudstate.io/stateful-service=shop",
        "conditions": [
            condition("Ready", "Unknown", "StoreMissing", message, 1, NOW),
            condition("Progressing", "Unknown", "StoreMissing", message, 1, NOW),
            condition("Degraded", "True", "StoreMissing", message, 1, NOW),
        ]
    });
    let event = |reason: &'static str, type_: &'static str| Exchange {
        method: "POST",
        uri: "/apis/events.k8s.io/v1/namespaces/apps/events?".into(),
        body: Expect::Check(Box::new(move |b| {
            assert_eq!(b["reason"], reason);
            assert_eq!(b["type"], type_);
            assert_eq!(b["regarding"]["name"], "shop");
            assert_eq!(b["regarding"]["uid"], "uid-shop");
            assert_eq!(b["reportingController"], "stead-operator");
        })),
        status: 201,
        reply: json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "apps"}, "eventTime": NOW}),
    };
    // One Context throughout: it remembers the status it wrote.
    let (client, handle) = support::client();
    let ctx = context(client);
    // 1. The store is missing: Degraded, one warning Event, no children touched, no requeue.
    let script = vec![
        get(store_uri, 404, not_found("statefulstores pg")),
        patch(status_uri(), status_body(degraded.clone()), svc_reply()),
        event("StoreMissing", "Warning"),
        // 2. Reconciled again with the cache's stale copy: one read, nothing written.
        get(store_uri, 404, not_found("statefulstores pg")),
        // 3. the store appears (the watch maps it to this service): children applied with the
        //    store's settings, Degraded cleared, one Event.
        get(store_uri, 200, json!(store())),
    ];
    let want = rendered(&svc, Some(&store()));
    let mut script = script;
    script.extend(lists(Default::default()));
    script.push(patch(apply_uri(0, "shop"), want[0].clone(), live(&want[0], 1, ready_status(1, 1))));
    script.push(patch(apply_uri(2, "shop"), want[1].clone(), live(&want[1], 1, json!({}))));
    let recovered = json!({
        "observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
        "selector": "cloudstate.io/stateful-service=shop",
        "conditions": [
            condition("Ready", "True", "ReplicasReady", "1/1 replicas ready (deployment/shop)", 1, NOW),
            condition("Progressing", "False", "RolloutComplete", "", 1, NOW),
            condition("Degraded", "False", "AsExpected", "", 1, NOW),
        ]
    });
    script.push(patch(status_uri(), status_body(recovered), svc_reply()));
    script.push(event("Recovered", "Normal"));
    script.push(event("Ready", "Normal"));
    let svc = Arc::new(svc);
    let work = async {
        let first = reconcile(svc.clone(), ctx.clone()).await.expect("first");
        let second = reconcile(svc.clone(), ctx.clone()).await.expect("second");
        let third = reconcile(svc.clone(), ctx.clone()).await.expect("third");
        (first, second, third)
    };
    let ((first, second, third), _) = support::scenario(handle, script, work).await;
    assert_eq!(
        (first, second, third),
        (Action::await_change(), Action::await_change(), Action::requeue(RESYNC))
    );
    assert!(want[0]["spec"]["template"]["metadata"]["annotations"]["cloudstate.io/stateful-store"] == "pg");
}

#[tokio::test]
async fn scaling_through_the_subresource_reaches_the_workload_and_status() {
    // `kubectl scale statefulservice shop --replicas=3` writes spec.replicas through the scale
    // subresource (which the CRD declares), bumping the generation.
    let crd = &stead_render::crds()[0];
    let scale = &crd["spec"]["versions"][0]["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.replicas");
    assert_eq!(scale["statusReplicasPath"], ".status.replicas");
    assert_eq!(scale["labelSelectorPath"], ".status.selector");

    let (client, handle) = support::client();
    let ctx = context(client);
    let before = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    let mut after = before.clone();
    after.spec.replicas = Some(3);
    after.metadata.generation = Some(2);
    let want = rendered(&after, None);
    assert_eq!(want[0]["spec"]["replicas"], 3);
    let mut script = lists(settled(&before, 1));
    let mut scaled = live(&want[0], 2, ready_status(1, 2));
    scaled["status"]["updatedReplicas"] = json!(1);
    script.push(patch(apply_uri(0, "shop"), want[0].clone(), scaled));
    script.push(Exchange {
        method: "PATCH",
        uri: status_uri(),
        body: Expect::Check(Box::new(|b| {
            let s = &b["status"];
            assert_eq!(s["observedGeneration"], 2);
            assert_eq!(s["replicas"], 1);
            assert_eq!(s["selector"], "cloudstate.io/stateful-service=shop");
            assert_eq!(s["conditions"][1]["status"], "True", "progressing while scaling up");
            assert_eq!(s["conditions"][0]["status"], "False");
        })),
        status: 200,
        reply: svc_reply(),
    });
    let (result, _) = run(&ctx, handle, after, script).await;
    result.expect("reconcile");
}

#[tokio::test]
async fn a_deleted_service_is_left_to_the_garbage_collector() {
    // No finalizer: children have a controller owner reference and StatefulSets carry their own
    // claim retention policy, so deletion needs no request from the operator.
    let (client, handle) = support::client();
    let ctx = context(client);
    let mut svc = with_status(svc(1, "shop:1", None), settled_status(1, EARLIER));
    svc.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    assert!(svc.metadata.finalizers.is_none());
    let (result, seen) = run(&ctx, handle, svc, vec![]).await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert!(seen.is_empty());
}

#[tokio::test]
async fn api_errors_and_conflicts_back_off_exponentially() {
    let (client, handle) = support::client();
    let metrics = Arc::new(Metrics::default());
    // Retries land halfway into their jitter window: a tenth later than the bare backoff.
    let ctx =
        Arc::new(Context::new(client, opts(), metrics.clone(), None).with_clock(now).with_jitter(|| 0.5));
    let svc = Arc::new(svc(1, "shop:1", None));
    let want = rendered(&svc, None);
    let conflict = support::status(409, "Conflict", "the object has been modified");
    let mut script = lists(Default::default());
    script.push(Exchange {
        method: "PATCH",
        uri: apply_uri(0, "shop"),
        body: Expect::Json(want[0].clone()),
        status: 409,
        reply: conflict,
    });
    script.push(get(
        format!("/apis/apps/v1/namespaces/apps/deployments?&{SELECTOR}"),
        500,
        support::status(500, "InternalError", "etcd timeout"),
    ));
    let work = async {
        let mut actions = Vec::new();
        for _ in 0..2 {
            let err = reconcile(svc.clone(), ctx.clone()).await.expect_err("fails");
            actions.push((err.metric_label(), error_policy(svc.clone(), &err, ctx.clone())));
        }
        actions
    };
    let (actions, _) = support::scenario(handle, script, work).await;
    assert_eq!(
        actions,
        vec![
            ("conflict", Action::requeue(Duration::from_millis(1100))),
            ("server_error", Action::requeue(Duration::from_millis(2200))),
        ]
    );
    assert_eq!(metrics.failures_for("conflict"), 1);
    assert_eq!(metrics.failures_for("server_error"), 1);
    assert_eq!(metrics.reconciles.get(), 2);
    // Never a tight loop: every retry waits, and the wait is capped.
    for attempt in 1..40 {
        let d = stead_operator::backoff(attempt);
        assert!(d >= Duration::from_secs(1) && d <= stead_operator::MAX_BACKOFF);
    }
    assert!(metrics.encode().contains("stead_operator_reconcile_failures_total{reason=\"conflict\"} 1"));
}
