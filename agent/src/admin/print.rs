//! Printing admin responses as the `cilium` command prints them.

use std::fmt::Write as _;

use super::protocol::{EndpointRow, IdentityRow};
use super::tabwriter::align;

/// `Enabled` or `Disabled`, as in `cilium endpoint list`.
fn enforcement(enabled: bool) -> &'static str {
    if enabled {
        "Enabled"
    } else {
        "Disabled"
    }
}

/// The `endpoint list` table: Cilium's columns, one label per line.
pub fn format_endpoint_list(rows: &[EndpointRow]) -> String {
    let mut rows: Vec<&EndpointRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.id);
    let mut text = String::new();
    text.push_str("ENDPOINT\tPOLICY (ingress)\tPOLICY (egress)\tIDENTITY\tLABELS (source:key[=value])\tIPv6\tIPv4\tSTATUS\t\n");
    text.push_str("\tENFORCEMENT\tENFORCEMENT\t\t\t\t\t\n");
    for row in rows {
        let mut labels: Vec<&str> = row.labels.iter().map(String::as_str).collect();
        labels.sort_unstable();
        if labels.is_empty() {
            labels.push("no labels");
        }
        for (i, label) in labels.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(
                    text,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t",
                    row.id,
                    enforcement(row.ingress_enforced),
                    enforcement(row.egress_enforced),
                    row.identity,
                    label,
                    row.ipv6,
                    row.ipv4,
                    row.status
                );
            } else {
                let _ = writeln!(text, "\t\t\t\t{label}\t\t\t\t");
            }
        }
        // L7 redirects under the labels, as `<id>:<direction>:<PROTO>:<port> => proxy port`.
        for (redirect, port) in &row.proxy_redirects {
            let _ = writeln!(text, "\t\t\t\tproxy-redirect {redirect} => {port}\t\t\t\t");
        }
    }
    align(&text, 5, 3)
}

/// The `identity list` table.
pub fn format_identity_list(rows: &[IdentityRow]) -> String {
    let mut rows: Vec<&IdentityRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.id);
    let mut text = String::from("ID\tLABELS\n");
    for row in rows {
        for (i, label) in row.labels.iter().enumerate() {
            if i == 0 {
                let _ = writeln!(text, "{}\t{label}", row.id);
            } else {
                let _ = writeln!(text, "\t{label}");
            }
        }
    }
    align(&text, 2, 3)
}

/// The `policy get` output: the rules, then the revision.
pub fn format_policy_get(rules_json: &str, revision: u64) -> String {
    format!("{rules_json}\nRevision: {revision}\n")
}

/// The output of `policy import` and `policy delete`.
pub fn format_revision(revision: u64) -> String {
    format!("Revision: {revision}\n")
}
