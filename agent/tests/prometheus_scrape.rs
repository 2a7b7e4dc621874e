//! Debian's real Prometheus (`/usr/bin/prometheus`) scraping a real `hubble-agent`: the
//! agent replays a capture of the Star Wars demo (forwarded traces, policy drops and
//! policy verdicts between default/xwing, default/tiefighter and default/deathstar-1)
//! with `--metrics` configured as a user would, with context labels, and Prometheus'
//! HTTP API must return drops by reason, flows by verdict and policy verdicts by match
//! with exactly the capture's counts and the configured labels.
//!
//! Without root. Prints `SKIP:` and passes when Prometheus is not installed (fails under `CI=true`).

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, Agent};
use tests::prometheus::Prometheus;

/// The scrape job, and the `job` label of every series Prometheus stores.
const JOB: &str = "hubble-agent";
/// How long Prometheus may take to start, scrape the agent and hold every value.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(120);

/// The handlers as a user configures them (upstream's `hubble-metrics` syntax): drops by
/// pod, flows without context, policy verdicts with the app-or-workload-or-pod context
/// and the namespaces as extra labels.
const METRICS: &str = "drop:sourceContext=pod;destinationContext=pod \
     flow \
     policy:sourceContext=app|workload-name|pod|reserved-identity;\
     destinationContext=app|workload-name|pod|dns|reserved-identity;\
     labelsContext=source_namespace,destination_namespace";

/// tiefighter -> deathstar-1:80 SYNs forwarded to the endpoint (trace, to-endpoint).
const TRACE_TO_DEATHSTAR: usize = 8;
/// deathstar-1 -> tiefighter replies leaving the endpoint (trace, from-endpoint).
const TRACE_REPLIES: usize = 6;
/// xwing -> deathstar-1:80 SYNs dropped by policy (drop events, POLICY_DENIED).
const POLICY_DROPS: usize = 5;
/// tiefighter -> deathstar-1:80 allowed by an L3-L4 rule (policy verdicts, forwarded).
const VERDICTS_ALLOWED: usize = 3;
/// xwing -> deathstar-1:80 denied, no rule matched (policy verdicts, dropped).
const VERDICTS_DENIED: usize = 2;
/// world (1.1.1.1) -> deathstar-1:80 denied, no rule matched (policy verdict, dropped).
const VERDICTS_DENIED_WORLD: usize = 1;
/// host -> deathstar-1:80 allowed (policy verdict the policy handler ignores).
const VERDICTS_HOST: usize = 1;

const FLOWS: usize = TRACE_TO_DEATHSTAR
    + TRACE_REPLIES
    + POLICY_DROPS
    + VERDICTS_ALLOWED
    + VERDICTS_DENIED
    + VERDICTS_DENIED_WORLD
    + VERDICTS_HOST;

fn xwing() -> Value {
    json!({
        "ID": 1899,
        "identity": 6305,
        "cluster_name": "default",
        "namespace": "default",
        "labels": ["k8s:app.kubernetes.io/name=xwing", "k8s:class=xwing", "k8s:org=alliance"],
        "pod_name": "xwing",
    })
}

fn tiefighter() -> Value {
    json!({
        "ID": 2311,
        "identity": 62396,
        "cluster_name": "default",
        "namespace": "default",
        "labels": ["k8s:class=tiefighter", "k8s:org=empire"],
        "pod_name": "tiefighter",
    })
}

fn deathstar() -> Value {
    json!({
        "ID": 1224,
        "identity": 50122,
        "cluster_name": "default",
        "namespace": "default",
        "labels": ["k8s:class=deathstar", "k8s:org=empire"],
        "pod_name": "deathstar-1",
        "workloads": [{"name": "deathstar", "kind": "Deployment"}],
    })
}

fn world() -> Value {
    json!({"identity": 2, "labels": ["reserved:world"]})
}

fn host() -> Value {
    json!({"identity": 1, "labels": ["reserved:host"]})
}

/// One flow of the capture; `extra` adds or overrides fields.
struct Spec {
    source: (Value, &'static str, u16),
    destination: (Value, &'static str, u16),
    verdict: &'static str,
    event_type: Value,
    direction: &'static str,
    extra: Value,
}

/// The capture as `hubble observe -o jsonpb` prints it, one response per line.
fn write_capture(path: &Path) {
    let mut specs = Vec::new();
    let xwing_ip = "10.200.1.12";
    let tiefighter_ip = "10.200.1.13";
    let deathstar_ip = "10.200.1.10";
    for _ in 0..TRACE_TO_DEATHSTAR {
        specs.push(Spec {
            source: (tiefighter(), tiefighter_ip, 41000),
            destination: (deathstar(), deathstar_ip, 80),
            verdict: "FORWARDED",
            event_type: json!({"type": 4, "sub_type": 0}),
            direction: "INGRESS",
            extra: json!({"trace_observation_point": "TO_ENDPOINT", "is_reply": false}),
        });
    }
    for _ in 0..TRACE_REPLIES {
        specs.push(Spec {
            source: (deathstar(), deathstar_ip, 80),
            destination: (tiefighter(), tiefighter_ip, 41000),
            verdict: "FORWARDED",
            event_type: json!({"type": 4, "sub_type": 5}),
            direction: "INGRESS",
            extra: json!({"trace_observation_point": "FROM_ENDPOINT", "is_reply": true}),
        });
    }
    for _ in 0..POLICY_DROPS {
        specs.push(Spec {
            source: (xwing(), xwing_ip, 38870),
            destination: (deathstar(), deathstar_ip, 80),
            verdict: "DROPPED",
            event_type: json!({"type": 1, "sub_type": 133}),
            direction: "INGRESS",
            extra: json!({"drop_reason": 133, "drop_reason_desc": "POLICY_DENIED"}),
        });
    }
    for _ in 0..VERDICTS_ALLOWED {
        specs.push(Spec {
            source: (tiefighter(), tiefighter_ip, 41000),
            destination: (deathstar(), deathstar_ip, 80),
            verdict: "FORWARDED",
            event_type: json!({"type": 5}),
            direction: "INGRESS",
            extra: json!({"policy_match_type": 2, "is_reply": false}),
        });
    }
    for _ in 0..VERDICTS_DENIED {
        specs.push(Spec {
            source: (xwing(), xwing_ip, 38870),
            destination: (deathstar(), deathstar_ip, 80),
            verdict: "DROPPED",
            event_type: json!({"type": 5}),
            direction: "INGRESS",
            extra: json!({"drop_reason": 133, "drop_reason_desc": "POLICY_DENIED"}),
        });
    }
    for _ in 0..VERDICTS_DENIED_WORLD {
        specs.push(Spec {
            source: (world(), "1.1.1.1", 52000),
            destination: (deathstar(), deathstar_ip, 80),
            verdict: "DROPPED",
            event_type: json!({"type": 5}),
            direction: "INGRESS",
            extra: json!({"drop_reason": 133, "drop_reason_desc": "POLICY_DENIED"}),
        });
    }
    for _ in 0..VERDICTS_HOST {
        specs.push(Spec {
            source: (host(), "10.200.1.1", 53000),
            destination: (deathstar(), deathstar_ip, 80),
            verdict: "FORWARDED",
            event_type: json!({"type": 5}),
            direction: "INGRESS",
            extra: json!({"policy_match_type": 1, "is_reply": false}),
        });
    }
    assert_eq!(specs.len(), FLOWS);

    let mut out = String::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let time = format!("2024-07-25T15:56:06.{i:03}000123Z");
        let (source, source_ip, source_port) = spec.source;
        let (destination, destination_ip, destination_port) = spec.destination;
        let mut flow = json!({
            "time": time,
            "verdict": spec.verdict,
            "IP": {"source": source_ip, "destination": destination_ip, "ipVersion": "IPv4"},
            "l4": {"TCP": {
                "source_port": source_port,
                "destination_port": destination_port,
                "flags": {"SYN": true},
            }},
            "source": source,
            "destination": destination,
            "Type": "L3_L4",
            "node_name": "scrape-node",
            "event_type": spec.event_type,
            "traffic_direction": spec.direction,
            "Summary": "TCP Flags: SYN",
        });
        if let (Some(flow), Some(extra)) = (flow.as_object_mut(), spec.extra.as_object()) {
            flow.extend(extra.clone());
        }
        let line = json!({"flow": flow, "node_name": "scrape-node", "time": time});
        writeln!(out, "{line}").expect("format capture");
    }
    std::fs::write(path, out).expect("write capture");
}

/// `labels -> value` from `(labels, value)` pairs, written as [`Prometheus::series`]
/// writes them (labels in any order here; absent labels are empty ones).
fn expected(rows: &[(&[(&str, &str)], usize)]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|(labels, value)| {
            let mut labels: Vec<String> = labels
                .iter()
                .map(|(name, value)| format!("{name}={}", Value::from(*value)))
                .collect();
            labels.sort();
            (labels.join(","), value.to_string())
        })
        .collect()
}

#[test]
fn prometheus_scrapes_drops_flows_and_policy_verdicts_from_the_agent() {
    if !tests::skip::require_file(
        "prometheus_scrapes_drops_flows_and_policy_verdicts_from_the_agent",
        tests::prometheus::PROMETHEUS,
        "prometheus",
    ) {
        return;
    }
    let started = Instant::now();
    // Declared first, so removed last: after both processes are gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let capture = dir.join("capture.json");
    write_capture(&capture);

    let metrics_port = free_port();
    let mut agent = Agent::replay(
        dir,
        &capture,
        metrics_port,
        "scrape-node",
        ["--metrics", METRICS],
    );
    let prometheus_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prometheus_dir).expect("prometheus directory");
    let mut prometheus =
        Prometheus::start(&prometheus_dir, JOB, &[format!("127.0.0.1:{metrics_port}")])
            .expect("start prometheus");

    // Until Prometheus has scraped the agent (target up) after the whole capture was
    // counted.
    let complete = format!("sum(hubble_flows_processed_total{{job=\"{JOB}\"}})");
    let up = format!("up{{job=\"{JOB}\"}}");
    let deadline = Instant::now() + SCRAPE_DEADLINE;
    loop {
        agent.assert_running();
        prometheus.check_running().expect("prometheus running");
        let state = prometheus.query(&up).and_then(|up| {
            let total = prometheus.query(&complete)?;
            Ok((up, total))
        });
        let last = match state {
            Ok((up, total)) => {
                let is_up = up.first().is_some_and(|s| s["value"][1] == "1");
                let count = total.first().map(|s| s["value"][1].clone());
                if is_up && count == Some(Value::from(FLOWS.to_string())) {
                    break;
                }
                format!("up: {up:?}, flows counted: {count:?}")
            }
            Err(e) => format!("{e:#}"),
        };
        assert!(
            Instant::now() < deadline,
            "Prometheus did not get all {FLOWS} flows from the agent within \
             {SCRAPE_DEADLINE:?}: {last}\nagent log:\n{}\nprometheus log:\n{}",
            agent.log(),
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let scraped = started.elapsed();

    // The target as Prometheus sees it.
    let targets = prometheus.query(&up).expect("up");
    assert_eq!(targets.len(), 1, "one scrape target expected: {targets:?}");
    assert_eq!(
        targets[0]["metric"]["instance"],
        format!("127.0.0.1:{metrics_port}")
    );

    // Drops by reason and protocol, with the pods as source and destination. Denied
    // policy verdicts are drops too (verdict DROPPED, POLICY_DENIED), as upstream counts
    // them; world has no pod, so its drops have no source label.
    let drops = prometheus
        .series(&format!("hubble_drop_total{{job=\"{JOB}\"}}"))
        .expect("series");
    assert_eq!(
        drops,
        expected(&[
            (
                &[
                    ("reason", "POLICY_DENIED"),
                    ("protocol", "TCP"),
                    ("source", "default/xwing"),
                    ("destination", "default/deathstar-1"),
                ],
                POLICY_DROPS + VERDICTS_DENIED,
            ),
            (
                &[
                    ("reason", "POLICY_DENIED"),
                    ("protocol", "TCP"),
                    ("destination", "default/deathstar-1"),
                ],
                VERDICTS_DENIED_WORLD,
            ),
        ]),
        "hubble_drop_total"
    );
    let xwing_drops = prometheus
        .series(
            "hubble_drop_total{reason=\"POLICY_DENIED\",protocol=\"TCP\",\
         source=\"default/xwing\",destination=\"default/deathstar-1\"}",
        )
        .expect("series");
    assert_eq!(
        xwing_drops.values().collect::<Vec<_>>(),
        [&(POLICY_DROPS + VERDICTS_DENIED).to_string()],
        "{xwing_drops:?}"
    );

    // Every flow by verdict, and by type and observation point.
    let by_verdict = prometheus
        .series(&format!(
            "sum by (verdict) (hubble_flows_processed_total{{job=\"{JOB}\"}})"
        ))
        .expect("series");
    assert_eq!(
        by_verdict,
        expected(&[
            (
                &[("verdict", "FORWARDED")],
                TRACE_TO_DEATHSTAR + TRACE_REPLIES + VERDICTS_ALLOWED + VERDICTS_HOST,
            ),
            (
                &[("verdict", "DROPPED")],
                POLICY_DROPS + VERDICTS_DENIED + VERDICTS_DENIED_WORLD,
            ),
        ]),
        "flows by verdict"
    );
    let flows = prometheus
        .series(&format!("hubble_flows_processed_total{{job=\"{JOB}\"}}"))
        .expect("series");
    assert_eq!(
        flows,
        expected(&[
            (
                &[
                    ("protocol", "TCP"),
                    ("type", "Trace"),
                    ("subtype", "to-endpoint"),
                    ("verdict", "FORWARDED"),
                ],
                TRACE_TO_DEATHSTAR,
            ),
            (
                &[
                    ("protocol", "TCP"),
                    ("type", "Trace"),
                    ("subtype", "from-endpoint"),
                    ("verdict", "FORWARDED"),
                ],
                TRACE_REPLIES,
            ),
            (
                &[
                    ("protocol", "TCP"),
                    ("type", "Drop"),
                    ("verdict", "DROPPED")
                ],
                POLICY_DROPS,
            ),
            (
                &[
                    ("protocol", "TCP"),
                    ("type", "PolicyVerdict"),
                    ("verdict", "FORWARDED"),
                ],
                VERDICTS_ALLOWED + VERDICTS_HOST,
            ),
            (
                &[
                    ("protocol", "TCP"),
                    ("type", "PolicyVerdict"),
                    ("verdict", "DROPPED"),
                ],
                VERDICTS_DENIED + VERDICTS_DENIED_WORLD,
            ),
        ]),
        "hubble_flows_processed_total"
    );

    // Policy verdicts by direction, match and action, with the configured context: the
    // app label (xwing), else the workload name (deathstar), else the pod
    // (default/tiefighter), else the reserved identity (world); namespaces as labels.
    // The host's verdicts are not counted.
    let verdicts = prometheus
        .series(&format!("hubble_policy_verdicts_total{{job=\"{JOB}\"}}"))
        .expect("series");
    assert_eq!(
        verdicts,
        expected(&[
            (
                &[
                    ("direction", "ingress"),
                    ("match", "l3-l4"),
                    ("action", "forwarded"),
                    ("source_namespace", "default"),
                    ("destination_namespace", "default"),
                    ("source", "default/tiefighter"),
                    ("destination", "deathstar"),
                ],
                VERDICTS_ALLOWED,
            ),
            (
                &[
                    ("direction", "ingress"),
                    ("match", "none"),
                    ("action", "dropped"),
                    ("source_namespace", "default"),
                    ("destination_namespace", "default"),
                    ("source", "xwing"),
                    ("destination", "deathstar"),
                ],
                VERDICTS_DENIED,
            ),
            (
                &[
                    ("direction", "ingress"),
                    ("match", "none"),
                    ("action", "dropped"),
                    ("destination_namespace", "default"),
                    ("source", "reserved:world"),
                    ("destination", "deathstar"),
                ],
                VERDICTS_DENIED_WORLD,
            ),
        ]),
        "hubble_policy_verdicts_total"
    );
    let allowed = prometheus
        .series(
            "hubble_policy_verdicts_total{match=\"l3-l4\",direction=\"ingress\",\
         action=\"forwarded\",source=\"default/tiefighter\",destination=\"deathstar\",\
         source_namespace=\"default\",destination_namespace=\"default\"}",
        )
        .expect("series");
    assert_eq!(
        allowed.values().collect::<Vec<_>>(),
        [&VERDICTS_ALLOWED.to_string()],
        "{allowed:?}"
    );

    drop(prometheus);
    drop(agent);
    println!(
        "{FLOWS} replayed flows scraped by Prometheus after {scraped:.1?}, \
         checked after {:.1?}",
        started.elapsed()
    );
}
