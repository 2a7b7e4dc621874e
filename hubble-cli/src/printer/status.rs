//! `hubble status`: the server status in every format.

use std::fmt::Write as _;
use std::io::{self, Write};

use proto::observer::ServerStatusResponse;

use super::{Output, Printer};
use crate::time::format_duration;

/// Formats `n` with a comma every three digits (`4,095`).
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An uptime in nanoseconds as a Go duration (`5m1.515181665s`).
fn format_uptime(ns: u64) -> String {
    match i64::try_from(ns) {
        Ok(ns) => format_duration(ns),
        Err(_) => format!("{ns}ns"),
    }
}

impl<W: Write, E: Write> Printer<W, E> {
    /// Prints a server status response.
    pub fn write_server_status(&mut self, res: &ServerStatusResponse) -> io::Result<()> {
        let connected = res.num_connected_nodes.as_ref().map(|v| v.value);
        let unavailable = res.num_unavailable_nodes.as_ref().map(|v| v.value);
        let or_na = |v: Option<u32>| v.map_or_else(|| "N/A".to_string(), |v| v.to_string());
        let mut flows_per_sec = if res.flows_rate > 0.0 {
            format!("{:.2}", res.flows_rate)
        } else {
            "N/A".to_string()
        };
        self.text.clear();
        match self.opts.output {
            Output::Table => {
                let _ = write!(
                    self.text,
                    "NUM FLOWS\tMAX FLOWS\tSEEN FLOWS\tFLOWS PER SECOND\tUPTIME\tNUM CONNECTED NODES\tNUM UNAVAILABLE NODES\tVERSION\n{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    group_digits(res.num_flows),
                    group_digits(res.max_flows),
                    group_digits(res.seen_flows),
                    flows_per_sec,
                    format_uptime(res.uptime_ns),
                    or_na(connected),
                    or_na(unavailable),
                    res.version
                );
            }
            Output::Dict => {
                let _ = write!(
                    self.text,
                    "          NUM FLOWS: {}\n          MAX FLOWS: {}\n         SEEN FLOWS: {}\n   FLOWS PER SECOND: {}\n             UPTIME: {}\nNUM CONNECTED NODES: {}\n NUM UNAVAIL. NODES: {}\n            VERSION: {}\n",
                    group_digits(res.num_flows),
                    group_digits(res.max_flows),
                    group_digits(res.seen_flows),
                    flows_per_sec,
                    format_uptime(res.uptime_ns),
                    or_na(connected),
                    or_na(unavailable),
                    res.version
                );
            }
            Output::Compact => {
                let ratio = if res.max_flows > 0 {
                    format!(
                        " ({:.2}%)",
                        res.num_flows as f64 / res.max_flows as f64 * 100.0
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    self.text,
                    "Current/Max Flows: {}/{}{ratio}",
                    group_digits(res.num_flows),
                    group_digits(res.max_flows)
                );
                let uptime_secs = res.uptime_ns as i64 as f64 / 1e9;
                if flows_per_sec == "N/A" && uptime_secs > 0.0 {
                    flows_per_sec = format!("{:.2}", res.seen_flows as f64 / uptime_secs);
                }
                let _ = writeln!(self.text, "Flows/s: {flows_per_sec}");
                if let Some(connected) = connected {
                    let total = unavailable
                        .map(|u| format!("/{}", u.wrapping_add(connected)))
                        .unwrap_or_default();
                    let _ = writeln!(self.text, "Connected Nodes: {connected}{total}");
                }
                if let Some(unavailable) = unavailable.filter(|u| *u > 0) {
                    if res.unavailable_nodes.is_empty() {
                        let _ = writeln!(self.text, "Unavailable Nodes: {unavailable}");
                    } else {
                        let mut nodes = res.unavailable_nodes.clone();
                        nodes.sort();
                        if unavailable as usize > nodes.len() {
                            nodes.push(format!(
                                "and {} more...",
                                unavailable as usize - nodes.len()
                            ));
                        }
                        let _ = writeln!(
                            self.text,
                            "Unavailable Nodes: {unavailable}\n  - {}",
                            nodes.join("\n  - ")
                        );
                    }
                }
            }
            Output::JsonPb => return self.emit_json(res),
            Output::JsonLegacy => return Ok(()),
        }
        self.emit_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(4095), "4,095");
        assert_eq!(group_digits(2_348_885), "2,348,885");
    }
}
