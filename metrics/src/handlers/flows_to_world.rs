//! `flows-to-world`: `hubble_flows_to_world_total{protocol,verdict}` counts non-reply
//! flows whose destination carries the `reserved:world` label.

use proto::flow::{layer4, DropReason, Flow, Verdict};

use super::{labels_before_context, Handler};
use crate::config::HandlerFlags;
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;
use crate::names;

/// The identity label of destinations outside the cluster.
const WORLD_LABEL: &str = "reserved:world";

pub struct FlowsToWorldHandler {
    context: ContextOptions,
    flags: HandlerFlags,
    flows: CounterVec,
}

impl FlowsToWorldHandler {
    pub fn new(context: ContextOptions, flags: HandlerFlags) -> Self {
        let own: &[&'static str] = if flags.port {
            &["protocol", "verdict", "port"]
        } else {
            &["protocol", "verdict"]
        };
        let labels = labels_before_context(own, &context);
        Self {
            flows: CounterVec::new(
                "hubble_flows_to_world_total",
                "Total number of flows to reserved:world",
                labels,
            ),
            context,
            flags,
        }
    }
}

impl Handler for FlowsToWorldHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        let to_world = flow
            .destination
            .as_ref()
            .is_some_and(|d| d.labels.iter().any(|l| l == WORLD_LABEL));
        let Some(l4) = flow.l4.as_ref() else {
            return;
        };
        if !to_world || flow.event_type.is_none() {
            return;
        }
        let dropped = flow.verdict == Verdict::Dropped as i32;
        if dropped
            && !self.flags.any_drop
            && flow.drop_reason_desc != DropReason::PolicyDenied as i32
        {
            return;
        }
        let is_reply = flow.is_reply.as_ref().is_some_and(|r| r.value);
        if !dropped && is_reply {
            return;
        }
        let tcp = match l4.protocol.as_ref() {
            Some(layer4::Protocol::Tcp(tcp)) => Some(tcp),
            _ => None,
        };
        let syn = tcp.and_then(|t| t.flags.as_ref()).is_some_and(|f| f.syn);
        if self.flags.syn_only && (!syn || is_reply) {
            return;
        }
        key.push(names::flow_protocol(flow));
        key.push(&proto::names::verdict(flow.verdict));
        if self.flags.port {
            match l4.protocol.as_ref() {
                Some(layer4::Protocol::Tcp(t)) => key.push_u32(t.destination_port),
                Some(layer4::Protocol::Udp(u)) => key.push_u32(u.destination_port),
                Some(layer4::Protocol::Sctp(s)) => key.push_u32(s.destination_port),
                _ => key.push(""),
            }
        }
        self.context.push_values(flow, false, key);
        self.flows.inc(key);
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.flows]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![&mut self.flows]
    }
}
