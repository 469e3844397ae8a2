use super::*;
use crate::store::DeleteOptions;

fn pod(store: &Store, name: &str) -> Arc<Value> {
    store
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        }))
        .unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn events(store: &Store) -> Vec<Arc<Value>> {
    store.list(Kind::Event, None)
}

#[test]
fn a_repeat_bumps_count_and_last_timestamp() {
    let store = Store::in_memory();
    let p = pod(&store, "web-0");
    let first = try_record(&store, &p, None, Type::Warning, "BackOff", "back-off", at(0)).unwrap();
    let again = try_record(&store, &p, None, Type::Warning, "BackOff", "back-off", at(30)).unwrap();
    assert_eq!(events(&store).len(), 1);
    assert_eq!(meta_str(&first, "name"), meta_str(&again, "name"));
    assert!(meta_str(&again, "name").unwrap().starts_with("web-0."));
    assert_eq!(again["count"], 2);
    assert_eq!(again["firstTimestamp"], first["firstTimestamp"]);
    assert_eq!(last_seen(&again), Some(at(30).as_second()));
    assert_eq!(again["involvedObject"]["uid"], p["metadata"]["uid"]);
    assert_eq!(again["type"], "Warning");

    // Another reason, message or container is another event.
    try_record(&store, &p, None, Type::Normal, "BackOff", "back-off", at(31)).unwrap();
    try_record(&store, &p, None, Type::Warning, "BackOff", "other", at(31)).unwrap();
    try_record(&store, &p, Some("spec.containers{app}"), Type::Warning, "BackOff", "back-off", at(31))
        .unwrap();
    assert_eq!(events(&store).len(), 4);
    // A new pod with the same name (another uid) does not bump the old pod's events.
    store
        .delete(
            &ObjectKey::new(Kind::Pod, "default", "web-0"),
            DeleteOptions { force: true, ..Default::default() },
        )
        .unwrap();
    let p2 = pod(&store, "web-0");
    let fresh = try_record(&store, &p2, None, Type::Warning, "BackOff", "back-off", at(40)).unwrap();
    assert_eq!(fresh["count"], 1);
    assert_eq!(about(&store, "default", "Pod", "web-0", meta_str(&p2, "uid")).len(), 1);
}

#[test]
fn a_namespace_keeps_only_the_newest_events() {
    let store = Store::in_memory();
    let p = pod(&store, "web-0");
    for i in 0..12 {
        try_record(&store, &p, None, Type::Normal, "Started", &format!("message {i}"), at(i)).unwrap();
    }
    let other = store
        .create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "other"}}))
        .unwrap();
    try_record(&store, &other, None, Type::Normal, "Started", "elsewhere", at(0)).unwrap();
    assert_eq!(prune(&store, at(12), 5, TTL, None).unwrap(), 7);
    let mut kept: Vec<String> = store
        .list(Kind::Event, Some("default"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, ["message 10", "message 11", "message 7", "message 8", "message 9"]);
    assert_eq!(store.list(Kind::Event, Some("other")).len(), 1, "other namespaces keep theirs");
}

#[test]
fn events_expire_after_the_ttl_since_they_last_happened() {
    let store = Store::in_memory();
    let p = pod(&store, "web-0");
    try_record(&store, &p, None, Type::Normal, "Old", "old", at(0)).unwrap();
    try_record(&store, &p, None, Type::Normal, "Bumped", "bumped", at(0)).unwrap();
    try_record(&store, &p, None, Type::Normal, "Bumped", "bumped", at(3000)).unwrap();
    let hour = TTL.as_secs() as i64;
    assert_eq!(prune(&store, at(hour - 1), MAX_PER_NAMESPACE, TTL, None).unwrap(), 0);
    assert_eq!(prune(&store, at(hour + 1), MAX_PER_NAMESPACE, TTL, None).unwrap(), 1);
    let left = events(&store);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["reason"], "Bumped");
    // Recording prunes its namespace as it goes.
    try_record(&store, &p, None, Type::Normal, "Late", "late", at(3000 + hour + 1)).unwrap();
    let left = events(&store);
    let reasons: Vec<&str> = left.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["Late"]);
}

#[test]
fn container_transitions_become_kubelet_events() {
    let store = Store::in_memory();
    let p = pod(&store, "web-0");
    let running = |started: &str, ready: bool| {
        json!({"containerStatuses": [{"name": "app", "ready": ready, "restartCount": 0,
            "state": {"running": {"startedAt": started}}}]})
    };
    pod_status_changed(&store, &p, &running("2026-01-01T00:00:00Z", false));
    let reasons = |store: &Store| {
        let mut e = store.list(Kind::Event, None);
        sort(&mut e);
        e.iter()
            .map(|e| format!("{} {}", e["reason"].as_str().unwrap(), e["message"].as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(reasons(&store), ["Created Created container: app", "Started Started container app"]);
    let mut with = (*p).clone();
    with["status"] = running("2026-01-01T00:00:00Z", true);
    pod_status_changed(&store, &with, &running("2026-01-01T00:00:00Z", false));
    assert!(
        !reasons(&store).iter().any(|r| r.starts_with("Unhealthy")),
        "probe failures come from the runtime, with their messages"
    );
    with["status"] = running("2026-01-01T00:00:00Z", false);
    let backoff = json!({"containerStatuses": [{"name": "app", "ready": false, "restartCount": 1,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]});
    pod_status_changed(&store, &with, &backoff);
    let all = reasons(&store);
    assert!(
        all.iter()
            .any(|r| r.starts_with("BackOff Back-off restarting failed container app in pod web-0_default(")),
        "{all:?}"
    );
    // Still in back-off: no new event.
    with["status"] = backoff.clone();
    let n = store.list(Kind::Event, None).len();
    pod_status_changed(&store, &with, &backoff);
    assert_eq!(store.list(Kind::Event, None).len(), n);
    // The restart is a new instance: Created and Started again (bumped).
    pod_status_changed(&store, &with, &running("2026-01-01T00:01:00Z", false));
    let started = store.list(Kind::Event, None).into_iter().find(|e| e["reason"] == "Started").unwrap();
    assert_eq!(started["count"], 2);
    assert_eq!(started["involvedObject"]["fieldPath"], "spec.containers{app}");
}

#[test]
fn controllers_messages_read_as_kubernetes_ones() {
    let store = Store::in_memory();
    let sts = store
        .create(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"}}))
        .unwrap();
    let child =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}});
    created(&store, &sts, &child, store.create(child.clone())).unwrap();
    let failed = created(
        &store,
        &sts,
        &child,
        Err::<Arc<Value>, _>(StoreError::Invalid { object: "pods/web-0".into(), reason: "bad".into() }),
    );
    assert!(failed.is_err());
    deleted(&store, &sts, "web-0", 1);
    deleted(&store, &sts, "web-1", 0);
    let messages: Vec<String> = about(&store, "default", "StatefulSet", "web", None)
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["type"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            "Normal SuccessfulCreate create Pod web-0 in StatefulSet web successful",
            "Warning FailedCreate create Pod web-0 in StatefulSet web failed error: invalid object pods/web-0: bad",
            "Normal SuccessfulDelete delete Pod web-0 in StatefulSet web successful",
        ]
    );
    // Conflicts are the next pass's business, not a failure to report.
    let conflict = StoreError::AlreadyExists { key: ObjectKey::new(Kind::Pod, "default", "web-0") };
    let _ = created(&store, &sts, &child, Err::<Arc<Value>, _>(conflict));
    assert_eq!(about(&store, "default", "StatefulSet", "web", None).len(), 3);
    // An object without a name cannot be recorded about.
    let nameless = json!({"kind": "Pod", "metadata": {"generateName": "x-"}});
    assert!(matches!(
        try_record(&store, &nameless, None, Type::Normal, "X", "y", at(0)),
        Err(EventError::NoObject { .. })
    ));
}

#[test]
fn a_failure_met_on_every_pass_bumps_at_most_every_interval() {
    let store = Store::in_memory();
    let p = pod(&store, "web-0");
    let bump = |s: i64| {
        write(&store, &p, None, Type::Warning, "FailedCreate", "x", at(s), Some(REPEAT_INTERVAL)).unwrap()
    };
    bump(0);
    let rv = store.resource_version();
    assert_eq!(bump(1)["count"], 1);
    assert_eq!(store.resource_version(), rv, "no write within the interval");
    assert_eq!(bump(10)["count"], 2);
}

#[test]
fn the_runtimes_container_events_are_recorded_for_the_pod_that_ran() {
    let store = Store::in_memory();
    let p = pod(&store, "web-0");
    let event = |uid: &str, message: &str| crate::runtime::ContainerEvent {
        namespace: "default".into(),
        name: "web-0".into(),
        uid: uid.into(),
        container: "app".into(),
        warning: true,
        reason: "Unhealthy".into(),
        message: message.into(),
    };
    let uid = meta_str(&p, "uid").unwrap().to_string();
    container_event(&store, &event(&uid, "Readiness probe failed: missing /mnt/ready"));
    container_event(&store, &event(&uid, "Readiness probe failed: missing /mnt/ready"));
    container_event(&store, &event("an-older-pod", "Readiness probe failed: from before"));
    let all = events(&store);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["type"], "Warning");
    assert_eq!(all[0]["message"], "Readiness probe failed: missing /mnt/ready");
    assert_eq!(all[0]["count"], 2);
    assert_eq!(all[0]["involvedObject"]["fieldPath"], "spec.containers{app}");
}
