//! The sidecar's store settings, from the StatefulStore and the service's per-service settings.
//!
//! Credentials only ever reach the pod through `secretKeyRef`; a literal never does.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};
use stead_api::types::{StatefulService, StatefulStore, StoreKind};
use stead_sidecar_env as vars;

/// Where the embedded store's volume is mounted in the sidecar.
pub const EMBEDDED_MOUNT_PATH: &str = "/var/lib/stead";
/// The claim template (and pod volume) of the embedded store.
pub const EMBEDDED_VOLUME: &str = "stead-store";

pub fn env(svc: &StatefulService, store: Option<&StatefulStore>) -> Vec<EnvVar> {
    let Some(store) = store else {
        return vec![literal(vars::STORE, "none")];
    };
    let Some(kind) = store.spec.kind() else {
        return vec![literal(vars::STORE, "none")];
    };
    let mut env = vec![literal(vars::STORE, kind.as_str())];
    let spec = &store.spec;
    let per_service = svc.spec.store_config.as_ref();
    let datastore_config = svc.spec.datastore.as_ref().and_then(|d| d.config.as_ref());
    let service_db = per_service
        .and_then(|c| c.database.clone())
        .or_else(|| datastore_config.and_then(|c| c.database.clone()));
    // A per-service Secret (Go era) overrides the store's.
    let override_secret = per_service.and_then(|c| c.secret.as_ref()).map(|s| s.name.clone());
    match kind {
        StoreKind::InMemory => {}
        StoreKind::Embedded => {
            env.push(literal(vars::STORE_PATH, &format!("{EMBEDDED_MOUNT_PATH}/store.redb")));
        }
        StoreKind::Postgres => {
            if let Some(pg) = &spec.postgres {
                let creds = pg.credentials.as_ref();
                let secret =
                    override_secret.or_else(|| creds.and_then(|c| c.secret.as_ref()).map(|s| s.name.clone()));
                env.push(literal(vars::POSTGRES_SERVICE, pg.host.as_deref().unwrap_or_default()));
                env.push(literal(vars::POSTGRES_PORT, &pg.port.unwrap_or(5432).to_string()));
                database(
                    &mut env,
                    vars::POSTGRES_DATABASE,
                    service_db,
                    secret.as_deref(),
                    creds.and_then(|c| c.database_key.as_deref()),
                );
                if let Some(secret) = &secret {
                    env.push(secret_ref(
                        vars::POSTGRES_USERNAME,
                        secret,
                        creds.and_then(|c| c.username_key.as_deref()).unwrap_or("username"),
                    ));
                    env.push(secret_ref(
                        vars::POSTGRES_PASSWORD,
                        secret,
                        creds.and_then(|c| c.password_key.as_deref()).unwrap_or("password"),
                    ));
                }
                if let Some(mode) = pg.ssl.as_ref().and_then(|s| s.mode) {
                    env.push(literal(vars::POSTGRES_SSLMODE, mode.as_str()));
                }
            } else if let Some(config) = &spec.config {
                let from_secret = config.credentials_from_secret.as_ref();
                let secret = override_secret.or_else(|| from_secret.map(|s| s.name.clone()));
                let literal_creds = config.credentials.as_ref();
                env.push(literal(vars::POSTGRES_SERVICE, config.service.as_deref().unwrap_or_default()));
                env.push(literal(vars::POSTGRES_PORT, &config.port.unwrap_or(5432).to_string()));
                let db = service_db.or_else(|| literal_creds.and_then(|c| c.database.clone()));
                database(
                    &mut env,
                    vars::POSTGRES_DATABASE,
                    db,
                    secret.as_deref(),
                    from_secret.and_then(|s| s.database_key.as_deref()),
                );
                let schema = datastore_config
                    .and_then(|c| c.schema.clone())
                    .or_else(|| literal_creds.and_then(|c| c.schema.clone()));
                if let Some(schema) = schema {
                    env.push(literal(vars::POSTGRES_SCHEMA, &schema));
                }
                if let Some(secret) = &secret {
                    env.push(secret_ref(
                        vars::POSTGRES_USERNAME,
                        secret,
                        from_secret.and_then(|s| s.username_key.as_deref()).unwrap_or("username"),
                    ));
                    env.push(secret_ref(
                        vars::POSTGRES_PASSWORD,
                        secret,
                        from_secret.and_then(|s| s.password_key.as_deref()).unwrap_or("password"),
                    ));
                }
            }
        }
        StoreKind::Cassandra => {
            let (host, port, creds_secret, user_key, pass_key) = match (&spec.cassandra, &spec.config) {
                (Some(c), _) => {
                    let creds = c.credentials.as_ref();
                    (
                        c.host.clone(),
                        c.port,
                        creds.and_then(|c| c.secret.as_ref()).map(|s| s.name.clone()),
                        creds.and_then(|c| c.username_key.clone()),
                        creds.and_then(|c| c.password_key.clone()),
                    )
                }
                (None, Some(config)) => {
                    let s = config.credentials_from_secret.as_ref();
                    (
                        config.service.clone(),
                        config.port,
                        s.map(|s| s.name.clone()),
                        s.and_then(|s| s.username_key.clone()),
                        s.and_then(|s| s.password_key.clone()),
                    )
                }
                (None, None) => (None, None, None, None, None),
            };
            env.push(literal("CASSANDRA_CONTACT_POINTS", host.as_deref().unwrap_or_default()));
            env.push(literal("CASSANDRA_PORT", &port.unwrap_or(9042).to_string()));
            let keyspace = datastore_config
                .and_then(|c| c.keyspace.clone())
                .or_else(|| per_service.and_then(|c| c.database.clone()))
                .unwrap_or_else(|| svc.metadata.name.clone().unwrap_or_default().replace('-', "_"));
            env.push(literal("CASSANDRA_KEYSPACE", &keyspace));
            if let Some(secret) = override_secret.or(creds_secret) {
                env.push(secret_ref(
                    "CASSANDRA_USERNAME",
                    &secret,
                    user_key.as_deref().unwrap_or("username"),
                ));
                env.push(secret_ref(
                    "CASSANDRA_PASSWORD",
                    &secret,
                    pass_key.as_deref().unwrap_or("password"),
                ));
            }
        }
        StoreKind::Spanner => {
            if let Some(s) = &spec.spanner {
                env.push(literal("GCP_PROJECT", s.project.as_deref().unwrap_or_default()));
                env.push(literal("SPANNER_INSTANCE", s.instance.as_deref().unwrap_or_default()));
                let db = service_db.or_else(|| s.database.clone()).unwrap_or_else(|| "cloudstate".to_owned());
                env.push(literal("SPANNER_DATABASE", &db));
            }
        }
    }
    env
}

/// The database: the service's own name for it, else the Secret's key, else CloudState's default.
fn database(
    env: &mut Vec<EnvVar>,
    var: &str,
    literal_db: Option<String>,
    secret: Option<&str>,
    key: Option<&str>,
) {
    match (literal_db, secret, key) {
        (Some(db), _, _) => env.push(literal(var, &db)),
        (None, Some(secret), Some(key)) => env.push(secret_ref(var, secret, key)),
        (None, _, _) => env.push(literal(var, "cloudstate")),
    }
}

pub fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None }
}

fn secret_ref(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// A variable from the pod's own fields (downward API).
pub fn field_ref(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}
