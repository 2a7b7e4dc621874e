//! Generates `crate::filter::cel::ToCel` impls for the messages of the flow package:
//! a message as a CEL map keyed by proto field names, the way cel-go presents a
//! protobuf message to upstream's `_flow` expressions. Every field is present (unset
//! scalars and messages read as their defaults, as in protobuf), enums are ints,
//! unsigned integers uints, wrappers their value or null.

use std::fmt::Write as _;

use heck::{ToSnakeCase, ToUpperCamelCase};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

use crate::json_gen::{field_ident, rust_path};

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
    // The package's enums as `name -> {VALUE: number}`, so an expression may name
    // `Verdict.DROPPED` (upstream's CEL container is "flow").
    writeln!(out, "/// The top-level enums of the flow package, by name.\npub fn enums() -> Vec<(&'static str, ::cel::Value)> {{\n    vec![").ok();
    for file in &fds.file {
        if !packages.contains(&file.package()) {
            continue;
        }
        for e in &file.enum_type {
            let values: Vec<String> = e
                .value
                .iter()
                .map(|v| format!("(\"{}\", {}i64)", v.name(), v.number()))
                .collect();
            writeln!(
                out,
                "        (\"{}\", crate::filter::cel::constants(&[{}])),",
                e.name(),
                values.join(", ")
            )
            .ok();
        }
    }
    writeln!(out, "    ]\n}}").ok();
    out
}

fn generate_message(out: &mut String, scope: &str, message: &DescriptorProto) {
    let full_name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        generate_message(out, &full_name, nested);
    }
    let path = rust_path(&full_name);
    writeln!(
        out,
        "impl crate::filter::cel::ToCel for {path} {{\n    #[allow(deprecated, unused_mut, unused_parens, unused_variables, clippy::unnecessary_cast, clippy::double_parens)]\n    fn to_cel(&self) -> ::cel::Value {{\n        let mut m: ::std::collections::HashMap<::cel::objects::Key, ::cel::Value> = ::std::collections::HashMap::with_capacity({});",
        message.field.len()
    )
    .ok();
    for field in &message.field {
        let name = field.name();
        let ident = field_ident(name);
        let value = if let Some(index) = field.oneof_index.filter(|_| !field.proto3_optional()) {
            let oneof = &message.oneof_decl[index as usize];
            let oneof_type = format!(
                "{}::{}::{}",
                path.rsplit_once("::").map(|(p, _)| p).unwrap_or_default(),
                message.name().to_snake_case(),
                oneof.name().to_upper_camel_case()
            );
            let variant = field.name().to_upper_camel_case();
            format!(
                "match &self.{} {{ Some({oneof_type}::{variant}(v)) => {{ {} }}, _ => {} }}",
                field_ident(oneof.name()),
                single(field, "v", true),
                default_of(field)
            )
        } else if field.label() == Label::Repeated {
            format!(
                "::cel::Value::List(::std::sync::Arc::new(self.{ident}.iter().map(|v| {{ {} }}).collect()))",
                single(field, "v", true)
            )
        } else if field.r#type() == Type::Message {
            format!(
                "match &self.{ident} {{ Some(v) => {{ {} }}, None => {} }}",
                single(field, "v", true),
                default_of(field)
            )
        } else {
            single(field, &format!("self.{ident}"), false)
        };
        writeln!(out, "        m.insert(\"{name}\".into(), {value});").ok();
    }
    writeln!(out, "        ::cel::Value::Map(m.into())\n    }}\n}}\n").ok();
}

/// The CEL value of an unset message field.
fn default_of(field: &FieldDescriptorProto) -> String {
    match field.type_name() {
        name if name.starts_with(".google.protobuf.") && name.ends_with("Value") => {
            "::cel::Value::Null".to_string()
        }
        ".google.protobuf.Any" => "::cel::Value::Null".to_string(),
        ".google.protobuf.Timestamp" => "crate::filter::cel::timestamp(0, 0)".to_string(),
        name if field.r#type() == Type::Message => format!(
            "{{ static D: ::std::sync::OnceLock<::cel::Value> = ::std::sync::OnceLock::new(); D.get_or_init(|| crate::filter::cel::ToCel::to_cel(&{}::default())).clone() }}",
            rust_path(name)
        ),
        _ => single(field, "Default::default()", false),
    }
}

/// The CEL value of one value `var` of `field` (a reference when `by_ref`).
fn single(field: &FieldDescriptorProto, var: &str, by_ref: bool) -> String {
    let v = if by_ref {
        format!("(*{var})")
    } else {
        var.to_string()
    };
    match field.r#type() {
        Type::Message => match field.type_name() {
            ".google.protobuf.Timestamp" => {
                format!("crate::filter::cel::timestamp({var}.seconds, {var}.nanos)")
            }
            ".google.protobuf.BoolValue" => format!("::cel::Value::Bool({var}.value)"),
            ".google.protobuf.UInt32Value" | ".google.protobuf.UInt64Value" => {
                format!("::cel::Value::UInt({var}.value as u64)")
            }
            ".google.protobuf.Int32Value" | ".google.protobuf.Int64Value" => {
                format!("::cel::Value::Int({var}.value as i64)")
            }
            ".google.protobuf.StringValue" => {
                format!("::cel::Value::String(::std::sync::Arc::new({var}.value.clone()))")
            }
            ".google.protobuf.Any" | ".google.protobuf.FieldMask" => {
                "::cel::Value::Null".to_string()
            }
            _ => format!("crate::filter::cel::ToCel::to_cel({var})"),
        },
        Type::String => format!("::cel::Value::String(::std::sync::Arc::new({var}.clone()))"),
        Type::Bytes => format!("::cel::Value::Bytes(::std::sync::Arc::new({var}.to_vec()))"),
        Type::Bool => format!("::cel::Value::Bool({v})"),
        Type::Double | Type::Float => format!("::cel::Value::Float({v} as f64)"),
        Type::Uint32 | Type::Uint64 | Type::Fixed32 | Type::Fixed64 => {
            format!("::cel::Value::UInt({v} as u64)")
        }
        _ => format!("::cel::Value::Int({v} as i64)"),
    }
}
