//! `hubble`, the command line client of Hubble: observe flows (from a server, a relay
//! or a file), server status, nodes and namespaces, configuration and peers, with the
//! flags, semantics and output of upstream Cilium's `hubble` v1.19.
//!
//! The binary (`src/main.rs`) only calls [`run`]. Modules: [`cli`] (flags),
//! [`config`] (settings precedence), [`filters`] (filter flags to FlowFilters),
//! [`printer`] (all output formats), [`conn`] (connections), [`cmd`] (subcommands),
//! [`portforward`] (`hubble port-forward` and `-P`).

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

pub mod cli;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod filters;
pub mod fuzzing;
pub mod jsonindent;
pub use proto::names;
pub mod portforward;
pub mod printer;
pub mod quote;
pub mod time;
pub mod tui;
pub mod usage;

use cli::{Cli, Command};
use cmd::Context;

/// Parses the command line, runs the command and returns the exit status (1 on error,
/// usage errors included, with the error on standard error).
pub fn run() -> ExitCode {
    let cli = match usage::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.version {
        print!("{}", cmd::version::short_version());
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_long_help();
        return ExitCode::SUCCESS;
    };
    if let Err(e) = config::validate_duration_flags(&cli.server) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let settings = config::Settings::load(&cli.global, &cli.server);
    let debug = settings.get_bool("debug");
    let mut ctx = Context { settings, debug };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&command, &mut ctx)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Output cut short by a closed pipe (`hubble observe | head`) is not an error, as
/// upstream dies quietly of SIGPIPE there.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn dispatch(command: &Command, ctx: &mut Context) -> anyhow::Result<()> {
    if let Command::Config(args) = command {
        let help = Cli::command()
            .find_subcommand_mut("config")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        return cmd::config::run(args.command.as_ref(), ctx, &help);
    }
    // Like upstream's persistent pre-run: server flags are checked for every command
    // but `config`, which must work with a broken configuration.
    conn::ConnOptions::from_settings(&ctx.settings)?;
    let _port_forward = portforward::start_for_command(command, &mut ctx.settings).await?;
    match command {
        Command::Config(_) => Ok(()),
        Command::List { command } => cmd::list::run(command, ctx).await,
        Command::Observe(observe) if observe.command.is_none() && observe.flows.tui => {
            tui::run(&observe.flows, ctx).await
        }
        Command::Observe(observe) => cmd::observe::run(observe, ctx).await,
        Command::PortForward(args) => portforward::run(args, &ctx.settings).await,
        Command::Tui(args) => tui::run(args, ctx).await,
        Command::Status(args) => cmd::status::run(args, ctx).await,
        Command::Version => {
            println!("{}", cmd::version::long_version());
            Ok(())
        }
        Command::Watch { command } => match command {
            cli::WatchCommand::Peers => cmd::watch::run_peers(ctx).await,
        },
    }
}
