//! Render: golden snapshots of every example, and the properties the operator and the local engine
//! rely on (deterministic output, objects that survive a serde round trip).

use proptest::prelude::*;
use stead_api::{Manifest, load_paths, load_str};
use stead_render::{Format, RenderOptions, install_manifests, render_all, to_string};

fn examples() -> Vec<(String, Vec<Manifest>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut dirs: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let loaded = load_paths(std::slice::from_ref(&dir));
            assert!(!loaded.has_errors(), "{}: {:#?}", dir.display(), loaded.problems);
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            (name, loaded.documents.into_iter().map(|d| d.manifest).collect())
        })
        .collect()
}

fn yaml(manifests: &[Manifest]) -> String {
    let rendered = render_all(manifests, &RenderOptions::default());
    let objects: Vec<_> = rendered.objects.iter().map(|m| m.to_json().unwrap()).collect();
    to_string(&objects, Format::Yaml).unwrap()
}

#[test]
fn examples_render_as_snapshotted() {
    for (name, manifests) in examples() {
        insta::assert_snapshot!(name.clone(), yaml(&manifests));
    }
}

#[test]
fn install_manifests_render_as_snapshotted() {
    let objects = install_manifests(&RenderOptions { proxy_image: "stead:test".into() });
    insta::assert_snapshot!("install", to_string(&objects, Format::Yaml).unwrap());
}

#[test]
fn a_missing_store_is_a_warning_and_no_store() {
    let loaded = load_str(
        "x.yaml",
        "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {name: cart}\nspec:\n  datastore: {name: nowhere}\n  containers: [{image: cart:1}]\n",
    );
    let manifests: Vec<_> = loaded.documents.into_iter().map(|d| d.manifest).collect();
    let rendered = render_all(&manifests, &RenderOptions::default());
    assert_eq!(
        rendered.warnings,
        ["statefulservice/cart: StatefulStore \"nowhere\" not found; the proxy starts without a store"]
    );
    let text = yaml(&manifests);
    assert!(text.contains("name: STEAD_STORE\n          value: none"), "{text}");
}

#[test]
fn owner_references_need_a_uid() {
    let text = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {name: cart, namespace: shop, uid: 1f0e-42}\nspec:\n  containers: [{image: cart:1}]\n";
    let manifests: Vec<_> = load_str("x.yaml", text).documents.into_iter().map(|d| d.manifest).collect();
    let rendered = render_all(&manifests, &RenderOptions::default());
    for object in &rendered.objects {
        let owner = &object.metadata().owner_references.as_ref().expect("an owner reference")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("StatefulService", "cart", "1f0e-42")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(object.metadata().namespace.as_deref(), Some("shop"));
    }
}

#[test]
fn credentials_are_never_inlined() {
    for (name, manifests) in examples() {
        let text = yaml(&manifests);
        for line in text
            .lines()
            .filter(|l| l.contains("name: POSTGRES_PASSWORD") || l.contains("name: POSTGRES_USERNAME"))
        {
            let at = text.find(line).unwrap();
            let next = text[at + line.len()..].lines().nth(1).unwrap_or_default();
            assert!(next.trim_start().starts_with("valueFrom:"), "{name}: {line} is followed by {next}");
        }
    }
}

// === properties ===

fn service_yaml() -> impl Strategy<Value = String> {
    let name = "[a-z][a-z0-9]{0,10}";
    let port = 1024i32..8000;
    let replicas = 0i32..5;
    let mode = prop_oneof![Just("entity"), Just("passthrough"), Just("none")];
    let stateful = any::<bool>();
    let whitelist =
        proptest::option::of(proptest::collection::vec(("[a-z]{1,6}|\\*", "[a-z]{1,6}|\\*"), 0..3));
    (name, port, replicas, mode, stateful, whitelist).prop_map(|(name, port, replicas, mode, stateful, whitelist)| {
        let mut text = format!(
            "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata: {{name: \"{name}\"}}\nspec:\n  replicas: {replicas}\n  proxy: {{mode: {mode}}}\n  containers:\n  - image: app:1\n    ports: [{{containerPort: {port}}}]\n"
        );
        if stateful {
            text.push_str("  serviceName: peers\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n");
        }
        if let Some(list) = whitelist {
            text.push_str(if list.is_empty() { "  whitelists: []\n" } else { "  whitelists:\n" });
            for (project, service) in list {
                text.push_str(&format!("  - {{projectId: \"{project}\", service: \"{service}\"}}\n"));
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn render_is_deterministic_and_round_trips(text in service_yaml()) {
        let loaded = load_str("p.yaml", &text);
        prop_assert!(!loaded.has_errors(), "{:#?}", loaded.problems);
        let manifests: Vec<_> = loaded.documents.into_iter().map(|d| d.manifest).collect();
        let first = render_all(&manifests, &RenderOptions::default());
        let second = render_all(&manifests, &RenderOptions::default());
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(yaml(&manifests), yaml(&manifests));
        for object in &first.objects {
            // Every rendered object reads back as itself, from JSON and from YAML.
            let json = object.to_json().unwrap();
            let text = to_string(std::slice::from_ref(&json), Format::Yaml).unwrap();
            let back = load_str("rendered.yaml", &text);
            prop_assert!(back.problems.is_empty(), "{}: {:#?}", text, back.problems);
            prop_assert_eq!(&back.documents[0].manifest, object);
        }
    }
}
