//! Both CloudState field sets, both StatefulStore shapes, and the seed's example, load unchanged.

use stead_api::types::{ProxyMode, StoreKind};
use stead_api::{Manifest, load_paths, load_str, validate};

fn one(text: &str) -> Manifest {
    let loaded = load_str("test.yaml", text);
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    assert!(validate(&loaded.documents).iter().all(|p| !p.is_error()), "{:#?}", validate(&loaded.documents));
    loaded.documents.into_iter().next().expect("one document").manifest
}

#[test]
fn the_seed_example_loads_unchanged() {
    let seed = include_str!("../../../examples/shopping-cart/shopping-cart.yaml");
    let Manifest::StatefulService(svc) = one(seed) else { panic!("not a StatefulService") };
    assert_eq!(svc.metadata.name.as_deref(), Some("shopping-cart"));
    assert_eq!(svc.spec.containers.len(), 1);
    assert_eq!(svc.spec.containers[0].name(), None);
    assert_eq!(svc.spec.containers[0].image.as_deref(), Some("my-docker-hub-username/shopping-cart:latest"));
    assert_eq!(svc.spec.proxy_mode(), ProxyMode::Entity);
}

#[test]
fn scala_era_fields_load() {
    let text = r#"
apiVersion: cloudstate.io/v1alpha1
kind: StatefulService
metadata: {name: cart}
spec:
  serviceAccountName: cart
  datastore: {name: pg, config: {schema: carts}}
  autoscaling: {enabled: false, userFunctionTargetConcurrency: 1, requestTargetConcurrency: 45, targetConcurrencyWindow: 1m, scaleUpStableDeadline: 3m, scaleDownStableDeadline: 30s, requestRateThresholdFactor: 1.5, requestRateWindow: 6s}
  sidecarResources: {requests: {cpu: 400m, memory: 512Mi}, limits: {memory: 512Mi}}
  nodeSelector: {disk: ssd}
  tolerations: [{key: dedicated, operator: Equal, value: cart, effect: NoSchedule}]
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: ignored
    image: cart:1
    volumeMounts: [{name: scratch, mountPath: /tmp/scratch}]
"#;
    let Manifest::StatefulService(svc) = one(text) else { panic!() };
    assert_eq!(svc.spec.store_name(), Some("pg"));
    assert_eq!(svc.spec.autoscaling.as_ref().and_then(|a| a.request_rate_threshold_factor), Some(1.5));
    assert!(svc.spec.stateful_set_fields().is_empty());
}

#[test]
fn go_era_fields_load() {
    let text = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {name: cart}\nspec:\n  replicas: 3\n  storeConfig: {statefulStore: {name: pg}, database: carts, secret: {name: cart-db}}\n  containers: [{name: user-function, image: cart:1}]\n";
    let Manifest::StatefulService(svc) = one(text) else { panic!() };
    assert_eq!(svc.spec.replicas, Some(3));
    assert_eq!(svc.spec.store_name(), Some("pg"));
}

#[test]
fn both_store_shapes_load() {
    for (text, kind) in [
        ("spec: {type: InMemory}", StoreKind::InMemory),
        (
            "spec: {type: Postgres, deployment: Unmanaged, config: {service: db, port: 5432, credentialsFromSecret: {name: pg, usernameKey: u, passwordKey: p}}}",
            StoreKind::Postgres,
        ),
        ("spec: {inMemory: true}", StoreKind::InMemory),
        (
            "spec: {postgres: {host: db, credentials: {secret: {name: pg}}, ssl: {mode: verify-full}}}",
            StoreKind::Postgres,
        ),
        ("spec: {cassandra: {host: cass, port: 9042}}", StoreKind::Cassandra),
        ("spec: {spanner: {project: p, instance: i}}", StoreKind::Spanner),
        ("spec: {embedded: {storage: 1Gi}}", StoreKind::Embedded),
    ] {
        let doc = format!(
            "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata: {{name: s}}\n{text}\n"
        );
        let loaded = load_str("store.yaml", &doc);
        assert!(loaded.problems.is_empty(), "{text}: {:#?}", loaded.problems);
        let Manifest::StatefulStore(store) = &loaded.documents[0].manifest else { panic!() };
        assert_eq!(store.spec.kind(), Some(kind), "{text}");
    }
}

#[test]
fn every_example_is_valid() {
    // Each example is an application of its own (two may name a service alike), checked as a set.
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"));
    let mut documents = 0;
    for entry in std::fs::read_dir(root).expect("examples") {
        let dir = entry.expect("entry").path();
        let loaded = load_paths(std::slice::from_ref(&dir));
        assert!(loaded.problems.is_empty(), "{}: {:#?}", dir.display(), loaded.problems);
        let problems = validate(&loaded.documents);
        assert!(problems.is_empty(), "{}: {problems:#?}", dir.display());
        documents += loaded.documents.len();
    }
    assert!(documents >= 8, "{documents} documents");
}

#[test]
fn quantities_may_be_numbers() {
    let text = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {name: cart}\nspec:\n  sidecarResources: {limits: {cpu: 1, memory: 1.5Gi}}\n  containers: [{image: cart:1}]\n";
    let Manifest::StatefulService(svc) = one(text) else { panic!() };
    let limits = svc.spec.sidecar_resources.unwrap().limits.unwrap();
    assert_eq!(limits["cpu"].0, "1");
}
