//! Errors of this crate, each naming the bad value and what would be valid.

use std::path::PathBuf;

/// A metrics configuration that cannot be used; start-up stops with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown metric {name:?}; valid metrics are: {valid}")]
    UnknownHandler { name: String, valid: String },
    #[error("metric {handler:?}: unknown option {option:?}; valid options are: {valid}")]
    UnknownOption {
        handler: String,
        option: String,
        valid: String,
    },
    #[error("metric {handler:?}: unknown context {value:?} in option {option}; valid contexts are: {valid}")]
    UnknownContext {
        handler: String,
        option: String,
        value: String,
        valid: String,
    },
    #[error(
        "metric {handler:?}: invalid labelsContext value {value:?}; valid labels are: {valid}"
    )]
    UnknownLabel {
        handler: String,
        value: String,
        valid: String,
    },
    #[error("metric {first:?} conflicts with metric {second:?}: enable only one of them")]
    Conflict { first: String, second: String },
    #[error("metric specification {0:?} has an empty metric name")]
    EmptyName(String),
}

/// A flow export configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read exporter configuration {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid exporter configuration: {0}")]
    ParseConfig(String),
    #[error("invalid flow filter {text:?}: {reason}")]
    Filter { text: String, reason: String },
    #[error(transparent)]
    FieldMask(#[from] proto::fieldmask::FieldMaskError),
    #[error("invalid end time {value:?} of flow log {name:?}: {reason}")]
    EndTime {
        name: String,
        value: String,
        reason: String,
    },
    #[error("flow log {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}
