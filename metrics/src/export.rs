//! Flow export to files, as upstream's exporter does it.
//!
//! Each line is one `observer.ExportEvent` in protojson with proto field names, as Go's
//! `json.Encoder` prints it: `{"flow":{...},"node_name":"...","time":"..."}`. Files
//! rotate by size, keeping a number of backups named like lumberjack's
//! (`<name>-<UTC time>.<ext>`, optionally gzipped). Include and exclude lists of
//! FlowFilters choose the flows; a field mask keeps only some fields.
//!
//! Several exporters can be declared in a YAML file in upstream's dynamic format
//! (`flowLogs: [{name, filePath, fieldMask, includeFilters, excludeFilters, end, ...}]`)
//! and reloaded on change. Each exporter runs on its own task behind a bounded queue;
//! a full queue drops the flow and counts it, a write error is logged and counted.

mod config;
mod exporter;
mod manager;
mod rotate;
mod watch;

pub use config::{
    parse_dynamic_config, parse_flow_filters, ExporterConfig, DEFAULT_FILE_MAX_BACKUPS,
    DEFAULT_FILE_MAX_SIZE_MB,
};
pub use exporter::{write_export_line, ExporterStats, EXPORT_QUEUE_CAPACITY};
pub use manager::ExportManager;
pub use rotate::{RotatingFile, RotationConfig};
pub use watch::{watch_config_file, CONFIG_POLL_INTERVAL};
