use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

fn config(args: &[&str]) -> Result<RelayConfig, RelayError> {
    let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    cli.serve.into_config()
}

#[test]
fn both_sides_need_tls_or_its_disabling() {
    let none = config(&[]).expect_err("no TLS settings at all");
    assert!(
        matches!(none, RelayError::NoClientTls),
        "client side is checked first: {none}"
    );
    assert!(none.to_string().contains("--disable-client-tls"), "{none}");
    let no_server = config(&["--disable-client-tls"]).expect_err("no server TLS");
    assert!(matches!(no_server, RelayError::NoServerTls), "{no_server}");
    assert!(
        no_server
            .to_string()
            .contains("--tls-relay-server-key-file"),
        "{no_server}"
    );
    let key_only = config(&[
        "--disable-client-tls",
        "--tls-relay-server-key-file",
        "relay.key",
    ]);
    assert!(matches!(key_only, Err(RelayError::NoServerTls)));
    let clear = config(&["--disable-client-tls", "--disable-server-tls"]).expect("clear");
    assert!(clear.client_tls.is_none() && clear.server_tls.is_none());
}

#[test]
fn tls_files_with_upstream_and_short_spellings() {
    let full = config(&[
        "--tls-hubble-server-ca-files",
        "ca1.crt,ca2.crt",
        "--tls-client-cert-file",
        "client.crt",
        "--tls-hubble-client-key-file",
        "client.key",
        "--tls-server-cert-file",
        "server.crt",
        "--tls-relay-server-key-file",
        "server.key",
        "--tls-client-ca-files",
        "clients.crt",
    ])
    .expect("full TLS");
    let client = full.client_tls.expect("client TLS");
    assert_eq!(
        client.server_ca_files,
        [PathBuf::from("ca1.crt"), PathBuf::from("ca2.crt")]
    );
    assert_eq!(client.cert_file, Some(PathBuf::from("client.crt")));
    assert_eq!(client.key_file, Some(PathBuf::from("client.key")));
    let server = full.server_tls.expect("server TLS");
    assert_eq!(server.cert_file, PathBuf::from("server.crt"));
    assert_eq!(server.key_file, PathBuf::from("server.key"));
    assert!(server.requires_client_certificate());
}

#[test]
fn defaults_and_empty_addresses() {
    let config = config(&[
        "--disable-client-tls",
        "--disable-server-tls",
        "--health-listen-address",
        "",
        "--metrics-listen-address",
        ":9966",
        "--sort-buffer-drain-timeout",
        "250ms",
    ])
    .expect("config");
    assert_eq!(config.peer_service, config::DEFAULT_PEER_SERVICE);
    assert_eq!(config.listen_address, config::DEFAULT_LISTEN_ADDRESS);
    assert_eq!(config.health_listen_address, None);
    assert_eq!(config.metrics_listen_address.as_deref(), Some(":9966"));
    assert_eq!(
        config.sort_buffer_len_max,
        config::DEFAULT_SORT_BUFFER_LEN_MAX
    );
    assert_eq!(config.sort_buffer_drain_timeout, Duration::from_millis(250));
    assert_eq!(config.dial_timeout, config::DEFAULT_DIAL_TIMEOUT);
    assert_eq!(config.retry_timeout, config::DEFAULT_RETRY_TIMEOUT);
    let zero = Cli::try_parse_from(["serve", "--sort-buffer-len-max", "0"]);
    assert!(zero.is_err(), "a sort buffer of 0 is refused");
}
