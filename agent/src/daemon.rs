//! The `hubble-agent` daemon: wires the control plane, the eBPF datapath, the observer,
//! the peer service and the metrics of one node together.
//!
//! Data flows one way: endpoint files and policies change [`AgentState`]; a sync task
//! compiles it into the datapath's maps; datapath records are parsed into flows and
//! pushed into the observer's ring, which the gRPC server reads.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::admin::{bind_admin_socket, serve_admin, AdminStats};
use crate::endpoints::{watch_endpoints, WatcherConfig};
use crate::identity::{IdentityAllocator, LocalIdentityAllocator};
use crate::kvstore::Kvstore;
use crate::state::AgentState;

mod datapath_sync;
pub use datapath_sync::SocketLb;
mod enrich;
mod events;
mod hooks;
mod l7proxy;
mod pipeline;
mod restart;
pub mod self_metrics;
mod telemetry;

pub use datapath_sync::DatapathSync;
pub use enrich::{Links, StateGetters};
pub use hooks::FlowHooks;
pub use restart::{cleanup, restore_state};
pub use telemetry::TelemetryConfig;

/// Everything the daemon is configured with, parsed up front.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub node_name: String,
    pub cluster_name: String,
    pub endpoints_dir: PathBuf,
    /// Directory of service files.
    pub services_dir: PathBuf,
    pub unix_socket: Option<PathBuf>,
    pub admin_socket: PathBuf,
    pub listen_address: Option<String>,
    /// TLS of the TCP listener (`None`: clear text); see [`crate::tls`].
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Prometheus metrics address (`None`: no metrics server).
    pub metrics_address: Option<String>,
    /// Metric handlers and flow export.
    pub telemetry: TelemetryConfig,
    pub peers_file: Option<PathBuf>,
    /// Cluster store (etcd); `None` for a single node.
    pub kvstore: Option<crate::kvstore::KvstoreConfig>,
    pub ring_capacity: u64,
    /// Serve flows from this capture instead of (or besides) the datapath.
    pub replay: Option<PathBuf>,
    pub replay_rate: Option<f64>,
    pub replay_retimestamp: bool,
    pub replay_repeat: bool,
    /// Load the eBPF datapath (off for a replay-only agent).
    pub datapath: bool,
    pub monitor_aggregation: u32,
    /// Where the policy, endpoints and identities are saved (`None`: nothing is).
    pub state_dir: Option<PathBuf>,
    /// Start empty when the state file cannot be used, instead of refusing to start.
    pub discard_corrupt_state: bool,
    /// `--tofqdns-min-ttl`: the least time, in seconds, DNS answers are remembered.
    pub fqdn_min_ttl: u32,
    /// Where the datapath's maps and links are pinned (`None`: not pinned; the
    /// datapath then goes away with the agent).
    pub bpf_pin_dir: Option<PathBuf>,
    /// Socket-level service load balancing (`--cgroup-root`); `None`: off.
    pub socket_lb: Option<SocketLb>,
    /// The node's uplink devices (`--devices`): connections from other nodes are
    /// redirected to the L7 proxy at their ingress.
    pub devices: Vec<String>,
}

/// How long a restarted agent in a cluster waits for etcd's identities and pods
/// before its first datapath sync; its pinned maps keep enforcing meanwhile.
const CLUSTER_LISTING_WAIT: Duration = Duration::from_secs(10);

/// How often expired names leave the FQDN cache and a changed cache is saved: a burst
/// of DNS answers costs one state write per interval.
const FQDN_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: DaemonConfig) -> Result<()> {
    let (observer, ingest) = observer::LocalObserver::new(observer::ObserverConfig {
        node_name: config.node_name.clone(),
        cluster_name: config.cluster_name.clone(),
        ring_capacity: config.ring_capacity,
        ..Default::default()
    })
    .context("starting the observer")?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut rx = shutdown_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    // Control plane.
    // In a cluster, identities, pods of other nodes and the node list come from etcd.
    let kvstore = match config.kvstore.clone() {
        Some(kv) => Some(Kvstore::start(kv).context("joining the cluster store")?),
        None => None,
    };
    // The peer service's node list: etcd in a cluster, else the nodes file, else this
    // node alone (`peer_service::sources::choose`).
    let hub = peer_service::NodeHub::new();
    let node_source = peer_service::sources::choose(
        kvstore
            .as_ref()
            .map(|kvstore| Box::new(kvstore.node_source()) as Box<dyn peer_service::NodeSource>),
        config
            .peers_file
            .as_ref()
            .map(peer_service::sources::file::NodesFile::new),
        peer_service::Node::new(
            config.node_name.clone(),
            config.listen_address.clone().unwrap_or_default(),
        ),
    );
    tracing::info!(source = %node_source.describe(), "node list");
    let node_source = node_source.start(hub.clone());
    let allocator: Arc<dyn IdentityAllocator> = match &kvstore {
        Some(kvstore) => kvstore.allocator(),
        None => Arc::new(LocalIdentityAllocator::new()),
    };
    let remote = kvstore.as_ref().map(Kvstore::remote_endpoints);
    let state = AgentState::new(allocator, config.cluster_name.clone());
    if let Some(remote) = &remote {
        // Other nodes' pods are service backends too.
        state.set_remote_endpoints(remote.clone());
    }
    if config.datapath {
        // Endpoints are `ready` only once the datapath has programmed them.
        state.expect_datapath();
    }
    state.configure_fqdn(config.fqdn_min_ttl);
    // The saved state goes back before the datapath is programmed or anything served.
    if let Some(dir) = &config.state_dir {
        restore_state(&state, dir, &config.node_name, config.discard_corrupt_state).await?;
    }
    let admin = bind_admin_socket(&config.admin_socket)
        .with_context(|| format!("admin socket {}", config.admin_socket.display()))?;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(kvstore) = &kvstore {
        tasks.spawn(kvstore.follow(state.clone()));
    }
    tasks.spawn(maintain_fqdn_cache(state.clone(), shutdown()));
    tasks.spawn(serve_admin(
        admin,
        state.clone(),
        Arc::new(AdminStats::default()),
        shutdown(),
    ));

    std::fs::create_dir_all(&config.endpoints_dir)
        .with_context(|| format!("creating {}", config.endpoints_dir.display()))?;
    let mut watcher_config = WatcherConfig::new(&config.endpoints_dir);
    // Restored endpoints are known: the first scan reports only what changed since.
    watcher_config.known = state.watched_endpoints();
    let (_watcher, endpoint_events) = watch_endpoints(watcher_config)
        .with_context(|| format!("watching {}", config.endpoints_dir.display()))?;
    // Restored services from files are known: the first scan reports what changed.
    let (_services_watcher, service_events) =
        crate::services::watch_services(&config.services_dir, &state)
            .with_context(|| format!("watching {}", config.services_dir.display()))?;
    tasks.spawn(crate::services::apply_service_events(
        state.clone(),
        service_events,
    ));
    let hooks = telemetry::start(
        &config.telemetry,
        config.metrics_address.as_deref(),
        observer.clone(),
        &mut tasks,
        shutdown.clone(),
    )
    .await?;
    tasks.spawn(events::apply_endpoint_events(
        state.clone(),
        endpoint_events,
        ingest.clone(),
        hooks.clone(),
    ));

    // Datapath: load, keep the maps in step with the state, parse its records.
    let links = enrich::Links::default();
    if config.datapath {
        let datapath = DatapathSync::load(
            config.monitor_aggregation,
            local_addresses(),
            config.bpf_pin_dir.as_deref(),
            config.socket_lb.as_ref(),
        )
        .context("loading the eBPF datapath")?;
        // The L7 proxies' records become flows like the datapath's records.
        let (records, record_queue) = proxy::RecordSink::channel(proxy::RECORD_QUEUE_CAPACITY);
        let l7 = l7proxy::L7Proxies::new(state.clone(), records);
        let (datapath, reader) = datapath
            .with_remote_endpoints(remote.clone())
            .with_devices(&config.devices)?
            .with_l7_proxies(l7)
            .with_reader()?;
        // Loading parsed the kernel's BTF; what it freed goes back now.
        crate::memory::release_freed_memory();
        let getters = StateGetters::new(state.clone(), links.clone())
            .with_remote_endpoints(remote.clone())
            .with_cgroup_root(config.socket_lb.as_ref().map(|lb| lb.cgroup_root.clone()));
        let clock = ebpf_events::KtimeClock::measure().context("measuring the kernel clock")?;
        let parser = observer::parser::Parser::new(
            config.node_name.clone(),
            clock,
            getters.clone().into_parser_getters(),
        );
        tasks.spawn(l7proxy::run_records(
            record_queue,
            observer::parser::Parser::new(
                config.node_name.clone(),
                clock,
                getters.into_parser_getters(),
            ),
            ingest.clone(),
            hooks.clone(),
            shutdown(),
        ));
        tasks.spawn(pipeline::run(
            reader,
            parser,
            ingest.clone(),
            hooks.clone(),
            shutdown(),
        ));
        let listed = kvstore
            .as_ref()
            .map(|kvstore| kvstore.wait_listed(CLUSTER_LISTING_WAIT));
        let ready = async move {
            if let Some(listed) = listed {
                if !listed.await {
                    tracing::warn!(
                        "etcd did not list identities and pods within {CLUSTER_LISTING_WAIT:?}; \
                         programming the datapath with what is known"
                    );
                }
            }
        };
        tasks.spawn(datapath_sync::run(
            datapath,
            state.clone(),
            links,
            ingest.clone(),
            hooks.clone(),
            ready,
            shutdown(),
        ));
    }

    if let Some(path) = config.replay.clone() {
        let options = observer::replay::ReplayOptions {
            retimestamp: config.replay_retimestamp,
            rate: config.replay_rate,
            repeat: config.replay_repeat,
        };
        let ingest = ingest.clone();
        // Replayed flows take the datapath's way: metrics, then export, then the ring.
        let hooks = hooks.clone();
        tasks.spawn(async move {
            let replayed = observer::replay::replay_with(&path, &options, &ingest, move |flow| {
                hooks.on_flow(flow)
            });
            match replayed.await {
                Ok(stats) => tracing::info!(?stats, path = %path.display(), "replay finished"),
                Err(e) => tracing::error!("replay of {} failed: {e}", path.display()),
            }
            crate::memory::release_freed_memory();
        });
    }

    // The Hubble API with the peer service next to it, over the node source's hub.
    let routes = tonic::service::Routes::new(peer_service::peer_service(
        hub,
        peer_service::PeerServiceConfig {
            // Relays then connect with TLS and check `<node>.<cluster>.hubble-grpc.cilium.io`.
            with_tls: config.tls.is_some(),
        },
    ));
    let mut serve_config = observer::server::ServeConfig::default();
    serve_config.unix_socket = config.unix_socket.clone();
    serve_config.listen_address = config.listen_address.clone();
    serve_config.tls = config.tls.clone();
    let server = observer::server::Server::bind(serve_config)
        .await
        .context("binding the Hubble API")?;
    if let Some(kvstore) = &kvstore {
        // Announced only now: a relay connects as soon as it hears of the node.
        kvstore.register_node();
    }
    tracing::info!(
        node = %config.node_name,
        unix = ?server.unix_socket(),
        tcp = ?server.tcp_address(),
        "serving the Hubble API"
    );
    let serving = tokio::spawn(server.run(observer, routes, shutdown()));

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(8), serving).await {
        Ok(Ok(Err(e))) => tracing::error!("Hubble API server: {e}"),
        Err(_) => tracing::warn!("Hubble API server did not stop in time"),
        _ => {}
    }
    drop(node_source);
    if let Some(kvstore) = kvstore {
        kvstore.stop().await;
    }
    tasks.abort_all();
    if let Err(e) = state.save_fqdn_if_changed() {
        tracing::error!("saving the FQDN cache: {e}");
    }
    let _ = std::fs::remove_file(&config.admin_socket);
    Ok(())
}

/// Expires names and saves the FQDN cache when it changed, every
/// [`FQDN_MAINTENANCE_INTERVAL`], until shutdown.
async fn maintain_fqdn_cache(
    state: Arc<AgentState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(FQDN_MAINTENANCE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        state.expire_fqdn();
        if let Err(e) = state.save_fqdn_if_changed() {
            tracing::warn!("saving the FQDN cache: {e}");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The node's own addresses: traffic from them has the `host` identity.
fn local_addresses() -> Vec<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| a.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .filter(|ip| !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default()
}
