//! Upstream `hubble`'s printer: flows, lost events, node status events, agent and debug
//! events and server status in the `compact`, `dict`, `table`, `json` and `jsonpb`
//! formats, byte for byte.
//!
//! Text is assembled per record in a reusable buffer, passed through upstream's
//! terminal escaping and written to the output; `table` goes through a tab writer
//! that aligns everything when the printer is closed.

use std::io::{self, Write};

use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

use crate::time::{write_timestamp, TimeLayout};

mod color;
mod events;
mod flow;
mod status;
mod tabwriter;

pub use color::{escape_terminal, Color, ColorMode, Colorer};
pub use flow::{write_host_names, write_summary, write_verdict, FlowStyle};
pub use proto::names::write_flow_type;
pub use tabwriter::TabWriter;

/// Separator printed between records in the `dict` format.
const DICT_SEPARATOR: &str = "------------";

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Tab-aligned columns (`table`).
    Table,
    /// The flow (not the response) as JSON (`json` with
    /// `HUBBLE_COMPAT=legacy-json-output`).
    JsonLegacy,
    /// One line per event (`compact`).
    #[default]
    Compact,
    /// `KEY: value` blocks (`dict`).
    Dict,
    /// The whole response as protobuf JSON (`jsonpb`, and `json`).
    JsonPb,
}

/// Printer settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrinterOptions {
    pub output: Output,
    /// Whether colours are wanted; only `compact` and `dict` use them.
    pub color: bool,
    pub ip_translation: bool,
    pub node_name: bool,
    pub policy_names: bool,
    /// Print informational node status events too.
    pub debug: bool,
    pub time_layout: TimeLayout,
}

/// Writes events to an output and node status events and warnings to an error output.
pub struct Printer<W: Write, E: Write> {
    opts: PrinterOptions,
    style: FlowStyle,
    out: W,
    err: Option<E>,
    /// Records written so far (decides headers and separators).
    line: u64,
    tab: TabWriter,
    text: String,
    bytes: Vec<u8>,
    json: proto::json::Writer,
    src: String,
    dst: String,
    src_identity: String,
    dst_identity: String,
}

impl<W: Write, E: Write> Printer<W, E> {
    /// Creates a printer writing to `out`, and to `err` unless it is `None`
    /// (`--silent-errors`).
    pub fn new(opts: PrinterOptions, out: W, err: Option<E>) -> Self {
        let color = opts.color && matches!(opts.output, Output::Compact | Output::Dict);
        let colors = Colorer { enabled: color };
        Self {
            opts,
            style: FlowStyle {
                colors,
                ip_translation: opts.ip_translation,
                policy_names: opts.policy_names,
            },
            out,
            err,
            line: 0,
            tab: TabWriter::default(),
            text: String::with_capacity(256),
            bytes: Vec::with_capacity(256),
            json: proto::json::Writer::with_capacity(1024),
            src: String::new(),
            dst: String::new(),
            src_identity: String::new(),
            dst_identity: String::new(),
        }
    }

    /// Whether flows are printed with their labels (the JSON formats print every
    /// field; the others print none of the endpoints' or the node's labels).
    pub fn prints_labels(&self) -> bool {
        matches!(self.opts.output, Output::JsonLegacy | Output::JsonPb)
    }

    /// The output writer.
    pub fn out_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Prints one `GetFlows` response of any kind.
    pub fn write_get_flows_response(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        match res.response_types {
            Some(ResponseTypes::Flow(_)) => self.write_flow(res),
            Some(ResponseTypes::NodeStatus(_)) => self.write_node_status(res),
            Some(ResponseTypes::LostEvents(_)) => self.write_lost_event(res),
            None => Ok(()),
        }
    }

    /// Flushes what was written so far (the table format's rows wait for `close`).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Aligns and writes what the table format buffered, and flushes.
    pub fn close(&mut self) -> io::Result<()> {
        if self.opts.output == Output::Table {
            let mut aligned = String::new();
            self.tab.flush(&mut aligned);
            self.out.write_all(aligned.as_bytes())?;
        }
        self.out.flush()?;
        if let Some(err) = self.err.as_mut() {
            err.flush()?;
        }
        Ok(())
    }

    fn timestamp(&mut self, ts: Option<&pbjson_types::Timestamp>) {
        write_timestamp(&mut self.text, self.opts.time_layout, ts);
    }

    /// Escapes the assembled text and sends it to the output (through the tab writer
    /// for the table format).
    fn emit_text(&mut self) -> io::Result<()> {
        self.bytes.clear();
        escape_terminal(&mut self.bytes, &self.text, self.style.colors.enabled);
        if self.opts.output == Output::Table {
            if let Ok(text) = std::str::from_utf8(&self.bytes) {
                self.tab.write_str(text);
            }
            return Ok(());
        }
        self.out.write_all(&self.bytes)
    }

    /// Escapes the assembled text and sends it to the error output.
    fn emit_text_err(&mut self) -> io::Result<()> {
        self.bytes.clear();
        escape_terminal(&mut self.bytes, &self.text, self.style.colors.enabled);
        match self.err.as_mut() {
            Some(err) => err.write_all(&self.bytes),
            None => Ok(()),
        }
    }

    /// Writes `value` as one line of upstream JSON to the output.
    fn emit_json<T: proto::json::ToJson + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        proto::json::write_line(&mut self.json, value, &mut self.out)
    }

    fn write_flow(&mut self, res: &GetFlowsResponse) -> io::Result<()> {
        let Some(ResponseTypes::Flow(f)) = res.response_types.as_ref() else {
            return Ok(());
        };
        match self.opts.output {
            Output::JsonLegacy => return self.emit_json(f),
            Output::JsonPb => return self.emit_json(res),
            _ => {}
        }
        self.text.clear();
        self.src.clear();
        self.dst.clear();
        flow::write_host_names(&self.style, f, &mut self.src, &mut self.dst);
        match self.opts.output {
            Output::Table => self.flow_table(f),
            Output::Dict => self.flow_dict(f),
            _ => self.flow_compact(f),
        }
        self.emit_text()?;
        self.line += 1;
        Ok(())
    }

    fn flow_compact(&mut self, f: &proto::flow::Flow) {
        let colors = self.style.colors;
        self.src_identity.clear();
        self.dst_identity.clear();
        let src_id = f.source.as_ref().map_or(0, |e| e.identity);
        let dst_id = f.destination.as_ref().map_or(0, |e| e.identity);
        flow::write_identity(&colors, src_id, &mut self.src_identity);
        flow::write_identity(&colors, dst_id, &mut self.dst_identity);
        self.timestamp(f.time.as_ref());
        if self.opts.node_name {
            self.text.push_str(" [");
            self.text.push_str(&f.node_name);
            self.text.push(']');
        }
        self.text.push_str(": ");
        let (arrow, swap) = match f.is_reply.as_ref() {
            None => ("<>", false),
            Some(v) if v.value => ("<-", true),
            Some(_) => ("->", false),
        };
        let (a, a_id, b, b_id) = if swap {
            (&self.dst, &self.dst_identity, &self.src, &self.src_identity)
        } else {
            (&self.src, &self.src_identity, &self.dst, &self.dst_identity)
        };
        for part in [a.as_str(), " ", a_id, " ", arrow, " ", b, " ", b_id, " "] {
            self.text.push_str(part);
        }
        write_flow_type(f, &mut self.text);
        self.text.push(' ');
        flow::write_verdict(&self.style, f, &mut self.text);
        self.text.push_str(" (");
        flow::write_summary(&colors, f, &mut self.text);
        self.text.push_str(")\n");
    }

    fn flow_dict(&mut self, f: &proto::flow::Flow) {
        if self.line != 0 {
            self.text.push_str(DICT_SEPARATOR);
            self.text.push('\n');
        }
        self.text.push_str("  TIMESTAMP: ");
        self.timestamp(f.time.as_ref());
        self.text.push('\n');
        if self.opts.node_name {
            self.text.push_str("       NODE: ");
            self.text.push_str(&f.node_name);
            self.text.push('\n');
        }
        self.text.push_str("     SOURCE: ");
        self.text.push_str(&self.src);
        self.text.push_str("\nDESTINATION: ");
        self.text.push_str(&self.dst);
        self.text.push_str("\n       TYPE: ");
        write_flow_type(f, &mut self.text);
        self.text.push_str("\n    VERDICT: ");
        flow::write_verdict(&self.style, f, &mut self.text);
        self.text.push_str("\n    SUMMARY: ");
        flow::write_summary(&self.style.colors, f, &mut self.text);
        self.text.push('\n');
    }

    fn flow_table(&mut self, f: &proto::flow::Flow) {
        self.table_header(&["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]);
        self.timestamp(f.time.as_ref());
        self.text.push('\t');
        if self.opts.node_name {
            self.text.push_str(&f.node_name);
            self.text.push('\t');
        }
        self.text.push_str(&self.src);
        self.text.push('\t');
        self.text.push_str(&self.dst);
        self.text.push('\t');
        write_flow_type(f, &mut self.text);
        self.text.push('\t');
        flow::write_verdict(&self.style, f, &mut self.text);
        self.text.push('\t');
        flow::write_summary(&self.style.colors, f, &mut self.text);
        self.text.push('\n');
    }

    /// The table header (`TIMESTAMP`, `NODE` when asked, then `columns`) before the
    /// first record.
    fn table_header(&mut self, columns: &[&str]) {
        if self.line != 0 {
            return;
        }
        self.text.push_str("TIMESTAMP\t");
        if self.opts.node_name {
            self.text.push_str("NODE\t");
        }
        for (i, column) in columns.iter().enumerate() {
            self.text.push_str(column);
            self.text
                .push(if i + 1 == columns.len() { '\n' } else { '\t' });
        }
    }
}

#[cfg(test)]
mod tests;
