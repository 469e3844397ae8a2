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

    // gRPC server reflection (v1 and v1alpha), in its own directory: served to clients, and
    // its set is added to the reflected pool so that reflection describes itself too.
    let reflection_dir = out_dir.join("reflection");
    std::fs::create_dir_all(&reflection_dir)?;
    let reflection = protox::compile(
        ["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"],
        ["proto"],
    )?;
    std::fs::write(reflection_dir.join("descriptor.bin"), reflection.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&reflection_dir)
        .compile_fds(reflection)?;

    // The tests' shopping cart (a user service: the protos of `examples/shopping-cart-python`), in
    // its own directory: its imports must not overwrite the protocol's generated files. The set is
    // also what the Python user function loads, so both sides use the same descriptors.
    const CART_PROTOS: &str = "../../examples/shopping-cart-python/proto";
    println!("cargo:rerun-if-changed={CART_PROTOS}");
    let cart_dir = out_dir.join("shoppingcart");
    std::fs::create_dir_all(&cart_dir)?;
    // Encoded by protox itself: prost-types' messages would drop the `entity_key` options.
    let mut compiler = protox::Compiler::new([CART_PROTOS, "proto"])?;
    compiler.include_imports(true);
    compiler.open_files(["shoppingcart.proto", "shoppingcart_domain.proto"])?;
    std::fs::write(cart_dir.join("descriptor.bin"), compiler.encode_file_descriptor_set())?;
    let cart = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&cart_dir)
        .compile_fds(cart)?;
    Ok(())
}
