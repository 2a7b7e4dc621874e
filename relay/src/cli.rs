//! The command line of `hubble-relay serve`, turned into a [`RelayConfig`] by the
//! library's own rules (unit-tested below), so `main` only parses, builds and runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{self, ClientTlsFiles, RelayConfig, ServerTlsFiles};
use crate::error::RelayError;

/// The flags of `hubble-relay serve`, upstream's spellings.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the server that implements the peer gRPC service (unix:///path or host:port).
    #[arg(long, default_value = config::DEFAULT_PEER_SERVICE)]
    pub peer_service: String,
    /// Address on which to listen.
    #[arg(long, default_value = config::DEFAULT_LISTEN_ADDRESS)]
    pub listen_address: String,
    /// Address on which the gRPC health server listens (empty to disable).
    #[arg(long, default_value = config::DEFAULT_HEALTH_LISTEN_ADDRESS)]
    pub health_listen_address: String,
    /// Address to serve Prometheus metrics on (`/metrics`), e.g. `:9966`; empty for none.
    #[arg(long, default_value = "")]
    pub metrics_listen_address: String,
    /// Name of the cluster, used in TLS server names.
    #[arg(long, default_value = config::DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// Dial timeout when connecting to hubble peers.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub dial_timeout: Duration,
    /// Longest time to wait before attempting to reconnect to the peer service.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_timeout: Duration,
    /// Max number of flows that can be buffered for sorting before being sent to the client (per request).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub sort_buffer_len_max: u32,
    /// Longest time a flow waits in the sort buffer before being sent (follow mode).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub sort_buffer_drain_timeout: Duration,
    /// Client certificate for connecting to Hubble servers (agents).
    #[arg(long, alias = "tls-client-cert-file")]
    pub tls_hubble_client_cert_file: Option<PathBuf>,
    /// Key of the client certificate for connecting to Hubble servers.
    #[arg(long, alias = "tls-client-key-file")]
    pub tls_hubble_client_key_file: Option<PathBuf>,
    /// CA bundles that sign the Hubble servers' certificates (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub tls_hubble_server_ca_files: Vec<PathBuf>,
    /// Connect to Hubble servers in plaintext.
    #[arg(long)]
    pub disable_client_tls: bool,
    /// Server certificate of the relay.
    #[arg(long, alias = "tls-server-cert-file")]
    pub tls_relay_server_cert_file: Option<PathBuf>,
    /// Key of the relay's server certificate.
    #[arg(long, alias = "tls-server-key-file")]
    pub tls_relay_server_key_file: Option<PathBuf>,
    /// CA bundles that sign accepted client certificates; when set, clients must present one.
    #[arg(long, alias = "tls-client-ca-files", value_delimiter = ',')]
    pub tls_relay_client_ca_files: Vec<PathBuf>,
    /// Serve clients in plaintext.
    #[arg(long)]
    pub disable_server_tls: bool,
}

impl ServeArgs {
    /// The relay's configuration; the TLS rules are checked here: TLS on both sides
    /// unless disabled, a CA for the agents' certificates, the server's certificate
    /// and key together.
    pub fn into_config(self) -> Result<RelayConfig, RelayError> {
        let client_tls = if self.disable_client_tls {
            None
        } else if self.tls_hubble_server_ca_files.is_empty() {
            return Err(RelayError::NoClientTls);
        } else {
            Some(ClientTlsFiles {
                cert_file: self.tls_hubble_client_cert_file,
                key_file: self.tls_hubble_client_key_file,
                server_ca_files: self.tls_hubble_server_ca_files,
            })
        };
        let server_tls = if self.disable_server_tls {
            None
        } else {
            match (
                self.tls_relay_server_cert_file,
                self.tls_relay_server_key_file,
            ) {
                (Some(cert_file), Some(key_file)) => Some(ServerTlsFiles {
                    cert_file,
                    key_file,
                    client_ca_files: self.tls_relay_client_ca_files,
                }),
                _ => return Err(RelayError::NoServerTls),
            }
        };
        Ok(RelayConfig {
            peer_service: self.peer_service,
            listen_address: self.listen_address,
            health_listen_address: Some(self.health_listen_address).filter(|a| !a.is_empty()),
            metrics_listen_address: Some(self.metrics_listen_address).filter(|a| !a.is_empty()),
            cluster_name: self.cluster_name,
            dial_timeout: self.dial_timeout,
            retry_timeout: self.retry_timeout,
            sort_buffer_len_max: self.sort_buffer_len_max as usize,
            sort_buffer_drain_timeout: self.sort_buffer_drain_timeout,
            client_tls,
            server_tls,
            ..RelayConfig::default()
        })
    }
}

#[cfg(test)]
mod tests;
