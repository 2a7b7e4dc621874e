//! `hubble-agent fqdn cache list`: the names the endpoints looked up, as
//! `cilium fqdn cache list` prints them.

use std::fmt::Write as _;

use clap::Subcommand;

use super::protocol::{AdminRequest, AdminResponse};
use super::tabwriter::align;
use crate::fqdn::{FqdnRecord, SOURCE_LOOKUP};
use crate::state::AgentState;

/// `fqdn` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum FqdnCommand {
    /// Manage the FQDN cache.
    #[command(subcommand)]
    Cache(FqdnCacheCommand),
}

/// `fqdn cache` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum FqdnCacheCommand {
    /// List the FQDN cache entries.
    #[command(alias = "ls")]
    List {
        /// Only this endpoint's entries.
        #[arg(short = 'e', long)]
        endpoint: Option<u16>,
    },
}

/// The request of a command.
pub fn to_request(command: &FqdnCommand) -> AdminRequest {
    match command {
        FqdnCommand::Cache(FqdnCacheCommand::List { endpoint }) => AdminRequest::FqdnCacheList {
            endpoint: *endpoint,
        },
    }
}

/// Answers `fqdn cache list`.
pub fn handle(state: &AgentState, endpoint: Option<u16>) -> AdminResponse {
    AdminResponse::FqdnCache {
        entries: state
            .fqdn_records()
            .into_iter()
            .filter(|record| endpoint.is_none_or(|id| record.endpoint == id))
            .collect(),
    }
}

/// The table `cilium fqdn cache list` prints: Endpoint, Source, FQDN, TTL,
/// ExpirationTime (RFC 3339 with milliseconds, UTC) and the IPs joined by commas.
pub fn format_fqdn_cache(entries: &[FqdnRecord]) -> String {
    let mut text = String::from("Endpoint\tSource\tFQDN\tTTL\tExpirationTime\tIPs\t\n");
    for entry in entries {
        let expiration = i64::try_from(entry.expiration())
            .ok()
            .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
            .map(|time| time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default();
        let ips: Vec<String> = entry.ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            text,
            "{}\t{SOURCE_LOOKUP}\t{}\t{}\t{expiration}\t{}\t",
            entry.endpoint,
            entry.fqdn,
            entry.ttl,
            ips.join(",")
        );
    }
    align(&text, 5, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_cilium() {
        let entries = vec![
            FqdnRecord {
                endpoint: 1234,
                fqdn: "api.github.com.".to_string(),
                ttl: 30,
                lookup_time: 1_796_000_000,
                ips: vec![
                    "192.0.2.10".parse().expect("ip"),
                    "2001:db8::10".parse().expect("ip"),
                ],
            },
            FqdnRecord {
                endpoint: 7,
                fqdn: "cilium.io.".to_string(),
                ttl: 3600,
                lookup_time: 1_796_000_000,
                ips: vec!["192.0.2.20".parse().expect("ip")],
            },
        ];
        expect_test::expect![[r#"
            Endpoint   Source   FQDN              TTL    ExpirationTime             IPs                       
            1234       lookup   api.github.com.   30     2026-11-30T00:53:50.000Z   192.0.2.10,2001:db8::10   
            7          lookup   cilium.io.        3600   2026-11-30T01:53:20.000Z   192.0.2.20                
        "#]]
        .assert_eq(&format_fqdn_cache(&entries));
    }
}
