//! `flow`: `hubble_flows_processed_total{protocol,type,subtype,verdict}` counts every flow.

use proto::flow::{layer7, Flow};

use super::{labels_before_context, Handler};
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;
use crate::names;
use proto::names::{
    MESSAGE_TYPE_ACCESS_LOG, MESSAGE_TYPE_CAPTURE, MESSAGE_TYPE_DROP, MESSAGE_TYPE_POLICY_VERDICT,
    MESSAGE_TYPE_TRACE,
};

pub struct FlowHandler {
    context: ContextOptions,
    flows: CounterVec,
}

impl FlowHandler {
    pub fn new(context: ContextOptions) -> Self {
        let labels = labels_before_context(&["protocol", "type", "subtype", "verdict"], &context);
        Self {
            flows: CounterVec::new(
                "hubble_flows_processed_total",
                "Total number of flows processed",
                labels,
            ),
            context,
        }
    }
}

impl Handler for FlowHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        key.push(names::flow_protocol(flow));
        let event_type = names::event_type(flow);
        match event_type {
            MESSAGE_TYPE_ACCESS_LOG => {
                key.push("L7");
                key.push(match flow.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
                    Some(layer7::Record::Dns(_)) => "DNS",
                    Some(layer7::Record::Http(_)) => "HTTP",
                    Some(layer7::Record::Kafka(_)) => "Kafka",
                    None => "",
                });
            }
            MESSAGE_TYPE_DROP => {
                key.push("Drop");
                key.push("");
            }
            MESSAGE_TYPE_CAPTURE => {
                key.push("Capture");
                key.push("");
            }
            MESSAGE_TYPE_TRACE => {
                key.push("Trace");
                let sub_type = flow.event_type.as_ref().map_or(0, |e| e.sub_type);
                key.push(names::trace_observation_point(sub_type));
            }
            MESSAGE_TYPE_POLICY_VERDICT => {
                key.push("PolicyVerdict");
                key.push("");
            }
            other => {
                key.push("Unknown");
                key.push_fmt(format_args!("{other}"));
            }
        }
        key.push(&proto::names::verdict(flow.verdict));
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
