//! The reconciler (controller-rs shape): `Context`, `reconcile`, `error_policy`, and `run`, which
//! wires them into a kube `Controller` over StatefulServices, their stores and their children.

use crate::children::{self, Desired, child_kinds};
use crate::{Error, Metrics};
use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value as J, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stead_api::types::{StatefulService, StatefulServiceStatus, StatefulStore};
use stead_render::{Children, RenderOptions, WorkloadState};

/// The one field manager for every write the operator makes (children and status).
pub const FIELD_MANAGER: &str = "stead-operator";
/// A reconcile that succeeded runs again after this long even without a watch event.
pub const RESYNC: Duration = Duration::from_secs(600);
/// The first retry after a failure; doubled per consecutive failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub render: RenderOptions,
    clock: fn() -> Timestamp,
    /// Where a retry falls in its jitter window, in `[0, 1)`.
    jitter: fn() -> f64,
    /// Consecutive failures per `namespace/name`, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The status this process last wrote, by uid: the reflector's copy may lag behind our own
    /// write, and comparing against it alone would write (and announce) a transition twice.
    written: Mutex<HashMap<String, StatefulServiceStatus>>,
}

impl Context {
    /// `instance` names this replica in Events (the pod name).
    pub fn new(
        client: Client,
        render: RenderOptions,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            render,
            clock: Timestamp::now,
            jitter: random_unit,
            failures: Mutex::default(),
            written: Mutex::default(),
        }
    }

    /// Replaces the clock (tests pin condition transition times with it).
    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> Timestamp) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the retry jitter's source (tests pin it).
    #[must_use]
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        self.jitter = jitter;
        self
    }

    fn bump_failures(&self, key: String) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn reset_failures(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn last_written(&self, uid: &str) -> Option<StatefulServiceStatus> {
        self.written.lock().unwrap_or_else(|e| e.into_inner()).get(uid).cloned()
    }

    fn remember_written(&self, uid: &str, status: StatefulServiceStatus) {
        self.written.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_owned(), status);
    }
}

fn key(svc: &StatefulService) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// The delay before retry number `attempt` (1-based): exponential from [`BASE_BACKOFF`], capped
/// at [`MAX_BACKOFF`], never zero, so a failing object never spins.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
    BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// How much later than its backoff a retry may come: up to a fifth, so services that failed
/// together (a store outage) do not all retry in the same instant.
pub const JITTER: f64 = 0.2;

/// `delay` stretched by `unit` (in `[0, 1)`) of [`JITTER`].
pub fn jittered(delay: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
    delay.mul_f64(1.0 + JITTER * unit)
}

/// A fresh number in `[0, 1)`: std's hasher keys are random per instance, which is all the
/// randomness a retry spread needs.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

/// Counts the failure by reason and backs off exponentially per object, with jitter.
pub fn error_policy(svc: Arc<StatefulService>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.metric_label());
    let attempt = ctx.bump_failures(key(&svc));
    let delay = jittered(backoff(attempt), (ctx.jitter)());
    tracing::warn!(service = %key(&svc), attempt, retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(delay)
}

/// Makes the cluster hold what render produces for `svc`, then reports status.
///
/// Requests, in order: GET the StatefulStore (if one is named); LIST each child kind by the
/// selector label; apply (SSA, forced, one field manager) each child that differs from the
/// server's copy; DELETE owned children render no longer produces; apply the status if it
/// changed; POST an Event per condition transition. An unchanged service makes no write.
pub async fn reconcile(svc: Arc<StatefulService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _measure = ctx.metrics.measure();
    let result = reconcile_service(&svc, &ctx).await;
    if result.is_ok() {
        ctx.reset_failures(&key(&svc));
    }
    result
}

async fn reconcile_service(svc: &StatefulService, ctx: &Context) -> Result<Action, Error> {
    // No finalizer: children carry a controller owner reference, so the garbage collector removes
    // them, and claim retention is the StatefulSet's own persistentVolumeClaimRetentionPolicy.
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = svc.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let now = (ctx.clock)();

    let store = match svc.spec.store_name() {
        None => None,
        Some(store_name) => {
            Api::<StatefulStore>::namespaced(ctx.client.clone(), &ns).get_opt(store_name).await?
        }
    };
    // The plan reads the last status for its transition times: this process's, if newer.
    let view = with_last_status(svc, ctx, &uid);
    let plan = stead_render::plan_service(&view, store.as_ref(), &ctx.render);
    let rendered = match &plan.children {
        Children::Apply(rendered) => rendered,
        Children::Hold { .. } => {
            // Re-checked when the store appears (the controller watches stores); until then
            // nothing is logged and nothing requeues.
            write_status(&view, ctx, &ns, &uid, plan.status(None, now).status).await?;
            return Ok(Action::await_change());
        }
    };
    let desired = children::desired(rendered)?;
    let live = list_children(ctx, svc, &ns, &uid).await?;

    let mut workload = None;
    for d in &desired {
        let current = live.iter().find(|l| l.kind == d.kind && l.name == d.name);
        let object = match current {
            Some(l) if children::contains(Some(&l.object), &d.body) => l.object.clone(),
            _ => apply(ctx, &ns, d).await?,
        };
        if workload.is_none() {
            workload = WorkloadState::from_json(&object);
        }
    }
    for stale in live.iter().filter(|l| !desired.iter().any(|d| d.kind == l.kind && d.name == l.name)) {
        prune(ctx, &ns, stale).await?;
    }

    let workload = workload.ok_or(Error::MissingField("workload in the rendered children"))?;
    write_status(&view, ctx, &ns, &uid, plan.status(Some(&workload), now).status).await?;
    Ok(Action::requeue(RESYNC))
}

/// `svc` with the status this process last wrote, if any (see `Context::written`).
fn with_last_status(svc: &StatefulService, ctx: &Context, uid: &str) -> StatefulService {
    let mut view = svc.clone();
    if let Some(status) = ctx.last_written(uid) {
        view.status = Some(status);
    }
    view
}

/// A child the server holds, owned (as controller) by the service being reconciled.
struct Live {
    kind: usize,
    name: String,
    uid: Option<String>,
    object: J,
}

async fn list_children(
    ctx: &Context,
    svc: &StatefulService,
    ns: &str,
    uid: &str,
) -> Result<Vec<Live>, Error> {
    let selector = stead_render::selector(svc);
    let mut out = Vec::new();
    for (kind, child) in child_kinds().iter().enumerate() {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &child.resource);
        for item in api.list(&ListParams::default().labels(&selector)).await?.items {
            let owned = item
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true));
            if !owned {
                continue;
            }
            let name = item.name_any();
            let child_uid = item.metadata.uid.clone();
            let mut object = serde_json::to_value(&item)
                .map_err(|source| Error::Serialize { what: format!("{}/{name}", child.kind), source })?;
            // List items come without apiVersion and kind.
            if let J::Object(map) = &mut object {
                map.insert("apiVersion".into(), J::from(child.api_version));
                map.insert("kind".into(), J::from(child.kind));
            }
            out.push(Live { kind, name, uid: child_uid, object });
        }
    }
    Ok(out)
}

async fn apply(ctx: &Context, ns: &str, d: &Desired) -> Result<J, Error> {
    let child = &child_kinds()[d.kind];
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &child.resource);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(&d.name, &params, &Patch::Apply(&d.body)).await?;
    let mut object = serde_json::to_value(&applied)
        .map_err(|source| Error::Serialize { what: format!("{}/{}", child.kind, d.name), source })?;
    if let J::Object(map) = &mut object {
        map.entry("apiVersion").or_insert_with(|| J::from(child.api_version));
        map.entry("kind").or_insert_with(|| J::from(child.kind));
    }
    Ok(object)
}

async fn prune(ctx: &Context, ns: &str, stale: &Live) -> Result<(), Error> {
    let child = &child_kinds()[stale.kind];
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &child.resource);
    let mut params = DeleteParams::background();
    params.preconditions = Some(Preconditions { uid: stale.uid.clone(), resource_version: None });
    match api.delete(&stale.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Applies the status (SSA on the status subresource) when it differs from the last one known,
/// then publishes one Event per transition.
async fn write_status(
    view: &StatefulService,
    ctx: &Context,
    ns: &str,
    uid: &str,
    status: StatefulServiceStatus,
) -> Result<(), Error> {
    if view.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let name = view.name_any();
    let api = Api::<StatefulService>::namespaced(ctx.client.clone(), ns);
    let body = json!({
        "apiVersion": stead_api::types::API_VERSION,
        "kind": "StatefulService",
        "status": status,
    });
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    ctx.remember_written(uid, status.clone());
    let reference = view.object_ref(&());
    for t in stead_render::transitions(view, &status) {
        let event = Event {
            type_: if t.warning { EventType::Warning } else { EventType::Normal },
            reason: t.reason,
            note: Some(t.message),
            action: "Reconcile".into(),
            secondary: None,
        };
        // An Event is a courtesy: losing one must not fail (and so repeat) the reconcile.
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(service = %key(view), "cannot publish event: {e}");
        }
    }
    Ok(())
}

/// The services in `store`'s namespace that name it: what to reconcile when a store changes.
pub fn services_naming(
    services: &[Arc<StatefulService>],
    store: &StatefulStore,
) -> Vec<ObjectRef<StatefulService>> {
    let name = store.name_any();
    let ns = store.namespace();
    services
        .iter()
        .filter(|s| s.namespace() == ns && s.spec.store_name() == Some(name.as_str()))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs the controller until `shutdown` resolves (then finishes the reconciles in flight).
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<StatefulService>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let services: Store<StatefulService> = controller.store();
    // Only children carrying the selector label are watched.
    let children = || watcher::Config::default().labels(stead_render::SELECTOR_LABEL).any_semantic();
    controller
        .owns(Api::<Deployment>::all(client.clone()), children())
        .owns(Api::<StatefulSet>::all(client.clone()), children())
        .owns(Api::<Service>::all(client.clone()), children())
        .owns(Api::<NetworkPolicy>::all(client.clone()), children())
        .owns(Api::<HorizontalPodAutoscaler>::all(client.clone()), children())
        .watches(Api::<StatefulStore>::all(client), watcher::Config::default().any_semantic(), move |store| {
            services_naming(&services.state(), &store)
        })
        .with_config(ControllerConfig::default().concurrency(8).debounce(Duration::from_millis(200)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            // Failures are logged once by error_policy; this stream repeats them.
            if let Err(e) = result {
                tracing::debug!("controller: {e}");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stretches_a_delay_by_at_most_a_fifth() {
        let base = Duration::from_secs(10);
        assert_eq!(jittered(base, 0.0), base);
        assert_eq!(jittered(base, 0.5), Duration::from_secs(11));
        assert_eq!(jittered(base, 7.0), Duration::from_secs(12), "clamped");
        assert_eq!(jittered(base, f64::NAN), base, "no panic on a bad source");
        let units: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)), "{units:?}");
        let distinct: std::collections::BTreeSet<u64> = units.iter().map(|u| u.to_bits()).collect();
        assert!(distinct.len() > 32, "retries spread out: {units:?}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert!(backoff(0) >= BASE_BACKOFF);
    }

    #[test]
    fn a_store_maps_to_the_services_naming_it_in_its_namespace() {
        let svc = |ns: &str, name: &str, store: Option<&str>| {
            let spec = stead_api::types::StatefulServiceSpec {
                datastore: store.map(|s| stead_api::types::Datastore { name: s.into(), config: None }),
                ..Default::default()
            };
            let mut s = StatefulService::new(name, spec);
            s.metadata.namespace = Some(ns.into());
            Arc::new(s)
        };
        let services =
            vec![svc("a", "one", Some("pg")), svc("b", "two", Some("pg")), svc("a", "three", None)];
        let mut store = StatefulStore::new("pg", Default::default());
        store.metadata.namespace = Some("a".into());
        let refs = services_naming(&services, &store);
        assert_eq!(refs, vec![ObjectRef::new("one").within("a")]);
    }
}
