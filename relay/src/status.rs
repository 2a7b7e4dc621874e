//! ServerStatus, GetNodes and GetNamespaces: one call per connected node, aggregated.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use proto::observer::{
    GetNamespacesRequest, GetNamespacesResponse, GetNodesResponse, Namespace, Node,
    ServerStatusRequest, ServerStatusResponse, Tls,
};
use proto::relay::NodeState;
use tonic::{Request, Status};

use crate::error::{is_connection_failure, status_message, RequestError};
use crate::pool::{PeerManager, PeerSnapshot};

/// Unavailable nodes named in a ServerStatus answer, at most; the count covers all.
pub const UNAVAILABLE_NODES_REPORT_MAX: usize = 10;

/// Bound on each node's answer to a unary call.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn timed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(NODE_CALL_TIMEOUT);
    request
}

async fn node_status(
    pool: &PeerManager,
    peer: &PeerSnapshot,
) -> Option<Result<ServerStatusResponse, Status>> {
    let mut client = peer.client.clone()?;
    let result = match tokio::time::timeout(
        NODE_CALL_TIMEOUT,
        client.server_status(timed(ServerStatusRequest {})),
    )
    .await
    {
        Ok(result) => result.map(|r| r.into_inner()),
        Err(_) => Err(RequestError::NodeTimeout.into()),
    };
    if let Err(status) = &result {
        tracing::warn!(peer = %peer.info.name, error = %status_message(status), "cannot retrieve server status");
        if is_connection_failure(status) {
            pool.report_offline(&peer.info.name);
        }
    }
    Some(result)
}

/// Sums the nodes' counters and counts connected and unavailable nodes.
pub async fn server_status(pool: &PeerManager, version: &str) -> ServerStatusResponse {
    let peers = pool.list();
    let answers = join_all(peers.iter().map(|peer| node_status(pool, peer))).await;
    let mut response = ServerStatusResponse {
        version: version.to_owned(),
        ..Default::default()
    };
    let mut connected = 0u32;
    let mut unavailable = 0u32;
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Some(Ok(status)) => {
                connected += 1;
                response.num_flows += status.num_flows;
                response.max_flows += status.max_flows;
                response.seen_flows += status.seen_flows;
                response.flows_rate += status.flows_rate;
                // The oldest node's uptime stands for the cluster's: a sum means nothing.
                response.uptime_ns = response.uptime_ns.max(status.uptime_ns);
            }
            Some(Err(_)) | None => {
                unavailable += 1;
                if response.unavailable_nodes.len() < UNAVAILABLE_NODES_REPORT_MAX {
                    response.unavailable_nodes.push(peer.info.name.clone());
                }
            }
        }
    }
    response.num_connected_nodes = Some(pbjson_types::UInt32Value { value: connected });
    response.num_unavailable_nodes = Some(pbjson_types::UInt32Value { value: unavailable });
    response
}

/// Describes every node: state, address, TLS, and its counters when it answers.
pub async fn get_nodes(pool: &PeerManager) -> GetNodesResponse {
    let peers = pool.list();
    let answers = join_all(peers.iter().map(|peer| node_status(pool, peer))).await;
    let nodes = peers
        .iter()
        .zip(answers)
        .map(|(peer, answer)| {
            let mut node = Node {
                name: peer.info.name.clone(),
                address: peer.info.address_text.clone(),
                tls: Some(Tls {
                    enabled: peer.info.tls_enabled,
                    server_name: peer.info.tls_server_name.clone(),
                }),
                ..Default::default()
            };
            let state = match answer {
                None => NodeState::NodeUnavailable,
                Some(Err(_)) => NodeState::NodeError,
                Some(Ok(status)) => {
                    node.version = status.version;
                    node.uptime_ns = status.uptime_ns;
                    node.num_flows = status.num_flows;
                    node.max_flows = status.max_flows;
                    node.seen_flows = status.seen_flows;
                    NodeState::NodeConnected
                }
            };
            node.state = state as i32;
            node
        })
        .collect();
    GetNodesResponse { nodes }
}

/// Merges the namespaces of every connected node, without duplicates, sorted by cluster
/// then namespace. Nodes that fail are skipped: partial results beat none.
pub async fn get_namespaces(pool: &PeerManager) -> GetNamespacesResponse {
    let peers = pool.list();
    let calls = peers.iter().filter_map(|peer| {
        let mut client = peer.client.clone()?;
        Some(async move {
            let call = client.get_namespaces(timed(GetNamespacesRequest {}));
            match tokio::time::timeout(NODE_CALL_TIMEOUT, call).await {
                Ok(Ok(response)) => response.into_inner().namespaces,
                Ok(Err(status)) => {
                    tracing::warn!(peer = %peer.info.name, error = %status_message(&status), "cannot retrieve namespaces");
                    if is_connection_failure(&status) {
                        pool.report_offline(&peer.info.name);
                    }
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        })
    });
    let merged: BTreeSet<(String, String)> = join_all(calls)
        .await
        .into_iter()
        .flatten()
        .map(|ns| (ns.cluster, ns.namespace))
        .collect();
    GetNamespacesResponse {
        namespaces: merged
            .into_iter()
            .map(|(cluster, namespace)| Namespace { cluster, namespace })
            .collect(),
    }
}
