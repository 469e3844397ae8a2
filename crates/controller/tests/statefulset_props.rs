//! Properties of the StatefulSet planner, driven in a simulated loop: the planner's actions are
//! applied to a simulated world whose pods become Ready, fail, or stay unready at random, while
//! the set is scaled, re-templated and re-partitioned. Every plan is checked against a small
//! model of the rules; at the end, with pods allowed to become Ready, the loop must converge.

mod support;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use stead_controller::plan::{Action, DeleteReason};
use stead_controller::pods;
use stead_controller::statefulset::LABEL_REVISION;
use support::*;

#[derive(Debug, Clone)]
struct Config {
    replicas: i32,
    start: i32,
    parallel: bool,
    partition: i32,
    max_unavailable: i32,
    min_ready: i32,
    claims: bool,
    when_scaled_delete: bool,
    when_deleted_delete: bool,
}

#[derive(Debug, Clone)]
enum Event {
    /// The kubelet moves a pod one step (Pending -> Running -> Ready; terminating -> gone).
    Progress(usize),
    /// A pod fails (phase Failed) or loses readiness.
    Break(usize, bool),
    Scale(i32),
    Image(u8),
    Partition(i32),
    Wait(i64),
    /// The engine dies mid-plan: only the first n actions of the next plan run and the status
    /// is not written; the next plan starts from what the store holds.
    Crash(usize),
}

fn config() -> impl Strategy<Value = Config> {
    (
        0..6i32,
        0..3i32,
        any::<bool>(),
        0..5i32,
        1..4i32,
        prop_oneof![Just(0), Just(5)],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(replicas, start, parallel, partition, max_unavailable, min_ready, claims, s, d)| {
            Config {
                replicas,
                start,
                parallel,
                partition,
                max_unavailable,
                min_ready,
                claims,
                when_scaled_delete: s,
                when_deleted_delete: d,
            }
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0..8usize).prop_map(Event::Progress),
        1 => (0..8usize, any::<bool>()).prop_map(|(i, f)| Event::Break(i, f)),
        1 => (0..6i32).prop_map(Event::Scale),
        1 => (0..3u8).prop_map(Event::Image),
        1 => (0..5i32).prop_map(Event::Partition),
        1 => (1..8i64).prop_map(Event::Wait),
        1 => (0..4usize).prop_map(Event::Crash),
    ]
}

fn build(c: &Config) -> World {
    let mut set = with_start(sts(c.replicas), c.start);
    if c.parallel {
        set = parallel(set);
    }
    set = with_rolling(set, Some(c.partition), Some(IntOrString::Int(c.max_unavailable)));
    spec(&mut set).min_ready_seconds = Some(c.min_ready);
    if c.claims {
        set = with_claim(set, "data", "1Gi");
        set = with_retention(
            set,
            if c.when_deleted_delete { "Delete" } else { "Retain" },
            if c.when_scaled_delete { "Delete" } else { "Retain" },
        );
    }
    World::new(set)
}

fn range(w: &World) -> (i32, i32) {
    let s = w.set.spec.as_ref().unwrap();
    let start = s.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    (start, start + s.replicas.unwrap_or(1))
}

fn partition(w: &World) -> i32 {
    let s = w.set.spec.as_ref().unwrap();
    s.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0)
}

/// Check one plan against the model of the rules, given the world before it is applied.
fn check(w: &World, plan_actions: &[Action], ordered: bool, min_ready: i32) -> Result<(), TestCaseError> {
    let (lo, hi) = range(w);
    let p = partition(w);
    let prev_current = w.set.status.as_ref().and_then(|s| s.current_revision.clone());
    let mut deleted_now: Vec<String> = vec![];
    for a in plan_actions {
        match a {
            Action::CreatePod(pod) => {
                let name = pod.metadata.name.clone().unwrap();
                let ord = ordinal(&name);
                prop_assert!(w.pod(&name).is_none(), "identity {name} created twice");
                prop_assert!(ord >= lo && ord < hi, "created {name} outside [{lo}, {hi})");
                if ordered {
                    for lower in lo..ord {
                        let lp = w.pod(&format!("web-{lower}"));
                        let ok = lp.is_some_and(|lp| {
                            !pods::is_terminating(lp) && pods::is_running_and_available(lp, min_ready, w.now)
                        });
                        prop_assert!(
                            ok,
                            "OrderedReady created {name} while web-{lower} is not Ready and available"
                        );
                    }
                }
                if ord < lo + p
                    && let Some(cur) = &prev_current
                {
                    let label = pod.metadata.labels.as_ref().unwrap()[LABEL_REVISION].clone();
                    prop_assert_eq!(
                        &label,
                        cur,
                        "{} below the partition {} created at another revision",
                        name,
                        p
                    );
                }
            }
            Action::DeletePod { name, reason, .. } => {
                let ord = ordinal(name);
                match reason {
                    DeleteReason::Update => {
                        prop_assert!(ord >= lo + p, "update deleted {name} below the partition {p}");
                    }
                    DeleteReason::ScaleDown => {
                        prop_assert!(ord < lo || ord >= hi, "scale-down deleted in-range {name}");
                        for other in &w.pods {
                            let oname = other.metadata.name.clone().unwrap();
                            let o = ordinal(&oname);
                            let condemned = o < lo || o >= hi;
                            if condemned && o > ord {
                                if ordered {
                                    prop_assert!(false, "deleted {name} while higher {oname} still exists");
                                }
                                prop_assert!(
                                    pods::is_terminating(other) || deleted_now.contains(&oname),
                                    "deleted {} before higher {}",
                                    name,
                                    oname
                                );
                            }
                        }
                    }
                    _ => {}
                }
                deleted_now.push(name.clone());
            }
            _ => {}
        }
    }
    Ok(())
}

fn step(w: &mut World, c: &Config) -> Result<(), TestCaseError> {
    step_partial(w, c, None)
}

fn step_partial(w: &mut World, c: &Config, crash_after: Option<usize>) -> Result<(), TestCaseError> {
    let plan = w.plan();
    check(w, &plan.actions, !c.parallel, c.min_ready)?;
    let n = crash_after.unwrap_or(plan.actions.len()).min(plan.actions.len());
    for a in &plan.actions[..n] {
        w.apply(a);
    }
    if crash_after.is_none() {
        w.set.status = Some(plan.status);
    }
    Ok(())
}

fn check_collected(w: &World, c: &Config, before: usize) -> Result<(), TestCaseError> {
    let (lo, hi) = range(w);
    for name in &w.collected_claims[before..] {
        let ord = ordinal(name);
        prop_assert!(c.when_scaled_delete, "claim {name} deleted under whenScaled=Retain");
        prop_assert!(ord < lo || ord >= hi, "in-range claim {name} deleted");
    }
    Ok(())
}

fn apply_event(w: &mut World, c: &Config, e: &Event) -> Result<(), TestCaseError> {
    let names = w.pod_names();
    match e {
        Event::Progress(i) if !names.is_empty() => {
            let n = names[i % names.len()].clone();
            let pod = w.pod(&n).unwrap().clone();
            if pods::is_terminating(&pod) {
                let before = w.collected_claims.len();
                w.remove_pod(&n);
                check_collected(w, c, before)?;
            } else if pods::is_pending(&pod) {
                w.set_state(&n, PodState::Running);
            } else if !pods::is_failed(&pod) {
                w.set_state(&n, PodState::Ready);
            }
        }
        Event::Break(i, failed) if !names.is_empty() => {
            let n = names[i % names.len()].clone();
            w.set_state(&n, if *failed { PodState::Failed } else { PodState::Running });
        }
        Event::Scale(n) => set_replicas(&mut w.set, *n),
        Event::Image(i) => set_image(&mut w.set, &format!("busybox:{i}")),
        Event::Partition(p) => {
            let s = spec(&mut w.set);
            if let Some(r) = s.update_strategy.as_mut().and_then(|u| u.rolling_update.as_mut()) {
                r.partition = Some(*p);
            }
        }
        Event::Wait(s) => w.now = Timestamp::from_second(w.now.as_second() + s).unwrap(),
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_rules_hold_and_the_loop_converges(c in config(), events in prop::collection::vec(event(), 0..80)) {
        let mut w = build(&c);
        for e in &events {
            match e {
                Event::Crash(n) => step_partial(&mut w, &c, Some(*n))?,
                _ => step(&mut w, &c)?,
            }
            apply_event(&mut w, &c, e)?;
        }
        // Converge: partition 0, pods become Ready, terminating pods go.
        let s = spec(&mut w.set);
        if let Some(r) = s.update_strategy.as_mut().and_then(|u| u.rolling_update.as_mut()) {
            r.partition = Some(0);
        }
        let (lo, hi) = range(&w);
        let rounds = 4 * (usize::try_from(hi - lo).unwrap() + 8);
        for _ in 0..rounds {
            step(&mut w, &c)?;
            for n in w.pod_names() {
                let pod = w.pod(&n).unwrap().clone();
                if pods::is_terminating(&pod) {
                    let before = w.collected_claims.len();
                    w.remove_pod(&n);
                    check_collected(&w, &c, before)?;
                } else if !pods::is_failed(&pod) {
                    w.set_state(&n, PodState::Ready);
                }
            }
            w.now = Timestamp::from_second(w.now.as_second() + 3).unwrap();
        }
        step(&mut w, &c)?;
        let st = w.set.status.clone().unwrap();
        let want: Vec<String> = (lo..hi).map(|o| format!("web-{o}")).collect();
        prop_assert_eq!(w.pod_names(), want);
        prop_assert_eq!(st.replicas, hi - lo);
        prop_assert_eq!(st.ready_replicas, Some(hi - lo));
        prop_assert_eq!(st.updated_replicas, Some(hi - lo));
        prop_assert_eq!(&st.current_revision, &st.update_revision);
        for n in w.pod_names() {
            prop_assert_eq!(w.revision_of(&n), st.update_revision.clone());
        }
        if c.claims {
            for o in lo..hi {
                let claim = format!("data-web-{o}");
                prop_assert!(w.claim(&claim).is_some(), "claim {} missing", claim);
            }
        }
        let cond = &st.conditions.unwrap()[0];
        prop_assert_eq!(cond.reason.as_deref(), Some("RolloutComplete"));
    }
}
