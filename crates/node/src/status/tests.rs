use super::*;
use proptest::prelude::*;
use serde_json::json;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

fn spec_pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
    let c = |n: &&str| json!({"name": n, "image": "busybox", "command": ["true"]});
    serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {
            "restartPolicy": policy,
            "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
            "containers": apps.iter().map(c).collect::<Vec<_>>(),
        }
    }))
    .expect("pod")
}

fn obs(entries: Vec<(&str, Observed)>) -> PodObservation {
    PodObservation {
        containers: entries.into_iter().map(|(n, o)| (n.to_owned(), o)).collect(),
        pod_ip: Some("10.244.0.10".into()),
        host_ip: Some("10.244.0.1".into()),
        start_time: Some(ts(0)),
        terminal: false,
    }
}

fn done() -> Observed {
    Observed::terminated(Exit::Code(0), ts(1), ts(2))
}
fn failed() -> Observed {
    Observed::terminated(Exit::Code(1), ts(1), ts(2))
}
fn crashloop() -> Observed {
    Observed::waiting("CrashLoopBackOff", Some("back-off 10s".into()))
        .after_restarts(1, Some(terminated_state(Exit::Code(1), ts(1), ts(2))))
}
fn running(ready: bool) -> Observed {
    Observed::running(ts(3), ready, true)
}

/// Returns (phase, STATUS column, Ready condition status).
fn run(mut pod: Pod, o: &PodObservation) -> (String, String, String) {
    let status = pod_status(&pod, o, ts(10), None);
    pod.status = Some(status.clone());
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
        .unwrap_or_default();
    (status.phase.unwrap_or_default(), status_column(&pod), ready)
}

#[test]
fn table() {
    let two_init = || spec_pod("Always", &["a", "b"], &["app"]);
    type Case = (&'static str, Pod, PodObservation, (&'static str, &'static str, &'static str));
    let cases: Vec<Case> = vec![
        ("nothing ran", two_init(), obs(vec![]), ("Pending", "Init:0/2", "False")),
        (
            "first init running",
            two_init(),
            obs(vec![("a", running(false))]),
            ("Pending", "Init:0/2", "False"),
        ),
        (
            "second init running",
            two_init(),
            obs(vec![("a", done()), ("b", running(false))]),
            ("Pending", "Init:1/2", "False"),
        ),
        ("init error", two_init(), obs(vec![("a", failed())]), ("Pending", "Init:Error", "False")),
        (
            "init crash loop",
            two_init(),
            obs(vec![("a", crashloop())]),
            ("Pending", "Init:CrashLoopBackOff", "False"),
        ),
        (
            "init error, never",
            spec_pod("Never", &["a", "b"], &["app"]),
            obs(vec![("a", failed())]),
            ("Failed", "Init:Error", "False"),
        ),
        (
            "init oom",
            two_init(),
            obs(vec![("a", Observed::terminated(Exit::OomKilled, ts(1), ts(2)))]),
            ("Pending", "Init:OOMKilled", "False"),
        ),
        (
            "inits done, creating",
            two_init(),
            obs(vec![("a", done()), ("b", done())]),
            ("Pending", "ContainerCreating", "False"),
        ),
        (
            "pod initializing",
            two_init(),
            obs(vec![("a", done()), ("b", done()), ("app", Observed::waiting("PodInitializing", None))]),
            ("Pending", "PodInitializing", "False"),
        ),
        (
            "running ready",
            two_init(),
            obs(vec![("a", done()), ("b", done()), ("app", running(true))]),
            ("Running", "Running", "True"),
        ),
        (
            "running not ready",
            spec_pod("Always", &[], &["app"]),
            obs(vec![("app", running(false))]),
            ("Running", "Running", "False"),
        ),
        (
            "crash loop",
            spec_pod("Always", &[], &["app"]),
            obs(vec![("app", crashloop())]),
            ("Running", "CrashLoopBackOff", "False"),
        ),
        (
            "completed",
            spec_pod("Never", &[], &["app"]),
            obs(vec![("app", done())]),
            ("Succeeded", "Completed", "False"),
        ),
        (
            "completed onfailure",
            spec_pod("OnFailure", &[], &["app"]),
            obs(vec![("app", done())]),
            ("Succeeded", "Completed", "False"),
        ),
        (
            "error",
            spec_pod("Never", &[], &["app"]),
            obs(vec![("app", failed())]),
            ("Failed", "Error", "False"),
        ),
        (
            "error onfailure restarts",
            spec_pod("OnFailure", &[], &["app"]),
            obs(vec![("app", failed())]),
            ("Running", "Error", "False"),
        ),
        (
            "oom killed",
            spec_pod("Always", &[], &["app"]),
            obs(vec![("app", Observed::terminated(Exit::OomKilled, ts(1), ts(2)))]),
            ("Running", "OOMKilled", "False"),
        ),
        (
            "signal without reason keeps runtime reason",
            spec_pod("Never", &[], &["app"]),
            obs(vec![("app", Observed::terminated(Exit::Signal(15), ts(1), ts(2)))]),
            ("Failed", "Error", "False"),
        ),
        (
            "one completed one running",
            spec_pod("Always", &[], &["app", "job"]),
            obs(vec![("app", running(true)), ("job", done())]),
            ("Running", "NotReady", "False"),
        ),
    ];
    for (name, pod, o, (phase, column, ready)) in cases {
        let got = run(pod, &o);
        assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), (phase, column, ready), "case {name}");
    }
}

#[test]
fn terminating_and_unknown() {
    let mut pod = spec_pod("Always", &[], &["app"]);
    pod.metadata.deletion_timestamp = Some(Time(ts(5)));
    let o = obs(vec![("app", running(true))]);
    assert_eq!(run(pod.clone(), &o).1, "Terminating");
    let mut st = pod_status(&pod, &o, ts(10), None);
    st.reason = Some("NodeLost".into());
    pod.status = Some(st);
    assert_eq!(status_column(&pod), "Unknown");
}

#[test]
fn column_without_reason_uses_exit_code_and_signal() {
    let mut pod = spec_pod("Never", &["init"], &["app"]);
    let mut st = pod_status(&pod, &obs(vec![("init", failed())]), ts(10), None);
    if let Some(t) = st
        .init_container_statuses
        .as_mut()
        .and_then(|v| v[0].state.as_mut())
        .and_then(|s| s.terminated.as_mut())
    {
        t.reason = None;
        t.exit_code = 3;
    }
    pod.status = Some(st);
    assert_eq!(status_column(&pod), "Init:ExitCode:3");

    let mut pod = spec_pod("Never", &[], &["app"]);
    let mut st = pod_status(
        &pod,
        &obs(vec![("app", Observed::terminated(Exit::Signal(9), ts(1), ts(2)))]),
        ts(10),
        None,
    );
    if let Some(t) =
        st.container_statuses.as_mut().and_then(|v| v[0].state.as_mut()).and_then(|s| s.terminated.as_mut())
    {
        t.reason = None;
    }
    pod.status = Some(st);
    assert_eq!(status_column(&pod), "Signal:9");
}

#[test]
fn conditions_and_statuses() {
    let pod = spec_pod("Always", &["a"], &["app"]);
    let o = obs(vec![("a", done()), ("app", crashloop())]);
    let st = pod_status(&pod, &o, ts(10), None);
    let conds: Vec<(String, String, Option<String>, Option<String>)> = st
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()))
        .collect();
    let s = |x: &str| Some(x.to_owned());
    assert_eq!(
        conds,
        vec![
            ("PodScheduled".into(), "True".into(), None, None),
            ("Initialized".into(), "True".into(), None, None),
            (
                "ContainersReady".into(),
                "False".into(),
                s("ContainersNotReady"),
                s("containers with unready status: [app]")
            ),
            (
                "Ready".into(),
                "False".into(),
                s("ContainersNotReady"),
                s("containers with unready status: [app]")
            ),
        ]
    );
    let app = &st.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(app.restart_count, 1);
    assert_eq!(app.image, "busybox");
    let last = app.last_state.as_ref().and_then(|s| s.terminated.as_ref()).expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(st.pod_ip.as_deref(), Some("10.244.0.10"));
    assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));

    // Transition times are kept while a condition keeps its status.
    let again = pod_status(&pod, &o, ts(99), Some(&st));
    let when = |s: &PodStatus| s.conditions.as_ref().map(|c| c[3].last_transition_time.clone());
    assert_eq!(when(&again), when(&st));
    let ready = pod_status(&pod, &obs(vec![("a", done()), ("app", running(true))]), ts(99), Some(&st));
    assert_eq!(when(&ready), Some(Some(Time(ts(99)))));
}

#[test]
fn initialized_message_lists_incomplete() {
    let pod = spec_pod("Always", &["a", "b"], &["app"]);
    let st = pod_status(&pod, &obs(vec![("a", done())]), ts(10), None);
    let init = st.conditions.as_ref().map(|c| c[1].clone()).expect("conditions");
    assert_eq!(init.status, "False");
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [b]"));
}

#[test]
fn sidecar_counts_when_started() {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0"},
        "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]}
    }))
    .expect("pod");
    let o = obs(vec![("proxy", running(true)), ("app", running(true))]);
    let st = pod_status(&pod, &o, ts(10), None);
    assert_eq!(st.phase.as_deref(), Some("Running"));
    pod.status = Some(st);
    assert_eq!(status_column(&pod), "Running");
}

#[test]
fn qos() {
    let spec = |res: serde_json::Value| -> PodSpec {
        serde_json::from_value(json!({"containers": [{"name": "a", "resources": res}]})).expect("spec")
    };
    assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
    assert_eq!(qos_class(&spec(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
    assert_eq!(qos_class(&spec(json!({"requests": {"cpu": "1"}}))), "Burstable");
}

fn arb_observed() -> impl Strategy<Value = Option<Observed>> {
    prop_oneof![
        Just(None),
        Just(Some(done())),
        Just(Some(failed())),
        Just(Some(crashloop())),
        Just(Some(running(true))),
        Just(Some(running(false))),
        Just(Some(Observed::waiting("ContainerCreating", None))),
        Just(Some(Observed::terminated(Exit::OomKilled, ts(1), ts(2)))),
    ]
}

proptest! {
    /// Any combination yields a known phase and a non-empty column; a failed init under Never fails the pod.
    #[test]
    fn total(policy in prop_oneof![Just("Always"), Just("OnFailure"), Just("Never")],
             a in arb_observed(), b in arb_observed(), app in arb_observed(), deleting in any::<bool>()) {
        let mut pod = spec_pod(policy, &["a", "b"], &["app"]);
        if deleting { pod.metadata.deletion_timestamp = Some(Time(ts(4))); }
        let mut entries = vec![];
        if let Some(o) = a.clone() { entries.push(("a", o)); }
        if let Some(o) = b { entries.push(("b", o)); }
        if let Some(o) = app { entries.push(("app", o)); }
        let (phase, column, _) = run(pod, &obs(entries));
        prop_assert!(["Pending", "Running", "Succeeded", "Failed"].contains(&phase.as_str()));
        prop_assert!(!column.is_empty());
        if policy == "Never" && a == Some(failed()) {
            prop_assert_eq!(phase, "Failed");
        }
    }
}
