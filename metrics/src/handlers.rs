//! The flow handlers: each turns flows into the series of one upstream metrics plugin.
//!
//! Handlers are infallible by construction: they read optional fields with defaults,
//! never index out of bounds and never unwrap, so a malformed flow yields empty label
//! values rather than an error. [`crate::Metrics`] still runs each one under
//! `catch_unwind`, so that a bug in one handler cannot stop the others.

use proto::flow::Flow;

use crate::config::{HandlerConfig, HandlerKind};
use crate::context::ContextOptions;
use crate::exposition::FamilySnapshot;
use crate::family::LabelledFamily;
use crate::key::KeyBuf;

mod dns;
mod drop;
mod flow;
mod flows_to_world;
mod http;
mod icmp;
mod policy;
mod port_distribution;
mod tcp;

#[cfg(test)]
pub(crate) mod tests;

/// One metrics plugin turning flows into series.
pub trait Handler: Send {
    /// Counts `flow`; `key` is a scratch buffer, empty on entry.
    fn process(&mut self, flow: &Flow, key: &mut KeyBuf);
    /// The handler's context options, used to find the series of a deleted pod.
    fn context(&self) -> &ContextOptions;
    /// The handler's families.
    fn families(&self) -> Vec<&dyn LabelledFamily>;
    /// The handler's families, for removing series.
    fn families_mut(&mut self) -> Vec<&mut dyn LabelledFamily>;
}

/// Builds the handler a configuration entry asks for.
pub fn build(config: &HandlerConfig) -> Box<dyn Handler> {
    let context = config.context.clone();
    let flags = config.flags;
    match config.kind {
        HandlerKind::Dns => Box::new(dns::DnsHandler::new(context, flags)),
        HandlerKind::Drop => Box::new(drop::DropHandler::new(context)),
        HandlerKind::Tcp => Box::new(tcp::TcpHandler::new(context)),
        HandlerKind::Flow => Box::new(flow::FlowHandler::new(context)),
        HandlerKind::PortDistribution => {
            Box::new(port_distribution::PortDistributionHandler::new(context))
        }
        HandlerKind::Icmp => Box::new(icmp::IcmpHandler::new(context)),
        HandlerKind::Http => Box::new(http::HttpHandler::new(context, flags, false)),
        HandlerKind::HttpV2 => Box::new(http::HttpHandler::new(context, flags, true)),
        HandlerKind::Policy => Box::new(policy::PolicyHandler::new(context)),
        HandlerKind::FlowsToWorld => {
            Box::new(flows_to_world::FlowsToWorldHandler::new(context, flags))
        }
    }
}

/// Label names: the handler's own labels before or after the context labels.
pub(crate) fn labels_after_context(
    context: &ContextOptions,
    own: &[&'static str],
) -> Vec<&'static str> {
    let mut names = context.label_names();
    names.extend_from_slice(own);
    names
}

pub(crate) fn labels_before_context(
    own: &[&'static str],
    context: &ContextOptions,
) -> Vec<&'static str> {
    let mut names = own.to_vec();
    names.extend(context.label_names());
    names
}

/// Removes the series bound to pod `namespace/pod` from every family of `handler`:
/// those whose `source` or `destination` label is `namespace/pod` when that context
/// uses `pod`, and those whose `*_namespace` and `*_pod` labels match the pod.
pub fn delete_pod_series(handler: &mut dyn Handler, namespace: &str, pod: &str) -> usize {
    let context = handler.context().clone();
    let qualified = format!("{namespace}/{pod}");
    let mut removed = 0;
    for family in handler.families_mut() {
        let index = |name: &str| family.label_names().iter().position(|l| *l == name);
        let mut rules: Vec<Vec<(usize, &str)>> = Vec::new();
        for (side, label) in [(true, "source"), (false, "destination")] {
            if context.uses_pod(side) {
                if let Some(i) = index(label) {
                    rules.push(vec![(i, qualified.as_str())]);
                }
            }
        }
        for prefix in ["source", "destination"] {
            let ns_label = format!("{prefix}_namespace");
            let pod_label = format!("{prefix}_pod");
            if context.has_label(&ns_label) && context.has_label(&pod_label) {
                if let (Some(n), Some(p)) = (index(&ns_label), index(&pod_label)) {
                    rules.push(vec![(n, namespace), (p, pod)]);
                }
            }
        }
        for rule in &rules {
            removed += family.delete_matching(rule);
        }
    }
    removed
}

/// Appends snapshots of every family of `handler`.
pub fn snapshot(handler: &dyn Handler, out: &mut Vec<FamilySnapshot>) {
    for family in handler.families() {
        family.snapshot(out);
    }
}
