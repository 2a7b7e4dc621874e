//! `hubble-lab`: creates, exercises and removes the Star Wars demo.

use std::process::ExitCode;

use clap::Parser;
use lab::cli::{run, Cli};
use lab::LabError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            if matches!(error.downcast_ref::<LabError>(), Some(LabError::NotRoot(_))) {
                eprintln!("{error}");
            } else {
                eprintln!("hubble-lab: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}
