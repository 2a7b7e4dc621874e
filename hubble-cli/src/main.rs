//! The `hubble` binary.

fn main() -> std::process::ExitCode {
    hubble_cli::run()
}
