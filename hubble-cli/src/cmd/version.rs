//! `hubble version` and `hubble --version`.

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Go's names for the machine architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The `hubble version` line.
pub fn long_version() -> String {
    format!(
        "hubble {VERSION} compiled with rust{} on {}/{}",
        env!("CARGO_PKG_RUST_VERSION"),
        std::env::consts::OS,
        arch()
    )
}

/// The `hubble --version` text (upstream ends it with CR LF).
pub fn short_version() -> String {
    format!("hubble {VERSION}\r\n")
}
