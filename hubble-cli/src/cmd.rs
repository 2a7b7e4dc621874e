//! The subcommands.

use crate::config::Settings;

pub mod config;
pub mod list;
pub mod observe;
pub mod status;
pub mod version;
pub mod watch;

/// What every command gets: the resolved settings and the debug switch.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub settings: Settings,
    pub debug: bool,
}
