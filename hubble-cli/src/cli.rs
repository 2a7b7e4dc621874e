//! The command line: global and server flags, and the subcommands, named and grouped
//! as upstream `hubble` has them.

use clap::{Args, Parser, Subcommand};

mod filter_flags;

pub use filter_flags::FilterArgs;

/// Parses a pflag-style boolean (`--flag`, `--flag=false`).
pub fn go_bool(value: &str) -> Result<bool, String> {
    crate::filters::go_bool(value)
}

#[derive(Debug, Parser)]
#[command(
    name = "hubble",
    about = "CLI",
    long_about = "Hubble is a utility to observe and inspect recent Cilium routed traffic in a cluster.",
    disable_version_flag = true,
    disable_help_subcommand = false
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the version.
    #[arg(short = 'v', long = "version", help = "version for hubble")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags every command takes.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global Flags")]
pub struct GlobalArgs {
    /// Optional config file
    #[arg(long, global = true, value_name = "string")]
    pub config: Option<String>,
    /// Enable debug messages
    #[arg(short = 'D', long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub debug: Option<bool>,
}

/// How to reach a Hubble server.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Server Flags")]
pub struct ServerArgs {
    /// Address of a Hubble server. Ignored when --input-file or --port-forward is provided. (default "localhost:4245")
    #[arg(long, global = true, value_name = "string")]
    pub server: Option<String>,
    /// Hubble server dialing timeout (default 5s)
    #[arg(long, global = true, value_name = "duration")]
    pub timeout: Option<String>,
    /// Unary Request timeout. Only applies to non-streaming RPCs (ServerStatus, ListNodes, ListNamespaces). (default 12s)
    #[arg(long = "request-timeout", global = true, value_name = "duration")]
    pub request_timeout: Option<String>,
    /// Specify that TLS must be used when establishing a connection to a Hubble server.
    /// By default, TLS is only enabled if the server address starts with 'tls://'.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub tls: Option<bool>,
    /// Allows the client to skip verifying the server's certificate chain and host name.
    /// This option is NOT recommended as, in this mode, TLS is susceptible to machine-in-the-middle attacks.
    /// See also the 'tls-server-name' option which allows setting the server name.
    #[arg(long = "tls-allow-insecure", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub tls_allow_insecure: Option<bool>,
    /// Paths to custom Certificate Authority (CA) certificate files.The files must contain PEM encoded data.
    #[arg(
        long = "tls-ca-cert-files",
        global = true,
        value_delimiter = ',',
        value_name = "strings"
    )]
    pub tls_ca_cert_files: Option<Vec<String>>,
    /// Path to the public key file for the client certificate to connect to a Hubble server (implies TLS).
    /// The file must contain PEM encoded data.
    #[arg(long = "tls-client-cert-file", global = true, value_name = "string")]
    pub tls_client_cert_file: Option<String>,
    /// Path to the private key file for the client certificate to connect a Hubble server (implies TLS).
    /// The file must contain PEM encoded data.
    #[arg(long = "tls-client-key-file", global = true, value_name = "string")]
    pub tls_client_key_file: Option<String>,
    /// Specify a server name to verify the hostname on the returned certificate (eg: 'instance.hubble-relay.cilium.io').
    #[arg(long = "tls-server-name", global = true, value_name = "string")]
    pub tls_server_name: Option<String>,
    /// Specify a username for basic auth
    #[arg(long = "basic-auth-username", global = true, value_name = "string")]
    pub basic_auth_username: Option<String>,
    /// Specify a password for basic auth
    #[arg(long = "basic-auth-password", global = true, value_name = "string")]
    pub basic_auth_password: Option<String>,
    /// Automatically forward the relay port to the local machine. Analoguous to running: 'cilium hubble port-forward'.
    #[arg(short = 'P', long = "port-forward", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub port_forward: Option<bool>,
    /// Local port to forward to. 0 will select a random port. This option is only considered when --port-forward is set. (default 4245)
    #[arg(long = "port-forward-port", global = true, value_name = "uint16")]
    pub port_forward_port: Option<u16>,
    /// Kubernetes configuration context. This option is only considered when --port-forward is set.
    #[arg(long = "kube-context", global = true, value_name = "string")]
    pub kube_context: Option<String>,
    /// Namespace Cilium is running in. This option is only considered when --port-forward is set. (default "kube-system")
    #[arg(long = "kube-namespace", global = true, value_name = "string")]
    pub kube_namespace: Option<String>,
    /// Path to the kubeconfig file. This option is only considered when --port-forward is set.
    #[arg(long, global = true, value_name = "string")]
    pub kubeconfig: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Modify or view hubble config
    Config(ConfigArgs),
    /// List Hubble objects
    List {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Observe flows and events of a Hubble server
    Observe(Box<ObserveCommand>),
    /// Forward a local port to Hubble Relay through ssh, tcp or kubectl
    PortForward(crate::portforward::PortForwardArgs),
    /// Display status of Hubble server
    #[command(
        long_about = "Display shows the status of the Hubble server. This is intended as a basic\nconnectivity health check."
    )]
    Status(StatusArgs),
    /// Display detailed version information
    #[command(long_about = "Displays information about the version of this software.")]
    Version,
    /// Watch Hubble objects
    #[command(hide = true, alias = "w")]
    Watch {
        #[command(subcommand)]
        command: WatchCommand,
    },
    /// Live terminal view of flows, filtered with the flags of `observe`
    Tui(Box<ObserveArgs>),
}

/// `hubble observe`, which observes flows itself or through a subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ObserveCommand {
    #[command(flatten)]
    pub flows: ObserveArgs,
    #[command(subcommand)]
    pub command: Option<ObserveSubcommand>,
}

#[derive(Debug, Subcommand)]
pub enum ObserveSubcommand {
    /// Observe Cilium agent events
    AgentEvents(EventsArgs),
    /// Observe Cilium debug events
    DebugEvents(EventsArgs),
    /// Observe flows of a Hubble server
    Flows(Box<ObserveArgs>),
}

/// Which events to ask for.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Selectors Flags")]
pub struct SelectorArgs {
    /// Get all flows stored in Hubble's buffer. Note: this option may cause Hubble to return a lot of data. It is recommended to only use it along filters to limit the amount of data returned.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub all: Option<bool>,
    /// Get first N flows stored in Hubble's buffer. When querying against Hubble Relay, this gets N flows per instance of Hubble connected to that Relay.
    #[arg(long, value_name = "uint")]
    pub first: Option<String>,
    /// Follow flows output
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub follow: Option<bool>,
    /// Get last N flows stored in Hubble's buffer (default 20). When querying against Hubble Relay, this gets N flows per instance of Hubble connected to that Relay.
    #[arg(long, value_name = "uint")]
    pub last: Option<String>,
    /// Filter flows since a specific date. The format is relative (e.g. 3s, 4m, 1h43,, ...) or one of:
    ///   StampMilli:             Jan _2 15:04:05.000
    ///   YearMonthDay:           2006-01-02
    ///   YearMonthDayHour:       2006-01-02T15-07:00
    ///   YearMonthDayHourMinute: 2006-01-02T15:04-07:00
    ///   RFC3339:                2006-01-02T15:04:05-07:00
    ///   RFC3339Milli:           2006-01-02T15:04:05.999-07:00
    ///   RFC3339Micro:           2006-01-02T15:04:05.999999-07:00
    ///   RFC3339Nano:            2006-01-02T15:04:05.999999999-07:00
    ///   RFC1123Z:               Mon, 02 Jan 2006 15:04:05 -0700
    #[arg(long, value_name = "string", verbatim_doc_comment)]
    pub since: Option<String>,
    /// Filter flows until a specific date. The format is relative (e.g. 3s, 4m, 1h43,, ...) or one of:
    ///   StampMilli:             Jan _2 15:04:05.000
    ///   YearMonthDay:           2006-01-02
    ///   YearMonthDayHour:       2006-01-02T15-07:00
    ///   YearMonthDayHourMinute: 2006-01-02T15:04-07:00
    ///   RFC3339:                2006-01-02T15:04:05-07:00
    ///   RFC3339Milli:           2006-01-02T15:04:05.999-07:00
    ///   RFC3339Micro:           2006-01-02T15:04:05.999999-07:00
    ///   RFC3339Nano:            2006-01-02T15:04:05.999999999-07:00
    ///   RFC1123Z:               Mon, 02 Jan 2006 15:04:05 -0700
    #[arg(long, value_name = "string", verbatim_doc_comment)]
    pub until: Option<String>,
}

/// How to print events.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Formatting Flags")]
pub struct FormattingArgs {
    /// Specify the output format, one of:
    ///   compact:  Compact output
    ///   dict:     Each flow is shown as KEY:VALUE pair
    ///   jsonpb:   JSON encoded GetFlowResponse according to proto3's JSON mapping
    ///   json:     Alias for jsonpb
    ///   table:    Tab-aligned columns
    #[arg(
        short = 'o',
        long,
        default_value = "compact",
        value_name = "string",
        verbatim_doc_comment
    )]
    pub output: String,
    /// Print node name in output
    #[arg(long = "print-node-name", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub print_node_name: Option<bool>,
    /// Print policy names in output
    #[arg(long = "print-policy-names", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub print_policy_names: Option<bool>,
    /// Specify the time format for printing. This option does not apply to the json and jsonpb output type. One of:
    ///   StampMilli:             Jan _2 15:04:05.000
    ///   YearMonthDay:           2006-01-02
    ///   YearMonthDayHour:       2006-01-02T15Z07:00
    ///   YearMonthDayHourMinute: 2006-01-02T15:04Z07:00
    ///   RFC3339:                2006-01-02T15:04:05Z07:00
    ///   RFC3339Milli:           2006-01-02T15:04:05.999Z07:00
    ///   RFC3339Micro:           2006-01-02T15:04:05.999999Z07:00
    ///   RFC3339Nano:            2006-01-02T15:04:05.999999999Z07:00
    ///   RFC1123Z:               Mon, 02 Jan 2006 15:04:05 -0700
    #[arg(
        long = "time-format",
        default_value = "StampMilli",
        value_name = "string",
        verbatim_doc_comment
    )]
    pub time_format: String,
}

/// Flags that are neither filters nor formatting.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Other Flags")]
pub struct OtherArgs {
    /// Silently ignores errors and warnings
    #[arg(short = 's', long = "silent-errors", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub silent_errors: Option<bool>,
    /// Print allowlist/denylist filters and exit without sending the request to Hubble server
    #[arg(long = "print-raw-filters", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub print_raw_filters: Option<bool>,
    /// Query flows from this file instead of the server. Use '-' to read from stdin.
    #[arg(long = "input-file", value_name = "string")]
    pub input_file: Option<String>,
    /// Comma-separated list of fields for mask. Fields not in the mask will be removed from server response.
    #[arg(
        long = "field-mask",
        alias = "experimental-field-mask",
        value_delimiter = ',',
        value_name = "strings"
    )]
    pub field_mask: Vec<String>,
    /// Request only visible fields when the output format is compact, tab, or dict. (default true)
    #[arg(long = "use-default-field-masks", alias = "experimental-use-default-field-masks", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub use_default_field_masks: Option<bool>,
}

/// `hubble observe` / `hubble observe flows`.
#[derive(Debug, Clone, Default, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub selectors: SelectorArgs,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Specify allowlist as JSON encoded FlowFilters
    #[arg(long, value_name = "stringArray", help_heading = "Raw-Filters Flags")]
    pub allowlist: Vec<String>,
    /// Specify denylist as JSON encoded FlowFilters
    #[arg(long, value_name = "stringArray", help_heading = "Raw-Filters Flags")]
    pub denylist: Vec<String>,
    #[command(flatten)]
    pub formatting: FormattingArgs,
    #[command(flatten)]
    pub flow_format: FlowFormatArgs,
    #[command(flatten)]
    pub other: OtherArgs,
    /// Show flows in a live terminal view (same as 'hubble tui')
    #[arg(long, help_heading = "Other Flags")]
    pub tui: bool,
}

/// Formatting flags that only flows have.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Flow Format Flags")]
pub struct FlowFormatArgs {
    /// Colorize the output when the output format is one of 'compact' or 'dict'. The value is one of 'auto' (default), 'always' or 'never'
    #[arg(long, default_value = "auto", value_name = "string")]
    pub color: String,
    /// Translate IP addresses to logical names such as pod name, FQDN, ... (default true)
    #[arg(long = "ip-translation", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub ip_translation: Option<bool>,
    /// Display all information in numeric form
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    pub numeric: Option<bool>,
}

/// `hubble observe agent-events` / `debug-events`.
#[derive(Debug, Clone, Default, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub selectors: SelectorArgs,
    #[command(flatten)]
    pub formatting: FormattingArgs,
    #[command(flatten)]
    pub other: OtherArgs,
}

/// `hubble status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Specify the output format, one of:
    ///  compact:  Compact output
    ///  dict:     Status is shown as KEY:VALUE pair
    ///  json:     JSON encoding
    ///  table:    Tab-aligned columns
    #[arg(
        short = 'o',
        long,
        default_value = "compact",
        value_name = "string",
        verbatim_doc_comment,
        help_heading = "Formatting Flags"
    )]
    pub output: String,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// List namespaces with recent flows
    Namespaces(ListArgs),
    /// List Hubble nodes
    #[command(alias = "node")]
    Nodes(ListArgs),
}

/// Output flag of the `list` subcommands.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Specify the output format, one of:
    ///  json:     JSON encoding
    ///  table:    Tab-aligned columns
    ///  wide:     Tab-aligned columns with additional information
    #[arg(
        short = 'o',
        long,
        default_value = "table",
        value_name = "string",
        verbatim_doc_comment,
        help_heading = "Formatting Flags"
    )]
    pub output: String,
}

#[derive(Debug, Args)]
#[command(long_about = crate::config::CONFIG_LONG_HELP)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: Option<ConfigCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Get an individual value in the hubble config file
    #[command(
        long_about = "Get an individual value in the hubble config file.\nIf KEY is not provided, this command is equivalent to 'view'."
    )]
    Get { args: Vec<String> },
    /// Reset all or an individual value in the hubble config file
    #[command(
        long_about = "Reset all or an individual value in the hubble config file.\nWhen KEY is provided, this command is equivalent to 'set KEY'.\nIf KEY is not provided, all values are reset to their default value."
    )]
    Reset { args: Vec<String> },
    /// Set an individual value in the hubble config file
    #[command(
        long_about = "Set an individual value in the hubble config file.\nIf VALUE is not provided, the value is reset to its default value."
    )]
    Set { args: Vec<String> },
    /// Display merged configuration settings
    View,
}

#[derive(Debug, Subcommand)]
pub enum WatchCommand {
    /// Watch for Hubble peers updates
    #[command(alias = "peer")]
    Peers,
}
