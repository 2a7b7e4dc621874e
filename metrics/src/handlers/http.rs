//! `http` and `httpV2`: HTTP request and response counters and the request duration
//! histogram, with trace IDs as exemplars when `exemplars=true`.
//!
//! `http` counts requests and responses separately; `httpV2` counts responses only, in
//! `hubble_http_requests_total` with the status, and names source and destination from
//! the request's point of view (the response flow's endpoints swapped).

use proto::flow::{layer7, Flow, L7FlowType, TrafficDirection};

use super::{labels_after_context, Handler};
use crate::config::HandlerFlags;
use crate::context::ContextOptions;
use crate::family::{CounterVec, HistogramVec, LabelledFamily, DEFAULT_BUCKETS};
use crate::key::KeyBuf;

pub struct HttpHandler {
    context: ContextOptions,
    exemplars: bool,
    v2: bool,
    requests: CounterVec,
    /// Only for `http` (v1).
    responses: Option<CounterVec>,
    duration: HistogramVec,
}

impl HttpHandler {
    pub fn new(context: ContextOptions, flags: HandlerFlags, v2: bool) -> Self {
        let request_labels: &[&'static str] = if v2 {
            &["method", "protocol", "status", "reporter"]
        } else {
            &["method", "protocol", "reporter"]
        };
        let requests = CounterVec::new(
            "hubble_http_requests_total",
            "Count of HTTP requests",
            labels_after_context(&context, request_labels),
        );
        let responses = (!v2).then(|| {
            CounterVec::new(
                "hubble_http_responses_total",
                "Count of HTTP responses",
                labels_after_context(&context, &["method", "protocol", "status", "reporter"]),
            )
        });
        let duration = HistogramVec::new(
            "hubble_http_request_duration_seconds",
            "Quantiles of HTTP request duration in seconds",
            labels_after_context(&context, &["method", "reporter"]),
            DEFAULT_BUCKETS,
        );
        Self {
            context,
            exemplars: flags.exemplars,
            v2,
            requests,
            responses,
            duration,
        }
    }
}

fn reporter(flow: &Flow) -> &'static str {
    match TrafficDirection::try_from(flow.traffic_direction) {
        Ok(TrafficDirection::Egress) => "client",
        Ok(TrafficDirection::Ingress) => "server",
        _ => "unknown",
    }
}

impl Handler for HttpHandler {
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf) {
        let Some(l7) = flow.l7.as_ref() else {
            return;
        };
        let Some(layer7::Record::Http(http)) = l7.record.as_ref() else {
            return;
        };
        let is_request = l7.r#type == L7FlowType::Request as i32;
        let is_response = l7.r#type == L7FlowType::Response as i32;
        if !(is_response || (is_request && !self.v2)) {
            return;
        }
        let trace_id = if self.exemplars {
            flow.trace_context
                .as_ref()
                .and_then(|t| t.parent.as_ref())
                .map_or("", |p| p.trace_id.as_str())
        } else {
            ""
        };
        let reporter = reporter(flow);
        self.context.push_values(flow, self.v2, key);
        let context_end = key.mark();
        key.push(&http.method);
        key.push(&http.protocol);
        if is_request {
            key.push(reporter);
            self.requests.inc_with_exemplar(key, trace_id);
            return;
        }
        key.push_u32(http.code);
        key.push(reporter);
        match self.responses.as_mut() {
            Some(responses) => responses.inc_with_exemplar(key, trace_id),
            None => self.requests.inc_with_exemplar(key, trace_id),
        }
        key.truncate(context_end);
        key.push(&http.method);
        key.push(reporter);
        let seconds = l7.latency_ns as f64 / 1e9;
        self.duration.observe(key, seconds, trace_id);
    }

    fn context(&self) -> &ContextOptions {
        &self.context
    }

    fn families(&self) -> Vec<&dyn LabelledFamily> {
        let mut families: Vec<&dyn LabelledFamily> = vec![&self.requests];
        if let Some(responses) = &self.responses {
            families.push(responses);
        }
        families.push(&self.duration);
        families
    }

    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily> {
        let mut families: Vec<&mut dyn LabelledFamily> = vec![&mut self.requests];
        if let Some(responses) = self.responses.as_mut() {
            families.push(responses);
        }
        families.push(&mut self.duration);
        families
    }
}
