//! Field mask paths checked against the `flow.Flow` message, as protobuf's
//! `fieldmaskpb.New` checks them.

use std::sync::OnceLock;

use prost::Message;
use prost_types::{field_descriptor_proto::Type, DescriptorProto, FileDescriptorSet};

fn descriptors() -> &'static FileDescriptorSet {
    static SET: OnceLock<FileDescriptorSet> = OnceLock::new();
    SET.get_or_init(|| FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap_or_default())
}

fn message(full_name: &str) -> Option<&'static DescriptorProto> {
    let name = full_name.trim_start_matches('.');
    for file in &descriptors().file {
        let package = file.package.as_deref().unwrap_or("");
        for msg in &file.message_type {
            if let Some(found) = find_nested(msg, package, name) {
                return Some(found);
            }
        }
    }
    None
}

fn find_nested<'a>(
    msg: &'a DescriptorProto,
    prefix: &str,
    wanted: &str,
) -> Option<&'a DescriptorProto> {
    let full = format!("{prefix}.{}", msg.name.as_deref().unwrap_or(""));
    if full == wanted {
        return Some(msg);
    }
    msg.nested_type
        .iter()
        .find_map(|nested| find_nested(nested, &full, wanted))
}

/// Checks that every path names a field of `flow.Flow` (nested through message
/// fields), failing like upstream with the first bad one.
pub fn validate_flow_paths(paths: &[String]) -> Result<(), String> {
    for path in paths {
        let mut current = message("flow.Flow");
        let mut ok = current.is_some();
        for (i, part) in path.split('.').enumerate() {
            let Some(msg) = current else {
                ok = false;
                break;
            };
            let Some(field) = msg.field.iter().find(|f| f.name.as_deref() == Some(part)) else {
                ok = false;
                break;
            };
            let is_last = i + 1 == path.split('.').count();
            current = if field.r#type() == Type::Message && !is_last {
                field.type_name.as_deref().and_then(message)
            } else {
                None
            };
            if !is_last && current.is_none() {
                ok = false;
                break;
            }
        }
        if !ok {
            return Err(format!(
                "failed to construct field mask: proto: invalid path {} for message \"flow.Flow\"",
                crate::quote::go_quote(path)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_paths_against_flow() {
        let paths: Vec<String> = crate::cmd::observe::request::DEFAULT_FIELD_MASK
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(validate_flow_paths(&paths), Ok(()));
        assert_eq!(
            validate_flow_paths(&["source.nope".to_string()]),
            Err("failed to construct field mask: proto: invalid path \"source.nope\" for message \"flow.Flow\"".to_string())
        );
        assert!(validate_flow_paths(&["time.seconds".to_string()]).is_ok());
    }
}
