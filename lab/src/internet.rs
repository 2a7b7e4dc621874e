//! The lab's "internet": a network namespace outside the cluster with a few public
//! names' servers, so that pods reach addresses with the `world` identity by name.
//!
//! The namespace `<prefix>internet` sits on the nodes' bridge at `.254` of the node
//! subnet (`fd00:100::254` for IPv6). Each host of [`INTERNET_HOSTS`] has its own
//! addresses on the namespace's loopback, in TEST-NET-3 (`203.0.113.0/24`) and the
//! documentation prefix `2001:db8:113::/64`, outside the pod and service ranges. Every
//! node routes those prefixes to the namespace, and the namespace routes each node's
//! pod CIDRs back to that node, so pods' addresses are seen unchanged (no NAT). One
//! server (`hubble-lab serve internet`) answers plain HTTP (no TLS) on port 443 on
//! every address with the name of the host whose address was called. The DNS pod
//! answers the names (A and AAAA), `www.cilium.io` as a CNAME of `cilium.io`, and
//! `releases.cilium.io` with 40 addresses, too many for one UDP answer.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::command::ip_in;
use crate::error::{LabError, Result};
use crate::http::{self, HttpError};
use crate::topology::{NodePlan, Topology};

/// Port the internet's servers answer on (plain HTTP, not TLS).
pub const INTERNET_PORT: u16 = 443;

/// Most connections the internet's server handles at once; one more is closed and
/// counted.
pub const MAX_CONNECTIONS: usize = 64;

/// Read and write timeout of a connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The IPv4 prefix of the internet's hosts (TEST-NET-3).
pub const INTERNET_PREFIX_V4: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(203, 0, 113, 0), 24) {
    Ok(net) => net,
    Err(_) => panic!("a /24 is a valid prefix"),
};

/// The IPv6 prefix of the internet's hosts (in the documentation range).
pub const INTERNET_PREFIX_V6: Ipv6Net =
    match Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0), 64) {
        Ok(net) => net,
        Err(_) => panic!("a /64 is a valid prefix"),
    };

/// A host of the internet: its name and addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternetHost {
    pub name: &'static str,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

/// The internet's hosts.
pub const INTERNET_HOSTS: &[InternetHost] = &[
    InternetHost {
        name: "api.github.com",
        ipv4: Ipv4Addr::new(203, 0, 113, 10),
        ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x10),
    },
    InternetHost {
        name: "cilium.io",
        ipv4: Ipv4Addr::new(203, 0, 113, 20),
        ipv6: Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x20),
    },
];

/// A name with more addresses than one 512-byte UDP answer holds: the DNS pod answers
/// it over UDP with the TC bit and no records, and whole over TCP, so a resolver asks
/// twice. Only DNS knows it; nothing listens on its addresses.
pub const INTERNET_POOL_NAME: &str = "releases.cilium.io";

/// How many addresses [`INTERNET_POOL_NAME`] has: `203.0.113.100` onwards.
pub const INTERNET_POOL_SIZE: u8 = 40;

/// The addresses of [`INTERNET_POOL_NAME`].
pub fn pool_addresses() -> impl Iterator<Item = Ipv4Addr> {
    (0..INTERNET_POOL_SIZE).map(|host| Ipv4Addr::new(203, 0, 113, 100 + host))
}

/// Aliases the DNS pod answers with a CNAME record: (name, target).
pub const INTERNET_ALIASES: &[(&str, &str)] = &[("www.cilium.io", "cilium.io")];

/// Where the internet sits in a planned lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetPlan {
    /// The namespace, `<prefix>internet`.
    pub netns: String,
    /// Root-namespace side of its veth, enslaved to the bridge.
    pub root_link: String,
    /// Its address on the bridge, `.254` of the node subnet.
    pub address: Ipv4Addr,
    /// Its IPv6 address on the bridge, `fd00:100::254`.
    pub address6: Ipv6Addr,
}

impl InternetPlan {
    /// The plan on the bridge `bridge_address` with names under `prefix`.
    pub fn plan(prefix: &str, bridge_address: Ipv4Net) -> Result<Self> {
        let root_link = format!("{prefix}inet");
        if root_link.len() > crate::topology::MAX_LINK_NAME {
            return Err(LabError::InvalidConfig {
                what: "link name",
                value: root_link,
                reason: "too long; use a shorter --prefix".to_string(),
            });
        }
        let base = bridge_address.network().octets();
        Ok(InternetPlan {
            netns: format!("{prefix}internet"),
            root_link,
            address: Ipv4Addr::new(base[0], base[1], base[2], 254),
            address6: Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x254),
        })
    }
}

/// The (name, address) records the DNS pod answers for the internet's hosts.
pub fn dns_records() -> Vec<(String, IpAddr)> {
    INTERNET_HOSTS
        .iter()
        .flat_map(|host| {
            [
                (host.name.to_string(), IpAddr::V4(host.ipv4)),
                (host.name.to_string(), IpAddr::V6(host.ipv6)),
            ]
        })
        .chain(
            pool_addresses().map(|address| (INTERNET_POOL_NAME.to_string(), IpAddr::V4(address))),
        )
        .collect()
}

/// Creates the namespace's link to the bridge, its addresses, the hosts' addresses
/// and the routes back to every node's pods (the namespace already exists).
pub fn connect(topology: &Topology, internet: &InternetPlan) -> Result<()> {
    let netns = internet.netns.as_str();
    let root_link = internet.root_link.as_str();
    crate::command::ip(&[
        "link", "add", "name", root_link, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ])?;
    crate::command::ip(&["link", "set", root_link, "master", &topology.bridge, "up"])?;
    let address = format!(
        "{}/{}",
        internet.address,
        topology.bridge_address.prefix_len()
    );
    ip_in(netns, &["addr", "add", &address, "dev", "eth0"])?;
    let address6 = format!("{}/64", internet.address6);
    ip_in(
        netns,
        &["-6", "addr", "add", &address6, "dev", "eth0", "nodad"],
    )?;
    ip_in(netns, &["link", "set", "eth0", "up"])?;
    for host in INTERNET_HOSTS {
        ip_in(
            netns,
            &["addr", "add", &format!("{}/32", host.ipv4), "dev", "lo"],
        )?;
        ip_in(
            netns,
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/128", host.ipv6),
                "dev",
                "lo",
                "nodad",
            ],
        )?;
    }
    for node in &topology.nodes {
        route_node(internet, node)?;
    }
    Ok(())
}

/// Routes between the internet and node `node`, both ways.
pub fn route_node(internet: &InternetPlan, node: &NodePlan) -> Result<()> {
    let netns = internet.netns.as_str();
    let via = node.address.to_string();
    ip_in(
        netns,
        &[
            "route",
            "add",
            &node.pod_cidr.to_string(),
            "via",
            &via,
            "dev",
            "eth0",
        ],
    )?;
    let via6 = node.address6.to_string();
    ip_in(
        netns,
        &[
            "-6",
            "route",
            "add",
            &node.pod_cidr6.to_string(),
            "via",
            &via6,
            "dev",
            "eth0",
        ],
    )?;
    let internet_via = internet.address.to_string();
    ip_in(
        &node.netns,
        &[
            "route",
            "add",
            &INTERNET_PREFIX_V4.to_string(),
            "via",
            &internet_via,
            "dev",
            "eth0",
        ],
    )?;
    let internet_via6 = internet.address6.to_string();
    ip_in(
        &node.netns,
        &[
            "-6",
            "route",
            "add",
            &INTERNET_PREFIX_V6.to_string(),
            "via",
            &internet_via6,
            "dev",
            "eth0",
        ],
    )
}

/// The name of the host an address belongs to.
pub fn host_of(address: IpAddr) -> Option<&'static str> {
    let address = address.to_canonical();
    INTERNET_HOSTS
        .iter()
        .find(|host| IpAddr::V4(host.ipv4) == address || IpAddr::V6(host.ipv6) == address)
        .map(|host| host.name)
}

/// Serves every host on `listen` (plain HTTP) until the process is stopped: each
/// request is answered `200` with the called host's name.
pub fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).map_err(|error| LabError::Io {
        action: "listening on",
        path: listen.to_string().into(),
        source: error,
    })?;
    println!("internet listening on {listen}");
    let active = Arc::new(AtomicUsize::new(0));
    let rejected = AtomicU64::new(0);
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                eprintln!("accept failed: {error}");
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let total = rejected.fetch_add(1, Ordering::Relaxed) + 1;
            eprintln!("too many connections ({MAX_CONNECTIONS}); closed one ({total} so far)");
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let active = Arc::clone(&active);
        thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            if let Err(error) = handle(stream) {
                eprintln!("connection from {peer:?}: {error}");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
    Ok(())
}

fn handle(mut stream: TcpStream) -> Result<(), HttpError> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let (head, _rest) = http::read_head(&mut stream)?;
    let request = match http::parse_request_head(&head) {
        Ok(request) => request,
        Err(error) => {
            stream.write_all(&http::format_response(400, "Bad Request", "bad request\n"))?;
            return Err(error);
        }
    };
    let host = host_of(local.ip()).unwrap_or("unknown host");
    println!(
        "{} {} {} -> {host}",
        peer.ip().to_canonical(),
        request.method,
        request.target
    );
    stream.write_all(&http::format_response(200, "OK", &format!("{host}\n")))?;
    stream.flush()?;
    Ok(())
}

/// Checks that nothing on the machine uses the internet's namespace or link name.
pub fn check_free(internet: &InternetPlan) -> Result<()> {
    if crate::command::netns_exists(&internet.netns) {
        return Err(LabError::NameTaken {
            kind: "network namespace",
            name: internet.netns.clone(),
        });
    }
    if crate::command::root_link_exists(&internet.root_link) {
        return Err(LabError::NameTaken {
            kind: "link",
            name: internet.root_link.clone(),
        });
    }
    Ok(())
}

/// The internet's log file under the run dir.
pub fn log_file(layout: &crate::paths::RunLayout) -> std::path::PathBuf {
    layout.workload_log("internet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_sit_outside_the_cluster_ranges() {
        for host in INTERNET_HOSTS {
            assert!(INTERNET_PREFIX_V4.contains(&host.ipv4), "{}", host.name);
            assert!(INTERNET_PREFIX_V6.contains(&host.ipv6), "{}", host.name);
            let pods: Ipv4Net = "10.200.0.0/16".parse().expect("net");
            let services: Ipv4Net = "10.96.0.0/12".parse().expect("net");
            assert!(!pods.contains(&host.ipv4) && !services.contains(&host.ipv4));
        }
        assert_eq!(
            host_of("203.0.113.10".parse().expect("ip")),
            Some("api.github.com")
        );
        assert_eq!(
            host_of("::ffff:203.0.113.20".parse().expect("ip")),
            Some("cilium.io")
        );
        assert_eq!(
            host_of("2001:db8:113::20".parse().expect("ip")),
            Some("cilium.io")
        );
        assert_eq!(host_of("203.0.113.99".parse().expect("ip")), None);
        for address in pool_addresses() {
            assert!(INTERNET_PREFIX_V4.contains(&address));
            assert!(INTERNET_HOSTS.iter().all(|host| host.ipv4 != address));
        }
        assert_eq!(pool_addresses().count(), usize::from(INTERNET_POOL_SIZE));
    }

    #[test]
    fn the_plan_uses_the_bridge_subnet() {
        let plan = InternetPlan::plan("hl-", "10.100.0.1/24".parse().expect("net")).expect("plan");
        assert_eq!(plan.netns, "hl-internet");
        assert_eq!(plan.root_link, "hl-inet");
        assert_eq!(plan.address, Ipv4Addr::new(10, 100, 0, 254));
        assert_eq!(plan.address6.to_string(), "fd00:100::254");
        let records = dns_records();
        assert!(records.contains(&(
            "api.github.com".to_string(),
            "203.0.113.10".parse().expect("ip")
        )));
        assert!(records.contains(&(
            "cilium.io".to_string(),
            "2001:db8:113::20".parse().expect("ip")
        )));
    }

    #[test]
    fn answers_with_the_called_hosts_name() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        thread::spawn(move || {
            for stream in listener.incoming().take(1).flatten() {
                let _ = handle(stream);
            }
        });
        let timeout = Duration::from_secs(2);
        let response =
            http::send("GET", &format!("http://{address}/"), timeout, timeout).expect("get");
        // Loopback is none of the hosts.
        assert_eq!(
            (response.status, response.body.as_str()),
            (200, "unknown host\n")
        );
    }
}
