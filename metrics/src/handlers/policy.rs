//! `policy`: `hubble_policy_verdicts_total{direction,match,action}` counts policy
//! verdict events and L7 access-log verdicts.

use proto::flow::{layer7, Flow};

use super::{labels_before_context, Handler};
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;
use crate::names;
use proto::names::{
    ReservedIdentity, MESSAGE_TYPE_ACCESS_LOG as ACCESS_LOG,
    MESSAGE_TYPE_POLICY_VERDICT as POLICY_VERDICT,
};

pub struct PolicyHandler {
    context: ContextOptions,
    verdicts: CounterVec,
}

impl PolicyHandler {
    pub fn new(context: ContextOptions) -> Self {
        let labels = labels_before_context(&["direction", "match", "action"], &context);
        Self {
            verdicts: CounterVec::new(
                "hubble_policy_verdicts_total",
                "Total number of Cilium network policy verdicts",
                labels,
            ),
            context,
        }
    }
}

impl Handler for PolicyHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        let event_type = names::event_type(flow);
        if event_type != POLICY_VERDICT && event_type != ACCESS_LOG {
            return;
        }
        match event_type {
            POLICY_VERDICT => {
                // The host may reach every local endpoint; its verdicts are not counted.
                if flow
                    .source
                    .as_ref()
                    .is_some_and(|s| s.identity == ReservedIdentity::Host.id())
                {
                    return;
                }
                names::push_traffic_direction_lower(key, flow.traffic_direction);
                names::push_policy_match_type_lower(key, flow.policy_match_type);
            }
            ACCESS_LOG => {
                let protocol = match flow.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
                    Some(layer7::Record::Dns(_)) => "dns",
                    Some(layer7::Record::Http(_)) => "http",
                    Some(layer7::Record::Kafka(_)) => "kafka",
                    None => "",
                };
                names::push_traffic_direction_lower(key, flow.traffic_direction);
                key.push_parts(&["l7/", protocol]);
            }
            _ => return,
        }
        names::push_verdict_lower(key, flow.verdict);
        self.context.push_values(flow, false, key);
        self.verdicts.inc(key);
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.verdicts]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![&mut self.verdicts]
    }
}
