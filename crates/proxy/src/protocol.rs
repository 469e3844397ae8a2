//! The CloudState protocol 0.2, generated from `proto/` by `build.rs`.
//!
//! Module paths mirror the protobuf packages (`cloudstate`, `cloudstate.eventsourced`, ...), so
//! generated cross-package references (`super::Command`) resolve. Each service has a client (the
//! proxy's side) and a server (used by tests that play the user function).

#![allow(clippy::all, clippy::pedantic, missing_docs, nonstandard_style)]

/// Package `cloudstate`: shared messages and `EntityDiscovery`.
pub mod cloudstate {
    tonic::include_proto!("cloudstate");

    /// Package `cloudstate.eventsourced`: the `EventSourced` entity protocol.
    pub mod eventsourced {
        tonic::include_proto!("cloudstate.eventsourced");
    }

    /// Package `cloudstate.valueentity`: the `ValueEntity` entity protocol.
    pub mod valueentity {
        tonic::include_proto!("cloudstate.valueentity");
    }

    /// Package `cloudstate.action`: the `ActionProtocol` for stateless actions.
    pub mod action {
        tonic::include_proto!("cloudstate.action");
    }

    /// Package `cloudstate.crdt`: the `Crdt` entity protocol (not served yet).
    pub mod crdt {
        tonic::include_proto!("cloudstate.crdt");
    }
}

/// Package `google.api`: HTTP bindings (`google.api.http`).
pub mod google {
    /// Package `google.api`.
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

/// Package `grpc.reflection`: gRPC server reflection, answered from the user's descriptors.
pub mod grpc {
    /// Package `grpc.reflection`.
    pub mod reflection {
        /// Package `grpc.reflection.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/reflection/grpc.reflection.v1.rs"));
        }
        /// Package `grpc.reflection.v1alpha` (the same messages, the older name).
        pub mod v1alpha {
            include!(concat!(env!("OUT_DIR"), "/reflection/grpc.reflection.v1alpha.rs"));
        }
    }
}

/// The serialized `FileDescriptorSet` of the reflection protocol's files.
pub const REFLECTION_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/reflection/descriptor.bin"));

/// The serialized `FileDescriptorSet` of every file in `proto/` (with the `google/protobuf`
/// files they import), for reflection and for checks against other descriptors.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cloudstate_descriptor.bin"));

/// The protocol version this proxy speaks: 0.2.
pub const PROTOCOL_MAJOR_VERSION: i32 = 0;
/// See [`PROTOCOL_MAJOR_VERSION`].
pub const PROTOCOL_MINOR_VERSION: i32 = 2;

/// The `Entity.entity_type` names: fully qualified names of the entity protocol services.
pub mod entity_type {
    /// Event-sourced entities.
    pub const EVENT_SOURCED: &str = "cloudstate.eventsourced.EventSourced";
    /// Value entities.
    pub const VALUE_ENTITY: &str = "cloudstate.valueentity.ValueEntity";
    /// Stateless actions.
    pub const ACTION: &str = "cloudstate.action.ActionProtocol";
    /// CRDT entities.
    pub const CRDT: &str = "cloudstate.crdt.Crdt";
}

/// Field option numbers that mark entity key fields.
pub mod entity_key_option {
    /// `cloudstate.entity_key` in protocol 0.2.
    pub const CURRENT: u32 = 1080;
    /// `cloudstate.legacy_entity_key`, the number older user functions declare as `entity_key`.
    pub const LEGACY: u32 = 50002;
}
