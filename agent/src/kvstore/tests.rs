//! Tests against a real etcd (Debian's `etcd-server`), started on loopback ports of
//! its own with a data directory in a temporary directory.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peer_service::sources::Running;
use peer_service::{NodeHub, NodeSource};

use super::keys::{decode_labels, encode_labels};
use super::*;
use crate::endpoints::{EndpointSpec, EndpointStatus};
use crate::identity::{Identity, IdentityAllocator};
use crate::labels::LabelSet;

const ETCD: &str = "/usr/bin/etcd";
const TTL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Etcd {
    /// Starts etcd, or returns `None` (with a SKIP line; a failure under CI) when it is
    /// not installed.
    fn start(test: &str) -> Option<Etcd> {
        if !::tests::skip::require_file(test, ETCD, "etcd-server") {
            return None;
        }
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn();
        Some(etcd)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log");
        let child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not listen in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(etcd: &Etcd, node: &str, octet: u8) -> KvstoreConfig {
    KvstoreConfig {
        endpoints: vec![etcd.endpoint()],
        node_name: node.to_string(),
        cluster_name: "default".to_string(),
        node_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 100, 0, octet))),
        hubble_listen_address: Some("0.0.0.0:4244".to_string()),
        lease_ttl: TTL,
    }
}

/// Starts a store client for `node` with its node source feeding `hub`, and registers
/// the node, as the daemon does once its Hubble API serves.
fn join(etcd: &Etcd, node: &str, octet: u8, hub: NodeHub) -> (Kvstore, Running) {
    let kvstore = Kvstore::start(config(etcd, node, octet)).expect("start");
    let nodes = Box::new(kvstore.node_source()).start(hub);
    kvstore.register_node();
    (kvstore, nodes)
}

fn labels(class: &str) -> LabelSet {
    LabelSet::parse([
        format!("k8s:class={class}").as_str(),
        "k8s:io.kubernetes.pod.namespace=default",
    ])
    .expect("labels")
}

async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn endpoint(name: &str, ip: Ipv4Addr, identity: Identity, labels: LabelSet) -> Endpoint {
    Endpoint {
        id: 1,
        path: PathBuf::from(format!("/tmp/{name}.yaml")),
        spec: EndpointSpec {
            name: name.to_string(),
            namespace: "default".to_string(),
            labels: Default::default(),
            ipv4: ip,
            ipv6: None,
            interface: "lxc0".to_string(),
            workloads: Vec::new(),
        },
        labels,
        identity,
        status: EndpointStatus::Ready,
    }
}

#[test]
fn label_sets_round_trip_through_keys() {
    let set = labels("xwing");
    let encoded = encode_labels(&set);
    assert_eq!(
        encoded,
        "k8s:class=xwing;k8s:io.kubernetes.pod.namespace=default;"
    );
    assert_eq!(decode_labels(&encoded), Ok(set));
}

#[test]
fn endpoints_are_checked() {
    assert!(KvstoreConfig::parse_endpoints("http://127.0.0.1:2379, http://10.0.0.1:2379").is_ok());
    let err = KvstoreConfig::parse_endpoints("10.0.0.1:2379").expect_err("no scheme");
    assert!(err.to_string().contains("\"10.0.0.1:2379\""), "{err}");
    assert!(KvstoreConfig::parse_endpoints(" , ").is_err());
    assert_eq!(
        hubble_address("10.1.1.1".parse().expect("ip"), Some("0.0.0.0:4244")),
        "10.1.1.1:4244"
    );
    assert_eq!(
        hubble_address("10.1.1.1".parse().expect("ip"), Some("10.2.2.2:5000")),
        "10.2.2.2:5000"
    );
    assert_eq!(
        hubble_address("10.1.1.1".parse().expect("ip"), None),
        "10.1.1.1:4244"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_agree_on_identities() {
    let Some(etcd) = Etcd::start("nodes_agree_on_identities") else {
        return;
    };
    let (a, _a_nodes) = join(&etcd, "node1", 11, NodeHub::new());
    let (b, _b_nodes) = join(&etcd, "node2", 12, NodeHub::new());
    let (alloc_a, alloc_b) = (a.allocator(), b.allocator());

    // The same new label set from both nodes at once gets one number.
    let xwing = labels("xwing");
    let (id_a, id_b) = tokio::join!(alloc_a.allocate(&xwing), alloc_b.allocate(&xwing));
    let (id_a, id_b) = (id_a.expect("a allocates"), id_b.expect("b allocates"));
    assert_eq!(id_a, id_b);
    assert!(id_a.0 >= 256, "{id_a}");

    // Different label sets get different numbers, and every node learns them.
    let deathstar = alloc_a
        .allocate(&labels("deathstar"))
        .await
        .expect("deathstar");
    let tiefighter = alloc_b
        .allocate(&labels("tiefighter"))
        .await
        .expect("tiefighter");
    assert_ne!(deathstar, id_a);
    assert_ne!(deathstar, tiefighter);
    eventually("b learns a's identity", || {
        (alloc_b.lookup(deathstar) == Some(labels("deathstar"))).then_some(())
    })
    .await;
    eventually("a learns b's identity", || {
        alloc_a
            .list()
            .iter()
            .any(|(id, l)| *id == tiefighter && *l == labels("tiefighter"))
            .then_some(())
    })
    .await;
    // Reserved label sets are not allocated.
    use crate::identity::ReservedLabels;
    let host = crate::identity::ReservedIdentity::Host;
    assert_eq!(alloc_a.allocate(&host.labels()).await, Ok(host.identity()));

    // References are counted per node; releasing keeps the number.
    assert_eq!(alloc_a.allocate(&xwing).await, Ok(id_a));
    assert_eq!(alloc_a.local_references(id_a), 2);
    assert_eq!(alloc_a.release(id_a).await, Ok(false));
    assert_eq!(alloc_a.release(id_a).await, Ok(true));
    assert_eq!(
        alloc_a.release(id_a).await,
        Err(crate::identity::IdentityError::NotAllocated(id_a))
    );
    assert_eq!(alloc_a.allocate(&xwing).await, Ok(id_a));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_nodes_follow_leases() {
    let Some(etcd) = Etcd::start("pods_and_nodes_follow_leases") else {
        return;
    };
    let hub_b = NodeHub::new();
    let (a, _a_nodes) = join(&etcd, "node1", 11, NodeHub::new());
    let (b, _b_nodes) = join(&etcd, "node2", 12, hub_b.clone());
    a.register_node();
    b.register_node();

    let xwing = labels("xwing");
    let id = a.allocator().allocate(&xwing).await.expect("xwing");
    a.publish_endpoints(&[endpoint("xwing", Ipv4Addr::new(10, 200, 1, 13), id, xwing)]);
    let remote = b.remote_endpoints();
    let pod_ip = IpAddr::V4(Ipv4Addr::new(10, 200, 1, 13));
    let seen = eventually("b sees a's pod", || remote.by_ip(pod_ip)).await;
    assert_eq!(seen.identity, id);
    assert_eq!(seen.node_name, "node1");
    assert_eq!(seen.node_ip, IpAddr::V4(Ipv4Addr::new(10, 100, 0, 11)));
    assert_eq!(
        (seen.namespace.as_str(), seen.pod_name.as_str()),
        ("default", "xwing")
    );
    assert!(
        seen.labels.contains(&"k8s:class=xwing".to_string()),
        "{seen:?}"
    );
    // A node does not see its own pods as remote.
    assert!(a.remote_endpoints().all().is_empty());

    let names = |hub: &NodeHub| {
        hub.nodes()
            .into_iter()
            .map(|n| (n.name, n.address))
            .collect::<Vec<_>>()
    };
    eventually("b's hub lists both nodes", || {
        (names(&hub_b)
            == vec![
                ("node1".to_string(), "10.100.0.11:4244".to_string()),
                ("node2".to_string(), "10.100.0.12:4244".to_string()),
            ])
        .then_some(())
    })
    .await;

    // Unpublishing removes the pod.
    a.publish_endpoints(&[]);
    eventually("the pod is gone", || {
        remote.by_ip(pod_ip).is_none().then_some(())
    })
    .await;
    a.publish_endpoints(&[endpoint(
        "xwing",
        Ipv4Addr::new(10, 200, 1, 13),
        id,
        labels("xwing"),
    )]);
    eventually("the pod is back", || remote.by_ip(pod_ip)).await;

    // A dead agent's node and pods vanish when its lease expires.
    let died = Instant::now();
    a.crash();
    eventually("node1 leaves", || {
        (names(&hub_b).len() == 1 && remote.all().is_empty()).then_some(())
    })
    .await;
    let gone = died.elapsed();
    assert!(
        gone >= TTL / 2,
        "removed after {gone:?}, before the lease could expire"
    );

    // A gracefully stopped agent leaves at once.
    let c = Kvstore::start(config(&etcd, "node3", 13)).expect("c");
    eventually("c holds a lease", || c.has_lease().then_some(())).await;
    assert_eq!(
        names(&hub_b).len(),
        1,
        "node3 is announced before it registers"
    );
    c.register_node();
    eventually("node3 joins", || (names(&hub_b).len() == 2).then_some(())).await;
    let stopped = Instant::now();
    c.stop().await;
    eventually("node3 leaves", || (names(&hub_b).len() == 1).then_some(())).await;
    assert!(
        stopped.elapsed() < TTL,
        "revocation took {:?}",
        stopped.elapsed()
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_survive_an_etcd_restart() {
    let Some(mut etcd) = Etcd::start("identities_survive_an_etcd_restart") else {
        return;
    };
    let hub_b = NodeHub::new();
    let (a, _a_nodes) = join(&etcd, "node1", 11, NodeHub::new());
    let (b, _b_nodes) = join(&etcd, "node2", 12, hub_b.clone());
    a.register_node();
    b.register_node();
    eventually("a holds a lease", || a.has_lease().then_some(())).await;
    let xwing = labels("xwing");
    let before = a.allocator().allocate(&xwing).await.expect("xwing");
    a.publish_endpoints(&[endpoint(
        "xwing",
        Ipv4Addr::new(10, 200, 1, 13),
        before,
        xwing.clone(),
    )]);
    let remote = b.remote_endpoints();
    let pod_ip = IpAddr::V4(Ipv4Addr::new(10, 200, 1, 13));
    eventually("b sees a's pod", || remote.by_ip(pod_ip)).await;
    // The pod and its identity come through different watches: wait for both, so
    // that the identity is one b knows when etcd goes away.
    eventually("b knows xwing's identity", || b.allocator().lookup(before)).await;

    etcd.stop();
    eventually("a notices", || (!a.has_lease()).then_some(())).await;
    // Without etcd, known identities still answer and known label sets still allocate.
    assert_eq!(b.allocator().lookup(before), Some(xwing.clone()));
    assert_eq!(b.allocator().allocate(&xwing).await, Ok(before));
    assert!(
        remote.by_ip(pod_ip).is_some(),
        "remote pods are kept while etcd is away"
    );
    // A new label set waits for etcd.
    let pending = {
        let alloc = b.allocator();
        tokio::spawn(async move { alloc.allocate(&labels("ywing")).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished());

    etcd.spawn();
    eventually("a holds a lease again", || a.has_lease().then_some(())).await;
    let ywing = pending
        .await
        .expect("join")
        .expect("ywing after the restart");
    assert_ne!(ywing, before);
    assert_eq!(a.allocator().allocate(&xwing).await, Ok(before));
    eventually("a learns ywing", || {
        (a.allocator().lookup(ywing) == Some(labels("ywing"))).then_some(())
    })
    .await;
    // A fresh agent on the restarted store gets the same numbers.
    let (c, _c_nodes) = join(&etcd, "node3", 13, NodeHub::new());
    assert_eq!(c.allocator().allocate(&xwing).await, Ok(before));
    assert_eq!(c.allocator().allocate(&labels("ywing")).await, Ok(ywing));
    // Everyone is registered again and the pod is still published.
    eventually("all three nodes registered", || {
        (hub_b.nodes().len() == 3).then_some(())
    })
    .await;
    eventually("the pod is published", || remote.by_ip(pod_ip)).await;
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
