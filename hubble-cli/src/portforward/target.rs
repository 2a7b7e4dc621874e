//! Port-forward targets (`ssh://[user@]host[:port]`, `tcp://host:port`,
//! `kubectl://[namespace/]service[:port]`) and relay addresses (`HOST:PORT`), parsed up
//! front so that a bad value stops the command with a message naming it.

use std::fmt;

use super::PortForwardError;

/// Where the relay is, as seen from the target, when nothing says otherwise: the
/// relay's own default (`:4245`) on the machine that ssh reaches.
pub const DEFAULT_RELAY_ADDRESS: &str = "127.0.0.1:4245";
/// Upstream's Kubernetes defaults: the `hubble-relay` service in `--kube-namespace`, on
/// the first port of the service as the Helm chart defines it.
pub const DEFAULT_KUBE_SERVICE: &str = "hubble-relay";
pub const DEFAULT_KUBE_SERVICE_PORT: u16 = 80;

const EXPECTED: &str =
    "expected ssh://[user@]host[:port], tcp://host:port or kubectl://[namespace/]service";

/// How a connection reaches the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Through the system's ssh client (`ssh -W relay`).
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    /// Straight to the relay.
    Tcp { host: String, port: u16 },
    /// Through `kubectl port-forward service/<service> :<port>`.
    Kubectl {
        namespace: Option<String>,
        service: String,
        port: u16,
    },
}

/// A `HOST:PORT` address of the relay, as the target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAddress {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", bracketed(&self.host), self.port)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                f.write_str(&bracketed(host))?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
            Target::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracketed(host)),
            Target::Kubectl {
                namespace,
                service,
                port,
            } => {
                f.write_str("kubectl://")?;
                if let Some(ns) = namespace {
                    write!(f, "{ns}/")?;
                }
                write!(f, "{service}")?;
                if *port != DEFAULT_KUBE_SERVICE_PORT {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
        }
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl Target {
    /// Parses a target, naming the bad value and what would be valid on error.
    pub fn parse(value: &str) -> Result<Self, PortForwardError> {
        let bad = |reason: String| PortForwardError::BadTarget {
            value: value.to_string(),
            reason,
        };
        let Some((scheme, rest)) = value.split_once("://") else {
            return Err(bad(format!("no scheme; {EXPECTED}")));
        };
        match scheme {
            "ssh" => {
                let (user, hostport) = match rest.rsplit_once('@') {
                    Some((user, hostport)) => (Some(user), hostport),
                    None => (None, rest),
                };
                if let Some(user) = user {
                    check_user(user).map_err(bad)?;
                }
                let (host, port) = split_host_port(hostport, false).map_err(bad)?;
                Ok(Target::Ssh {
                    user: user.map(str::to_string),
                    host,
                    port,
                })
            }
            "tcp" => {
                let (host, port) = split_host_port(rest, true).map_err(bad)?;
                let port = port.ok_or_else(|| bad("a port is required".to_string()))?;
                Ok(Target::Tcp { host, port })
            }
            "kubectl" => {
                let (namespace, service) = match rest.split_once('/') {
                    Some((ns, svc)) => (Some(ns), svc),
                    None => (None, rest),
                };
                let (service, port) = match service.rsplit_once(':') {
                    Some((svc, port)) => (svc, Some(parse_port(port).map_err(bad)?)),
                    None => (service, None),
                };
                if let Some(ns) = namespace {
                    check_dns_label("namespace", ns).map_err(bad)?;
                }
                let service = if service.is_empty() {
                    DEFAULT_KUBE_SERVICE
                } else {
                    check_dns_label("service", service).map_err(bad)?;
                    service
                };
                Ok(Target::Kubectl {
                    namespace: namespace.map(str::to_string),
                    service: service.to_string(),
                    port: port.unwrap_or(DEFAULT_KUBE_SERVICE_PORT),
                })
            }
            other => Err(bad(format!("unknown scheme {other:?}; {EXPECTED}"))),
        }
    }
}

impl RelayAddress {
    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6).
    pub fn parse(value: &str) -> Result<Self, PortForwardError> {
        let bad = |reason: String| PortForwardError::BadRelayAddress {
            value: value.to_string(),
            reason,
        };
        let (host, port) = split_host_port(value, false).map_err(bad)?;
        let port = port.ok_or_else(|| bad("expected HOST:PORT".to_string()))?;
        Ok(Self { host, port })
    }
}

/// Splits `host[:port]` / `[v6][:port]`, refusing paths, empty hosts and hosts that
/// would read as command-line options.
fn split_host_port(value: &str, port_required: bool) -> Result<(String, Option<u16>), String> {
    if value.contains(['/', '?', '#', ' ']) {
        return Err("expected only host[:port] after the scheme".to_string());
    }
    let (host, port) = if let Some(inner) = value.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| "missing ']' after an IPv6 address".to_string())?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after ']'")),
            },
        }
    } else {
        match value.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. [::1]:4245".to_string())
            }
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".to_string());
    }
    if host.starts_with('-') {
        return Err(format!("host {host:?} cannot start with '-'"));
    }
    let port = port.map(parse_port).transpose()?;
    if port_required && port.is_none() {
        return Err("a port is required".to_string());
    }
    Ok((host.to_string(), port))
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(format!("invalid port {port:?} (expected 1-65535)")),
    }
}

fn check_user(user: &str) -> Result<(), String> {
    let ok = !user.is_empty()
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid user name {user:?}"))
    }
}

fn check_dns_label(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {name:?} (lower-case letters, digits and '-')"
        ))
    }
}
