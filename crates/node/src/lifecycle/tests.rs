use super::*;
use crate::status::{pod_status, status_column};
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

fn pod(policy: &str, inits: serde_json::Value, apps: &[&str]) -> Pod {
    let apps: Vec<_> = apps.iter().map(|n| json!({"name": n, "command": ["x"]})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "default", "uid": "u1"},
        "spec": {"restartPolicy": policy, "initContainers": inits, "containers": apps}
    }))
    .expect("pod")
}

fn wall(n: u64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + n as i64).expect("ts")
}

struct Clock {
    t0: Instant,
    secs: u64,
}

impl Clock {
    fn now(&self) -> Instant {
        self.t0 + Duration::from_secs(self.secs)
    }
}

fn column(p: &Pod, lc: &PodLifecycle, clock: &Clock) -> String {
    let mut p = p.clone();
    let obs = lc.observation(clock.now(), "u1");
    p.status = Some(pod_status(&p, &obs, wall(clock.secs), None));
    status_column(&p)
}

#[test]
fn init_containers_in_order_then_apps() {
    let p = pod("Always", json!([{"name": "a"}, {"name": "b"}]), &["x", "y"]);
    let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
    let mut c = Clock { t0: Instant::now(), secs: 0 };
    assert_eq!(lc.due(c.now()), ["a"]);
    assert_eq!(column(&p, &lc, &c), "Init:0/2");
    lc.record("a", Event::Started, c.now(), wall(0));
    assert!(lc.due(c.now()).is_empty());
    c.secs = 1;
    assert_eq!(lc.record("a", Event::Exited(Exit::Code(0)), c.now(), wall(1)), Some(ExitDecision::InitDone));
    assert_eq!(lc.due(c.now()), ["b"]);
    lc.record("b", Event::Started, c.now(), wall(1));
    assert_eq!(column(&p, &lc, &c), "Init:1/2");
    c.secs = 2;
    assert_eq!(lc.record("b", Event::Exited(Exit::Code(1)), c.now(), wall(2)), Some(ExitDecision::Restart));
    assert_eq!(lc.due(c.now()), ["b"], "the first failure restarts at once");
    lc.record("b", Event::Started, c.now(), wall(2));
    assert_eq!(lc.record("b", Event::Exited(Exit::Code(1)), c.now(), wall(2)), Some(ExitDecision::Restart));
    assert!(lc.due(c.now()).is_empty(), "in backoff");
    assert_eq!(column(&p, &lc, &c), "Init:CrashLoopBackOff");
    assert_eq!(lc.next_wakeup(), Some(c.now() + Duration::from_secs(10)));
    c.secs = 12;
    assert_eq!(lc.due(c.now()), ["b"]);
    lc.record("b", Event::Started, c.now(), wall(12));
    c.secs = 13;
    lc.record("b", Event::Exited(Exit::Code(0)), c.now(), wall(13));
    assert!(lc.initialized());
    assert_eq!(lc.due(c.now()), ["x", "y"]);
    let obs = lc.observation(c.now(), "u1");
    assert_eq!(obs.containers["b"].restart_count, 2);
    lc.record("x", Event::Started, c.now(), wall(13));
    lc.record("y", Event::Started, c.now(), wall(13));
    lc.set_ready("x", true);
    lc.set_ready("y", true);
    assert_eq!(column(&p, &lc, &c), "Running");
}

#[test]
fn init_failure_under_never_fails_the_pod() {
    let p = pod("Never", json!([{"name": "a"}]), &["x"]);
    let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
    let c = Clock { t0: Instant::now(), secs: 0 };
    lc.record("a", Event::Started, c.now(), wall(0));
    assert_eq!(lc.record("a", Event::Exited(Exit::Code(2)), c.now(), wall(0)), Some(ExitDecision::FailPod));
    assert!(lc.failed());
    assert!(lc.due(c.now() + Duration::from_secs(3600)).is_empty());
    let mut p2 = p.clone();
    p2.status = Some(pod_status(&p, &lc.observation(c.now(), "u1"), wall(1), None));
    assert_eq!(p2.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed"));
    assert_eq!(status_column(&p2), "Init:Error");
}

#[test]
fn app_crash_loop_backoff_grows() {
    let p = pod("Always", json!([]), &["x"]);
    let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
    let mut c = Clock { t0: Instant::now(), secs: 0 };
    let mut delays = vec![];
    for _ in 0..4 {
        assert_eq!(lc.due(c.now()), ["x"]);
        lc.record("x", Event::Started, c.now(), wall(c.secs));
        c.secs += 1;
        lc.record("x", Event::Exited(Exit::OomKilled), c.now(), wall(c.secs));
        let wake = lc.next_wakeup().expect("wakeup");
        delays.push(wake.duration_since(c.now()).as_secs());
        if delays.len() > 1 {
            assert_eq!(column(&p, &lc, &c), "CrashLoopBackOff");
        }
        c.secs += delays[delays.len() - 1];
    }
    assert_eq!(delays, [0, 10, 20, 40]);
    let obs = lc.observation(c.now(), "u1");
    let last =
        obs.containers["x"].last_state.as_ref().and_then(|s| s.terminated.as_ref()).expect("last state");
    assert_eq!(last.reason.as_deref(), Some("OOMKilled"));
    assert_eq!(obs.containers["x"].restart_count, 3);
}

#[test]
fn completed_under_on_failure() {
    let p = pod("OnFailure", json!([]), &["job"]);
    let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
    let c = Clock { t0: Instant::now(), secs: 0 };
    lc.record("job", Event::Started, c.now(), wall(0));
    assert_eq!(lc.record("job", Event::Exited(Exit::Code(0)), c.now(), wall(5)), Some(ExitDecision::Stay));
    assert!(lc.due(c.now() + Duration::from_secs(999)).is_empty());
    assert_eq!(column(&p, &lc, &c), "Completed");
}

#[test]
fn sidecar_starts_then_next_init_runs() {
    let p = pod("Always", json!([{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}]), &["app"]);
    let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
    let c = Clock { t0: Instant::now(), secs: 0 };
    assert_eq!(lc.due(c.now()), ["proxy"]);
    lc.record("proxy", Event::Started, c.now(), wall(0));
    assert_eq!(lc.due(c.now()), ["setup"]);
    assert_eq!(
        lc.record("proxy", Event::Exited(Exit::Code(1)), c.now(), wall(0)),
        Some(ExitDecision::Restart)
    );
    // The crashed sidecar restarts at once the first time; the second crash waits for the backoff
    // without blocking `setup`.
    assert_eq!(lc.due(c.now()), ["proxy", "setup"]);
    lc.record("proxy", Event::Started, c.now(), wall(0));
    lc.record("proxy", Event::Exited(Exit::Code(1)), c.now(), wall(0));
    assert_eq!(lc.due(c.now()), ["setup"]);
    assert_eq!(lc.due(c.now() + Duration::from_secs(10)), ["proxy", "setup"]);
    assert_eq!(roles(p.spec.as_ref().expect("spec"))["proxy"], ContainerRole::Sidecar);
}

#[test]
fn unknown_container_and_policy() {
    let p = pod("Always", json!([]), &["x"]);
    let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
    assert_eq!(lc.record("ghost", Event::Started, Instant::now(), wall(0)), None);
    let bad = pod("Sometimes", json!([]), &["x"]);
    assert!(PodLifecycle::new("default/web-0", bad.spec.as_ref().expect("spec")).is_err());
}

proptest! {
    /// Under any sequence of starts and exits, no app container is due before every init container
    /// has completed, and nothing is due after the pod failed.
    #[test]
    fn apps_wait_for_inits(policy in prop_oneof![Just("Always"), Just("OnFailure"), Just("Never")],
                           events in proptest::collection::vec((0usize..4, any::<bool>(), 0i32..3, 0u64..30), 0..40)) {
        let p = pod(policy, json!([{"name": "i0"}, {"name": "i1"}]), &["a0", "a1"]);
        let names = ["i0", "i1", "a0", "a1"];
        let mut lc = PodLifecycle::new("default/web-0", p.spec.as_ref().expect("spec")).expect("lifecycle");
        let t0 = Instant::now();
        let mut secs = 0;
        for (who, start, code, dt) in events {
            secs += dt;
            let now = t0 + Duration::from_secs(secs);
            let due = lc.due(now);
            if lc.failed() { prop_assert!(due.is_empty()); }
            if !lc.initialized() { prop_assert!(due.iter().all(|n| n.starts_with('i'))); }
            prop_assert!(due.iter().filter(|n| n.starts_with('i')).count() <= 1);
            let name = names[who];
            let ev = if start { Event::Started } else { Event::Exited(Exit::Code(code)) };
            lc.record(name, ev, now, wall(secs));
            let _ = column(&p, &lc, &Clock { t0, secs });
        }
    }
}
