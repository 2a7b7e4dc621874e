//! The relay's errors, and their mapping to gRPC statuses (in one place: every
//! status the relay builds is a [`RequestError`]).

use std::path::PathBuf;

/// Why the relay could not start or reach something.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A peer or peer-service address cannot be parsed.
    #[error("invalid address {address:?}: {reason} (expected host:port, ip, or unix:///path)")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A listen address cannot be parsed.
    #[error(
        "invalid listen address {address:?}: expected [host]:port such as :4245 or 127.0.0.1:4245"
    )]
    InvalidListenAddress {
        /// The address as given.
        address: String,
    },
    /// Listening failed.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    TlsFile {
        /// Which file (certificate, key, CA bundle).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Neither TLS towards the agents nor `--disable-client-tls` was asked for.
    #[error("no client TLS config is set: pass --tls-hubble-server-ca-files (and --tls-hubble-client-cert-file, --tls-hubble-client-key-file for mTLS) or --disable-client-tls")]
    NoClientTls,
    /// Neither a server certificate nor `--disable-server-tls` was given.
    #[error("no server TLS config is set: pass --tls-relay-server-cert-file and --tls-relay-server-key-file, or --disable-server-tls")]
    NoServerTls,
    /// The TLS settings are incomplete or inconsistent.
    #[error("invalid TLS settings: {0}")]
    TlsSettings(String),
    /// A gRPC connection could not be made.
    #[error("cannot connect to {address}: {message}")]
    Connect {
        /// The peer's address.
        address: String,
        /// The transport's error, with its causes.
        message: String,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Why the relay answers a call with an error status. Every status the relay builds
/// itself comes from here ([`From<RequestError> for tonic::Status`]); a node's own
/// statuses pass through as they are.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A filter of the request is invalid (the nodes would refuse it).
    #[error("{0}")]
    InvalidFilter(String),
    /// The task checking the request's filters did not finish.
    #[error("checking the request's filters: {0}")]
    CheckTask(String),
    /// A node's connection is not ready for a call.
    #[error("connection not ready: {0}")]
    NotReady(String),
    /// A node's response does not decode.
    #[error("malformed GetFlowsResponse from a node: {0}")]
    MalformedResponse(String),
    /// A response the relay made cannot be encoded.
    #[error("encoding a response: {0}")]
    Encode(String),
    /// A method the relay does not serve (as upstream's relay).
    #[error("{0} not yet implemented")]
    Unimplemented(&'static str),
    /// A node did not answer a unary call in time.
    #[error("node did not answer in time")]
    NodeTimeout,
    /// Mutual TLS is on and the client presented no certificate.
    #[error("client certificate required: this relay serves only clients that present a certificate signed by its client CA (see --tls-relay-client-ca-files)")]
    ClientCertificateRequired,
}

impl From<RequestError> for tonic::Status {
    fn from(error: RequestError) -> tonic::Status {
        let message = error.to_string();
        match error {
            RequestError::InvalidFilter(_) => tonic::Status::invalid_argument(message),
            RequestError::CheckTask(_)
            | RequestError::MalformedResponse(_)
            | RequestError::Encode(_) => tonic::Status::internal(message),
            RequestError::NotReady(_) => tonic::Status::unavailable(message),
            RequestError::Unimplemented(_) => tonic::Status::unimplemented(message),
            RequestError::NodeTimeout => tonic::Status::deadline_exceeded(message),
            RequestError::ClientCertificateRequired => tonic::Status::unauthenticated(message),
        }
    }
}

/// Formats an error with its chain of causes (shared by every client of the API).
pub use proto::transport::error_chain;

/// Whether a failed node call means the node (or the connection to it) is gone, as opposed
/// to the node refusing the request.
pub fn is_connection_failure(status: &tonic::Status) -> bool {
    use tonic::Code;
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::Cancelled
    )
}

/// The message shown to clients for a node's failure: the status message, with the
/// transport's causes when the status carries them.
pub fn status_message(status: &tonic::Status) -> String {
    use std::error::Error;
    proto::transport::with_causes(status.message().to_string(), status.source())
}

/// A request the relay refuses before fanning it out (a filter the nodes would refuse).
pub fn invalid_request(error: &proto::filter::FilterError) -> tonic::Status {
    RequestError::InvalidFilter(error.to_string()).into()
}

/// What a client reads when a node's GetFlows fails: what happened, in plain words.
/// A lost or refused connection names the node and its most concrete cause (the
/// innermost error, e.g. `broken pipe`), not the transport's layers (`transport error:
/// h2 protocol error: ...`); a refusal by the node itself (a bad filter, say) is the
/// node's own message.
pub fn node_failure_message(node: &str, status: &tonic::Status, streaming: bool) -> String {
    if !is_connection_failure(status) {
        return status_message(status);
    }
    use std::error::Error;
    let mut cause = status.message().to_string();
    let mut source = status.source();
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if streaming {
        format!("connection to {node} lost: {cause}")
    } else {
        format!("cannot reach {node}: {cause}")
    }
}

/// Refuses a request that came without a client certificate when mutual TLS is on.
// The shape is tonic's interceptor signature.
#[allow(clippy::result_large_err)]
pub fn require_client_certificate(
    request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    match request.peer_certs() {
        Some(certificates) if !certificates.is_empty() => Ok(request),
        _ => Err(RequestError::ClientCertificateRequired.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a cause, as hyper and h2 nest them.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn lost_connection_names_the_node_and_the_innermost_cause() {
        let chain = Layer(
            "h2 protocol error: error reading a body from connection",
            Some(Box::new(Layer("broken pipe", None))),
        );
        let mut status = tonic::Status::unavailable("transport error");
        status.set_source(std::sync::Arc::new(chain));
        assert_eq!(
            node_failure_message("node2", &status, true),
            "connection to node2 lost: broken pipe"
        );
        assert_eq!(
            node_failure_message("node2", &status, false),
            "cannot reach node2: broken pipe"
        );
    }

    #[test]
    fn a_refusal_by_the_node_keeps_its_message() {
        let status = tonic::Status::invalid_argument("invalid regex \"(\" in http_path");
        assert_eq!(
            node_failure_message("node2", &status, true),
            "invalid regex \"(\" in http_path"
        );
    }
}
