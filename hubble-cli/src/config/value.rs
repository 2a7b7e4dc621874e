//! A setting's value and the conversions viper applies when a typed getter reads it.

use std::collections::BTreeMap;

use crate::time::parse_duration;

/// A setting value: from a flag (typed as the flag prints it), an environment
/// variable (a string) or the config file (whatever YAML decoded).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A list of strings (string-slice flags).
    List(Vec<String>),
    /// A YAML sequence of any values.
    Seq(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Converts a decoded YAML value.
    pub fn from_yaml(v: &serde_yaml::Value) -> Self {
        match v {
            serde_yaml::Value::Null => Value::Null,
            serde_yaml::Value::Bool(b) => Value::Bool(*b),
            serde_yaml::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or_default()),
            },
            serde_yaml::Value::String(s) => Value::Str(s.clone()),
            serde_yaml::Value::Sequence(seq) => {
                Value::Seq(seq.iter().map(Value::from_yaml).collect())
            }
            serde_yaml::Value::Mapping(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (Value::from_yaml(k).to_go_string(), Value::from_yaml(v)))
                    .collect(),
            ),
            serde_yaml::Value::Tagged(t) => Value::from_yaml(&t.value),
        }
    }

    /// viper's `GetString` (spf13/cast `ToString`).
    pub fn to_go_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            _ => String::new(),
        }
    }

    /// viper's `GetBool`: unparsable values are false.
    pub fn to_go_bool(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Str(s) => crate::filters::go_bool(s).unwrap_or(false),
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            _ => false,
        }
    }

    /// viper's `GetDuration` in nanoseconds: a string with a unit is a Go duration, a
    /// bare number counts nanoseconds.
    pub fn to_go_duration(&self) -> Option<i64> {
        match self {
            Value::Str(s) => {
                if s.contains(['n', 's', 'u', '\u{b5}', 'm', 'h']) {
                    parse_duration(s).ok()
                } else {
                    parse_duration(&format!("{s}ns")).ok()
                }
            }
            Value::Int(i) => Some(*i),
            Value::Float(f) => Some(*f as i64),
            _ => None,
        }
    }

    /// viper's `GetStringSlice`: a string is split on white space.
    pub fn to_go_string_slice(&self) -> Vec<String> {
        match self {
            Value::List(items) => items.clone(),
            Value::Seq(items) => items.iter().map(Value::to_go_string).collect(),
            Value::Str(s) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }
}
