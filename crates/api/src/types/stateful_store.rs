//! `StatefulStore` (`cloudstate.io/v1alpha1`): where entity state is kept.
//!
//! Both CloudState shapes load: the Scala era's `type` + `config`, and the Go era's one block per store
//! (`inMemory`, `postgres`, `cassandra`, `spanner`). stead adds `embedded`: a file store on each pod's
//! own volume. [`StatefulStoreSpec::kind`] resolves either shape to one [`StoreKind`].

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::NameRef;

/// The desired state of a store.
// kube's attribute syntax repeats keys (printcolumn, derive) by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cloudstate.io",
    version = "v1alpha1",
    kind = "StatefulStore",
    plural = "statefulstores",
    namespaced,
    status = "StatefulStoreStatus",
    shortname = "sstore",
    category = "stead",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct StatefulStoreSpec {
    // === Scala-era shape ===
    /// `InMemory`, `Postgres` or `Cassandra`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<LegacyStoreType>,
    /// Only `Unmanaged` exists: the store runs outside stead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<StoreDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LegacyStoreConfig>,

    // === Go-era shape ===
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spanner: Option<SpannerStore>,

    // === stead ===
    /// A durable file store inside each pod, on a volume of its own (asks for a StatefulSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStore>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LegacyStoreType {
    InMemory,
    Postgres,
    Cassandra,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StoreDeployment {
    Unmanaged,
}

/// Scala-era `spec.config`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyStoreConfig {
    /// The store's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Literal settings. stead takes `database`, `schema` and `keyspace` from here, never a
    /// username or password: those must come from `credentialsFromSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<LegacyCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_from_secret: Option<CredentialsFromSecret>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Credentials read from a Secret's keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsFromSecret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_key: Option<String>,
}

/// Go-era `spec.postgres`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<PostgresSsl>,
    /// Accepted; stead does not provision Cloud SQL instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google_cloud_sql: Option<GoogleCloudSql>,
}

/// Credentials in a Secret, with the keys to read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace_key: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSsl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SslMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoogleCloudSql {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<CloudSqlStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_availability: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudSqlStorage {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_increase: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_increase_limit: Option<Quantity>,
}

/// Go-era `spec.cassandra`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CassandraStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretCredentials>,
}

/// Go-era `spec.spanner`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpannerStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<NameRef>,
}

/// stead's embedded store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedStore {
    /// Size of each pod's store volume; defaults to `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatefulStoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// A store, whichever shape declared it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    InMemory,
    Postgres,
    Cassandra,
    Spanner,
    Embedded,
}

impl StoreKind {
    /// The value of the sidecar's `STEAD_STORE` setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InMemory => "in-memory",
            Self::Postgres => "postgres",
            Self::Cassandra => "cassandra",
            Self::Spanner => "spanner",
            Self::Embedded => "embedded",
        }
    }

    /// Whether stead's proxy can keep state in this store.
    pub fn supported_by_proxy(self) -> bool {
        matches!(self, Self::InMemory | Self::Postgres | Self::Embedded)
    }
}

impl StatefulStoreSpec {
    /// Every store kind this spec declares, with the field that declares it. Valid specs declare one.
    pub fn declared_kinds(&self) -> Vec<(StoreKind, &'static str)> {
        let mut kinds = Vec::new();
        match self.type_ {
            Some(LegacyStoreType::InMemory) => kinds.push((StoreKind::InMemory, "type")),
            Some(LegacyStoreType::Postgres) => kinds.push((StoreKind::Postgres, "type")),
            Some(LegacyStoreType::Cassandra) => kinds.push((StoreKind::Cassandra, "type")),
            None => {}
        }
        if self.in_memory == Some(true) {
            kinds.push((StoreKind::InMemory, "inMemory"));
        }
        if self.postgres.is_some() {
            kinds.push((StoreKind::Postgres, "postgres"));
        }
        if self.cassandra.is_some() {
            kinds.push((StoreKind::Cassandra, "cassandra"));
        }
        if self.spanner.is_some() {
            kinds.push((StoreKind::Spanner, "spanner"));
        }
        if self.embedded.is_some() {
            kinds.push((StoreKind::Embedded, "embedded"));
        }
        kinds
    }

    /// The store kind, when exactly one is declared.
    pub fn kind(&self) -> Option<StoreKind> {
        match self.declared_kinds().as_slice() {
            [(kind, _)] => Some(*kind),
            _ => None,
        }
    }
}
