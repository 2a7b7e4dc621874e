//! `hubble observe agent-events` and `hubble observe debug-events`.

use std::io::{self, Write};

use proto::observer::{
    observer_client::ObserverClient, GetAgentEventsRequest, GetDebugEventsRequest,
};

use super::{base_printer_options, new_printer, output_format, request, Context};
use crate::cli::EventsArgs;
use crate::conn::{self, rpc_error_for_stream, ConnOptions};
use crate::printer::Printer;

/// Events printed when neither follow mode nor a range is asked for.
const DEFAULT_EVENT_COUNT: u64 = 20;

struct EventsPlan {
    number: u64,
    follow: bool,
    since: Option<pbjson_types::Timestamp>,
    until: Option<pbjson_types::Timestamp>,
}

fn plan(
    args: &EventsArgs,
    ctx: &Context,
) -> anyhow::Result<(EventsPlan, crate::printer::PrinterOptions)> {
    let selectors = request::parse_selectors(&args.selectors)?;
    let (output, _) = output_format(&args.formatting.output, selectors.follow)?;
    let printer = base_printer_options(&args.formatting, output, ctx.debug);
    // Only the time range is shared with flows; first/last rules differ.
    let no_first = request::Selectors {
        first: 0,
        last: 0,
        all: false,
        ..selectors.clone()
    };
    let range = request::range(&no_first, true, chrono::Utc::now())?;
    let mut number = selectors.last;
    if range.since.is_none() && range.until.is_none() {
        if selectors.all {
            number = u64::MAX;
        } else if selectors.last == 0 {
            number = DEFAULT_EVENT_COUNT;
        }
    }
    Ok((
        EventsPlan {
            number,
            follow: selectors.follow,
            since: range.since,
            until: range.until,
        },
        printer,
    ))
}

pub async fn run_agent_events(args: &EventsArgs, ctx: &mut Context) -> anyhow::Result<()> {
    let (plan, mut printer, mut client) = start(args, ctx).await?;
    let req = GetAgentEventsRequest {
        number: plan.number,
        first: false,
        follow: plan.follow,
        since: plan.since,
        until: plan.until,
    };
    let stream = client.get_agent_events(req).await;
    print_stream(stream, &mut printer, StdPrinter::write_agent_event).await
}

pub async fn run_debug_events(args: &EventsArgs, ctx: &mut Context) -> anyhow::Result<()> {
    let (plan, mut printer, mut client) = start(args, ctx).await?;
    let req = GetDebugEventsRequest {
        number: plan.number,
        first: false,
        follow: plan.follow,
        since: plan.since,
        until: plan.until,
    };
    let stream = client.get_debug_events(req).await;
    print_stream(stream, &mut printer, StdPrinter::write_debug_event).await
}

type StdPrinter = Printer<io::BufWriter<io::Stdout>, io::Stderr>;

/// Plans the request, then makes the printer and connects.
async fn start(
    args: &EventsArgs,
    ctx: &Context,
) -> anyhow::Result<(EventsPlan, StdPrinter, ObserverClient<conn::HubbleChannel>)> {
    let (plan, opts) = plan(args, ctx)?;
    let printer = new_printer(opts, args.other.silent_errors.unwrap_or(false));
    let channel = conn::connect(&ConnOptions::from_settings(&ctx.settings)?).await?;
    Ok((plan, printer, ObserverClient::new(channel)))
}

/// Prints each response of an events stream until it ends, the server cancels it or
/// Ctrl-C is pressed.
async fn print_stream<T>(
    stream: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    printer: &mut StdPrinter,
    write: fn(&mut StdPrinter, &T) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut stream = stream
        .map_err(|s| anyhow::anyhow!(rpc_error_for_stream(&s)))?
        .into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            message = stream.message() => match message {
                Ok(Some(res)) => {
                    write(printer, &res)?;
                    printer.out_mut().flush()?;
                }
                Ok(None) => break,
                Err(s) if s.code() == tonic::Code::Cancelled => break,
                Err(s) => anyhow::bail!(rpc_error_for_stream(&s)),
            },
        }
    }
    printer.close()?;
    let _ = io::stdout().flush();
    Ok(())
}
