//! Generates the fedsec.v1 gRPC code with a vendored `protoc`, so that no
//! system protobuf compiler is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "fedsec/v1/common.proto",
        "fedsec/v1/coordinator.proto",
        "fedsec/v1/admin.proto",
    ];
    let mut config = prost_build_config()?;
    // Tensor chunks are decoded without an extra copy.
    config.bytes([
        ".fedsec.v1.TensorChunk.data",
        ".fedsec.v1.ExportModelChunk.data",
    ]);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("fedsec_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}

fn prost_build_config() -> Result<tonic_prost_build::Config, Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    Ok(config)
}
