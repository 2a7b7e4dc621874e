//! Limits on policy documents, checked before the text is deserialized.
//!
//! A policy document comes from an operator, but a wrong file (or a hostile
//! one) must not take the agent down. The deserializer (serde_yaml over
//! libyaml) reads the whole event stream before it builds anything, and
//! libyaml spends time quadratic in the flow nesting depth: 200,000 `[` took
//! 52 s to reject. Aliases are expanded as they are deserialized, so a few
//! KB of nested aliases become hundreds of MiB of rules. So every text first
//! goes through [`check_policy_text`]: a streaming pass over the YAML events
//! (yaml-rust2) that stops at the first limit crossed, before the deep part
//! or the expansion costs anything, and names the line.

use yaml_rust2::parser::{Event, Parser};

use super::PolicyError;

/// Largest policy document accepted, in bytes: the admin protocol's request
/// limit, since a document travels inside one request
/// ([`crate::admin::MAX_REQUEST_BYTES`]). Cilium's largest real policies are
/// a few hundred KB.
pub const MAX_POLICY_BYTES: usize = crate::admin::MAX_REQUEST_BYTES;

/// Deepest nesting of sequences and mappings accepted. A CiliumNetworkPolicy
/// nests about 12 levels (`specs[].ingress[].toPorts[].rules.http[]
/// .headerMatches[]...`); 64 leaves room for any real document and keeps
/// the parser's per-level work small. serde_yaml's own limit (128) is never
/// reached.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Most nodes (scalars, sequences, mappings) that aliases may add to a
/// text once expanded. Real policies use anchors for a shared port list or
/// selector, a few hundred nodes at most; 10,000 allows that many times
/// over, and bounds what an alias bomb can build (each node becomes a few
/// hundred bytes of rules).
pub const MAX_ALIAS_EXPANDED_NODES: usize = 10_000;

/// Checks size, nesting depth and alias expansion of a policy text. The
/// error names the limit, the value found and the line.
pub fn check_policy_text(text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::invalid(format!(
            "the policy document is {} bytes, more than the limit of {MAX_POLICY_BYTES} bytes",
            text.len()
        )));
    }
    let mut parser = Parser::new_from_str(text);
    let mut scan = Scan::default();
    loop {
        let (event, marker) = parser.next_token().map_err(scan_error)?;
        let line = marker.line();
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => scan.anchors.clear(),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if scan.open.len() == MAX_NESTING_DEPTH {
                    return Err(PolicyError::Invalid {
                        message: too_deep(line),
                        line: Some(line),
                    });
                }
                scan.open.push(Open { anchor, nodes: 1 });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = scan.open.pop() {
                    scan.close(open.anchor, open.nodes);
                }
            }
            Event::Scalar(_, _, anchor, _) => scan.close(anchor, 1),
            Event::Alias(anchor) => {
                let nodes = scan.anchors.get(&anchor).copied().unwrap_or(1);
                scan.aliased = scan.aliased.saturating_add(nodes);
                if scan.aliased > MAX_ALIAS_EXPANDED_NODES {
                    return Err(PolicyError::Invalid {
                        message: format!(
                            "line {line}: aliases expand to more than {MAX_ALIAS_EXPANDED_NODES} nodes"
                        ),
                        line: Some(line),
                    });
                }
                scan.add(nodes);
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
    }
}

/// A syntax error with its line. The scanner reads ahead of the events and
/// has its own nesting bound: that one is reported as ours.
fn scan_error(error: yaml_rust2::ScanError) -> PolicyError {
    let line = error.marker().line();
    let message = if error.info() == "recursion limit exceeded" {
        too_deep(line)
    } else {
        error.to_string()
    };
    PolicyError::Invalid {
        message,
        line: Some(line),
    }
}

fn too_deep(line: usize) -> String {
    format!("line {line}: the document nests deeper than {MAX_NESTING_DEPTH} levels")
}

/// State of the pass over one text.
#[derive(Default)]
struct Scan {
    /// Sequences and mappings not closed yet, outermost first.
    open: Vec<Open>,
    /// Expanded size (in nodes) of each anchor of the current document.
    anchors: std::collections::HashMap<usize, usize>,
    /// Nodes added by aliases so far.
    aliased: usize,
}

/// An open sequence or mapping: its anchor (0 for none) and its expanded
/// size so far, itself included.
struct Open {
    anchor: usize,
    nodes: usize,
}

impl Scan {
    /// A node of `nodes` expanded nodes is complete.
    fn close(&mut self, anchor: usize, nodes: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, nodes);
        }
        self.add(nodes);
    }

    fn add(&mut self, nodes: usize) {
        if let Some(parent) = self.open.last_mut() {
            parent.nodes = parent.nodes.saturating_add(nodes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> (String, Option<usize>) {
        match check_policy_text(text) {
            Err(PolicyError::Invalid { message, line }) => (message, line),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn accepts_real_documents() {
        let text = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: rule1\nspec:\n  endpointSelector:\n    matchLabels: {org: empire, class: deathstar}\n  ingress:\n  - fromEndpoints:\n    - matchLabels: {org: empire}\n    toPorts:\n    - ports: [{port: \"80\", protocol: TCP}]\n      rules:\n        http: [{method: POST, path: /v1/request-landing}]\n";
        assert_eq!(check_policy_text(text), Ok(()));
        let json = r#"[{"endpointSelector": {"matchLabels": {"a": "b"}}, "ingress": [{}]}]"#;
        assert_eq!(check_policy_text(json), Ok(()));
    }

    #[test]
    fn accepts_a_shared_anchor() {
        let text = "ports: &p [{port: \"80\"}, {port: \"443\"}]\na: *p\nb: *p\n";
        assert_eq!(check_policy_text(text), Ok(()));
    }

    #[test]
    fn refuses_deep_nesting_with_its_line() {
        let text = format!("spec:\n  x: {}", "[".repeat(200_000));
        let (message, line) = message(&text);
        assert_eq!(
            message, "line 2: the document nests deeper than 64 levels",
            "{message}"
        );
        assert_eq!(line, Some(2));
    }

    #[test]
    fn refuses_one_level_past_the_limit() {
        let fits = format!(
            "{}{}",
            "[".repeat(MAX_NESTING_DEPTH),
            "]".repeat(MAX_NESTING_DEPTH)
        );
        assert_eq!(check_policy_text(&fits), Ok(()));
        let deeper = format!("\n{}", "- ".repeat(MAX_NESTING_DEPTH + 1));
        assert_eq!(
            message(&deeper),
            (
                "line 2: the document nests deeper than 64 levels".to_string(),
                Some(2)
            )
        );
    }

    #[test]
    fn refuses_an_alias_bomb_with_its_line() {
        // Each level doubles: 2^30 nodes from a few hundred bytes.
        let mut text = String::from("a0: &a0 [x, x]\n");
        for i in 1..30 {
            let prev = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}]\n"));
        }
        let (message, line) = message(&text);
        assert!(
            message.ends_with("aliases expand to more than 10000 nodes"),
            "{message}"
        );
        // Level i adds 2 * (2^(i+1) - 1) nodes: 10,000 is passed on line 12.
        assert_eq!(line, Some(12));
    }

    #[test]
    fn refuses_an_oversized_document() {
        let text = "#".repeat(MAX_POLICY_BYTES + 1);
        let (message, line) = message(&text);
        assert_eq!(
            message,
            format!(
                "the policy document is {} bytes, more than the limit of {MAX_POLICY_BYTES} bytes",
                MAX_POLICY_BYTES + 1
            )
        );
        assert_eq!(line, None);
    }

    #[test]
    fn reports_syntax_errors_with_a_line() {
        let (message, line) = message("a: [b\nc: d\n");
        assert!(message.contains("line"), "{message}");
        assert!(line.is_some());
    }
}
