//! GetFlows served with a codec of the server's own: [`GetFlowsServer`] answers GetFlows
//! with the given streaming service and response encoder, every other Observer method
//! with the generated server. A node writes responses it encoded ahead of time
//! ([`EncodedResponse`], [`EncodedResponseEncoder`]); the relay writes node responses as
//! they arrived.

use std::marker::PhantomData;

use prost::bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, ProstCodec};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{NamedService, ServerStreamingService};
use tonic::Status;

use crate::observer::observer_server::{Observer, ObserverServer};
use crate::observer::{GetFlowsRequest, GetFlowsResponse};

/// The gRPC path of `observer.Observer/GetFlows`.
pub const GET_FLOWS_PATH: &str = "/observer.Observer/GetFlows";

/// A `GetFlowsResponse` encoded where it was made: the thread that builds a response
/// also encodes and frees it, and the transport only copies the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedResponse(Bytes);

impl EncodedResponse {
    /// Encodes `response`.
    pub fn new(response: &GetFlowsResponse) -> Self {
        let mut bytes = Vec::with_capacity(response.encoded_len());
        response.encode_raw(&mut bytes);
        Self(bytes.into())
    }

    /// A flow response written from fields kept encoded: each of `fields` in turn
    /// forms the `Flow` message. Protobuf readers take a message's fields in any order,
    /// so the response decodes as the flow with those fields set would. `node_name` and
    /// `time` are the response's own.
    pub fn from_fields(
        fields: &[EncodedField<'_>],
        node_name: &str,
        time: Option<&pbjson_types::Timestamp>,
    ) -> Self {
        // Keys and lengths are written through a small stack buffer and copied in one
        // piece: no call per varint, one capacity check per piece.
        let field_len = |f: &EncodedField<'_>| match *f {
            EncodedField::Message(tag, b) => {
                let mut head = Head::default();
                head.length_delimited(tag, b.len());
                head.len + b.len()
            }
            EncodedField::Fields(b) => b.len(),
        };
        let flow_len = fields.iter().map(field_len).sum::<usize>();
        let mut head = Head::default();
        head.length_delimited(1, flow_len);
        let mut tail = Head::default();
        if !node_name.is_empty() {
            tail.length_delimited(1000, node_name.len());
        }
        let mut stamp = Head::default();
        if let Some(time) = time {
            let mut body = Head::default();
            body.varint_field(1, time.seconds as u64);
            // int32 nanos are written sign-extended, as prost writes an `int32`.
            body.varint_field(2, i64::from(time.nanos) as u64);
            stamp.length_delimited(1001, body.len);
            stamp.put_slice(body.bytes());
        }
        // Exactly as long as the response: a vector filled to its capacity becomes
        // `Bytes` without another allocation.
        let len = head.len + flow_len + tail.len + node_name.len() + stamp.len;
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(head.bytes());
        for field in fields {
            match *field {
                EncodedField::Message(tag, b) => {
                    let mut head = Head::default();
                    head.length_delimited(tag, b.len());
                    bytes.extend_from_slice(head.bytes());
                    bytes.extend_from_slice(b);
                }
                EncodedField::Fields(b) => bytes.extend_from_slice(b),
            }
        }
        bytes.extend_from_slice(tail.bytes());
        bytes.extend_from_slice(node_name.as_bytes());
        bytes.extend_from_slice(stamp.bytes());
        debug_assert_eq!(bytes.len(), len);
        Self(bytes.into())
    }

    /// The encoded response.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The response decoded again.
    pub fn decode(&self) -> Result<GetFlowsResponse, prost::DecodeError> {
        GetFlowsResponse::decode(self.0.clone())
    }
}

/// Keys, lengths and varint fields of a response written on the stack (at most a
/// timestamp message: a key, a length and two varint fields, 26 bytes). Its own small
/// writers rather than [`crate::wire`]'s on a `StackBuf`, which write the same bytes:
/// through those, the ring benchmark's scans with a response per match were 4-6%
/// slower in six alternating pairs of runs (the cause not found).
#[derive(Default)]
struct Head {
    buf: [u8; 32],
    len: usize,
}

impl Head {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[inline(always)]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline(always)]
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf[self.len] = value as u8 | 0x80;
            self.len += 1;
            value >>= 7;
        }
        self.buf[self.len] = value as u8;
        self.len += 1;
    }

    /// The key and length of a length-delimited field of `len` bytes.
    #[inline(always)]
    fn length_delimited(&mut self, tag: u32, len: usize) {
        self.varint(u64::from(tag << 3 | 2));
        self.varint(len as u64);
    }

    /// A varint field, left out at 0 (proto3).
    #[inline(always)]
    fn varint_field(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.varint(u64::from(tag << 3));
            self.varint(value);
        }
    }
}

/// Encoded protobuf fields that [`EncodedResponse::from_fields`] writes into a
/// flow as they are.
#[derive(Debug, Clone, Copy)]
pub enum EncodedField<'a> {
    /// An embedded message field: the field number and the message's encoded fields.
    Message(u32, &'a [u8]),
    /// Fields of the flow itself, each with its key.
    Fields(&'a [u8]),
}

/// Writes [`EncodedResponse`]s as they are.
#[derive(Debug, Default)]
pub struct EncodedResponseEncoder;

impl Encoder for EncodedResponseEncoder {
    type Item = EncodedResponse;
    type Error = Status;

    fn encode(&mut self, item: EncodedResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

/// Server side of GetFlows: the request decoded by prost, responses written by `E`.
#[derive(Debug)]
pub struct GetFlowsCodec<E>(PhantomData<fn() -> E>);

impl<E> Default for GetFlowsCodec<E> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E> Codec for GetFlowsCodec<E>
where
    E: Encoder<Error = Status> + Default + Send + 'static,
    E::Item: Send + 'static,
{
    type Encode = E::Item;
    type Decode = GetFlowsRequest;
    type Encoder = E;
    type Decoder = <ProstCodec<GetFlowsRequest, GetFlowsRequest> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        E::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<GetFlowsRequest, GetFlowsRequest>::default().decoder()
    }
}

/// An Observer server whose GetFlows is answered by `get_flows`, its responses written
/// by encoder `E`; every other method is the generated server's.
pub struct GetFlowsServer<T: Observer, S, E> {
    generated: ObserverServer<T>,
    get_flows: S,
    codec: PhantomData<fn() -> E>,
}

impl<T: Observer, S, E> GetFlowsServer<T, S, E> {
    /// Serves `generated`, with GetFlows answered by `get_flows`.
    pub fn new(generated: ObserverServer<T>, get_flows: S) -> Self {
        Self {
            generated,
            get_flows,
            codec: PhantomData,
        }
    }
}

impl<T: Observer, S: Clone, E> Clone for GetFlowsServer<T, S, E> {
    fn clone(&self) -> Self {
        Self {
            generated: self.generated.clone(),
            get_flows: self.get_flows.clone(),
            codec: PhantomData,
        }
    }
}

impl<T: Observer, S, E> NamedService for GetFlowsServer<T, S, E> {
    const NAME: &'static str = <ObserverServer<T> as NamedService>::NAME;
}

impl<T, S, E, B> Service<http::Request<B>> for GetFlowsServer<T, S, E>
where
    T: Observer,
    E: Encoder<Error = Status> + Default + Send + 'static,
    E::Item: Send + 'static,
    S: ServerStreamingService<GetFlowsRequest, Response = E::Item> + Clone + Send + 'static,
    S::ResponseStream: Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<B>>::poll_ready(&mut self.generated, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != GET_FLOWS_PATH {
            return self.generated.call(request);
        }
        let call = self.get_flows.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(GetFlowsCodec::<E>::default());
            Ok(grpc.server_streaming(call, request).await)
        })
    }
}

/// Client side of GetFlows: the request encoded by prost, each response decoded from
/// the one contiguous slice its frame is in. (Decoding from tonic's frame buffer makes
/// every varint and nested message a round of `Buf` calls on a `BytesMut`; from a
/// slice they are reads and pointer moves.)
#[derive(Debug, Default)]
pub struct GetFlowsClientCodec;

/// Decodes a [`GetFlowsResponse`] from its frame's bytes as one slice.
#[derive(Debug, Default)]
pub struct SliceResponseDecoder;

impl Decoder for SliceResponseDecoder {
    type Item = GetFlowsResponse;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<GetFlowsResponse>, Status> {
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            let response = GetFlowsResponse::decode(buf.chunk());
            buf.advance(len);
            response
        } else {
            GetFlowsResponse::decode(buf)
        };
        decoded
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding a GetFlows response: {e}")))
    }
}

impl Codec for GetFlowsClientCodec {
    type Encode = GetFlowsRequest;
    type Decode = GetFlowsResponse;
    type Encoder = <ProstCodec<GetFlowsRequest, GetFlowsResponse> as Codec>::Encoder;
    type Decoder = SliceResponseDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<GetFlowsRequest, GetFlowsResponse>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceResponseDecoder
    }
}

/// Calls GetFlows over `channel` with [`GetFlowsClientCodec`], as the generated
/// client's `get_flows` does (no limit on a response's size, as `hubble` sets).
pub async fn call_get_flows<T>(
    channel: T,
    request: impl tonic::IntoRequest<GetFlowsRequest>,
) -> Result<tonic::Response<tonic::Streaming<GetFlowsResponse>>, Status>
where
    T: tonic::client::GrpcService<tonic::body::BoxBody>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("Service was not ready: {}", e.into())))?;
    let path = http::uri::PathAndQuery::from_static(GET_FLOWS_PATH);
    grpc.server_streaming(request.into_request(), path, GetFlowsClientCodec)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Flow;
    use crate::observer::get_flows_response::ResponseTypes;

    #[test]
    fn an_encoded_response_is_prost_encoding_and_decodes_back() {
        let response = GetFlowsResponse {
            node_name: "node1".into(),
            time: Some(pbjson_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            response_types: Some(ResponseTypes::Flow(Flow {
                node_name: "node1".into(),
                source_names: vec!["api.example.com".into()],
                ..Default::default()
            })),
        };
        let encoded = EncodedResponse::new(&response);
        assert_eq!(
            encoded.bytes().as_ref(),
            response.encode_to_vec().as_slice()
        );
        assert_eq!(encoded.decode().expect("decodes"), response);
    }

    /// A response written from a flow's fields kept encoded decodes as the response
    /// and is as long as prost's encoding of it: with and without a node name and a
    /// time, times of every sign and length, endpoints shorter and longer than 127
    /// bytes.
    #[test]
    fn a_response_from_fields_decodes_as_the_response() {
        use crate::flow::Endpoint;
        let times = [
            None,
            Some((0, 0)),
            Some((1_700_000_000, 999_999_999)),
            Some((-62_135_596_800, -1)),
            Some((i64::MAX, i32::MIN)),
        ];
        let long_name = "n".repeat(300);
        let names = ["", "node1", "", long_name.as_str(), "x"];
        for (t, node_name) in times.iter().zip(names) {
            let time = t.map(|(seconds, nanos)| pbjson_types::Timestamp { seconds, nanos });
            for labels in [0, 1, 40] {
                let source = Endpoint {
                    pod_name: "xwing".into(),
                    labels: (0..labels).map(|k| format!("k8s:label{k}=value")).collect(),
                    ..Default::default()
                };
                let own = Flow {
                    node_name: node_name.to_string(),
                    verdict: 1,
                    source_names: vec!["api.example.com".into()],
                    ..Default::default()
                };
                let response = GetFlowsResponse {
                    node_name: node_name.to_string(),
                    time,
                    response_types: Some(ResponseTypes::Flow(Flow {
                        source: Some(source.clone()),
                        ..own.clone()
                    })),
                };
                let (own, source) = (own.encode_to_vec(), source.encode_to_vec());
                let written = EncodedResponse::from_fields(
                    &[
                        EncodedField::Fields(&own),
                        EncodedField::Message(8, &source),
                    ],
                    node_name,
                    time.as_ref(),
                );
                // prost writes a flow's fields in field order; the source (8) goes
                // between the verdict (2) and the node name (11) there, after them here.
                let decoded = written.decode().expect("decodes");
                assert_eq!(decoded, response, "{t:?} {labels}");
                assert_eq!(
                    EncodedResponse::new(&decoded).bytes().len(),
                    written.bytes().len(),
                    "{t:?} {labels}"
                );
            }
        }
    }
}
