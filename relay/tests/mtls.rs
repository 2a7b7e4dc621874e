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
