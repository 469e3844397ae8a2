use super::*;
use proptest::prelude::*;
use serde_json::json;

fn pod(container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web-1", "namespace": "shop", "uid": "u-1",
            "labels": {"app": "web", "apps.kubernetes.io/pod-index": "1"},
            "annotations": {"note": "a \"quoted\" value"}
        },
        "spec": {
            "nodeName": "stead-local", "serviceAccountName": "web-sa",
            "containers": [container, {"name": "other", "resources": {"limits": {"memory": "128Mi"}}}]
        }
    }))
    .expect("test pod")
}

fn lookup() -> MapLookup {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg", "namespace": "shop"},
        "data": {"MODE": "prod", "PORT": "8080", "bad=key": "x"}
    }))
    .expect("cm");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        // "hunter2" and "admin"
        "data": {"PASSWORD": "aHVudGVyMg==", "USER": "YWRtaW4="}
    }))
    .expect("secret");
    MapLookup::default().with_config_map(cm).with_secret(secret)
}

fn ctx() -> EnvContext {
    EnvContext {
        pod_ip: Some("10.244.0.11".into()),
        host_ip: Some("10.244.0.1".into()),
        node_allocatable_cpu: Some("2".into()),
        node_allocatable_memory: Some("24Gi".into()),
        service_env: BTreeMap::from([("WEB_SERVICE_HOST".into(), "10.96.0.10".into())]),
    }
}

fn resolve(container: serde_json::Value) -> Result<Vec<(String, String)>, EnvError> {
    let p = pod(container);
    let c = p.spec.as_ref().expect("spec").containers[0].clone();
    resolve_env(&p, &c, &ctx(), &lookup()).map(|e| e.vars().to_vec())
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn literal_values_and_order_dependent_references() {
    let got = resolve(json!({"name": "app", "env": [
        {"name": "A", "value": "x"},
        {"name": "B", "value": "$(A)-$(C)"},   // C is not defined yet: left as-is
        {"name": "C", "value": "c"},
        {"name": "D", "value": "$(C)$$(A)"},
        {"name": "E", "value": "$(WEB_SERVICE_HOST)"},
        {"name": "F"}
    ]}))
    .expect("env");
    assert_eq!(
        got,
        pairs(&[
            ("A", "x"),
            ("B", "x-$(C)"),
            ("C", "c"),
            ("D", "c$(A)"),
            ("E", "10.96.0.10"),
            ("F", ""),
            ("WEB_SERVICE_HOST", "10.96.0.10"),
        ])
    );
}

#[test]
fn env_from_with_prefix_and_override() {
    let got = resolve(json!({"name": "app",
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "db"}, "prefix": "DB_"}],
        "env": [{"name": "PORT", "value": "9090"}, {"name": "URL", "value": "$(DB_USER)@$(MODE):$(PORT)"}]
    }))
    .expect("env");
    assert_eq!(
        got,
        pairs(&[
            ("MODE", "prod"),
            ("PORT", "9090"),
            ("DB_PASSWORD", "hunter2"),
            ("DB_USER", "admin"),
            ("URL", "admin@prod:9090"),
            ("WEB_SERVICE_HOST", "10.96.0.10"),
        ])
    );
}

#[test]
fn field_refs() {
    let refs = [
        ("metadata.name", "web-1"),
        ("metadata.namespace", "shop"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['apps.kubernetes.io/pod-index']", "1"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['note']", "a \"quoted\" value"),
        ("metadata.labels", "app=\"web\"\napps.kubernetes.io/pod-index=\"1\""),
        ("metadata.annotations", "note=\"a \\\"quoted\\\" value\""),
        ("status.podIP", "10.244.0.11"),
        ("status.hostIP", "10.244.0.1"),
        ("spec.nodeName", "stead-local"),
        ("spec.serviceAccountName", "web-sa"),
    ];
    for (path, want) in refs {
        let got = resolve(json!({"name": "app", "env": [
            {"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}
        ]}))
        .expect(path);
        assert_eq!(got[0], ("V".to_string(), want.to_string()), "path {path}");
    }
}

#[test]
fn resource_field_refs() {
    let container = |res: &str, divisor: Option<&str>, target: Option<&str>| {
        let mut sel = json!({"resource": res});
        if let Some(d) = divisor {
            sel["divisor"] = json!(d);
        }
        if let Some(t) = target {
            sel["containerName"] = json!(t);
        }
        json!({"name": "app",
            "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}},
            "env": [{"name": "V", "valueFrom": {"resourceFieldRef": sel}}]})
    };
    let cases = [
        ("limits.cpu", None, None, "2"),
        ("limits.cpu", Some("1m"), None, "1500"),
        ("requests.cpu", Some("1m"), None, "250"),
        ("requests.cpu", None, None, "1"),
        ("limits.memory", None, None, "67108864"),
        ("limits.memory", Some("1Mi"), None, "64"),
        ("limits.memory", Some("1Mi"), Some("other"), "128"),
        ("requests.memory", None, None, "0"),
        ("limits.ephemeral-storage", None, None, "0"),
    ];
    for (res, div, target, want) in cases {
        let got = resolve(container(res, div, target)).expect(res);
        assert_eq!(got[0].1, want, "{res} / {div:?} / {target:?}");
    }
    // Unset limits fall back to node allocatable.
    let got = resolve(json!({"name": "app", "env": [
        {"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Gi"}}}
    ]}))
    .expect("allocatable");
    assert_eq!(got[0].1, "24");
}

#[test]
fn key_refs_and_optional() {
    let got = resolve(json!({"name": "app", "env": [
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}},
        {"name": "O1", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": true}}},
        {"name": "O2", "valueFrom": {"secretKeyRef": {"name": "db", "key": "nope", "optional": true}}}
    ], "envFrom": [{"configMapRef": {"name": "absent", "optional": true}}]}))
    .expect("env");
    assert_eq!(got, pairs(&[("M", "prod"), ("P", "hunter2"), ("WEB_SERVICE_HOST", "10.96.0.10")]));
}

#[test]
fn errors_name_container_variable_and_object() {
    let cases = [
        (
            json!({"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}),
            "container \"app\": env var \"X\": configmap \"shop/nope\" not found",
        ),
        (
            json!({"name": "app", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "TOKEN"}}}]}),
            "container \"app\": env var \"X\": key \"TOKEN\" not found in secret \"shop/db\"",
        ),
        (
            json!({"name": "app", "envFrom": [{"secretRef": {"name": "gone"}}]}),
            "container \"app\": envFrom[0]: secret \"shop/gone\" not found",
        ),
        (
            json!({"name": "app", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
            "container \"app\": env var \"X\": unsupported fieldRef path \"spec.bogus\"",
        ),
        (
            json!({"name": "app", "env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}),
            "container \"app\": env var \"X\": unsupported resourceFieldRef resource \"limits.gpu\"",
        ),
        (
            json!({"name": "app", "env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "containerName": "ghost"}}}]}),
            "container \"app\": env var \"X\": resourceFieldRef for container \"ghost\", which is not in the pod",
        ),
    ];
    for (container, want) in cases {
        assert_eq!(resolve(container).expect_err(want).to_string(), want);
    }
}

#[test]
fn lookup_failure_is_reported() {
    struct Broken;
    impl ObjectLookup for Broken {
        fn config_map(&self, _: &str, _: &str) -> Result<Option<ConfigMap>, LookupError> {
            Err(LookupError("store unavailable".into()))
        }
        fn secret(&self, _: &str, _: &str) -> Result<Option<Secret>, LookupError> {
            Err(LookupError("store unavailable".into()))
        }
    }
    let p = pod(json!({"name": "app", "envFrom": [{"configMapRef": {"name": "cfg", "optional": true}}]}));
    let c = p.spec.as_ref().expect("spec").containers[0].clone();
    let err = resolve_env(&p, &c, &ctx(), &Broken).expect_err("lookup error");
    assert_eq!(
        err.to_string(),
        "container \"app\": envFrom[0]: looking up configmap \"shop/cfg\": store unavailable"
    );
}

proptest! {
    /// Env entries override envFrom entries, later entries override earlier ones, and every declared
    /// literal variable ends up set exactly once.
    #[test]
    fn last_write_wins(names in proptest::collection::vec("[A-C]", 1..8), values in proptest::collection::vec("[a-z]{0,3}", 8)) {
        let env: Vec<_> = names.iter().zip(&values).map(|(n, v)| json!({"name": n, "value": v})).collect();
        let got = resolve(json!({"name": "app", "env": env})).expect("env");
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        for (n, v) in names.iter().zip(&values) {
            want.insert(n.clone(), v.clone());
        }
        for (n, v) in &want {
            prop_assert_eq!(got.iter().filter(|(k, _)| k == n).count(), 1);
            prop_assert_eq!(got.iter().find(|(k, _)| k == n).map(|(_, v)| v), Some(v));
        }
    }
}
