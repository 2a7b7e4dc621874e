//! Reading and writing the YAML config file.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;

use super::yaml;
use super::Value;

/// The config file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("config file undefined")]
    Undefined,
    #[error("configuration directory does not exist and cannot be created: {0}")]
    CreateDir(std::io::Error),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("While parsing config: {0}")]
    Parse(String),
    #[error("cannot write config file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn parse(text: &str) -> Result<BTreeMap<String, Value>, ConfigFileError> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigFileError::Parse(e.to_string()))?;
    match Value::from_yaml(&doc) {
        Value::Map(map) => Ok(map
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()),
        Value::Null => Ok(BTreeMap::new()),
        _ => Err(ConfigFileError::Parse(
            "the config file is not a YAML mapping".to_string(),
        )),
    }
}

/// The settings of the config file at `path`; a missing or broken file gives none, as
/// upstream ignores it.
pub fn read_settings(path: &str) -> Option<BTreeMap<String, Value>> {
    if path.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    parse(&text).ok()
}

/// Sets `key` to `value` in the config file at `path`, keeping its other keys, and
/// creates the file and its directory when they do not exist.
pub fn write_key(path: &str, key: &str, value: Value) -> Result<(), ConfigFileError> {
    write_keys(path, &[(key.to_string(), value)])
}

/// Sets several keys at once.
pub fn write_keys(path: &str, entries: &[(String, Value)]) -> Result<(), ConfigFileError> {
    if path.is_empty() {
        return Err(ConfigFileError::Undefined);
    }
    let file = Path::new(path);
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir).map_err(ConfigFileError::CreateDir)?;
    }
    let mut settings = match std::fs::read_to_string(file) {
        Ok(text) => parse(&text)?,
        Err(e) if e.kind() == ErrorKind::NotFound => BTreeMap::new(),
        Err(source) => {
            return Err(ConfigFileError::Read {
                path: path.to_string(),
                source,
            })
        }
    };
    for (key, value) in entries {
        settings.insert(key.clone(), value.clone());
    }
    let text = yaml::emit_mapping(&settings);
    std::fs::write(file, text).map_err(|source| ConfigFileError::Write {
        path: path.to_string(),
        source,
    })
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}
