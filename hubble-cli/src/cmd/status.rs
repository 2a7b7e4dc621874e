//! `hubble status`: the gRPC health check of the observer service, then the server
//! status.

use std::io::{self, Write};

use proto::observer::{observer_client::ObserverClient, ServerStatusRequest};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use super::Context;
use crate::cli::StatusArgs;
use crate::conn::{self, rpc_error, ConnOptions};
use crate::printer::{Output, Printer, PrinterOptions};

/// The service name Hubble registers with the gRPC health service.
pub const OBSERVER_SERVICE_NAME: &str = "hubble.server.Observer";

/// What `Healthcheck (via ...)` shows: the address without its `tls://` prefix.
pub fn display_target(server: &str) -> &str {
    server.strip_prefix("tls://").unwrap_or(server)
}

pub async fn run(args: &StatusArgs, ctx: &Context) -> anyhow::Result<()> {
    let opts = ConnOptions::from_settings(&ctx.settings)?;
    let channel = conn::connect(&opts).await?;
    let deadline = opts.request_timeout;
    let mut stdout = io::stdout().lock();

    let mut health = HealthClient::new(channel.clone());
    let check = health.check(HealthCheckRequest {
        service: OBSERVER_SERVICE_NAME.to_string(),
    });
    let response = match tokio::time::timeout(deadline, check).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => anyhow::bail!("failed getting status: {}", rpc_error(&s)),
        Err(_) => anyhow::bail!(
            "failed getting status: rpc error: code = DeadlineExceeded desc = context deadline exceeded"
        ),
    };
    let healthy = response.status == ServingStatus::Serving as i32;
    if args.output == "compact" {
        let status = if healthy {
            "Ok".to_string()
        } else {
            let name = ServingStatus::try_from(response.status)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| response.status.to_string());
            format!("Unavailable: {name}")
        };
        writeln!(
            stdout,
            "Healthcheck (via {}): {status}",
            display_target(&opts.server)
        )?;
    }
    if !healthy {
        anyhow::bail!("not healthy");
    }

    let mut observer = ObserverClient::new(channel);
    let call = observer.server_status(ServerStatusRequest {});
    let status = match tokio::time::timeout(deadline, call).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => anyhow::bail!("failed to get hubble server status: {}", rpc_error(&s)),
        Err(_) => anyhow::bail!(
            "failed to get hubble server status: rpc error: code = DeadlineExceeded desc = context deadline exceeded"
        ),
    };
    let output = match args.output.as_str() {
        "compact" => Output::Compact,
        "dict" => Output::Dict,
        "json" | "JSON" | "jsonpb" => Output::JsonPb,
        "tab" | "table" => Output::Table,
        other => anyhow::bail!("invalid output format: {other}"),
    };
    let opts = PrinterOptions {
        output,
        ..PrinterOptions::default()
    };
    let mut printer: Printer<_, io::Sink> = Printer::new(opts, stdout, None);
    printer.write_server_status(&status)?;
    printer.close()?;
    Ok(())
}
