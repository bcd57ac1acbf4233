//! Compiles every `.proto` under this directory with protox (no protoc needed): prost messages and
//! tonic services, canonical proto3 JSON through pbjson, the encoded descriptor set with its
//! extension options (`google.api.http`) kept, for reflection and for the gateway — and the Rust
//! that the protos imply: the module tree of every package (so a new package needs no edit
//! here), for every message with a `(civic.api.v1.event_topic)` its topic, and for every message
//! a request can hold the checks of its `(civic.api.v1.max_length)` and `(max_items)` bounds —
//! refusing to build when a string, bytes or repeated field there has none.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};

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
        .codec_path("crate::bounds::BoundedCodec")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(compiler.file_descriptor_set())?;

    pbjson_build::Builder::new().register_descriptors(&encoded)?.build(JSON_PACKAGES)?;

    let pool = DescriptorPool::decode(encoded.as_slice())?;
    std::fs::write(out_dir.join("packages.rs"), packages(&pool, &out_dir))?;
    std::fs::write(out_dir.join("events.rs"), events(&pool)?)?;
    std::fs::write(out_dir.join("bounds.rs"), bounds(&pool)?)?;
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

/// The messages every civic RPC takes and returns.
fn rpc_messages(pool: &DescriptorPool) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut inputs, mut outputs) = (BTreeSet::new(), BTreeSet::new());
    for service in pool.services().filter(|s| s.package_name().starts_with("civic.")) {
        for method in service.methods() {
            inputs.insert(method.input().full_name().to_owned());
            outputs.insert(method.output().full_name().to_owned());
        }
    }
    (inputs, outputs)
}

/// The bounds checks: `bounds::Fields` for every civic message a request can hold (checking
/// its fields and, through them, the messages it holds), `bounds::Bounded` for every message an
/// RPC takes (the check) or returns (none).
fn bounds(pool: &DescriptorPool) -> Result<String, String> {
    let max_length = pool.get_extension_by_name("civic.api.v1.max_length").ok_or("no civic.api.v1.max_length")?;
    let max_items = pool.get_extension_by_name("civic.api.v1.max_items").ok_or("no civic.api.v1.max_items")?;
    let minimum = pool.get_extension_by_name("civic.api.v1.minimum").ok_or("no civic.api.v1.minimum")?;
    let maximum = pool.get_extension_by_name("civic.api.v1.maximum").ok_or("no civic.api.v1.maximum")?;
    let bound = |field: &FieldDescriptor, option: &prost_reflect::ExtensionDescriptor| {
        let options = field.options();
        options.has_extension(option).then(|| options.get_extension(option).as_u32().unwrap_or(0))
    };
    let limit = |field: &FieldDescriptor, option: &prost_reflect::ExtensionDescriptor| {
        let options = field.options();
        options.has_extension(option).then(|| options.get_extension(option).as_f64()).flatten()
    };
    let (inputs, outputs) = rpc_messages(pool);
    // Every civic message a request can reach, through message fields.
    let mut reachable = BTreeSet::new();
    let mut queue: Vec<String> = inputs.iter().cloned().collect();
    while let Some(name) = queue.pop() {
        if !reachable.insert(name.clone()) {
            continue;
        }
        let message = pool.get_message_by_name(&name).ok_or_else(|| format!("no message {name}"))?;
        for field in message.fields() {
            if let Kind::Message(inner) = field.kind()
                && inner.full_name().starts_with("civic.")
            {
                queue.push(inner.full_name().to_owned());
            }
        }
    }
    let mut out = String::new();
    let mut missing = Vec::new();
    for name in &reachable {
        let message = pool.get_message_by_name(name).ok_or_else(|| format!("no message {name}"))?;
        let mut body = String::new();
        for field in message.fields() {
            if field.containing_oneof().is_some_and(|o| !o.is_synthetic()) || field.is_map() {
                return Err(format!("{}: oneofs and maps in requests are not bounded yet", field.full_name()));
            }
            let ident = rust_ident(field.name());
            let proto = field.name();
            let items = bound(&field, &max_items);
            let length = bound(&field, &max_length);
            let text = matches!(field.kind(), Kind::String | Kind::Bytes);
            if (field.is_list() && items.is_none()) || (text && length.is_none()) {
                missing.push(field.full_name().to_owned());
                continue;
            }
            let (low, high) = (limit(&field, &minimum), limit(&field, &maximum));
            if low.is_some() || high.is_some() {
                let number = matches!(
                    field.kind(),
                    Kind::Double
                        | Kind::Float
                        | Kind::Int32
                        | Kind::Sint32
                        | Kind::Sfixed32
                        | Kind::Uint32
                        | Kind::Fixed32
                        | Kind::Int64
                        | Kind::Sint64
                        | Kind::Sfixed64
                        | Kind::Uint64
                        | Kind::Fixed64
                );
                if !number || field.is_list() || field.supports_presence() {
                    return Err(format!("{}: a range is declared on singular number fields only", field.full_name()));
                }
                let (low, high) = (low.unwrap_or(f64::NEG_INFINITY), high.unwrap_or(f64::INFINITY));
                let described = match (low.is_finite(), high.is_finite()) {
                    (true, true) => format!("must be from {low} to {high}"),
                    (true, false) => format!("must be at least {low}"),
                    _ => format!("must be at most {high}"),
                };
                let literal = |x: f64| match x {
                    f64::NEG_INFINITY => "f64::NEG_INFINITY".to_owned(),
                    f64::INFINITY => "f64::INFINITY".to_owned(),
                    x => format!("{x:?}_f64"),
                };
                let (low, high) = (literal(low), literal(high));
                // Written so that NaN is outside every range.
                let _ = writeln!(
                    body,
                    "        {{ let x = self.{ident} as f64; if !(x >= {low} && x <= {high}) {{ v.push((format!(\"{{prefix}}{proto}\"), \"{described}\".to_owned())); }} }}"
                );
            }
            let unit = if field.kind() == Kind::Bytes { "bytes" } else { "characters" };
            let longer = |value: &str, n: u32| {
                if field.kind() == Kind::Bytes {
                    format!("({value}).len() > {n}")
                } else {
                    format!("crate::bounds::longer({value}, {n})")
                }
            };
            if let Some(n) = items {
                let _ = writeln!(
                    body,
                    "        if self.{ident}.len() > {n} {{ v.push((format!(\"{{prefix}}{proto}\"), \"must hold at most {n} items\".to_owned())); }}"
                );
            }
            match (field.kind(), field.is_list()) {
                (Kind::String | Kind::Bytes, true) => {
                    let n = length.unwrap_or(0);
                    let _ = writeln!(
                        body,
                        "        for (i, value) in self.{ident}.iter().enumerate() {{ if {} {{ v.push((format!(\"{{prefix}}{proto}[{{i}}]\"), \"must be at most {n} {unit}\".to_owned())); }} }}",
                        longer("value", n)
                    );
                }
                (Kind::String | Kind::Bytes, false) => {
                    let n = length.unwrap_or(0);
                    let access = if field.supports_presence() {
                        format!("self.{ident}.as_deref().unwrap_or_default()")
                    } else {
                        format!("&self.{ident}")
                    };
                    let _ = writeln!(
                        body,
                        "        if {} {{ v.push((format!(\"{{prefix}}{proto}\"), \"must be at most {n} {unit}\".to_owned())); }}",
                        longer(&access, n)
                    );
                }
                (Kind::Message(inner), list) => {
                    let Some(check) = nested_check(&inner, field.name())? else { continue };
                    if list {
                        let _ = writeln!(
                            body,
                            "        for (i, value) in self.{ident}.iter().enumerate() {{ {} }}",
                            check("value", &format!("&format!(\"{{prefix}}{proto}[{{i}}].\")"))
                        );
                    } else {
                        let _ = writeln!(
                            body,
                            "        if let Some(value) = &self.{ident} {{ {} }}",
                            check("value", &format!("&format!(\"{{prefix}}{proto}.\")"))
                        );
                    }
                }
                _ => {}
            }
        }
        let path = message_path(&message);
        let _ = writeln!(
            out,
            "impl crate::bounds::Fields for {path} {{\n    #[allow(unused_variables)]\n    fn check_fields(&self, prefix: &str, v: &mut Vec<(String, String)>) {{\n{body}    }}\n}}"
        );
    }
    if !missing.is_empty() {
        return Err(format!(
            "these fields a request can hold have no bound: declare (civic.api.v1.max_length) on strings and bytes and (civic.api.v1.max_items) on repeated fields: {}",
            missing.join(", ")
        ));
    }
    for name in &inputs {
        let path = message_path(&pool.get_message_by_name(name).ok_or("input")?);
        let _ = writeln!(
            out,
            "impl crate::bounds::Bounded for {path} {{\n    fn check_request(&self) -> Result<(), tonic::Status> {{\n        let mut v = Vec::new();\n        crate::bounds::Fields::check_fields(self, \"\", &mut v);\n        crate::bounds::finish(v)\n    }}\n}}"
        );
    }
    for name in outputs.difference(&inputs) {
        let message = pool.get_message_by_name(name).ok_or("output")?;
        if message.package_name() == "google.protobuf" {
            continue; // the crate implements these by hand
        }
        let _ = writeln!(out, "impl crate::bounds::Bounded for {} {{}}", message_path(&message));
    }
    Ok(out)
}

/// The check of a message field of type `inner`, given the value's and the prefix's Rust
/// expressions: its own fields (civic), the field mask's paths, or none (fixed-size well-known
/// types).
type Check = Box<dyn Fn(&str, &str) -> String>;

fn nested_check(inner: &MessageDescriptor, field: &str) -> Result<Option<Check>, String> {
    match inner.full_name() {
        name if name.starts_with("civic.") => Ok(Some(Box::new(|value: &str, prefix: &str| {
            format!("crate::bounds::Fields::check_fields({value}, {prefix}, v);")
        }))),
        "google.protobuf.FieldMask" => {
            Ok(Some(Box::new(|value: &str, prefix: &str| format!("crate::bounds::field_mask({value}, {prefix}, v);"))))
        }
        "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.Empty" => Ok(None),
        other => Err(format!("{field}: {other} in a request has no bound checks yet")),
    }
}

/// The Rust path of a message: `crate::civic::catalogue::v1::ServiceItem`; a nested message is
/// in its parent's snake-case module.
fn message_path(message: &MessageDescriptor) -> String {
    let mut names = vec![message.name().to_owned()];
    let mut parent = message.parent_message();
    while let Some(p) = parent {
        names.push(snake(p.name()));
        parent = p.parent_message();
    }
    names.reverse();
    format!("crate::{}::{}", message.package_name().replace('.', "::"), names.join("::"))
}

/// `ServiceItem` → `service_item`, as prost names modules.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A field's Rust name, as prost writes it (raw identifiers for keywords).
fn rust_ident(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl", "in", "let", "loop",
        "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct", "trait", "true", "type", "unsafe",
        "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
        "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
    ];
    if KEYWORDS.contains(&name) { format!("r#{name}") } else { name.to_owned() }
}
