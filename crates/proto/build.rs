//! Compiles every `.proto` under the workspace's `proto/` with protox, so a
//! fresh machine needs no system protoc.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script compiled for one checkout may be
    // reused by another that shares the target dir.
    let root = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files = Vec::new();
    collect_protos(&root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(&files)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Encoded by protox itself: prost-types' descriptors drop extension
    // options, and the gateway reads its HTTP routes from the
    // `google.api.http` option of each method.
    std::fs::write(
        out_dir.join("agentshare_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let descriptors = compiler.file_descriptor_set();

    // No default stubs: a service that leaves an RPC of the contract
    // unbuilt does not compile.
    // Every message names its full proto name (`prost::Name`), so a client
    // can render any answer in the proto3 JSON mapping by reflection.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(false)
        // Bytes that do not decode are the client's to fix: INVALID_ARGUMENT.
        .codec_path("crate::codec::Codec")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
