//! TLS on the agent's TCP Hubble API (`:4244`), with upstream's flags.
//!
//! The agent serves TCP with TLS from `--tls-cert-file`/`--tls-key-file`, and
//! with mutual TLS when `--tls-client-ca-files` is given (a client without a
//! certificate signed by one of those CAs fails the handshake). Upstream's
//! Cilium agent takes the same settings as `hubble-tls-*`; both spellings
//! work. Clear text on TCP is refused unless the address is loopback or
//! `--disable-tls` is given. The Unix socket is always clear (mode 0660).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The TLS flags of the daemon.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Server certificate (PEM) of the Hubble API on TCP.
    #[arg(long, visible_alias = "hubble-tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Key (PEM) of the server certificate.
    #[arg(long, visible_alias = "hubble-tls-key-file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA bundles (PEM, comma-separated) that sign client certificates: when
    /// set, clients must present one (mutual TLS).
    #[arg(
        long,
        visible_alias = "hubble-tls-client-ca-files",
        value_delimiter = ','
    )]
    pub tls_client_ca_files: Vec<PathBuf>,
    /// Serve TCP in clear text (upstream's `hubble-disable-tls`).
    #[arg(long, visible_alias = "hubble-disable-tls", conflicts_with_all = ["tls_cert_file", "tls_key_file", "tls_client_ca_files"])]
    pub disable_tls: bool,
}

/// The TLS configuration of the TCP listener at `listen_address` (`None`:
/// clear text), or an error naming the address and the flags when clear
/// text is not allowed there.
pub fn server_tls(args: &TlsArgs, listen_address: Option<&str>) -> Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if !args.tls_client_ca_files.is_empty() {
                bail!("--tls-client-ca-files needs --tls-cert-file and --tls-key-file");
            }
            return match listen_address {
                Some(address) if !args.disable_tls && !is_loopback(address) => bail!(
                    "refusing to serve the Hubble API in clear text on {address}: pass \
                     --tls-cert-file and --tls-key-file (and --tls-client-ca-files for mutual \
                     TLS), listen on a loopback address, or pass --disable-tls"
                ),
                _ => Ok(None),
            };
        }
        _ => bail!("--tls-cert-file and --tls-key-file go together"),
    };
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read("TLS certificate", cert)?,
        read("TLS key", key)?,
    ));
    if !args.tls_client_ca_files.is_empty() {
        let mut bundle = Vec::new();
        for path in &args.tls_client_ca_files {
            bundle.extend(read("client CA bundle", path)?);
            bundle.push(b'\n');
        }
        config = config.client_ca_root(Certificate::from_pem(bundle));
    }
    Ok(Some(config))
}

/// Whether a listen address (`host:port`, `[v6]:port` or `:port`) only
/// accepts connections from this machine. `:port` is every interface.
pub fn is_loopback(address: &str) -> bool {
    let Some((host, _port)) = address.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:4244"));
        assert!(is_loopback("[::1]:4244"));
        assert!(is_loopback("localhost:4244"));
        assert!(!is_loopback(":4244"));
        assert!(!is_loopback("0.0.0.0:4244"));
        assert!(!is_loopback("10.100.0.11:4244"));
        assert!(!is_loopback("node1:4244"));
    }

    #[test]
    fn clear_text_is_refused_off_loopback() {
        let error = server_tls(&TlsArgs::default(), Some("10.100.0.11:4244"))
            .expect_err("refused")
            .to_string();
        assert_eq!(
            error,
            "refusing to serve the Hubble API in clear text on 10.100.0.11:4244: pass \
             --tls-cert-file and --tls-key-file (and --tls-client-ca-files for mutual TLS), \
             listen on a loopback address, or pass --disable-tls"
        );
        assert!(server_tls(&TlsArgs::default(), Some("127.0.0.1:4244"))
            .expect("loopback")
            .is_none());
        assert!(server_tls(&TlsArgs::default(), None)
            .expect("no TCP")
            .is_none());
        let disabled = TlsArgs {
            disable_tls: true,
            ..TlsArgs::default()
        };
        assert!(server_tls(&disabled, Some(":4244"))
            .expect("disabled")
            .is_none());
    }
}
