//! One table row: the text of each column, formatted once by the printer's own pieces
//! when the flow arrives, next to the flow itself for the detail pane.

use proto::flow::{self, Flow};

use crate::printer::{self, Colorer, FlowStyle};
use crate::time::{write_timestamp, TimeLayout};

/// How a verdict is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictClass {
    /// Forwarded or redirected: green.
    Forwarded,
    /// Dropped or error: red.
    Dropped,
    /// Audit: yellow.
    Audit,
    /// Anything else: uncoloured.
    Other,
}

impl VerdictClass {
    /// Classifies a flow's verdict.
    pub fn of(f: &Flow) -> Self {
        match flow::Verdict::try_from(f.verdict) {
            Ok(flow::Verdict::Forwarded | flow::Verdict::Redirected) => Self::Forwarded,
            Ok(flow::Verdict::Dropped | flow::Verdict::Error) => Self::Dropped,
            Ok(flow::Verdict::Audit) => Self::Audit,
            _ => Self::Other,
        }
    }
}

/// A received flow and its column texts.
#[derive(Debug, Clone)]
pub struct Row {
    pub flow: Box<Flow>,
    pub time: String,
    pub node: String,
    pub source: String,
    pub destination: String,
    pub kind: String,
    pub verdict: String,
    pub class: VerdictClass,
    pub summary: String,
}

impl Row {
    /// Formats `flow` as `hubble observe`'s compact output does, without colours.
    pub fn new(flow: Box<Flow>) -> Self {
        let style = FlowStyle {
            colors: Colorer { enabled: false },
            ip_translation: true,
            policy_names: false,
        };
        let mut time = String::new();
        write_timestamp(
            &mut time,
            TimeLayout::from_name("StampMilli"),
            flow.time.as_ref(),
        );
        let mut source = String::new();
        let mut destination = String::new();
        printer::write_host_names(&style, &flow, &mut source, &mut destination);
        let mut kind = String::new();
        printer::write_flow_type(&flow, &mut kind);
        let mut verdict = String::new();
        printer::write_verdict(&style, &flow, &mut verdict);
        let mut summary = String::new();
        printer::write_summary(&style.colors, &flow, &mut summary);
        Self {
            time,
            node: flow.node_name.clone(),
            source,
            destination,
            kind,
            verdict,
            class: VerdictClass::of(&flow),
            summary,
            flow,
        }
    }

    /// The flow as indented JSON, for the detail pane.
    pub fn json(&self) -> String {
        crate::jsonindent::indent(&proto::json::to_string(self.flow.as_ref()), "  ")
    }
}
