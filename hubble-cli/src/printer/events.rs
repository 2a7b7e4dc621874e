//! Lost events, relay node status events, agent events and debug events.

use std::fmt::Write as _;
use std::io::{self, Write};

use proto::flow::{self, agent_event::Notification, AgentEvent};
use proto::observer::{
    get_flows_response::ResponseTypes, GetAgentEventsResponse, GetDebugEventsResponse,
    GetFlowsResponse,
};
use proto::relay;

use super::{Output, Printer, DICT_SEPARATOR};
use crate::names;
use crate::quote::go_quote;
use crate::time::{write_timestamp, TimeLayout};

/// Node names beyond this many characters are summarised as `(and N more)`.
const NODE_NAMES_CUT_OFF: usize = 50;

impl<W: Write, E: Write> Printer<W, E> {
    pub(super) fn write_lost_event(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        let Some(ResponseTypes::LostEvents(lost)) = res.response_types.as_ref() else {
            return Ok(());
        };
        match self.opts.output {
            Output::JsonLegacy => return self.emit_json(lost),
            Output::JsonPb => return self.emit_json(res),
            _ => {}
        }
        self.text.clear();
        let source = names::lost_event_source(lost.source);
        let cpu = lost.cpu.as_ref().map_or(0, |c| c.value);
        let layout = self.opts.time_layout;
        let range = |out: &mut String| {
            if let (Some(first), Some(last)) = (lost.first.as_ref(), lost.last.as_ref()) {
                out.push_str(" (first: ");
                write_timestamp(out, layout, Some(first));
                out.push_str(", last: ");
                write_timestamp(out, layout, Some(last));
                out.push(')');
            }
        };
        let node = if res.node_name.is_empty() {
            "-"
        } else {
            res.node_name.as_str()
        };
        match self.opts.output {
            Output::Table => {
                self.table_header(&["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]);
                self.timestamp(res.time.as_ref());
                self.text.push('\t');
                if self.opts.node_name {
                    self.text.push_str(node);
                    self.text.push('\t');
                }
                let _ = write!(
                    self.text,
                    "{source}\t-\tEVENTS LOST\t-\tCPU({cpu}) - {}",
                    lost.num_events_lost
                );
                range(&mut self.text);
                self.text.push('\n');
            }
            Output::Dict => {
                if self.line != 0 {
                    self.text.push_str(DICT_SEPARATOR);
                    self.text.push('\n');
                }
                self.text.push_str("  TIMESTAMP: ");
                self.timestamp(res.time.as_ref());
                self.text.push('\n');
                if self.opts.node_name {
                    let _ = writeln!(self.text, "       NODE: {node}");
                }
                let _ = write!(
                    self.text,
                    "     SOURCE: {source}\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU({cpu}) - {}",
                    lost.num_events_lost
                );
                range(&mut self.text);
                self.text.push('\n');
            }
            _ => {
                self.timestamp(res.time.as_ref());
                let _ = write!(
                    self.text,
                    " EVENTS LOST: {source} CPU({cpu}) {}",
                    lost.num_events_lost
                );
                range(&mut self.text);
                self.text.push('\n');
            }
        }
        self.emit_text()?;
        self.line += 1;
        Ok(())
    }

    pub(super) fn write_node_status(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        let Some(ResponseTypes::NodeStatus(status)) = res.response_types.as_ref() else {
            return Ok(());
        };
        let state = relay::NodeState::try_from(status.state_change);
        let important = matches!(
            state,
            Ok(relay::NodeState::NodeError) | Ok(relay::NodeState::NodeUnavailable)
        );
        if !self.opts.debug && !important {
            return Ok(());
        }
        self.text.clear();
        let node_names = join_with_cut_off(&status.node_names, ", ", NODE_NAMES_CUT_OFF);
        match self.opts.output {
            Output::JsonPb => {
                let line = proto::json::to_string(res);
                if let Some(err) = self.err.as_mut() {
                    err.write_all(line.as_bytes())?;
                    err.write_all(b"\n")?;
                }
                return Ok(());
            }
            Output::Dict => {
                if self.line != 0 {
                    self.text.push_str(DICT_SEPARATOR);
                    self.text.push('\n');
                } else {
                    self.line += 1;
                }
                let message = if status.message.is_empty() {
                    "N/A".to_string()
                } else {
                    go_quote(&status.message)
                };
                self.text.push_str("  TIMESTAMP: ");
                self.timestamp(res.time.as_ref());
                let _ = write!(
                    self.text,
                    "\n      STATE: {}\n      NODES: {node_names}\n    MESSAGE: {message}\n",
                    names::node_state(status.state_change)
                );
            }
            Output::Table | Output::Compact => {
                self.timestamp(res.time.as_ref());
                let _ = write!(self.text, " [{}]: ", res.node_name);
                let count = status.node_names.len();
                match state {
                    Ok(relay::NodeState::NodeConnected) => {
                        let _ = write!(
                            self.text,
                            "Receiving flows from {count} nodes: {node_names}"
                        );
                    }
                    Ok(relay::NodeState::NodeUnavailable) => {
                        let _ = write!(self.text, "{count} nodes are unavailable: {node_names}");
                    }
                    Ok(relay::NodeState::NodeGone) => {
                        let _ = write!(
                            self.text,
                            "{count} nodes removed from cluster: {node_names}"
                        );
                    }
                    Ok(relay::NodeState::NodeError) => {
                        let _ = write!(
                            self.text,
                            "Error {} on {count} nodes: {node_names}",
                            go_quote(&status.message)
                        );
                    }
                    _ => {
                        let _ = write!(
                            self.text,
                            "unknown node status event: state_change:{} node_names:{:?} message:{}",
                            names::node_state(status.state_change),
                            status.node_names,
                            go_quote(&status.message)
                        );
                    }
                }
                self.text.push('\n');
            }
            Output::JsonLegacy => return Ok(()),
        }
        self.emit_text_err()
    }

    /// Prints one agent event.
    pub fn write_agent_event(&mut self, res: &GetAgentEventsResponse) -> io::Result<()> {
        let Some(event) = res.agent_event.as_ref() else {
            return Err(io::Error::other("not an agent event"));
        };
        match self.opts.output {
            Output::JsonLegacy => return self.emit_json(event),
            Output::JsonPb => return self.emit_json(res),
            _ => {}
        }
        self.text.clear();
        let kind = names::agent_event_type(event.r#type);
        let details = agent_event_details(event, self.opts.time_layout);
        match self.opts.output {
            Output::Dict => {
                if self.line != 0 {
                    self.text.push_str(DICT_SEPARATOR);
                }
                self.text.push_str("  TIMESTAMP: ");
                self.timestamp(res.time.as_ref());
                self.text.push('\n');
                if self.opts.node_name {
                    let _ = writeln!(self.text, "       NODE: {}", res.node_name);
                }
                let _ = writeln!(self.text, "       TYPE: {kind}\n    DETAILS: {details}");
            }
            Output::Table => {
                self.table_header(&["TYPE", "DETAILS"]);
                self.timestamp(res.time.as_ref());
                self.text.push('\t');
                if self.opts.node_name {
                    let _ = write!(self.text, "{}\t", res.node_name);
                }
                let _ = writeln!(self.text, "{kind}\t{details}");
            }
            _ => {
                self.timestamp(res.time.as_ref());
                if self.opts.node_name {
                    let _ = write!(self.text, " [{}]", res.node_name);
                }
                let _ = writeln!(self.text, ": {kind} ({details})");
            }
        }
        self.emit_text()?;
        self.line += 1;
        Ok(())
    }

    /// Prints one debug event.
    pub fn write_debug_event(&mut self, res: &GetDebugEventsResponse) -> io::Result<()> {
        let Some(event) = res.debug_event.as_ref() else {
            return Err(io::Error::other("not a debug event"));
        };
        match self.opts.output {
            Output::JsonLegacy => return self.emit_json(event),
            Output::JsonPb => return self.emit_json(res),
            _ => {}
        }
        self.text.clear();
        let kind = names::debug_event_type(event.r#type);
        let from = endpoint_short(event.source.as_ref());
        let mark = event
            .hash
            .as_ref()
            .map_or_else(|| "N/A".to_string(), |h| format!("0x{:x}", h.value));
        let cpu = event
            .cpu
            .as_ref()
            .map_or_else(|| "N/A".to_string(), |c| format!("{:02}", c.value));
        match self.opts.output {
            Output::Dict => {
                if self.line != 0 {
                    self.text.push_str(DICT_SEPARATOR);
                }
                self.text.push_str("  TIMESTAMP: ");
                self.timestamp(res.time.as_ref());
                self.text.push('\n');
                if self.opts.node_name {
                    let _ = writeln!(self.text, "       NODE: {}", res.node_name);
                }
                let _ = writeln!(
                    self.text,
                    "       TYPE: {kind}\n       FROM: {from}\n       MARK: {mark}\n        CPU: {cpu}\n    MESSAGE: {}",
                    event.message
                );
            }
            Output::Table => {
                if self.line == 0 {
                    self.text.push_str("TIMESTAMP\t");
                    if self.opts.node_name {
                        self.text.push_str("NODE\t");
                    }
                    self.text.push_str("FROM\t\tTYPE\tCPU/MARK\tMESSAGE\n");
                }
                self.timestamp(res.time.as_ref());
                self.text.push('\t');
                if self.opts.node_name {
                    let _ = write!(self.text, "{}\t", res.node_name);
                }
                let _ = writeln!(
                    self.text,
                    "{from}\t\t{kind}\t{cpu} {mark}\t{}",
                    event.message
                );
            }
            _ => {
                self.timestamp(res.time.as_ref());
                if self.opts.node_name {
                    let _ = write!(self.text, " [{}]", res.node_name);
                }
                let _ = writeln!(
                    self.text,
                    ": {from} {kind} MARK: {mark} CPU: {cpu} ({})",
                    event.message
                );
            }
        }
        self.emit_text()?;
        self.line += 1;
        Ok(())
    }
}

/// Joins `elems` but leaves out elements once the text would exceed `target_len`
/// (always keeping one), adding ` (and N more)`.
pub fn join_with_cut_off(elems: &[String], sep: &str, target_len: usize) -> String {
    let mut len = 0;
    let mut end = elems.len();
    for (i, elem) in elems.iter().enumerate() {
        len += elem.len() + sep.len();
        if len > target_len && i > 0 {
            end = i;
            break;
        }
    }
    let joined = elems[..end].join(sep);
    match elems.len() - end {
        0 => joined,
        omitted => format!("{joined} (and {omitted} more)"),
    }
}

/// `namespace/pod (ID: n)`, `reserved:x (ID: n)` or `ID: n`.
fn endpoint_short(ep: Option<&flow::Endpoint>) -> String {
    let Some(ep) = ep else {
        return "N/A".to_string();
    };
    let id = format!("ID: {}", ep.id);
    if !ep.namespace.is_empty() && !ep.pod_name.is_empty() {
        format!("{}/{} ({id})", ep.namespace, ep.pod_name)
    } else if ep.labels.len() == 1 && ep.labels[0].starts_with("reserved:") {
        format!("{} ({id})", ep.labels[0])
    } else {
        id
    }
}

fn host_port(ip: &str, port: u32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The DETAILS of an agent event.
#[allow(deprecated)]
pub fn agent_event_details(e: &AgentEvent, layout: TimeLayout) -> String {
    use flow::AgentEventType as T;
    let kind = T::try_from(e.r#type).ok();
    let n = e.notification.as_ref();
    let mut sb = String::new();
    match (kind, n) {
        (Some(T::AgentEventUnknown), Some(Notification::Unknown(u))) => {
            let _ = write!(sb, "type: {}, notification: {}", u.r#type, u.notification);
        }
        (Some(T::AgentStarted), Some(Notification::AgentStart(a))) => {
            sb.push_str("start time: ");
            write_timestamp(&mut sb, layout, a.time.as_ref());
        }
        (Some(T::PolicyUpdated | T::PolicyDeleted), Some(Notification::PolicyUpdate(p))) => {
            let _ = write!(
                sb,
                "labels: [{}], revision: {}, count: {}",
                p.labels.join(","),
                p.revision,
                p.rule_count
            );
        }
        (
            Some(T::EndpointRegenerateSuccess | T::EndpointRegenerateFailure),
            Some(Notification::EndpointRegenerate(r)),
        ) => {
            let _ = write!(sb, "id: {}, labels: [{}]", r.id, r.labels.join(","));
            if !r.error.is_empty() {
                let _ = write!(sb, ", error: {}", r.error);
            }
        }
        (Some(T::EndpointCreated | T::EndpointDeleted), Some(Notification::EndpointUpdate(ep))) => {
            let _ = write!(sb, "id: {}", ep.id);
            if !ep.namespace.is_empty() {
                let _ = write!(sb, ", namespace: {}", ep.namespace);
            }
            if !ep.pod_name.is_empty() {
                let _ = write!(sb, ", pod name: {}", ep.pod_name);
            }
        }
        (Some(T::IpcacheUpserted | T::IpcacheDeleted), Some(Notification::IpcacheUpdate(i))) => {
            let _ = write!(sb, "cidr: {}, identity: {}", i.cidr, i.identity);
            if let Some(old) = i.old_identity.as_ref() {
                let _ = write!(sb, ", old identity: {}", old.value);
            }
            if !i.host_ip.is_empty() {
                let _ = write!(sb, ", host ip: {}", i.host_ip);
            }
            if !i.old_host_ip.is_empty() {
                let _ = write!(sb, ", old host ip: {}", i.old_host_ip);
            }
            let _ = write!(sb, ", encrypt key: {}", i.encrypt_key);
        }
        (Some(T::ServiceUpserted), Some(Notification::ServiceUpsert(svc))) => {
            let _ = write!(sb, "id: {}", svc.id);
            if let Some(fe) = svc.frontend_address.as_ref() {
                let _ = write!(sb, ", frontend: {}", host_port(&fe.ip, fe.port));
            }
            if !svc.backend_addresses.is_empty() {
                let backends: Vec<String> = svc
                    .backend_addresses
                    .iter()
                    .map(|a| host_port(&a.ip, a.port))
                    .collect();
                let _ = write!(sb, ", backends: [{}]", backends.join(","));
            }
            if !svc.r#type.is_empty() {
                let _ = write!(sb, ", type: {}", svc.r#type);
            }
            if !svc.traffic_policy.is_empty() {
                let _ = write!(sb, ", traffic policy: {}", svc.traffic_policy);
            }
            if !svc.namespace.is_empty() {
                let _ = write!(sb, ", namespace: {}", svc.namespace);
            }
            if !svc.name.is_empty() {
                let _ = write!(sb, ", name: {}", svc.name);
            }
        }
        (Some(T::ServiceDeleted), Some(Notification::ServiceDelete(s))) => {
            let _ = write!(sb, "id: {}", s.id);
        }
        _ => sb.push_str("UNKNOWN"),
    }
    sb
}
