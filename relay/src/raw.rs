//! GetFlows responses as the nodes encoded them.
//!
//! The relay needs two fields of a node's response to merge it: its time and whether it
//! names its node. [`RawResponse`] reads just those from the protobuf bytes and keeps the
//! bytes, which go to the client unchanged: a flow crossing the relay is never decoded
//! into a `Flow` nor encoded again. Responses the relay makes itself (node status, lost
//! events) travel decoded, in [`RelayResponse::Message`].
//!
//! [`NodeFlowsCodec`] is the client side (request encoded by prost, responses kept raw);
//! [`RelayResponseEncoder`] writes the server side's responses as they are
//! ([`RawGetFlowsServer`]).

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, ProstCodec};
use tonic::Status;

use crate::error::RequestError;

/// Field numbers of `observer.GetFlowsResponse` and `flow.Flow` the relay reads.
const RESPONSE_FLOW: u32 = 1;
const RESPONSE_NODE_STATUS: u32 = 2;
const RESPONSE_LOST_EVENTS: u32 = 3;
const RESPONSE_NODE_NAME: u32 = 1000;
const RESPONSE_TIME: u32 = 1001;
const FLOW_TIME: u32 = 1;
const TIMESTAMP_SECONDS: u32 = 1;
const TIMESTAMP_NANOS: u32 = 2;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// Which member of the response's `response_types` oneof is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// A flow.
    Flow,
    /// A node status event.
    NodeStatus,
    /// A lost-events notice.
    LostEvents,
    /// None, or one this version does not know.
    Other,
}

/// A GetFlowsResponse as a node encoded it, with the fields the relay needs.
#[derive(Debug, Clone)]
pub struct RawResponse {
    bytes: Bytes,
    /// `time`, or else the flow's `time`, in nanoseconds since the epoch.
    pub time: Option<i128>,
    /// Whether `node_name` is set and not empty.
    pub has_node_name: bool,
    /// The oneof member that is set.
    pub kind: ResponseKind,
}

/// Why bytes are not a GetFlowsResponse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed GetFlowsResponse: {0}")]
pub struct MalformedResponse(&'static str);

/// Why the relay refuses a node's response: a client could not decode it (a string that
/// is not UTF-8, a field of the wrong wire type, bytes cut short).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidResponse(String);

/// What the relay reads from a node: a response it can forward, or why it cannot.
pub type NodeResponse = Result<RawResponse, InvalidResponse>;

impl RawResponse {
    /// Reads the fields the relay needs; the bytes are kept as they are. Repeated
    /// fields are read as protobuf merges them, so the time the relay merges by is the
    /// time a client decodes.
    pub fn parse(bytes: Bytes) -> Result<Self, MalformedResponse> {
        let mut response = RawResponse {
            time: None,
            has_node_name: false,
            kind: ResponseKind::Other,
            bytes: Bytes::new(),
        };
        let mut time = None;
        let mut fields = Fields::new(&bytes);
        while let Some(field) = fields.next_field()? {
            match field {
                Field::Len(RESPONSE_FLOW, _) => response.kind = ResponseKind::Flow,
                Field::Len(RESPONSE_NODE_STATUS, _) => response.kind = ResponseKind::NodeStatus,
                Field::Len(RESPONSE_LOST_EVENTS, _) => response.kind = ResponseKind::LostEvents,
                Field::Len(RESPONSE_NODE_NAME, name) => response.has_node_name = !name.is_empty(),
                Field::Len(RESPONSE_TIME, timestamp) => merge_timestamp(&mut time, timestamp)?,
                _ => {}
            }
        }
        if time.is_none() && response.kind == ResponseKind::Flow {
            // Only when the response has no time of its own: the flow's, which nodes
            // write first. The `flow` fields after the oneof's last other member are
            // merged into one flow, and so are their `time` fields.
            let mut fields = Fields::new(&bytes);
            while let Some(field) = fields.next_field()? {
                match field {
                    Field::Len(RESPONSE_FLOW, flow) => {
                        let mut inner = Fields::new(flow);
                        while let Some(field) = inner.next_field()? {
                            if let Field::Len(FLOW_TIME, timestamp) = field {
                                merge_timestamp(&mut time, timestamp)?;
                            }
                        }
                    }
                    Field::Len(RESPONSE_NODE_STATUS | RESPONSE_LOST_EVENTS, _) => time = None,
                    _ => {}
                }
            }
        }
        response.time =
            time.map(|(seconds, nanos)| i128::from(seconds) * 1_000_000_000 + i128::from(nanos));
        response.bytes = bytes;
        Ok(response)
    }

    /// Like [`RawResponse::parse`], after checking that the whole response decodes as a
    /// client decodes it; the bytes go on unchanged.
    /// Without this check one node's bad string would end every client's stream (their
    /// decoders fail on it), not just that node's.
    ///
    /// The common case costs a walk over the bytes (`crate::wire_check`), no allocation;
    /// only what the walk cannot vouch for is decoded by prost, whose answer is final.
    pub fn parse_checked(bytes: Bytes) -> NodeResponse {
        if !crate::wire_check::decodes(&bytes) {
            GetFlowsResponse::decode(bytes.as_ref()).map_err(|e| InvalidResponse(e.to_string()))?;
        }
        Self::parse(bytes).map_err(|e| InvalidResponse(e.to_string()))
    }

    /// The encoded response.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Sets `node_name` when the node left it empty: a field appended to a message
    /// overrides any earlier one.
    pub fn set_missing_node_name(&mut self, name: &str) {
        if self.has_node_name || name.is_empty() {
            return;
        }
        let mut bytes = BytesMut::with_capacity(self.bytes.len() + name.len() + 8);
        bytes.put_slice(&self.bytes);
        put_varint(
            &mut bytes,
            u64::from(RESPONSE_NODE_NAME << 3 | u32::from(WIRE_LEN)),
        );
        put_varint(&mut bytes, name.len() as u64);
        bytes.put_slice(name.as_bytes());
        self.bytes = bytes.freeze();
        self.has_node_name = true;
    }

    /// Decodes the whole response.
    // Status is the error type of the gRPC stream this feeds.
    #[allow(clippy::result_large_err)]
    pub fn decode(&self) -> Result<GetFlowsResponse, Status> {
        GetFlowsResponse::decode(self.bytes.clone())
            .map_err(|e| RequestError::MalformedResponse(e.to_string()).into())
    }
}

/// A response on its way to a relay client.
#[derive(Debug)]
pub enum RelayResponse {
    /// As a node encoded it.
    Raw(RawResponse),
    /// Made by the relay (boxed so that queue slots stay small).
    Message(Box<GetFlowsResponse>),
}

impl RelayResponse {
    /// The response as a message, decoding it if it is raw.
    #[allow(clippy::result_large_err)]
    pub fn into_message(self) -> Result<GetFlowsResponse, Status> {
        match self {
            RelayResponse::Raw(raw) => raw.decode(),
            RelayResponse::Message(message) => Ok(*message),
        }
    }

    /// Whether the response carries a flow.
    pub fn is_flow(&self) -> bool {
        match self {
            RelayResponse::Raw(raw) => raw.kind == ResponseKind::Flow,
            RelayResponse::Message(message) => matches!(
                message.response_types,
                Some(proto::observer::get_flows_response::ResponseTypes::Flow(_))
            ),
        }
    }
}

impl From<GetFlowsResponse> for RelayResponse {
    fn from(message: GetFlowsResponse) -> Self {
        RelayResponse::Message(Box::new(message))
    }
}

enum Field<'a> {
    Varint(u32, u64),
    Len(u32, &'a [u8]),
    Fixed,
}

/// The top-level fields of an encoded message.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, MalformedResponse> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(MalformedResponse("bad varint"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], MalformedResponse> {
        if len > self.rest.len() {
            return Err(MalformedResponse("field runs past the end"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<Option<Field<'a>>, MalformedResponse> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| MalformedResponse("bad field number"))?;
        match (key & 7) as u8 {
            WIRE_VARINT => Ok(Some(Field::Varint(number, self.varint()?))),
            WIRE_FIXED64 => {
                self.take(8)?;
                Ok(Some(Field::Fixed))
            }
            WIRE_LEN => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| MalformedResponse("bad length"))?;
                Ok(Some(Field::Len(number, self.take(len)?)))
            }
            WIRE_FIXED32 => {
                self.take(4)?;
                Ok(Some(Field::Fixed))
            }
            _ => Err(MalformedResponse("unsupported wire type")),
        }
    }
}

/// Merges one encoded `Timestamp` into `time` (seconds, nanos) as protobuf merges a
/// message field that occurs more than once: each field it sets overrides.
fn merge_timestamp(time: &mut Option<(i64, i32)>, bytes: &[u8]) -> Result<(), MalformedResponse> {
    let (seconds, nanos) = time.get_or_insert((0, 0));
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next_field()? {
        match field {
            // Two's complement, as protobuf encodes negative int64 and int32.
            Field::Varint(TIMESTAMP_SECONDS, v) => *seconds = v as i64,
            Field::Varint(TIMESTAMP_NANOS, v) => *nanos = v as i32,
            _ => {}
        }
    }
    Ok(())
}

fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Decodes a node's responses raw, each checked ([`RawResponse::parse_checked`]); a
/// response that fails the check is an item, not a stream error, so that the relay tells
/// it from the node's own statuses.
#[derive(Debug, Default)]
pub struct RawResponseDecoder;

impl Decoder for RawResponseDecoder {
    type Item = NodeResponse;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<NodeResponse>, Status> {
        use bytes::Buf;
        let bytes = buf.copy_to_bytes(buf.remaining());
        Ok(Some(RawResponse::parse_checked(bytes)))
    }
}

/// Writes responses as they are (raw) or encodes them (made by the relay).
#[derive(Debug, Default)]
pub struct RelayResponseEncoder;

impl Encoder for RelayResponseEncoder {
    type Item = RelayResponse;
    type Error = Status;

    fn encode(&mut self, item: RelayResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            RelayResponse::Raw(raw) => {
                dst.put_slice(raw.bytes());
                Ok(())
            }
            RelayResponse::Message(message) => message
                .encode(dst)
                .map_err(|e| RequestError::Encode(e.to_string()).into()),
        }
    }
}

/// Client side of GetFlows towards a node: the request encoded, responses raw.
#[derive(Debug, Default, Clone)]
pub struct NodeFlowsCodec;

impl Codec for NodeFlowsCodec {
    type Encode = GetFlowsRequest;
    type Decode = NodeResponse;
    type Encoder = <ProstCodec<GetFlowsRequest, GetFlowsRequest> as Codec>::Encoder;
    type Decoder = RawResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<GetFlowsRequest, GetFlowsRequest>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawResponseDecoder
    }
}

/// An Observer server whose GetFlows is answered with [`RelayResponse`]s written as they
/// are (node bytes pass through undecoded); every other method is the generated server's.
pub type RawGetFlowsServer<T, C> = proto::get_flows::GetFlowsServer<T, C, RelayResponseEncoder>;

#[cfg(test)]
mod tests {
    use super::*;
    use pbjson_types::Timestamp;
    use proto::flow::{Flow, LostEvent};
    use proto::observer::get_flows_response::ResponseTypes;

    fn encoded(response: &GetFlowsResponse) -> Bytes {
        Bytes::from(response.encode_to_vec())
    }

    fn flow_at(seconds: i64, nanos: i32) -> Flow {
        Flow {
            time: Some(Timestamp { seconds, nanos }),
            node_name: "node1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_time_node_name_and_kind_and_keeps_the_bytes() {
        let response = GetFlowsResponse {
            node_name: "node1".into(),
            time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123,
            }),
            response_types: Some(ResponseTypes::Flow(flow_at(1, 2))),
        };
        let bytes = encoded(&response);
        let raw = RawResponse::parse(bytes.clone()).expect("parses");
        assert_eq!(raw.time, Some(1_700_000_000_000_000_123));
        assert!(raw.has_node_name);
        assert_eq!(raw.kind, ResponseKind::Flow);
        assert_eq!(raw.bytes(), &bytes);
        assert_eq!(raw.decode().expect("decodes"), response);
    }

    #[test]
    fn falls_back_to_the_flow_time_and_fills_a_missing_node_name() {
        let response = GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(flow_at(1_700_000_001, 5))),
            ..Default::default()
        };
        let mut raw = RawResponse::parse(encoded(&response)).expect("parses");
        assert_eq!(raw.time, Some(1_700_000_001_000_000_005));
        assert!(!raw.has_node_name);
        raw.set_missing_node_name("node7");
        let decoded = raw.decode().expect("decodes");
        assert_eq!(decoded.node_name, "node7");
        assert_eq!(decoded.response_types, response.response_types);
        // Parsing the result again sees the name.
        assert!(
            RawResponse::parse(raw.bytes().clone())
                .expect("parses")
                .has_node_name
        );
    }

    #[test]
    fn tells_lost_events_and_missing_time() {
        let response = GetFlowsResponse {
            node_name: "node1".into(),
            response_types: Some(ResponseTypes::LostEvents(LostEvent::default())),
            ..Default::default()
        };
        let raw = RawResponse::parse(encoded(&response)).expect("parses");
        assert_eq!(raw.kind, ResponseKind::LostEvents);
        assert_eq!(raw.time, None);
        assert!(!RelayResponse::Raw(raw).is_flow());
    }

    #[test]
    fn negative_times_and_unknown_fields_are_read() {
        let mut bytes = GetFlowsResponse {
            time: Some(Timestamp {
                seconds: -2,
                nanos: 500,
            }),
            ..Default::default()
        }
        .encode_to_vec();
        // An unknown fixed32 field (number 7) and an unknown varint field (number 9).
        bytes.extend_from_slice(&[7 << 3 | 5, 1, 2, 3, 4, 9 << 3, 0x96, 0x01]);
        let raw = RawResponse::parse(Bytes::from(bytes)).expect("parses");
        assert_eq!(raw.time, Some(-2_000_000_000 + 500));
    }

    #[test]
    fn truncated_bytes_are_an_error() {
        let bytes = encoded(&GetFlowsResponse {
            node_name: "node1".into(),
            response_types: Some(ResponseTypes::Flow(flow_at(1, 2))),
            ..Default::default()
        });
        for cut in 1..bytes.len() {
            // Every strict prefix either parses as fewer fields or is reported; none panics.
            let _ = RawResponse::parse(bytes.slice(..cut));
        }
        let err = RawResponse::parse(bytes.slice(..bytes.len() - 1)).expect_err("cut short");
        assert!(
            err.to_string().contains("malformed GetFlowsResponse"),
            "{err}"
        );
        assert!(RawResponse::parse(Bytes::from_static(&[0xff; 11])).is_err());
    }

    #[test]
    fn a_response_a_client_cannot_decode_is_refused_by_the_check_only() {
        let response = GetFlowsResponse {
            node_name: "node2".into(),
            response_types: Some(ResponseTypes::Flow(Flow {
                uuid: "abcd".into(),
                ..flow_at(1, 2)
            })),
            ..Default::default()
        };
        let good = encoded(&response);
        assert!(RawResponse::parse_checked(good.clone()).is_ok());
        let mut bad = good.to_vec();
        let at = bad
            .windows(4)
            .position(|w| w == b"abcd")
            .expect("uuid encoded");
        bad[at] = 0xff;
        let bad = Bytes::from(bad);
        // The cheap parse reads it (it never looks at the uuid); the check refuses it.
        assert!(RawResponse::parse(bad.clone()).is_ok());
        let refused = RawResponse::parse_checked(bad).expect_err("not UTF-8");
        assert!(refused.to_string().contains("Flow.uuid"), "{refused}");
        let cut = RawResponse::parse_checked(good.slice(..good.len() - 1)).expect_err("cut");
        assert!(!cut.to_string().is_empty());
    }

    #[test]
    fn repeated_fields_give_the_time_a_client_decodes() {
        let time = |seconds: i64, nanos: i32| Timestamp { seconds, nanos };
        let part = |response: GetFlowsResponse| response.encode_to_vec();
        let flow = |time: Option<Timestamp>| GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(Flow {
                time,
                ..Default::default()
            })),
            ..Default::default()
        };
        let lost = GetFlowsResponse {
            response_types: Some(ResponseTypes::LostEvents(LostEvent::default())),
            ..Default::default()
        };
        let at = |t: Timestamp| GetFlowsResponse {
            time: Some(t),
            ..Default::default()
        };
        let cases: Vec<Vec<u8>> = vec![
            // A timed flow followed by an empty one (found by the node_response fuzz
            // target): protobuf merges the two, so the first one's time stands.
            [part(flow(Some(time(7, 1)))), part(flow(None))].concat(),
            // Two times of one flow: each sets one field.
            [part(flow(Some(time(7, 0)))), part(flow(Some(time(0, 5))))].concat(),
            // Two response times merge the same way.
            [part(at(time(9, 0))), part(at(time(0, 3))), part(flow(None))].concat(),
            // Another oneof member replaces the flow, and its time with it.
            [part(flow(Some(time(7, 1)))), part(lost.clone())].concat(),
            [part(lost), part(flow(Some(time(8, 2))))].concat(),
        ];
        for bytes in cases {
            let raw = RawResponse::parse(Bytes::from(bytes.clone())).expect("well-formed");
            let decoded = GetFlowsResponse::decode(bytes.as_slice()).expect("decodes");
            let flow_time = match &decoded.response_types {
                Some(ResponseTypes::Flow(flow)) => flow.time,
                _ => None,
            };
            let want = decoded
                .time
                .or(flow_time)
                .map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos));
            assert_eq!(raw.time, want, "{decoded:?}");
        }
    }
}
