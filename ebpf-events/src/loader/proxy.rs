//! Routing the L7 redirect needs in the node's network namespace.
//!
//! A packet the datapath assigns to a proxy socket (`bpf_sk_assign`) keeps its
//! original destination, which is not a local address; the kernel delivers it to
//! the assigned socket only if routing says "local". The datapath marks such
//! packets with [`mark::TO_PROXY`]; one policy routing rule sends that mark to a
//! table whose only route is `local default dev lo` (as Cilium's table 2005).
//! Replies from a backend to the proxy's transparent upstream socket carry the
//! same mark. No iptables rule is involved.

use std::process::Command;

use crate::constants::mark;

/// Routing table holding the local default route for marked packets.
pub const TO_PROXY_ROUTE_TABLE: u32 = 2005;
/// Priority of the rule that selects it (before the main table's 32766).
pub const TO_PROXY_RULE_PRIORITY: u32 = 9000;

/// A routing command that failed, with what `ip` said.
#[derive(Debug, thiserror::Error)]
#[error("installing the L7 redirect routes: `ip {command}` failed: {reason}")]
pub struct RouteError {
    /// The arguments given to `ip`.
    pub command: String,
    /// Its error output or the spawn error.
    pub reason: String,
}

/// Installs, for IPv4 and IPv6, the rule `fwmark TO_PROXY/MAGIC_HOST_MASK lookup
/// TO_PROXY_ROUTE_TABLE` and the route `local default dev lo` in that table, in the
/// calling thread's network namespace. Idempotent.
pub fn install_routes() -> Result<(), RouteError> {
    let fwmark = format!("{:#x}/{:#x}", mark::TO_PROXY, mark::MAGIC_HOST_MASK);
    let table = TO_PROXY_ROUTE_TABLE.to_string();
    let priority = TO_PROXY_RULE_PRIORITY.to_string();
    for family in ["-4", "-6"] {
        // Removing first keeps one rule however often this runs.
        let _ = ip(&[
            family, "rule", "del", "fwmark", &fwmark, "lookup", &table, "priority", &priority,
        ]);
        ip(&[
            family, "rule", "add", "fwmark", &fwmark, "lookup", &table, "priority", &priority,
        ])?;
        ip(&[
            family, "route", "replace", "local", "default", "dev", "lo", "table", &table,
        ])?;
    }
    Ok(())
}

/// Removes what [`install_routes`] added; missing pieces are fine.
pub fn remove_routes() {
    let fwmark = format!("{:#x}/{:#x}", mark::TO_PROXY, mark::MAGIC_HOST_MASK);
    let table = TO_PROXY_ROUTE_TABLE.to_string();
    let priority = TO_PROXY_RULE_PRIORITY.to_string();
    for family in ["-4", "-6"] {
        let _ = ip(&[
            family, "rule", "del", "fwmark", &fwmark, "lookup", &table, "priority", &priority,
        ]);
        let _ = ip(&[
            family, "route", "del", "local", "default", "dev", "lo", "table", &table,
        ]);
    }
}

fn ip(args: &[&str]) -> Result<(), RouteError> {
    let error = |reason: String| RouteError {
        command: args.join(" "),
        reason,
    };
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| error(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}
