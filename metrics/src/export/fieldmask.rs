//! Field masks over `flow.Flow`: keep only the listed fields (`source.namespace`,
//! `verdict`), with upstream's semantics.
//!
//! Paths use proto field names and are checked against the API's descriptors. Masking
//! works on the protobuf encoding: the flow is encoded, fields not in the mask are
//! skipped, and the result is decoded again. As upstream (which copies into a
//! preallocated message), a path into a message the flow lacks yields that message
//! empty (`"source":{}`).

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use proto::flow::Flow;

use crate::error::ExportError;

/// The fully qualified name of the masked message.
const FLOW_MESSAGE: &str = ".flow.Flow";
/// Protobuf wire types.
const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

/// A compiled field mask: a tree of field numbers. A leaf keeps the whole field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMask {
    fields: BTreeMap<u32, FieldMask>,
}

impl FieldMask {
    /// Compiles `paths`; an empty list gives an inactive mask that keeps everything.
    pub fn new(paths: &[String]) -> Result<Self, ExportError> {
        if paths.is_empty() {
            return Ok(Self::default());
        }
        let set = FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).map_err(|e| {
            ExportError::FieldMask {
                path: String::new(),
                reason: format!("API descriptors unreadable: {e}"),
            }
        })?;
        let mut messages = BTreeMap::new();
        for file in &set.file {
            let package = file.package.clone().unwrap_or_default();
            for message in &file.message_type {
                collect_messages(&format!(".{package}"), message, &mut messages);
            }
        }
        let mut mask = FieldMask::default();
        for path in paths {
            mask.add(path, &messages)?;
        }
        mask.normalize();
        Ok(mask)
    }

    /// Whether the mask removes anything.
    pub fn is_active(&self) -> bool {
        !self.fields.is_empty()
    }

    fn add(
        &mut self,
        path: &str,
        messages: &BTreeMap<String, DescriptorProto>,
    ) -> Result<(), ExportError> {
        let error = |reason: String| ExportError::FieldMask {
            path: path.to_owned(),
            reason,
        };
        let mut node = self;
        let mut message_name = FLOW_MESSAGE.to_owned();
        let parts: Vec<&str> = path.split('.').collect();
        for (index, part) in parts.iter().enumerate() {
            let message = messages
                .get(&message_name)
                .ok_or_else(|| error(format!("{message_name} has no fields")))?;
            let field = message
                .field
                .iter()
                .find(|f| f.name() == *part)
                .ok_or_else(|| {
                    let valid: Vec<&str> = message.field.iter().map(|f| f.name()).collect();
                    error(format!(
                        "{} has no field {part:?}; its fields are: {}",
                        message_name.trim_start_matches('.'),
                        valid.join(", ")
                    ))
                })?;
            let last = index + 1 == parts.len();
            if !last {
                if field.r#type() != Type::Message || field.label() == Label::Repeated {
                    return Err(error(format!(
                        "{part:?} is not a singular message, nothing can be selected inside it"
                    )));
                }
                message_name = field.type_name().to_owned();
            }
            node = node.fields.entry(field.number() as u32).or_default();
            if last {
                node.fields.clear();
                // Mark as a leaf that overrides any sub-paths given before or after.
                node.fields.insert(u32::MAX, FieldMask::default());
            }
        }
        Ok(())
    }

    /// Turns leaf markers into empty subtrees, dropping sub-paths under kept fields.
    fn normalize(&mut self) {
        for child in self.fields.values_mut() {
            if child.fields.contains_key(&u32::MAX) {
                child.fields.clear();
            } else {
                child.normalize();
            }
        }
    }

    /// Returns a copy of `flow` with only the masked fields.
    pub fn apply(&self, flow: &Flow) -> Flow {
        if !self.is_active() {
            return flow.clone();
        }
        let encoded = flow.encode_to_vec();
        let mut pruned = Vec::with_capacity(encoded.len());
        self.prune(&encoded, &mut pruned);
        // The input came from prost and pruning keeps whole fields, so decoding cannot
        // fail; an empty flow is the safe answer if it ever did.
        Flow::decode(pruned.as_slice()).unwrap_or_default()
    }

    fn prune(&self, mut input: &[u8], out: &mut Vec<u8>) {
        let mut seen = Vec::new();
        while !input.is_empty() {
            let start = input;
            let Some(tag) = read_varint(&mut input) else {
                return;
            };
            let number = (tag >> 3) as u32;
            let wire = tag & 7;
            let Some(payload) = skip_payload(wire, &mut input) else {
                return;
            };
            let Some(child) = self.fields.get(&number) else {
                continue;
            };
            seen.push(number);
            if child.fields.is_empty() || wire != WIRE_LEN {
                out.extend_from_slice(&start[..start.len() - input.len()]);
            } else {
                let mut inner = Vec::with_capacity(payload.len());
                child.prune(payload, &mut inner);
                write_varint(out, tag);
                write_varint(out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
        }
        for (number, child) in &self.fields {
            if !child.fields.is_empty() && !seen.contains(number) {
                write_varint(out, (u64::from(*number) << 3) | WIRE_LEN);
                write_varint(out, 0);
            }
        }
    }
}

fn collect_messages(
    scope: &str,
    message: &DescriptorProto,
    out: &mut BTreeMap<String, DescriptorProto>,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect_messages(&name, nested, out);
    }
    out.insert(name, message.clone());
}

fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Skips the payload of a field of wire type `wire`; returns it (for length-delimited
/// fields, the bytes inside).
fn skip_payload<'a>(wire: u64, input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = match wire {
        WIRE_VARINT => {
            let before = *input;
            read_varint(input)?;
            return Some(&before[..before.len() - input.len()]);
        }
        WIRE_FIXED64 => 8,
        WIRE_FIXED32 => 4,
        WIRE_LEN => usize::try_from(read_varint(input)?).ok()?,
        _ => return None,
    };
    if input.len() < len {
        return None;
    }
    let (payload, rest) = input.split_at(len);
    *input = rest;
    Some(payload)
}
