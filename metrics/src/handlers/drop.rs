//! `drop`: `hubble_drop_total{reason,protocol}` counts dropped flows.

use proto::flow::{Flow, Verdict};

use super::{labels_after_context, Handler};
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;
use crate::names;

pub struct DropHandler {
    context: ContextOptions,
    drops: CounterVec,
}

impl DropHandler {
    pub fn new(context: ContextOptions) -> Self {
        let labels = labels_after_context(&context, &["reason", "protocol"]);
        Self {
            drops: CounterVec::new("hubble_drop_total", "Number of drops", labels),
            context,
        }
    }
}

impl Handler for DropHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        if flow.verdict != Verdict::Dropped as i32 {
            return;
        }
        self.context.push_values(flow, false, key);
        key.push(&proto::names::drop_reason_desc(flow.drop_reason_desc));
        key.push(names::flow_protocol(flow));
        self.drops.inc(key);
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.drops]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![&mut self.drops]
    }
}
