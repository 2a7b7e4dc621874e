//! `hubble observe` (and `observe flows`, `observe agent-events`, `observe
//! debug-events`): build the request, then print what the server (or
//! `--input-file`) returns.

use std::io::{self, Write};

use anyhow::Context as _;
use proto::observer::GetFlowsRequest;

use super::Context;
use crate::cli::{FormattingArgs, ObserveArgs, ObserveCommand, ObserveSubcommand};
use crate::config::{Kind, Value};
use crate::conn::{self, rpc_error_for_stream, ConnOptions};
use crate::printer::{ColorMode, Output, Printer, PrinterOptions};
use crate::time::TimeLayout;

mod events;
pub mod input_file;
pub mod request;

/// Whether `HUBBLE_COMPAT` asks for the legacy `-o json` format.
fn legacy_json_output() -> bool {
    std::env::var("HUBBLE_COMPAT").is_ok_and(|v| {
        v.split(',')
            .any(|opt| opt.eq_ignore_ascii_case("legacy-json-output"))
    })
}

/// Maps `-o` to a printer output; the second value tells whether it is a JSON format
/// that may carry a custom field mask.
pub fn output_format(output: &str, follow: bool) -> anyhow::Result<(Output, bool)> {
    Ok(match output {
        "compact" => (Output::Compact, false),
        "dict" => (Output::Dict, false),
        "json" | "JSON" if legacy_json_output() => (Output::JsonLegacy, false),
        "json" | "JSON" | "jsonpb" => (Output::JsonPb, true),
        "tab" | "table" => {
            if follow {
                anyhow::bail!("table output format is not compatible with follow mode");
            }
            (Output::Table, false)
        }
        other => anyhow::bail!("invalid output format: {other}"),
    })
}

fn base_printer_options(
    formatting: &FormattingArgs,
    output: Output,
    debug: bool,
) -> PrinterOptions {
    PrinterOptions {
        output,
        time_layout: TimeLayout::from_name(&formatting.time_format),
        node_name: formatting.print_node_name.unwrap_or(false),
        debug,
        ..PrinterOptions::default()
    }
}

/// Everything `observe` decided before talking to a server.
#[derive(Debug)]
pub struct Plan {
    pub request: GetFlowsRequest,
    pub printer: PrinterOptions,
    pub silent_errors: bool,
    pub print_raw_filters: bool,
    pub input_file: Option<String>,
}

/// Checks the flags and builds the request and printer settings, in upstream's order.
pub fn plan(args: &ObserveArgs, ctx: &mut Context) -> anyhow::Result<Plan> {
    let selectors = request::parse_selectors(&args.selectors)?;
    let (allow, deny) = crate::filters::build(&args.filters.ordered)?;

    let (output, json_out) = output_format(&args.formatting.output, selectors.follow)?;
    let mut field_mask = args.other.field_mask.clone();
    if !json_out {
        if !field_mask.is_empty() {
            anyhow::bail!(
                "{} output format is not compatible with custom field mask",
                args.formatting.output
            );
        }
        if args.other.use_default_field_masks.unwrap_or(true) {
            field_mask = request::DEFAULT_FIELD_MASK
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
    }
    let mut printer = base_printer_options(&args.formatting, output, ctx.debug);
    printer.color = ColorMode::from_flag(&args.flow_format.color).enabled();
    printer.ip_translation = args.flow_format.ip_translation.unwrap_or(true)
        && !args.flow_format.numeric.unwrap_or(false);
    printer.policy_names = args.formatting.print_policy_names.unwrap_or(false);

    let input_file = args.other.input_file.clone().filter(|f| !f.is_empty());
    let range = request::range(&selectors, input_file.is_some(), chrono::Utc::now())?;

    ctx.settings.add_key("allowlist", Kind::StringSlice, "[]");
    ctx.settings.add_key("denylist", Kind::StringSlice, "[]");
    if !args.allowlist.is_empty() {
        ctx.settings
            .set_flag("allowlist", Value::List(args.allowlist.clone()));
    }
    if !args.denylist.is_empty() {
        ctx.settings
            .set_flag("denylist", Value::List(args.denylist.clone()));
    }
    let mut allow = allow;
    let mut deny = deny;
    allow.extend(request::parse_raw_filters(
        "allowlist",
        &ctx.settings.get_string_slice("allowlist"),
    )?);
    deny.extend(request::parse_raw_filters(
        "denylist",
        &ctx.settings.get_string_slice("denylist"),
    )?);
    if !field_mask.is_empty() {
        request::check_field_mask(&field_mask).map_err(anyhow::Error::msg)?;
    }
    Ok(Plan {
        request: request::request(range, allow, deny, &field_mask),
        printer,
        silent_errors: args.other.silent_errors.unwrap_or(false),
        print_raw_filters: args.other.print_raw_filters.unwrap_or(false),
        input_file,
    })
}

/// Runs `hubble observe ...`.
pub async fn run(command: &ObserveCommand, ctx: &mut Context) -> anyhow::Result<()> {
    match &command.command {
        None => run_flows(&command.flows, ctx).await,
        Some(ObserveSubcommand::Flows(args)) => run_flows(args, ctx).await,
        Some(ObserveSubcommand::AgentEvents(args)) => events::run_agent_events(args, ctx).await,
        Some(ObserveSubcommand::DebugEvents(args)) => events::run_debug_events(args, ctx).await,
    }
}

fn new_printer(
    opts: PrinterOptions,
    silent: bool,
) -> Printer<io::BufWriter<io::Stdout>, io::Stderr> {
    let err = (!silent).then(io::stderr);
    Printer::new(
        opts,
        io::BufWriter::with_capacity(64 * 1024, io::stdout()),
        err,
    )
}

async fn run_flows(args: &ObserveArgs, ctx: &mut Context) -> anyhow::Result<()> {
    let plan = plan(args, ctx)?;
    if plan.print_raw_filters {
        let mut out = io::stdout().lock();
        out.write_all(request::raw_filters_yaml(&plan.request).as_bytes())?;
        return Ok(());
    }
    let mut printer = new_printer(plan.printer, plan.silent_errors);
    if let Some(path) = plan.input_file.as_deref() {
        let conn = ConnOptions::from_settings(&ctx.settings)?;
        if conn.port_forward {
            anyhow::bail!("cannot use --input-file and --auto-port-forward together");
        }
        let mut warnings = io::stderr();
        if path == "-" {
            let stdin = io::stdin().lock();
            return input_file::process(&plan.request, stdin, &mut printer, &mut warnings);
        }
        let file = std::fs::File::open(path).with_context(|| format!("open {path}"))?;
        return input_file::process(&plan.request, file, &mut printer, &mut warnings);
    }
    let opts = ConnOptions::from_settings(&ctx.settings)?;
    let channel = conn::connect(&opts).await?;
    let follow = plan.request.follow;
    let mut stream = proto::get_flows::call_get_flows(channel, plan.request)
        .await
        .map_err(|s| anyhow::anyhow!(rpc_error_for_stream(&s)))?
        .into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            message = stream.message() => match message {
                Ok(Some(res)) => {
                    printer.write_get_flows_response(&res)?;
                    if follow {
                        printer.out_mut().flush()?;
                    }
                }
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::Cancelled => break,
                Err(s) => {
                    printer.close()?;
                    anyhow::bail!(rpc_error_for_stream(&s));
                }
            },
        }
    }
    printer.close()?;
    Ok(())
}
