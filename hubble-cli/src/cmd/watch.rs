//! `hubble watch peers`: the Peer service's change notifications as they come.

use std::io::{self, Write};

use proto::peer::{peer_client::PeerClient, ChangeNotification, NotifyRequest};

use super::Context;
use crate::conn::{self, rpc_error, ConnOptions};
use crate::names;

/// One notification as upstream prints it.
pub fn format_change(n: &ChangeNotification) -> String {
    let tls = n
        .tls
        .as_ref()
        .map(|t| format!(" (TLS.ServerName: {})", t.server_name))
        .unwrap_or_default();
    format!(
        "{:<12} {} {}{tls}\n",
        names::change_notification_type(n.r#type),
        n.address,
        n.name
    )
}

pub async fn run_peers(ctx: &Context) -> anyhow::Result<()> {
    let channel = conn::connect(&ConnOptions::from_settings(&ctx.settings)?).await?;
    let mut stream = PeerClient::new(channel)
        .notify(NotifyRequest {})
        .await
        .map_err(|s| anyhow::anyhow!(rpc_error(&s)))?
        .into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            message = stream.message() => match message {
                Ok(Some(n)) => {
                    let mut out = io::stdout().lock();
                    out.write_all(format_change(&n).as_bytes())?;
                    out.flush()?;
                }
                Ok(None) => return Ok(()),
                Err(s) if s.code() == tonic::Code::Cancelled => return Ok(()),
                Err(s) => anyhow::bail!(rpc_error(&s)),
            },
        }
    }
}
