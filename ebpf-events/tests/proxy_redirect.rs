//! The L7 redirect end to end: a connection whose policy entry carries a proxy
//! port lands on a transparent listener in the node namespace with the original
//! destination as its local address; the proxy's own connection to the backend
//! (marked with the client's identity, bound to the client's address) is not
//! redirected again and its replies come back to the proxy.
//!
//! Needs root (prints `SKIP:` without it); namespaces `hrt-<pid>-<tag>-*` are
//! removed on drop, also on panic.

#[allow(dead_code)]
#[path = "datapath/events.rs"]
mod events;
#[allow(dead_code)]
#[path = "datapath/topology.rs"]
mod topology;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use ebpf_events::constants::{drop_reason, mark, message_type, policy_action, trace_point};
use ebpf_events::loader::{proxy, Datapath, DatapathConfig};
use ebpf_events::{Direction, EndpointEntry, IpcacheEntry, PolicyKey, PolicyValue};
use events::Collector;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use topology::{enter_netns, in_netns, Pod, Topology};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

const ID_CLIENT: u32 = 1001;
const ID_SERVER: u32 = 1002;
const ID_REMOTE: u32 = 1003;
const EP_CLIENT: u16 = 11;
const EP_SERVER: u16 = 12;

const HTTP_PROXY_PORT: u16 = 15001;
const DNS_PROXY_PORT: u16 = 15002;

/// What the test proxy saw of one redirected connection.
#[derive(Debug)]
struct Accepted {
    local: SocketAddr,
    peer: SocketAddr,
}

/// A transparent TCP listener on `port` (in the calling thread's namespace).
fn transparent_listener(port: u16) -> Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_ip_transparent(true)?;
    socket.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        port,
    )))?;
    socket.listen(16)?;
    Ok(socket)
}

/// Relays `count` connections: each goes to its original destination from the
/// client's own address, marked with the client's identity as the agent's
/// proxy does. Reports each accepted connection's addresses.
fn run_proxy(
    listener: Socket,
    count: usize,
    identity_of: impl Fn(IpAddr) -> u32 + Send + 'static,
    report: mpsc::Sender<Accepted>,
) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || {
        for _ in 0..count {
            let (conn, peer) = listener.accept()?;
            let local = conn
                .local_addr()?
                .as_socket()
                .ok_or_else(|| anyhow!("not an inet socket"))?;
            let peer = peer
                .as_socket()
                .ok_or_else(|| anyhow!("not an inet peer"))?;
            report.send(Accepted { local, peer }).ok();
            let mut downstream: TcpStream = conn.into();
            downstream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut request = [0u8; 4];
            downstream.read_exact(&mut request)?;

            let upstream = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            upstream.set_ip_transparent(true)?;
            upstream.set_mark(mark::proxy(identity_of(peer.ip()), true))?;
            upstream.bind(&SockAddr::from(SocketAddr::new(peer.ip(), 0)))?;
            upstream
                .connect_timeout(&SockAddr::from(local), Duration::from_secs(2))
                .with_context(|| format!("proxy connecting to {local}"))?;
            let mut upstream: TcpStream = upstream.into();
            upstream.set_read_timeout(Some(Duration::from_secs(3)))?;
            upstream.write_all(&request)?;
            let mut answer = [0u8; 4];
            upstream.read_exact(&mut answer)?;
            downstream.write_all(&answer)?;
        }
        Ok(())
    })
}

/// Serves `count` connections on port 80 in `pod`; answers "pong" and reports
/// each peer address.
fn backend(
    pod: &Pod,
    count: usize,
) -> (
    mpsc::Receiver<SocketAddr>,
    std::thread::JoinHandle<Result<()>>,
) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (peer_tx, peer_rx) = mpsc::channel();
    let handle = in_netns(&pod.netns, move || {
        let listener = std::net::TcpListener::bind("0.0.0.0:80")?;
        ready_tx.send(()).ok();
        for _ in 0..count {
            let (mut stream, peer) = listener.accept()?;
            peer_tx.send(peer).ok();
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf)?;
            stream.write_all(b"pong")?;
        }
        Ok(())
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(2));
    (peer_rx, handle)
}

/// Connects from `pod` to `addr`, sends "ping" and returns the answer.
fn exchange(pod: &Pod, addr: SocketAddr) -> Result<[u8; 4]> {
    in_netns(&pod.netns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        Ok(buf)
    })
    .join()
    .map_err(|_| anyhow!("client thread panicked"))?
}

#[test]
fn redirect_lands_on_transparent_listener_with_original_destination() -> Result<()> {
    if !tests::skip::require_root(
        "redirect_lands_on_transparent_listener_with_original_destination",
        "network namespaces, eBPF",
    ) {
        return Ok(());
    }
    // pods[0]: local client, pods[1]: local server, pods[2]: a client "on another
    // node" whose veth gets only the uplink program.
    let topology = Topology::create("l7", 3)?;
    let (client, server, remote) = (
        topology.pods[0].clone(),
        topology.pods[1].clone(),
        topology.pods[2].clone(),
    );
    enter_netns(&topology.node)?;
    proxy::install_routes()?;
    let mut datapath = Datapath::load(DatapathConfig::default()).context("loading datapath")?;
    let client_if = datapath.attach(&client.host_veth)?;
    let server_if = datapath.attach(&server.host_veth)?;
    let uplink_if = datapath.attach_device(&remote.host_veth)?;
    datapath.upsert_endpoint(
        client_if,
        EndpointEntry::new(EP_CLIENT, ID_CLIENT).with_ipv4(client.ipv4),
    )?;
    datapath.upsert_endpoint(
        server_if,
        EndpointEntry::new(EP_SERVER, ID_SERVER)
            .with_ipv4(server.ipv4)
            .with_enforcement(true, false),
    )?;
    for (ip, entry) in [
        (
            client.ipv4,
            IpcacheEntry::local_endpoint(ID_CLIENT, EP_CLIENT),
        ),
        (
            server.ipv4,
            IpcacheEntry::local_endpoint(ID_SERVER, EP_SERVER),
        ),
        (remote.ipv4, IpcacheEntry::remote(ID_REMOTE)),
    ] {
        datapath.upsert_ipcache(format!("{ip}/32").parse()?, entry)?;
    }
    let ingress = |remote: u32, port: u16, proto: u8| {
        PolicyKey::new(ID_SERVER, remote, port, proto, Direction::Ingress)
    };
    datapath.sync_policy(&[
        (
            ingress(ID_CLIENT, 80, IPPROTO_TCP),
            PolicyValue::redirect(7, HTTP_PROXY_PORT),
        ),
        (
            ingress(ID_REMOTE, 80, IPPROTO_TCP),
            PolicyValue::redirect(8, HTTP_PROXY_PORT),
        ),
        (
            ingress(ID_CLIENT, 53, IPPROTO_UDP),
            PolicyValue::redirect(9, DNS_PROXY_PORT),
        ),
    ])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut events = Collector::new(datapath.take_event_reader()?);

    let backend_addr = SocketAddr::new(IpAddr::V4(server.ipv4), 80);
    let (peers, backend_thread) = backend(&server, 2);
    let listener = transparent_listener(HTTP_PROXY_PORT)?;
    let (accepted_tx, accepted) = mpsc::channel();
    let (client_ip, remote_ip) = (IpAddr::V4(client.ipv4), IpAddr::V4(remote.ipv4));
    let proxy_thread = run_proxy(
        listener,
        2,
        move |ip| {
            if ip == client_ip {
                ID_CLIENT
            } else if ip == remote_ip {
                ID_REMOTE
            } else {
                0
            }
        },
        accepted_tx,
    );

    // A local client: redirected at its own veth's ingress.
    let answer = exchange(&client, backend_addr)?;
    ensure!(&answer == b"pong", "unexpected answer {answer:?}");
    let first = accepted.recv_timeout(Duration::from_secs(2))?;
    ensure!(
        first.local == backend_addr,
        "the proxy's socket has the original destination as local address: {first:?}"
    );
    ensure!(
        first.peer.ip() == client_ip,
        "the proxy sees the client: {first:?}"
    );
    let seen_by_backend = peers.recv_timeout(Duration::from_secs(2))?;
    ensure!(
        seen_by_backend.ip() == client_ip,
        "the backend sees the client's address, got {seen_by_backend}"
    );
    let verdict = events.wait_for("REDIRECTED verdict for the client", |e| {
        e.msg_type == message_type::POLICY_VERDICT
            && e.header.ifindex == client_if
            && e.verdict.is_some_and(|v| {
                v.action == policy_action::REDIRECTED
                    && v.proxy_port == HTTP_PROXY_PORT
                    && v.direction == Direction::Ingress as u8
                    && v.remote_identity == ID_CLIENT
            })
    })?;
    ensure!(
        verdict.header.source == EP_SERVER && verdict.header.dst_identity == ID_SERVER,
        "the verdict is the destination's ingress policy: {verdict:?}"
    );
    events.wait_for("to-proxy trace naming the proxy port", |e| {
        e.msg_type == message_type::TRACE
            && e.header.subtype == trace_point::TO_PROXY
            && e.header.ifindex == client_if
            && e.header.dst_endpoint == HTTP_PROXY_PORT
            && e.dport == 80
    })?;
    // The proxy's connection reaches the backend with the client's identity and
    // is neither redirected nor checked again.
    events.wait_for("proxy connection delivered to the backend", |e| {
        e.msg_type == message_type::TRACE
            && e.header.ifindex == server_if
            && e.header.subtype == trace_point::TO_LXC
            && e.header.src_identity == ID_CLIENT
            && e.dport == 80
    })?;

    // A client behind the uplink: redirected by from_netdev.
    let answer = exchange(&remote, backend_addr)?;
    ensure!(&answer == b"pong", "unexpected answer {answer:?}");
    let second = accepted.recv_timeout(Duration::from_secs(2))?;
    ensure!(
        second.local == backend_addr && second.peer.ip() == remote_ip,
        "uplink redirect keeps the original destination: {second:?}"
    );
    events.wait_for("REDIRECTED verdict at the uplink", |e| {
        e.msg_type == message_type::POLICY_VERDICT
            && e.header.ifindex == uplink_if
            && e.verdict.is_some_and(|v| {
                v.action == policy_action::REDIRECTED && v.remote_identity == ID_REMOTE
            })
    })?;
    proxy_thread
        .join()
        .map_err(|_| anyhow!("proxy thread panicked"))??;
    backend_thread
        .join()
        .map_err(|_| anyhow!("backend thread panicked"))??;

    // UDP: the datagram reaches the socket bound to the proxy port, which reads
    // the original destination from IP_ORIGDSTADDR.
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    udp.set_ip_transparent(true)?;
    nix::sys::socket::setsockopt(&udp, nix::sys::socket::sockopt::Ipv4OrigDstAddr, &true)?;
    udp.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        DNS_PROXY_PORT,
    )))?;
    udp.set_read_timeout(Some(Duration::from_secs(3)))?;
    let dns_addr = SocketAddr::new(IpAddr::V4(server.ipv4), 53);
    in_netns(&client.netns, move || {
        UdpSocket::bind("0.0.0.0:0")?.send_to(b"query", dns_addr)?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("udp client panicked"))??;
    let (from, original) = recv_with_original_destination(&udp)?;
    ensure!(
        from.ip() == client_ip,
        "datagram from the client, got {from}"
    );
    ensure!(
        original == dns_addr,
        "UDP redirect keeps the original destination, got {original}"
    );

    // No proxy listening: the connection is dropped, never let through.
    let refused = exchange(&client, backend_addr);
    ensure!(refused.is_err(), "without a proxy the connection must fail");
    events.wait_for("drop: no proxy socket", |e| {
        e.msg_type == message_type::DROP
            && e.header.subtype == drop_reason::SOCKET_LOOKUP_FAILED
            && e.header.ifindex == client_if
    })?;
    Ok(())
}

/// Receives one datagram and returns its source and original destination.
fn recv_with_original_destination(socket: &Socket) -> Result<(SocketAddr, SocketAddr)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    let mut buf = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(nix::libc::sockaddr_in);
    let msg = recvmsg::<SockaddrIn>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let from = msg
        .address
        .map(|a| SocketAddr::V4(SocketAddrV4::from(a)))
        .ok_or_else(|| anyhow!("no source address"))?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv4OrigDstAddr(addr) = c {
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            return Ok((
                from,
                SocketAddr::new(IpAddr::V4(ip), u16::from_be(addr.sin_port)),
            ));
        }
    }
    Err(anyhow!("no IP_ORIGDSTADDR control message"))
}
