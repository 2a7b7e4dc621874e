use super::*;

fn config(nodes: u8, prefix: &str) -> TopologyConfig {
    TopologyConfig {
        nodes,
        prefix: prefix.to_string(),
        node_subnet: "10.100.0.0/24".parse().expect("valid subnet"),
    }
}

#[test]
fn one_node_places_every_pod_on_node1() {
    let topology = Topology::plan(&config(1, "hl-")).expect("plan");
    assert_eq!(topology.bridge, "hl-br0");
    assert_eq!(topology.bridge_address.to_string(), "10.100.0.1/24");
    assert_eq!(topology.nodes.len(), 1);
    assert_eq!(topology.nodes[0].address, Ipv4Addr::new(10, 100, 0, 11));
    assert_eq!(topology.nodes[0].netns, "hl-node1");
    for pod in &topology.pods {
        assert_eq!(pod.node, 1, "{}", pod.name);
        assert_eq!(pod.netns, format!("hl-{}", pod.name));
    }
    let xwing = topology.pod("xwing").expect("xwing");
    assert_eq!(xwing.ipv4, Ipv4Addr::new(10, 200, 1, 13));
    assert_eq!(xwing.ipv6.to_string(), "fd00:200:1::13");
    assert_eq!(xwing.labels["org"], "alliance");
    let coredns = topology.pod("coredns").expect("coredns");
    assert_eq!(coredns.namespace, "kube-system");
    assert_eq!(coredns.labels["k8s-app"], "kube-dns");
}

#[test]
fn deathstars_land_on_different_nodes() {
    let topology = Topology::plan(&config(2, "hl-")).expect("plan");
    let first = topology.pod("deathstar-1").expect("deathstar-1");
    let second = topology.pod("deathstar-2").expect("deathstar-2");
    assert_ne!(first.node, second.node);
    assert_eq!(second.ipv4, Ipv4Addr::new(10, 200, 2, 11));
    assert_eq!(topology.nodes[1].address, Ipv4Addr::new(10, 100, 0, 12));
}

#[test]
fn host_links_are_short_and_distinct() {
    let topology = Topology::plan(&config(3, "hl-")).expect("plan");
    let mut names: Vec<&str> = topology.pods.iter().map(|p| p.host_link.as_str()).collect();
    for name in &names {
        assert!(
            name.len() <= MAX_LINK_NAME && name.starts_with("lxc"),
            "{name}"
        );
        assert_eq!(name.len(), 11);
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), topology.pods.len());
    assert_ne!(
        host_link_name("hl-", "default", "xwing"),
        host_link_name("ht1-", "default", "xwing")
    );
}

#[test]
fn bad_inputs_are_rejected_with_the_value() {
    let error = Topology::plan(&config(0, "hl-")).expect_err("zero nodes");
    assert!(error.to_string().contains("\"0\""), "{error}");
    let error = Topology::plan(&config(1, "Bad_")).expect_err("bad prefix");
    assert!(error.to_string().contains("Bad_"), "{error}");
    let error = Topology::plan(&config(10, "ht1234567-")).expect_err("long link name");
    assert!(error.to_string().contains("ht1234567-node10"), "{error}");
    let mut wide = config(1, "hl-");
    wide.node_subnet = "10.100.0.0/16".parse().expect("valid subnet");
    assert!(Topology::plan(&wide).is_err());
}

#[test]
fn a_node_added_later_follows_the_same_plan() {
    let mut topology = Topology::plan(&TopologyConfig {
        nodes: 3,
        prefix: "hl-".to_string(),
        node_subnet: "10.103.0.0/24".parse().expect("valid subnet"),
    })
    .expect("plan");
    let pods = topology.pods.clone();
    let node = topology.add_node().expect("fourth node");
    assert_eq!(node.index, 4);
    assert_eq!(node.name, "node4");
    assert_eq!(node.netns, "hl-node4");
    assert_eq!(node.address, Ipv4Addr::new(10, 103, 0, 14));
    assert_eq!(node.pod_cidr.to_string(), "10.200.4.0/24");
    assert_eq!(topology.nodes.len(), 4);
    assert_eq!(topology.pods, pods, "pods stay where they are");
    let planned = Topology::plan(&TopologyConfig {
        nodes: 4,
        prefix: "hl-".to_string(),
        node_subnet: "10.103.0.0/24".parse().expect("valid subnet"),
    })
    .expect("plan");
    assert_eq!(Some(&node), planned.node(4));

    let mut full = Topology::plan(&config(MAX_NODES, "hl-")).expect("plan");
    let error = full.add_node().expect_err("too many nodes");
    assert!(error.to_string().contains("17"), "{error}");
}

#[test]
fn three_nodes_put_the_deathstars_and_xwing_apart() {
    let topology = Topology::plan(&config(3, "hl-")).expect("plan");
    let node_of = |pod: &str| topology.pod(pod).expect("pod").node;
    assert_ne!(node_of("deathstar-1"), node_of("deathstar-2"));
    assert_eq!(node_of("xwing"), 1);
    assert_eq!(node_of("deathstar-2"), 2);
    assert_eq!(node_of("tiefighter"), 3);
}
