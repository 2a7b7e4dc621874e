use clap::Parser;

use super::run::dns_query_type;
use super::*;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("hubble-lab").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn up_config(args: &[&str]) -> up::UpConfig {
    let cli = parse(args);
    let Command::Up(up) = cli.command else {
        panic!("{args:?} is not `up`");
    };
    up.into_config(&cli.global, PathBuf::from("/usr/bin/hubble-lab"))
}

#[test]
fn up_flags_become_the_labs_configuration() {
    let config = up_config(&[
        "--run-dir",
        "/tmp/lab-test",
        "--prefix",
        "t1-",
        "up",
        "--nodes",
        "3",
        "--node-subnet",
        "10.123.0.0/24",
        "--no-export",
        "--cluster-name",
        "galaxy",
    ]);
    assert_eq!(config.topology.nodes, 3);
    assert_eq!(config.topology.prefix, "t1-");
    assert_eq!(config.topology.node_subnet.to_string(), "10.123.0.0/24");
    assert_eq!(config.run_dir, PathBuf::from("/tmp/lab-test"));
    assert_eq!(config.cluster_name, "galaxy");
    assert!(!config.export);
    assert!(!config.no_kvstore && !config.no_agents);
    assert_eq!(config.self_exe, PathBuf::from("/usr/bin/hubble-lab"));
}

#[test]
fn up_defaults() {
    let config = up_config(&["up"]);
    assert_eq!(config.topology.nodes, 1);
    assert_eq!(config.cluster_name, "default");
    assert!(config.export);
    assert_eq!(config.agent_bin, None);
    assert_eq!(config.relay_bin, None);
}

#[test]
fn a_bad_subnet_is_refused_by_name() {
    let error = Cli::try_parse_from(["hubble-lab", "up", "--node-subnet", "10.100.0.0"])
        .err()
        .expect("not a CIDR");
    assert!(error.to_string().contains("10.100.0.0"), "{error}");
}

#[test]
fn an_agent_target_needs_its_node() {
    assert!(Cli::try_parse_from(["hubble-lab", "stop", "agent"]).is_err());
    let cli = parse(&["stop", "agent", "--node", "2", "--kill"]);
    let Command::Stop { target, kill } = cli.command else {
        panic!("not stop");
    };
    assert!(kill);
    assert!(matches!(target.target(), Target::Agent(2)));
    let cli = parse(&["start", "etcd"]);
    let Command::Start { target } = cli.command else {
        panic!("not start");
    };
    assert!(matches!(target.target(), Target::Etcd));
}

#[test]
fn dns_query_types() {
    assert_eq!(dns_query_type("a").ok(), Some(crate::dns::RecordType::A));
    assert_eq!(
        dns_query_type("AAAA").ok(),
        Some(crate::dns::RecordType::AAAA)
    );
    let error = dns_query_type("MX").expect_err("MX");
    assert!(error.to_string().contains("\"MX\""), "{error}");
}
