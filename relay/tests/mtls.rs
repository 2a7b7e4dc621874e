//! Mutual TLS: relay to agents with the relay's client certificate, clients to the relay
//! with theirs; a client without a certificate is refused with a reason.

mod support;

use std::time::Duration;

use proto::observer::observer_client::ObserverClient;
use proto::observer::{GetFlowsRequest, GetNodesRequest};
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn read(dir: &std::path::Path, name: &str) -> anyhow::Result<Vec<u8>> {
    Ok(std::fs::read(dir.join(name))?)
}

async fn client(
    addr: std::net::SocketAddr,
    ca: Vec<u8>,
    identity: Option<Identity>,
) -> Result<ObserverClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("valid URI")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(ObserverClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_clients_relay_and_agents() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("tls");
    let spec = peer_service::certs::CertsSpec {
        nodes: vec!["node1".into(), "node2".into()],
        ..Default::default()
    };
    peer_service::certs::generate(&certs, &spec)?;
    let ca = read(&certs, "ca.crt")?;

    let mut agents = Vec::new();
    for (index, name) in ["node1", "node2"].iter().enumerate() {
        let server_name = peer_service::tls_server_name(name, "default");
        let tls = AgentTls {
            cert_pem: read(&certs, &format!("{server_name}.crt"))?,
            key_pem: read(&certs, &format!("{server_name}.key"))?,
            client_ca_pem: ca.clone(),
        };
        let history = vec![flow_response(name, 1_000 + index as i128, "default")];
        agents.push(TestAgent::start(
            name,
            "127.0.0.1:0".parse()?,
            history,
            Some(tls),
        )?);
    }
    let nodes_file = dir.path().join("nodes.yaml");
    let nodes: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.name.clone(), a.addr.to_string()))
        .collect();
    write_nodes_file(&nodes_file, &nodes)?;
    // A remote peer service is reached over TLS as `hubble-peer.<cluster>.hubble-grpc.cilium.io`,
    // a name every node certificate carries.
    let node1_name = peer_service::tls_server_name("node1", "default");
    let peer_tls = (
        read(&certs, &format!("{node1_name}.crt"))?,
        read(&certs, &format!("{node1_name}.key"))?,
    );
    let peers = TestPeerService::start(nodes_file, Some(peer_tls)).await?;

    let mut config = test_relay_config(peers.addr);
    config.client_tls = Some(relay::ClientTlsFiles {
        cert_file: Some(certs.join("relay-client.crt")),
        key_file: Some(certs.join("relay-client.key")),
        server_ca_files: vec![certs.join("ca.crt")],
    });
    config.server_tls = Some(relay::ServerTlsFiles {
        cert_file: certs.join("relay-server.crt"),
        key_file: certs.join("relay-server.key"),
        client_ca_files: vec![certs.join("ca.crt")],
    });
    let relay = relay::Relay::start(config).await?;
    let connected = eventually(Duration::from_secs(10), || async {
        relay.pool().status().available_peers == 2
    })
    .await;
    assert!(connected, "the relay reached both agents over mTLS");

    let identity = Identity::from_pem(
        read(&certs, "hubble-client.crt")?,
        read(&certs, "hubble-client.key")?,
    );
    let mut good = client(relay.local_addr(), ca.clone(), Some(identity)).await?;
    let nodes = good.get_nodes(GetNodesRequest {}).await?.into_inner().nodes;
    assert_eq!(nodes.len(), 2);
    for node in &nodes {
        let tls = node.tls.clone().expect("tls field");
        assert!(tls.enabled);
        assert_eq!(
            tls.server_name,
            format!("{}.default.hubble-grpc.cilium.io", node.name)
        );
    }
    let mut stream = good
        .get_flows(GetFlowsRequest::default())
        .await?
        .into_inner();
    let mut flows = 0;
    while let Some(response) = stream.message().await? {
        flows += usize::from(response.node_name.starts_with("node"));
    }
    assert_eq!(flows, 2);

    // Without a client certificate: the handshake or the first call fails, and the error
    // says that a certificate was required.
    let refused = match client(relay.local_addr(), ca.clone(), None).await {
        Err(error) => relay::error::error_chain(&error),
        Ok(mut anonymous) => match anonymous.get_nodes(GetNodesRequest {}).await {
            Ok(_) => anyhow::bail!("a client without a certificate was served"),
            Err(status) => relay::error::status_message(&status),
        },
    };
    println!("client without certificate: {refused}");
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");

    // A certificate from another CA is refused during the handshake.
    let other = dir.path().join("other");
    peer_service::certs::generate(&other, &spec)?;
    let foreign = Identity::from_pem(
        read(&other, "hubble-client.crt")?,
        read(&other, "hubble-client.key")?,
    );
    let refused = match client(relay.local_addr(), ca.clone(), Some(foreign)).await {
        Err(error) => relay::error::error_chain(&error),
        Ok(mut stranger) => match stranger.get_nodes(GetNodesRequest {}).await {
            Ok(_) => anyhow::bail!("a client with a foreign certificate was served"),
            Err(status) => relay::error::status_message(&status),
        },
    };
    println!("client with a foreign certificate: {refused}");
    relay.shutdown().await?;
    Ok(())
}

/// The NODE_UNAVAILABLE events at the start of a GetFlows through `relay`: (nodes, why).
async fn unavailable_nodes(relay: &relay::Relay) -> anyhow::Result<Unavailable> {
    use proto::observer::get_flows_response::ResponseTypes;
    let channel = Channel::from_shared(format!("http://{}", relay.local_addr()))?
        .connect()
        .await?;
    let mut stream = ObserverClient::new(channel)
        .get_flows(GetFlowsRequest::default())
        .await?
        .into_inner();
    let mut unavailable = Vec::new();
    while let Some(response) = stream.message().await? {
        if let Some(ResponseTypes::NodeStatus(status)) = response.response_types {
            if status.state_change == proto::relay::NodeState::NodeUnavailable as i32 {
                unavailable.push((status.node_names, status.message));
            }
        }
    }
    Ok(unavailable)
}

type Unavailable = Vec<(Vec<String>, String)>;

/// Asks the relay for flows until its NODE_UNAVAILABLE events satisfy `done` (at most
/// 10 s: the relay first has to try each node).
async fn poll_unavailable(
    relay: &relay::Relay,
    done: impl Fn(&Unavailable) -> bool,
) -> (bool, Unavailable) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = unavailable_nodes(relay).await.unwrap_or_default();
        if done(&seen) || tokio::time::Instant::now() > deadline {
            return (done(&seen), seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_server_name_makes_the_node_unavailable_naming_why() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("tls");
    let spec = peer_service::certs::CertsSpec {
        nodes: vec!["node1".into(), "node3".into()],
        ..Default::default()
    };
    peer_service::certs::generate(&certs, &spec)?;
    let ca = read(&certs, "ca.crt")?;

    // node1 serves its own certificate; node2 serves node3's: a mismatched server name.
    let mut agents = Vec::new();
    for (index, (name, cert_of)) in [("node1", "node1"), ("node2", "node3")].iter().enumerate() {
        let server_name = peer_service::tls_server_name(cert_of, "default");
        let tls = AgentTls {
            cert_pem: read(&certs, &format!("{server_name}.crt"))?,
            key_pem: read(&certs, &format!("{server_name}.key"))?,
            client_ca_pem: ca.clone(),
        };
        let history = vec![flow_response(name, 1_000 + index as i128, "default")];
        agents.push(TestAgent::start(
            name,
            "127.0.0.1:0".parse()?,
            history,
            Some(tls),
        )?);
    }
    let nodes_file = dir.path().join("nodes.yaml");
    let nodes: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.name.clone(), a.addr.to_string()))
        .collect();
    write_nodes_file(&nodes_file, &nodes)?;
    let node1_name = peer_service::tls_server_name("node1", "default");
    let peer_tls = (
        read(&certs, &format!("{node1_name}.crt"))?,
        read(&certs, &format!("{node1_name}.key"))?,
    );
    let peers = TestPeerService::start(nodes_file, Some(peer_tls)).await?;

    let relay_with = |ca_dir: &std::path::Path, peers: std::net::SocketAddr| {
        let mut config = test_relay_config(peers);
        config.client_tls = Some(relay::ClientTlsFiles {
            cert_file: Some(certs.join("relay-client.crt")),
            key_file: Some(certs.join("relay-client.key")),
            server_ca_files: vec![ca_dir.join("ca.crt")],
        });
        config
    };

    let relay = relay::Relay::start(relay_with(&certs, peers.addr)).await?;
    let (named, seen) =
        poll_unavailable(&relay, |seen| seen.iter().any(|(_, why)| !why.is_empty())).await;
    println!("mismatched name: {seen:?}");
    assert!(named, "node2 unavailable with a cause: {seen:?}");
    let (nodes, why) = seen
        .iter()
        .find(|(_, why)| !why.is_empty())
        .expect("a cause");
    assert_eq!(nodes, &["node2".to_string()]);
    assert!(
        why.contains("certificate not valid for name \"node2.default.hubble-grpc.cilium.io\""),
        "{why}"
    );
    assert_eq!(relay.pool().status().available_peers, 1);
    relay.shutdown().await?;

    // A CA that signed none of the agents' certificates (only the peer service's, so
    // that the relay hears of the nodes).
    let other = dir.path().join("other");
    peer_service::certs::generate(&other, &spec)?;
    let other_peer_tls = (
        read(&other, &format!("{node1_name}.crt"))?,
        read(&other, &format!("{node1_name}.key"))?,
    );
    let other_peers =
        TestPeerService::start(dir.path().join("nodes.yaml"), Some(other_peer_tls)).await?;
    let relay = relay::Relay::start(relay_with(&other, other_peers.addr)).await?;
    let every_node_has_a_cause = |seen: &Unavailable| {
        seen.iter()
            .filter(|(_, why)| !why.is_empty())
            .map(|(nodes, _)| nodes.len())
            .sum::<usize>()
            == 2
    };
    let (named, seen) = poll_unavailable(&relay, every_node_has_a_cause).await;
    println!("wrong CA: {seen:?}");
    assert!(named, "both nodes unavailable with a cause: {seen:?}");
    for (_, why) in &seen {
        // The CA in hand has the same name as the agents' but another key.
        assert!(
            why.contains("invalid peer certificate: BadSignature"),
            "{why}"
        );
    }
    relay.shutdown().await?;
    Ok(())
}
