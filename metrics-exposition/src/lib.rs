//! The Prometheus exposition every component shares: the agent's flow metrics and
//! self-metrics, and the relay's self-metrics, all print through here.
//!
//! - Formats: text 0.0.4 (the default) and OpenMetrics 1.0.0.
//! - [`Collect`]: a metric source; [`Registry`]: the sources one endpoint serves.
//! - [`serve`]: `/metrics` over HTTP, the format picked from the scraper's `Accept`.
//!
//! Every metric source produces [`FamilySnapshot`]s; [`encode`] sorts and prints them the
//! way Go's `client_golang` does, so that a scrape of our server reads like a scrape of
//! upstream Hubble: families sorted by name, label pairs sorted by name (`le` last),
//! series sorted by their label values, floats printed with Go's `%g` rules.
//!
//! The exposition is written here rather than by `prometheus-client`, whose encoder
//! only speaks OpenMetrics and cannot take exemplars for histograms kept elsewhere.

use std::fmt::Write as _;

mod float;
mod registry;
mod server;

pub use float::go_float;
pub use registry::Registry;
pub use server::{serve, serve_listener, ServeError};

/// The media type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The media type of the OpenMetrics text format 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text format 1.0.0, with exemplars.
    OpenMetrics,
}

impl Format {
    /// Picks the format an HTTP `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text`, the text format otherwise.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(value) if value.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A point-in-time copy of one metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    /// The full sample name, with `_total` for counters (`hubble_drop_total`).
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub series: Vec<SeriesSnapshot>,
}

/// One series of a family: its labels (in any order) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    pub labels: Vec<(String, String)>,
    pub value: Value,
}

/// The value of a series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter {
        value: f64,
        exemplar: Option<Exemplar>,
    },
    Gauge(f64),
    Histogram {
        /// Cumulative counts per upper bound, without the `+Inf` bucket.
        buckets: Vec<(f64, u64)>,
        /// One optional exemplar per bucket, the last one for `+Inf`.
        exemplars: Vec<Option<Exemplar>>,
        sum: f64,
        count: u64,
    },
}

/// An OpenMetrics exemplar: a reference (a trace ID) to one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
}

impl FamilySnapshot {
    /// A gauge family with one unlabelled series.
    pub fn gauge(name: &str, help: &str, value: f64) -> Self {
        Self {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Gauge,
            series: vec![SeriesSnapshot {
                labels: Vec::new(),
                value: Value::Gauge(value),
            }],
        }
    }

    /// A counter family with the given series.
    pub fn counter(name: &str, help: &str, series: Vec<SeriesSnapshot>) -> Self {
        Self {
            name: name.to_owned(),
            help: help.to_owned(),
            kind: Kind::Counter,
            series,
        }
    }
}

impl SeriesSnapshot {
    /// A counter series without exemplar.
    pub fn counter(labels: Vec<(String, String)>, count: u64) -> Self {
        Self {
            labels,
            value: Value::Counter {
                value: count as f64,
                exemplar: None,
            },
        }
    }
}

/// Something that holds metrics and can copy them out for a scrape.
pub trait Collect: Send + Sync {
    /// Appends a snapshot of every family this source holds.
    fn collect(&self, out: &mut Vec<FamilySnapshot>);
}

/// Prints `families` in `format`, normalized as Go's client does. Families without
/// series are left out, as upstream's registry does.
pub fn encode(mut families: Vec<FamilySnapshot>, format: Format) -> String {
    normalize(&mut families);
    let mut out = String::with_capacity(4096);
    for family in families.iter().filter(|f| !f.series.is_empty()) {
        match format {
            Format::Text => text_family(&mut out, family),
            Format::OpenMetrics => openmetrics_family(&mut out, family),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Sorts families by name, label pairs by name and series by label values.
pub fn normalize(families: &mut [FamilySnapshot]) {
    families.sort_by(|a, b| a.name.cmp(&b.name));
    for family in families.iter_mut() {
        for series in family.series.iter_mut() {
            series.labels.sort_by(|a, b| a.0.cmp(&b.0));
        }
        family.series.sort_by(|a, b| {
            let left = a.labels.iter().map(|(_, v)| v);
            let right = b.labels.iter().map(|(_, v)| v);
            left.cmp(right)
        });
    }
}

// === text format 0.0.4 ===

fn text_family(out: &mut String, family: &FamilySnapshot) {
    let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
    let kind = match family.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# TYPE {} {}", family.name, kind);
    for series in &family.series {
        match &series.value {
            Value::Counter { value, .. } | Value::Gauge(value) => {
                sample(out, &family.name, "", &series.labels, None);
                let _ = writeln!(out, " {}", go_float(*value));
            }
            Value::Histogram {
                buckets,
                sum,
                count,
                ..
            } => {
                for (upper, cumulative) in buckets {
                    sample(
                        out,
                        &family.name,
                        "_bucket",
                        &series.labels,
                        Some(&go_float(*upper)),
                    );
                    let _ = writeln!(out, " {cumulative}");
                }
                sample(out, &family.name, "_bucket", &series.labels, Some("+Inf"));
                let _ = writeln!(out, " {count}");
                sample(out, &family.name, "_sum", &series.labels, None);
                let _ = writeln!(out, " {}", go_float(*sum));
                sample(out, &family.name, "_count", &series.labels, None);
                let _ = writeln!(out, " {count}");
            }
        }
    }
}

// === OpenMetrics 1.0.0 ===

fn openmetrics_family(out: &mut String, family: &FamilySnapshot) {
    let (base, kind) = match family.kind {
        Kind::Counter => (
            family.name.strip_suffix("_total").unwrap_or(&family.name),
            "counter",
        ),
        Kind::Gauge => (family.name.as_str(), "gauge"),
        Kind::Histogram => (family.name.as_str(), "histogram"),
    };
    let _ = writeln!(out, "# HELP {} {}", base, escape_label_value(&family.help));
    let _ = writeln!(out, "# TYPE {base} {kind}");
    for series in &family.series {
        match &series.value {
            Value::Counter { value, exemplar } => {
                sample(out, base, "_total", &series.labels, None);
                let _ = write!(out, " {}", openmetrics_float(*value));
                if let Some(exemplar) = exemplar {
                    write_exemplar(out, exemplar);
                }
                out.push('\n');
            }
            Value::Gauge(value) => {
                sample(out, base, "", &series.labels, None);
                let _ = writeln!(out, " {}", openmetrics_float(*value));
            }
            Value::Histogram {
                buckets,
                exemplars,
                sum,
                count,
            } => {
                for (index, (upper, cumulative)) in buckets.iter().enumerate() {
                    let le = openmetrics_float(*upper);
                    sample(out, base, "_bucket", &series.labels, Some(&le));
                    let _ = write!(out, " {cumulative}");
                    if let Some(Some(exemplar)) = exemplars.get(index) {
                        write_exemplar(out, exemplar);
                    }
                    out.push('\n');
                }
                sample(out, base, "_bucket", &series.labels, Some("+Inf"));
                let _ = write!(out, " {count}");
                if let Some(Some(exemplar)) = exemplars.get(buckets.len()) {
                    write_exemplar(out, exemplar);
                }
                out.push('\n');
                sample(out, base, "_sum", &series.labels, None);
                let _ = writeln!(out, " {}", openmetrics_float(*sum));
                sample(out, base, "_count", &series.labels, None);
                let _ = writeln!(out, " {count}");
            }
        }
    }
}

fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    out.push_str(" # {");
    for (index, (name, value)) in exemplar.labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
    }
    let _ = write!(
        out,
        "}} {} {}",
        openmetrics_float(exemplar.value),
        openmetrics_float(exemplar.timestamp)
    );
}

/// Go's OpenMetrics float: `%g`, with `.0` appended to integral values.
fn openmetrics_float(value: f64) -> String {
    let mut text = go_float(value);
    if value.is_finite() && !text.contains(['.', 'e']) {
        text.push_str(".0");
    }
    text
}

// === shared helpers ===

/// Writes `name{suffix}{labels}` with an optional trailing `le` label.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    le: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (label, value) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{label}=\"{}\"", escape_label_value(value));
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

fn escape_label_value(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    let mut escaped = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
