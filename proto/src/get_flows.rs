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
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
        let field_len = |f: &EncodedField<'_>| match *f {
            EncodedField::Message(tag, b) => {
                key_len(tag) + encoded_len_varint(b.len() as u64) + b.len()
            }
            EncodedField::Fields(b) => b.len(),
        };
        let flow_len = fields.iter().map(field_len).sum::<usize>();
        let node_len = match node_name.len() {
            0 => 0,
            n => key_len(1000) + encoded_len_varint(n as u64) + n,
        };
        let time_len = time.map_or(0, |t| prost::encoding::message::encoded_len(1001, t));
        // Exactly as long as the response: a vector filled to its capacity becomes
        // `Bytes` without another allocation.
        let len = key_len(1) + encoded_len_varint(flow_len as u64) + flow_len + node_len + time_len;
        let mut bytes = Vec::with_capacity(len);
        encode_key(1, WireType::LengthDelimited, &mut bytes);
        encode_varint(flow_len as u64, &mut bytes);
        for field in fields {
            match *field {
                EncodedField::Message(tag, b) => {
                    encode_key(tag, WireType::LengthDelimited, &mut bytes);
                    encode_varint(b.len() as u64, &mut bytes);
                    bytes.extend_from_slice(b);
                }
                EncodedField::Fields(b) => bytes.extend_from_slice(b),
            }
        }
        if !node_name.is_empty() {
            encode_key(1000, WireType::LengthDelimited, &mut bytes);
            encode_varint(node_name.len() as u64, &mut bytes);
            bytes.extend_from_slice(node_name.as_bytes());
        }
        if let Some(time) = time {
            prost::encoding::message::encode(1001, time, &mut bytes);
        }
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
}
