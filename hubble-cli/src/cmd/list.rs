//! `hubble list nodes` and `hubble list namespaces`.

use std::fmt::Write as _;
use std::io::{self, Write};

use proto::observer::{
    observer_client::ObserverClient, GetNamespacesRequest, GetNodesRequest, Namespace, Node,
};
use proto::relay::NodeState;

use super::Context;
use crate::cli::{ListArgs, ListCommand};
use crate::conn::{self, rpc_error, ConnOptions, HubbleChannel};
use crate::printer::TabWriter;
use crate::time::format_duration;

/// A list of messages as `json.MarshalIndent` prints it (`null` when empty).
fn json_list<T: proto::json::ToJson>(items: &[T]) -> String {
    if items.is_empty() {
        return "null\n".to_string();
    }
    let mut compact = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            compact.push(',');
        }
        compact.push_str(&proto::json::to_string(item));
    }
    compact.push(']');
    let mut out = crate::jsonindent::indent(&compact, "  ");
    out.push('\n');
    out
}

fn state_title(state: i32) -> &'static str {
    match NodeState::try_from(state) {
        Ok(NodeState::NodeConnected) => "Connected",
        Ok(NodeState::NodeUnavailable) => "Unavailable",
        Ok(NodeState::NodeGone) => "Gone",
        Ok(NodeState::NodeError) => "Error",
        _ => "Unknown",
    }
}

/// Rounds nanoseconds to whole seconds, halves away from zero (Go's `Round`).
fn round_to_second(ns: u64) -> i64 {
    let ns = ns as i64;
    if ns <= 0 {
        return 0;
    }
    let rem = ns % 1_000_000_000;
    let base = ns - rem;
    if rem >= 500_000_000 {
        base.saturating_add(1_000_000_000)
    } else {
        base
    }
}

/// The nodes table (`-o table` or `-o wide`).
pub fn nodes_table(nodes: &[Node], wide: bool) -> String {
    let mut text = String::from("NAME\tSTATUS\tAGE\tFLOWS/S\tCURRENT/MAX-FLOWS");
    if wide {
        text.push_str("\tVERSION\tADDRESS\tTLS");
    }
    text.push('\n');
    for n in nodes {
        let mut age = "N/A".to_string();
        let mut rate = "N/A".to_string();
        let uptime = round_to_second(n.uptime_ns);
        if uptime > 0 {
            age = format_duration(uptime);
            rate = format!("{:.2}", n.seen_flows as f64 / (uptime as f64 / 1e9));
        }
        let ratio = if n.max_flows > 0 {
            format!(
                "{}/{} ({:6.2}%)",
                n.num_flows,
                n.max_flows,
                n.num_flows as f64 / n.max_flows as f64 * 100.0
            )
        } else {
            "N/A".to_string()
        };
        let _ = write!(
            text,
            "{}\t{}\t{age}\t{rate}\t{ratio}",
            n.name,
            state_title(n.state)
        );
        if wide {
            let version = if n.version.is_empty() {
                "N/A"
            } else {
                &n.version
            };
            let tls = match &n.tls {
                Some(t) if t.enabled => "Enabled",
                Some(_) => "Disabled",
                None => "N/A",
            };
            let _ = write!(text, "\t{version}\t{}\t{tls}", n.address);
        }
        text.push('\n');
    }
    align(&text)
}

/// The namespaces table.
pub fn namespaces_table(namespaces: &[Namespace], wide: bool) -> String {
    let mut text = String::from("NAMESPACE");
    if wide {
        text.push_str("\tCLUSTER");
    }
    text.push('\n');
    for ns in namespaces {
        text.push_str(&ns.namespace);
        if wide && !ns.cluster.is_empty() {
            text.push('\t');
            text.push_str(&ns.cluster);
        }
        text.push('\n');
    }
    align(&text)
}

fn align(text: &str) -> String {
    let mut tw = TabWriter::default();
    tw.write_str(text);
    let mut out = String::new();
    tw.flush(&mut out);
    out
}

async fn client(
    ctx: &Context,
) -> anyhow::Result<(ObserverClient<HubbleChannel>, std::time::Duration)> {
    let opts = ConnOptions::from_settings(&ctx.settings)?;
    let channel = conn::connect(&opts).await?;
    Ok((ObserverClient::new(channel), opts.request_timeout))
}

fn deadline_error() -> anyhow::Error {
    anyhow::anyhow!("rpc error: code = DeadlineExceeded desc = context deadline exceeded")
}

pub async fn run(command: &ListCommand, ctx: &Context) -> anyhow::Result<()> {
    match command {
        ListCommand::Nodes(args) => run_nodes(args, ctx).await,
        ListCommand::Namespaces(args) => run_namespaces(args, ctx).await,
    }
}

async fn run_nodes(args: &ListArgs, ctx: &Context) -> anyhow::Result<()> {
    let (mut client, deadline) = client(ctx).await?;
    let res = tokio::time::timeout(deadline, client.get_nodes(GetNodesRequest {}))
        .await
        .map_err(|_| deadline_error())?
        .map_err(|s| anyhow::anyhow!(rpc_error(&s)))?
        .into_inner();
    let mut nodes = res.nodes;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let text = match args.output.as_str() {
        "json" => json_list(&nodes),
        "table" => nodes_table(&nodes, false),
        "wide" => nodes_table(&nodes, true),
        other => anyhow::bail!("unknown output format: {other}"),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

async fn run_namespaces(args: &ListArgs, ctx: &Context) -> anyhow::Result<()> {
    let (mut client, deadline) = client(ctx).await?;
    let res = tokio::time::timeout(deadline, client.get_namespaces(GetNamespacesRequest {}))
        .await
        .map_err(|_| deadline_error())?
        .map_err(|s| anyhow::anyhow!(rpc_error(&s)))?
        .into_inner();
    let text = match args.output.as_str() {
        "json" => json_list(&res.namespaces),
        "table" => namespaces_table(&res.namespaces, false),
        "wide" => namespaces_table(&res.namespaces, true),
        other => anyhow::bail!("unknown output format: {other}"),
    };
    io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_table_matches_upstream_layout() {
        let nodes = vec![
            Node {
                name: "kind-control-plane".into(),
                state: NodeState::NodeConnected as i32,
                uptime_ns: 3_723_400_000_000,
                seen_flows: 37_234,
                num_flows: 4095,
                max_flows: 4095,
                version: "1.19.4".into(),
                address: "10.100.0.11:4244".into(),
                tls: Some(proto::observer::Tls {
                    enabled: true,
                    server_name: "x".into(),
                }),
            },
            Node {
                name: "kind-worker".into(),
                state: NodeState::NodeUnavailable as i32,
                ..Default::default()
            },
        ];
        expect_test::expect![[r#"
            NAME                 STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS
            kind-control-plane   Connected     1h2m3s   10.00     4095/4095 (100.00%)
            kind-worker          Unavailable   N/A      N/A       N/A
        "#]]
        .assert_eq(&nodes_table(&nodes, false));
        expect_test::expect![[r#"
            NAME                 STATUS        AGE      FLOWS/S   CURRENT/MAX-FLOWS     VERSION   ADDRESS            TLS
            kind-control-plane   Connected     1h2m3s   10.00     4095/4095 (100.00%)   1.19.4    10.100.0.11:4244   Enabled
            kind-worker          Unavailable   N/A      N/A       N/A                   N/A                          N/A
        "#]]
        .assert_eq(&nodes_table(&nodes, true));
        expect_test::expect![[r#"
            [
              {
                "name": "kind-worker",
                "state": "NODE_UNAVAILABLE"
              }
            ]
        "#]]
        .assert_eq(&json_list(&nodes[1..]));
        assert_eq!(json_list::<Node>(&[]), "null\n");
    }
}
