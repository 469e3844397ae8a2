//! The kinds stead reads, as one enum, and the table that maps `apiVersion`/`kind` to them.

use crate::types::{StatefulService, StatefulStore};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde_json::Value as J;
use std::sync::OnceLock;

macro_rules! manifests {
    ($( $variant:ident => $ty:ty, $api_version:literal, $schema:expr; )*) => {
        /// One object of a supported kind.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Manifest {
            $( $variant(Box<$ty>), )*
        }

        impl Manifest {
            pub fn kind(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )* }
            }

            pub fn api_version(&self) -> &'static str {
                match self { $( Self::$variant(_) => $api_version, )* }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self { $( Self::$variant(o) => &o.metadata, )* }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $( Self::$variant(o) => &mut o.metadata, )* }
            }

            /// The object as JSON, with `apiVersion` and `kind`.
            pub fn to_json(&self) -> Result<J, serde_json::Error> {
                let fields = match self { $( Self::$variant(o) => serde_json::to_value(o)?, )* };
                let mut out = serde_json::Map::new();
                out.insert("apiVersion".into(), J::from(self.api_version()));
                out.insert("kind".into(), J::from(self.kind()));
                if let J::Object(fields) = fields {
                    out.extend(fields.into_iter().filter(|(k, _)| k != "apiVersion" && k != "kind"));
                }
                Ok(J::Object(out))
            }
        }

        /// Every supported kind.
        pub static KINDS: &[KindInfo] = &[
            $( KindInfo {
                api_version: $api_version,
                kind: stringify!($variant),
                schema: || {
                    static SCHEMA: OnceLock<J> = OnceLock::new();
                    SCHEMA.get_or_init($schema)
                },
                parse: |value| {
                    serde_path_to_error::deserialize::<_, $ty>(value)
                        .map(|o| Manifest::$variant(Box::new(o)))
                        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
                },
            }, )*
        ];
    };
}

manifests! {
    StatefulService => StatefulService, "cloudstate.io/v1alpha1", custom_resource_schema::<crate::types::StatefulServiceSpec, crate::types::StatefulServiceStatus>;
    StatefulStore => StatefulStore, "cloudstate.io/v1alpha1", custom_resource_schema::<crate::types::StatefulStoreSpec, crate::types::StatefulStoreStatus>;
    StatefulSet => StatefulSet, "apps/v1", root_schema::<StatefulSet>;
    Deployment => Deployment, "apps/v1", root_schema::<Deployment>;
    Service => Service, "v1", root_schema::<Service>;
    ConfigMap => ConfigMap, "v1", root_schema::<ConfigMap>;
    Secret => Secret, "v1", root_schema::<Secret>;
    PersistentVolumeClaim => PersistentVolumeClaim, "v1", root_schema::<PersistentVolumeClaim>;
    Pod => Pod, "v1", root_schema::<Pod>;
    Namespace => Namespace, "v1", root_schema::<Namespace>;
    NetworkPolicy => NetworkPolicy, "networking.k8s.io/v1", root_schema::<NetworkPolicy>;
    HorizontalPodAutoscaler => HorizontalPodAutoscaler, "autoscaling/v2", root_schema::<HorizontalPodAutoscaler>;
}

/// A supported kind: its `apiVersion`, its name, its JSON schema and its parser.
pub struct KindInfo {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub schema: fn() -> &'static J,
    /// Parses a JSON value; on failure, the serde path and message.
    pub parse: fn(J) -> Result<Manifest, (String, String)>,
}

impl KindInfo {
    /// The kind with this name, in any API version.
    pub fn by_kind(kind: &str) -> Option<&'static KindInfo> {
        KINDS.iter().find(|k| k.kind == kind)
    }

    /// `apiVersion/kind` of every supported kind, for messages.
    pub fn supported() -> String {
        KINDS.iter().map(|k| format!("{} {}", k.api_version, k.kind)).collect::<Vec<_>>().join(", ")
    }
}

fn root_schema<T: JsonSchema>() -> J {
    schemars::SchemaGenerator::default().into_root_schema_for::<T>().to_value()
}

/// Our custom resources: `apiVersion`, `kind`, the full `ObjectMeta`, spec and status.
fn custom_resource_schema<Spec: JsonSchema, Status: JsonSchema>() -> J {
    let mut generator = schemars::SchemaGenerator::default();
    let metadata = generator.subschema_for::<ObjectMeta>().to_value();
    let spec = generator.subschema_for::<Spec>().to_value();
    let status = generator.subschema_for::<Status>().to_value();
    let mut root = serde_json::json!({
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": metadata,
            "spec": spec,
            "status": status,
        },
        "required": ["apiVersion", "kind", "metadata", "spec"],
    });
    root["$defs"] = J::Object(generator.take_definitions(true));
    root
}

impl Manifest {
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// The namespace, or `default` when the manifest leaves it to the one applying it.
    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or("default")
    }

    /// `kind/name`, as kubectl names objects.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind().to_ascii_lowercase(), self.name())
    }
}
