//! Compiles `tern/v1/*.proto` into OUT_DIR with the protoc shipped in `protoc-bin-vendored`, so
//! `cargo build` needs no system protoc and no generated code is kept in git.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "tern/v1/blocks.proto",
        "tern/v1/peers.proto",
        "tern/v1/routes.proto",
        "tern/v1/watch.proto",
        "tern/v1/status.proto",
    ];
    // The well-known types (google/protobuf/timestamp.proto) come with the vendored protoc.
    let well_known = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // No `connect()` helpers: clients are built on a channel of the caller's choosing (unix socket or TLS).
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_with_config(
            config,
            &files.map(std::path::PathBuf::from),
            &[std::path::PathBuf::from("."), well_known],
        )?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
