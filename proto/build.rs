//! Compiles the API in `api/` with protox (pure Rust, no protoc needed), then generates
//! prost messages, tonic clients and servers, and pbjson serde impls.

use std::path::PathBuf;

#[path = "build/cel_gen.rs"]
mod cel_gen;
#[path = "build/json_gen.rs"]
mod json_gen;

const PROTOS: &[&str] = &[
    "api/flow/flow.proto",
    "api/relay/relay.proto",
    "api/observer/observer.proto",
    "api/peer/peer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["api"])?;
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("hubble_descriptor.bin"), &descriptor_bytes)?;

    let json = json_gen::generate(&descriptors, &["flow", "observer", "peer", "relay"]);
    std::fs::write(out_dir.join("hubble_json.rs"), json)?;
    println!("cargo:rerun-if-changed=build/json_gen.rs");
    let cel = cel_gen::generate(&descriptors, &["flow"]);
    std::fs::write(out_dir.join("hubble_cel.rs"), cel)?;
    println!("cargo:rerun-if-changed=build/cel_gen.rs");

    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors.clone())?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        // Unknown fields are skipped, as protojson's `DiscardUnknown`: a capture written
        // by a newer Hubble keeps its flows.
        .ignore_unknown_fields()
        .build(&[".flow", ".observer", ".peer", ".relay"])?;
    // Numbers are read with our visitor (`crate::number`) instead of pbjson's helper.
    for package in ["flow", "observer", "peer", "relay"] {
        let path = out_dir.join(format!("{package}.serde.rs"));
        let generated = std::fs::read_to_string(&path)?;
        let mut patched = open_enums(&generated.replace(
            "::pbjson::private::NumberDeserialize",
            "crate::number::NumberDeserialize",
        ));
        if package == "flow" {
            patched = read_labels(&patched, "Endpoint", "labels");
            patched = read_labels(&patched, "Flow", "node_labels");
        }
        std::fs::write(&path, patched)?;
    }
    Ok(())
}

/// `message.field` (a list of labels) is read through `crate::json::Labels`, which a
/// reader that prints and filters on no labels can tell to check them without keeping
/// them. Fails the build if the generated reader no longer has the expected shape.
fn read_labels(generated: &str, message: &str, field: &str) -> String {
    let start_marker = format!("impl<'de> serde::Deserialize<'de> for {message} {{");
    let start = generated
        .find(&start_marker)
        .unwrap_or_else(|| panic!("no generated reader of {message}"));
    let end = generated[start + start_marker.len()..]
        .find("\nimpl ")
        .map_or(generated.len(), |at| start + start_marker.len() + at);
    let read = format!("{field}__ = Some(map_.next_value()?);");
    let reader = &generated[start..end];
    assert_eq!(
        reader.matches(&read).count(),
        1,
        "the generated reader of {message}.{field} changed shape"
    );
    let patched = reader.replace(
        &read,
        &format!("{field}__ = Some(map_.next_value::<crate::json::Labels>()?.0);"),
    );
    format!("{}{patched}{}", &generated[..start], &generated[end..])
}

/// Singular enum fields are read through `crate::number::OpenEnum` (unknown names are
/// discarded and unknown numbers kept, as protojson does) instead of the enum's own
/// strict impl. Repeated enum fields (only in filters) stay strict, so a misspelt name
/// in an allowlist is still an error.
fn open_enums(generated: &str) -> String {
    const START: &str = "map_.next_value::<";
    const END: &str = ">()? as i32";
    let mut out = String::with_capacity(generated.len());
    let mut rest = generated;
    while let Some(at) = rest.find(START) {
        let after = &rest[at + START.len()..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        out.push_str(&rest[..at]);
        if after[name_len..].starts_with(END) {
            let name = &after[..name_len];
            out.push_str(&format!(
                "map_.next_value::<crate::number::OpenEnum<{name}>>()?.0"
            ));
            rest = &after[name_len + END.len()..];
        } else {
            out.push_str(START);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
