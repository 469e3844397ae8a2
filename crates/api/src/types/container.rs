//! A pod container whose `name` may be omitted.
//!
//! CloudState's StatefulService lets the first container go unnamed (the name is forced to
//! `user-container`), which `k8s_openapi`'s `Container` cannot express: its `name` is required.
//! `ServiceContainer` is that `Container` with an optional name; an absent name is stored as `""`
//! and never serialized.

use k8s_openapi::api::core::v1::Container;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _};
use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

/// A `Container` whose name may be empty (meaning "not given").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceContainer(pub Container);

impl ServiceContainer {
    /// The name, if the manifest gave one.
    pub fn name(&self) -> Option<&str> {
        (!self.0.name.is_empty()).then_some(self.0.name.as_str())
    }
}

impl Deref for ServiceContainer {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.0
    }
}

impl DerefMut for ServiceContainer {
    fn deref_mut(&mut self) -> &mut Container {
        &mut self.0
    }
}

impl From<Container> for ServiceContainer {
    fn from(c: Container) -> Self {
        Self(c)
    }
}

impl Serialize for ServiceContainer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(&self.0).map_err(S::Error::custom)?;
        if let Some(obj) = value.as_object_mut()
            && obj.get("name").and_then(|n| n.as_str()) == Some("")
        {
            obj.remove("name");
        }
        value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ServiceContainer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(d)?;
        if let Some(obj) = value.as_object_mut() {
            obj.entry("name").or_insert_with(|| serde_json::Value::String(String::new()));
        }
        serde_json::from_value(value).map(Self).map_err(D::Error::custom)
    }
}

impl JsonSchema for ServiceContainer {
    fn schema_name() -> Cow<'static, str> {
        "ServiceContainer".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = Container::json_schema(generator);
        if let Some(required) = schema.get_mut("required").and_then(|r| r.as_array_mut()) {
            required.retain(|f| f != "name");
            if required.is_empty() {
                schema.remove("required");
            }
        }
        schema
    }
}
