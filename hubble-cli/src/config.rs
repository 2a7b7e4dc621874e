//! Global settings with upstream's precedence: command-line flag, then `HUBBLE_*`
//! environment variable, then the YAML config file (`~/.config/hubble/config.yaml` by
//! default), then the default value. Keys are the flag names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cli::{GlobalArgs, ServerArgs};
use crate::time::{format_duration, parse_duration};

mod file;
mod value;
pub mod yaml;

pub use file::{write_key, ConfigFileError};
pub use value::Value;

/// Help text of `hubble config`.
pub const CONFIG_LONG_HELP: &str =
    "Config allows to modify or view the hubble configuration. Global hubble options
can be set via flags, environment variables or a configuration file. The
following precedence order is used:

1. Flag
2. Environment variable
3. Configuration file
4. Default value

The \"config view\" subcommand provides a merged view of the configuration. The
\"config set\" and \"config reset\" subcommand modify values in the configuration
file.

Environment variable names start with HUBBLE_ followed by the flag name
capitalized where eventual dashes ('-') are replaced by underscores ('_').
For example, the environment variable that corresponds to the \"--server\" flag
is HUBBLE_SERVER. The environment variable for \"--tls-allow-insecure\" is
HUBBLE_TLS_ALLOW_INSECURE and so on.";

/// The type of a setting, as the flag behind it is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Duration,
    Str,
    StringSlice,
    Uint16,
}

/// Default Hubble server address.
pub const DEFAULT_SERVER: &str = "localhost:4245";

/// Every global setting: name, type, default (as the flag prints it).
pub const KEYS: &[(&str, Kind, &str)] = &[
    ("basic-auth-password", Kind::Str, ""),
    ("basic-auth-username", Kind::Str, ""),
    ("config", Kind::Str, ""),
    ("debug", Kind::Bool, "false"),
    ("kube-context", Kind::Str, ""),
    ("kube-namespace", Kind::Str, "kube-system"),
    ("kubeconfig", Kind::Str, ""),
    ("port-forward", Kind::Bool, "false"),
    ("port-forward-port", Kind::Uint16, "4245"),
    ("port-forward-relay-address", Kind::Str, ""),
    ("port-forward-target", Kind::Str, ""),
    ("request-timeout", Kind::Duration, "12s"),
    ("server", Kind::Str, DEFAULT_SERVER),
    ("timeout", Kind::Duration, "5s"),
    ("tls", Kind::Bool, "false"),
    ("tls-allow-insecure", Kind::Bool, "false"),
    ("tls-ca-cert-files", Kind::StringSlice, "[]"),
    ("tls-client-cert-file", Kind::Str, ""),
    ("tls-client-key-file", Kind::Str, ""),
    ("tls-server-name", Kind::Str, ""),
];

/// The kind of `key`, when it is a known setting.
pub fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, kind, _)| *kind)
}

/// The default config file: `$XDG_CONFIG_HOME/hubble/config.yaml`, else
/// `$HOME/.config/hubble/config.yaml`, else `$HOME/.hubble/config.yaml`.
pub fn default_config_file() -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let config_dir = match env("XDG_CONFIG_HOME") {
        Some(dir) if dir.starts_with('/') => Some(PathBuf::from(dir)),
        Some(_) => None,
        None => env("HOME").map(|home| PathBuf::from(home).join(".config")),
    };
    if let Some(dir) = config_dir {
        return dir.join("hubble").join("config.yaml").display().to_string();
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home)
            .join(".hubble")
            .join("config.yaml")
            .display()
            .to_string(),
        None => String::new(),
    }
}

/// Resolved settings of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Values given on the command line, already in the flag's printed form.
    flags: BTreeMap<String, Value>,
    /// `HUBBLE_*` environment variables, by key.
    env: BTreeMap<String, String>,
    /// Values of the config file, by lower-cased key.
    file: BTreeMap<String, Value>,
    /// Defaults of the keys that are not global settings (e.g. `allowlist`).
    extra_defaults: BTreeMap<String, (Kind, String)>,
}

impl Settings {
    /// Resolves settings from the parsed global flags, the environment and the config
    /// file that those select.
    pub fn load(global: &GlobalArgs, server: &ServerArgs) -> Self {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter_map(|(k, v)| {
                let key = k
                    .strip_prefix("HUBBLE_")?
                    .to_ascii_lowercase()
                    .replace('_', "-");
                Some((key, v))
            })
            .collect();
        Self::from_parts(flag_values(global, server), env)
    }

    /// Resolves settings from explicit flag values and environment (tests use this).
    pub fn from_parts(flags: BTreeMap<String, Value>, env: BTreeMap<String, String>) -> Self {
        let mut settings = Self {
            flags,
            env,
            ..Self::default()
        };
        let path = settings.config_path();
        settings.file = file::read_settings(&path).unwrap_or_default();
        settings
    }

    /// Adds a key with a default that is not a global setting (`allowlist`, ...).
    pub fn add_key(&mut self, key: &str, kind: Kind, default: &str) {
        self.extra_defaults
            .insert(key.to_string(), (kind, default.to_string()));
    }

    /// Sets a command-line value of a key added with [`Settings::add_key`].
    pub fn set_flag(&mut self, key: &str, value: Value) {
        self.flags.insert(key.to_string(), value);
    }

    /// The config file in use (`--config`, `HUBBLE_CONFIG` or the default).
    pub fn config_path(&self) -> String {
        if let Some(Value::Str(path)) = self.flags.get("config") {
            return path.clone();
        }
        if let Some(path) = self.env.get("config") {
            return path.clone();
        }
        default_config_file()
    }

    fn kind_and_default(&self, key: &str) -> Option<(Kind, String)> {
        if key == "config" {
            return Some((Kind::Str, default_config_file()));
        }
        KEYS.iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, kind, d)| (*kind, d.to_string()))
            .or_else(|| self.extra_defaults.get(key).cloned())
    }

    /// The value of `key` as `config view` shows it: typed like viper returns it from
    /// the source that wins.
    pub fn get(&self, key: &str) -> Value {
        if let Some(v) = self.flags.get(key) {
            return v.clone();
        }
        if let Some(v) = self.env.get(key) {
            return Value::Str(v.clone());
        }
        if let Some(v) = self.file.get(key) {
            return v.clone();
        }
        match self.kind_and_default(key) {
            Some((Kind::Bool, d)) => Value::Bool(d == "true"),
            Some((Kind::StringSlice, _)) => Value::List(Vec::new()),
            Some((_, d)) => Value::Str(d),
            None => Value::Null,
        }
    }

    /// Whether `key` was given (flag, environment or config file) rather than defaulted.
    pub fn is_set(&self, key: &str) -> bool {
        self.flags.contains_key(key) || self.env.contains_key(key) || self.file.contains_key(key)
    }

    pub fn get_string(&self, key: &str) -> String {
        self.get(key).to_go_string()
    }

    pub fn get_bool(&self, key: &str) -> bool {
        self.get(key).to_go_bool()
    }

    /// A duration in nanoseconds (zero when the value does not parse, as viper does).
    pub fn get_duration(&self, key: &str) -> i64 {
        self.get(key).to_go_duration().unwrap_or(0)
    }

    pub fn get_string_slice(&self, key: &str) -> Vec<String> {
        self.get(key).to_go_string_slice()
    }

    /// Every key: the global settings, added keys and the config file's keys.
    pub fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = KEYS.iter().map(|(k, _, _)| k.to_string()).collect();
        keys.extend(self.extra_defaults.keys().cloned());
        keys.extend(self.file.keys().cloned());
        keys.sort();
        keys.dedup();
        keys
    }

    /// Every key with its value, for `config view`.
    pub fn all_settings(&self) -> BTreeMap<String, Value> {
        self.all_keys()
            .into_iter()
            .map(|k| {
                let v = self.get(&k);
                (k, v)
            })
            .collect()
    }
}

/// The global flags given on the command line, in the form pflag prints them.
fn flag_values(global: &GlobalArgs, server: &ServerArgs) -> BTreeMap<String, Value> {
    let mut flags = BTreeMap::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            flags.insert(key.to_string(), value);
        }
    };
    let duration = |v: &Option<String>| {
        v.as_ref().map(|s| match parse_duration(s) {
            Ok(ns) => Value::Str(format_duration(ns)),
            Err(_) => Value::Str(s.clone()),
        })
    };
    put("config", global.config.clone().map(Value::Str));
    put("debug", global.debug.map(Value::Bool));
    put("server", server.server.clone().map(Value::Str));
    put("timeout", duration(&server.timeout));
    put("request-timeout", duration(&server.request_timeout));
    put("tls", server.tls.map(Value::Bool));
    put(
        "tls-allow-insecure",
        server.tls_allow_insecure.map(Value::Bool),
    );
    put(
        "tls-ca-cert-files",
        server.tls_ca_cert_files.clone().map(Value::List),
    );
    put(
        "tls-client-cert-file",
        server.tls_client_cert_file.clone().map(Value::Str),
    );
    put(
        "tls-client-key-file",
        server.tls_client_key_file.clone().map(Value::Str),
    );
    put(
        "tls-server-name",
        server.tls_server_name.clone().map(Value::Str),
    );
    put(
        "basic-auth-username",
        server.basic_auth_username.clone().map(Value::Str),
    );
    put(
        "basic-auth-password",
        server.basic_auth_password.clone().map(Value::Str),
    );
    put("port-forward", server.port_forward.map(Value::Bool));
    put(
        "port-forward-port",
        server.port_forward_port.map(|p| Value::Str(p.to_string())),
    );
    put("kube-context", server.kube_context.clone().map(Value::Str));
    put(
        "kube-namespace",
        server.kube_namespace.clone().map(Value::Str),
    );
    put("kubeconfig", server.kubeconfig.clone().map(Value::Str));
    flags
}

/// Checks duration flags up front, as pflag does when it parses them.
pub fn validate_duration_flags(server: &ServerArgs) -> Result<(), String> {
    for (name, value) in [
        ("timeout", &server.timeout),
        ("request-timeout", &server.request_timeout),
    ] {
        if let Some(v) = value {
            if let Err(e) = parse_duration(v) {
                return Err(format!(
                    "invalid argument {} for {} flag: {e}",
                    crate::quote::go_quote(v),
                    crate::quote::go_quote(&format!("--{name}"))
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
