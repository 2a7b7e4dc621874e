//! FQDN and node-name patterns (`*.cilium.io`, `cluster/node-*`) compiled to one regex.

use regex::Regex;

use super::FilterError;

/// What an unnamed part of a node-name pattern matches: any DNS-like name.
const ANY_NAME: &str = r"(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)";

fn push_name_pattern(out: &mut String, pattern: &str, whole: &str) -> Result<(), FilterError> {
    let invalid = |reason: String| FilterError::InvalidPattern {
        pattern: whole.to_string(),
        reason,
    };
    let canonical = pattern.trim();
    let canonical = canonical
        .strip_suffix('.')
        .unwrap_or(canonical)
        .to_lowercase();
    if canonical.is_empty() {
        return Err(invalid("empty pattern".into()));
    }
    if canonical.ends_with('.') {
        return Err(invalid("multiple trailing dots in pattern".into()));
    }
    for c in canonical.chars() {
        match c {
            '.' => out.push_str(r"\."),
            '*' => out.push_str("[-.0-9a-z]*"),
            '-' | '_' | '0'..='9' | 'a'..='z' => out.push(c),
            other => return Err(invalid(format!("{other:?}: invalid rune in pattern"))),
        }
    }
    Ok(())
}

/// Compiles FQDN patterns into one anchored regex.
pub fn compile_fqdn(patterns: &[String], size_limit: usize) -> Result<Regex, FilterError> {
    let mut re = String::from(r"\A(?:");
    for (i, pattern) in patterns.iter().enumerate() {
        if i > 0 {
            re.push('|');
        }
        push_name_pattern(&mut re, pattern, pattern)?;
    }
    re.push_str(r")\z");
    regex::RegexBuilder::new(&re)
        .size_limit(size_limit)
        .build()
        .map_err(|e| FilterError::InvalidPattern {
            pattern: patterns.join(","),
            reason: super::regex_error(&e, size_limit),
        })
}

/// Compiles node-name patterns (`[cluster/]node`) into one anchored regex that is
/// matched against `cluster/node`.
pub fn compile_node_names(patterns: &[String], size_limit: usize) -> Result<Regex, FilterError> {
    let mut re = String::from(r"\A(?:");
    for (i, pattern) in patterns.iter().enumerate() {
        if i > 0 {
            re.push('|');
        }
        if pattern.is_empty() {
            return Err(FilterError::InvalidPattern {
                pattern: pattern.clone(),
                reason: "empty pattern".into(),
            });
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        let (cluster, node) = match parts.as_slice() {
            [node] => ("", *node),
            [cluster, node] => (*cluster, *node),
            _ => {
                return Err(FilterError::InvalidPattern {
                    pattern: pattern.clone(),
                    reason: "too many slashes in pattern".into(),
                })
            }
        };
        for (j, part) in [cluster, node].iter().enumerate() {
            if j == 1 {
                re.push('/');
            }
            if part.is_empty() {
                re.push_str(ANY_NAME);
            } else {
                push_name_pattern(&mut re, part, pattern)?;
            }
        }
    }
    re.push_str(r")\z");
    regex::RegexBuilder::new(&re)
        .size_limit(size_limit)
        .build()
        .map_err(|e| FilterError::InvalidPattern {
            pattern: patterns.join(","),
            reason: super::regex_error(&e, size_limit),
        })
}
