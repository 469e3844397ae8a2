//! Restart decisions and the kubelet's crash-loop backoff.
//!
//! Backoff, as the kubelet's `doBackOff` with `flowcontrol.Backoff` (`backOffPeriod = 10s`,
//! `MaxContainerBackOff = 5m`): the first exit is restarted at once (there is no backoff entry yet;
//! the restart creates one of 10 s). A later exit waits the entry's delay (`CrashLoopBackOff`, "back-off
//! 10s ..."), and the restart after it doubles the delay, capped at 5 min: waits of 0, 10, 20, 40 s, ...
//! An exit more than 10 min (twice the cap) after the previous one starts over (restart at once).

use k8s_openapi::api::core::v1::{Container, PodSpec};
use std::time::{Duration, Instant};

/// The first backoff delay.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// The largest backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Running for longer than this between exits resets the delay.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// A pod's or container's `restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// An unknown `restartPolicy` string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown restartPolicy {0:?}: expected Always, OnFailure or Never")]
pub struct UnknownRestartPolicy(pub String);

impl RestartPolicy {
    /// Parses the field; absent means `Always`, Kubernetes' default.
    pub fn parse(value: Option<&str>) -> Result<RestartPolicy, UnknownRestartPolicy> {
        match value {
            None | Some("Always") => Ok(RestartPolicy::Always),
            Some("OnFailure") => Ok(RestartPolicy::OnFailure),
            Some("Never") => Ok(RestartPolicy::Never),
            Some(other) => Err(UnknownRestartPolicy(other.to_owned())),
        }
    }

    /// The pod-level policy.
    pub fn of_pod(spec: &PodSpec) -> Result<RestartPolicy, UnknownRestartPolicy> {
        RestartPolicy::parse(spec.restart_policy.as_deref())
    }

    /// Whether a container that exited with `exit_code` is started again under this policy.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// The role a container plays in its pod, which decides how its exits are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRole {
    /// An ordinary init container: must exit 0 before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always` (a sidecar): keeps running, always restarted.
    Sidecar,
    /// An app container.
    App,
}

impl ContainerRole {
    /// The role of an init container, from its own `restartPolicy`.
    pub fn of_init(container: &Container) -> ContainerRole {
        if container.restart_policy.as_deref() == Some("Always") {
            ContainerRole::Sidecar
        } else {
            ContainerRole::Init
        }
    }
}

/// What to do after a container exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitDecision {
    /// Start it again after the backoff delay.
    Restart,
    /// An init container succeeded: go on to the next one.
    InitDone,
    /// Leave it terminated; the pod goes on (app container not restarted).
    Stay,
    /// An init container failed and will not be retried: the pod fails.
    FailPod,
}

/// Decides what follows an exit, as the kubelet does for each kind of container.
pub fn on_exit(pod_policy: RestartPolicy, role: ContainerRole, exit_code: i32) -> ExitDecision {
    match role {
        ContainerRole::Sidecar => ExitDecision::Restart,
        ContainerRole::Init if exit_code == 0 => ExitDecision::InitDone,
        // Init containers are retried under Always and OnFailure alike.
        ContainerRole::Init if pod_policy == RestartPolicy::Never => ExitDecision::FailPod,
        ContainerRole::Init => ExitDecision::Restart,
        ContainerRole::App if pod_policy.restarts(exit_code) => ExitDecision::Restart,
        ContainerRole::App => ExitDecision::Stay,
    }
}

/// One container's crash-loop backoff.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    entry: Option<Entry>,
    /// The wait after the latest exit, and when it ends.
    wait: Option<(Duration, Instant)>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

impl Backoff {
    /// Records an exit at `finished_at` and returns the delay before the next start (zero: at once).
    pub fn record_exit(&mut self, finished_at: Instant) -> Duration {
        let wait = match self.entry {
            Some(e) if finished_at.saturating_duration_since(e.last_update) <= RESET_AFTER => {
                // In backoff for the entry's delay; the restart after it doubles the delay.
                self.entry = Some(Entry {
                    delay: e.delay.saturating_mul(2).min(MAX_BACKOFF),
                    last_update: finished_at,
                });
                e.delay
            }
            _ => {
                self.entry = Some(Entry { delay: INITIAL_BACKOFF, last_update: finished_at });
                Duration::ZERO
            }
        };
        self.wait = Some((wait, finished_at + wait));
        wait
    }

    /// The instant the container may start again, after its latest exit.
    pub fn restart_at(&self) -> Option<Instant> {
        self.wait.map(|(_, at)| at)
    }

    /// Whether a start at `now` must still wait (the kubelet then reports `CrashLoopBackOff`).
    pub fn in_backoff(&self, now: Instant) -> bool {
        self.restart_at().is_some_and(|at| now < at)
    }

    /// The wait after the latest exit, if any exit was recorded.
    pub fn current_delay(&self) -> Option<Duration> {
        self.wait.map(|(d, _)| d)
    }

    /// The kubelet's waiting message, e.g. `back-off 40s restarting failed container=app pod=web-0_default(uid)`.
    pub fn message(&self, container: &str, pod: &str, namespace: &str, uid: &str) -> String {
        let secs = self.current_delay().unwrap_or(INITIAL_BACKOFF).as_secs();
        let delay = if secs >= 60 && secs.is_multiple_of(60) {
            format!("{}m0s", secs / 60)
        } else if secs >= 60 {
            format!("{}m{}s", secs / 60, secs % 60)
        } else {
            format!("{secs}s")
        };
        format!("back-off {delay} restarting failed container={container} pod={pod}_{namespace}({uid})")
    }
}

/// The retries of a container that could not be created (`CreateContainerError`,
/// `CreateContainerConfigError`, `RunContainerError`): the kubelet keeps its pod Pending, the
/// container Waiting with the reason, and tries again. A container that cannot be created is
/// retried on the same back-off as a crash loop's (10 s after the first failure, doubling to
/// 5 min); one whose configuration is missing (a ConfigMap or Secret not there yet) every 10 s, as
/// the kubelet's pod worker retries a failed sync, so that it starts soon after the object is
/// applied. A successful start ends it.
#[derive(Clone, Debug, Default)]
pub struct CreateBackoff {
    failures: u32,
    retry_at: Option<Instant>,
    /// The kind of the last failure: a change of kind starts the doubling afresh.
    last: Option<Retry>,
}

/// How a failed creation is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// 10 s, doubling to 5 min.
    Doubling,
    /// Every 10 s.
    Steady,
}

impl CreateBackoff {
    /// Records a failed attempt at `at`; returns the wait before the next one.
    pub fn record_failure(&mut self, at: Instant, retry: Retry) -> Duration {
        if self.last.replace(retry).is_some_and(|last| last != retry) {
            self.failures = 0;
        }
        let doublings = match retry {
            Retry::Doubling => self.failures.min(16),
            Retry::Steady => 0,
        };
        let delay = INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(at + delay);
        delay
    }

    /// How many attempts have failed.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next attempt is due.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether an attempt at `now` must still wait.
    pub fn in_backoff(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubling_to_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let mut t = t0;
        let mut seen = vec![];
        for _ in 0..8 {
            let d = b.record_exit(t);
            seen.push(d.as_secs());
            t += d + Duration::from_secs(1); // crashes right after each restart
        }
        assert_eq!(seen, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.record_exit(t0), Duration::ZERO, "the first exit restarts at once");
        assert_eq!(b.record_exit(t0 + Duration::from_secs(20)).as_secs(), 10);
        assert_eq!(b.current_delay(), Some(Duration::from_secs(10)));
        // Exactly 10 minutes later: still grows.
        assert_eq!(b.record_exit(t0 + Duration::from_secs(620)).as_secs(), 20);
        // More than 10 minutes later: starts over.
        assert_eq!(b.record_exit(t0 + Duration::from_secs(1221)), Duration::ZERO);
        assert_eq!(b.record_exit(t0 + Duration::from_secs(1222)).as_secs(), 10);
    }

    #[test]
    fn in_backoff_window() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(!b.in_backoff(t0));
        b.record_exit(t0);
        assert!(!b.in_backoff(t0), "first exit: no wait");
        b.record_exit(t0 + Duration::from_secs(1));
        assert!(b.in_backoff(t0 + Duration::from_secs(10)));
        assert!(!b.in_backoff(t0 + Duration::from_secs(11)));
        assert_eq!(b.restart_at(), Some(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn messages() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        b.record_exit(t0);
        b.record_exit(t0 + Duration::from_secs(1));
        assert_eq!(
            b.message("app", "web-0", "default", "u1"),
            "back-off 10s restarting failed container=app pod=web-0_default(u1)"
        );
        for i in 2..8 {
            b.record_exit(t0 + Duration::from_secs(i));
        }
        assert_eq!(
            b.message("app", "web-0", "default", "u1"),
            "back-off 5m0s restarting failed container=app pod=web-0_default(u1)"
        );
        for i in 0..5 {
            b.record_exit(t0 + Duration::from_secs(10_000 + i));
        }
        assert_eq!(b.message("a", "p", "n", "u"), "back-off 1m20s restarting failed container=a pod=p_n(u)");
    }

    #[test]
    fn a_container_that_cannot_be_created_is_retried_10s_doubling_to_5min() {
        let t0 = Instant::now();
        let mut b = CreateBackoff::default();
        assert!(!b.in_backoff(t0), "the first attempt is not held back");
        let mut t = t0;
        let mut waits = vec![];
        for _ in 0..8 {
            let d = b.record_failure(t, Retry::Doubling);
            assert_eq!(b.retry_at(), Some(t + d));
            assert!(b.in_backoff(t + d - Duration::from_millis(1)));
            assert!(!b.in_backoff(t + d));
            waits.push(d.as_secs());
            t += d;
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.failures(), 8);
        // Over the first hour: 16 attempts (at 0, 10, 30, 70, 150, 310 s, then every 5 min), not
        // one every few milliseconds.
        let mut b = CreateBackoff::default();
        let mut t = t0;
        let mut attempts = 0;
        while t < t0 + Duration::from_secs(3600) {
            attempts += 1;
            t += b.record_failure(t, Retry::Doubling);
        }
        assert_eq!(attempts, 16);
        for _ in 0..100 {
            assert_eq!(
                b.record_failure(t, Retry::Doubling),
                MAX_BACKOFF,
                "no overflow however long it fails"
            );
        }
    }

    #[test]
    fn a_container_whose_configuration_is_missing_is_retried_every_10s() {
        let t0 = Instant::now();
        let mut b = CreateBackoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|i| b.record_failure(t0 + Duration::from_secs(10 * i), Retry::Steady).as_secs())
            .collect();
        assert_eq!(waits, [10; 8]);
        assert_eq!(b.failures(), 8);
        // Once the configuration is there, a container that cannot be created starts at 10 s,
        // not at the delay its steady retries would have earned.
        assert_eq!(b.record_failure(t0 + Duration::from_secs(90), Retry::Doubling).as_secs(), 10);
        assert_eq!(b.record_failure(t0 + Duration::from_secs(100), Retry::Doubling).as_secs(), 20);
    }

    #[test]
    fn policy_table() {
        use ContainerRole::*;
        use ExitDecision::*;
        use RestartPolicy::*;
        let cases = [
            (Always, App, 0, Restart),
            (Always, App, 1, Restart),
            (OnFailure, App, 0, Stay),
            (OnFailure, App, 137, Restart),
            (Never, App, 0, Stay),
            (Never, App, 1, Stay),
            (Always, Init, 0, InitDone),
            (Always, Init, 1, Restart),
            (OnFailure, Init, 1, Restart),
            (Never, Init, 1, FailPod),
            (Never, Init, 0, InitDone),
            (Never, Sidecar, 0, Restart),
            (Never, Sidecar, 1, Restart),
        ];
        for (policy, role, code, want) in cases {
            assert_eq!(on_exit(policy, role, code), want, "{policy:?} {role:?} exit {code}");
        }
    }

    #[test]
    fn parse_policy() {
        assert_eq!(RestartPolicy::parse(None), Ok(RestartPolicy::Always));
        assert_eq!(RestartPolicy::parse(Some("Never")), Ok(RestartPolicy::Never));
        assert_eq!(
            RestartPolicy::parse(Some("Sometimes")).unwrap_err().to_string(),
            "unknown restartPolicy \"Sometimes\": expected Always, OnFailure or Never"
        );
        let sidecar: Container =
            serde_json::from_value(serde_json::json!({"name": "s", "restartPolicy": "Always"})).unwrap();
        assert_eq!(ContainerRole::of_init(&sidecar), ContainerRole::Sidecar);
    }

    proptest! {
        /// Waits are zero or within [10 s, 5 min], never more than double the previous one, and zero
        /// for a first exit or after a long run.
        #[test]
        fn bounded(gaps in proptest::collection::vec(0u64..2000, 1..40)) {
            let mut b = Backoff::default();
            let mut t = Instant::now();
            let mut prev: Option<Duration> = None;
            for g in gaps {
                t += Duration::from_secs(g);
                let d = b.record_exit(t);
                prop_assert!(d == Duration::ZERO || (d >= INITIAL_BACKOFF && d <= MAX_BACKOFF));
                if let Some(p) = prev {
                    prop_assert!(d <= (p * 2).max(INITIAL_BACKOFF));
                    if g > RESET_AFTER.as_secs() { prop_assert_eq!(d, Duration::ZERO); }
                } else {
                    prop_assert_eq!(d, Duration::ZERO);
                }
                prev = Some(d);
            }
        }
    }
}
