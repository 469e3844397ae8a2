//! [`Catalog`]: the user function's services, resolved from the `EntitySpec` that discovery
//! returned, with what the proxy needs to route a call: entity type, persistence id, passivation
//! timeout and, per method, the input message and its entity key fields.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, MessageDescriptor, Value};

use crate::protocol::cloudstate::{EntitySpec, entity_passivation_strategy};
use crate::protocol::{entity_key_option, entity_type};

/// A problem with what the user function declared.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// `EntitySpec.proto` is not a valid, complete `FileDescriptorSet`.
    #[error("the user function's descriptors do not load: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// An entity names a service that is not in the descriptors.
    #[error("entity service {service:?} is not in the user function's descriptors")]
    UnknownService {
        /// The service.
        service: String,
    },
    /// An entity type the proxy does not know.
    #[error("entity service {service:?} has entity type {entity_type:?}, which stead does not know")]
    UnknownEntityType {
        /// The service.
        service: String,
        /// The type.
        entity_type: String,
    },
    /// An entity type the proxy knows but cannot serve (yet, or with this store).
    #[error("entity service {service:?} has entity type {entity_type:?}, which {why}")]
    Unsupported {
        /// The service.
        service: String,
        /// The type.
        entity_type: String,
        /// Why not.
        why: &'static str,
    },
    /// A stateful entity's method without a key field.
    #[error("method {method} of entity service {service:?} has no entity_key field in {input}")]
    MissingKey {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// The input message.
        input: String,
    },
    /// An event-sourced or value entity method that streams.
    #[error("method {method} of entity service {service:?} streams, which {entity_type} entities cannot")]
    Streamed {
        /// The service.
        service: String,
        /// The method.
        method: String,
        /// The entity type.
        entity_type: &'static str,
    },
}

/// The entity types the proxy serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// `cloudstate.eventsourced.EventSourced`.
    EventSourced,
    /// `cloudstate.valueentity.ValueEntity`.
    ValueEntity,
    /// `cloudstate.action.ActionProtocol`.
    Action,
}

impl EntityKind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            EntityKind::EventSourced => "event_sourced",
            EntityKind::ValueEntity => "value_entity",
            EntityKind::Action => "action",
        }
    }
}

/// One method of a user service.
#[derive(Clone, Debug)]
pub struct Method {
    /// The method name (the command name).
    pub name: String,
    /// The request message.
    pub input: MessageDescriptor,
    /// The reply message's full name.
    pub output: String,
    /// The fields whose values, joined with `-`, are the entity id.
    pub key_fields: Vec<FieldDescriptor>,
    /// Whether the client streams requests.
    pub client_streaming: bool,
    /// Whether the server streams replies.
    pub server_streaming: bool,
}

impl Method {
    /// The entity id of a request: the key fields' values joined with `-` (empty if none).
    pub fn entity_id(&self, request: &[u8]) -> Result<String, prost::DecodeError> {
        if self.key_fields.is_empty() {
            return Ok(String::new());
        }
        let message = DynamicMessage::decode(self.input.clone(), request)?;
        let parts: Vec<String> = self.key_fields.iter().map(|f| key_text(&message.get_field(f))).collect();
        Ok(parts.join("-"))
    }

    /// The `Any` type URL of a request.
    pub fn input_type_url(&self) -> String {
        format!("type.googleapis.com/{}", self.input.full_name())
    }
}

fn key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::I32(n) | Value::EnumNumber(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// One declared entity service.
#[derive(Debug)]
pub struct Service {
    /// The full service name.
    pub name: String,
    /// Its entity type.
    pub kind: EntityKind,
    /// The persistence id (journal prefix, value-entity key).
    pub persistence_id: String,
    /// How long an idle entity stays active, if the user function chose.
    pub passivation: Option<Duration>,
    /// Its methods by name.
    pub methods: HashMap<String, Method>,
}

/// Every service the proxy serves.
#[derive(Debug, Default)]
pub struct Catalog {
    services: HashMap<String, Arc<Service>>,
    /// Every descriptor the user function sent (for HTTP rules and reflection).
    pool: DescriptorPool,
}

/// Whether a field is marked as an entity key by either option number.
fn is_entity_key(field: &FieldDescriptor) -> bool {
    let options = field.options();
    let known = options.extensions().any(|(ext, value)| {
        matches!(ext.number(), entity_key_option::CURRENT | entity_key_option::LEGACY)
            && matches!(value, Value::Bool(true))
    });
    // Extensions the pool does not declare stay unknown fields: a varint 1 is `true`.
    known
        || options.unknown_fields().any(|unknown| {
            matches!(unknown.number(), entity_key_option::CURRENT | entity_key_option::LEGACY) && {
                let mut bytes = Vec::new();
                unknown.encode(&mut bytes);
                bytes.last() == Some(&1)
            }
        })
}

impl Catalog {
    /// Resolves every entity of `spec`; `has_store` says whether stateful entities can be served.
    /// Every problem is returned, not only the first.
    pub fn build(spec: &EntitySpec, has_store: bool) -> Result<Self, Vec<CatalogError>> {
        let pool = DescriptorPool::decode(spec.proto.as_slice()).map_err(|e| vec![e.into()])?;
        let mut services = HashMap::new();
        let mut problems = Vec::new();
        for entity in &spec.entities {
            let service = entity.service_name.clone();
            let kind = match entity.entity_type.as_str() {
                entity_type::EVENT_SOURCED => EntityKind::EventSourced,
                entity_type::VALUE_ENTITY => EntityKind::ValueEntity,
                entity_type::ACTION => EntityKind::Action,
                entity_type::CRDT => {
                    problems.push(CatalogError::Unsupported {
                        service,
                        entity_type: entity.entity_type.clone(),
                        why: "stead does not support yet",
                    });
                    continue;
                }
                other => {
                    problems
                        .push(CatalogError::UnknownEntityType { service, entity_type: other.to_string() });
                    continue;
                }
            };
            if kind != EntityKind::Action && !has_store {
                problems.push(CatalogError::Unsupported {
                    service,
                    entity_type: entity.entity_type.clone(),
                    why: "needs a store, and this proxy has none (STEAD_STORE=none)",
                });
                continue;
            }
            let Some(descriptor) = pool.get_service_by_name(&service) else {
                problems.push(CatalogError::UnknownService { service });
                continue;
            };
            let mut methods = HashMap::new();
            for m in descriptor.methods() {
                let input = m.input();
                let key_fields: Vec<FieldDescriptor> = input.fields().filter(is_entity_key).collect();
                let streamed = m.is_client_streaming() || m.is_server_streaming();
                if kind != EntityKind::Action {
                    if streamed {
                        problems.push(CatalogError::Streamed {
                            service: service.clone(),
                            method: m.name().to_string(),
                            entity_type: kind.label(),
                        });
                    }
                    if key_fields.is_empty() {
                        problems.push(CatalogError::MissingKey {
                            service: service.clone(),
                            method: m.name().to_string(),
                            input: input.full_name().to_string(),
                        });
                    }
                }
                methods.insert(
                    m.name().to_string(),
                    Method {
                        name: m.name().to_string(),
                        output: m.output().full_name().to_string(),
                        input,
                        key_fields,
                        client_streaming: m.is_client_streaming(),
                        server_streaming: m.is_server_streaming(),
                    },
                );
            }
            let passivation = entity.passivation_strategy.as_ref().and_then(|p| match p.strategy {
                Some(entity_passivation_strategy::Strategy::Timeout(t)) if t.timeout > 0 => {
                    Some(Duration::from_millis(t.timeout.unsigned_abs()))
                }
                _ => None,
            });
            let persistence_id = if entity.persistence_id.is_empty() {
                service.clone()
            } else {
                entity.persistence_id.clone()
            };
            services.insert(
                service.clone(),
                Arc::new(Service { name: service, kind, persistence_id, passivation, methods }),
            );
        }
        if problems.is_empty() { Ok(Self { services, pool }) } else { Err(problems) }
    }

    /// A service by full name.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.get(name)
    }

    /// The user function's descriptors.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Every service.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }
}
