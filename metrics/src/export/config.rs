//! Exporter configuration: one [`ExporterConfig`] per flow log, from the agent's flags
//! or from a dynamic YAML file in upstream's format.

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use proto::flow::FlowFilter;
use serde::Deserialize;

use crate::error::ExportError;

/// Upstream's default size of a flow log file before it rotates, in megabytes.
pub const DEFAULT_FILE_MAX_SIZE_MB: u64 = 10;
/// Upstream's default number of rotated files kept.
pub const DEFAULT_FILE_MAX_BACKUPS: usize = 5;
/// The file path that means "write to standard output".
pub const STDOUT_PATH: &str = "stdout";

/// One flow log: where it goes, which flows and which of their fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterConfig {
    pub name: String,
    /// A file, or `stdout`.
    pub file_path: PathBuf,
    /// Flow fields to keep (`source.namespace`, `verdict`); empty keeps everything.
    pub field_mask: Vec<String>,
    pub include_filters: Vec<FlowFilter>,
    pub exclude_filters: Vec<FlowFilter>,
    /// Size at which the file rotates, in bytes.
    pub file_max_size_bytes: u64,
    pub file_max_backups: usize,
    pub file_compress: bool,
    /// After this instant the exporter writes nothing.
    pub end: Option<DateTime<Utc>>,
}

impl ExporterConfig {
    /// A flow log named `name` writing every flow to `file_path`, with upstream's
    /// defaults for rotation.
    pub fn new(name: impl Into<String>, file_path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            file_path: file_path.into(),
            field_mask: Vec::new(),
            include_filters: Vec::new(),
            exclude_filters: Vec::new(),
            file_max_size_bytes: DEFAULT_FILE_MAX_SIZE_MB * 1024 * 1024,
            file_max_backups: DEFAULT_FILE_MAX_BACKUPS,
            file_compress: false,
            end: None,
        }
    }

    /// Whether the exporter should still write at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.end.is_none_or(|end| end > now)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDynamicConfig {
    #[serde(default)]
    flow_logs: Vec<Option<RawFlowLog>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFlowLog {
    #[serde(default)]
    name: String,
    #[serde(default)]
    file_path: String,
    #[serde(default)]
    field_mask: Vec<String>,
    #[serde(default)]
    include_filters: Vec<FlowFilter>,
    #[serde(default)]
    exclude_filters: Vec<FlowFilter>,
    #[serde(default)]
    file_max_size_mb: u64,
    #[serde(default)]
    file_max_backups: usize,
    #[serde(default)]
    file_compress: bool,
    #[serde(default)]
    end: Option<String>,
}

/// Parses a dynamic exporters file (`flowLogs: [...]`) and validates it as upstream
/// does: every flow log needs a unique `name` and a unique `filePath`.
pub fn parse_dynamic_config(yaml: &str) -> Result<Vec<ExporterConfig>, ExportError> {
    let raw: RawDynamicConfig = if yaml.trim().is_empty() {
        RawDynamicConfig {
            flow_logs: Vec::new(),
        }
    } else {
        serde_yaml::from_str(yaml).map_err(|e| ExportError::ParseConfig(e.to_string()))?
    };
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    let mut configs = Vec::new();
    for (index, entry) in raw.flow_logs.into_iter().enumerate() {
        let Some(entry) = entry else {
            errors.push(format!("invalid flowlog at index {index}"));
            continue;
        };
        if entry.name.is_empty() {
            errors.push(format!("flowlog at index {index}: name is required"));
        } else if !names.insert(entry.name.clone()) {
            errors.push(format!("duplicated flowlog name {}", entry.name));
        }
        if entry.file_path.is_empty() {
            errors.push(format!("flowlog at index {index}: filePath is required"));
        } else if !paths.insert(entry.file_path.clone()) {
            errors.push(format!("duplicated flowlog path {}", entry.file_path));
        }
        let end = match entry.end.as_deref() {
            None | Some("") => None,
            Some(text) => match DateTime::parse_from_rfc3339(text) {
                Ok(time) => Some(time.with_timezone(&Utc)),
                Err(e) => {
                    errors.push(
                        ExportError::EndTime {
                            name: entry.name.clone(),
                            value: text.to_owned(),
                            reason: e.to_string(),
                        }
                        .to_string(),
                    );
                    None
                }
            },
        };
        let mut config = ExporterConfig::new(entry.name, entry.file_path);
        config.field_mask = entry.field_mask;
        config.include_filters = entry.include_filters;
        config.exclude_filters = entry.exclude_filters;
        if entry.file_max_size_mb > 0 {
            config.file_max_size_bytes = entry.file_max_size_mb * 1024 * 1024;
        }
        if entry.file_max_backups > 0 {
            config.file_max_backups = entry.file_max_backups;
        }
        config.file_compress = entry.file_compress;
        config.end = end;
        configs.push(config);
    }
    if errors.is_empty() {
        Ok(configs)
    } else {
        Err(ExportError::ParseConfig(errors.join("; ")))
    }
}

/// Parses FlowFilters given as upstream's export flags take them: JSON objects
/// separated by whitespace (`{"source_pod":["default/"]} {"verdict":["DROPPED"]}`);
/// a JSON list of objects is accepted as well. Field names may be proto names or
/// camelCase.
pub fn parse_flow_filters(text: &str) -> Result<Vec<FlowFilter>, ExportError> {
    let error = |reason: String| ExportError::Filter {
        text: text.to_owned(),
        reason,
    };
    let mut filters = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| error(e.to_string()))?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            if !item.is_object() {
                return Err(error(format!("expected a JSON object, found {item}")));
            }
            let filter: FlowFilter =
                serde_json::from_value(item).map_err(|e| error(e.to_string()))?;
            filters.push(filter);
        }
    }
    Ok(filters)
}
