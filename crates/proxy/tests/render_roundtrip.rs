//! What `stead-render` writes into the sidecar's environment is what the proxy's configuration
//! reads: render a StatefulService per store kind, resolve the sidecar's variables as a kubelet
//! would (literals, the downward API, Secrets), and read them with `ProxyConfig::from_env`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EnvVar};
use stead_api::{Manifest, load_str};
use stead_proxy::config::PostgresConfig;
use stead_proxy::{ProxyConfig, ProxyMode, StoreConfig};
use stead_render::{PORTS, PROXY_CONTAINER, RenderOptions, render_all};

/// The sidecar container of the one workload rendered from `yaml`.
fn sidecar(yaml: &str) -> Container {
    let loaded = load_str("roundtrip.yaml", yaml);
    assert!(!loaded.has_errors(), "{:#?}", loaded.problems);
    let manifests: Vec<Manifest> = loaded.documents.into_iter().map(|d| d.manifest).collect();
    let rendered = render_all(&manifests, &RenderOptions::default());
    let pod_spec = rendered
        .objects
        .iter()
        .find_map(|m| match m {
            Manifest::StatefulSet(s) => s.spec.as_ref().and_then(|s| s.template.spec.clone()),
            Manifest::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.spec.clone()),
            _ => None,
        })
        .expect("a workload");
    pod_spec.containers.into_iter().find(|c| c.name == PROXY_CONTAINER).expect("the sidecar")
}

/// The value a kubelet would give `var` in pod `cart-0` of namespace `shop`, with `secrets`.
fn resolve(var: &EnvVar, secrets: &BTreeMap<(&str, &str), &str>) -> String {
    if let Some(value) = &var.value {
        return value.clone();
    }
    let source =
        var.value_from.as_ref().unwrap_or_else(|| panic!("{} has neither value nor source", var.name));
    if let Some(field) = &source.field_ref {
        return match field.field_path.as_str() {
            "metadata.name" => "cart-0".into(),
            "metadata.namespace" => "shop".into(),
            other => panic!("{}: unexpected field {other}", var.name),
        };
    }
    if let Some(key) = &source.secret_key_ref {
        let found = secrets.get(&(key.name.as_str(), key.key.as_str()));
        return found
            .unwrap_or_else(|| panic!("{}: no secret {}/{}", var.name, key.name, key.key))
            .to_string();
    }
    panic!("{}: unsupported source {source:?}", var.name)
}

fn config_of(yaml: &str, secrets: &[((&str, &str), &str)]) -> ProxyConfig {
    let secrets: BTreeMap<_, _> = secrets.iter().copied().collect();
    let env: BTreeMap<String, String> = sidecar(yaml)
        .env
        .unwrap_or_default()
        .iter()
        .map(|var| (var.name.clone(), resolve(var, &secrets)))
        .collect();
    ProxyConfig::from_env(|name| env.get(name).cloned()).unwrap_or_else(|e| panic!("{e}: {env:#?}"))
}

const SERVICE: &str = "apiVersion: cloudstate.io/v1alpha1
kind: StatefulService
metadata: {name: cart, namespace: shop}
spec:
  containers: [{image: cart:1, ports: [{containerPort: 9000}]}]
";

fn assert_ports(config: &ProxyConfig) {
    assert_eq!(config.listen.port() as i32, PORTS.proxy);
    assert_eq!(config.health.port() as i32, PORTS.health);
    assert_eq!(config.metrics.port() as i32, PORTS.metrics);
}

#[test]
fn in_memory_store() {
    let yaml = format!(
        "{SERVICE}  storeConfig: {{statefulStore: {{name: mem}}}}\n---\napiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata: {{name: mem, namespace: shop}}\nspec: {{inMemory: true}}\n"
    );
    let config = config_of(&yaml, &[]);
    assert_eq!(config.mode, ProxyMode::Entity);
    assert_eq!(config.store, StoreConfig::Memory);
    assert_eq!(config.service_name, "cart");
    assert_ports(&config);
}

#[test]
fn embedded_store() {
    let yaml = format!(
        "{SERVICE}  storeConfig: {{statefulStore: {{name: disk}}}}\n---\napiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata: {{name: disk, namespace: shop}}\nspec: {{embedded: {{}}}}\n"
    );
    let config = config_of(&yaml, &[]);
    assert_eq!(config.store, StoreConfig::Embedded { path: PathBuf::from("/var/lib/stead/store.redb") });
}

#[test]
fn postgres_store_with_secret_credentials() {
    let yaml = format!(
        "{SERVICE}  storeConfig: {{statefulStore: {{name: pg}}, database: carts}}\n---\napiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata: {{name: pg, namespace: shop}}\nspec:\n  postgres:\n    host: db.shop\n    port: 5433\n    credentials: {{secret: {{name: pg-creds}}}}\n    ssl: {{mode: disable}}\n"
    );
    let config =
        config_of(&yaml, &[(("pg-creds", "username"), "alice"), (("pg-creds", "password"), "s3cret")]);
    assert_eq!(
        config.store,
        StoreConfig::Postgres(PostgresConfig {
            host: "db.shop".into(),
            port: 5433,
            database: "carts".into(),
            username: "alice".into(),
            password: "s3cret".into(),
            schema: None,
            pool_size: 16,
        })
    );
}

#[test]
fn passthrough_has_no_store() {
    let yaml = format!("{SERVICE}  proxy: {{mode: passthrough}}\n");
    let config = config_of(&yaml, &[]);
    assert_eq!(config.mode, ProxyMode::Passthrough);
    assert_eq!(config.store, StoreConfig::None);
    assert_eq!(config.user_function.port(), 9000);
}
