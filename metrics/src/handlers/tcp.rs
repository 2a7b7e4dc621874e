//! `tcp`: `hubble_tcp_flags_total{flag,family}` counts SYN, SYN-ACK, FIN and RST of
//! forwarded TCP flows.

use proto::flow::{layer4, Flow, Verdict};

use super::{labels_before_context, Handler};
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;

pub struct TcpHandler {
    context: ContextOptions,
    flags: CounterVec,
}

impl TcpHandler {
    pub fn new(context: ContextOptions) -> Self {
        let labels = labels_before_context(&["flag", "family"], &context);
        Self {
            flags: CounterVec::new("hubble_tcp_flags_total", "TCP flag occurrences", labels),
            context,
        }
    }

    fn count(&mut self, flag: &str, family: &str, flow: &Flow, key: &mut KeyBuf) {
        key.clear();
        key.push(flag);
        key.push(family);
        self.context.push_values(flow, false, key);
        self.flags.inc(key);
    }
}

impl Handler for TcpHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        let forwarded =
            flow.verdict == Verdict::Forwarded as i32 || flow.verdict == Verdict::Redirected as i32;
        let Some(ip) = flow.ip.as_ref().filter(|_| forwarded) else {
            return;
        };
        let Some(layer4::Protocol::Tcp(tcp)) = flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref())
        else {
            return;
        };
        let Some(flags) = tcp.flags.as_ref() else {
            return;
        };
        let family = proto::names::ip_version(ip.ip_version);
        if flags.fin {
            self.count("FIN", &family, flow, key);
        }
        if flags.syn {
            let flag = if flags.ack { "SYN-ACK" } else { "SYN" };
            self.count(flag, &family, flow, key);
        }
        if flags.rst {
            self.count("RST", &family, flow, key);
        }
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.flags]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![&mut self.flags]
    }
}
