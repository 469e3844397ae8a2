//! Probe timing: when to run startup, readiness and liveness probes, and what their results mean.
//!
//! Independent of the transport (exec, httpGet, tcpSocket, grpc): the caller runs the probe when
//! [`ContainerProbes::due`] says so, bounded by [`ProbeTiming::timeout`] (a timeout is a
//! [`ProbeResult::Failure`]), and feeds the result to [`ContainerProbes::record`].
//!
//! The rules follow the kubelet's prober worker:
//! - defaults: `initialDelaySeconds` 0, `periodSeconds` 10, `timeoutSeconds` 1, `successThreshold` 1,
//!   `failureThreshold` 3 (a field set to 0 takes its default, as API defaulting does);
//! - the first probe is due `initialDelaySeconds` after the container started, then every period;
//! - a result changes the reported state only after `successThreshold` (resp. `failureThreshold`)
//!   identical results in a row;
//! - until the startup probe succeeds, readiness and liveness are not run (not ready, not killed);
//!   once it has succeeded it is never run again;
//! - readiness starts as not ready; without a readiness probe, a started container is ready;
//! - a liveness or startup failure at threshold asks for a restart and puts probing on hold until the
//!   caller builds a new [`ContainerProbes`] for the restarted container.

use k8s_openapi::api::core::v1::{Container, Probe};
use std::time::{Duration, Instant};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    /// `Startup`, `Readiness`, `Liveness`: as the kubelet's events name the probe.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
        }
    }

    fn field(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startupProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Liveness => "livenessProbe",
        }
    }
}

/// The outcome of one probe run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
}

/// An invalid probe in a container spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("container {container:?}: {probe}.{field} is {value}: it must not be negative")]
    Negative { container: String, probe: &'static str, field: &'static str, value: i32 },
    #[error(
        "container {container:?}: {probe}.successThreshold is {value}: it must be 1 for liveness and startup probes"
    )]
    SuccessThresholdNotOne { container: String, probe: &'static str, value: i32 },
    #[error("container {container:?}: {probe} has no handler: set one of exec, httpGet, tcpSocket or grpc")]
    NoHandler { container: String, probe: &'static str },
}

/// A probe's timing fields with Kubernetes defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        ProbeTiming {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

impl ProbeTiming {
    /// Validates `probe` and applies defaults.
    pub fn from_probe(container: &str, kind: ProbeKind, probe: &Probe) -> Result<ProbeTiming, ProbeError> {
        let probe_name = kind.field();
        if probe.exec.is_none()
            && probe.http_get.is_none()
            && probe.tcp_socket.is_none()
            && probe.grpc.is_none()
        {
            return Err(ProbeError::NoHandler { container: container.to_owned(), probe: probe_name });
        }
        let field = |name: &'static str, value: Option<i32>, default: u32| -> Result<u32, ProbeError> {
            match value {
                None | Some(0) => Ok(default),
                Some(v) => u32::try_from(v).map_err(|_| ProbeError::Negative {
                    container: container.to_owned(),
                    probe: probe_name,
                    field: name,
                    value: v,
                }),
            }
        };
        let d = ProbeTiming::default();
        let timing = ProbeTiming {
            initial_delay: Duration::from_secs(u64::from(field(
                "initialDelaySeconds",
                probe.initial_delay_seconds,
                0,
            )?)),
            period: Duration::from_secs(u64::from(field("periodSeconds", probe.period_seconds, 10)?)),
            timeout: Duration::from_secs(u64::from(field("timeoutSeconds", probe.timeout_seconds, 1)?)),
            success_threshold: field("successThreshold", probe.success_threshold, d.success_threshold)?,
            failure_threshold: field("failureThreshold", probe.failure_threshold, d.failure_threshold)?,
        };
        if kind != ProbeKind::Readiness && timing.success_threshold != 1 {
            return Err(ProbeError::SuccessThresholdNotOne {
                container: container.to_owned(),
                probe: probe_name,
                value: probe.success_threshold.unwrap_or(1),
            });
        }
        Ok(timing)
    }
}

#[derive(Clone, Debug)]
struct Worker {
    timing: ProbeTiming,
    next_due: Instant,
    last: Option<ProbeResult>,
    run: u32,
    reported: Option<ProbeResult>,
}

impl Worker {
    fn new(timing: ProbeTiming, started_at: Instant) -> Worker {
        Worker { timing, next_due: started_at + timing.initial_delay, last: None, run: 0, reported: None }
    }

    /// Feeds a result; returns the newly reported result when it changes the reported state.
    fn record(&mut self, result: ProbeResult, at: Instant) -> Option<ProbeResult> {
        self.next_due = at + self.timing.period;
        if self.last == Some(result) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(result);
            self.run = 1;
        }
        let threshold = match result {
            ProbeResult::Success => self.timing.success_threshold,
            ProbeResult::Failure => self.timing.failure_threshold,
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.reported != Some(result);
        self.reported = Some(result);
        changed.then_some(result)
    }
}

/// What the caller must do after recording a probe result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// Nothing changed.
    None,
    /// The startup probe succeeded: the container is `started`.
    Started,
    /// Readiness changed.
    Ready(bool),
    /// Kill and restart the container; the message is the kubelet's event text.
    Restart(String),
}

/// The probes of one container instance (a restarted container gets a new one).
#[derive(Clone, Debug)]
pub struct ContainerProbes {
    startup: Option<Worker>,
    readiness: Option<Worker>,
    liveness: Option<Worker>,
    started: bool,
    ready: bool,
    on_hold: bool,
}

impl ContainerProbes {
    /// The probes of `container`, which started running at `started_at`.
    pub fn new(container: &Container, started_at: Instant) -> Result<ContainerProbes, ProbeError> {
        let worker = |kind, probe: &Option<Probe>| -> Result<Option<Worker>, ProbeError> {
            probe
                .as_ref()
                .map(|p| {
                    ProbeTiming::from_probe(&container.name, kind, p).map(|t| Worker::new(t, started_at))
                })
                .transpose()
        };
        let startup = worker(ProbeKind::Startup, &container.startup_probe)?;
        let readiness = worker(ProbeKind::Readiness, &container.readiness_probe)?;
        let liveness = worker(ProbeKind::Liveness, &container.liveness_probe)?;
        let started = startup.is_none();
        let ready = started && readiness.is_none();
        Ok(ContainerProbes { startup, readiness, liveness, started, ready, on_hold: false })
    }

    /// Whether the container counts as started (`containerStatuses[].started`).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Whether the container counts as ready (`containerStatuses[].ready`).
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The timing of one probe, if the container has it.
    pub fn timing(&self, kind: ProbeKind) -> Option<ProbeTiming> {
        self.worker(kind).map(|w| w.timing)
    }

    fn worker(&self, kind: ProbeKind) -> Option<&Worker> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
        }
    }

    fn active(&self) -> impl Iterator<Item = (ProbeKind, &Worker)> {
        let startup =
            (!self.started).then_some(()).and(self.startup.as_ref()).map(|w| (ProbeKind::Startup, w));
        let rest =
            [(ProbeKind::Readiness, self.readiness.as_ref()), (ProbeKind::Liveness, self.liveness.as_ref())]
                .into_iter()
                .filter(|_| self.started)
                .filter_map(|(k, w)| w.map(|w| (k, w)));
        startup.into_iter().chain(rest).filter(|_| !self.on_hold)
    }

    /// The probes to run at `now`.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        self.active().filter(|(_, w)| w.next_due <= now).map(|(k, _)| k).collect()
    }

    /// When the next probe is due, or `None` when nothing is left to run.
    pub fn next_due(&self) -> Option<Instant> {
        self.active().map(|(_, w)| w.next_due).min()
    }

    /// Records the result of a probe run at `at`.
    pub fn record(&mut self, kind: ProbeKind, result: ProbeResult, at: Instant) -> ProbeAction {
        if self.on_hold {
            return ProbeAction::None;
        }
        match kind {
            ProbeKind::Startup => {
                let Some(w) = self.startup.as_mut().filter(|_| !self.started) else {
                    return ProbeAction::None;
                };
                match w.record(result, at) {
                    Some(ProbeResult::Success) => {
                        self.started = true;
                        for w in [self.readiness.as_mut(), self.liveness.as_mut()].into_iter().flatten() {
                            w.next_due = w.next_due.max(at);
                        }
                        if self.readiness.is_none() {
                            self.ready = true;
                        }
                        ProbeAction::Started
                    }
                    Some(ProbeResult::Failure) => self.hold("Startup probe failed"),
                    None => ProbeAction::None,
                }
            }
            ProbeKind::Readiness => {
                let Some(w) = self.readiness.as_mut().filter(|_| self.started) else {
                    return ProbeAction::None;
                };
                match w.record(result, at) {
                    Some(r) => {
                        let ready = r == ProbeResult::Success;
                        if ready == self.ready {
                            ProbeAction::None
                        } else {
                            self.ready = ready;
                            ProbeAction::Ready(ready)
                        }
                    }
                    None => ProbeAction::None,
                }
            }
            ProbeKind::Liveness => {
                let Some(w) = self.liveness.as_mut().filter(|_| self.started) else {
                    return ProbeAction::None;
                };
                match w.record(result, at) {
                    Some(ProbeResult::Failure) => self.hold("Liveness probe failed"),
                    _ => ProbeAction::None,
                }
            }
        }
    }

    fn hold(&mut self, why: &str) -> ProbeAction {
        self.on_hold = true;
        self.ready = false;
        ProbeAction::Restart(format!("{why}, will be restarted"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeResult::{Failure, Success};
    use proptest::prelude::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        let mut base = json!({"name": "app"});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            b.extend(extra.clone());
        }
        serde_json::from_value(base).expect("container")
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_apply() {
        let c = container(json!({"readinessProbe": {"tcpSocket": {"port": 80}}}));
        let p = ContainerProbes::new(&c, Instant::now()).expect("probes");
        assert_eq!(p.timing(ProbeKind::Readiness), Some(ProbeTiming::default()));
        let c = container(
            json!({"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0, "failureThreshold": 5}}),
        );
        let t = ContainerProbes::new(&c, Instant::now())
            .expect("probes")
            .timing(ProbeKind::Liveness)
            .expect("timing");
        assert_eq!((t.period, t.failure_threshold), (secs(10), 5));
    }

    #[test]
    fn invalid_probes_are_errors() {
        let cases = [
            (
                json!({"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": -1}}),
                "container \"app\": livenessProbe.periodSeconds is -1: it must not be negative",
            ),
            (
                json!({"startupProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}}),
                "container \"app\": startupProbe.successThreshold is 2: it must be 1 for liveness and startup probes",
            ),
            (
                json!({"readinessProbe": {"periodSeconds": 3}}),
                "container \"app\": readinessProbe has no handler: set one of exec, httpGet, tcpSocket or grpc",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(ContainerProbes::new(&container(spec), Instant::now()).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn no_probes_means_started_and_ready() {
        let p = ContainerProbes::new(&container(json!({})), Instant::now()).expect("probes");
        assert!(p.started() && p.ready());
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn readiness_timeline_with_thresholds() {
        let t0 = Instant::now();
        let c = container(json!({"readinessProbe": {"httpGet": {"port": 80}, "initialDelaySeconds": 5,
            "periodSeconds": 2, "successThreshold": 2, "failureThreshold": 2}}));
        let mut p = ContainerProbes::new(&c, t0).expect("probes");
        assert!(p.started() && !p.ready());
        assert!(p.due(t0 + secs(4)).is_empty());
        assert_eq!(p.due(t0 + secs(5)), [ProbeKind::Readiness]);
        assert_eq!(p.record(ProbeKind::Readiness, Success, t0 + secs(5)), ProbeAction::None);
        assert_eq!(p.next_due(), Some(t0 + secs(7)));
        assert_eq!(p.record(ProbeKind::Readiness, Success, t0 + secs(7)), ProbeAction::Ready(true));
        assert_eq!(p.record(ProbeKind::Readiness, Failure, t0 + secs(9)), ProbeAction::None);
        assert_eq!(p.record(ProbeKind::Readiness, Success, t0 + secs(11)), ProbeAction::None);
        assert_eq!(p.record(ProbeKind::Readiness, Failure, t0 + secs(13)), ProbeAction::None);
        assert_eq!(p.record(ProbeKind::Readiness, Failure, t0 + secs(15)), ProbeAction::Ready(false));
        assert!(!p.ready());
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let t0 = Instant::now();
        let c = container(json!({
            "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 30},
            "livenessProbe": {"exec": {"command": ["true"]}},
        }));
        let mut p = ContainerProbes::new(&c, t0).expect("probes");
        assert!(!p.started() && !p.ready());
        assert_eq!(p.due(t0 + secs(100)), [ProbeKind::Startup]);
        // Liveness failures before start are ignored.
        assert_eq!(p.record(ProbeKind::Liveness, Failure, t0), ProbeAction::None);
        assert_eq!(p.record(ProbeKind::Startup, Failure, t0), ProbeAction::None);
        assert_eq!(p.record(ProbeKind::Startup, Success, t0 + secs(1)), ProbeAction::Started);
        assert!(p.started() && p.ready());
        assert_eq!(p.due(t0 + secs(1)), [ProbeKind::Liveness]);
        // The startup probe never runs again.
        assert_eq!(p.due(t0 + secs(1000)), [ProbeKind::Liveness]);
    }

    #[test]
    fn liveness_failure_restarts_and_holds() {
        let t0 = Instant::now();
        let c = container(json!({"livenessProbe": {"tcpSocket": {"port": 80}, "failureThreshold": 3}}));
        let mut p = ContainerProbes::new(&c, t0).expect("probes");
        assert_eq!(p.record(ProbeKind::Liveness, Failure, t0), ProbeAction::None);
        assert_eq!(p.record(ProbeKind::Liveness, Failure, t0 + secs(10)), ProbeAction::None);
        assert_eq!(
            p.record(ProbeKind::Liveness, Failure, t0 + secs(20)),
            ProbeAction::Restart("Liveness probe failed, will be restarted".into())
        );
        assert_eq!(p.next_due(), None);
        assert_eq!(p.record(ProbeKind::Liveness, Failure, t0 + secs(30)), ProbeAction::None);
    }

    #[test]
    fn startup_failure_restarts() {
        let t0 = Instant::now();
        let c = container(json!({"startupProbe": {"exec": {"command": ["x"]}, "failureThreshold": 1}}));
        let mut p = ContainerProbes::new(&c, t0).expect("probes");
        assert_eq!(
            p.record(ProbeKind::Startup, Failure, t0),
            ProbeAction::Restart("Startup probe failed, will be restarted".into())
        );
    }

    proptest! {
        /// Readiness only flips after `threshold` identical results in a row.
        #[test]
        fn readiness_respects_thresholds(results in proptest::collection::vec(any::<bool>(), 1..60),
                                         st in 1i32..4, ft in 1i32..4) {
            let t0 = Instant::now();
            let c = container(json!({"readinessProbe": {"exec": {"command": ["x"]},
                "successThreshold": st, "failureThreshold": ft}}));
            let mut p = ContainerProbes::new(&c, t0).expect("probes");
            let mut run = 0u32;
            let mut last: Option<bool> = None;
            let mut model: Option<bool> = None;
            for (i, ok) in results.into_iter().enumerate() {
                if last == Some(ok) { run += 1 } else { last = Some(ok); run = 1 }
                let threshold = if ok { st } else { ft } as u32;
                if run >= threshold { model = Some(ok) }
                let at = t0 + secs(10 * i as u64);
                p.record(ProbeKind::Readiness, if ok { Success } else { Failure }, at);
                prop_assert_eq!(p.ready(), model.unwrap_or(false));
                prop_assert_eq!(p.next_due(), Some(at + secs(10)));
            }
        }
    }
}
