//! GetFlows served with a codec of the server's own: [`GetFlowsServer`] answers GetFlows
//! with the given streaming service and codec, every other Observer method with the
//! generated server. A node writes responses it encoded ahead of time
//! ([`EncodedResponse`], [`EncodedFlowsCodec`]); the relay writes node responses as they
//! arrived.

use std::marker::PhantomData;

use prost::bytes::{BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder, ProstCodec};
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

    /// The encoded response.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The response decoded again.
    pub fn decode(&self) -> Result<GetFlowsResponse, prost::DecodeError> {
        GetFlowsResponse::decode(self.0.clone())
    }
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

/// Server side of a node's GetFlows: the request decoded by prost, responses written as
/// they were encoded.
#[derive(Debug, Default, Clone)]
pub struct EncodedFlowsCodec;

impl Codec for EncodedFlowsCodec {
    type Encode = EncodedResponse;
    type Decode = GetFlowsRequest;
    type Encoder = EncodedResponseEncoder;
    type Decoder = <ProstCodec<GetFlowsRequest, GetFlowsRequest> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedResponseEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<GetFlowsRequest, GetFlowsRequest>::default().decoder()
    }
}

/// An Observer server whose GetFlows is answered by `get_flows` through codec `K`;
/// every other method is the generated server's.
pub struct GetFlowsServer<T: Observer, S, K> {
    generated: ObserverServer<T>,
    get_flows: S,
    codec: PhantomData<fn() -> K>,
}

impl<T: Observer, S, K> GetFlowsServer<T, S, K> {
    /// Serves `generated`, with GetFlows answered by `get_flows`.
    pub fn new(generated: ObserverServer<T>, get_flows: S) -> Self {
        Self {
            generated,
            get_flows,
            codec: PhantomData,
        }
    }
}

impl<T: Observer, S: Clone, K> Clone for GetFlowsServer<T, S, K> {
    fn clone(&self) -> Self {
        Self {
            generated: self.generated.clone(),
            get_flows: self.get_flows.clone(),
            codec: PhantomData,
        }
    }
}

impl<T: Observer, S, K> NamedService for GetFlowsServer<T, S, K> {
    const NAME: &'static str = <ObserverServer<T> as NamedService>::NAME;
}

impl<T, S, K, B> Service<http::Request<B>> for GetFlowsServer<T, S, K>
where
    T: Observer,
    K: Codec<Decode = GetFlowsRequest> + Default + Send + 'static,
    S: ServerStreamingService<GetFlowsRequest, Response = K::Encode> + Clone + Send + 'static,
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
            let mut grpc = tonic::server::Grpc::new(K::default());
            Ok(grpc.server_streaming(call, request).await)
        })
    }
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
