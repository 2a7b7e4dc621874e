//! `icmp`: `hubble_icmp_total{family,type}` counts ICMP messages by type.

use proto::flow::{layer4, Flow};

use super::{labels_before_context, Handler};
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;

pub struct IcmpHandler {
    context: ContextOptions,
    messages: CounterVec,
}

impl IcmpHandler {
    pub fn new(context: ContextOptions) -> Self {
        let labels = labels_before_context(&["family", "type"], &context);
        Self {
            messages: CounterVec::new("hubble_icmp_total", "Number of ICMP messages", labels),
            context,
        }
    }
}

impl Handler for IcmpHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        let type_code = match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
            Some(layer4::Protocol::IcmPv4(icmp)) => {
                proto::names::icmpv4_type_code(icmp.r#type as u8, icmp.code as u8)
            }
            // Upstream labels ICMPv6 messages with family "IPv4" as well; kept so that
            // dashboards and recording rules written against upstream match.
            Some(layer4::Protocol::IcmPv6(icmp)) => {
                proto::names::icmpv6_type_code(icmp.r#type as u8, icmp.code as u8)
            }
            _ => return,
        };
        key.push("IPv4");
        key.push(&type_code);
        self.context.push_values(flow, false, key);
        self.messages.inc(key);
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.messages]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![&mut self.messages]
    }
}
