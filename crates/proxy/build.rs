//! Compiles the CloudState protocol files in `proto/` without `protoc`: protox parses
//! them into a `FileDescriptorSet`, tonic-prost-build generates messages plus client and
//! server stubs from it, and the set itself is written to `$OUT_DIR` for prost-reflect.

use std::path::PathBuf;

use prost::Message as _;

/// Every file we compile; their imports (google/protobuf/*) come from protox's built-ins.
const PROTOS: &[&str] = &[
    "cloudstate/entity.proto",
    "cloudstate/event_sourced.proto",
    "cloudstate/value_entity.proto",
    "cloudstate/action.proto",
    "cloudstate/crdt.proto",
    "cloudstate/entity_key.proto",
    "cloudstate/legacy_entity_key.proto",
    "cloudstate/eventing.proto",
    "google/api/http.proto",
    "google/api/annotations.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(out_dir.join("cloudstate_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
