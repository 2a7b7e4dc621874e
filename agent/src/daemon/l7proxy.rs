//! The node's L7 (HTTP) proxies: one transparent listener per redirect's proxy
//! port, the policy they enforce, the sockets they open to the original
//! destination, and their records turned into flows.
//!
//! - [`L7Proxies::update`] runs in the datapath sync before the policy map is
//!   written: it compiles the redirects' HTTP rules once per policy change and binds
//!   a listener (`IP_TRANSPARENT`, IPv4 and IPv6) for every new proxy port, so no
//!   policy entry ever names a port nobody listens on; listeners of redirects that
//!   went away are closed after the entries no longer name them.
//! - [`AgentLookup`] answers the proxy's [`PolicyLookup`]: the redirect by proxy
//!   port, the client's and the destination's identities from the endpoints and the
//!   cluster's ipcache, the rules for the client's identity (or any peer). An
//!   egress redirect to a local endpoint whose ingress policy redirects the same
//!   connection carries that endpoint's rules too (`Decision::chained_ingress`):
//!   the egress proxy enforces and records both directions, and its connection
//!   carries the ingress proxy's mark, so the datapath neither redirects it a
//!   second time nor drops it for want of a redirect.
//! - [`MarkedConnector`] opens the upstream connection from the client's own
//!   address (transparent bind) with the socket mark
//!   [`ebpf_events::constants::mark::proxy`] carrying the client's identity: the
//!   datapath recognises it, does not redirect it again, applies policy with the
//!   client's identity and steers the backend's replies back to this socket.
//! - DNS redirects (`rules.dns`) get [`proxy::dns::DnsProxy`] on a transparent
//!   UDP socket (reading each query's original destination from
//!   `IP_ORIGDSTADDR`) or TCP listener; its own query leaves from the client's
//!   address with the same mark, and allowed answers feed the FQDN cache
//!   ([`crate::fqdn::CacheAnswerHook`]) before they are released.
//! - [`run_records`] turns the proxies' records into flows
//!   (`observer::parser::Parser::parse_log_record`) through the same hooks and into
//!   the same ring as datapath flows.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use ebpf_events::constants::mark;
use observer::parser::Parser;
use observer::IngestHandle;
use proto::accesslog::LogRecord;
use proxy::dns::{DnsDecision, DnsPolicy, DnsPolicyLookup, DnsProxy, DnsRuleSpec};
use proxy::http::{HttpPolicy, HttpProxy, HttpRuleSpec, ProxyConfig};
use proxy::{ConnInfo, ConnectFuture, Decision, PolicyLookup, RecordSink, UpstreamConnector};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::sync::{mpsc, watch};

use super::hooks::FlowHooks;
use crate::identity::ReservedIdentity;
use crate::policy::{
    CompiledPolicy, Direction, DnsRedirects, DnsRule, HttpRule, RedirectKey, Redirects,
};
use crate::state::AgentState;

/// Pending connections per proxy listener.
const LISTEN_BACKLOG: i32 = 1024;

/// One redirect as the proxy sees it: rules compiled per peer identity.
struct PortRedirect<P> {
    key: RedirectKey,
    peers: BTreeMap<u32, Arc<P>>,
}

/// An HTTP redirect: its rules compiled per peer identity.
type Redirect = PortRedirect<HttpPolicy>;
/// A DNS redirect: its rules compiled per peer identity.
type DnsRedirect = PortRedirect<DnsPolicy>;

/// The redirects by proxy port, rebuilt when the policy changes.
#[derive(Default)]
struct Table {
    source: Redirects,
    by_port: HashMap<u16, Arc<Redirect>>,
    /// The ingress redirects of `by_port` by (endpoint identity, port), for egress
    /// redirects that reach a local endpoint whose ingress redirects them too.
    ingress: HashMap<(u32, u16), Arc<Redirect>>,
    dns_source: DnsRedirects,
    dns_by_port: HashMap<u16, Arc<DnsRedirect>>,
}

/// The policy and identities the proxies ask for.
pub struct AgentLookup {
    state: Arc<AgentState>,
    table: RwLock<Table>,
}

impl AgentLookup {
    /// The security identity of an address: a local endpoint, a pod of another node,
    /// else world.
    fn identity_of(&self, ip: IpAddr) -> u32 {
        self.state
            .identity_of_ip(ip)
            .map_or(ReservedIdentity::World.id(), |id| id.0)
    }

    /// The ingress rules a local destination endpoint has for the client of an egress
    /// redirect, when its policy redirects the same connection: the egress proxy
    /// enforces them too (a connection is redirected once).
    fn chained_ingress(
        &self,
        table: &Table,
        conn: &ConnInfo,
        source_identity: u32,
        destination_identity: u32,
    ) -> Option<Arc<HttpPolicy>> {
        if conn.ingress {
            return None;
        }
        let redirect = table
            .ingress
            .get(&(destination_identity, conn.destination.port()))?;
        self.state.endpoint_by_ip(conn.destination.ip())?;
        redirect
            .peers
            .get(&source_identity)
            .or_else(|| redirect.peers.get(&0))
            .cloned()
    }

    /// Whether the proxy's connection for `conn` is an ingress proxy's as the
    /// datapath sees it (an ingress redirect, or an egress one chained to ingress
    /// rules).
    fn enforces_ingress(&self, conn: &ConnInfo) -> bool {
        if conn.ingress {
            return true;
        }
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let source = self.identity_of(conn.source.ip());
        let destination = self.identity_of(conn.destination.ip());
        self.chained_ingress(&table, conn, source, destination)
            .is_some()
    }
}

impl PolicyLookup for AgentLookup {
    fn http_decision(&self, conn: &ConnInfo) -> Option<Decision> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let redirect = table.by_port.get(&conn.proxy_port)?;
        let source_identity = self.identity_of(conn.source.ip());
        let destination_identity = self.identity_of(conn.destination.ip());
        let (local, peer) = match redirect.key.direction {
            Direction::Ingress => (destination_identity, source_identity),
            Direction::Egress => (source_identity, destination_identity),
        };
        if local != redirect.key.local_identity || conn.destination.port() != redirect.key.dport {
            return None;
        }
        let policy = redirect
            .peers
            .get(&peer)
            .or_else(|| redirect.peers.get(&0))?
            .clone();
        let chained_ingress =
            self.chained_ingress(&table, conn, source_identity, destination_identity);
        Some(Decision {
            policy,
            source_identity,
            destination_identity,
            chained_ingress,
        })
    }
}

impl DnsPolicyLookup for AgentLookup {
    fn dns_decision(&self, conn: &proxy::ConnInfo) -> Option<DnsDecision> {
        let redirect = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .dns_by_port
            .get(&conn.proxy_port)?
            .clone();
        let source_identity = self.identity_of(conn.source.ip());
        let destination_identity = self.identity_of(conn.destination.ip());
        if source_identity != redirect.key.local_identity
            || conn.destination.port() != redirect.key.dport
        {
            return None;
        }
        let policy = redirect
            .peers
            .get(&destination_identity)
            .or_else(|| redirect.peers.get(&0))?
            .clone();
        Some(DnsDecision {
            policy,
            source_identity,
            destination_identity,
        })
    }

    /// The query leaves from the client's address, marked with its identity: the
    /// datapath does not redirect it again and steers the answer back here.
    fn prepare_upstream(&self, conn: &proxy::ConnInfo, socket: &Socket) -> io::Result<()> {
        let identity = self.identity_of(conn.source.ip());
        if conn.destination.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_ip_transparent(true)?;
        socket.set_mark(mark::proxy(identity, false))?;
        socket.bind(&SockAddr::from(SocketAddr::new(conn.source.ip(), 0)))
    }
}

/// Opens the proxy's connection to the original destination from the client's
/// address, marked with the client's identity.
pub struct MarkedConnector {
    lookup: Arc<AgentLookup>,
}

impl UpstreamConnector for MarkedConnector {
    fn connect<'a>(&'a self, conn: &'a ConnInfo) -> ConnectFuture<'a> {
        Box::pin(async move {
            let identity = self.lookup.identity_of(conn.source.ip());
            let ingress = self.lookup.enforces_ingress(conn);
            let domain = match conn.destination {
                SocketAddr::V4(_) => Domain::IPV4,
                SocketAddr::V6(_) => Domain::IPV6,
            };
            let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            if domain == Domain::IPV6 {
                socket.set_only_v6(true)?;
            }
            socket.set_ip_transparent(true)?;
            socket.set_mark(mark::proxy(identity, ingress))?;
            socket.set_nodelay(true)?;
            socket.bind(&SockAddr::from(SocketAddr::new(conn.source.ip(), 0)))?;
            socket.set_nonblocking(true)?;
            let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
            socket.connect(conn.destination).await
        })
    }
}

/// One proxy port's listeners.
struct Listener {
    stop: watch::Sender<bool>,
}

/// The node's HTTP proxies.
pub struct L7Proxies {
    lookup: Arc<AgentLookup>,
    answers: Arc<crate::fqdn::CacheAnswerHook>,
    connector: Arc<MarkedConnector>,
    records: RecordSink,
    listeners: Mutex<BTreeMap<u16, Listener>>,
    runtime: tokio::runtime::Handle,
}

/// A listener that could not be opened, naming its port.
#[derive(Debug, thiserror::Error)]
#[error("L7 proxy listener on port {port} ({family}): {source}")]
pub struct ListenError {
    pub port: u16,
    pub family: &'static str,
    #[source]
    pub source: io::Error,
}

impl L7Proxies {
    /// Proxies for `state`; records go to `records`. Call from a tokio runtime.
    pub fn new(state: Arc<AgentState>, records: RecordSink) -> Arc<Self> {
        let answers = Arc::new(crate::fqdn::CacheAnswerHook::new(state.clone()));
        let lookup = Arc::new(AgentLookup {
            state,
            table: RwLock::new(Table::default()),
        });
        Arc::new(L7Proxies {
            answers,
            connector: Arc::new(MarkedConnector {
                lookup: lookup.clone(),
            }),
            lookup,
            records,
            listeners: Mutex::new(BTreeMap::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Brings the rules and listeners in line with `compiled` (before its policy
    /// entries are written): compiles the HTTP rules when they changed and opens a
    /// listener for every new proxy port. Returns the ports whose listeners are no
    /// longer needed; close them with [`L7Proxies::close`] once the datapath no longer
    /// names them.
    pub fn update(&self, compiled: &CompiledPolicy) -> Result<Vec<u16>, ListenError> {
        {
            let mut table = self.lookup.table.write().unwrap_or_else(|e| e.into_inner());
            let ports_changed = compiled.proxy_ports.len()
                != table.by_port.len() + table.dns_by_port.len()
                || table
                    .by_port
                    .iter()
                    .any(|(port, r)| compiled.proxy_ports.get(&r.key) != Some(port));
            let ports_changed = ports_changed
                || table
                    .dns_by_port
                    .iter()
                    .any(|(port, r)| compiled.proxy_ports.get(&r.key) != Some(port));
            if table.source != compiled.redirects || ports_changed {
                table.by_port = compile_table(compiled);
                table.ingress = table
                    .by_port
                    .values()
                    .filter(|r| r.key.direction == Direction::Ingress)
                    .map(|r| ((r.key.local_identity, r.key.dport), r.clone()))
                    .collect();
                table.source = compiled.redirects.clone();
            }
            if table.dns_source != compiled.dns_redirects || ports_changed {
                table.dns_by_port = compile_dns_table(compiled);
                table.dns_source = compiled.dns_redirects.clone();
            }
        }
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for (key, &port) in &compiled.proxy_ports {
            if listeners.contains_key(&port) {
                continue;
            }
            if compiled.dns_redirects.contains_key(key) {
                let stop = self.start_dns(key, port)?;
                listeners.insert(port, Listener { stop });
                continue;
            }
            let ingress = key.direction == Direction::Ingress;
            let v4 = listen(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).map_err(
                |source| ListenError {
                    port,
                    family: "IPv4",
                    source,
                },
            )?;
            let v6 = listen(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
            let proxy = Arc::new(HttpProxy::new(
                ProxyConfig::new(port, ingress),
                self.lookup.clone(),
                self.connector.clone(),
                self.records.clone(),
            ));
            let (stop, stopped) = watch::channel(false);
            let _guard = self.runtime.enter();
            for listener in std::iter::once(Ok(v4)).chain(std::iter::once(v6)) {
                let listener = match listener.and_then(tokio::net::TcpListener::from_std) {
                    Ok(listener) => listener,
                    Err(e) => {
                        // IPv6 may be off on the node; IPv4 alone still serves.
                        tracing::warn!(port, "L7 proxy: no IPv6 listener: {e}");
                        continue;
                    }
                };
                let proxy = proxy.clone();
                let mut stopped = stopped.clone();
                self.runtime.spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    if let Err(e) = proxy.serve(listener, shutdown).await {
                        tracing::error!(port, "L7 proxy stopped: {e}");
                    }
                });
            }
            tracing::info!(
                port,
                ingress,
                identity = key.local_identity,
                dport = key.dport,
                "L7 proxy listening"
            );
            listeners.insert(port, Listener { stop });
        }
        let wanted: std::collections::BTreeSet<u16> =
            compiled.proxy_ports.values().copied().collect();
        Ok(listeners
            .keys()
            .filter(|p| !wanted.contains(p))
            .copied()
            .collect())
    }

    /// Opens the DNS proxy of one DNS redirect: a transparent UDP socket (asking
    /// for each datagram's original destination) or TCP listener, IPv4 and IPv6.
    fn start_dns(&self, key: &RedirectKey, port: u16) -> Result<watch::Sender<bool>, ListenError> {
        let proxy = DnsProxy::new(
            port,
            self.lookup.clone(),
            self.answers.clone(),
            self.records.clone(),
        );
        let (stop, stopped) = watch::channel(false);
        let _guard = self.runtime.enter();
        let udp = key.protocol == crate::policy::proto::UDP;
        for (family, ip) in [
            ("IPv4", IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ("IPv6", IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ] {
            let addr = SocketAddr::new(ip, port);
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let opened = if udp {
                listen_udp(addr)
                    .and_then(tokio::net::UdpSocket::from_std)
                    .map(|socket| {
                        let proxy = proxy.clone();
                        self.runtime.spawn(async move {
                            if let Err(e) = proxy::dns::serve_udp(proxy, socket, shutdown).await {
                                tracing::error!(port, "DNS proxy stopped: {e}");
                            }
                        });
                    })
            } else {
                listen(addr)
                    .and_then(tokio::net::TcpListener::from_std)
                    .map(|listener| {
                        let proxy = proxy.clone();
                        self.runtime.spawn(async move {
                            if let Err(e) = proxy::dns::serve_tcp(proxy, listener, shutdown).await {
                                tracing::error!(port, "DNS proxy stopped: {e}");
                            }
                        });
                    })
            };
            match opened {
                Ok(()) => {}
                // IPv6 may be off on the node; IPv4 alone still serves.
                Err(e) if ip.is_ipv6() => tracing::warn!(port, "DNS proxy: no IPv6 socket: {e}"),
                Err(source) => {
                    let _ = stop.send(true);
                    return Err(ListenError {
                        port,
                        family,
                        source,
                    });
                }
            }
        }
        tracing::info!(
            port,
            identity = key.local_identity,
            dport = key.dport,
            protocol = key.protocol,
            "DNS proxy listening"
        );
        Ok(stop)
    }

    /// Closes the listeners of `ports` (open connections finish their request).
    pub fn close(&self, ports: &[u16]) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for port in ports {
            if let Some(listener) = listeners.remove(port) {
                let _ = listener.stop.send(true);
                tracing::info!(port, "L7 proxy closed");
            }
        }
    }
}

/// A transparent, non-blocking listener on `addr`.
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_ip_transparent(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A transparent, non-blocking UDP socket on `addr` that reports each datagram's
/// original destination.
fn listen_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        setsockopt(&socket, sockopt::Ipv6OrigDstAddr, &true)?;
    } else {
        setsockopt(&socket, sockopt::Ipv4OrigDstAddr, &true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_ip_transparent(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Compiles every redirect's rules of one kind (once per policy change), by proxy
/// port. Rules that do not compile leave that peer without rules: its requests
/// are denied (HTTP) or its queries refused (DNS).
fn compile_by_port<R, P>(
    redirects: &BTreeMap<RedirectKey, BTreeMap<u32, Vec<R>>>,
    proxy_ports: &BTreeMap<RedirectKey, u16>,
    kind: &str,
    compile: impl Fn(&[R]) -> Result<P, String>,
) -> HashMap<u16, Arc<PortRedirect<P>>> {
    let mut by_port = HashMap::new();
    for (key, peers) in redirects {
        let Some(&port) = proxy_ports.get(key) else {
            continue;
        };
        let mut compiled_peers = BTreeMap::new();
        for (peer, rules) in peers {
            match compile(rules) {
                Ok(policy) => {
                    compiled_peers.insert(*peer, Arc::new(policy));
                }
                Err(e) => tracing::error!(
                    identity = key.local_identity,
                    port = key.dport,
                    peer,
                    "{kind} rules not compiled, that peer is denied: {e}"
                ),
            }
        }
        by_port.insert(
            port,
            Arc::new(PortRedirect {
                key: *key,
                peers: compiled_peers,
            }),
        );
    }
    by_port
}

fn compile_dns_table(compiled: &CompiledPolicy) -> HashMap<u16, Arc<DnsRedirect>> {
    compile_by_port(
        &compiled.dns_redirects,
        &compiled.proxy_ports,
        "DNS",
        |rules| DnsPolicy::compile(&dns_specs(rules)).map_err(|e| e.to_string()),
    )
}

fn dns_specs(rules: &[DnsRule]) -> Vec<DnsRuleSpec> {
    let some = |s: &String| (!s.is_empty()).then(|| s.clone());
    rules
        .iter()
        .map(|rule| DnsRuleSpec {
            match_name: some(&rule.match_name),
            match_pattern: some(&rule.match_pattern),
        })
        .collect()
}

fn compile_table(compiled: &CompiledPolicy) -> HashMap<u16, Arc<Redirect>> {
    compile_by_port(
        &compiled.redirects,
        &compiled.proxy_ports,
        "L7",
        http_policy,
    )
}

fn http_policy(rules: &[HttpRule]) -> Result<HttpPolicy, String> {
    let specs = rules
        .iter()
        .map(|rule| {
            let header_matches = rule
                .header_matches
                .iter()
                .map(|m| serde_yaml::from_value(m.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("headerMatches: {e}"))?;
            Ok(HttpRuleSpec {
                method: rule.method.clone(),
                path: rule.path.clone(),
                host: rule.host.clone(),
                headers: rule.headers.clone(),
                header_matches,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    HttpPolicy::compile(&specs).map_err(|e| e.to_string())
}

/// Turns the proxies' records into flows: the same hooks (metrics, export) and the
/// same ring as datapath flows.
pub async fn run_records(
    mut records: mpsc::Receiver<LogRecord>,
    parser: Parser,
    ingest: IngestHandle,
    hooks: FlowHooks,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            record = records.recv() => {
                let Some(record) = record else { break };
                let flow = parser.parse_log_record(&record);
                ingest.push_flow(hooks.on_flow(flow));
            }
        }
    }
}
