//! Compiles every `.proto` under this directory with protox (no protoc needed): prost messages and
//! tonic services, canonical proto3 JSON through pbjson, and the encoded descriptor set with its
//! extension options (`google.api.http`) kept, for reflection and for the gateway.

use std::path::{Path, PathBuf};

fn protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", root.join("civic").display());
    println!("cargo:rerun-if-changed={}", root.join("google").display());

    let mut files = Vec::new();
    protos(&root.join("civic"), &mut files)?;
    protos(&root.join("google"), &mut files)?;
    files.sort();
    let relative: Vec<PathBuf> =
        files.iter().map(|f| f.strip_prefix(&root).map(Path::to_path_buf)).collect::<Result<_, _>>()?;

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&relative)?;
    // Only the encoded form keeps extension options such as (google.api.http).
    let encoded = compiler.encode_file_descriptor_set();
    std::fs::write(out_dir.join("civic_descriptor.bin"), &encoded)?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(compiler.file_descriptor_set())?;

    pbjson_build::Builder::new().register_descriptors(&encoded)?.build(&[".civic", ".google.rpc"])?;
    Ok(())
}
