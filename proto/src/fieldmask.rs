//! Field masks over `flow.Flow`: only the named paths of each flow are kept
//! (`source.pod_name`, `verdict`), with upstream's semantics, for every part that masks
//! flows (the observer's GetFlows, the flow exporter, the CLI's checks).
//!
//! Paths are compiled once against the API's own descriptors, as protobuf's
//! `FieldMask.IsValid` checks them: each step names a field, only a singular message
//! field has sub-fields, and a repeated field may only come last. A bad path is refused
//! with its name and the reason.
//!
//! Masking works on the protobuf encoding: the flow is encoded, the fields outside the
//! mask are skipped, and the rest is decoded again. As upstream (which preallocates the
//! messages a mask goes through, then copies into them), a message named on the way to
//! a deeper path (`source` in `source.pod_name`) is present in every masked flow, empty
//! when the flow lacks it. A oneof member on the way (`TCP` in `l4.TCP.flags`) is
//! present the same way, unless the flow sets another member of that oneof that the
//! mask also names; of several named members the flow sets none of, the last one
//! declared is present (the one upstream's preallocation leaves set).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

use crate::flow::Flow;

/// The message every path starts from.
const ROOT: &str = "flow.Flow";

/// An error of a field mask.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldMaskError {
    /// A path does not name a field of `flow.Flow`.
    #[error("invalid field mask path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    /// A flow could not be masked (its encoding could not be read back).
    #[error("masking a flow failed: {0}")]
    Apply(String),
}

impl FieldMaskError {
    /// The bad path, for an invalid path.
    pub fn path(&self) -> Option<&str> {
        match self {
            FieldMaskError::InvalidPath { path, .. } => Some(path),
            FieldMaskError::Apply(_) => None,
        }
    }
}

/// A field as the mask needs to know it.
struct FieldInfo {
    number: u32,
    /// Full name of the message type, for singular message fields.
    message: Option<String>,
    repeated: bool,
    /// The oneof the field belongs to (not counting proto3 `optional`).
    oneof: Option<i32>,
}

/// Fields by name, per message full name (`flow.Flow`).
type Schema = HashMap<String, HashMap<String, FieldInfo>>;

fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
                .map_err(|e| format!("the API's descriptors are unreadable: {e}"))?;
            let mut schema = Schema::new();
            for file in &set.file {
                for message in &file.message_type {
                    add_message(&mut schema, file.package(), message);
                }
            }
            Ok(schema)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn add_message(schema: &mut Schema, scope: &str, message: &DescriptorProto) {
    let full = format!("{scope}.{}", message.name());
    let mut fields = HashMap::new();
    for field in &message.field {
        let repeated = field.label() == Label::Repeated;
        let message = (field.r#type() == Type::Message && !repeated)
            .then(|| field.type_name().trim_start_matches('.').to_string());
        let oneof = field.oneof_index.filter(|_| !field.proto3_optional());
        let info = FieldInfo {
            number: field.number() as u32,
            message,
            repeated,
            oneof,
        };
        fields.insert(field.name().to_string(), info);
    }
    for nested in &message.nested_type {
        add_message(schema, &full, nested);
    }
    schema.insert(full, fields);
}

/// What the mask keeps of one field.
#[derive(Debug, Clone, PartialEq)]
enum Keep {
    /// The whole field.
    All { oneof: Option<i32> },
    /// Only some fields of this message field.
    Part { node: Node, oneof: Option<i32> },
}

impl Keep {
    fn oneof(&self) -> Option<i32> {
        match self {
            Keep::All { oneof } | Keep::Part { oneof, .. } => *oneof,
        }
    }
}

/// The kept fields of one message, by field number.
#[derive(Debug, Clone, PartialEq, Default)]
struct Node(BTreeMap<u32, Keep>);

/// A compiled field mask over `flow.Flow`; the default keeps everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldMask {
    root: Node,
}

impl FieldMask {
    /// Compiles `paths`; an empty list keeps everything.
    pub fn compile<S: AsRef<str>>(paths: &[S]) -> Result<Self, FieldMaskError> {
        let mut root = Node::default();
        for path in paths {
            add_path(&mut root, path.as_ref())?;
        }
        Ok(Self { root })
    }

    /// Whether the mask removes anything.
    pub fn is_active(&self) -> bool {
        !self.root.0.is_empty()
    }

    /// Returns the masked copy of `flow` (the flow itself when the mask is inactive).
    pub fn apply(&self, flow: &Flow) -> Result<Flow, FieldMaskError> {
        if !self.is_active() {
            return Ok(flow.clone());
        }
        let bytes = flow.encode_to_vec();
        let mut out = Vec::with_capacity(bytes.len());
        filter(&self.root, &bytes, &mut out).map_err(FieldMaskError::Apply)?;
        Flow::decode(out.as_slice()).map_err(|e| FieldMaskError::Apply(e.to_string()))
    }
}

fn add_path(root: &mut Node, path: &str) -> Result<(), FieldMaskError> {
    let invalid = |reason: String| FieldMaskError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let schema = schema().map_err(invalid)?;
    let parts: Vec<&str> = path.split('.').collect();
    let mut message = ROOT.to_string();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let fields = schema
            .get(&message)
            .ok_or_else(|| invalid(format!("no descriptor for {message}")))?;
        let field = fields
            .get(*part)
            .ok_or_else(|| invalid(format!("{message} has no field {part:?}")))?;
        if i + 1 == parts.len() {
            node.0
                .insert(field.number, Keep::All { oneof: field.oneof });
            return Ok(());
        }
        let Some(sub) = &field.message else {
            let what = if field.repeated {
                "a repeated field (allowed only last)"
            } else {
                "not a message field"
            };
            return Err(invalid(format!(
                "{message}.{part} is {what}, so it has no sub-fields"
            )));
        };
        let entry = node.0.entry(field.number).or_insert_with(|| Keep::Part {
            node: Node::default(),
            oneof: field.oneof,
        });
        match entry {
            Keep::All { .. } => return Ok(()),
            Keep::Part { node: next, .. } => node = next,
        }
        message.clone_from(sub);
    }
    Err(invalid("empty path".to_string()))
}

/// Copies the fields of `input` kept by `node` into `out`, then adds the messages the
/// mask goes through that `input` lacks.
fn filter(node: &Node, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut seen = Vec::new();
    while !input.is_empty() {
        let start = input;
        let (number, wire) = decode_key(&mut input).map_err(|e| e.to_string())?;
        let value = input;
        skip_value(wire, &mut input)?;
        let Some(keep) = node.0.get(&number) else {
            continue;
        };
        seen.push(number);
        match keep {
            Keep::All { .. } => out.extend_from_slice(&start[..start.len() - input.len()]),
            Keep::Part { node: sub, .. } => {
                if wire != WireType::LengthDelimited {
                    return Err(format!("field {number} is not a message ({wire:?})"));
                }
                let mut body = value;
                let len = decode_varint(&mut body).map_err(|e| e.to_string())?;
                let body = usize::try_from(len)
                    .ok()
                    .and_then(|len| body.get(..len))
                    .ok_or_else(|| format!("field {number} is cut short"))?;
                write_message(number, sub, body, out)?;
            }
        }
    }
    let oneof_seen = |oneof: Option<i32>| {
        oneof.is_some()
            && seen
                .iter()
                .any(|n| node.0.get(n).and_then(Keep::oneof) == oneof)
    };
    for (number, keep) in &node.0 {
        let Keep::Part { node: sub, oneof } = keep else {
            continue;
        };
        if seen.contains(number) || oneof_seen(*oneof) {
            continue;
        }
        // Of a oneof's members, only the last one named is made up.
        let later_member = oneof.is_some()
            && node
                .0
                .range(number + 1..)
                .any(|(_, k)| matches!(k, Keep::Part { .. }) && k.oneof() == *oneof);
        if !later_member {
            write_message(*number, sub, &[], out)?;
        }
    }
    Ok(())
}

/// Writes message field `number` with the fields of `body` kept by `node`.
fn write_message(number: u32, node: &Node, body: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut inner = Vec::with_capacity(body.len());
    filter(node, body, &mut inner)?;
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(inner.len() as u64, out);
    out.extend_from_slice(&inner);
    Ok(())
}

fn skip_value(wire: WireType, input: &mut &[u8]) -> Result<(), String> {
    let skip = match wire {
        WireType::Varint => {
            decode_varint(input).map_err(|e| e.to_string())?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => {
            let len = decode_varint(input).map_err(|e| e.to_string())?;
            usize::try_from(len).map_err(|e| e.to_string())?
        }
        WireType::StartGroup | WireType::EndGroup => {
            return Err(format!("unexpected wire type {wire:?}"))
        }
    };
    *input = input
        .get(skip..)
        .ok_or_else(|| "a field is cut short".to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests;
