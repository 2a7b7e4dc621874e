//! Certificates for mutual TLS between agents, the relay and the CLI.
//!
//! [`generate`] writes into one directory:
//!
//! | files | what | used by |
//! |---|---|---|
//! | `ca.crt`, `ca.key` | the cluster's CA | everyone trusts `ca.crt` |
//! | `<node>.<cluster>.hubble-grpc.cilium.io.{crt,key}` | server certificate of a node | the agent on `:4244` |
//! | `relay-client.{crt,key}` | client certificate of the relay | the relay, towards agents |
//! | `relay-server.{crt,key}` | server certificate of the relay | the relay on `:4245` |
//! | `hubble-client.{crt,key}` | client certificate of the CLI | `hubble`, towards the relay |
//!
//! Each run creates a new CA; certificates of an older run do not verify against it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::node::{tls_server_name, DEFAULT_CLUSTER_NAME, GRPC_SERVICE_NAME, PEER_SERVICE_NAME};

mod command;

pub use command::{run, write, CertsArgs};

/// Names in the relay's server certificate when none are given: the wildcard upstream's
/// relay certificates carry, and the names used to reach a relay on this machine.
pub const DEFAULT_RELAY_SERVER_NAMES: &[&str] = &[
    "*.hubble-relay.cilium.io",
    "hubble-relay",
    "localhost",
    "127.0.0.1",
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct CertsSpec {
    /// Cluster name, part of every node's server name.
    pub cluster: String,
    /// Node names; each gets a server certificate.
    pub nodes: Vec<String>,
    /// Subject alternative names (DNS names or IP addresses) of the relay's server
    /// certificate.
    pub relay_server_names: Vec<String>,
    /// Replace files that already exist instead of failing.
    pub overwrite: bool,
}

impl Default for CertsSpec {
    fn default() -> Self {
        Self {
            cluster: DEFAULT_CLUSTER_NAME.into(),
            nodes: Vec::new(),
            relay_server_names: DEFAULT_RELAY_SERVER_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            overwrite: false,
        }
    }
}

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A name cannot go into a certificate.
    #[error("cannot build a certificate for {name:?}: {source}")]
    Build {
        /// The certificate's subject or alternative name.
        name: String,
        /// The generator's error.
        source: rcgen::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file exists and overwriting was not asked for.
    #[error("{} already exists (pass --overwrite to replace it)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file (the CA key) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

enum Role {
    Server,
    Client,
}

struct Issuer {
    certificate: Certificate,
    key: KeyPair,
}

/// Generates a CA and every certificate of `spec` into `dir` (created if missing) and
/// returns the paths written.
pub fn generate(dir: &Path, spec: &CertsSpec) -> Result<Vec<PathBuf>, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let cluster = if spec.cluster.is_empty() {
        DEFAULT_CLUSTER_NAME
    } else {
        spec.cluster.as_str()
    };
    let mut written = Vec::new();
    let ca = new_ca(cluster)?;
    write_pair(
        dir,
        "ca",
        &ca.certificate,
        &ca.key,
        spec.overwrite,
        &mut written,
    )?;

    let peer_name = tls_server_name(PEER_SERVICE_NAME, cluster);
    for node in &spec.nodes {
        let server_name = tls_server_name(node, cluster);
        let names = vec![server_name.clone(), peer_name.clone()];
        let (certificate, key) = issue(&ca, &server_name, names, Role::Server)?;
        write_pair(
            dir,
            &server_name,
            &certificate,
            &key,
            spec.overwrite,
            &mut written,
        )?;
    }
    let relay_client = format!("relay-client.{cluster}.{GRPC_SERVICE_NAME}.cilium.io");
    let (certificate, key) = issue(&ca, &relay_client, vec![relay_client.clone()], Role::Client)?;
    write_pair(
        dir,
        "relay-client",
        &certificate,
        &key,
        spec.overwrite,
        &mut written,
    )?;

    let (certificate, key) = issue(
        &ca,
        "hubble-relay",
        spec.relay_server_names.clone(),
        Role::Server,
    )?;
    write_pair(
        dir,
        "relay-server",
        &certificate,
        &key,
        spec.overwrite,
        &mut written,
    )?;

    let cli = "hubble-client".to_string();
    let (certificate, key) = issue(&ca, &cli, vec![cli.clone()], Role::Client)?;
    write_pair(
        dir,
        "hubble-client",
        &certificate,
        &key,
        spec.overwrite,
        &mut written,
    )?;
    Ok(written)
}

/// Issues the server certificate of one more node with the CA already in `dir` (written
/// by [`generate`] for the same cluster), e.g. for a node that joins later. Returns the
/// certificate and key paths.
pub fn issue_node(dir: &Path, cluster: &str, node: &str) -> Result<(PathBuf, PathBuf), CertError> {
    let cluster = if cluster.is_empty() {
        DEFAULT_CLUSTER_NAME
    } else {
        cluster
    };
    let key_path = dir.join("ca.key");
    let key_pem = std::fs::read_to_string(&key_path).map_err(|source| CertError::Read {
        path: key_path.clone(),
        source,
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(build_error("ca.key"))?;
    // The same subject and key as the CA in `ca.crt`: what it signs verifies against it.
    let ca = ca_with_key(cluster, key)?;
    let server_name = tls_server_name(node, cluster);
    let names = vec![
        server_name.clone(),
        tls_server_name(PEER_SERVICE_NAME, cluster),
    ];
    let (certificate, key) = issue(&ca, &server_name, names, Role::Server)?;
    let mut written = Vec::new();
    write_pair(dir, &server_name, &certificate, &key, true, &mut written)?;
    Ok((
        dir.join(format!("{server_name}.crt")),
        dir.join(format!("{server_name}.key")),
    ))
}

fn build_error(name: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Build {
        name: name.to_owned(),
        source,
    }
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "hubble-rs");
    name.push(DnType::CommonName, common_name);
    name
}

fn ca_params(common_name: &str) -> Result<CertificateParams, CertError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(build_error(common_name))?;
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn new_ca(cluster: &str) -> Result<Issuer, CertError> {
    let common_name = format!("hubble-rs CA ({cluster})");
    let params = ca_params(&common_name)?;
    let key = KeyPair::generate().map_err(build_error(&common_name))?;
    let certificate = params
        .self_signed(&key)
        .map_err(build_error(&common_name))?;
    Ok(Issuer { certificate, key })
}

fn ca_with_key(cluster: &str, key: KeyPair) -> Result<Issuer, CertError> {
    let common_name = format!("hubble-rs CA ({cluster})");
    let params = ca_params(&common_name)?;
    let certificate = params
        .self_signed(&key)
        .map_err(build_error(&common_name))?;
    Ok(Issuer { certificate, key })
}

fn issue(
    ca: &Issuer,
    common_name: &str,
    names: Vec<String>,
    role: Role,
) -> Result<(Certificate, KeyPair), CertError> {
    let mut params = CertificateParams::new(names).map_err(build_error(common_name))?;
    params.distinguished_name = subject(common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![match role {
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    let key = KeyPair::generate().map_err(build_error(common_name))?;
    let certificate = params
        .signed_by(&key, &ca.certificate, &ca.key)
        .map_err(build_error(common_name))?;
    Ok((certificate, key))
}

fn write_pair(
    dir: &Path,
    stem: &str,
    certificate: &Certificate,
    key: &KeyPair,
    overwrite: bool,
    written: &mut Vec<PathBuf>,
) -> Result<(), CertError> {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    write_file(&cert_path, certificate.pem().as_bytes(), 0o644, overwrite)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600, overwrite)?;
    written.push(cert_path);
    written.push(key_path);
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<(), CertError> {
    if !overwrite && path.exists() {
        return Err(CertError::Exists {
            path: path.to_owned(),
        });
    }
    let write_error = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(contents).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = CertsSpec {
            nodes: vec!["node1".into(), "node2".into()],
            ..CertsSpec::default()
        };
        let written = generate(dir.path(), &spec).expect("generate");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        for expected in [
            "ca.crt",
            "ca.key",
            "node1.default.hubble-grpc.cilium.io.crt",
            "node2.default.hubble-grpc.cilium.io.key",
            "relay-client.crt",
            "relay-server.key",
            "hubble-client.crt",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        let error = generate(dir.path(), &spec).expect_err("files exist");
        assert!(
            error.to_string().contains("ca.crt already exists"),
            "{error}"
        );
        let overwrite = CertsSpec {
            overwrite: true,
            ..spec
        };
        generate(dir.path(), &overwrite).expect("overwrite");
    }
}
