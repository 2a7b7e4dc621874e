//! End-to-end tests of the tc programs: real namespaces, real veths, real
//! traffic, records read back from the ring buffer.
//!
//! They need root (and print `SKIP:` without it). Each test builds its own
//! namespaces (`hrt-<pid>-<tag>-*`), enters the node namespace on its own
//! thread with `setns` (the loader resolves interfaces and creates links in
//! the calling thread's namespace), and sends traffic from threads that
//! entered the pod namespaces. The namespaces are removed on drop, also on
//! panic.

#[path = "datapath/events.rs"]
mod events;
#[path = "datapath/topology.rs"]
mod topology;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ebpf_events::abi::EVENT_FLAG_TO_ENDPOINT;
use ebpf_events::constants::{
    drop_reason, identity, message_type, policy_action, policy_match, trace_point, trace_reason,
};
use ebpf_events::loader::{Datapath, DatapathConfig};
use ebpf_events::{Direction, EndpointEntry, IpcacheEntry, PolicyKey, PolicyValue};
use events::Collector;
use topology::{enter_netns, in_netns, Pod, Topology, GATEWAY_V4};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

const ID_CLIENT: u32 = 1001;
const ID_SERVER: u32 = 1002;
const EP_CLIENT: u16 = 11;
const EP_SERVER: u16 = 12;

/// Loads the datapath in the node namespace and registers both pods.
fn setup(topology: &Topology, enforce: bool) -> Result<(Datapath, [u32; 2])> {
    enter_netns(&topology.node)?;
    let mut datapath = Datapath::load(DatapathConfig::default()).context("loading datapath")?;
    let (client, server) = (&topology.pods[0], &topology.pods[1]);
    let client_if = datapath.attach(&client.host_veth)?;
    let server_if = datapath.attach(&server.host_veth)?;
    ensure!(
        datapath.attach(&client.host_veth)? == client_if,
        "attach is idempotent"
    );
    datapath.upsert_endpoint(
        client_if,
        EndpointEntry::new(EP_CLIENT, ID_CLIENT)
            .with_ipv4(client.ipv4)
            .with_ipv6(client.ipv6)
            .with_enforcement(enforce, enforce),
    )?;
    datapath.upsert_endpoint(
        server_if,
        EndpointEntry::new(EP_SERVER, ID_SERVER)
            .with_ipv4(server.ipv4)
            .with_enforcement(enforce, enforce),
    )?;
    datapath.upsert_ipcache(
        format!("{}/32", client.ipv4).parse()?,
        IpcacheEntry::local_endpoint(ID_CLIENT, EP_CLIENT),
    )?;
    datapath.upsert_ipcache(
        format!("{}/32", server.ipv4).parse()?,
        IpcacheEntry::local_endpoint(ID_SERVER, EP_SERVER),
    )?;
    datapath.upsert_ipcache(
        format!("{}/128", client.host_ipv6).parse()?,
        IpcacheEntry::remote(identity::HOST),
    )?;
    Ok((datapath, [client_if, server_if]))
}

/// Serves one TCP connection on `addr` inside `pod`: reads 4 bytes, answers.
fn tcp_server(pod: &Pod, addr: SocketAddr) -> std::thread::JoinHandle<Result<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = in_netns(&pod.netns, move || {
        let listener = TcpListener::bind(addr)?;
        tx.send(()).ok();
        let (mut stream, _) = listener.accept()?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        stream.write_all(b"pong")?;
        Ok(())
    });
    let _ = rx.recv_timeout(Duration::from_secs(2));
    handle
}

/// Connects from `pod` to `addr` and exchanges one message.
fn tcp_client(pod: &Pod, addr: SocketAddr) -> Result<()> {
    in_netns(&pod.netns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(700))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        ensure!(&buf == b"pong", "unexpected answer {buf:?}");
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

fn udp_send(pod: &Pod, to: SocketAddr) -> Result<()> {
    udp_send_with(pod, to, |_| Ok(()))
}

/// Sends one datagram from `pod` to `to` from a socket `configure` set up first.
fn udp_send_with(
    pod: &Pod,
    to: SocketAddr,
    configure: impl FnOnce(&UdpSocket) -> Result<()> + Send + 'static,
) -> Result<()> {
    in_netns(&pod.netns, move || {
        let any = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let socket = UdpSocket::bind(any)?;
        configure(&socket)?;
        socket.send_to(b"hello", to)?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("udp thread panicked"))?
}

#[test]
fn traces_identities_and_replies() -> Result<()> {
    if !tests::skip::require_root("traces_identities_and_replies", "network namespaces, eBPF") {
        return Ok(());
    }
    let topology = Topology::create("a", 2)?;
    let (mut datapath, [client_if, server_if]) = setup(&topology, false)?;
    let (client, server) = (topology.pods[0].clone(), topology.pods[1].clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut events = Collector::new(datapath.take_event_reader()?);

    // ICMP echo between two local endpoints.
    ensure!(
        topology.ping(&client, &server.ipv4.to_string(), 1)?,
        "ping failed"
    );
    let request = events.wait_for("echo request leaving the client", |e| {
        e.msg_type == message_type::TRACE
            && e.header.ifindex == client_if
            && e.header.subtype == trace_point::FROM_LXC
            && e.protocol == 1
    })?;
    assert_eq!(request.header.source, EP_CLIENT);
    assert_eq!(request.header.src_identity, ID_CLIENT);
    assert_eq!(request.header.dst_identity, ID_SERVER);
    assert_eq!(request.header.dst_endpoint, EP_SERVER);
    assert_eq!(request.header.reason, trace_reason::NEW);
    assert!(!request.header.is_reply());
    assert_eq!(request.header.flags & EVENT_FLAG_TO_ENDPOINT, 0);
    let delivered = events.wait_for("echo request entering the server", |e| {
        e.header.ifindex == server_if && e.header.subtype == trace_point::TO_LXC && e.protocol == 1
    })?;
    assert_eq!(delivered.header.source, EP_SERVER);
    assert_eq!(delivered.header.src_identity, ID_CLIENT);
    assert_eq!(delivered.header.dst_identity, ID_SERVER);
    assert!(delivered.header.to_endpoint());
    assert_eq!(
        delivered.header.reason,
        trace_reason::NEW,
        "egress CT must not admit ingress"
    );
    let reply = events.wait_for("echo reply entering the client", |e| {
        e.header.ifindex == client_if && e.header.subtype == trace_point::TO_LXC && e.protocol == 1
    })?;
    assert!(reply.header.is_reply());
    assert_eq!(reply.header.reason, trace_reason::REPLY);
    assert_eq!(reply.header.src_identity, ID_SERVER);

    // TCP between the pods: ports and states.
    let addr = SocketAddr::new(server.ipv4.into(), 8080);
    let serving = tcp_server(&server, addr);
    tcp_client(&client, addr)?;
    serving
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    let syn = events.wait_for("TCP SYN to 8080", |e| {
        e.header.ifindex == client_if && e.protocol == IPPROTO_TCP && e.dport == 8080
    })?;
    assert_eq!(syn.header.reason, trace_reason::NEW);
    let established = events.wait_for("established TCP segment", |e| {
        e.header.ifindex == client_if
            && e.dport == 8080
            && e.header.reason == trace_reason::ESTABLISHED
    })?;
    assert_eq!(established.header.dst_identity, ID_SERVER);
    let syn_ack = events.wait_for("SYN-ACK leaving the server", |e| {
        e.header.ifindex == server_if && e.protocol == IPPROTO_TCP && e.sport == 8080
    })?;
    assert!(syn_ack.header.is_reply());
    assert_eq!(syn_ack.header.subtype, trace_point::FROM_LXC);

    // UDP to the node: no ipcache entry, so the world identity, to-stack.
    udp_send(&client, SocketAddr::new(GATEWAY_V4.into(), 9999))?;
    let udp = events.wait_for("UDP to the node", |e| {
        e.protocol == IPPROTO_UDP && e.dport == 9999
    })?;
    assert_eq!(udp.header.subtype, trace_point::TO_STACK);
    assert_eq!(udp.header.dst_identity, identity::WORLD);
    assert_eq!(udp.header.dst_endpoint, 0);

    // IPv6 echo to the node's address: host identity from the ipcache.
    ensure!(
        topology.ping(&client, &client.host_ipv6.to_string(), 1)?,
        "ping6 failed"
    );
    let v6 = events.wait_for("ICMPv6 echo request", |e| {
        e.header.is_ipv6() && e.protocol == IPPROTO_ICMPV6 && e.icmp_type == Some(128)
    })?;
    assert_eq!(v6.header.dst_identity, identity::HOST);
    assert_eq!(v6.header.subtype, trace_point::TO_STACK);
    let v6_reply = events.wait_for("ICMPv6 echo reply", |e| {
        e.header.is_ipv6() && e.icmp_type == Some(129) && e.header.to_endpoint()
    })?;
    assert!(v6_reply.header.is_reply());
    assert_eq!(v6_reply.header.src_identity, identity::HOST);

    // The async path sees new records too.
    ensure!(
        topology.ping(&client, &server.ipv4.to_string(), 1)?,
        "second ping failed"
    );
    let mut reader = events.into_reader();
    let read = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), reader.read_batch(|_| {})).await
    })??;
    assert!(read > 0);
    assert_eq!(datapath.kernel_lost()?, 0);

    datapath.detach(&client.host_veth)?;
    assert_eq!(datapath.attached().len(), 1);
    drop(datapath);
    drop(topology);
    Ok(())
}

#[test]
fn policy_verdicts_drops_and_conntrack() -> Result<()> {
    if !tests::skip::require_root(
        "policy_verdicts_drops_and_conntrack",
        "network namespaces, eBPF",
    ) {
        return Ok(());
    }
    let topology = Topology::create("b", 2)?;
    let (mut datapath, [client_if, server_if]) = setup(&topology, true)?;
    let (client, server) = (topology.pods[0].clone(), topology.pods[1].clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut events = Collector::new(datapath.take_event_reader()?);

    // The client may send anything; the server accepts the client on TCP
    // 8080 only; UDP 5353 from anyone is explicitly denied. The server's
    // egress is enforced with no entries, so its answers pass only as
    // conntrack replies; the same holds for the client's ingress.
    let entries = vec![
        (
            PolicyKey::new(ID_CLIENT, 0, 0, 0, Direction::Egress),
            PolicyValue::allow(1),
        ),
        (
            PolicyKey::new(ID_SERVER, ID_CLIENT, 8080, IPPROTO_TCP, Direction::Ingress),
            PolicyValue::allow(2),
        ),
        (
            PolicyKey::new(ID_SERVER, 0, 5353, IPPROTO_UDP, Direction::Ingress),
            PolicyValue::deny(3),
        ),
        (
            PolicyKey::new(ID_SERVER, ID_CLIENT, 0, 0, Direction::Ingress),
            PolicyValue::allow(9),
        ),
    ];
    datapath.sync_policy(&entries)?;
    // Drop the L3-only allow again: sync removes what is no longer wanted.
    datapath.sync_policy(&entries[..3])?;
    let mut installed = datapath.policy_entries()?;
    installed.sort_by_key(|(key, _)| *key);
    let mut expected = entries[..3].to_vec();
    expected.sort_by_key(|(key, _)| *key);
    assert_eq!(installed, expected);

    // Allowed connection: verdicts on both sides, replies pass via CT.
    let addr = SocketAddr::new(server.ipv4.into(), 8080);
    let serving = tcp_server(&server, addr);
    tcp_client(&client, addr).context("allowed connection failed")?;
    serving
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    let egress = events.wait_for("egress verdict at the client", |e| {
        e.msg_type == message_type::POLICY_VERDICT
            && e.header.ifindex == client_if
            && e.dport == 8080
    })?;
    let verdict = egress.verdict.context("verdict fields")?;
    assert_eq!(verdict.action, policy_action::ALLOWED);
    assert_eq!(verdict.match_type, policy_match::ALL);
    assert_eq!(verdict.direction, Direction::Egress as u8);
    assert_eq!(verdict.cookie, 1);
    let ingress = events.wait_for("ingress verdict at the server", |e| {
        e.msg_type == message_type::POLICY_VERDICT
            && e.header.ifindex == server_if
            && e.dport == 8080
    })?;
    let verdict = ingress.verdict.context("verdict fields")?;
    assert_eq!(verdict.action, policy_action::ALLOWED);
    assert_eq!(verdict.match_type, policy_match::L3_L4);
    assert_eq!(
        (verdict.remote_identity, verdict.dport, verdict.protocol),
        (ID_CLIENT, 8080, IPPROTO_TCP)
    );
    assert_eq!(verdict.direction, Direction::Ingress as u8);
    let reply = events.wait_for("SYN-ACK admitted at the client", |e| {
        e.msg_type == message_type::TRACE && e.header.ifindex == client_if && e.sport == 8080
    })?;
    assert!(reply.header.is_reply());

    // Port without an allow entry: denied at the server with a drop.
    let denied = SocketAddr::new(server.ipv4.into(), 8081);
    assert!(
        tcp_client(&client, denied).is_err(),
        "connection to 8081 must fail"
    );
    let dropped = events.wait_for("policy drop at the server", |e| {
        e.msg_type == message_type::DROP && e.header.ifindex == server_if && e.dport == 8081
    })?;
    assert_eq!(dropped.header.subtype, drop_reason::POLICY_DENIED);
    assert_eq!(dropped.header.src_identity, ID_CLIENT);
    assert_eq!(dropped.header.dst_identity, ID_SERVER);
    let verdict = events
        .wait_for("denied verdict", |e| {
            e.msg_type == message_type::POLICY_VERDICT
                && e.dport == 8081
                && e.header.ifindex == server_if
        })?
        .verdict
        .context("verdict fields")?;
    assert_eq!(
        (verdict.action, verdict.match_type),
        (policy_action::DENIED, policy_match::NONE)
    );

    // Explicit deny entry: L4-only match type.
    udp_send(&client, SocketAddr::new(server.ipv4.into(), 5353))?;
    let verdict = events
        .wait_for("UDP deny verdict", |e| {
            e.msg_type == message_type::POLICY_VERDICT
                && e.dport == 5353
                && e.header.ifindex == server_if
        })?
        .verdict
        .context("verdict fields")?;
    assert_eq!(
        (verdict.action, verdict.match_type, verdict.cookie),
        (policy_action::DENIED, policy_match::L4_ONLY, 3)
    );
    events.wait_for("UDP policy drop", |e| {
        e.msg_type == message_type::DROP
            && e.dport == 5353
            && e.header.subtype == drop_reason::POLICY_DENIED
    })?;

    // Audit mode: the same denied port now connects, reported as audit.
    datapath.upsert_endpoint(
        server_if,
        EndpointEntry::new(EP_SERVER, ID_SERVER)
            .with_ipv4(server.ipv4)
            .with_enforcement(true, true)
            .with_audit(true),
    )?;
    let audited = SocketAddr::new(server.ipv4.into(), 8082);
    let serving = tcp_server(&server, audited);
    tcp_client(&client, audited).context("audited connection failed")?;
    serving
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    let verdict = events
        .wait_for("audit verdict", |e| {
            e.msg_type == message_type::POLICY_VERDICT
                && e.dport == 8082
                && e.header.ifindex == server_if
        })?
        .verdict
        .context("verdict fields")?;
    assert_eq!(verdict.action, policy_action::AUDIT);
    assert!(events
        .seen()
        .iter()
        .all(|e| !(e.msg_type == message_type::DROP && e.dport == 8082)));
    assert_eq!(datapath.kernel_lost()?, 0);
    drop(datapath);
    drop(topology);
    Ok(())
}

/// The programs wake the reader when the ring's backlog reaches `wakeup_bytes`,
/// once, not again for each record written while it stays above (each wake-up is
/// an interrupt; a woken reader drains everything anyway). The reader here never
/// drains, so the backlog only grows.
#[test]
fn one_wake_up_when_the_backlog_reaches_the_mark() -> Result<()> {
    if !tests::skip::require_root(
        "one_wake_up_when_the_backlog_reaches_the_mark",
        "network namespaces, eBPF",
    ) {
        return Ok(());
    }
    const MARK: u32 = 4096;
    const PACKETS: usize = 40;
    let topology = Topology::create("w", 2)?;
    let (mut datapath, _) = setup(&topology, false)?;
    datapath.set_config(DatapathConfig {
        wakeup_bytes: MARK,
        ..DatapathConfig::default()
    })?;
    let (client, server) = (topology.pods[0].clone(), topology.pods[1].clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut reader = datapath.take_event_reader()?;
    // What the pods sent before (IPv6 neighbour discovery, say) is drained, and the
    // readiness it may have left is consumed, so that only this test's records count.
    reader.drain(usize::MAX, |_| {});
    runtime.block_on(reader.wait_for_wakeup(Duration::from_millis(50)))?;
    let to = SocketAddr::new(server.ipv4.into(), 9999);
    let mut woken_after = Vec::new();
    for packet in 1..=PACKETS {
        udp_send(&client, to)?;
        if runtime.block_on(reader.wait_for_wakeup(Duration::from_millis(50)))? {
            woken_after.push(packet);
        }
    }
    let mut bytes = 0;
    let mut records = 0;
    reader.drain(usize::MAX, |record| {
        bytes += record.len();
        records += 1;
    });
    // Two trace records per datagram (leaving the client, reaching the server):
    // together they are well over the mark, so it was reached on the way.
    ensure!(
        records >= 2 * PACKETS && bytes > 2 * MARK as usize,
        "{records} records of {bytes} bytes: the mark was never passed"
    );
    assert_eq!(
        woken_after.len(),
        1,
        "woken after packets {woken_after:?} (one wake-up expected)"
    );
    assert_eq!(datapath.kernel_lost()?, 0);
    drop(datapath);
    drop(topology);
    Ok(())
}

/// Sends a UDP datagram over IPv6 from `pod` to `to` with a destination options
/// header of 256 bytes, so its UDP header starts 310 bytes into the frame.
#[allow(unsafe_code)]
fn udp6_send_with_long_options(pod: &Pod, to: SocketAddr) -> Result<()> {
    udp_send_with(pod, to, |socket| {
        use std::os::fd::AsRawFd;
        // Next header (the kernel fills it in), length in 8-byte units after the
        // first 8, then one PadN option filling the remaining 254 bytes.
        let mut options = [0u8; 256];
        options[1] = 31;
        options[2] = 1;
        options[3] = 252;
        // SAFETY: setsockopt reads `options.len()` bytes from a live buffer.
        let rc = unsafe {
            nix::libc::setsockopt(
                socket.as_raw_fd(),
                nix::libc::IPPROTO_IPV6,
                nix::libc::IPV6_DSTOPTS,
                options.as_ptr().cast(),
                options.len() as nix::libc::socklen_t,
            )
        };
        ensure!(rc == 0, "IPV6_DSTOPTS: {}", std::io::Error::last_os_error());
        Ok(())
    })
}

/// Headers past the part the programs read straight from the packet (255 bytes)
/// are read through the helper: policy still sees the ports of a datagram whose
/// UDP header sits behind a 256-byte IPv6 destination options header.
#[test]
fn ports_behind_long_extension_headers() -> Result<()> {
    if !tests::skip::require_root(
        "ports_behind_long_extension_headers",
        "network namespaces, eBPF",
    ) {
        return Ok(());
    }
    let topology = Topology::create("x", 2)?;
    let (mut datapath, [client_if, _]) = setup(&topology, true)?;
    let client = topology.pods[0].clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut events = Collector::new(datapath.take_event_reader()?);
    datapath.sync_policy(&[(
        PolicyKey::new(
            ID_CLIENT,
            identity::HOST,
            7777,
            IPPROTO_UDP,
            Direction::Egress,
        ),
        PolicyValue::allow(7),
    )])?;

    for (port, action, match_type) in [
        (7777, policy_action::ALLOWED, policy_match::L3_L4),
        (7778, policy_action::DENIED, policy_match::NONE),
    ] {
        udp6_send_with_long_options(&client, SocketAddr::new(client.host_ipv6.into(), port))?;
        let verdict = events
            .wait_for("verdict of the datagram with long options", |e| {
                e.msg_type == message_type::POLICY_VERDICT
                    && e.header.ifindex == client_if
                    && e.verdict.is_some_and(|v| v.protocol == IPPROTO_UDP)
                    && e.verdict.is_some_and(|v| v.dport == port)
            })?
            .verdict
            .context("verdict fields")?;
        assert_eq!(
            (verdict.action, verdict.match_type, verdict.remote_identity),
            (action, match_type, identity::HOST),
            "datagram to port {port}"
        );
    }
    drop(datapath);
    drop(topology);
    Ok(())
}
