//! Metric families with labels: counters and histograms keyed by [`KeyBuf`] label values.
//!
//! Families are plain data owned by their handler; the handler set sits behind one lock
//! in [`crate::Metrics`], so updates are plain integer additions.

use hashbrown::HashMap;

use crate::exposition::{Exemplar, FamilySnapshot, Kind, SeriesSnapshot, Value};
use crate::key::{decode, KeyBuf};

/// Keyed by the encoded label values (`Vec<u8>` so that `entry_ref` can look up by slice).
type SeriesMap<V> = HashMap<Vec<u8>, Series<V>>;

/// Upstream's histogram buckets (Go's `prometheus.DefBuckets`), in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug)]
struct Series<V> {
    values: Box<[Box<str>]>,
    data: V,
}

/// A trace ID attached to the latest observation, shown as an OpenMetrics exemplar.
#[derive(Debug, Clone)]
struct TraceExemplar {
    trace_id: Box<str>,
    value: f64,
    timestamp: f64,
}

impl TraceExemplar {
    fn snapshot(&self) -> Exemplar {
        Exemplar {
            labels: vec![("traceID".to_owned(), self.trace_id.to_string())],
            value: self.value,
            timestamp: self.timestamp,
        }
    }
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Records the latest observation's trace ID, reusing the slot's allocation when the
/// trace ID did not change.
fn set_exemplar(slot: &mut Option<TraceExemplar>, trace_id: &str, value: f64) {
    match slot {
        Some(exemplar) if &*exemplar.trace_id == trace_id => {
            exemplar.value = value;
            exemplar.timestamp = now_seconds();
        }
        _ => {
            *slot = Some(TraceExemplar {
                trace_id: trace_id.into(),
                value,
                timestamp: now_seconds(),
            })
        }
    }
}

/// What every labelled family offers to the handler set.
pub trait LabelledFamily {
    /// The label names, in the order handlers push their values.
    fn label_names(&self) -> &[&'static str];
    /// Removes every series whose labels at `(index, value)` all match.
    fn delete_matching(&mut self, matches: &[(usize, &str)]) -> usize;
    /// The number of series.
    fn len(&self) -> usize;
    /// Appends a snapshot of the family.
    fn snapshot(&self, out: &mut Vec<FamilySnapshot>);
}

// === impl CounterVec ===

#[derive(Debug, Default)]
struct CounterData {
    count: u64,
    exemplar: Option<TraceExemplar>,
}

/// A counter family (`hubble_drop_total{reason,protocol}`).
#[derive(Debug)]
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: Vec<&'static str>,
    series: SeriesMap<CounterData>,
}

impl CounterVec {
    /// Creates a family; `name` is the full sample name, with `_total`.
    pub fn new(name: &'static str, help: &'static str, labels: Vec<&'static str>) -> Self {
        Self {
            name,
            help,
            labels,
            series: SeriesMap::default(),
        }
    }

    /// Adds one to the series whose label values are in `key`.
    pub fn inc(&mut self, key: &KeyBuf) {
        self.entry(key).count += 1;
    }

    /// Adds one and records `trace_id` as the series' exemplar, unless it is empty.
    pub fn inc_with_exemplar(&mut self, key: &KeyBuf, trace_id: &str) {
        let data = self.entry(key);
        data.count += 1;
        if !trace_id.is_empty() {
            set_exemplar(&mut data.exemplar, trace_id, 1.0);
        }
    }

    fn entry(&mut self, key: &KeyBuf) -> &mut CounterData {
        let bytes = key.as_bytes();
        let series = self.series.entry_ref(bytes).or_insert_with(|| Series {
            values: decode(bytes).into_boxed_slice(),
            data: CounterData::default(),
        });
        &mut series.data
    }
}

impl LabelledFamily for CounterVec {
    fn label_names(&self) -> &[&'static str] {
        &self.labels
    }

    fn delete_matching(&mut self, matches: &[(usize, &str)]) -> usize {
        delete_matching(&mut self.series, matches)
    }

    fn len(&self) -> usize {
        self.series.len()
    }

    fn snapshot(&self, out: &mut Vec<FamilySnapshot>) {
        let series = self
            .series
            .values()
            .map(|s| SeriesSnapshot {
                labels: pairs(&self.labels, &s.values),
                value: Value::Counter {
                    value: s.data.count as f64,
                    exemplar: s.data.exemplar.as_ref().map(TraceExemplar::snapshot),
                },
            })
            .collect();
        out.push(FamilySnapshot {
            name: self.name.to_owned(),
            help: self.help.to_owned(),
            kind: Kind::Counter,
            series,
        });
    }
}

// === impl HistogramVec ===

#[derive(Debug)]
struct HistogramData {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    counts: Box<[u64]>,
    exemplars: Box<[Option<TraceExemplar>]>,
    sum: f64,
    count: u64,
}

/// A histogram family (`hubble_http_request_duration_seconds{method,reporter}`).
#[derive(Debug)]
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: Vec<&'static str>,
    buckets: &'static [f64],
    series: SeriesMap<HistogramData>,
}

impl HistogramVec {
    /// Creates a family with the given upper bounds (ascending, without `+Inf`).
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: Vec<&'static str>,
        buckets: &'static [f64],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            buckets,
            series: SeriesMap::default(),
        }
    }

    /// Records `value` in the series whose label values are in `key`, with `trace_id`
    /// as the exemplar of its bucket unless it is empty.
    pub fn observe(&mut self, key: &KeyBuf, value: f64, trace_id: &str) {
        let bucket = self
            .buckets
            .iter()
            .position(|upper| value <= *upper)
            .unwrap_or(self.buckets.len());
        let slots = self.buckets.len() + 1;
        let bytes = key.as_bytes();
        let series = self.series.entry_ref(bytes).or_insert_with(|| Series {
            values: decode(bytes).into_boxed_slice(),
            data: HistogramData {
                counts: vec![0; slots].into_boxed_slice(),
                exemplars: vec![None; slots].into_boxed_slice(),
                sum: 0.0,
                count: 0,
            },
        });
        let data = &mut series.data;
        data.counts[bucket] += 1;
        data.sum += value;
        data.count += 1;
        if !trace_id.is_empty() {
            set_exemplar(&mut data.exemplars[bucket], trace_id, value);
        }
    }
}

impl LabelledFamily for HistogramVec {
    fn label_names(&self) -> &[&'static str] {
        &self.labels
    }

    fn delete_matching(&mut self, matches: &[(usize, &str)]) -> usize {
        delete_matching(&mut self.series, matches)
    }

    fn len(&self) -> usize {
        self.series.len()
    }

    fn snapshot(&self, out: &mut Vec<FamilySnapshot>) {
        let series = self
            .series
            .values()
            .map(|s| {
                let mut cumulative = 0;
                let buckets = self
                    .buckets
                    .iter()
                    .zip(s.data.counts.iter())
                    .map(|(upper, count)| {
                        cumulative += count;
                        (*upper, cumulative)
                    })
                    .collect();
                SeriesSnapshot {
                    labels: pairs(&self.labels, &s.values),
                    value: Value::Histogram {
                        buckets,
                        exemplars: s
                            .data
                            .exemplars
                            .iter()
                            .map(|e| e.as_ref().map(TraceExemplar::snapshot))
                            .collect(),
                        sum: s.data.sum,
                        count: s.data.count,
                    },
                }
            })
            .collect();
        out.push(FamilySnapshot {
            name: self.name.to_owned(),
            help: self.help.to_owned(),
            kind: Kind::Histogram,
            series,
        });
    }
}

fn pairs(names: &[&'static str], values: &[Box<str>]) -> Vec<(String, String)> {
    names
        .iter()
        .zip(values.iter())
        .map(|(name, value)| ((*name).to_owned(), value.to_string()))
        .collect()
}

fn delete_matching<V>(series: &mut SeriesMap<V>, matches: &[(usize, &str)]) -> usize {
    let before = series.len();
    series.retain(|_, s| {
        !matches
            .iter()
            .all(|(index, want)| s.values.get(*index).is_some_and(|v| &**v == *want))
    });
    before - series.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(values: &[&str]) -> KeyBuf {
        let mut key = KeyBuf::new();
        for value in values {
            key.push(value);
        }
        key
    }

    #[test]
    fn counts_per_label_set_and_deletes_partial_matches() {
        let mut family = CounterVec::new("x_total", "help", vec!["source", "reason"]);
        family.inc(&key(&["default/xwing", "POLICY_DENIED"]));
        family.inc(&key(&["default/xwing", "POLICY_DENIED"]));
        family.inc(&key(&["default/xwing", "CT_UNKNOWN"]));
        family.inc(&key(&["default/tiefighter", "POLICY_DENIED"]));
        assert_eq!(family.len(), 3);
        assert_eq!(family.delete_matching(&[(0, "default/xwing")]), 2);
        assert_eq!(family.len(), 1);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut family = HistogramVec::new("h", "help", vec!["method"], DEFAULT_BUCKETS);
        let k = key(&["GET"]);
        family.observe(&k, 0.001, "");
        family.observe(&k, 0.3, "abc");
        family.observe(&k, 20.0, "");
        let mut out = Vec::new();
        family.snapshot(&mut out);
        let Value::Histogram {
            buckets,
            count,
            exemplars,
            ..
        } = &out[0].series[0].value
        else {
            panic!("not a histogram");
        };
        assert_eq!(*count, 3);
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[6], (0.5, 2));
        assert_eq!(buckets[10], (10.0, 2));
        assert!(exemplars[6].is_some());
        assert_eq!(exemplars.len(), DEFAULT_BUCKETS.len() + 1);
    }
}
