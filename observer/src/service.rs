//! `observer.Observer` implemented over a [`LocalObserver`] ([`ObserverService`]), its
//! methods one module per concern. Errors become gRPC statuses through
//! `From<ObserverError> for Status` (in `error`), nowhere else.

use std::sync::Arc;

use std::pin::Pin;

use futures::StreamExt;
use proto::get_flows::{EncodedResponse, EncodedResponseEncoder, GetFlowsServer};
use proto::observer::observer_server::{Observer, ObserverServer};
use proto::observer::{
    GetAgentEventsRequest, GetAgentEventsResponse, GetDebugEventsRequest, GetDebugEventsResponse,
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNamespacesResponse,
    GetNodesRequest, GetNodesResponse, ServerStatusRequest, ServerStatusResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::ObserverError;
use crate::observer::LocalObserver;

pub mod agent_debug_events;
pub mod batches;
pub mod flows;
pub mod limit;
pub mod scan;
pub mod start;
pub mod window;

use batches::Batched;
use limit::{Limited, StreamLimit};
use window::Window;

/// The gRPC service of a node's observer.
#[derive(Clone)]
pub struct ObserverService {
    observer: Arc<LocalObserver>,
    streams: StreamLimit,
}

impl ObserverService {
    /// Serves `observer`, with at most `MAX_CONCURRENT_FLOW_STREAMS` event streams open.
    pub fn new(observer: Arc<LocalObserver>) -> Self {
        Self::with_stream_limit(observer, StreamLimit::default())
    }

    /// Serves `observer` with `streams` as the bound on open event streams.
    pub fn with_stream_limit(observer: Arc<LocalObserver>, streams: StreamLimit) -> Self {
        Self { observer, streams }
    }

    /// The tonic server wrapping this service: GetFlows writes the responses its scans
    /// encoded, every other method is the generated server's.
    pub fn into_server(self) -> GetFlowsServer<Self, GetFlowsCall, EncodedResponseEncoder> {
        GetFlowsServer::new(ObserverServer::new(self.clone()), GetFlowsCall(self))
    }

    /// Opens a GetFlows stream of encoded responses.
    async fn flows(
        &self,
        req: GetFlowsRequest,
    ) -> Result<Limited<Batched<EncodedResponse>>, Status> {
        let slot = self.streams.acquire()?;
        // Compiling a request at the budget's limits takes real CPU: do it on the scan
        // pool so status and other streams keep answering.
        let query = scan::run(move || flows::FlowsQuery::new(&req))
            .await
            .map_err(|e| ObserverError::CompileTask(e.to_string()))??;
        let rx = flows::stream(Arc::clone(&self.observer), query);
        Ok(Limited::new(Batched::new(rx), slot))
    }
}

/// GetFlows as the server answers it: responses encoded by the scans.
#[derive(Clone)]
pub struct GetFlowsCall(ObserverService);

impl tonic::server::ServerStreamingService<GetFlowsRequest> for GetFlowsCall {
    type Response = EncodedResponse;
    type ResponseStream = Limited<Batched<EncodedResponse>>;
    type Future = tonic::codegen::BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<GetFlowsRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(Response::new(service.flows(request.into_inner()).await?)) })
    }
}

/// An encoded stream item decoded again. Status is the stream's item error type.
#[allow(clippy::result_large_err)]
fn decode_item(item: Result<EncodedResponse, Status>) -> Result<GetFlowsResponse, Status> {
    item.and_then(|encoded| {
        encoded
            .decode()
            .map_err(|e| ObserverError::DecodeResponse(e.to_string()).into())
    })
}

type Stream<T> = Limited<ReceiverStream<Result<T, Status>>>;
type Decoded<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Observer for ObserverService {
    type GetFlowsStream = Decoded<GetFlowsResponse>;
    type GetAgentEventsStream = Stream<GetAgentEventsResponse>;
    type GetDebugEventsStream = Stream<GetDebugEventsResponse>;

    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<Self::GetFlowsStream>, Status> {
        // The server writes the encoded responses (`into_server`); this decoding path
        // answers anyone calling the trait directly.
        let stream = self.flows(request.into_inner()).await?.map(decode_item);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_agent_events(
        &self,
        request: Request<GetAgentEventsRequest>,
    ) -> Result<Response<Self::GetAgentEventsStream>, Status> {
        let slot = self.streams.acquire()?;
        let req = request.into_inner();
        let window = Window::new(req.number, req.first, req.follow, req.since, req.until)?;
        let node_name = self.observer.config().node_name.clone();
        let ring = Arc::clone(&self.observer.agent_events);
        let rx = agent_debug_events::stream(ring, window, move |e| GetAgentEventsResponse {
            agent_event: Some(e.event.clone()),
            node_name: node_name.clone(),
            time: Some(e.time),
        });
        Ok(Response::new(Limited::new(ReceiverStream::new(rx), slot)))
    }

    async fn get_debug_events(
        &self,
        request: Request<GetDebugEventsRequest>,
    ) -> Result<Response<Self::GetDebugEventsStream>, Status> {
        let slot = self.streams.acquire()?;
        let req = request.into_inner();
        let window = Window::new(req.number, req.first, req.follow, req.since, req.until)?;
        let node_name = self.observer.config().node_name.clone();
        let ring = Arc::clone(&self.observer.debug_events);
        let rx = agent_debug_events::stream(ring, window, move |e| GetDebugEventsResponse {
            debug_event: Some(e.event.clone()),
            node_name: node_name.clone(),
            time: Some(e.time),
        });
        Ok(Response::new(Limited::new(ReceiverStream::new(rx), slot)))
    }

    async fn get_nodes(
        &self,
        _request: Request<GetNodesRequest>,
    ) -> Result<Response<GetNodesResponse>, Status> {
        Err(ObserverError::Unimplemented("GetNodes").into())
    }

    async fn get_namespaces(
        &self,
        _request: Request<GetNamespacesRequest>,
    ) -> Result<Response<GetNamespacesResponse>, Status> {
        Ok(Response::new(GetNamespacesResponse {
            namespaces: self.observer.namespaces(),
        }))
    }

    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        Ok(Response::new(self.observer.status()))
    }
}
