//! Admin API of the agent: a Unix socket (`--admin-socket`, default
//! `/var/run/hubble-rs/agent.sock`, mode 0660) speaking newline-delimited
//! JSON, the server side over [`AgentState`](crate::state::AgentState), and
//! the client side behind `hubble-agent endpoint list`, `policy import FILE`,
//! `policy get`, `policy delete [--all | NAME | LABELS]`, `identity list`,
//! `service list|update|delete` and `fqdn cache list`, which print what the `cilium` command prints.

mod client;
mod command;
mod fqdn;
mod print;
mod protocol;
mod server;
mod service;
mod tabwriter;

pub use client::request;
pub use command::{
    execute_admin_command, run_admin_command, AdminCommand, CommandOutput, EndpointCommand,
    IdentityCommand, PolicyCommand,
};
pub use fqdn::{format_fqdn_cache, FqdnCacheCommand, FqdnCommand};
pub use print::{format_endpoint_list, format_identity_list, format_policy_get, format_revision};
pub use protocol::{
    AdminRequest, AdminResponse, DeleteRequest, EndpointRow, IdentityRow, MAX_REQUEST_BYTES,
};
pub use server::{
    bind_admin_socket, handle_request, serve_admin, AdminStats, ADMIN_SOCKET_MODE,
    DEFAULT_ADMIN_SOCKET, MAX_ADMIN_CONNECTIONS,
};
pub use service::{
    format_service_json, format_service_list, ServiceCommand, ServiceOutput, ServiceUpdate,
};
pub use tabwriter::align;

/// Errors of the admin client and server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The agent's socket could not be reached.
    #[error("cannot connect to the agent at {path}: {message} (is hubble-agent running? see --admin-socket)")]
    Connect {
        /// The socket path.
        path: String,
        /// The system error.
        message: String,
    },
    /// Reading or writing a file or socket failed.
    #[error("{path}: {message}")]
    Io {
        /// The file or socket.
        path: String,
        /// The system error.
        message: String,
    },
    /// The other side spoke something else.
    #[error("admin protocol: {0}")]
    Protocol(String),
    /// The agent refused the request.
    #[error("{0}")]
    Agent(String),
    /// The command line is not usable.
    #[error("{0}")]
    Usage(String),
}
