//! GetFlows' `field_mask`: only the named paths of each flow are sent.
//!
//! Paths are checked against `flow.Flow`'s descriptor (from the API's own descriptor
//! set), so a bad path is rejected up front with its name. Masking works on the
//! protobuf encoding: the flow is encoded, the fields outside the mask are skipped, and
//! the rest is decoded again. As upstream does, a message named by a deeper path (say
//! `source` in `source.pod_name`) is present, possibly empty, in every masked flow,
//! except for members of a oneof (like `l4.TCP`), which appear only when set.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use proto::flow::Flow;

use crate::error::ObserverError;

/// A field as the mask needs to know it.
struct FieldInfo {
    number: u32,
    /// Full name of the message type for singular message fields.
    message: Option<String>,
    in_oneof: bool,
}

/// Fields by name, per message full name (`flow.Flow`).
type Schema = HashMap<String, HashMap<String, FieldInfo>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = Schema::new();
        let Ok(set) = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET) else {
            return schema;
        };
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                add_message(&mut schema, package, message);
            }
        }
        schema
    })
}

fn add_message(schema: &mut Schema, scope: &str, message: &prost_types::DescriptorProto) {
    let full = format!("{scope}.{}", message.name());
    let mut fields = HashMap::new();
    for field in &message.field {
        let singular_message = field.r#type() == Type::Message && field.label() != Label::Repeated;
        fields.insert(
            field.name().to_string(),
            FieldInfo {
                number: field.number() as u32,
                message: singular_message
                    .then(|| field.type_name().trim_start_matches('.').to_string()),
                in_oneof: field.oneof_index.is_some() && !field.proto3_optional(),
            },
        );
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
    All,
    /// Only some fields of this message field.
    Part { node: Node, in_oneof: bool },
}

/// The kept fields of one message, by field number.
#[derive(Debug, Clone, PartialEq, Default)]
struct Node(BTreeMap<u32, Keep>);

/// A compiled field mask over `flow.Flow`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldMask {
    root: Node,
}

impl FieldMask {
    /// Compiles `paths`; an empty list keeps everything.
    pub fn compile(paths: &[String]) -> Result<Self, ObserverError> {
        let mut root = Node::default();
        for path in paths {
            add_path(&mut root, path)?;
        }
        Ok(Self { root })
    }

    /// Whether the mask removes anything.
    pub fn is_active(&self) -> bool {
        !self.root.0.is_empty()
    }

    /// Returns the masked copy of `flow`.
    pub fn apply(&self, flow: &Flow) -> Flow {
        if !self.is_active() {
            return flow.clone();
        }
        let bytes = flow.encode_to_vec();
        let mut out = Vec::with_capacity(bytes.len());
        match filter(&self.root, &bytes, &mut out) {
            Some(()) => Flow::decode(out.as_slice()).unwrap_or_default(),
            None => Flow::default(),
        }
    }
}

fn add_path(root: &mut Node, path: &str) -> Result<(), ObserverError> {
    let invalid = |reason: String| ObserverError::InvalidFieldMask {
        path: path.to_string(),
        reason,
    };
    let parts: Vec<&str> = path.split('.').collect();
    let mut message = "flow.Flow".to_string();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let fields = schema()
            .get(&message)
            .ok_or_else(|| invalid(format!("no descriptor for {message}")))?;
        let field = fields
            .get(*part)
            .ok_or_else(|| invalid(format!("{message} has no field {part:?}")))?;
        let last = i + 1 == parts.len();
        if last {
            node.0.insert(field.number, Keep::All);
            return Ok(());
        }
        let Some(sub) = &field.message else {
            return Err(invalid(format!(
                "{message}.{part} is not a message field, so it has no sub-fields"
            )));
        };
        let entry = node.0.entry(field.number).or_insert_with(|| Keep::Part {
            node: Node::default(),
            in_oneof: field.in_oneof,
        });
        match entry {
            Keep::All => return Ok(()),
            Keep::Part { node: next, .. } => node = next,
        }
        message = sub.clone();
    }
    Err(invalid("empty path".to_string()))
}

/// Copies the fields of `input` kept by `node` into `out`.
fn filter(node: &Node, mut input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut seen = Vec::new();
    while !input.is_empty() {
        let start = input;
        let (number, wire) = decode_key(&mut input).ok()?;
        let value_start = input;
        skip_value(wire, &mut input)?;
        let Some(keep) = node.0.get(&number) else {
            continue;
        };
        seen.push(number);
        match keep {
            Keep::All => out.extend_from_slice(&start[..start.len() - input.len()]),
            Keep::Part { node: sub, .. } => {
                let mut body = value_start;
                let len = usize::try_from(decode_varint(&mut body).ok()?).ok()?;
                let mut inner = Vec::new();
                filter(sub, body.get(..len)?, &mut inner)?;
                encode_key(number, WireType::LengthDelimited, out);
                encode_varint(inner.len() as u64, out);
                out.extend_from_slice(&inner);
            }
        }
    }
    for (number, keep) in &node.0 {
        if let Keep::Part {
            node: sub,
            in_oneof: false,
        } = keep
        {
            if !seen.contains(number) {
                let mut inner = Vec::new();
                filter(sub, &[], &mut inner)?;
                encode_key(*number, WireType::LengthDelimited, out);
                encode_varint(inner.len() as u64, out);
                out.extend_from_slice(&inner);
            }
        }
    }
    Some(())
}

fn skip_value(wire: WireType, input: &mut &[u8]) -> Option<()> {
    let skip = match wire {
        WireType::Varint => {
            decode_varint(input).ok()?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => usize::try_from(decode_varint(input).ok()?).ok()?,
        WireType::StartGroup | WireType::EndGroup => return None,
    };
    *input = input.get(skip..)?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn keeps_only_the_named_paths() {
        let flow = sample::flow(3);
        let mask = FieldMask::compile(&paths(&[
            "time",
            "source.pod_name",
            "verdict",
            "l4.TCP.destination_port",
        ]))
        .expect("valid paths");
        let masked = mask.apply(&flow);
        assert_eq!(masked.time, flow.time);
        assert_eq!(masked.verdict, flow.verdict);
        assert_eq!(
            masked.source.as_ref().map(|s| s.pod_name.as_str()),
            flow.source.as_ref().map(|s| s.pod_name.as_str())
        );
        assert_eq!(masked.source.as_ref().map(|s| s.labels.len()), Some(0));
        assert!(masked.destination.is_none());
        assert!(masked.node_name.is_empty());
        assert!(masked.uuid.is_empty());
    }

    #[test]
    fn nested_messages_exist_even_when_the_flow_lacks_them() {
        let mut flow = sample::flow(3);
        flow.destination = None;
        let mask = FieldMask::compile(&paths(&["destination.namespace"])).expect("valid");
        assert_eq!(mask.apply(&flow).destination, Some(Default::default()));
    }

    #[test]
    fn whole_field_wins_over_sub_paths() {
        let flow = sample::flow(3);
        let mask = FieldMask::compile(&paths(&["source.pod_name", "source"])).expect("valid");
        assert_eq!(mask.apply(&flow).source, flow.source);
    }

    #[test]
    fn bad_paths_are_named() {
        for (path, needle) in [
            ("nope", "has no field \"nope\""),
            ("source.nope", "flow.Endpoint has no field \"nope\""),
            ("verdict.x", "not a message field"),
            ("source_names.x", "not a message field"),
        ] {
            let err = FieldMask::compile(&paths(&[path]))
                .expect_err(path)
                .to_string();
            assert!(err.contains(path) && err.contains(needle), "{err}");
        }
        assert!(!FieldMask::compile(&[]).expect("empty").is_active());
    }
}
