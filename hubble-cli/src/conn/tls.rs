//! TLS with rustls: custom CA files or the system's CA bundle, an optional client
//! certificate, the server name to verify, and upstream's insecure mode that skips
//! verification.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::ConnOptions;

/// CA bundles tried, in order, when no `--tls-ca-cert-files` are given.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot load cert '{path}': {e}"))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(format!(
            "cannot process cert '{path}': must be a PEM encoded certificate"
        ));
    }
    Ok(certs)
}

fn roots(opts: &ConnOptions) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if opts.tls_ca_cert_files.is_empty() {
        let from_env = std::env::var("SSL_CERT_FILE").ok();
        for path in from_env
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_CA_BUNDLES.iter().copied())
        {
            if let Ok(certs) = read_certs(path) {
                roots.add_parsable_certificates(certs);
                break;
            }
        }
        return Ok(roots);
    }
    for path in &opts.tls_ca_cert_files {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|_| {
                format!("cannot process cert '{path}': must be a PEM encoded certificate")
            })?;
        }
    }
    Ok(roots)
}

fn client_identity(
    opts: &ConnOptions,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
    if opts.tls_client_cert_file.is_empty() || opts.tls_client_key_file.is_empty() {
        return Ok(None);
    }
    let certs = read_certs(&opts.tls_client_cert_file)
        .map_err(|e| format!("tls: failed to load client certificate: {e}"))?;
    let key_path = &opts.tls_client_key_file;
    let pem = std::fs::read(key_path).map_err(|e| format!("open {key_path}: {e}"))?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("tls: failed to parse private key {key_path}: {e}"))?
        .ok_or_else(|| format!("tls: failed to find any PEM data in key input {key_path}"))?;
    Ok(Some((certs, key)))
}

/// Builds the client configuration for `opts`.
pub fn client_config(opts: &ConnOptions) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if opts.tls_allow_insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
    } else {
        builder.with_root_certificates(roots(opts)?)
    };
    let mut config = match client_identity(opts)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("tls: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Runs the TLS handshake over `stream`.
pub async fn handshake<S>(
    config: Arc<ClientConfig>,
    server_name: &str,
    stream: S,
) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid TLS server name {server_name:?}: {e}"),
        )
    })?;
    TlsConnector::from(config).connect(name, stream).await
}

/// `--tls-allow-insecure`: accepts any server certificate (signatures are still
/// checked so the handshake is well-formed).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
