//! `install` and `uninstall` against the strict fake API server: dependency order, SSA bodies
//! equal to the plan, the wait for Established, and CRDs kept on uninstall unless purging.

mod support;

use serde_json::{Value as J, json};
use stead_operator::install::{self, INSTALL_FIELD_MANAGER};
use stead_render::RenderOptions;
use support::{Exchange, Expect, get, patch};

fn uri(object: &J, suffix: &str) -> String {
    let target = install::target(object).expect("target");
    let r = &target.resource;
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let ns = target.namespace.map(|n| format!("/namespaces/{n}")).unwrap_or_default();
    format!("{base}{ns}/{}/{}{suffix}", r.plural, target.name)
}

fn established(object: &J) -> J {
    let mut o = object.clone();
    o["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
    o
}

#[tokio::test]
async fn install_applies_in_dependency_order_and_waits_for_the_crds() {
    let plan = install::plan(&RenderOptions::default());
    let apply = format!("?&force=true&fieldManager={INSTALL_FIELD_MANAGER}");
    let mut script = Vec::new();
    for crd in &plan[..2] {
        script.push(patch(uri(crd, &apply), crd.clone(), crd.clone()));
    }
    let mut pending = plan[0].clone();
    pending["status"] = json!({"conditions": [{"type": "Established", "status": "False"}]});
    script.push(get(uri(&plan[0], ""), 200, pending));
    script.push(get(uri(&plan[0], ""), 200, established(&plan[0])));
    script.push(get(uri(&plan[1], ""), 200, established(&plan[1])));
    for object in &plan[2..] {
        script.push(patch(uri(object, &apply), object.clone(), object.clone()));
    }
    let (client, handle) = support::client();
    let (done, _) = support::scenario(handle, script, install::install(&client, &plan, false)).await;
    let done = done.expect("install");
    assert_eq!(
        done.first().map(String::as_str),
        Some("customresourcedefinition/statefulservices.cloudstate.io")
    );
    assert_eq!(done.last().map(String::as_str), Some("deployment/stead-operator"));
}

#[tokio::test]
async fn server_dry_run_sends_dry_run_and_waits_for_nothing() {
    let plan = install::plan(&RenderOptions::default());
    let apply = format!("?&dryRun=All&force=true&fieldManager={INSTALL_FIELD_MANAGER}");
    let script = plan.iter().map(|o| patch(uri(o, &apply), o.clone(), o.clone())).collect();
    let (client, handle) = support::client();
    let (done, _) = support::scenario(handle, script, install::install(&client, &plan, true)).await;
    assert_eq!(done.expect("dry run").len(), plan.len());
}

fn delete(object: &J, status: u16) -> Exchange {
    Exchange {
        method: "DELETE",
        uri: uri(object, "?"),
        body: Expect::Json(json!({"propagationPolicy": "Background"})),
        status,
        reply: if status == 404 { support::not_found("x") } else { object.clone() },
    }
}

#[tokio::test]
async fn uninstall_keeps_crds_and_data_unless_purging() {
    let plan = install::plan(&RenderOptions::default());
    // Reverse order, CRDs kept; an object already gone is fine.
    let mut script: Vec<Exchange> = plan[2..].iter().rev().map(|o| delete(o, 200)).collect();
    script[1] = delete(&plan[plan.len() - 2], 404);
    let (client, handle) = support::client();
    let (done, _) = support::scenario(handle, script, install::uninstall(&client, &plan, true)).await;
    let done = done.expect("uninstall");
    assert_eq!(done.len(), plan.len() - 3);
    assert!(done.iter().all(|d| !d.starts_with("customresourcedefinition/")));

    let script = plan.iter().rev().map(|o| delete(o, 200)).collect();
    let (client, handle) = support::client();
    let (done, _) = support::scenario(handle, script, install::uninstall(&client, &plan, false)).await;
    assert_eq!(done.expect("purge").len(), plan.len());
}
