//! Parsing the command line as upstream's cobra/pflag does at the edges: every flag
//! that takes a value takes the next argument whatever it looks like (`--last -1`
//! reaches the value check and is reported there), and a usage error exits with 1 and
//! pflag's wording (`unknown flag: --foo`), not clap's exit code 2.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// Lets every value-taking flag of `cmd` and its subcommands take a value starting
/// with `-`, as pflag does.
fn hyphen_values(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        if arg.get_action().takes_values() && !arg.is_positional() {
            arg.allow_hyphen_values(true)
        } else {
            arg
        }
    })
    .mut_subcommands(hyphen_values)
}

/// The command line definition `hubble` parses with.
pub fn command() -> Command {
    hyphen_values(Cli::command())
}

fn context_string(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

/// The message upstream prints for a usage error, where pflag or cobra has one.
fn upstream_message(err: &clap::Error) -> Option<String> {
    match err.kind() {
        ErrorKind::UnknownArgument => {
            let arg = context_string(err, ContextKind::InvalidArg)?;
            let name = arg.split('=').next().unwrap_or(&arg);
            Some(if let Some(long) = name.strip_prefix("--") {
                format!("unknown flag: --{long}")
            } else if let Some(short) = name.strip_prefix('-').and_then(|s| s.chars().next()) {
                format!("unknown shorthand flag: '{short}' in {name}")
            } else {
                return None;
            })
        }
        ErrorKind::InvalidSubcommand => {
            let name = context_string(err, ContextKind::InvalidSubcommand)?;
            Some(format!("unknown command {name:?} for \"hubble\""))
        }
        _ => None,
    }
}

/// Parses `args`. On `--help` prints the help and returns success; on a usage error
/// prints it and returns exit code 1, as upstream does.
pub fn parse<I, T>(args: I) -> Result<Cli, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let parsed = command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(err) => match err.kind() {
            // A command that needs a subcommand prints its help and succeeds, as cobra.
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = err.print();
                Err(ExitCode::SUCCESS)
            }
            _ => {
                match upstream_message(&err) {
                    Some(message) => eprintln!("{message}"),
                    None => {
                        let _ = err.print();
                    }
                }
                Err(ExitCode::FAILURE)
            }
        },
    }
}
