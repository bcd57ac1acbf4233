//! Compiles every `.proto` under this directory with protox (no protoc needed): prost messages and
//! tonic services, canonical proto3 JSON through pbjson, the encoded descriptor set with its
//! extension options (`google.api.http`) kept, for reflection and for the gateway — and the Rust
//! that the protos imply: the module tree of every package (so a new package needs no edit
//! here) and, for every message with a `(civic.api.v1.event_topic)`, its topic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, Value};

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

/// The packages whose messages get canonical JSON.
const JSON_PACKAGES: &[&str] = &[".civic", ".google.rpc"];

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

    pbjson_build::Builder::new().register_descriptors(&encoded)?.build(JSON_PACKAGES)?;

    let pool = DescriptorPool::decode(encoded.as_slice())?;
    std::fs::write(out_dir.join("packages.rs"), packages(&pool, &out_dir))?;
    std::fs::write(out_dir.join("events.rs"), events(&pool)?)?;
    Ok(())
}

/// A tree of packages: each name segment a module, holding the generated files of the package
/// that ends there.
#[derive(Default)]
struct Tree {
    package: Option<String>,
    children: BTreeMap<String, Tree>,
}

/// The module tree of every package compiled, except `google.protobuf` (pbjson-types has it),
/// including the files generated for each (a package of options only has none).
fn packages(pool: &DescriptorPool, out_dir: &Path) -> String {
    let mut tree = Tree::default();
    for file in pool.files() {
        let package = file.package_name();
        if package.is_empty() || package == "google.protobuf" {
            continue;
        }
        let mut node = &mut tree;
        for segment in package.split('.') {
            node = node.children.entry(segment.to_owned()).or_default();
        }
        node.package = Some(package.to_owned());
    }
    let mut out = String::new();
    write_tree(&tree, &mut out, "", out_dir);
    // `civic_proto::catalogue` for `civic_proto::civic::catalogue::v1`: each domain's first version.
    if let Some(civic) = tree.children.get("civic") {
        for (domain, node) in &civic.children {
            if node.children.get("v1").is_some_and(|v1| v1.package.is_some()) {
                let _ = writeln!(out, "/// Version 1 of `civic.{domain}`.\npub use civic::{domain}::v1 as {domain};");
            }
        }
    }
    out
}

fn write_tree(node: &Tree, out: &mut String, indent: &str, out_dir: &Path) {
    if let Some(package) = &node.package {
        for file in [format!("{package}.rs"), format!("{package}.serde.rs")] {
            if out_dir.join(&file).is_file() {
                let _ = writeln!(out, "{indent}include!(concat!(env!(\"OUT_DIR\"), \"/{file}\"));");
            }
        }
    }
    for (segment, child) in &node.children {
        let what = child.package.as_deref().map_or_else(|| format!("`{segment}`"), |p| format!("The `{p}` package."));
        let doc = if child.package.is_some() { what } else { format!("The packages under {what}.") };
        let _ = writeln!(out, "{indent}/// {doc}\n{indent}pub mod {segment} {{");
        write_tree(child, out, &format!("{indent}    "), out_dir);
        let _ = writeln!(out, "{indent}}}");
    }
}

/// `impl Event` for every message that names its topic, with the topic checked here, at build
/// time, against the rules the event bus applies.
fn events(pool: &DescriptorPool) -> Result<String, String> {
    let Some(option) = pool.get_extension_by_name("civic.api.v1.event_topic") else {
        return Ok(String::new());
    };
    let mut out = String::new();
    let mut seen = BTreeMap::new();
    for message in pool.all_messages() {
        let options = message.options();
        if !options.has_extension(&option) {
            continue;
        }
        let Value::String(topic) = options.get_extension(&option).into_owned() else { continue };
        let valid = topic.split('.').count() >= 2
            && topic.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            });
        if !valid {
            return Err(format!(
                "{}: event topic {topic:?} is not dot-separated lowercase tokens",
                message.full_name()
            ));
        }
        if let Some(other) = seen.insert(topic.clone(), message.full_name().to_owned()) {
            return Err(format!("event topic {topic:?} is declared by both {other} and {}", message.full_name()));
        }
        let path = rust_path(message.full_name());
        let _ = writeln!(out, "impl crate::Event for {path} {{\n    const TOPIC: &'static str = {topic:?};\n}}");
    }
    Ok(out)
}

/// The Rust path of a message, from the crate root: `civic.catalogue.v1.ServiceItemChanged` is
/// `crate::civic::catalogue::v1::ServiceItemChanged`. Nested messages are not events.
fn rust_path(full_name: &str) -> String {
    let (package, name) = full_name.rsplit_once('.').unwrap_or(("", full_name));
    format!("crate::{}::{name}", package.replace('.', "::"))
}
