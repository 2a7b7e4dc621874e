//! Reaching a relay that this machine cannot reach directly: `hubble port-forward
//! TARGET` listens on `127.0.0.1` and carries each connection to the relay through the
//! target, and the global `-P/--port-forward` does the same for one command.
//!
//! Targets ([`target`]): `ssh://[user@]host[:port]` runs the system's ssh client, one
//! `ssh -W <relay-address>` process per connection ([`tunnel`]); ssh options come from
//! `HUBBLE_SSH_COMMAND` (a command line run by `sh`, as git's `GIT_SSH_COMMAND`) and
//! `--ssh-option`. `tcp://host:port` connects directly. `kubectl://[namespace/]service`
//! runs `kubectl port-forward` ([`kubectl`]). The relay address as seen from an ssh
//! target is `--relay-address` / `port-forward-relay-address`, else `127.0.0.1:4245`.
//!
//! Before saying the relay is available, one tunnel is opened and the relay must answer
//! it ([`tunnel::Tunnel::check`]); otherwise the command fails naming the target and
//! what ssh, kubectl or the connection said. Tunnels open at once are bounded
//! ([`MAX_TUNNELLED_CONNECTIONS`]); connections over the bound are refused and counted.

use std::net::{Ipv4Addr, SocketAddr};

use clap::Args;

use crate::cli::Command;
use crate::config::{Settings, Value};

mod kubectl;
mod listener;
mod target;
mod tunnel;

pub use kubectl::{find_on_path, KubeSettings};
pub use listener::{Forwarder, ForwarderConfig, MAX_TUNNELLED_CONNECTIONS};
pub use target::{RelayAddress, Target, DEFAULT_RELAY_ADDRESS};
pub use tunnel::{ssh_args, Dialer, SshProgram, TUNNEL_CHECK_TIMEOUT};

/// Setting (`HUBBLE_PORT_FORWARD_TARGET`) naming the target of `-P`.
pub const TARGET_KEY: &str = "port-forward-target";
/// Setting (`HUBBLE_PORT_FORWARD_RELAY_ADDRESS`) naming the relay as the target sees it.
pub const RELAY_ADDRESS_KEY: &str = "port-forward-relay-address";
/// The environment variable holding the ssh command line.
pub const SSH_COMMAND_ENV: &str = "HUBBLE_SSH_COMMAND";

/// Why a forwarder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error("invalid port-forward target {value:?}: {reason}")]
    BadTarget { value: String, reason: String },
    #[error("invalid relay address {value:?}: {reason}")]
    BadRelayAddress { value: String, reason: String },
    #[error("--relay-address does not apply to {target} (the relay address is part of tcp:// and kubectl:// targets)")]
    RelayAddressUnused { target: String },
    #[error("failed to port forward to {target}: kubectl is not on PATH (install kubectl, or give an ssh:// or tcp:// target; for -P through port-forward-target or HUBBLE_PORT_FORWARD_TARGET)")]
    KubectlMissing { target: String },
    #[error("invalid port-forward-port {value:?}: expected a port number (0-65535)")]
    BadLocalPort { value: String },
    #[error("failed to port forward: cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to port forward to {target}: {reason}")]
    Tunnel { target: String, reason: String },
}

/// `hubble port-forward`.
#[derive(Debug, Clone, Args)]
pub struct PortForwardArgs {
    /// Where the relay is reached from: ssh://[user@]host[:port], tcp://host:port or
    /// kubectl://[namespace/]service (default: the port-forward-target setting, else
    /// kubectl://<kube-namespace>/hubble-relay)
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
    /// Local port to listen on (127.0.0.1). 0 selects a random port.
    #[arg(long = "local-port", default_value_t = 4245, value_name = "uint16")]
    pub local_port: u16,
    /// Address of the relay as seen from an ssh target (default "127.0.0.1:4245")
    #[arg(long = "relay-address", value_name = "HOST:PORT")]
    pub relay_address: Option<String>,
    /// Option for ssh, passed as '-o OPTION' (repeatable), e.g. IdentityFile=/path/key
    #[arg(long = "ssh-option", value_name = "OPTION")]
    pub ssh_options: Vec<String>,
}

/// Everything a forwarder needs, resolved from flags, settings and environment.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub relay: RelayAddress,
    pub ssh: SshProgram,
    pub ssh_options: Vec<String>,
    pub kube: KubeSettings,
    pub listen: SocketAddr,
    pub report: bool,
}

impl Plan {
    /// Resolves the target (`target`, else `port-forward-target`, else upstream's
    /// `kubectl://<kube-namespace>/hubble-relay`) and the relay address
    /// (`relay_address`, else `port-forward-relay-address`, else the default).
    pub fn resolve(
        target: Option<&str>,
        relay_address: Option<&str>,
        settings: &Settings,
        local_port: u16,
    ) -> Result<Self, PortForwardError> {
        let kube = KubeSettings {
            context: settings.get_string("kube-context"),
            kubeconfig: settings.get_string("kubeconfig"),
            namespace: settings.get_string("kube-namespace"),
        };
        let configured = settings.get_string(TARGET_KEY);
        let text = match target {
            Some(t) => t.to_string(),
            None if !configured.is_empty() => configured,
            None => format!(
                "kubectl://{}/{}",
                kube.namespace,
                target::DEFAULT_KUBE_SERVICE
            ),
        };
        let mut target = Target::parse(&text)?;
        if let Target::Kubectl { namespace, .. } = &mut target {
            namespace.get_or_insert_with(|| kube.namespace.clone());
        }
        let configured_relay = settings.get_string(RELAY_ADDRESS_KEY);
        let relay_text = relay_address
            .map(str::to_string)
            .or_else(|| (!configured_relay.is_empty()).then_some(configured_relay));
        if relay_text.is_some() && !matches!(target, Target::Ssh { .. }) {
            return Err(PortForwardError::RelayAddressUnused {
                target: target.to_string(),
            });
        }
        let relay = RelayAddress::parse(relay_text.as_deref().unwrap_or(DEFAULT_RELAY_ADDRESS))?;
        Ok(Self {
            target,
            relay,
            ssh: SshProgram::from_env_value(std::env::var(SSH_COMMAND_ENV).ok()),
            ssh_options: Vec::new(),
            kube,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, local_port)),
            report: true,
        })
    }

    /// Starts the forwarder: kubectl first when the target needs it, then the listener
    /// and the check of one tunnel.
    pub async fn start(&self) -> Result<Forwarder, PortForwardError> {
        let name = self.target.to_string();
        let (dialer, kubectl) = match &self.target {
            Target::Tcp { host, port } => (
                Dialer::Tcp {
                    host: host.clone(),
                    port: *port,
                },
                None,
            ),
            Target::Ssh { .. } => (
                Dialer::Ssh {
                    program: self.ssh.clone(),
                    args: ssh_args(&self.target, &self.relay, &self.ssh_options),
                },
                None,
            ),
            Target::Kubectl { .. } => {
                let path = std::env::var_os("PATH");
                let kubectl = find_on_path("kubectl", path.as_deref()).ok_or_else(|| {
                    PortForwardError::KubectlMissing {
                        target: name.clone(),
                    }
                })?;
                let (forward, dialer) = kubectl::start(&kubectl, &self.target, &self.kube)
                    .await
                    .map_err(|reason| PortForwardError::Tunnel {
                        target: name.clone(),
                        reason,
                    })?;
                (dialer, Some(forward))
            }
        };
        let config = ForwarderConfig {
            target: name,
            listen: self.listen,
            max_connections: MAX_TUNNELLED_CONNECTIONS,
            report: self.report,
        };
        Forwarder::start(config, dialer, kubectl).await
    }
}

/// Runs `hubble port-forward` until interrupted.
pub async fn run(args: &PortForwardArgs, settings: &Settings) -> anyhow::Result<()> {
    let mut plan = Plan::resolve(
        args.target.as_deref(),
        args.relay_address.as_deref(),
        settings,
        args.local_port,
    )?;
    plan.ssh_options = args.ssh_options.clone();
    let forwarder = plan.start().await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "ℹ️  Hubble Relay is available at {}",
            forwarder.local_addr()
        )?;
        out.flush()?;
    }
    wait_for_stop().await;
    let refused = forwarder.refused();
    forwarder.shutdown().await;
    if refused > 0 {
        eprintln!(
            "port-forward: {refused} connection(s) refused over the limit of {MAX_TUNNELLED_CONNECTIONS}"
        );
    }
    Ok(())
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let ctrl_c = tokio::signal::ctrl_c();
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Whether `command` talks to a server, so that `-P` applies to it.
pub fn talks_to_server(command: &Command) -> bool {
    match command {
        Command::Config(_) | Command::Version | Command::PortForward(_) => false,
        Command::Observe(observe) => match &observe.command {
            None => observe.flows.other.input_file.is_none(),
            Some(crate::cli::ObserveSubcommand::Flows(flows)) => flows.other.input_file.is_none(),
            Some(_) => true,
        },
        _ => true,
    }
}

/// For `-P/--port-forward`: starts a forwarder on its own thread for the life of the
/// returned guard and points the `server` setting at it. Nothing when `-P` is off or the
/// command does not talk to a server.
pub async fn start_for_command(
    command: &Command,
    settings: &mut Settings,
) -> Result<Option<CommandForwarder>, PortForwardError> {
    if !settings.get_bool("port-forward") || !talks_to_server(command) {
        return Ok(None);
    }
    // Upstream's --port-forward-port when given; an ephemeral port otherwise, so that a
    // command never collides with a `hubble port-forward` already on 4245.
    let port = if settings.is_set("port-forward-port") {
        settings
            .get_string("port-forward-port")
            .parse::<u16>()
            .map_err(|_| PortForwardError::BadLocalPort {
                value: settings.get_string("port-forward-port"),
            })?
    } else {
        0
    };
    let mut plan = Plan::resolve(None, None, settings, port)?;
    plan.report = settings.get_bool("debug");
    let forwarder = CommandForwarder::start(plan).await?;
    settings.set_flag("server", Value::Str(forwarder.local_addr.to_string()));
    settings.set_flag("port-forward", Value::Bool(false));
    Ok(Some(forwarder))
}

/// A forwarder running on a thread of its own (so that it keeps pumping whatever the
/// command does on its own thread); stopped and joined when dropped.
pub struct CommandForwarder {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CommandForwarder {
    async fn start(plan: Plan) -> Result<Self, PortForwardError> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("port-forward".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(PortForwardError::Tunnel {
                            target: plan.target.to_string(),
                            reason: format!("cannot start a runtime: {e}"),
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match plan.start().await {
                        Ok(forwarder) => {
                            let _ = ready_tx.send(Ok(forwarder.local_addr()));
                            let _ = stop_rx.await;
                            forwarder.shutdown().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| PortForwardError::Tunnel {
                target: "port-forward".to_string(),
                reason: format!("cannot start a thread: {e}"),
            })?;
        let local_addr = match ready_rx.await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(PortForwardError::Tunnel {
                    target: "port-forward".to_string(),
                    reason: "the forwarder stopped while starting".to_string(),
                });
            }
        };
        Ok(Self {
            local_addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for CommandForwarder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
