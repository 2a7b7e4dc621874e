//! End-to-end tests of the tc-level load balancer (`bpf/lb_tc.c`): real namespaces,
//! registered endpoints, client sockets the socket programs never see (no cgroup is
//! attached), real servers behind a VIP.
//!
//! Needs root (prints `SKIP:` without it, fails under `CI=true`).

#[allow(dead_code)]
#[path = "datapath/topology.rs"]
mod topology;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ebpf_events::abi::lb::{backend_state, seeded_tc_slot, IPPROTO_TCP, IPPROTO_UDP};
use ebpf_events::abi::EVENT_FLAG_TO_ENDPOINT;
use ebpf_events::constants::{drop_reason, identity, message_type, trace_point};
use ebpf_events::loader::{Datapath, DatapathConfig, EventReader, LbBackendSpec, LbFrontend};
use ebpf_events::{
    decode, Direction, EndpointEntry, EventHeader, IpcacheEntry, PolicyKey, PolicyValue,
};
use topology::{in_netns, Pod, Topology};

const VIP: &str = "10.96.70.1";
const VIP6: &str = "fd00:96::70";
const SEED: u32 = 0x7c1b;

const ID_CLIENT: u32 = 3001;
const ID_A: u32 = 3002;
const ID_B: u32 = 3003;

/// A record and its packet, with the addresses and ports of the packet.
#[derive(Clone, Debug)]
struct Record {
    header: EventHeader,
    src: SocketAddr,
    dst: SocketAddr,
}

/// Reads every record so far.
fn drain(reader: &mut EventReader, into: &mut Vec<Record>) {
    reader.drain(usize::MAX, |raw| {
        let Ok(event) = decode(raw) else { return };
        let header = *event.header();
        if let Some((src, dst)) = endpoints_of(event.packet(), header.is_ipv6()) {
            into.push(Record { header, src, dst });
        }
    });
}

/// Source and destination (address and port) of a TCP or UDP frame.
fn endpoints_of(packet: &[u8], ipv6: bool) -> Option<(SocketAddr, SocketAddr)> {
    let port = |at: usize| {
        packet
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    if ipv6 {
        let src: [u8; 16] = packet.get(22..38)?.try_into().ok()?;
        let dst: [u8; 16] = packet.get(38..54)?.try_into().ok()?;
        Some((
            SocketAddr::new(IpAddr::from(src), port(54)?),
            SocketAddr::new(IpAddr::from(dst), port(56)?),
        ))
    } else {
        let l4 = 14 + usize::from(packet.get(14)? & 0x0f) * 4;
        let src: [u8; 4] = packet.get(26..30)?.try_into().ok()?;
        let dst: [u8; 4] = packet.get(30..34)?.try_into().ok()?;
        Some((
            SocketAddr::new(IpAddr::from(src), port(l4)?),
            SocketAddr::new(IpAddr::from(dst), port(l4 + 2)?),
        ))
    }
}

/// A server answering every TCP connection or UDP datagram with its name.
struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Server {
    fn start(netns: &str, addr: SocketAddr, udp: bool, name: &'static str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let handle = in_netns(netns, move || {
            if udp {
                let socket = UdpSocket::bind(addr)?;
                socket.set_read_timeout(Some(Duration::from_millis(20)))?;
                tx.send(()).ok();
                let mut buf = [0u8; 64];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = socket.recv_from(&mut buf) {
                        socket.send_to(name.as_bytes(), from)?;
                    }
                }
            } else {
                let listener = TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                tx.send(()).ok();
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false)?;
                            stream.write_all(name.as_bytes())?;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(3))
            .with_context(|| format!("server {name} on {addr} did not start"))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// What one TCP connection from the client saw: its local port, the peer the
/// socket reports and the answer (or the error).
#[derive(Debug)]
struct Call {
    local_port: u16,
    peer: Option<SocketAddr>,
    answer: String,
}

/// `count` TCP connections from `pod` to `target` (the test process: outside any
/// cgroup the socket programs could be attached to).
fn tcp_calls(pod: &Pod, target: SocketAddr, count: usize) -> Result<Vec<Call>> {
    in_netns(&pod.netns, move || {
        let mut calls = Vec::new();
        for _ in 0..count {
            calls.push(
                match TcpStream::connect_timeout(&target, Duration::from_millis(700)) {
                    Ok(mut stream) => {
                        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                        let mut answer = String::new();
                        stream.read_to_string(&mut answer)?;
                        Call {
                            local_port: stream.local_addr()?.port(),
                            peer: Some(stream.peer_addr()?),
                            answer,
                        }
                    }
                    Err(e) => Call {
                        local_port: 0,
                        peer: None,
                        answer: format!("error: {e}"),
                    },
                },
            );
        }
        Ok(calls)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

fn frontend(address: &str, port: u16, protocol: u8, backends: &[(IpAddr, u16, u8)]) -> LbFrontend {
    LbFrontend {
        service_id: 9,
        address: address.parse().expect("vip"),
        port,
        protocol,
        nodeport: false,
        backends: backends
            .iter()
            .map(|(address, port, state)| LbBackendSpec {
                address: *address,
                port: *port,
                state: *state,
            })
            .collect(),
    }
}

fn wait_for(
    reader: &mut EventReader,
    records: &mut Vec<Record>,
    what: &str,
    found: impl Fn(&[Record]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        drain(reader, records);
        if found(records) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "no records for {what} in {records:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_trace(r: &Record, point: u8) -> bool {
    r.header.msg_type == message_type::TRACE && r.header.subtype == point
}

#[test]
fn tc_programs_balance_what_the_sockets_do_not() -> Result<()> {
    if !tests::skip::require_root(
        "tc_programs_balance_what_the_sockets_do_not",
        "network namespaces, eBPF",
    ) {
        return Ok(());
    }
    let topology = Topology::create("tl", 3)?;
    let (client, a, b) = (
        topology.pods[0].clone(),
        topology.pods[1].clone(),
        topology.pods[2].clone(),
    );
    // The client reaches IPv6 frontends through the node.
    let status = Command::new("ip")
        .args(["-n", &client.netns, "-6", "route", "add", "default", "via"])
        .arg(client.host_ipv6.to_string())
        .args(["dev", "eth0"])
        .status()?;
    ensure!(status.success(), "adding the client's IPv6 default route");
    topology::enter_netns(&topology.node)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut datapath = Datapath::load(DatapathConfig::default())?;
    for (index, (pod, id)) in [(&client, ID_CLIENT), (&a, ID_A), (&b, ID_B)]
        .into_iter()
        .enumerate()
    {
        let ifindex = datapath.attach(&pod.host_veth)?;
        let endpoint = u16::try_from(21 + index)?;
        datapath.upsert_endpoint(
            ifindex,
            EndpointEntry::new(endpoint, id)
                .with_ipv4(pod.ipv4)
                .with_ipv6(pod.ipv6)
                .with_enforcement(false, pod.netns == client.netns),
        )?;
        datapath.upsert_ipcache(
            format!("{}/32", pod.ipv4).parse()?,
            IpcacheEntry::local_endpoint(id, endpoint),
        )?;
    }
    datapath.upsert_ipcache(
        format!("{}/128", client.host_ipv6).parse()?,
        IpcacheEntry::remote(identity::HOST),
    )?;
    // The client may call anything but B (egress enforced).
    let allow_all_but_b = [
        (
            PolicyKey::new(ID_CLIENT, ID_A, 0, 0, Direction::Egress),
            PolicyValue::allow(1),
        ),
        (
            PolicyKey::new(ID_CLIENT, identity::HOST, 0, 0, Direction::Egress),
            PolicyValue::allow(2),
        ),
    ];
    let allow_b = (
        PolicyKey::new(ID_CLIENT, ID_B, 0, 0, Direction::Egress),
        PolicyValue::allow(3),
    );
    let mut policy = allow_all_but_b.to_vec();
    policy.push(allow_b);
    datapath.sync_policy(&policy)?;
    let mut reader = datapath.take_event_reader()?;
    let mut records = Vec::new();

    let (a_ip, b_ip) = (IpAddr::from(a.ipv4), IpAddr::from(b.ipv4));
    let node_v6 = IpAddr::from(client.host_ipv6);
    let _a = Server::start(&a.netns, SocketAddr::new(a_ip, 8080), false, "A")?;
    let _b = Server::start(&b.netns, SocketAddr::new(b_ip, 8080), false, "B")?;
    let _dns = Server::start(&a.netns, SocketAddr::new(a_ip, 5353), true, "dns-A")?;
    let _v6 = Server::start(
        &topology.node,
        SocketAddr::new(node_v6, 8080),
        false,
        "node6",
    )?;
    let active = backend_state::ACTIVE;
    let services = |b_state: u8| {
        vec![
            frontend(
                VIP,
                80,
                IPPROTO_TCP,
                &[(a_ip, 8080, active), (b_ip, 8080, b_state)],
            ),
            frontend(VIP, 53, IPPROTO_UDP, &[(a_ip, 5353, active)]),
            frontend(VIP6, 80, IPPROTO_TCP, &[(node_v6, 8080, active)]),
        ]
    };
    datapath.sync_services(&services(active))?;
    let vip: IpAddr = VIP.parse()?;
    let vip_port = SocketAddr::new(vip, 80);

    // 20 connections to the VIP: both backends answer, the socket sees the VIP.
    let calls = tcp_calls(&client, vip_port, 20)?;
    let served: BTreeSet<&str> = calls.iter().map(|c| c.answer.as_str()).collect();
    ensure!(served == BTreeSet::from(["A", "B"]), "{calls:#?}");
    for call in &calls {
        ensure!(call.peer == Some(vip_port), "{call:?}");
    }

    // Each SYN: from-endpoint towards the VIP (before the rewrite), then
    // to-endpoint at the backend that answered; the SYN-ACK is traced at the
    // client with the backend as its source (before the reverse translation).
    let client_ip = IpAddr::from(client.ipv4);
    wait_for(&mut reader, &mut records, "20 SYN-ACKs", |records| {
        records
            .iter()
            .filter(|r| {
                is_trace(r, trace_point::TO_LXC)
                    && r.dst.ip() == client_ip
                    && r.header.flags & EVENT_FLAG_TO_ENDPOINT != 0
                    && r.src.port() == 8080
            })
            .count()
            >= 20
    })?;
    for call in &calls {
        let from_client = SocketAddr::new(client_ip, call.local_port);
        let backend = if call.answer == "A" { a_ip } else { b_ip };
        let ours = |r: &&Record| r.header.msg_type == message_type::TRACE;
        ensure!(
            records
                .iter()
                .filter(ours)
                .any(|r| r.header.subtype == trace_point::FROM_LXC
                    && r.src == from_client
                    && r.dst == vip_port
                    && r.header.dst_identity == identity::WORLD),
            "no from-endpoint towards the VIP for {call:?}"
        );
        ensure!(
            !records
                .iter()
                .filter(ours)
                .any(|r| r.header.subtype == trace_point::FROM_LXC
                    && r.src == from_client
                    && r.dst.ip() == backend),
            "a second from-endpoint for {call:?}"
        );
        ensure!(
            records
                .iter()
                .filter(ours)
                .any(|r| r.header.subtype == trace_point::TO_LXC
                    && r.src == from_client
                    && r.dst == SocketAddr::new(backend, 8080)),
            "no to-endpoint at the backend for {call:?}"
        );
        ensure!(
            records
                .iter()
                .filter(ours)
                .any(|r| r.header.subtype == trace_point::TO_LXC
                    && r.dst == from_client
                    && r.src == SocketAddr::new(backend, 8080)),
            "no reply traced at the client for {call:?}"
        );
    }
    // The connections are remembered both ways.
    let nat = datapath.lb_nat_entries()?;
    ensure!(nat.len() >= 40, "{} entries", nat.len());

    // A seed makes the choice a function of the client's address and port.
    datapath.set_config(DatapathConfig {
        lb_seed: SEED,
        ..DatapathConfig::default()
    })?;
    for call in tcp_calls(&client, vip_port, 10)? {
        let slot = seeded_tc_slot(SEED, client_ip, call.local_port, 2);
        let expected = if slot == 1 { "A" } else { "B" };
        ensure!(call.answer == expected, "{call:?}: slot {slot}");
    }
    datapath.set_config(DatapathConfig::default())?;

    // Policy applies to the backend: with B not allowed, connections given to B
    // are dropped there, with B's identity, and A's still land.
    datapath.sync_policy(&allow_all_but_b)?;
    records.clear();
    let calls = tcp_calls(&client, vip_port, 12)?;
    ensure!(calls.iter().any(|c| c.answer == "A"), "{calls:#?}");
    ensure!(
        calls.iter().all(|c| c.answer == "A" || c.peer.is_none()),
        "{calls:#?}"
    );
    wait_for(&mut reader, &mut records, "a policy drop", |records| {
        records.iter().any(|r| {
            r.header.msg_type == message_type::DROP
                && r.header.subtype == drop_reason::POLICY_DENIED
                && r.dst == SocketAddr::new(b_ip, 8080)
                && r.header.dst_identity == ID_B
        })
    })?;
    // A connection that never got past its SYN is remembered as an opening one
    // (at most a minute, not the 6 hours of an established one); the answered ones
    // closed (FIN: 10 seconds).
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let now = u64::try_from(now.tv_sec())? * 1_000_000_000 + u64::try_from(now.tv_nsec())?;
    let forward = datapath.lb_nat_entries()?;
    let lifetime = |backend: IpAddr| {
        let addr = ebpf_events::abi::lb::addr_bytes(backend).1;
        forward
            .iter()
            .filter(|(k, e)| {
                k.direction == Direction::Egress as u8
                    && k.protocol == IPPROTO_TCP
                    && e.addr == addr
            })
            .map(|(_, e)| e.expires_ns.saturating_sub(now) / 1_000_000_000)
            .collect::<Vec<u64>>()
    };
    let (to_a, to_b) = (lifetime(a_ip), lifetime(b_ip));
    // B's entries: the earlier, closed connections and the denied ones.
    ensure!(
        to_b.iter().all(|s| *s <= 60) && to_b.iter().any(|s| (11..=60).contains(s)),
        "seconds left to the entries of connections given to B: {to_b:?}"
    );
    ensure!(
        to_a.iter().all(|s| *s <= 10),
        "seconds left to the closed connections' entries: {to_a:?}"
    );
    datapath.sync_policy(&policy)?;

    // A terminating backend gets no new connections.
    datapath.sync_services(&services(backend_state::TERMINATING))?;
    let calls = tcp_calls(&client, vip_port, 10)?;
    ensure!(calls.iter().all(|c| c.answer == "A"), "{calls:#?}");

    // UDP: the answer comes from the VIP.
    let dns_vip = SocketAddr::new(vip, 53);
    let (answer, from) = in_netns(&client.netns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        socket.send_to(b"query", dns_vip)?;
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv_from(&mut buf)?;
        Ok((String::from_utf8_lossy(&buf[..n]).to_string(), from))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("udp client panicked"))??;
    ensure!(
        (answer.as_str(), from) == ("dns-A", dns_vip),
        "{answer} from {from}"
    );

    // IPv6 frontend.
    let vip6 = SocketAddr::new(VIP6.parse()?, 80);
    let calls = tcp_calls(&client, vip6, 2)?;
    for call in &calls {
        ensure!(
            call.answer == "node6" && call.peer == Some(vip6),
            "{call:?}"
        );
    }

    // No active backend: the SYN is dropped as Cilium drops it (NO_SERVICE).
    datapath.sync_services(&[frontend(
        VIP,
        80,
        IPPROTO_TCP,
        &[(b_ip, 8080, backend_state::MAINTENANCE)],
    )])?;
    records.clear();
    let calls = tcp_calls(&client, vip_port, 1)?;
    ensure!(calls[0].peer.is_none(), "{calls:?}");
    wait_for(&mut reader, &mut records, "a NO_SERVICE drop", |records| {
        records.iter().any(|r| {
            r.header.msg_type == message_type::DROP
                && r.header.subtype == drop_reason::NO_SERVICE
                && r.dst == vip_port
        })
    })?;

    // Traffic straight to a backend is left alone.
    datapath.sync_services(&services(active))?;
    let before = datapath.lb_nat_entries()?.len();
    let calls = tcp_calls(&client, SocketAddr::new(a_ip, 8080), 2)?;
    ensure!(calls.iter().all(|c| c.answer == "A"), "{calls:#?}");
    ensure!(datapath.lb_nat_entries()?.len() == before);
    Ok(())
}
