//! Runs one `hubble-lab` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::summary::print_summary;
use super::{Cli, Command, NodeCommand, RequestCommand, ServeCommand};
use crate::dns_server::Records;
use crate::{cluster, dns, down, network, request, status, traffic, up, LabError};

/// Runs the command `cli` names; its exit code on success.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    let mut stdout = std::io::stdout();
    match cli.command {
        Command::Up(args) => {
            let config = args.into_config(&global, self_exe()?);
            match up::up(&config, &mut stdout) {
                Ok(state) => {
                    print_summary(&state);
                    Ok(ExitCode::SUCCESS)
                }
                Err(error @ (LabError::NotRoot(_) | LabError::AlreadyUp(_))) => Err(error.into()),
                Err(error) => {
                    let state_file = crate::paths::RunLayout::new(&global.run_dir).state_file();
                    let hint = if state_file.exists() {
                        format!(
                            "; what was created so far is listed in {}: run `hubble-lab down` to remove it",
                            state_file.display()
                        )
                    } else {
                        String::new()
                    };
                    Err(anyhow::anyhow!("{error}{hint}"))
                }
            }
        }
        Command::Traffic { count } => {
            traffic::traffic(&global.run_dir, &self_exe()?, count, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec { pod, command } => {
            crate::exec::exec(&global.run_dir, &pod, &command)?;
            Ok(ExitCode::FAILURE)
        }
        Command::Status => {
            let exists = status::status(&global.run_dir, &mut stdout)?;
            Ok(if exists {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Down => {
            let report = down::down(&global.run_dir, &mut stdout)?;
            let found = report.found;
            down::into_result(
                report,
                &crate::paths::RunLayout::new(&global.run_dir).state_file(),
            )?;
            if found {
                println!("hubble-lab: lab removed");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Node(NodeCommand::Add) => {
            cluster::add_node(&global.run_dir, &self_exe()?, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop { target, kill } => {
            cluster::stop(&global.run_dir, &target.target(), kill, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Start { target } => {
            cluster::start(&global.run_dir, &target.target(), &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Request(request) => run_request(request),
        Command::Serve(ServeCommand::Deathstar { listen }) => {
            crate::deathstar::serve(listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(ServeCommand::Dns {
            listen,
            record,
            cname,
        }) => {
            let mut records = Records::default();
            for spec in &record {
                records.insert_spec(spec)?;
            }
            for spec in &cname {
                records.insert_alias_spec(spec)?;
            }
            crate::dns_server::serve(listen, &records)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(ServeCommand::Internet { listen }) => {
            crate::internet::serve(listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sysctl { settings } => {
            network::write_sysctls(&settings)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_request(command: RequestCommand) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        RequestCommand::Http {
            method,
            url,
            connect_timeout_ms,
            max_time_ms,
        } => request::http_request(
            &method,
            &url,
            Duration::from_millis(connect_timeout_ms),
            Duration::from_millis(max_time_ms),
        ),
        RequestCommand::Dns {
            server,
            name,
            r#type,
            timeout_ms,
        } => {
            let qtype = dns_query_type(&r#type)?;
            request::dns_request(server, &name, qtype, Duration::from_millis(timeout_ms))
        }
    };
    println!(
        "{}",
        serde_json::to_string(&outcome).context("encoding the outcome")?
    );
    Ok(match outcome {
        request::Outcome::Failed { exit_code, .. } => {
            ExitCode::from(u8::try_from(exit_code).unwrap_or(1))
        }
        _ => ExitCode::SUCCESS,
    })
}

/// The query type `request dns --type` names (A or AAAA, any case).
pub(super) fn dns_query_type(text: &str) -> anyhow::Result<dns::RecordType> {
    match text.to_ascii_uppercase().as_str() {
        "A" => Ok(dns::RecordType::A),
        "AAAA" => Ok(dns::RecordType::AAAA),
        other => anyhow::bail!("unsupported DNS query type {other:?}: use A or AAAA"),
    }
}

fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the path of hubble-lab itself")
}
