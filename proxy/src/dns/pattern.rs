//! CiliumNetworkPolicy DNS selectors (`matchName`, `matchPattern`) as one anchored
//! regular expression over lowercase fully qualified names (with the trailing dot).
//!
//! Cilium's semantics: `matchName` is one exact name, case-insensitive, with or
//! without the trailing dot. In `matchPattern`, `*` stands for any run of the
//! characters a DNS label may hold (`[-a-zA-Z0-9_]`, never a dot); a pattern of only
//! stars (`*`, `**.`) matches every name; a leading `**.` matches one or more whole
//! labels (`**.cilium.io` selects `a.cilium.io` and `a.b.cilium.io`, not `cilium.io`).

use regex::Regex;

/// Longest `matchName` or `matchPattern` accepted (Cilium's `MaxFQDNLength`).
pub const MAX_SELECTOR_LENGTH: usize = 255;

/// What a label character class matches.
const LABEL_CHARS: &str = "[-a-zA-Z0-9_]";

/// A selector that cannot be used, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid matchName {0:?}: only 0-9, a-z, A-Z and ., - and _ are allowed")]
    Name(String),
    #[error("invalid matchPattern {0:?}: only 0-9, a-z, A-Z and ., -, _ and * are allowed")]
    Pattern(String),
    #[error("{what} {value:?} is longer than {MAX_SELECTOR_LENGTH} characters")]
    TooLong { what: &'static str, value: String },
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("the DNS selectors do not compile: {0}")]
    Regex(String),
}

/// One selector of `rules.dns[]` or `toFQDNs[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    Pattern(String),
}

/// A name as selectors see it: lowercase with exactly one trailing dot.
pub fn canonical_name(name: &str) -> String {
    let mut name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    name.push('.');
    name
}

fn check_length(what: &'static str, value: &str) -> Result<(), SelectorError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(SelectorError::Empty { what });
    }
    if trimmed.len() > MAX_SELECTOR_LENGTH {
        return Err(SelectorError::TooLong {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The regular expression (without anchors) of one selector.
pub fn selector_regex(selector: &Selector) -> Result<String, SelectorError> {
    match selector {
        Selector::Name(name) => {
            check_length("matchName", name)?;
            let canonical = canonical_name(name);
            let body = &canonical[..canonical.len() - 1];
            if body.is_empty()
                || !body
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            {
                return Err(SelectorError::Name(name.clone()));
            }
            Ok(regex::escape(&canonical))
        }
        Selector::Pattern(pattern) => {
            check_length("matchPattern", pattern)?;
            let trimmed = pattern.trim().to_ascii_lowercase();
            if !trimmed
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'*'))
            {
                return Err(SelectorError::Pattern(pattern.clone()));
            }
            let stars_only = trimmed.trim_end_matches('.');
            if !stars_only.is_empty() && stars_only.bytes().all(|c| c == b'*') {
                // Every name (and the root).
                return Ok(format!(r"(?:{LABEL_CHARS}+\.)+|\."));
            }
            let canonical = canonical_name(&trimmed);
            let mut out = String::new();
            let mut rest = canonical.as_str();
            let leading = rest.bytes().take_while(|&c| c == b'*').count();
            if leading >= 2 && rest.as_bytes().get(leading) == Some(&b'.') {
                out.push_str(&format!(r"{LABEL_CHARS}+(?:\.{LABEL_CHARS}+)*\."));
                rest = &rest[leading + 1..];
            }
            let mut previous_star = false;
            for c in rest.chars() {
                match c {
                    '*' if previous_star => {}
                    '*' => out.push_str(&format!("{LABEL_CHARS}*")),
                    '.' => out.push_str(r"\."),
                    other => out.push(other),
                }
                previous_star = c == '*';
            }
            Ok(out)
        }
    }
}

/// Compiles selectors into one anchored regex; no selector matches nothing.
pub fn compile(selectors: &[Selector]) -> Result<Option<Regex>, SelectorError> {
    if selectors.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(selectors.len());
    for selector in selectors {
        parts.push(format!("(?:{})", selector_regex(selector)?));
    }
    let source = format!(r"\A(?:{})\z", parts.join("|"));
    Regex::new(&source)
        .map(Some)
        .map_err(|e| SelectorError::Regex(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(selector: Selector, name: &str) -> bool {
        compile(&[selector])
            .expect("compiles")
            .expect("a selector")
            .is_match(&canonical_name(name))
    }

    fn pattern(text: &str) -> Selector {
        Selector::Pattern(text.to_string())
    }

    #[test]
    fn match_name_is_exact_and_case_insensitive() {
        let name = || Selector::Name("API.github.com".to_string());
        assert!(matches(name(), "api.github.com"));
        assert!(matches(name(), "api.GitHub.com."));
        assert!(!matches(name(), "xapi.github.com"));
        assert!(!matches(name(), "api.github.com.evil"));
        // A dot in matchName is literal.
        assert!(!matches(Selector::Name("a.b".into()), "axb"));
    }

    #[test]
    fn star_stays_inside_one_label() {
        assert!(matches(pattern("*.cilium.io"), "docs.cilium.io"));
        assert!(!matches(pattern("*.cilium.io"), "a.b.cilium.io"));
        assert!(!matches(pattern("*.cilium.io"), "cilium.io"));
        assert!(matches(pattern("api-*.github.com"), "api-v3.github.com"));
        assert!(matches(pattern("sub*.cilium.io."), "sub.cilium.io"));
    }

    #[test]
    fn stars_alone_match_every_name() {
        for all in ["*", "**", "*.", "**."] {
            assert!(matches(pattern(all), "api.github.com"), "{all}");
            assert!(matches(pattern(all), "a.b.c.d"), "{all}");
        }
    }

    #[test]
    fn double_star_prefix_matches_subdomains_at_any_depth() {
        let sub = || pattern("**.cilium.io");
        assert!(matches(sub(), "a.cilium.io"));
        assert!(matches(sub(), "a.b.cilium.io"));
        assert!(!matches(sub(), "cilium.io"));
    }

    #[test]
    fn bad_selectors_are_named() {
        let error = compile(&[pattern("a+b.com")]).expect_err("plus");
        assert!(error.to_string().contains("a+b.com"), "{error}");
        let error = compile(&[Selector::Name("a*b.com".into())]).expect_err("star");
        assert!(error.to_string().contains("a*b.com"), "{error}");
        assert!(compile(&[Selector::Name(String::new())]).is_err());
        assert!(compile(&[pattern(&"a".repeat(256))]).is_err());
        assert!(compile(&[]).expect("empty").is_none());
    }
}
