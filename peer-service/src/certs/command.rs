//! The `certs` command of the binaries that offer it (`hubble-agent certs`,
//! `hubble-relay certs`): one set of flags, one run function.

use std::path::{Path, PathBuf};

use super::{generate, issue_node, CertError, CertsSpec};
use crate::node::DEFAULT_CLUSTER_NAME;

/// Generate a CA and the TLS certificates for agents, the relay and clients.
#[derive(clap::Args, Debug, Clone)]
pub struct CertsArgs {
    /// Where to write them (default: `certs` for hubble-agent, `/var/run/hubble-rs/tls`
    /// for hubble-relay).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Cluster name, part of each node's server name.
    #[arg(long, default_value = DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// Node names to issue server certificates for (comma-separated or repeated).
    #[arg(long = "node", value_delimiter = ',', default_value = "node1")]
    pub nodes: Vec<String>,
    /// Names of the relay's server certificate (comma-separated or repeated; default:
    /// `*.hubble-relay.cilium.io`, `hubble-relay`, `localhost`, `127.0.0.1`).
    #[arg(long = "relay-server-name", value_delimiter = ',')]
    pub relay_server_names: Vec<String>,
    /// Replace files that exist.
    #[arg(long)]
    pub overwrite: bool,
    /// Only issue the nodes' server certificates, with the CA already in DIR (a node
    /// that joins later).
    #[arg(long)]
    pub existing_ca: bool,
}

impl CertsArgs {
    /// What to generate, as [`generate`] takes it.
    pub fn spec(&self) -> CertsSpec {
        let mut spec = CertsSpec {
            cluster: self.cluster_name.clone(),
            nodes: self.nodes.clone(),
            overwrite: self.overwrite,
            ..Default::default()
        };
        if !self.relay_server_names.is_empty() {
            spec.relay_server_names = self.relay_server_names.clone();
        }
        spec
    }
}

/// The command: writes the certificates `args` ask for into `args.dir`, else
/// `default_dir`, printing `wrote <path>` for each file.
pub fn run(args: &CertsArgs, default_dir: &Path) -> Result<(), CertError> {
    for path in write(args, default_dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes the certificates `args` ask for into `args.dir`, else `default_dir`, and
/// returns the paths written.
pub fn write(args: &CertsArgs, default_dir: &Path) -> Result<Vec<PathBuf>, CertError> {
    let dir = args.dir.as_deref().unwrap_or(default_dir);
    if args.existing_ca {
        let mut written = Vec::new();
        for node in &args.nodes {
            let (cert, key) = issue_node(dir, &args.cluster_name, node)?;
            written.extend([cert, key]);
        }
        return Ok(written);
    }
    generate(dir, &args.spec())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        certs: CertsArgs,
    }

    fn parse(args: &[&str]) -> CertsArgs {
        let cli = Cli::try_parse_from(std::iter::once("certs").chain(args.iter().copied()));
        match cli {
            Ok(cli) => cli.certs,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn both_spellings_of_nodes_and_the_defaults() {
        let repeated = parse(&["--node", "node1", "--node", "node2"]);
        let commas = parse(&["--node", "node1,node2"]);
        assert_eq!(repeated.nodes, ["node1", "node2"]);
        assert_eq!(commas.nodes, repeated.nodes);
        let defaults = parse(&[]);
        assert_eq!(defaults.nodes, ["node1"]);
        assert_eq!(defaults.cluster_name, "default");
        assert_eq!(defaults.dir, None);
        assert_eq!(
            defaults.spec().relay_server_names,
            CertsSpec::default().relay_server_names
        );
        let named = parse(&["--relay-server-name", "relay.example,10.0.0.1"]);
        assert_eq!(
            named.spec().relay_server_names,
            ["relay.example", "10.0.0.1"]
        );
    }

    #[test]
    fn writes_a_ca_then_issues_a_joining_node_from_it() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let fallback = dir.path().join("unused");
        let target = dir.path().join("tls");
        let target_arg = target.display().to_string();
        let first = write(
            &parse(&["--dir", &target_arg, "--node", "node1"]),
            &fallback,
        )?;
        assert!(first.contains(&target.join("ca.crt")), "{first:?}");
        let joined = write(
            &parse(&["--dir", &target_arg, "--node", "node2", "--existing-ca"]),
            &fallback,
        )?;
        assert_eq!(
            joined,
            [
                target.join("node2.default.hubble-grpc.cilium.io.crt"),
                target.join("node2.default.hubble-grpc.cilium.io.key")
            ]
        );
        assert!(!fallback.exists());
        // Without --overwrite a second run refuses to replace the CA.
        let again = write(&parse(&["--dir", &target_arg]), &fallback);
        assert!(matches!(again, Err(CertError::Exists { .. })), "{again:?}");
        Ok(())
    }
}
