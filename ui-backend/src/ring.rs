//! The bounded ring of recent flows behind the flow table.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::query::FlowMatcher;
use proto::flow::Flow;

/// A flow as the UI keeps it: numbered in arrival order, with its JSON printed once.
#[derive(Debug)]
pub struct StoredFlow {
    /// Arrival number, starting at 0 and increasing by one per flow.
    pub seq: u64,
    pub flow: Flow,
    /// The flow as the page reads it ([`page_json`]), shared by every reader.
    pub json: Arc<str>,
}

/// The flow's JSON as `hubble observe -o json` prints it, plus `"type_text"`: its TYPE
/// column as `hubble observe` prints it (`to-endpoint`, `Policy denied`,
/// `policy-verdict:L3-L4 INGRESS`, ...), so the page needs no copy of those names.
pub fn page_json(flow: &Flow) -> Arc<str> {
    let mut json = proto::json::to_string(flow);
    let mut type_text = String::new();
    proto::names::write_flow_type(flow, &mut type_text);
    let quoted = serde_json::to_string(&type_text).unwrap_or_else(|_| "\"\"".to_owned());
    // The JSON is an object: `{}` or `{...}`; the key goes before its closing brace.
    json.pop();
    if json.len() > 1 {
        json.push(',');
    }
    json.push_str("\"type_text\":");
    json.push_str(&quoted);
    json.push('}');
    json.into()
}

/// The most recent `capacity` flows; the oldest is overwritten when full.
#[derive(Debug)]
pub struct FlowRing {
    entries: VecDeque<Arc<StoredFlow>>,
    capacity: usize,
    next_seq: u64,
}

impl FlowRing {
    /// Creates an empty ring holding at most `capacity` flows (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: VecDeque::with_capacity(capacity),
            capacity,
            next_seq: 0,
        }
    }

    /// Appends a flow, overwriting the oldest one when the ring is full.
    pub fn push(&mut self, flow: Flow, json: Arc<str>) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Arc::new(StoredFlow {
            seq: self.next_seq,
            flow,
            json,
        }));
        self.next_seq += 1;
    }

    /// The number the next flow will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ring holds no flow.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Maximum number of flows held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Flows numbered `seq` or later, oldest first, and how many flows from `seq` on
    /// were already overwritten.
    pub fn since(&self, seq: u64) -> (impl Iterator<Item = &Arc<StoredFlow>>, u64) {
        let first = self.entries.front().map_or(self.next_seq, |e| e.seq);
        let overwritten = first.saturating_sub(seq);
        let skip = usize::try_from(seq.saturating_sub(first)).unwrap_or(usize::MAX);
        (self.entries.iter().skip(skip), overwritten)
    }

    /// The last `limit` flows that pass `filters`, oldest first.
    pub fn latest_matching(&self, filters: &FlowMatcher, limit: usize) -> Vec<Arc<StoredFlow>> {
        let mut found: Vec<Arc<StoredFlow>> = self
            .entries
            .iter()
            .rev()
            .filter(|e| filters.matches(&e.flow))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::flow::Verdict;

    fn flow(verdict: Verdict) -> (Flow, Arc<str>) {
        let flow = Flow {
            verdict: verdict as i32,
            ..Flow::default()
        };
        let json = page_json(&flow);
        (flow, json)
    }

    #[test]
    fn page_json_adds_the_type_column_text() {
        let drop = Flow {
            verdict: Verdict::Dropped as i32,
            event_type: Some(proto::flow::CiliumEventType {
                r#type: 1,
                sub_type: 133,
            }),
            ..Flow::default()
        };
        let value: serde_json::Value =
            serde_json::from_str(&page_json(&drop)).expect("page JSON parses");
        assert_eq!(value["type_text"], "Policy denied");
        assert_eq!(value["verdict"], "DROPPED");
        let empty: serde_json::Value =
            serde_json::from_str(&page_json(&Flow::default())).expect("page JSON parses");
        assert_eq!(empty["type_text"], "UNKNOWN");
    }

    #[test]
    fn overwrites_oldest_and_reports_overwritten_reads() {
        let mut ring = FlowRing::new(3);
        for _ in 0..5 {
            let (f, j) = flow(Verdict::Forwarded);
            ring.push(f, j);
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.next_seq(), 5);
        let (iter, overwritten) = ring.since(0);
        assert_eq!(iter.map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(overwritten, 2);
        let (iter, overwritten) = ring.since(4);
        assert_eq!(iter.map(|e| e.seq).collect::<Vec<_>>(), vec![4]);
        assert_eq!(overwritten, 0);
        let (iter, _) = ring.since(5);
        assert_eq!(iter.count(), 0);
    }

    #[test]
    fn latest_matching_keeps_order_and_limit() {
        let mut ring = FlowRing::new(10);
        for v in [
            Verdict::Dropped,
            Verdict::Forwarded,
            Verdict::Dropped,
            Verdict::Dropped,
        ] {
            let (f, j) = flow(v);
            ring.push(f, j);
        }
        let pairs = [("verdict".to_string(), "dropped".to_string())];
        let query = crate::query::FlowQuery::parse(&pairs).expect("query parses");
        let found = ring.latest_matching(&query.matcher, 2);
        assert_eq!(found.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    }
}
