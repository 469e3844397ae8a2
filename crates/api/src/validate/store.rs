//! Rules for StatefulStores.

use super::Findings;
use crate::path::FieldPath;
use crate::types::{StatefulStore, StoreKind};

pub fn stateful_store(store: &StatefulStore, f: &mut Findings) {
    let spec = &store.spec;
    let path = FieldPath::root().key("spec");
    let declared = spec.declared_kinds();
    match declared.as_slice() {
        [] => {
            f.error(path.clone(), "a StatefulStore declares one store: type (InMemory, Postgres, Cassandra), or one of inMemory, postgres, cassandra, spanner, embedded");
        }
        [(kind, field)] => {
            if !kind.supported_by_proxy() {
                f.warn(
                    path.key(*field),
                    format!(
                        "{} stores are accepted but stead's proxy does not support them yet",
                        kind.as_str()
                    ),
                );
            }
        }
        [_, (_, second), ..] => {
            let fields: Vec<&str> = declared.iter().map(|(_, f)| *f).collect();
            f.error(
                path.key(*second),
                format!("a StatefulStore declares one store, this one declares {}", fields.join(", ")),
            );
        }
    }
    if spec.in_memory == Some(false) && declared.is_empty() {
        f.error(path.key("inMemory"), "inMemory: false declares no store");
    }
    if let Some(config) = &spec.config {
        let p = path.key("config");
        if spec.type_.is_none() {
            f.error(p.clone(), "config belongs to the type-based shape; set type too");
        }
        if let Some(port) = config.port {
            port_range(f, p.key("port"), port);
        }
        if let Some(creds) = &config.credentials {
            for (field, value) in [("username", &creds.username), ("password", &creds.password)] {
                if value.is_some() {
                    f.error(
                        p.key("credentials").key(field),
                        format!("a literal {field} would be copied into every pod spec"),
                    )
                    .with_help("put it in a Secret and name its key under config.credentialsFromSecret");
                }
            }
        }
        if spec.kind() == Some(StoreKind::Postgres) && config.service.is_none() {
            f.error(p.key("service"), "missing required field \"service\" (the PostgreSQL host)");
        }
    } else if matches!(
        spec.type_,
        Some(crate::types::LegacyStoreType::Postgres | crate::types::LegacyStoreType::Cassandra)
    ) {
        f.error(path.key("config"), "missing required field \"config\" (the store's host and credentials)");
    }
    if let Some(pg) = &spec.postgres {
        let p = path.key("postgres");
        if pg.host.is_none() && pg.google_cloud_sql.is_none() {
            f.error(p.key("host"), "missing required field \"host\"");
        }
        if let Some(port) = pg.port {
            port_range(f, p.key("port"), port);
        }
        if pg.google_cloud_sql.is_some() {
            f.warn(
                p.key("googleCloudSql"),
                "stead does not provision Cloud SQL; point host at an existing server",
            );
        }
    }
    if let Some(c) = &spec.cassandra {
        if c.host.is_none() {
            f.error(path.key("cassandra").key("host"), "missing required field \"host\"");
        }
        if let Some(port) = c.port {
            port_range(f, path.key("cassandra").key("port"), port);
        }
    }
}

fn port_range(f: &mut Findings, path: FieldPath, port: i32) {
    if !(1..=65535).contains(&port) {
        f.error(path, format!("invalid port {port}: must be between 1 and 65535"));
    }
}
