//! The engine: the store, the runtime, and one loop that runs every controller step after every
//! change until nothing changes (level-triggered, as Kubernetes' controllers are).
//!
//! Between passes the loop sleeps until the next watch event, runtime report or kick, or until
//! the earliest time a planner asked to look again (`requeue_after`: minReadySeconds falling
//! due, a progress deadline), whichever comes first; with no such request it still passes every
//! [`RESYNC`]. Time comes from [`EngineConfig::clock`] for the planners and from tokio's timer for
//! the sleep, so tests can pause and advance both.

use crate::controllers::{self, pods::LocalImages, pods::PodWorker};
use crate::gc;
use crate::runtime::{ContainerEvent, Runtime};
use crate::store::Store;
use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use stead_render::RenderOptions;
use tokio::sync::{Notify, broadcast, watch};

/// What the engine needs to know that is not in the store.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `spec.nodeName` of every pod.
    pub node_name: String,
    pub render: RenderOptions,
    pub images: LocalImages,
    /// The planners' `now` (tests pin or drive it).
    pub clock: fn() -> Timestamp,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_name: "stead".into(),
            render: RenderOptions::default(),
            images: LocalImages::default(),
            clock: Timestamp::now,
        }
    }
}

pub struct Engine {
    store: Store,
    runtime: Arc<dyn Runtime>,
    config: EngineConfig,
    pods: PodWorker,
    /// The planners' typed view of the store, kept across passes.
    observed: controllers::workloads::Observed,
    /// Workloads (uids) whose controllers do nothing while they are stopped in order, with how
    /// many stops hold each (two overlapping stops must not resume each other's workloads).
    paused: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    /// What each workload and StatefulService waits on, from the last pass.
    waiting: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Wakes the loop (a timer a planner asked for, or a caller).
    kick: Notify,
}

/// A pass that keeps writing after this many rounds is a bug somewhere; the loop slows down
/// instead of spinning.
const MAX_BUSY_PASSES: usize = 200;

/// The loop passes at least this often, even with nothing to wake it (a safety net: every change
/// it knows of wakes it, and planners say when they want to look again).
pub const RESYNC: Duration = Duration::from_secs(30);

/// The shortest sleep a planner's request gets, so that a planner asking for "now" without
/// writing anything cannot spin the loop.
const MIN_REQUEUE: Duration = Duration::from_millis(5);

/// How often old Events are pruned.
const PRUNE_EVENTS_EVERY: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub writes: usize,
    /// The earliest time a planner asked to look again, from the pass's start.
    pub requeue_after: Option<Duration>,
}

/// How long the loop sleeps after a pass that wrote nothing, unless woken.
fn sleep_after(outcome: &PassOutcome) -> Duration {
    outcome.requeue_after.map_or(RESYNC, |d| d.clamp(MIN_REQUEUE, RESYNC))
}

impl Engine {
    pub fn new(store: Store, runtime: Arc<dyn Runtime>, config: EngineConfig) -> Arc<Engine> {
        let pods =
            PodWorker::new(store.clone(), runtime.clone(), config.node_name.clone(), config.images.clone());
        Arc::new(Engine {
            store,
            runtime,
            config,
            pods,
            observed: Default::default(),
            paused: Default::default(),
            waiting: Default::default(),
            kick: Notify::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// What each workload waits on (`statefulset/web` → "pod web-1 is not Running and Ready").
    pub fn waiting(&self) -> std::collections::BTreeMap<String, String> {
        self.waiting.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Stops (or resumes) the controllers of these workloads (by uid); each pause is undone by
    /// one resume.
    pub fn pause(&self, uids: impl IntoIterator<Item = String>, paused: bool) {
        if let Ok(mut holds) = self.paused.lock() {
            for uid in uids {
                if paused {
                    *holds.entry(uid).or_default() += 1;
                } else if let Some(count) = holds.get_mut(&uid) {
                    *count -= 1;
                    if *count == 0 {
                        holds.remove(&uid);
                    }
                }
            }
        }
        self.kick();
    }

    /// Asks the loop for another pass.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// One pass of every controller step: how many writes it made, and when to look again.
    pub fn reconcile_once(&self) -> PassOutcome {
        let mut writes = 0;
        let now = (self.config.clock)();
        let services = controllers::statefulservice::reconcile_all(&self.store, &self.config.render, now);
        let n = services.writes;
        writes += n;
        for e in &services.errors {
            tracing::warn!(error = %e, "statefulservice");
        }
        let mut pass = controllers::workloads::reconcile_all(
            &self.store,
            &self.observed,
            now,
            &self.paused.lock().map(|p| p.keys().cloned().collect()).unwrap_or_default(),
        );
        writes += pass.writes;
        let pass_writes = pass.writes;
        let requeue_after = pass.requeue_after;
        for e in &pass.errors {
            tracing::warn!(error = %e, "workloads");
        }
        pass.waiting.extend(services.waiting);
        if let Ok(mut waiting) = self.waiting.lock() {
            *waiting = pass.waiting;
        }
        match controllers::claims::reconcile_all(&self.store) {
            Ok(n) => writes += n,
            Err(e) => tracing::warn!(error = %e, "claims"),
        }
        match self.pods.reconcile_all() {
            Ok(n) => writes += n,
            Err(e) => tracing::warn!(error = %e, "pods"),
        }
        let before_gc = writes;
        match gc::collect(&self.store) {
            Ok(n) => writes += n,
            Err(e) => tracing::warn!(error = %e, "garbage collection"),
        }
        if writes > 0 {
            tracing::debug!(
                services = n,
                workloads = pass_writes,
                gc = writes - before_gc,
                total = writes,
                "pass"
            );
        }
        PassOutcome { writes, requeue_after }
    }

    /// Runs until `shutdown` turns true. Pods keep running; stopping them is the caller's choice
    /// (see [`Engine::stop_all`]).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.store.watch();
        let mut statuses = self.runtime.subscribe();
        let mut container_events = self.runtime.container_events();
        let mut busy = 0;
        let mut prune = tokio::time::interval(PRUNE_EVENTS_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let outcome = self.reconcile_once();
            if outcome.writes > 0 {
                busy += 1;
                if busy > MAX_BUSY_PASSES {
                    tracing::error!("controllers keep writing without settling; slowing down");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    busy = 0;
                }
                drain(&mut changes);
                tokio::task::yield_now().await;
                continue;
            }
            busy = 0;
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = self.kick.notified() => {}
                event = changes.recv() => {
                    if matches!(event, Err(broadcast::error::RecvError::Closed)) { return; }
                    drain(&mut changes);
                }
                update = statuses.recv() => match update {
                    Ok(update) => {
                        if let Err(e) = self.pods.record(&update) {
                            tracing::warn!(error = %e, "pod status");
                        }
                        while let Ok(update) = statuses.try_recv() {
                            if let Err(e) = self.pods.record(&update) {
                                tracing::warn!(error = %e, "pod status");
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                event = next_event(&mut container_events) => match event {
                    Ok(event) => crate::events::container_event(&self.store, &event),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => container_events = None,
                },
                _ = tokio::time::sleep(sleep_after(&outcome)) => {}
                _ = prune.tick() => {
                    crate::events::prune_all(&self.store);
                }
            }
        }
    }
}

/// The next event of a runtime that reports them; never resolves for one that does not.
async fn next_event(
    rx: &mut Option<broadcast::Receiver<ContainerEvent>>,
) -> Result<ContainerEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn drain<T: Clone>(rx: &mut broadcast::Receiver<T>) {
    loop {
        match rx.try_recv() {
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    fn paused(engine: &Engine) -> Vec<String> {
        engine.paused.lock().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn the_loop_sleeps_until_the_earliest_request_within_bounds() {
        let after = |requeue_after| sleep_after(&PassOutcome { writes: 0, requeue_after });
        assert_eq!(after(None), RESYNC, "nothing asked: the resync");
        assert_eq!(after(Some(Duration::from_millis(200))), Duration::from_millis(200));
        assert_eq!(after(Some(Duration::ZERO)), MIN_REQUEUE, "never a spin");
        assert_eq!(after(Some(Duration::from_secs(3600))), RESYNC);
    }

    #[tokio::test]
    async fn a_workload_paused_by_two_stops_resumes_when_both_end() {
        let engine =
            Engine::new(Store::in_memory(), Arc::new(FakeRuntime::new(true)), EngineConfig::default());
        let uid = || ["web-uid".to_string()].into_iter();
        engine.pause(uid(), true);
        engine.pause(uid(), true);
        engine.pause(uid(), false);
        assert_eq!(paused(&engine), ["web-uid"], "one stop still holds it");
        engine.pause(uid(), false);
        assert!(paused(&engine).is_empty());
        engine.pause(uid(), false);
        engine.pause(uid(), true);
        assert_eq!(paused(&engine), ["web-uid"], "a resume of nothing is not saved up for later");
    }
}
