use expect_test::expect;

use super::*;

fn sample_families() -> Vec<FamilySnapshot> {
    vec![
        FamilySnapshot {
            name: "hubble_lost_events_total".to_owned(),
            help: "Number of lost events".to_owned(),
            kind: Kind::Counter,
            series: vec![
                SeriesSnapshot {
                    labels: vec![("source".to_owned(), "perf_event_ring_buffer".to_owned())],
                    value: Value::Counter {
                        value: 1_500_000.0,
                        exemplar: None,
                    },
                },
                SeriesSnapshot {
                    labels: vec![("source".to_owned(), "hubble_ring_buffer".to_owned())],
                    value: Value::Counter {
                        value: 3.0,
                        exemplar: Some(Exemplar {
                            labels: vec![("traceID".to_owned(), "abc".to_owned())],
                            value: 1.0,
                            timestamp: 1_700_000_000.5,
                        }),
                    },
                },
            ],
        },
        FamilySnapshot {
            name: "a_gauge".to_owned(),
            help: "Help with \\ and\nnewline".to_owned(),
            kind: Kind::Gauge,
            series: vec![SeriesSnapshot {
                labels: vec![
                    ("z".to_owned(), "quote \" here".to_owned()),
                    ("a".to_owned(), "x".to_owned()),
                ],
                value: Value::Gauge(0.25),
            }],
        },
        FamilySnapshot {
            name: "empty_total".to_owned(),
            help: "Not printed".to_owned(),
            kind: Kind::Counter,
            series: Vec::new(),
        },
    ]
}

#[test]
fn text_format_sorts_and_escapes_like_go() {
    expect![[r##"
        # HELP a_gauge Help with \\ and\nnewline
        # TYPE a_gauge gauge
        a_gauge{a="x",z="quote \" here"} 0.25
        # HELP hubble_lost_events_total Number of lost events
        # TYPE hubble_lost_events_total counter
        hubble_lost_events_total{source="hubble_ring_buffer"} 3
        hubble_lost_events_total{source="perf_event_ring_buffer"} 1.5e+06
    "##]]
    .assert_eq(&encode(sample_families(), Format::Text));
}

#[test]
fn openmetrics_strips_total_and_prints_exemplars() {
    expect![[r##"
        # HELP a_gauge Help with \\ and\nnewline
        # TYPE a_gauge gauge
        a_gauge{a="x",z="quote \" here"} 0.25
        # HELP hubble_lost_events Number of lost events
        # TYPE hubble_lost_events counter
        hubble_lost_events_total{source="hubble_ring_buffer"} 3.0 # {traceID="abc"} 1.0 1.7000000005e+09
        hubble_lost_events_total{source="perf_event_ring_buffer"} 1.5e+06
        # EOF
    "##]].assert_eq(&encode(sample_families(), Format::OpenMetrics));
}

#[test]
fn accept_header_negotiation() {
    assert_eq!(Format::from_accept(None), Format::Text);
    assert_eq!(
        Format::from_accept(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
        Format::Text
    );
    assert_eq!(
        Format::from_accept(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )),
        Format::OpenMetrics
    );
}
