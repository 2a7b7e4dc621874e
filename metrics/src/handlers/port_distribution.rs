//! `port-distribution`: `hubble_port_distribution_total{protocol,port}` counts forwarded
//! requests by destination port.

use proto::flow::{layer4, Flow, Verdict};

use super::{labels_before_context, Handler};
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;

pub struct PortDistributionHandler {
    context: ContextOptions,
    ports: CounterVec,
}

impl PortDistributionHandler {
    pub fn new(context: ContextOptions) -> Self {
        let labels = labels_before_context(&["protocol", "port"], &context);
        Self {
            ports: CounterVec::new(
                "hubble_port_distribution_total",
                "Numbers of packets distributed by destination port",
                labels,
            ),
            context,
        }
    }
}

impl Handler for PortDistributionHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        // A flow not known to be a request (no is_reply) is skipped, as upstream does:
        // its destination port may be an ephemeral one.
        let is_request = flow.is_reply.as_ref().is_some_and(|r| !r.value);
        let forwarded =
            flow.verdict == Verdict::Forwarded as i32 || flow.verdict == Verdict::Redirected as i32;
        if !forwarded || !is_request {
            return;
        }
        let (protocol, port) = match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
            Some(layer4::Protocol::Tcp(tcp)) => ("TCP", tcp.destination_port),
            Some(layer4::Protocol::Udp(udp)) => ("UDP", udp.destination_port),
            Some(layer4::Protocol::Sctp(sctp)) => ("SCTP", sctp.destination_port),
            Some(layer4::Protocol::IcmPv4(_)) => ("ICMPv4", 0),
            Some(layer4::Protocol::IcmPv6(_)) => ("ICMPv6", 0),
            _ => return,
        };
        key.push(protocol);
        key.push_u32(port);
        self.context.push_values(flow, false, key);
        self.ports.inc(key);
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.ports]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![&mut self.ports]
    }
}
