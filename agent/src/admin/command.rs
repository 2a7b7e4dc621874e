//! The `hubble-agent endpoint|policy|identity` subcommands.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::client::request;
use super::print::{
    format_endpoint_list, format_identity_list, format_policy_get, format_revision,
};
use super::protocol::{AdminRequest, AdminResponse, DeleteRequest};
use super::service::{format_service_json, format_service_list, ServiceCommand, ServiceOutput};
use super::AdminError;
use crate::policy::MAX_POLICY_BYTES;

/// Commands that talk to a running agent over its admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AdminCommand {
    /// Manage endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Manage security policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage security identities.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Manage services & loadbalancers.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Manage the FQDN proxy's names.
    #[command(subcommand)]
    Fqdn(super::fqdn::FqdnCommand),
}

/// `endpoint` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum EndpointCommand {
    /// List all endpoints.
    #[command(alias = "ls")]
    List,
}

/// `policy` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum PolicyCommand {
    /// Import a CiliumNetworkPolicy (YAML or JSON) or a JSON rule list; `-` reads stdin.
    Import {
        /// The policy file.
        file: PathBuf,
    },
    /// Print the rules in force and the revision.
    Get,
    /// Delete rules: all of them, a policy by name, or rules by labels.
    Delete {
        /// Delete every rule.
        #[arg(long, conflicts_with_all = ["target", "namespace"])]
        all: bool,
        /// Namespace of the named policy (any namespace when omitted).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// A policy name, or labels (`source:key=value`) the rules must all carry.
        #[arg(required_unless_present = "all")]
        target: Vec<String>,
    },
}

/// `identity` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum IdentityCommand {
    /// List identities.
    #[command(alias = "ls")]
    List,
}

/// What a command prints: its output and warnings for stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Text for stdout.
    pub stdout: String,
    /// Lines for stderr.
    pub warnings: Vec<String>,
}

/// Runs a command against the agent at `socket` and prints its output.
pub async fn run_admin_command(command: AdminCommand, socket: &Path) -> anyhow::Result<()> {
    let output = execute_admin_command(&command, socket).await?;
    for warning in &output.warnings {
        eprintln!("Warning: {warning}");
    }
    print!("{}", output.stdout);
    Ok(())
}

/// Runs a command against the agent at `socket` and returns what it prints.
pub async fn execute_admin_command(
    command: &AdminCommand,
    socket: &Path,
) -> Result<CommandOutput, AdminError> {
    let admin_request = to_request(command)?;
    let response = request(socket, &admin_request).await?;
    let output = |stdout: String| CommandOutput {
        stdout,
        warnings: Vec::new(),
    };
    Ok(match response {
        AdminResponse::Endpoints { endpoints } => output(format_endpoint_list(&endpoints)),
        AdminResponse::Identities { identities } => output(format_identity_list(&identities)),
        AdminResponse::Policy {
            rules_json,
            revision,
        } => output(format_policy_get(&rules_json, revision)),
        AdminResponse::Imported { revision, warnings } => CommandOutput {
            stdout: format_revision(revision),
            warnings,
        },
        AdminResponse::Deleted { revision } => output(format_revision(revision)),
        AdminResponse::Services { services } => match command {
            AdminCommand::Service(ServiceCommand::List {
                output: Some(ServiceOutput::Json),
            }) => output(format_service_json(&services)),
            _ => output(format_service_list(&services)),
        },
        AdminResponse::ServiceUpdated {
            id,
            created,
            backends,
            warnings,
        } => {
            let verb = if created {
                "Creating new"
            } else {
                "Updating existing"
            };
            let done = if created { "Added" } else { "Updated" };
            CommandOutput {
                stdout: format!(
                    "{verb} service with id '{id}'\n{done} service with {backends} backends\n"
                ),
                warnings,
            }
        }
        AdminResponse::BackendStatesUpdated { backends, warnings } => CommandOutput {
            stdout: format!("Updated the state of {backends} backends\n"),
            warnings,
        },
        AdminResponse::ServicesDeleted { ids } => output(
            ids.iter()
                .map(|id| format!("Service {id} deleted successfully\n"))
                .collect(),
        ),
        AdminResponse::FqdnCache { entries } => output(super::fqdn::format_fqdn_cache(&entries)),
        AdminResponse::Error { message } => return Err(AdminError::Agent(message)),
    })
}

fn to_request(command: &AdminCommand) -> Result<AdminRequest, AdminError> {
    Ok(match command {
        AdminCommand::Endpoint(EndpointCommand::List) => AdminRequest::EndpointList,
        AdminCommand::Identity(IdentityCommand::List) => AdminRequest::IdentityList,
        AdminCommand::Policy(PolicyCommand::Get) => AdminRequest::PolicyGet,
        AdminCommand::Service(service) => super::service::to_request(service)?,
        AdminCommand::Fqdn(fqdn) => super::fqdn::to_request(fqdn),
        AdminCommand::Policy(PolicyCommand::Import { file }) => AdminRequest::PolicyImport {
            text: read_policy_file(file)?,
        },
        AdminCommand::Policy(PolicyCommand::Delete {
            all,
            namespace,
            target,
        }) => AdminRequest::PolicyDelete {
            selector: delete_request(*all, namespace.clone(), target)?,
        },
    })
}

fn delete_request(
    all: bool,
    namespace: Option<String>,
    target: &[String],
) -> Result<DeleteRequest, AdminError> {
    if all {
        return Ok(DeleteRequest::All);
    }
    match target {
        [name] if !name.contains('=') && !name.contains(':') => Ok(DeleteRequest::Name {
            name: name.clone(),
            namespace,
        }),
        labels if labels.iter().all(|l| l.contains('=') || l.contains(':')) && namespace.is_none() => {
            Ok(DeleteRequest::Labels(labels.to_vec()))
        }
        _ => Err(AdminError::Usage(
            "policy delete takes --all, one policy name (with -n NAMESPACE), or labels like k8s:app=web".to_string(),
        )),
    }
}

/// Reads a policy file (or stdin), refusing one over the agent's limit
/// before sending it. At most one byte past the limit is read.
fn read_policy_file(file: &Path) -> Result<String, AdminError> {
    let io = |e: std::io::Error| AdminError::Io {
        path: file.display().to_string(),
        message: e.to_string(),
    };
    let limit = u64::try_from(MAX_POLICY_BYTES).unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    if file == Path::new("-") {
        std::io::stdin()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        let mut opened = std::fs::File::open(file).map_err(io)?;
        if let Ok(meta) = opened.metadata() {
            if meta.is_file() && meta.len() > limit {
                return Err(too_large(file, &meta.len().to_string()));
            }
        }
        (&mut opened)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(too_large(file, &format!("more than {MAX_POLICY_BYTES}")));
    }
    String::from_utf8(bytes).map_err(|e| AdminError::Io {
        path: file.display().to_string(),
        message: format!("not UTF-8 text: {e}"),
    })
}

fn too_large(file: &Path, size: &str) -> AdminError {
    AdminError::Usage(format!(
        "{}: {size} bytes; the agent accepts policy documents up to {MAX_POLICY_BYTES} bytes",
        file.display()
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn parse(args: &[&str]) -> Result<AdminCommand, String> {
        Cli::try_parse_from(std::iter::once("hubble-agent").chain(args.iter().copied()))
            .map(|cli| cli.command)
            .map_err(|e| e.kind().to_string())
    }

    #[test]
    fn parses_the_subcommands() {
        assert_eq!(
            parse(&["endpoint", "list"]),
            Ok(AdminCommand::Endpoint(EndpointCommand::List))
        );
        assert_eq!(
            parse(&["endpoint", "ls"]),
            Ok(AdminCommand::Endpoint(EndpointCommand::List))
        );
        assert_eq!(
            parse(&["identity", "list"]),
            Ok(AdminCommand::Identity(IdentityCommand::List))
        );
        assert_eq!(
            parse(&["policy", "get"]),
            Ok(AdminCommand::Policy(PolicyCommand::Get))
        );
        assert_eq!(
            parse(&["policy", "import", "rule1.yaml"]),
            Ok(AdminCommand::Policy(PolicyCommand::Import {
                file: "rule1.yaml".into()
            }))
        );
        assert_eq!(
            parse(&["policy", "delete", "--all"]),
            Ok(AdminCommand::Policy(PolicyCommand::Delete {
                all: true,
                namespace: None,
                target: vec![]
            }))
        );
        assert_eq!(
            parse(&["policy", "delete", "rule1", "-n", "default"]),
            Ok(AdminCommand::Policy(PolicyCommand::Delete {
                all: false,
                namespace: Some("default".into()),
                target: vec!["rule1".into()],
            }))
        );
        assert!(parse(&["policy", "delete"]).is_err());
        assert!(parse(&["policy", "delete", "--all", "rule1"]).is_err());
        assert!(parse(&["policy", "frobnicate"]).is_err());
    }

    #[test]
    fn delete_targets() {
        assert_eq!(delete_request(true, None, &[]), Ok(DeleteRequest::All));
        assert_eq!(
            delete_request(false, None, &["k8s:app=web".into(), "team=a".into()]),
            Ok(DeleteRequest::Labels(vec![
                "k8s:app=web".into(),
                "team=a".into()
            ]))
        );
        assert!(delete_request(false, None, &["a".into(), "b".into()]).is_err());
    }
}
