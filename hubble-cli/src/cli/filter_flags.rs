//! The filter flags of `hubble observe`, defined from a table so that their values can
//! be read back in command-line order (`--not` applies to the flag that follows it).

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// How a filter flag takes its value.
#[derive(Clone, Copy)]
enum Takes {
    /// `--flag VALUE`.
    Value,
    /// `--flag` alone means this value; another value needs `--flag=VALUE`.
    Optional(&'static str),
}

/// One filter flag: long name, shorthand, value, help text.
struct FilterFlag {
    name: &'static str,
    short: Option<char>,
    takes: Takes,
    help: &'static str,
}

const fn flag(name: &'static str, help: &'static str) -> FilterFlag {
    FilterFlag {
        name,
        short: None,
        takes: Takes::Value,
        help,
    }
}

const TYPE_HELP: &str = "Filter by event types TYPE[:SUBTYPE]. Available types and subtypes:
TYPE             SUBTYPE
capture          n/a
drop             n/a
l7               n/a
policy-verdict   n/a
trace            from-endpoint
                 from-host
                 from-network
                 from-overlay
                 from-proxy
                 from-stack
                 from-crypto
                 to-endpoint
                 to-host
                 to-network
                 to-overlay
                 to-proxy
                 to-stack
                 to-crypto
trace-sock       n/a";

/// Every filter flag, as upstream defines them (plus `--is-reply` and `--dns-query`,
/// which set the FlowFilter fields of the same name).
const FILTER_FLAGS: &[FilterFlag] = &[
    FilterFlag { name: "not", short: None, takes: Takes::Optional("true"), help: "Reverses the next filter to be blacklist i.e. --not --from-ip 2.2.2.2" },
    flag("uuid", "Show the only flow matching this unique flow identifier, if any"),
    flag("node-name", "Show all flows which match the given node names (e.g. \"k8s*\", \"test-cluster/*.company.com\")"),
    flag("node-label", "Show only flows observed on nodes matching the given label filter (e.g. \"key1=value1\", \"io.cilium/egress-gateway\")"),
    flag("from-cluster", "Show all flows originating from endpoints known to be in the given cluster name"),
    flag("cluster", "Show all flows which match the cluster names (e.g. \"test-cluster\", \"prod-*\")"),
    flag("to-cluster", "Show all flows destined to endpoints known to be in the given cluster name"),
    flag("protocol", "Show only flows which match the given L4/L7 flow protocol (e.g. \"udp\", \"http\")"),
    flag("tcp-flags", "Show only flows which match the given TCP flags (e.g. \"syn\", \"ack\", \"fin\")"),
    FilterFlag { name: "type", short: Some('t'), takes: Takes::Value, help: TYPE_HELP },
    flag("verdict", "Show only flows with this verdict [FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED]"),
    flag("drop-reason-desc", "Show only flows which match this drop reason describe (e.g. \"POLICY_DENIED\", \"UNSUPPORTED_L3_PROTOCOL\")"),
    flag("http-status", "Show only flows which match this HTTP status code prefix (e.g. \"404\", \"5+\")"),
    flag("http-method", "Show only flows which match this HTTP method (e.g. \"get\", \"post\")"),
    flag("http-path", "Show only flows which match this HTTP path regular expressions (e.g. \"/page/\\\\d+\")"),
    flag("http-url", "Show only flows which match this HTTP URL regular expressions (e.g. \"http://.*cilium\\.io/page/\\\\d+\")"),
    flag("http-header", "Show only flows which match this HTTP header key:value pairs (e.g. \"foo:bar\")"),
    flag("trace-id", "Show only flows which match this trace ID"),
    flag("ip-trace-id", "Show only flows which match this IP trace ID"),
    flag("from-fqdn", "Show all flows originating at the given fully qualified domain name (e.g. \"*.cilium.io\")."),
    flag("fqdn", "Show all flows related to the given fully qualified domain name (e.g. \"*.cilium.io\")."),
    flag("to-fqdn", "Show all flows terminating at the given fully qualified domain name (e.g. \"*.cilium.io\")."),
    flag("from-ip", "Show all flows originating at the given IP address. Each of the source IPs can be specified as an exact match (e.g. '1.1.1.1') or as a CIDR range (e.g.'1.1.1.0/24')."),
    flag("snat-ip", "Show all flows SNATed with the given IP address. Each of the SNAT IPs can be specified as an exact match (e.g. '1.1.1.1') or as a CIDR range (e.g.'1.1.1.0/24')."),
    flag("ip", "Show all flows originating or terminating at the given IP address. Each of the IPs can be specified as an exact match (e.g. '1.1.1.1') or as a CIDR range (e.g.'1.1.1.0/24')."),
    flag("to-ip", "Show all flows terminating at the given IP address. Each of the destination IPs can be specified as an exact match (e.g. '1.1.1.1') or as a CIDR range (e.g.'1.1.1.0/24')."),
    FilterFlag { name: "ipv4", short: Some('4'), takes: Takes::Optional("v4"), help: "Show only IPv4 flows" },
    FilterFlag { name: "ipv6", short: Some('6'), takes: Takes::Optional("v6"), help: "Show only IPv6 flows" },
    flag("ip-version", "Show only IPv4, IPv6 flows or non IP flows (e.g. ARP packets) (ie: \"none\", \"v4\", \"v6\")"),
    flag("from-pod", "Show all flows originating in the given pod name prefix([namespace/]<pod-name>). If namespace is not provided, 'default' is used"),
    flag("pod", "Show all flows related to the given pod name prefix ([namespace/]<pod-name>). If namespace is not provided, 'default' is used."),
    flag("to-pod", "Show all flows terminating in the given pod name prefix([namespace/]<pod-name>). If namespace is not provided, 'default' is used"),
    flag("from-namespace", "Show all flows originating in the given Kubernetes namespace."),
    FilterFlag { name: "namespace", short: Some('n'), takes: Takes::Value, help: "Show all flows related to the given Kubernetes namespace." },
    flag("to-namespace", "Show all flows terminating in the given Kubernetes namespace."),
    FilterFlag { name: "from-all-namespaces", short: None, takes: Takes::Optional("true"), help: "Show flows originating in any Kubernetes namespace." },
    FilterFlag { name: "all-namespaces", short: Some('A'), takes: Takes::Optional("true"), help: "Show all flows in any Kubernetes namespace." },
    FilterFlag { name: "to-all-namespaces", short: None, takes: Takes::Optional("true"), help: "Show flows terminating in any Kubernetes namespace." },
    flag("from-label", "Show only flows originating in an endpoint with the given labels (e.g. \"key1=value1\", \"reserved:world\")"),
    FilterFlag { name: "label", short: Some('l'), takes: Takes::Value, help: "Show only flows related to an endpoint with the given labels (e.g. \"key1=value1\", \"reserved:world\")" },
    flag("to-label", "Show only flows terminating in an endpoint with given labels (e.g. \"key1=value1\", \"reserved:world\")"),
    flag("from-service", "Shows flows where the source IP address matches the ClusterIP address of the given service name prefix([namespace/]<svc-name>). If namespace is not provided, 'default' is used"),
    flag("service", "Shows flows where either the source or destination IP address matches the ClusterIP address of the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used. "),
    flag("to-service", "Shows flows where the destination IP address matches the ClusterIP address of the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used"),
    flag("from-port", "Show only flows with the given source port (e.g. 8080)"),
    flag("port", "Show only flows with given port in either source or destination (e.g. 8080)"),
    flag("to-port", "Show only flows with the given destination port (e.g. 8080)"),
    flag("from-workload", "Show all flows originating at an endpoint with the given workload"),
    flag("workload", "Show all flows related to an endpoint with the given workload"),
    flag("to-workload", "Show all flows terminating at an endpoint with the given workload"),
    flag("from-identity", "Show all flows originating at an endpoint with the given security identity"),
    flag("identity", "Show all flows related to an endpoint with the given security identity"),
    flag("to-identity", "Show all flows terminating at an endpoint with the given security identity"),
    flag("traffic-direction", "Show all flows in the given traffic direction (either ingress or egress)"),
    flag("cel-expression", "Filter flows using the given CEL expression"),
    flag("interface", "Show all flows observed at the given interface name (e.g. eth0)"),
    FilterFlag { name: "encrypted", short: None, takes: Takes::Optional("true"), help: "Show only encrypted flows (WireGuard/IPsec)" },
    FilterFlag { name: "unencrypted", short: None, takes: Takes::Optional("true"), help: "Show only unencrypted flows" },
    FilterFlag { name: "is-reply", short: None, takes: Takes::Optional("true"), help: "Show only replies (--is-reply) or only non-replies (--is-reply=false)" },
    flag("dns-query", "Show only DNS flows whose query matches this regular expression"),
];

/// The filter flags given, as `(long name, value)` in command-line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterArgs {
    pub ordered: Vec<(String, String)>,
}

impl FromArgMatches for FilterArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut found: Vec<(usize, String, String)> = Vec::new();
        for f in FILTER_FLAGS {
            let (Some(values), Some(indices)) = (
                matches.get_many::<String>(f.name),
                matches.indices_of(f.name),
            ) else {
                continue;
            };
            for (value, index) in values.zip(indices) {
                found.push((index, f.name.to_string(), value.clone()));
            }
        }
        found.sort_by_key(|(index, _, _)| *index);
        Ok(Self {
            ordered: found.into_iter().map(|(_, n, v)| (n, v)).collect(),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for FilterArgs {
    fn augment_args(mut cmd: Command) -> Command {
        for f in FILTER_FLAGS {
            let mut arg = Arg::new(f.name)
                .long(f.name)
                .action(ArgAction::Append)
                .help(f.help)
                .help_heading("Filters Flags")
                .value_name("filter");
            if let Some(short) = f.short {
                arg = arg.short(short);
            }
            if let Takes::Optional(default) = f.takes {
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value(default);
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
