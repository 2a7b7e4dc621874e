//! End-to-end tests of the socket load balancer (`bpf/sock.c`): real namespaces,
//! a real cgroup, client processes placed in it, real servers behind a VIP.
//!
//! Needs root (prints `SKIP:` without it, fails under `CI=true`). The client runs as a
//! child process (this test binary again, running `client_helper`) that joins the
//! test's cgroup and the client pod's network namespace before it makes its calls,
//! so only its sockets are translated.

// Shared with the tc tests, which use all of it.
#[allow(dead_code)]
#[path = "datapath/topology.rs"]
mod topology;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ebpf_events::abi::lb::IPPROTO_UDP;
use ebpf_events::abi::lb::{backend_state, l4_protocol, seeded_slot, xlate_point, IPPROTO_TCP};
use ebpf_events::loader::{
    remove_pins, Datapath, DatapathConfig, EventReader, LbBackendSpec, LbFrontend,
};
use ebpf_events::{decode, DatapathEvent, TraceSockEvent};
use topology::{enter_netns, in_netns, Topology};

const HELPER_ENV: &str = "HRT_SOCK_LB_CLIENT";
const VIP: &str = "10.96.60.53";
const VIP6: &str = "fd00:96::53";
const SEED: u32 = 0x5eed;

/// Not a test of its own: the client process the tests start. Does nothing unless
/// `HRT_SOCK_LB_CLIENT` says what to do: `<netns> <cgroup.procs> <tcp|udp> <addr> <count>`.
#[test]
fn client_helper() -> Result<()> {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return Ok(());
    };
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [netns, procs, mode, target, count] = parts[..] else {
        bail!("bad {HELPER_ENV}: {spec}");
    };
    std::fs::write(procs, std::process::id().to_string())
        .with_context(|| format!("joining {procs}"))?;
    enter_netns(netns)?;
    let target: SocketAddr = target.parse()?;
    let count: usize = count.parse()?;
    for _ in 0..count {
        let line = match mode {
            "tcp" => match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut stream) => {
                    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let peer = stream.peer_addr()?;
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer)?;
                    format!("peer={peer} answer={}", answer.trim())
                }
                Err(e) => format!("error={}", e.raw_os_error().unwrap_or(-1)),
            },
            _ => {
                let socket = UdpSocket::bind(if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                })?;
                socket.set_read_timeout(Some(Duration::from_secs(2)))?;
                socket.send_to(b"query", target)?;
                let mut buf = [0u8; 64];
                let (n, from) = socket.recv_from(&mut buf)?;
                format!(
                    "peer={from} answer={}",
                    String::from_utf8_lossy(&buf[..n]).trim()
                )
            }
        };
        println!("RESULT {line}");
    }
    Ok(())
}

/// A cgroup of the test (`<cgroup2>/hrt-<pid>-<tag>/client`); removed on drop.
struct TestCgroup {
    root: PathBuf,
    client: PathBuf,
}

impl TestCgroup {
    fn create(tag: &str) -> Result<Self> {
        let mount = cgroup2_mount().context("no cgroup2 file system is mounted")?;
        let root = mount.join(format!("hrt-{}-{tag}", std::process::id()));
        let client = root.join("client");
        std::fs::create_dir_all(&client).with_context(|| format!("creating {client:?}"))?;
        Ok(Self { root, client })
    }

    fn client_id(&self) -> Result<u64> {
        Ok(std::fs::metadata(&self.client)?.ino())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.client);
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(left.split_whitespace().nth(4)?))
    })
}

/// Runs the client helper; returns its result lines (`peer=... answer=...`).
fn run_client(
    netns: &str,
    cgroup: &Path,
    mode: &str,
    target: SocketAddr,
    count: usize,
) -> Result<Vec<String>> {
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "client_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            HELPER_ENV,
            format!(
                "{netns} {} {mode} {target} {count}",
                cgroup.join("cgroup.procs").display()
            ),
        )
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout
        .lines()
        // libtest may print "test client_helper ... " on the same line.
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_string()))
        .collect())
}

/// A server in a pod (or the node) answering every TCP connection or UDP datagram
/// with its name, until dropped.
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

/// The trace-sock events read so far.
fn sock_events(reader: &mut EventReader, into: &mut Vec<TraceSockEvent>) {
    reader.drain(usize::MAX, |record| {
        if let Ok(DatapathEvent::TraceSock(event)) = decode(record) {
            into.push(event);
        }
    });
}

/// Waits until `count` post-xlate-fwd events arrived.
fn wait_translations(reader: &mut EventReader, into: &mut Vec<TraceSockEvent>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        sock_events(reader, into);
        let n = into
            .iter()
            .filter(|e| e.header.subtype == xlate_point::POST_DIRECTION_FWD)
            .count();
        if n >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frontend(address: &str, port: u16, protocol: u8, backends: &[(IpAddr, u16, u8)]) -> LbFrontend {
    LbFrontend {
        service_id: 7,
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

fn answers(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.split("answer=").nth(1).unwrap_or("").to_string())
        .collect()
}

#[test]
fn services_balance_translate_and_report() -> Result<()> {
    if !tests::skip::require_root(
        "services_balance_translate_and_report",
        "network namespaces, cgroups, eBPF",
    ) {
        return Ok(());
    }
    let topology = Topology::create("lb", 3)?;
    let cgroup = TestCgroup::create("lb")?;
    let (client, a, b) = (
        topology.pods[0].clone(),
        topology.pods[1].clone(),
        topology.pods[2].clone(),
    );
    enter_netns(&topology.node)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let mut datapath = Datapath::load(DatapathConfig::default())?;
    for pod in &topology.pods {
        datapath.attach(&pod.host_veth)?;
    }
    datapath.attach_cgroup(&cgroup.root)?;
    let mut reader = datapath.take_event_reader()?;
    let mut events = Vec::new();

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
    let (written, deleted) = datapath.sync_services(&services(active))?;
    assert_eq!(
        (written, deleted),
        (4 + 4 + 3, 0),
        "backends, slots, services"
    );
    assert_eq!(
        datapath.sync_services(&services(active))?,
        (0, 0),
        "nothing changed"
    );
    let vip: IpAddr = VIP.parse()?;
    let vip_port = SocketAddr::new(vip, 80);

    // 20 connections to the VIP: both backends serve, the client always sees the VIP.
    let lines = run_client(&client.netns, &cgroup.client, "tcp", vip_port, 20)?;
    assert_eq!(lines.len(), 20, "{lines:?}");
    for line in &lines {
        assert!(line.starts_with(&format!("peer={vip_port} ")), "{line}");
    }
    let served = answers(&lines);
    assert!(served.iter().any(|s| s == "A"), "{served:?}");
    assert!(served.iter().any(|s| s == "B"), "{served:?}");

    // A process outside the cgroup is not translated: the VIP is not reachable.
    let direct = in_netns(&client.netns, move || {
        Ok(TcpStream::connect_timeout(&vip_port, Duration::from_millis(300)).is_err())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    assert!(direct, "a socket outside the cgroup reached the VIP");

    // Each connection: pre-xlate-fwd to the VIP, then post-xlate-fwd to the
    // backend that answered, with the socket cookie and the client's cgroup.
    wait_translations(&mut reader, &mut events, 20);
    let cgroup_id = cgroup.client_id()?;
    let fwd: Vec<&TraceSockEvent> = events
        .iter()
        .filter(|e| e.sock.cgroup_id == cgroup_id)
        .filter(|e| {
            e.header.subtype == xlate_point::PRE_DIRECTION_FWD
                || e.header.subtype == xlate_point::POST_DIRECTION_FWD
        })
        .collect();
    assert_eq!(fwd.len(), 40, "{fwd:#?}");
    for (i, pair) in fwd.chunks(2).enumerate() {
        let (pre, post) = (pair[0], pair[1]);
        assert_eq!(pre.header.subtype, xlate_point::PRE_DIRECTION_FWD);
        assert_eq!((pre.dst, pre.sock.dst_port), (vip, 80));
        assert_eq!(post.header.subtype, xlate_point::POST_DIRECTION_FWD);
        assert_eq!(post.sock.sock_cookie, pre.sock.sock_cookie);
        assert_eq!(post.sock.l4_proto, l4_protocol::TCP);
        assert_eq!(post.sock.dst_port, 8080);
        let expected = if served[i] == "A" { a_ip } else { b_ip };
        assert_eq!(
            post.dst, expected,
            "connection {i} answered by {}",
            served[i]
        );
    }
    // getpeername went through the reverse translation: backend -> VIP.
    assert!(events
        .iter()
        .any(|e| e.header.subtype == xlate_point::POST_DIRECTION_REV
            && e.dst == vip
            && e.sock.dst_port == 80));

    // A seed makes the choice a function of the socket cookie.
    datapath.set_config(DatapathConfig {
        lb_seed: SEED,
        ..DatapathConfig::default()
    })?;
    events.clear();
    let lines = run_client(&client.netns, &cgroup.client, "tcp", vip_port, 10)?;
    wait_translations(&mut reader, &mut events, 10);
    let posts: Vec<&TraceSockEvent> = events
        .iter()
        .filter(|e| e.header.subtype == xlate_point::POST_DIRECTION_FWD)
        .collect();
    assert_eq!(posts.len(), 10);
    for (post, answer) in posts.iter().zip(answers(&lines)) {
        let slot = seeded_slot(SEED, post.sock.sock_cookie, 2);
        let (ip, name) = if slot == 1 { (a_ip, "A") } else { (b_ip, "B") };
        assert_eq!(post.dst, ip, "cookie {}", post.sock.sock_cookie);
        assert_eq!(answer, name);
    }
    datapath.set_config(DatapathConfig::default())?;

    // A terminating backend gets no new connections.
    datapath.sync_services(&services(backend_state::TERMINATING))?;
    let lines = run_client(&client.netns, &cgroup.client, "tcp", vip_port, 10)?;
    assert!(answers(&lines).iter().all(|s| s == "A"), "{lines:?}");

    // UDP through the VIP: the answer comes from the VIP, not the backend.
    events.clear();
    let dns_vip = SocketAddr::new(vip, 53);
    let lines = run_client(&client.netns, &cgroup.client, "udp", dns_vip, 2)?;
    assert_eq!(lines, vec![format!("peer={dns_vip} answer=dns-A"); 2]);
    sock_events(&mut reader, &mut events);
    let rev: Vec<(u8, IpAddr, u16)> = events
        .iter()
        .filter(|e| e.sock.l4_proto == l4_protocol::UDP)
        .map(|e| (e.header.subtype, e.dst, e.sock.dst_port))
        .collect();
    assert!(
        rev.contains(&(xlate_point::PRE_DIRECTION_FWD, vip, 53)),
        "{rev:?}"
    );
    assert!(
        rev.contains(&(xlate_point::POST_DIRECTION_FWD, a_ip, 5353)),
        "{rev:?}"
    );
    assert!(
        rev.contains(&(xlate_point::PRE_DIRECTION_REV, a_ip, 5353)),
        "{rev:?}"
    );
    assert!(
        rev.contains(&(xlate_point::POST_DIRECTION_REV, vip, 53)),
        "{rev:?}"
    );

    // IPv6 frontend.
    let vip6 = SocketAddr::new(VIP6.parse()?, 80);
    let lines = run_client(&client.netns, &cgroup.client, "tcp", vip6, 2)?;
    assert_eq!(lines, vec![format!("peer={vip6} answer=node6"); 2]);

    // No active backend left: connect fails with EHOSTUNREACH, as Cilium.
    datapath.sync_services(&[frontend(
        VIP,
        80,
        IPPROTO_TCP,
        &[(b_ip, 8080, backend_state::MAINTENANCE)],
    )])?;
    let lines = run_client(&client.netns, &cgroup.client, "tcp", vip_port, 1)?;
    assert_eq!(lines, vec!["error=113".to_string()]);

    // Removed services leave no entry behind.
    datapath.sync_services(&[])?;
    assert!(datapath.lb_service_entries()?.is_empty());
    assert!(datapath.lb_backend_entries()?.is_empty());
    Ok(())
}

/// A BPF file system of the test's own (`/tmp/hrt-<pid>-<tag>-bpffs`), unmounted and
/// removed on drop.
struct TestBpffs {
    path: PathBuf,
}

impl TestBpffs {
    fn mount(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("hrt-{}-{tag}-bpffs", std::process::id()));
        std::fs::create_dir_all(&path)?;
        let fs = Self { path };
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&fs.path)
            .status()?;
        ensure!(status.success(), "mounting a bpffs on {:?}", fs.path);
        Ok(fs)
    }
}

impl Drop for TestBpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The programs attached to `cgroup` (attach type, program id), from `bpftool`.
fn cgroup_programs(cgroup: &Path) -> Result<Vec<(String, u64)>> {
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(cgroup)
        .output()
        .context("running bpftool (scripts/setup.sh installs it)")?;
    ensure!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let programs: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    Ok(programs
        .iter()
        .map(|p| {
            (
                p["attach_type"].as_str().unwrap_or_default().to_string(),
                p["id"].as_u64().unwrap_or_default(),
            )
        })
        .collect())
}

/// An agent restarting with its pins attaches its socket programs next to the old
/// ones and then replaces the pins: the cgroup ends up with one program per hook,
/// the new ones, never two.
#[test]
fn a_restart_replaces_the_cgroup_links() -> Result<()> {
    if !tests::skip::require_root(
        "a_restart_replaces_the_cgroup_links",
        "cgroups, a BPF file system, eBPF",
    ) {
        return Ok(());
    }
    let cgroup = TestCgroup::create("pin")?;
    let bpffs = TestBpffs::mount("pin")?;
    let dir = bpffs.path.join("node");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _guard = runtime.enter();
    let start = || -> Result<()> {
        let mut datapath = Datapath::load_pinned(DatapathConfig::default(), &dir)?;
        datapath.attach_cgroup(&cgroup.root)?;
        // Dropped here, as when the agent exits: the pins keep the links.
        Ok(())
    };
    start()?;
    let first = cgroup_programs(&cgroup.root)?;
    let hooks: std::collections::BTreeSet<&str> = first.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(first.len(), 8, "{first:?}");
    assert_eq!(hooks.len(), 8, "one program per hook: {first:?}");

    start()?;
    let second = cgroup_programs(&cgroup.root)?;
    assert_eq!(second.len(), 8, "replaced, not added: {second:?}");
    let mut types: Vec<&str> = second.iter().map(|(t, _)| t.as_str()).collect();
    types.sort_unstable();
    let mut before: Vec<&str> = hooks.into_iter().collect();
    before.sort_unstable();
    assert_eq!(types, before);
    assert!(
        second
            .iter()
            .all(|(_, id)| first.iter().all(|(_, old)| old != id)),
        "the new agent's programs: {first:?} -> {second:?}"
    );

    // Removing the pins detaches them.
    remove_pins(&dir)?;
    assert_eq!(cgroup_programs(&cgroup.root)?, Vec::new());
    Ok(())
}
