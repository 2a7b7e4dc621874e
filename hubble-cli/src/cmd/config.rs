//! `hubble config view|get|set|reset`.

use std::io::{self, Write};

use super::Context;
use crate::cli::ConfigCommand;
use crate::config::{self, yaml, Kind, Settings, Value};
use crate::time::{format_duration, parse_duration};

pub fn run(command: Option<&ConfigCommand>, ctx: &Context, help: &str) -> anyhow::Result<()> {
    let text = match command {
        None => help.to_string(),
        Some(ConfigCommand::View) => view(&ctx.settings),
        Some(ConfigCommand::Get { args }) => match args.as_slice() {
            [] => view(&ctx.settings),
            [key] => get(&ctx.settings, key)?,
            _ => anyhow::bail!(
                "invalid arguments: get requires exactly 0 or 1 argument: got '{}'",
                args.join(" ")
            ),
        },
        Some(ConfigCommand::Set { args }) => {
            match args.as_slice() {
                [key] => set(&ctx.settings, key, "")?,
                [key, value] => set(&ctx.settings, key, value)?,
                _ => anyhow::bail!(
                    "invalid arguments: set requires exactly 1 or 2 argument(s): got '{}'",
                    args.join(" ")
                ),
            }
            String::new()
        }
        Some(ConfigCommand::Reset { args }) => {
            match args.as_slice() {
                [] => reset(&ctx.settings)?,
                [key] => set(&ctx.settings, key, "")?,
                _ => anyhow::bail!(
                    "invalid arguments: resset requires exactly 0 or 1 argument: got '{}'",
                    args.join(" ")
                ),
            }
            String::new()
        }
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The merged settings as YAML.
pub fn view(settings: &Settings) -> String {
    yaml::emit_mapping(&settings.all_settings())
}

fn bound_kind(settings: &Settings, key: &str) -> anyhow::Result<Kind> {
    if !settings.all_keys().iter().any(|k| k == key) {
        anyhow::bail!("unknown key: {key}");
    }
    config::kind_of(key).ok_or_else(|| anyhow::anyhow!("key={key} not bound to a flag"))
}

/// One setting as YAML.
pub fn get(settings: &Settings, key: &str) -> anyhow::Result<String> {
    let value = match bound_kind(settings, key)? {
        Kind::Bool => Value::Bool(settings.get_bool(key)),
        Kind::Duration => Value::Str(format_duration(settings.get_duration(key))),
        Kind::Str => Value::Str(settings.get_string(key)),
        Kind::StringSlice => Value::List(settings.get_string_slice(key)),
        Kind::Uint16 => settings.get(key),
    };
    Ok(yaml::emit_value(&value))
}

fn default_of(key: &str) -> String {
    if key == "config" {
        return config::default_config_file();
    }
    config::KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, d)| d.to_string())
        .unwrap_or_default()
}

/// Go's `encoding/csv` reading of one record.
fn csv_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("extraneous or missing \" in quoted-field".to_string()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous or missing \" in quoted-field".to_string()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return Err("bare \" in non-quoted-field".to_string()),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// Converts `raw` to the setting's type as upstream's `config set` does.
pub fn typed_value(key: &str, kind: Kind, value: &str) -> anyhow::Result<Value> {
    let raw = if value.is_empty() {
        default_of(key)
    } else {
        value.to_string()
    };
    let (type_name, parsed) = match kind {
        Kind::Bool => ("bool", crate::filters::go_bool(raw.trim()).map(Value::Bool)),
        Kind::Duration => {
            let text = if raw.contains(['n', 's', 'u', '\u{b5}', 'm', 'h']) {
                raw.clone()
            } else {
                format!("{raw}ns")
            };
            (
                "duration",
                parse_duration(&text)
                    .map(|ns| Value::Str(format_duration(ns)))
                    .map_err(|e| e.to_string()),
            )
        }
        Kind::Str => ("string", Ok(Value::Str(raw.clone()))),
        Kind::StringSlice => {
            let inner = raw.strip_prefix('[').unwrap_or(&raw);
            let inner = inner.strip_suffix(']').unwrap_or(inner);
            let list = if inner.is_empty() {
                Ok(Vec::new())
            } else {
                csv_record(inner).map_err(|e| format!("parse error on line 1, column 1: {e}"))
            };
            ("stringSlice", list.map(Value::List))
        }
        Kind::Uint16 => (
            "uint16",
            raw.trim()
                .parse::<u16>()
                .map(|p| Value::Int(i64::from(p)))
                .map_err(|_| format!("unable to cast {raw:?} of type string to uint16")),
        ),
    };
    parsed.map_err(|e| {
        anyhow::anyhow!("cannot assign value={value} for key={key}, expected type={type_name}: {e}")
    })
}

/// Writes one setting (its default when `value` is empty) to the config file.
pub fn set(settings: &Settings, key: &str, value: &str) -> anyhow::Result<()> {
    let kind = bound_kind(settings, key)?;
    let typed = typed_value(key, kind, value)?;
    config::write_key(&settings.config_path(), key, typed)?;
    Ok(())
}

/// Writes every setting's default to the config file.
pub fn reset(settings: &Settings) -> anyhow::Result<()> {
    for key in settings.all_keys() {
        set(settings, &key, "")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_like_go() {
        assert_eq!(csv_record("a,b"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(csv_record("\"a,b\",c"), Ok(vec!["a,b".into(), "c".into()]));
        assert_eq!(csv_record(" a"), Ok(vec![" a".into()]));
        assert!(csv_record("a\"b").is_err());
    }

    #[test]
    fn converts_values_like_upstream() {
        assert_eq!(
            typed_value("tls", Kind::Bool, "true").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            typed_value("tls", Kind::Bool, "").unwrap(),
            Value::Bool(false)
        );
        assert_eq!(
            typed_value("timeout", Kind::Duration, "90s").unwrap(),
            Value::Str("1m30s".into())
        );
        assert_eq!(
            typed_value("tls-ca-cert-files", Kind::StringSlice, "[a.pem,b.pem]").unwrap(),
            Value::List(vec!["a.pem".into(), "b.pem".into()])
        );
        let err = typed_value("tls", Kind::Bool, "maybe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot assign value=maybe for key=tls, expected type=bool: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
    }
}
