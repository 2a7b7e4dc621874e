//! Cluster state in etcd, as Cilium keeps it in kvstore mode.
//!
//! Without `--kvstore-endpoints` an agent is a single node and this module is unused.
//! With it, every agent of the cluster shares three things through etcd:
//!
//! - **Identities** ([`EtcdIdentityAllocator`]): one number per label set, agreed by
//!   compare-and-swap, with per-node reference keys under the node's lease.
//! - **The ipcache** ([`IpcachePublisher`], [`RemoteEndpoints`]): every agent
//!   publishes its pods (IP -> identity, node, namespace, pod name, labels) under its
//!   lease and watches everybody else's.
//! - **Services** ([`ClusterServices`]): `ClusterService` JSON per service, which
//!   every agent declares in its state, so every node serves every service.
//! - **The node list**: every agent registers its node (name, Hubble API
//!   address) under its lease; the peer service's etcd node source
//!   ([`Kvstore::node_source`], `peer_service::sources::etcd`) watches them into its
//!   `NodeHub`, so a node whose agent dies disappears when its lease expires.
//!
//! The etcd connection and the list-then-watch loop are `peer_service::sources::etcd`'s,
//! shared by every watch here.
//!
//! Losing etcd never stops an agent: it keeps enforcing with what it knows, the
//! session, the watches and allocations retry with backoff, and once etcd is back the
//! session re-attaches (or re-grants) its lease and re-publishes every key, and the
//! watches re-list before watching again. Key layout and value formats are in [`keys`].
//! A label set never seen before cannot get a number while etcd is away: its
//! allocation waits (retrying) until etcd answers.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use peer_service::sources::etcd::{watch_prefix, Connection, EtcdError, EtcdNodes, WatchHandler};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoints::Endpoint;
use crate::services::ServiceSource;
use crate::state::AgentState;

mod identity;
mod ipcache;
pub mod keys;
mod services;
mod session;

pub use services::{service_key, services_prefix, ClusterService, ClusterServices, L4Addr};

pub use identity::EtcdIdentityAllocator;
pub use ipcache::{IpcachePublisher, RemoteEndpoint, RemoteEndpoints};
pub use peer_service::sources::etcd::Backoff;

/// Lease time-to-live of an agent's keys: a dead agent's node, pods and identity
/// references disappear this long after its last keep-alive.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long a graceful stop waits for etcd to revoke the lease.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Port of the Hubble API announced when the listen address names none.
pub const DEFAULT_HUBBLE_PORT: u16 = 4244;

/// Errors of the cluster store.
#[derive(Debug, thiserror::Error)]
pub enum KvstoreError {
    /// No endpoint was given.
    #[error("no kvstore endpoint given (expected e.g. http://10.100.0.1:2379)")]
    NoEndpoints,
    /// An endpoint is not an `http://host:port` URL.
    #[error("invalid kvstore endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The node's own address could not be determined.
    #[error("cannot find this node's address towards {endpoint}: {reason}")]
    NodeAddress {
        /// The endpoint used to find the route.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// etcd answered with an error, a watch ended, or a stored value was bad.
    #[error(transparent)]
    Store(#[from] EtcdError),
    /// The lease expired or was revoked behind this agent's back.
    #[error("lease {0:x} is gone")]
    LeaseLost(i64),
}

impl From<etcd_client::Error> for KvstoreError {
    fn from(error: etcd_client::Error) -> Self {
        KvstoreError::Store(EtcdError::from(error))
    }
}

/// What an agent needs to join a cluster through etcd.
#[derive(Debug, Clone)]
pub struct KvstoreConfig {
    /// etcd client URLs, `http://host:port`.
    pub endpoints: Vec<String>,
    pub node_name: String,
    pub cluster_name: String,
    /// The node's address, announced with its Hubble API and as the tunnel endpoint
    /// of its pods; `None` finds the local address routed towards etcd.
    pub node_ip: Option<IpAddr>,
    /// The Hubble API listen address (`host:port`, `:port`); its port (and host when
    /// it is a specific address) makes the announced address.
    pub hubble_listen_address: Option<String>,
    pub lease_ttl: Duration,
}

impl KvstoreConfig {
    /// Parses a comma-separated endpoint list, checking each URL.
    pub fn parse_endpoints(list: &str) -> Result<Vec<String>, KvstoreError> {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect();
        if endpoints.is_empty() {
            return Err(KvstoreError::NoEndpoints);
        }
        for endpoint in &endpoints {
            endpoint_socket_address(endpoint)?;
        }
        Ok(endpoints)
    }
}

/// The `host:port` of an `http://host:port` endpoint, resolved.
fn endpoint_socket_address(endpoint: &str) -> Result<SocketAddr, KvstoreError> {
    let invalid = |reason: &str| KvstoreError::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .to_socket_addrs()
        .map_err(|e| invalid(&format!("expected host:port ({e})")))?
        .next()
        .ok_or_else(|| invalid("the host resolves to no address"))
}

/// The local address the kernel picks to reach `endpoint` (no packet is sent).
fn local_address_towards(endpoint: &str) -> Result<IpAddr, KvstoreError> {
    let target = endpoint_socket_address(endpoint)?;
    let failed = |e: std::io::Error| KvstoreError::NodeAddress {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    };
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).map_err(failed)?;
    socket.connect(target).map_err(failed)?;
    Ok(socket.local_addr().map_err(failed)?.ip())
}

/// The Hubble API address other nodes and the relay use for this node.
fn hubble_address(node_ip: IpAddr, listen: Option<&str>) -> String {
    let listen = listen.unwrap_or_default();
    let (host, port) = match listen.rsplit_once(':') {
        Some((host, port)) => (host.trim_matches(['[', ']']), port.parse().ok()),
        None => ("", None),
    };
    let port = port.unwrap_or(DEFAULT_HUBBLE_PORT);
    match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => SocketAddr::new(ip, port).to_string(),
        _ => SocketAddr::new(node_ip, port).to_string(),
    }
}

/// A running connection of this agent to the cluster store.
pub struct Kvstore {
    allocator: Arc<EtcdIdentityAllocator>,
    remote: RemoteEndpoints,
    publisher: Arc<IpcachePublisher>,
    changes: watch::Receiver<u64>,
    shutdown: watch::Sender<bool>,
    session_task: JoinHandle<()>,
    watch_tasks: Vec<JoinHandle<()>>,
    session: Arc<session::Session>,
    connection: Arc<Connection>,
    me: peer_service::Node,
    node_ip: IpAddr,
    listed_tx: Arc<watch::Sender<usize>>,
    listed: watch::Receiver<usize>,
    watch_count: usize,
    services: ClusterServices,
}

impl Kvstore {
    /// Starts the session (lease, node registration) and the watches of identities,
    /// ipcache entries and services; the node list is [`Kvstore::node_source`]'s.
    /// Returns at once: etcd need not be up yet.
    pub fn start(config: KvstoreConfig) -> Result<Kvstore, KvstoreError> {
        let first = config.endpoints.first().ok_or(KvstoreError::NoEndpoints)?;
        let node_ip = match config.node_ip {
            Some(ip) => ip,
            None => local_address_towards(first)?,
        };
        let connection = Arc::new(Connection::new(config.endpoints.clone()));
        let session = Arc::new(session::Session::new(connection.clone(), config.lease_ttl));
        let (changes_tx, changes) = watch::channel(0u64);
        let changes_tx = Arc::new(changes_tx);
        let (shutdown, shutdown_rx) = watch::channel(false);

        let allocator = Arc::new(EtcdIdentityAllocator::new(
            connection.clone(),
            session.clone(),
            config.node_name.clone(),
            changes_tx.clone(),
        ));
        let remote = RemoteEndpoints::default();
        let services = ClusterServices::default();
        let publisher = Arc::new(IpcachePublisher::new(
            session.clone(),
            &config.node_name,
            node_ip,
        ));
        let me = peer_service::Node {
            name: config.node_name.clone(),
            address: hubble_address(node_ip, config.hubble_listen_address.as_deref()),
            cluster: Some(config.cluster_name.clone()),
        };
        let watches: Vec<(String, Arc<dyn WatchHandler>)> = vec![
            (
                keys::IDENTITY_ID_PREFIX.to_string(),
                allocator.watch_handler(),
            ),
            (
                keys::IPCACHE_PREFIX.to_string(),
                Arc::new(ipcache::IpcacheHandler::new(
                    remote.clone(),
                    config.node_name.clone(),
                    changes_tx.clone(),
                )),
            ),
            (
                services_prefix(&config.cluster_name),
                Arc::new(services::ServicesHandler::new(
                    services.clone(),
                    changes_tx.clone(),
                )),
            ),
        ];
        // The node source's watch is counted too (see `node_source`).
        let watch_count = watches.len() + 1;
        let (listed_tx, listed) = watch::channel(0usize);
        let listed_tx = Arc::new(listed_tx);
        let watch_tasks = watches
            .into_iter()
            .map(|(prefix, handler)| {
                tokio::spawn(watch_prefix(
                    connection.clone(),
                    prefix,
                    handler,
                    shutdown_rx.clone(),
                    Some(listed_tx.clone()),
                ))
            })
            .collect();
        let session_task = tokio::spawn(session.clone().run(shutdown_rx));
        tracing::info!(
            endpoints = ?config.endpoints,
            node_ip = %node_ip,
            "joining the cluster through etcd"
        );
        Ok(Kvstore {
            allocator,
            remote,
            publisher,
            changes,
            shutdown,
            session_task,
            watch_tasks,
            session,
            connection,
            me,
            node_ip,
            listed_tx,
            listed,
            watch_count,
            services,
        })
    }

    /// Waits until every watch (identities, ipcache, services, and the nodes of a
    /// started [`Kvstore::node_source`]) has listed its keys once,
    /// or `timeout` passes; returns whether they all did. A restarted agent waits for
    /// this before it rewrites its pinned datapath maps, so pods of other nodes and
    /// their identities are not dropped from the maps in between.
    pub fn wait_listed(
        &self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut listed = self.listed.clone();
        let count = self.watch_count;
        async move {
            tokio::time::timeout(timeout, listed.wait_for(|n| *n >= count))
                .await
                .is_ok_and(|r| r.is_ok())
        }
    }

    /// The cluster-wide identity allocator.
    pub fn allocator(&self) -> Arc<EtcdIdentityAllocator> {
        self.allocator.clone()
    }

    /// The pods of the other nodes, as their agents published them.
    pub fn remote_endpoints(&self) -> RemoteEndpoints {
        self.remote.clone()
    }

    /// The address this node announces.
    pub fn node_ip(&self) -> IpAddr {
        self.node_ip
    }

    /// The peer service's node source of this cluster: this node and every node
    /// registered in etcd, read through this store's connection. Start it before
    /// [`Kvstore::wait_listed`], which counts its first listing.
    pub fn node_source(&self) -> EtcdNodes {
        EtcdNodes::new(self.connection.clone(), self.me.clone()).with_listed(self.listed_tx.clone())
    }

    /// Registers this node (name, Hubble API address) under the lease, so that the
    /// other nodes' peer services announce it. Call it once the Hubble API serves: a
    /// relay connects as soon as it hears of the node.
    pub fn register_node(&self) {
        if let Some((key, value)) =
            peer_service::sources::etcd::registration(&self.me, self.node_ip)
        {
            self.session.set(key, value);
        }
    }

    /// True while the session holds a live lease (etcd reachable, keys published).
    pub fn has_lease(&self) -> bool {
        self.session.lease().borrow().is_some()
    }

    /// Changes whenever identities or remote endpoints known cluster-wide change.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Publishes this node's endpoints, replacing what was published before.
    pub fn publish_endpoints(&self, endpoints: &[Endpoint]) {
        self.publisher.publish(endpoints);
    }

    /// Keeps the agent and the store in step: publishes this node's endpoints whenever
    /// the agent's state changes, and asks the agent to recompile its datapath whenever
    /// identities or pods of other nodes change. Runs until the state goes away.
    pub fn follow(
        &self,
        state: Arc<AgentState>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let publisher = self.publisher.clone();
        let services = self.services.clone();
        let mut cluster = self.changes.clone();
        let mut local = state.subscribe_changes();
        async move {
            publisher.publish(&state.endpoints());
            state.sync_services(&ServiceSource::Kvstore, services.all());
            loop {
                tokio::select! {
                    changed = local.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        publisher.publish(&state.endpoints());
                    }
                    changed = cluster.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        // Identities restored after a restart must agree with etcd's
                        // numbers: an endpoint whose number etcd gives to other labels
                        // takes etcd's number for its labels.
                        if let Err(e) = state.reconcile_identities().await {
                            tracing::warn!("checking identities against etcd: {e}");
                        }
                        state.sync_services(&ServiceSource::Kvstore, services.all());
                        state.request_sync();
                    }
                }
            }
        }
    }

    /// Stops the watches and revokes the lease (waiting at most [`STOP_TIMEOUT`]), so
    /// the node and its pods leave the cluster at once.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let mut session_task = self.session_task;
        if tokio::time::timeout(STOP_TIMEOUT, &mut session_task)
            .await
            .is_err()
        {
            tracing::warn!("etcd did not confirm the lease revocation in time");
            session_task.abort();
        }
        for task in self.watch_tasks {
            task.abort();
        }
    }

    /// Stops every task without revoking the lease, as if the agent died.
    #[cfg(test)]
    fn crash(self) {
        self.session_task.abort();
        for task in self.watch_tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
