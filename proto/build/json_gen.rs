//! Generates `crate::json::ToJson` impls for every message of the API.
//!
//! The impls print the protobuf JSON mapping the way upstream `hubble` does (Go's
//! protojson with proto field names): fields in declaration order (oneof members where
//! they are declared), zero values omitted, enums by name, 64-bit integers as strings,
//! well-known wrappers as plain values and timestamps in RFC 3339 with `Z`.

use std::fmt::Write as _;

use heck::{ToSnakeCase, ToUpperCamelCase};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// Rust keywords that prost escapes as raw identifiers.
const KEYWORDS: &[&str] = &["type", "match", "ref", "move", "in", "fn", "mod", "use"];

pub fn field_ident(name: &str) -> String {
    let snake = name.to_snake_case();
    if KEYWORDS.contains(&snake.as_str()) {
        format!("r#{snake}")
    } else {
        snake
    }
}

/// Maps a fully qualified proto type name (`.flow.Flow.Nested`) to its Rust path from
/// the crate root (`crate::flow::flow::Nested`).
pub fn rust_path(full_name: &str) -> String {
    let parts: Vec<&str> = full_name.trim_start_matches('.').split('.').collect();
    let (package, rest) = parts.split_first().expect("a package-qualified type name");
    let mut path = format!("crate::{package}");
    for (i, part) in rest.iter().enumerate() {
        if i + 1 == rest.len() {
            write!(path, "::{}", part.to_upper_camel_case()).ok();
        } else {
            write!(path, "::{}", part.to_snake_case()).ok();
        }
    }
    path
}

/// Returns the generated source for all messages of `packages`.
pub fn generate(fds: &FileDescriptorSet, packages: &[&str]) -> String {
    let mut out = String::new();
    for file in &fds.file {
        let package = file.package();
        if !packages.contains(&package) {
            continue;
        }
        for message in &file.message_type {
            generate_message(&mut out, &format!(".{package}"), message);
        }
    }
    out
}

fn generate_message(out: &mut String, scope: &str, message: &DescriptorProto) {
    let full_name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        generate_message(out, &full_name, nested);
    }
    let path = rust_path(&full_name);
    writeln!(out, "impl crate::json::ToJson for {path} {{").ok();
    writeln!(
        out,
        "    #[allow(deprecated, unused_variables, unused_mut, clippy::unnecessary_cast)]\n    fn write_json(&self, w: &mut crate::json::Writer) {{\n        w.raw(\"{{\");\n        let mut first = true;"
    )
    .ok();
    for field in &message.field {
        let json_name = field.name();
        let ident = field_ident(field.name());
        let repeated = field.label() == Label::Repeated;
        if let Some(oneof_index) = field.oneof_index.filter(|_| !field.proto3_optional()) {
            let oneof = &message.oneof_decl[oneof_index as usize];
            let oneof_ident = field_ident(oneof.name());
            let oneof_type = format!(
                "{}::{}",
                rust_path(&full_name)
                    .rsplit_once("::")
                    .map(|(p, _)| p.to_string())
                    .unwrap_or_default()
                    + "::"
                    + &message.name().to_snake_case(),
                oneof.name().to_upper_camel_case()
            );
            let variant = field.name().to_upper_camel_case();
            writeln!(
                out,
                "        if let Some({oneof_type}::{variant}(v)) = &self.{oneof_ident} {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); {} }}",
                value_expr(field, "v", true)
            )
            .ok();
            continue;
        }
        if repeated {
            writeln!(
                out,
                "        if !self.{ident}.is_empty() {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); w.raw(\"[\"); let mut first_item = true; for v in &self.{ident} {{ w.item(&mut first_item); {} }} w.raw(\"]\"); }}",
                value_expr(field, "v", true)
            )
            .ok();
            continue;
        }
        match field.r#type() {
            Type::Message => writeln!(
                out,
                "        if let Some(v) = &self.{ident} {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); {} }}",
                value_expr(field, "v", true)
            ),
            Type::String => writeln!(
                out,
                "        if !self.{ident}.is_empty() {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); w.string(&self.{ident}); }}"
            ),
            Type::Bool => writeln!(
                out,
                "        if self.{ident} {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); w.raw(\"true\"); }}"
            ),
            Type::Bytes => writeln!(
                out,
                "        if !self.{ident}.is_empty() {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); w.bytes(&self.{ident}); }}"
            ),
            Type::Double | Type::Float => writeln!(
                out,
                "        if self.{ident} != 0.0 {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); w.float(self.{ident} as f64); }}"
            ),
            _ => writeln!(
                out,
                "        if self.{ident} != 0 {{ w.field(&mut first, \",\\\"{json_name}\\\":\"); {} }}",
                value_expr(field, &format!("self.{ident}"), false)
            ),
        }
        .ok();
    }
    writeln!(out, "        w.raw(\"}}\");\n    }}\n}}\n").ok();
}

/// The statement that writes one value of `field`, held in `var` (a reference when
/// `by_ref`).
fn value_expr(field: &prost_types::FieldDescriptorProto, var: &str, by_ref: bool) -> String {
    let deref = if by_ref {
        format!("*{var}")
    } else {
        var.to_string()
    };
    match field.r#type() {
        Type::Message => match field.type_name() {
            ".google.protobuf.Timestamp" => format!("w.timestamp({var});"),
            ".google.protobuf.BoolValue" => {
                format!("w.raw(if {var}.value {{ \"true\" }} else {{ \"false\" }});")
            }
            ".google.protobuf.UInt32Value" | ".google.protobuf.Int32Value" => {
                format!("w.integer({var}.value as i64);")
            }
            ".google.protobuf.UInt64Value" | ".google.protobuf.Int64Value" => {
                format!("w.quoted_integer({var}.value as i128);")
            }
            ".google.protobuf.StringValue" => format!("w.string(&{var}.value);"),
            ".google.protobuf.FieldMask" => format!("w.field_mask({var});"),
            ".google.protobuf.Any" => format!("w.any({var});"),
            _ => format!("crate::json::ToJson::write_json({var}, w);"),
        },
        Type::Enum => format!(
            "w.enumeration({}::try_from({deref}).ok().map(|e| e.as_str_name()), {deref});",
            rust_path(field.type_name())
        ),
        Type::String => format!("w.string({var});"),
        Type::Bool => format!("w.raw(if {deref} {{ \"true\" }} else {{ \"false\" }});"),
        Type::Bytes => format!("w.bytes({var});"),
        Type::Double | Type::Float => format!("w.float({deref} as f64);"),
        Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
            format!("w.quoted_integer({deref} as i128);")
        }
        _ => format!("w.integer({deref} as i64);"),
    }
}
