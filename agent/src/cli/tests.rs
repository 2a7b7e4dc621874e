use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    daemon: DaemonArgs,
}

/// The daemon's configuration from `args` (clear text allowed).
fn config(args: &[&str]) -> Result<DaemonConfig> {
    let base = ["hubble-agent", "--disable-tls"];
    let cli = Cli::try_parse_from(base.iter().chain(args.iter()).copied())
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    cli.daemon.into_config()
}

/// Node `node1` without the datapath, as a unit test can run anywhere.
fn replay_only(args: &[&str]) -> Result<DaemonConfig> {
    let mut all = vec!["--no-datapath", "--node-name", "node1"];
    all.extend_from_slice(args);
    config(&all)
}

#[test]
fn ring_capacity_is_checked_by_the_observer_ring() {
    assert_eq!(replay_only(&[]).expect("default").ring_capacity, 4095);
    assert_eq!(
        replay_only(&["--hubble-event-buffer-capacity", "65535"])
            .expect("alias")
            .ring_capacity,
        65535
    );
    for bad in ["0", "4096", "18446744073709551615"] {
        let error = replay_only(&["--ring-capacity", bad]).expect_err(bad);
        let message = format!("{error:#}");
        assert!(message.starts_with("--ring-capacity: "), "{message}");
        assert!(
            message.contains(&format!("invalid ring capacity {bad}")),
            "{message}"
        );
    }
}

#[test]
fn node_names_that_cannot_name_a_directory_are_refused() {
    for bad in ["", "a/b", ".hidden"] {
        let error = config(&["--no-datapath", "--node-name", bad]).expect_err(bad);
        assert!(
            error.to_string().contains(&format!("--node-name {bad:?}")),
            "{error}"
        );
    }
}

#[test]
fn per_node_directories_follow_the_datapath() {
    let replay_only = replay_only(&[]).expect("no datapath");
    assert_eq!(replay_only.state_dir, None);
    assert_eq!(replay_only.bpf_pin_dir, None);
    assert!(!replay_only.datapath);
    let with_datapath = config(&["--datapath", "--node-name", "node1"]).expect("datapath");
    assert_eq!(
        with_datapath.state_dir,
        Some(PathBuf::from(DEFAULT_STATE_ROOT).join("node1"))
    );
    assert_eq!(
        with_datapath.bpf_pin_dir,
        Some(PathBuf::from(DEFAULT_PIN_ROOT).join("node1"))
    );
    let nothing_kept =
        config(&["--datapath", "--state-dir", "", "--bpf-pin-dir", ""]).expect("empty directories");
    assert_eq!(nothing_kept.state_dir, None);
    assert_eq!(nothing_kept.bpf_pin_dir, None);
}

#[test]
fn empty_addresses_turn_listeners_off() {
    let config = replay_only(&[
        "--unix-socket",
        "",
        "--listen-address",
        "",
        "--metrics-address",
        "",
    ])
    .expect("config");
    assert_eq!(config.unix_socket, None);
    assert_eq!(config.listen_address, None);
    assert_eq!(config.metrics_address, None);
    assert!(config.kvstore.is_none());
}

#[test]
fn clear_text_off_loopback_needs_disable_tls() {
    let cli = Cli::try_parse_from(["hubble-agent", "--no-datapath", "--node-name", "node1"])
        .expect("flags");
    let error = cli.daemon.into_config().expect_err("clear text on :4244");
    let message = format!("{error:#}");
    assert!(message.contains(":4244"), "{message}");
    assert!(message.contains("--disable-tls"), "{message}");
}
