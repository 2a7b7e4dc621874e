//! YAML output as upstream produces it (Go's yaml.v3 encoder): mappings sorted by key,
//! four-space indentation, block sequences, and each string in the plainest style that
//! reads back as the same string (plain, then single-quoted, then double-quoted).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Value;

/// Indentation of nested blocks.
const INDENT: usize = 4;

/// A mapping as a YAML document (`{}` when empty).
pub fn emit_mapping(map: &BTreeMap<String, Value>) -> String {
    let mut out = String::new();
    if map.is_empty() {
        out.push_str("{}\n");
        return out;
    }
    write_mapping(&mut out, map, 0);
    out
}

/// Any value as a YAML document.
pub fn emit_value(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Map(map) => return emit_mapping(map),
        Value::List(items) if !items.is_empty() => {
            for item in items {
                out.push_str("- ");
                write_string(&mut out, item);
                out.push('\n');
            }
        }
        Value::Seq(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        scalar => {
            write_inline(&mut out, scalar);
            out.push('\n');
        }
    }
    out
}

/// A list of strings as a YAML sequence under key `key` (for `--print-raw-filters`).
pub fn emit_string_lists(lists: &[(&str, &[String])]) -> String {
    let mut out = String::new();
    for (key, items) in lists.iter().filter(|(_, items)| !items.is_empty()) {
        write_string(&mut out, key);
        out.push_str(":\n");
        for item in items.iter() {
            push_indent(&mut out, INDENT);
            out.push_str("- ");
            write_string(&mut out, item);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("{}\n");
    }
    out
}

fn push_indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn write_mapping(out: &mut String, map: &BTreeMap<String, Value>, indent: usize) {
    for (key, value) in map {
        push_indent(out, indent);
        write_string(out, key);
        out.push(':');
        match value {
            Value::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_mapping(out, inner, indent + INDENT);
            }
            Value::List(items) if !items.is_empty() => {
                out.push('\n');
                let seq: Vec<Value> = items.iter().cloned().map(Value::Str).collect();
                write_sequence(out, &seq, indent + INDENT);
            }
            Value::Seq(items) if !items.is_empty() => {
                out.push('\n');
                write_sequence(out, items, indent + INDENT);
            }
            scalar => {
                out.push(' ');
                write_inline(out, scalar);
                out.push('\n');
            }
        }
    }
}

fn write_sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        push_indent(out, indent);
        out.push_str("- ");
        match item {
            Value::Map(inner) if !inner.is_empty() => {
                // The first key shares the dash's line.
                let mut nested = String::new();
                write_mapping(&mut nested, inner, indent + 2);
                out.push_str(nested.trim_start());
            }
            scalar => {
                write_inline(out, scalar);
                out.push('\n');
            }
        }
    }
}

fn write_inline(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => write_string(out, s),
        Value::List(_) | Value::Seq(_) => out.push_str("[]"),
        Value::Map(_) => out.push_str("{}"),
    }
}

fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str(".nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Writes a string scalar in the style yaml.v3 picks for it.
pub fn write_string(out: &mut String, s: &str) {
    if resolves_to_other_type(s) || s.contains('\n') {
        write_double_quoted(out, s);
    } else if plain_allowed(s) {
        out.push_str(s);
    } else if s.chars().all(|c| !c.is_control()) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        write_double_quoted(out, s);
    }
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether an unquoted `s` would read back as something other than a string (null,
/// boolean, number, timestamp, YAML 1.1 boolean or base-60 number).
fn resolves_to_other_type(s: &str) -> bool {
    const NULLS: &[&str] = &["", "~", "null", "Null", "NULL"];
    const BOOLS: &[&str] = &[
        "true", "True", "TRUE", "false", "False", "FALSE", "y", "Y", "yes", "Yes", "YES", "n", "N",
        "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
    ];
    const SPECIAL_FLOATS: &[&str] = &[
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN",
    ];
    if NULLS.contains(&s) || BOOLS.contains(&s) || SPECIAL_FLOATS.contains(&s) {
        return true;
    }
    is_number(s) || is_timestamp(s) || is_base60(s)
}

fn is_number(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let cleaned: String = body.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty() {
        return false;
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = cleaned.strip_prefix(prefix) {
            return !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
        }
    }
    if cleaned.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    // [0-9]+(\.[0-9]*)?|\.[0-9]+ with an optional exponent.
    let (mantissa, exponent) = match cleaned.find(['e', 'E']) {
        Some(i) => (&cleaned[..i], Some(&cleaned[i + 1..])),
        None => (cleaned.as_str(), None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match frac_part {
        Some(f) => digits(int_part) && digits(f) && !(int_part.is_empty() && f.is_empty()),
        None => !int_part.is_empty() && digits(int_part),
    };
    let exponent_ok = match exponent {
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
        None => true,
    };
    mantissa_ok && exponent_ok
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
        && (b.len() == 10 || matches!(b[10], b'T' | b't' | b' ' | b'\t'))
}

fn is_base60(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut parts = body.split(':');
    let Some(first) = parts.next() else {
        return false;
    };
    let rest: Vec<&str> = parts.collect();
    !rest.is_empty()
        && !first.is_empty()
        && first.chars().all(|c| c.is_ascii_digit() || c == '_')
        && !first.starts_with('0')
        && rest.iter().enumerate().all(|(i, p)| {
            let last = i + 1 == rest.len();
            let (int, frac) = match p.split_once('.') {
                Some((a, b)) if last => (a, b),
                _ => (*p, ""),
            };
            (1..=2).contains(&int.len())
                && int.chars().all(|c| c.is_ascii_digit())
                && int.as_bytes()[0] <= b'5'
                && frac.chars().all(|c| c.is_ascii_digit() || c == '_')
        })
}

/// The emitter's plain-scalar rules for block context.
fn plain_allowed(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_empty() || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if bytes[0] == b' ' || bytes[bytes.len() - 1] == b' ' {
        return false;
    }
    let followed_by_space = |i: usize| i + 1 >= bytes.len() || matches!(bytes[i + 1], b' ' | b'\t');
    for (i, &b) in bytes.iter().enumerate() {
        if i == 0 {
            match b {
                b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>'
                | b'\'' | b'"' | b'%' | b'@' | b'`' => return false,
                b'?' | b':' | b'-' if followed_by_space(i) => return false,
                _ => {}
            }
        } else {
            match b {
                b':' if followed_by_space(i) => return false,
                b'#' if matches!(bytes[i - 1], b' ' | b'\t') => return false,
                _ => {}
            }
        }
        if b == b'\t' || (b < 0x20) || b == 0x7f {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, v);
        out
    }

    #[test]
    fn picks_scalar_styles_like_yaml_v3() {
        assert_eq!(s("localhost:4245"), "localhost:4245");
        assert_eq!(s(""), "\"\"");
        assert_eq!(s("4245"), "\"4245\"");
        assert_eq!(s("true"), "\"true\"");
        assert_eq!(s("yes"), "\"yes\"");
        assert_eq!(s("5s"), "5s");
        assert_eq!(s("1.5"), "\"1.5\"");
        assert_eq!(s("2024-07-25"), "\"2024-07-25\"");
        assert_eq!(
            s("{\"source_pod\":[\"default/xwing\"]}"),
            "'{\"source_pod\":[\"default/xwing\"]}'"
        );
        assert_eq!(s("it's: here"), "'it''s: here'");
        assert_eq!(s("a\nb"), "\"a\\nb\"");
        assert_eq!(
            s("unix:///var/run/cilium/hubble.sock"),
            "unix:///var/run/cilium/hubble.sock"
        );
    }

    #[test]
    fn emits_sorted_block_mappings() {
        let mut map = BTreeMap::new();
        map.insert("tls".to_string(), Value::Bool(false));
        map.insert("server".to_string(), Value::Str("localhost:4245".into()));
        map.insert("tls-ca-cert-files".to_string(), Value::List(vec![]));
        map.insert(
            "allowlist".to_string(),
            Value::List(vec!["{\"verdict\":[\"DROPPED\"]}".into()]),
        );
        expect_test::expect![[r#"
            allowlist:
                - '{"verdict":["DROPPED"]}'
            server: localhost:4245
            tls: false
            tls-ca-cert-files: []
        "#]]
        .assert_eq(&emit_mapping(&map));
    }
}
