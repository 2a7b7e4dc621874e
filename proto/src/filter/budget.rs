//! What one GetFlows request may ask the server to compile and evaluate.
//!
//! Each limit bounds the whole request, not one value: a 15 KB request with 1,000
//! regular expressions made a node allocate GiBs when only each regex was limited, and
//! two requests with 100,000 label selectors each kept the server's threads busy for
//! seconds. A request over a limit is refused before anything is compiled, with an
//! error naming the limit.

use super::FilterError;
use crate::flow::FlowFilter;

/// FlowFilters in the allowlist and denylist together. `hubble observe` sends one or
/// two; the relay forwards what it got. 256 leaves room for generated requests.
pub const MAX_FLOW_FILTERS: usize = 256;
/// Values across every field of every filter (IPs, pods, labels, regexes, ...).
/// Evaluation costs up to one comparison per value per flow; 4,096 keeps a scan of a
/// full ring under a second on one core.
pub const MAX_FILTER_VALUES: usize = 4_096;
/// Compiled size of all regular expressions of a request together (the regex crate's
/// `size_limit`, shared out evenly among the request's regexes). Its default for one
/// regex is 10 MiB; a request gets no more than one such regex would.
pub const MAX_REGEX_BYTES: usize = 10 * 1024 * 1024;

macro_rules! value_count {
    ($ff:expr; $($field:ident),* $(,)?) => { 0 $(+ $ff.$field.len())* };
}

fn values(ff: &FlowFilter) -> usize {
    value_count!(ff; uuid, source_ip, source_ip_xlated, source_pod, source_fqdn,
        source_label, source_service, source_workload, source_cluster_name,
        destination_ip, destination_pod, destination_fqdn, destination_label,
        destination_service, destination_workload, destination_cluster_name,
        traffic_direction, verdict, drop_reason_desc, interface, event_type,
        http_status_code, protocol, source_port, destination_port, reply, dns_query,
        source_identity, destination_identity, http_method, http_path, http_url,
        http_header, tcp_flags, node_name, node_labels, ip_version, trace_id,
        ip_trace_id, encrypted)
        + ff.experimental
            .as_ref()
            .map_or(0, |e| e.cel_expression.len())
}

/// Regular expressions a filter compiles: each regex field value, and one per
/// pattern field (FQDN and node-name patterns are joined into one regex).
fn regexes(ff: &FlowFilter) -> usize {
    ff.http_path.len()
        + ff.http_url.len()
        + ff.dns_query.len()
        + usize::from(!ff.source_fqdn.is_empty())
        + usize::from(!ff.destination_fqdn.is_empty())
        + usize::from(!ff.node_name.is_empty())
}

/// Checks the request's size against the limits; returns the size limit for each of
/// its regexes.
pub fn check(allow: &[FlowFilter], deny: &[FlowFilter]) -> Result<usize, FilterError> {
    let filters = allow.len() + deny.len();
    if filters > MAX_FLOW_FILTERS {
        return Err(FilterError::LimitExceeded {
            limit: "MAX_FLOW_FILTERS",
            max: MAX_FLOW_FILTERS,
            what: "filters",
            got: filters,
        });
    }
    let all = || allow.iter().chain(deny);
    let values: usize = all().map(values).sum();
    if values > MAX_FILTER_VALUES {
        return Err(FilterError::LimitExceeded {
            limit: "MAX_FILTER_VALUES",
            max: MAX_FILTER_VALUES,
            what: "filter values",
            got: values,
        });
    }
    let regexes: usize = all().map(regexes).sum();
    Ok(MAX_REGEX_BYTES / regexes.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FilterSet;

    #[test]
    fn a_thousand_big_regexes_are_refused_naming_the_budget() {
        // The hostile request of the issue: 15 KB, 1,000 regexes like `\w{100}0`.
        let filter = FlowFilter {
            http_path: (0..1000).map(|i| format!(r"\w{{100}}{i}")).collect(),
            ..Default::default()
        };
        let err = FilterSet::compile(&[filter], &[]).expect_err("over budget");
        let message = err.to_string();
        assert!(message.contains("MAX_REGEX_BYTES"), "{message}");
        assert!(message.contains(r"\w{100}0"), "{message}");
    }

    #[test]
    fn counts_are_limited_per_request() {
        let labels = FlowFilter {
            source_label: (0..=MAX_FILTER_VALUES).map(|i| format!("k{i}=v")).collect(),
            ..Default::default()
        };
        let err = FilterSet::compile(&[labels], &[]).expect_err("too many values");
        assert!(err.to_string().contains("MAX_FILTER_VALUES"), "{err}");
        let many = vec![FlowFilter::default(); MAX_FLOW_FILTERS + 1];
        let err = FilterSet::compile(&many, &[]).expect_err("too many filters");
        assert!(err.to_string().contains("MAX_FLOW_FILTERS"), "{err}");
    }

    #[test]
    fn ordinary_requests_pass() {
        let filter = FlowFilter {
            dns_query: vec![".*cilium.*".into(), r"\w{10}\.example".into()],
            source_label: vec!["org=empire".into()],
            source_fqdn: vec!["*.cilium.io".into()],
            ..Default::default()
        };
        if let Err(e) = FilterSet::compile(&[filter], &[]) {
            panic!("{e}");
        }
    }
}
