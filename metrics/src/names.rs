//! Label values exactly as upstream computes them. The names themselves are
//! `proto::names`' (monitor message types, observation points, enum names, ICMP and
//! DNS codes); this module only adds the flow's protocol as the metrics see it and the
//! lower-case spellings upstream's policy handler uses.

use proto::flow::{layer4, layer7, Flow};
use proto::names::{
    self, MESSAGE_TYPE_ACCESS_LOG, MESSAGE_TYPE_CAPTURE, MESSAGE_TYPE_DROP,
    MESSAGE_TYPE_POLICY_VERDICT, MESSAGE_TYPE_TRACE,
};

use crate::key::KeyBuf;

/// The event type of a flow, 0 when it has none.
pub fn event_type(flow: &Flow) -> i32 {
    flow.event_type.as_ref().map_or(0, |e| e.r#type)
}

/// The protocol best describing a flow: the L7 protocol for access-log events, the L4
/// protocol for datapath events (upstream's `FlowProtocol`).
pub fn flow_protocol(flow: &Flow) -> &'static str {
    match event_type(flow) {
        MESSAGE_TYPE_ACCESS_LOG => match flow.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
            Some(layer7::Record::Dns(_)) => "DNS",
            Some(layer7::Record::Http(_)) => "HTTP",
            Some(layer7::Record::Kafka(_)) => "Kafka",
            None => "Unknown L7",
        },
        MESSAGE_TYPE_DROP
        | MESSAGE_TYPE_TRACE
        | MESSAGE_TYPE_POLICY_VERDICT
        | MESSAGE_TYPE_CAPTURE => match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
            Some(layer4::Protocol::Tcp(_)) => "TCP",
            Some(layer4::Protocol::Udp(_)) => "UDP",
            Some(layer4::Protocol::IcmPv4(_)) => "ICMPv4",
            Some(layer4::Protocol::IcmPv6(_)) => "ICMPv6",
            Some(layer4::Protocol::Sctp(_)) => "SCTP",
            Some(layer4::Protocol::Vrrp(_)) => "VRRP",
            Some(layer4::Protocol::Igmp(_)) => "IGMP",
            None => "Unknown L4",
        },
        _ => "Unknown flow",
    }
}

/// The monitor name of a trace observation point (event sub-type), or "" when unknown.
pub fn trace_observation_point(sub_type: i32) -> &'static str {
    names::trace_observation_point_name(sub_type as u8).unwrap_or("")
}

/// Pushes a verdict in lower case (`forwarded`), as the policy handler labels its
/// action.
pub fn push_verdict_lower(key: &mut KeyBuf, value: i32) {
    key.push_lower(&names::verdict(value));
}

/// Pushes a traffic direction in lower case (`ingress`), as the policy handler labels
/// it.
pub fn push_traffic_direction_lower(key: &mut KeyBuf, value: i32) {
    key.push_lower(&names::traffic_direction(value));
}

/// Pushes a policy match type in lower case (`l3-l4`), as the policy handler labels it.
pub fn push_policy_match_type_lower(key: &mut KeyBuf, value: u32) {
    key.push_lower(names::policy_match_type(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(push: impl Fn(&mut KeyBuf)) -> Box<str> {
        let mut key = KeyBuf::new();
        push(&mut key);
        let mut values = crate::key::decode(key.as_bytes());
        values.pop().unwrap_or_default()
    }

    #[test]
    fn lower_case_spellings_are_upstreams() {
        assert_eq!(&*pushed(|k| push_verdict_lower(k, 0)), "verdict_unknown");
        assert_eq!(&*pushed(|k| push_verdict_lower(k, 1)), "forwarded");
        assert_eq!(&*pushed(|k| push_verdict_lower(k, 42)), "42");
        assert_eq!(
            &*pushed(|k| push_traffic_direction_lower(k, 0)),
            "traffic_direction_unknown"
        );
        assert_eq!(&*pushed(|k| push_traffic_direction_lower(k, 2)), "egress");
        assert_eq!(&*pushed(|k| push_policy_match_type_lower(k, 2)), "l3-l4");
        assert_eq!(
            &*pushed(|k| push_policy_match_type_lower(k, 6)),
            "proto-only"
        );
        assert_eq!(&*pushed(|k| push_policy_match_type_lower(k, 9)), "unknown");
        assert_eq!(trace_observation_point(3), "to-stack");
        assert_eq!(trace_observation_point(99), "");
    }
}
