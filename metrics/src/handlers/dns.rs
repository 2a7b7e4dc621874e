//! `dns`: `hubble_dns_queries_total`, `hubble_dns_responses_total` and
//! `hubble_dns_response_types_total` count DNS requests and responses seen by the proxy.

use proto::flow::{layer7, Flow, Verdict};

use super::{labels_after_context, Handler};
use crate::config::HandlerFlags;
use crate::context::ContextOptions;
use crate::family::{CounterVec, LabelledFamily};
use crate::key::KeyBuf;

pub struct DnsHandler {
    context: ContextOptions,
    flags: HandlerFlags,
    queries: CounterVec,
    responses: CounterVec,
    response_types: CounterVec,
}

impl DnsHandler {
    pub fn new(context: ContextOptions, flags: HandlerFlags) -> Self {
        let mut common: Vec<&'static str> = vec!["rcode", "qtypes", "ips_returned"];
        let mut types: Vec<&'static str> = vec!["type", "qtypes"];
        if flags.query {
            common.push("query");
            types.push("query");
        }
        let common = labels_after_context(&context, &common);
        let types = labels_after_context(&context, &types);
        Self {
            queries: CounterVec::new(
                "hubble_dns_queries_total",
                "Number of DNS queries observed",
                common.clone(),
            ),
            // Upstream uses the same help text for all three families.
            responses: CounterVec::new(
                "hubble_dns_responses_total",
                "Number of DNS queries observed",
                common,
            ),
            response_types: CounterVec::new(
                "hubble_dns_response_types_total",
                "Number of DNS queries observed",
                types,
            ),
            context,
            flags,
        }
    }
}

impl Handler for DnsHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        let Some(layer7::Record::Dns(dns)) = flow.l7.as_ref().and_then(|l7| l7.record.as_ref())
        else {
            return;
        };
        if self.flags.ignore_aaaa && dns.qtypes.len() == 1 && dns.qtypes[0] == "AAAA" {
            return;
        }
        self.context.push_values(flow, false, key);
        let context_end = key.mark();
        let dropped = flow.verdict == Verdict::Dropped as i32;
        let is_reply = flow.is_reply.as_ref().is_some_and(|r| r.value);
        let rcode = if dropped {
            "Policy denied"
        } else if is_reply {
            proto::names::dns_rcode(dns.rcode)
        } else {
            ""
        };
        key.push(rcode);
        key.push_joined(&dns.qtypes, ",");
        key.push_fmt(format_args!("{}", dns.ips.len()));
        if self.flags.query {
            key.push(&dns.query);
        }
        if dropped || !is_reply {
            self.queries.inc(key);
            return;
        }
        self.responses.inc(key);
        for response_type in &dns.rrtypes {
            key.truncate(context_end);
            key.push(response_type);
            key.push_joined(&dns.qtypes, ",");
            if self.flags.query {
                key.push(&dns.query);
            }
            self.response_types.inc(key);
        }
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        vec![&self.queries, &self.responses, &self.response_types]
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        vec![
            &mut self.queries,
            &mut self.responses,
            &mut self.response_types,
        ]
    }
}
