//! The order in which a pod's containers run, as a pure state machine (the kubelet's
//! `computePodActions`, simplified to one pod on one node).
//!
//! - Init containers run one after another; each must exit 0 before the next starts. A failing one
//!   is retried with backoff (pod `restartPolicy` Always or OnFailure) or fails the pod (Never).
//! - Sidecars (init containers with `restartPolicy: Always`) start in order, keep running, and are
//!   always restarted; the next init container starts once the sidecar has started.
//! - Then all app containers start together; each exit is handled by [`crate::backoff::on_exit`].
//! - A restart waits for the container's backoff; meanwhile it is `CrashLoopBackOff`.
//!
//! The caller starts and kills processes, reports exits, and asks [`PodLifecycle::due`] what to start.
//! Time comes in as `Instant` (for backoff) and wall-clock `Timestamp` (for status).

use crate::backoff::{Backoff, ContainerRole, ExitDecision, RestartPolicy, UnknownRestartPolicy, on_exit};
use crate::status::{Exit, Observed, PodObservation, terminated_state};
use k8s_openapi::api::core::v1::{ContainerState, PodSpec};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Clone, Debug)]
enum Run {
    NotStarted,
    Running {
        since: Timestamp,
    },
    /// Exited; `retry_at` is set when it will be restarted.
    Exited {
        retry_at: Option<Instant>,
        state: Box<ContainerState>,
    },
}

#[derive(Clone, Debug)]
struct Slot {
    name: String,
    role: ContainerRole,
    run: Run,
    restart_count: i32,
    last_state: Option<ContainerState>,
    backoff: Backoff,
    ready: bool,
    /// `containerStatuses[].started`: true unless a startup probe has yet to succeed.
    started: bool,
}

/// One pod's container sequencing.
#[derive(Clone, Debug)]
pub struct PodLifecycle {
    pod: String,
    policy: RestartPolicy,
    slots: Vec<Slot>,
    failed: bool,
    stopping: bool,
}

/// What a running container did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    Exited(Exit),
}

impl PodLifecycle {
    /// The lifecycle of a pod with `spec`; `pod` is `namespace/name`, for messages.
    pub fn new(pod: &str, spec: &PodSpec) -> Result<PodLifecycle, UnknownRestartPolicy> {
        let policy = RestartPolicy::of_pod(spec)?;
        let slot = |name: &str, role| Slot {
            name: name.to_owned(),
            role,
            run: Run::NotStarted,
            restart_count: 0,
            last_state: None,
            backoff: Backoff::default(),
            ready: false,
            started: false,
        };
        let slots = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| slot(&c.name, ContainerRole::of_init(c)))
            .chain(spec.containers.iter().map(|c| slot(&c.name, ContainerRole::App)))
            .collect();
        Ok(PodLifecycle { pod: pod.to_owned(), policy, slots, failed: false, stopping: false })
    }

    /// True once an init container failed under `restartPolicy: Never`: nothing more will start.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The pod is being stopped: nothing starts again, and exits from now on are final.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether [`PodLifecycle::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Whether every init container has completed (sidecars: started).
    pub fn initialized(&self) -> bool {
        self.slots.iter().filter(|s| s.role != ContainerRole::App).all(init_complete)
    }

    /// The containers to start at `now`, in order.
    pub fn due(&self, now: Instant) -> Vec<String> {
        if self.failed || self.stopping {
            return vec![];
        }
        let startable = |s: &Slot| match &s.run {
            Run::NotStarted => true,
            Run::Exited { retry_at: Some(at), .. } => *at <= now,
            _ => false,
        };
        let mut out = vec![];
        for s in self.slots.iter().filter(|s| s.role != ContainerRole::App) {
            if s.role == ContainerRole::Sidecar && matches!(s.run, Run::Exited { .. }) && init_complete(s) {
                // A sidecar that ran before: restart it when due, but it does not block.
                if startable(s) {
                    out.push(s.name.clone());
                }
                continue;
            }
            if init_complete(s) {
                continue;
            }
            if startable(s) {
                out.push(s.name.clone());
            }
            return out;
        }
        out.extend(
            self.slots
                .iter()
                .filter(|s| s.role == ContainerRole::App && startable(s))
                .map(|s| s.name.clone()),
        );
        out
    }

    /// The earliest backoff expiry, to sleep until.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| match &s.run {
                Run::Exited { retry_at, .. } => *retry_at,
                _ => None,
            })
            .min()
    }

    /// Records that `container` started or exited; returns what the exit means.
    pub fn record(
        &mut self,
        container: &str,
        event: Event,
        now: Instant,
        wall: Timestamp,
    ) -> Option<ExitDecision> {
        let policy = self.policy;
        let slot = self.slots.iter_mut().find(|s| s.name == container)?;
        match event {
            Event::Started => {
                if let Run::Exited { state, .. } = &slot.run {
                    slot.last_state = Some((**state).clone());
                    slot.restart_count = slot.restart_count.saturating_add(1);
                }
                slot.run = Run::Running { since: wall };
                slot.started = true;
                None
            }
            Event::Exited(exit) => {
                let since = match &slot.run {
                    Run::Running { since } => *since,
                    _ => wall,
                };
                let code = terminated_state(exit, since, wall).terminated.map_or(0, |t| t.exit_code);
                let decision =
                    if self.stopping { ExitDecision::Stay } else { on_exit(policy, slot.role, code) };
                let retry_at = match decision {
                    ExitDecision::Restart => Some(now + slot.backoff.record_exit(now)),
                    _ => None,
                };
                slot.ready = false;
                slot.started = false;
                slot.run = Run::Exited { retry_at, state: Box::new(terminated_state(exit, since, wall)) };
                if decision == ExitDecision::FailPod {
                    self.failed = true;
                }
                Some(decision)
            }
        }
    }

    /// Sets a running container's readiness (from its probes).
    pub fn set_ready(&mut self, container: &str, ready: bool) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.name == container) {
            s.ready = ready && matches!(s.run, Run::Running { .. });
        }
    }

    /// Sets a running container's `started` (false while its startup probe has not succeeded).
    pub fn set_started(&mut self, container: &str, started: bool) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.name == container) {
            s.started = started && matches!(s.run, Run::Running { .. });
        }
    }

    /// What the status computation needs, as of `now`.
    pub fn observation(&self, now: Instant, uid: &str) -> PodObservation {
        let (ns, name) = self.pod.split_once('/').unwrap_or(("default", &self.pod));
        let mut obs = PodObservation { terminal: self.failed || self.stopping, ..Default::default() };
        for s in &self.slots {
            let o = match &s.run {
                Run::NotStarted => continue,
                Run::Running { since } => Observed::running(*since, s.ready, s.started),
                Run::Exited { retry_at: Some(at), state } if *at > now => {
                    let msg = s.backoff.message(&s.name, name, ns, uid);
                    let mut o = Observed::waiting("CrashLoopBackOff", Some(msg));
                    o.last_state = Some((**state).clone());
                    o
                }
                Run::Exited { retry_at: Some(_), state } => {
                    let mut o = Observed::waiting("ContainerCreating", None);
                    o.last_state = Some((**state).clone());
                    o
                }
                Run::Exited { retry_at: None, state } => Observed {
                    state: (**state).clone(),
                    last_state: None,
                    restart_count: 0,
                    ready: false,
                    started: false,
                },
            };
            let last_state = o.last_state.clone().or_else(|| s.last_state.clone());
            obs.containers
                .insert(s.name.clone(), Observed { restart_count: s.restart_count, last_state, ..o });
        }
        obs
    }
}

fn init_complete(s: &Slot) -> bool {
    match s.role {
        ContainerRole::Sidecar => !matches!(s.run, Run::NotStarted),
        _ => {
            matches!(&s.run, Run::Exited { retry_at: None, state } if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0))
        }
    }
}

/// Names of containers by their role, for callers that need to know which is which.
pub fn roles(spec: &PodSpec) -> BTreeMap<String, ContainerRole> {
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), ContainerRole::of_init(c)))
        .chain(spec.containers.iter().map(|c| (c.name.clone(), ContainerRole::App)))
        .collect()
}

#[cfg(test)]
mod tests;
