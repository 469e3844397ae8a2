use super::*;
use crate::gc;

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

fn owned(kind: &str, name: &str, owner: &Value, block: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": kind,
        "metadata": {"name": name, "ownerReferences": [{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": block,
        }]},
        "spec": {}
    })
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new(kind, "default", name)
}

#[test]
fn create_assigns_identity_and_versions() {
    let store = Store::in_memory();
    let a = store.create(cm("a")).unwrap();
    let b = store.create(cm("b")).unwrap();
    assert_eq!(a["metadata"]["namespace"], "default");
    assert_eq!(a["metadata"]["generation"], 1);
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);
    assert_eq!(a["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert_eq!(a["metadata"]["resourceVersion"], "1");
    assert_eq!(b["metadata"]["resourceVersion"], "2");
    assert!(matches!(store.create(cm("a")), Err(StoreError::AlreadyExists { .. })));
}

#[test]
fn stale_resource_version_is_a_conflict() {
    let store = Store::in_memory();
    let a = store.create(cm("a")).unwrap();
    let mut first = (*a).clone();
    first["data"]["a"] = json!("2");
    store.update(first.clone()).unwrap();
    first["data"]["a"] = json!("3");
    let err = store.update(first).unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("resourceVersion 1 is not the current 2"), "{err}");
}

#[test]
fn generation_follows_spec_and_status_is_separate() {
    let store = Store::in_memory();
    let svc =
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": []}});
    let s = store.create(svc).unwrap();
    let mut labelled = (*s).clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    labelled["status"] = json!({"ignored": true});
    let s = store.update(labelled).unwrap();
    assert_eq!(s["metadata"]["generation"], 1, "metadata changes keep the generation");
    assert!(s.get("status").is_none(), "update does not write status");
    let mut with_status = (*s).clone();
    with_status["status"] = json!({"loadBalancer": {}});
    with_status["spec"] = json!({"ports": [{"port": 1}]});
    let s = store.update_status(with_status).unwrap();
    assert_eq!(s["status"], json!({"loadBalancer": {}}));
    assert_eq!(s["spec"], json!({"ports": []}), "update_status does not write spec");
    let mut respec = (*s).clone();
    respec["spec"] = json!({"ports": [{"port": 2}]});
    let s = store.update(respec).unwrap();
    assert_eq!(s["metadata"]["generation"], 2);
    assert_eq!(s["status"], json!({"loadBalancer": {}}));
}

#[test]
fn pods_are_deleted_gracefully_and_removed_by_the_runtime() {
    let store = Store::in_memory();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": []}});
    store.create(pod).unwrap();
    let marked = store.delete(&key(Kind::Pod, "p"), DeleteOptions::default()).unwrap().unwrap();
    assert!(is_deleting(&marked));
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 5);
    store.remove(&key(Kind::Pod, "p")).unwrap();
    assert!(store.get(&key(Kind::Pod, "p")).is_none());
    // --force removes at once.
    store.create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}, "spec": {}})).unwrap();
    let gone =
        store.delete(&key(Kind::Pod, "q"), DeleteOptions { force: true, ..Default::default() }).unwrap();
    assert!(gone.is_none());
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let store = Store::in_memory();
    let mut object = cm("f");
    object["metadata"]["finalizers"] = json!(["example.com/hold"]);
    store.create(object).unwrap();
    let marked = store.delete(&key(Kind::ConfigMap, "f"), DeleteOptions::default()).unwrap().unwrap();
    assert!(is_deleting(&marked));
    let mut released = (*marked).clone();
    released["metadata"]["finalizers"] = json!([]);
    store.update(released).unwrap();
    assert!(store.get(&key(Kind::ConfigMap, "f")).is_none());
}

#[test]
fn background_collection_deletes_dependents_of_gone_owners() {
    let store = Store::in_memory();
    let owner = store.create(cm("owner")).unwrap();
    store.create(owned("ConfigMap", "child", &owner, false)).unwrap();
    store.create(cm("bystander")).unwrap();
    store.delete(&key(Kind::ConfigMap, "owner"), DeleteOptions::default()).unwrap();
    assert!(store.get(&key(Kind::ConfigMap, "child")).is_some());
    gc::collect(&store).unwrap();
    assert!(store.get(&key(Kind::ConfigMap, "child")).is_none());
    assert!(store.get(&key(Kind::ConfigMap, "bystander")).is_some());
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents() {
    let store = Store::in_memory();
    let owner = store.create(cm("owner")).unwrap();
    store.create(owned("ConfigMap", "child", &owner, true)).unwrap();
    let opts = DeleteOptions { propagation: Propagation::Foreground, ..Default::default() };
    store.delete(&key(Kind::ConfigMap, "owner"), opts).unwrap();
    assert!(is_deleting(&store.get(&key(Kind::ConfigMap, "owner")).unwrap()));
    gc::collect(&store).unwrap();
    assert!(store.get(&key(Kind::ConfigMap, "child")).is_none(), "dependent deleted first");
    assert!(store.get(&key(Kind::ConfigMap, "owner")).is_some(), "owner waits one pass");
    gc::collect(&store).unwrap();
    assert!(store.get(&key(Kind::ConfigMap, "owner")).is_none());
}

#[test]
fn orphan_deletion_releases_dependents() {
    let store = Store::in_memory();
    let owner = store.create(cm("owner")).unwrap();
    store.create(owned("ConfigMap", "child", &owner, true)).unwrap();
    let opts = DeleteOptions { propagation: Propagation::Orphan, ..Default::default() };
    store.delete(&key(Kind::ConfigMap, "owner"), opts).unwrap();
    gc::collect(&store).unwrap();
    gc::collect(&store).unwrap();
    assert!(store.get(&key(Kind::ConfigMap, "owner")).is_none());
    let child = store.get(&key(Kind::ConfigMap, "child")).unwrap();
    assert_eq!(child["metadata"]["ownerReferences"], json!([]));
}

#[test]
fn watchers_see_every_change_in_order() {
    let store = Store::in_memory();
    let mut rx = store.watch();
    store.create(cm("w")).unwrap();
    store.delete(&key(Kind::ConfigMap, "w"), DeleteOptions::default()).unwrap();
    let a = rx.try_recv().unwrap();
    let b = rx.try_recv().unwrap();
    assert_eq!((a.kind, b.kind), (EventType::Added, EventType::Deleted));
    assert_eq!(b.object["metadata"]["resourceVersion"], "2");
}

#[test]
fn the_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let uid = {
        let store = Store::open(&path).unwrap();
        store.create(cm("kept")).unwrap();
        store.create(cm("gone")).unwrap();
        store.delete(&key(Kind::ConfigMap, "gone"), DeleteOptions::default()).unwrap();
        store.get(&key(Kind::ConfigMap, "kept")).unwrap()["metadata"]["uid"].clone()
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get(&key(Kind::ConfigMap, "kept")).unwrap()["metadata"]["uid"], uid);
    assert!(store.get(&key(Kind::ConfigMap, "gone")).is_none());
    assert_eq!(store.resource_version(), 3);
    let next = store.create(cm("after")).unwrap();
    assert_eq!(next["metadata"]["resourceVersion"], "4", "the counter never goes back");
}

#[test]
fn the_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let fresh = dir.path().join("objects.redb");
    drop(Store::open(&fresh).unwrap());
    assert_eq!(mode(&fresh), 0o600, "created 0600");
    // A file an earlier version left world-readable is tightened, and its objects still load.
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o644)).unwrap();
    {
        let store = Store::open(&fresh).unwrap();
        store.create(cm("kept")).unwrap();
    }
    assert_eq!(mode(&fresh), 0o600, "tightened at open");
    assert!(Store::open(&fresh).unwrap().get(&key(Kind::ConfigMap, "kept")).is_some());
}

#[test]
fn generate_name_gets_a_suffix() {
    let store = Store::in_memory();
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}});
    let a = store.create(object.clone()).unwrap();
    let b = store.create(object).unwrap();
    let name = a["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_ne!(a["metadata"]["name"], b["metadata"]["name"]);
}

#[test]
fn bad_objects_are_errors_not_panics() {
    let store = Store::in_memory();
    for bad in
        [json!(null), json!([]), json!({"kind": "Pod"}), json!({"kind": "Nope", "metadata": {"name": "x"}})]
    {
        assert!(store.create(bad.clone()).is_err(), "{bad}");
        assert!(store.update(bad).is_err());
    }
}
