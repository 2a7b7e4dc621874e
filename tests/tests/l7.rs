//! The seeds' L7 scenario on the lab: rule1 with its HTTP rule lets the tiefighter
//! land (`POST /v1/request-landing`) and answers its `PUT /v1/exhaust-port` with
//! `Access denied` from the agent's proxy, which the deathstar never sees; the xwing
//! is still dropped at L3/L4; both through the deathstar's cluster IP. Removing the
//! L7 part restores plain forwarding. Needs root; prints a SKIP line otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use tests::prometheus::Prometheus;
use tests::{eventually, require_root, run_with_timeout, Lab};

const VIP_URL: &str = "deathstar.default.svc.cluster.local";
/// The lab agent's metrics listener (node 1 of the lab's subnet).
const METRICS: &str = "10.104.0.11:9965";
/// The trace id of the W3C `traceparent` the tiefighter sends with one landing.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn policy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/policies/{name}"))
}

/// Egress HTTP rules of the tiefighter: POST and PUT under /v1/ to the deathstars,
/// and its lookups.
const TIEFIGHTER_EGRESS_HTTP: &str = r#"apiVersion: "cilium.io/v2"
kind: CiliumNetworkPolicy
metadata:
  name: "tiefighter-egress-http"
spec:
  endpointSelector:
    matchLabels:
      class: tiefighter
  egress:
  - toEndpoints:
    - matchLabels:
        class: deathstar
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
      rules:
        http:
        - method: "POST|PUT"
          path: "/v1/.*"
  - toEndpoints:
    - matchLabels:
        "k8s:io.kubernetes.pod.namespace": kube-system
        "k8s:k8s-app": kube-dns
    toPorts:
    - ports:
      - port: "53"
        protocol: ANY
"#;

/// `curl -s` from `pod` with `method` to the deathstar's `path`; (stdout, exit code).
fn curl(lab: &Lab, pod: &str, method: &str, path: &str) -> Result<(String, i32)> {
    curl_with(lab, pod, method, path, &[])
}

/// [`curl`] with more arguments (`-H ...`).
fn curl_with(
    lab: &Lab,
    pod: &str,
    method: &str,
    path: &str,
    extra: &[&str],
) -> Result<(String, i32)> {
    let url = format!("{VIP_URL}{path}");
    let mut cmd = lab.cmd();
    cmd.args([
        "exec",
        pod,
        "--",
        "curl",
        "-s",
        "--max-time",
        "3",
        "-X",
        method,
    ]);
    cmd.args(extra).arg(&url);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20))?;
    Ok((
        String::from_utf8_lossy(&out.stdout).to_string(),
        out.status.code().unwrap_or(-1),
    ))
}

/// A plain HTTP/1.0 GET, enough for a metrics scrape; `accept` picks the format.
fn http_get(address: &str, path: &str, accept: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = address.parse()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// PUTs to the exhaust port from the tiefighter until the answer is the deathstar's
/// own (the request reached it); that answer.
fn put_until_it_explodes(lab: &Lab) -> Result<String> {
    eventually(Duration::from_secs(20), || {
        let (out, _) = curl(lab, "tiefighter", "PUT", "/v1/exhaust-port")?;
        Ok(out.contains("Panic: deathstar exploded").then_some(out))
    })
}

/// Requests the deathstars logged (`<peer> <METHOD> <target> -> <status>`).
fn deathstar_requests(lab: &Lab, method: &str) -> usize {
    ["deathstar-1", "deathstar-2"]
        .iter()
        .filter_map(|pod| std::fs::read_to_string(lab.run_dir.join(format!("lab/{pod}.log"))).ok())
        .map(|log| {
            log.lines()
                .filter(|l| l.contains(&format!(" {method} /v1/")))
                .count()
        })
        .sum()
}

#[test]
fn l7_policy_through_the_proxy() -> Result<()> {
    if !require_root("l7_policy_through_the_proxy") {
        return Ok(());
    }
    let lab = Lab::up("l7", "10.104.0.0/24")?;
    lab.wait_until_programmed()?;

    let out = lab.agent(&[
        "policy",
        "import",
        policy("rule1-l7.yaml").to_str().unwrap_or_default(),
    ])?;
    assert!(out.contains("Revision: 2"), "{out}");
    let list = eventually(Duration::from_secs(20), || {
        let list = lab.agent(&["endpoint", "list"])?;
        Ok((list.contains("proxy-redirect") && !list.contains("regenerating")).then_some(list))
    })?;
    assert!(list.contains(":ingress:TCP:80 => 1"), "{list}");
    let get = lab.agent(&["policy", "get"])?;
    assert!(get.contains("\"path\": \"/v1/request-landing\""), "{get}");

    // The allowed call lands, as a request/response pair of L7 flows.
    let (out, _) = eventually(Duration::from_secs(20), || {
        let (out, code) = curl(&lab, "tiefighter", "POST", "/v1/request-landing")?;
        Ok(out.contains("Ship landed").then_some((out, code)))
    })?;
    assert_eq!(out, "Ship landed\n");
    let l7 = eventually(Duration::from_secs(10), || {
        // Responses go from the deathstar to the tiefighter: --pod takes both.
        let out = lab.observe(&[
            "--type",
            "l7",
            "--pod",
            "default/tiefighter",
            "--last",
            "50",
        ])?;
        Ok(
            (out.contains("http-request FORWARDED") && out.contains("http-response FORWARDED"))
                .then_some(out),
        )
    })?;
    assert!(
        l7.contains(
            "(HTTP/1.1 POST http://deathstar.default.svc.cluster.local/v1/request-landing)"
        ),
        "{l7}"
    );

    // The forbidden call: 403 from the proxy, the deathstar never sees it.
    let puts_before = deathstar_requests(&lab, "PUT");
    let (out, _) = curl(&lab, "tiefighter", "PUT", "/v1/exhaust-port")?;
    assert_eq!(out, "Access denied\r\n");
    let dropped = eventually(Duration::from_secs(10), || {
        let out = lab.observe(&["--type", "l7", "--verdict", "DROPPED", "--last", "20"])?;
        Ok(out.contains("http-request DROPPED").then_some(out))
    })?;
    assert!(
        dropped
            .contains("(HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)"),
        "{dropped}"
    );
    assert_eq!(
        deathstar_requests(&lab, "PUT"),
        puts_before,
        "the deathstar saw the PUT"
    );
    // Hubble's L7 filters on this real traffic: method, status, protocol.
    let put = lab.observe(&["--http-method", "PUT", "--last", "20"])?;
    ensure!(
        put.contains("http-request DROPPED") && !put.contains("POST http://"),
        "--http-method PUT:\n{put}"
    );
    let denied = lab.observe(&["--http-status", "403", "--last", "20"])?;
    ensure!(
        denied.contains("http-response FORWARDED (HTTP/1.1 403 ")
            && !denied.contains("http-request"),
        "--http-status 403:\n{denied}"
    );
    let http = lab.observe_json(&["--protocol", "http", "--last", "20"])?;
    ensure!(
        !http.is_empty() && http.iter().all(|f| f["flow"]["l7"]["http"].is_object()),
        "--protocol http: {http:?}"
    );
    // The upstream CLI prints the same L7 lines through the relay, in every format.
    for output in ["compact", "dict", "json", "table"] {
        let args = ["--type", "l7", "--last", "20", "-o", output];
        match lab.compare_with_upstream(&args)? {
            Some(out) => assert!(out.contains("exhaust-port"), "{out}"),
            None => {
                println!("upstream comparison not run: HUBBLE_UPSTREAM is not set");
                break;
            }
        }
    }

    // The http metrics come from this real traffic.
    let scrape = http_get(METRICS, "/metrics", "text/plain")?;
    // httpV2 (the lab's default metrics): requests counted with their response status.
    ensure!(
        scrape
            .lines()
            .any(|l| l.starts_with("hubble_http_requests_total{")
                && l.contains("method=\"PUT\"")
                && l.contains("status=\"403\"")),
        "no denied PUT in hubble_http_requests_total:\n{scrape}"
    );
    ensure!(
        scrape
            .lines()
            .any(|l| l.starts_with("hubble_http_requests_total{")
                && l.contains("method=\"POST\"")
                && l.contains("status=\"200\"")),
        "no landing in hubble_http_requests_total:\n{scrape}"
    );
    ensure!(
        scrape
            .lines()
            .any(|l| l.starts_with("hubble_flows_processed_total{")
                && l.contains("subtype=\"HTTP\"")
                && l.contains("type=\"L7\"")),
        "no L7 flows in hubble_flows_processed_total:\n{scrape}"
    );

    // A landing with a W3C trace context: its flows carry the trace id, and the
    // duration histogram's exemplar is that trace (OpenMetrics, as Prometheus asks).
    let traceparent = format!("traceparent: 00-{TRACE_ID}-00f067aa0ba902b7-01");
    let (out, _) = curl_with(
        &lab,
        "tiefighter",
        "POST",
        "/v1/request-landing",
        &["-H", &traceparent],
    )?;
    assert_eq!(out, "Ship landed\n");
    let traced = eventually(Duration::from_secs(10), || {
        let flows = lab.observe_json(&["--type", "l7", "--last", "50"])?;
        let traced: Vec<_> = flows
            .into_iter()
            .filter(|f| f["flow"]["trace_context"]["parent"]["trace_id"] == TRACE_ID)
            .collect();
        Ok((traced.len() == 2).then_some(traced))
    })?;
    let types: Vec<_> = traced
        .iter()
        .map(|f| f["flow"]["l7"]["type"].clone())
        .collect();
    assert_eq!(types, ["REQUEST", "RESPONSE"], "{traced:?}");
    let open = http_get(
        METRICS,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    )?;
    let exemplar = format!("# {{traceID=\"{TRACE_ID}\"}}");
    ensure!(
        open.lines().any(
            |l| l.starts_with("hubble_http_request_duration_seconds_bucket{")
                && l.contains("method=\"POST\"")
                && l.contains(&exemplar)
        ),
        "no exemplar with the trace id on the duration histogram:\n{open}"
    );

    // Debian's Prometheus scrapes the http series, with the lab's labelsContext: the
    // deathstars' Deployment as destination_workload, the denied PUT by status, the
    // exemplar with its trace id.
    let prometheus_dir = lab.run_dir.join("prometheus");
    std::fs::create_dir_all(&prometheus_dir)?;
    let mut prometheus = Prometheus::start(&prometheus_dir, "hubble", &[METRICS.to_owned()])?;
    let denied = eventually(Duration::from_secs(60), || {
        prometheus.check_running()?;
        let series = prometheus
            .series("hubble_http_requests_total{method=\"PUT\",status=\"403\"}")
            .unwrap_or_default();
        Ok((!series.is_empty()).then_some(series))
    })?;
    ensure!(
        denied.keys().any(|labels| {
            labels.contains("destination_workload=\"deathstar\"")
                // The tiefighter is a bare pod: Prometheus drops empty labels.
                && !labels.contains("source_workload=")
                && labels.contains("destination_namespace=\"default\"")
                && labels.contains("traffic_direction=\"ingress\"")
        }),
        "{denied:?}"
    );
    // Summed over the series: the service spreads the landings over both deathstars.
    let landings = |series: &std::collections::BTreeMap<String, String>| -> f64 {
        series.values().filter_map(|v| v.parse::<f64>().ok()).sum()
    };
    let landed = eventually(Duration::from_secs(30), || {
        let landed = prometheus.series(
            "hubble_http_request_duration_seconds_count{method=\"POST\",destination_workload=\"deathstar\"}",
        )?;
        Ok((landings(&landed) >= 2.0).then_some(landed))
    });
    ensure!(
        landed.is_ok(),
        "fewer than two landings in Prometheus: {landed:?}"
    );
    let traces = eventually(Duration::from_secs(30), || {
        let traces = prometheus
            .exemplar_trace_ids("hubble_http_request_duration_seconds_bucket")
            .unwrap_or_default();
        Ok(traces.iter().any(|t| t == TRACE_ID).then_some(traces))
    })?;
    assert!(traces.iter().all(|t| t == TRACE_ID), "{traces:?}");
    drop(prometheus);

    // The datapath's view: the redirect verdict and the to-proxy trace.
    let verdicts = lab.observe_json(&[
        "--type",
        "policy-verdict",
        "--from-pod",
        "default/tiefighter",
        "--last",
        "20",
    ])?;
    ensure!(
        verdicts
            .iter()
            .any(|v| v["flow"]["verdict"] == "REDIRECTED"
                && v["flow"]["traffic_direction"] == "INGRESS"),
        "no REDIRECTED verdict: {verdicts:?}"
    );
    let to_proxy = lab.observe_json(&[
        "--type",
        "trace",
        "--from-pod",
        "default/tiefighter",
        "--last",
        "100",
    ])?;
    ensure!(
        to_proxy
            .iter()
            .any(|v| v["flow"]["trace_observation_point"] == "TO_PROXY"
                && v["flow"]["proxy_port"].as_u64().is_some_and(|p| p >= 10000)),
        "no to-proxy trace with a proxy port"
    );

    // The xwing is still dropped at L3/L4.
    let (out, code) = curl(&lab, "xwing", "POST", "/v1/request-landing")?;
    assert!(
        code != 0 && !out.contains("Ship landed"),
        "xwing: {code} {out}"
    );

    // A killed agent: the pinned datapath keeps redirecting to the proxy port, which
    // nobody serves, so the PUT fails instead of reaching the deathstar (no gap). The
    // restarted agent serves the same port again.
    let ports_before: Vec<String> = list
        .lines()
        .filter(|l| l.contains("proxy-redirect"))
        .map(str::trim)
        .map(String::from)
        .collect();
    let mut stop = lab.cmd();
    stop.args(["stop", "agent", "--node", "1", "--kill"]);
    let out = run_with_timeout(&mut stop, Duration::from_secs(30))?;
    ensure!(out.status.success(), "stopping the agent: {out:?}");
    std::thread::sleep(Duration::from_millis(500));
    let (out, code) = curl(&lab, "tiefighter", "PUT", "/v1/exhaust-port")?;
    assert!(
        code != 0 && out.is_empty(),
        "without the agent: {code} {out:?}"
    );
    assert_eq!(
        deathstar_requests(&lab, "PUT"),
        puts_before,
        "the PUT got through while the agent was down"
    );
    let mut start = lab.cmd();
    start.args(["start", "agent", "--node", "1"]);
    let out = run_with_timeout(&mut start, Duration::from_secs(60))?;
    ensure!(out.status.success(), "starting the agent: {out:?}");
    let (out, _) = eventually(Duration::from_secs(30), || {
        let (out, code) = curl(&lab, "tiefighter", "PUT", "/v1/exhaust-port")?;
        Ok(out.contains("Access denied").then_some((out, code)))
    })?;
    assert_eq!(out, "Access denied\r\n");
    let list = lab.agent(&["endpoint", "list"])?;
    let ports_after: Vec<String> = list
        .lines()
        .filter(|l| l.contains("proxy-redirect"))
        .map(str::trim)
        .map(String::from)
        .collect();
    assert_eq!(
        ports_after, ports_before,
        "the redirects keep their ports across a restart"
    );
    let (out, _) = curl(&lab, "tiefighter", "POST", "/v1/request-landing")?;
    assert_eq!(out, "Ship landed\n");
    assert_eq!(deathstar_requests(&lab, "PUT"), puts_before);

    // The tiefighter's own egress HTTP rules on top of the deathstar's ingress ones:
    // its egress proxy enforces both (a connection is redirected once) and the flows
    // show both directions; the PUT passes the egress rules, not the deathstar's.
    let egress = lab.run_dir.join("tiefighter-egress-http.yaml");
    std::fs::write(&egress, TIEFIGHTER_EGRESS_HTTP)?;
    let out = lab.agent(&["policy", "import", egress.to_str().unwrap_or_default()])?;
    assert!(out.contains("Revision: 3"), "{out}");
    let puts_before = deathstar_requests(&lab, "PUT");
    let (out, _) = eventually(Duration::from_secs(20), || {
        let (out, code) = curl(&lab, "tiefighter", "PUT", "/v1/exhaust-port")?;
        let flows = lab.observe_json(&["--type", "l7", "--last", "20"])?;
        let egress_seen = flows
            .iter()
            .any(|f| f["flow"]["traffic_direction"] == "EGRESS");
        Ok((out.contains("Access denied") && egress_seen).then_some((out, code)))
    })?;
    assert_eq!(out, "Access denied\r\n");
    assert_eq!(deathstar_requests(&lab, "PUT"), puts_before);
    let (out, _) = curl(&lab, "tiefighter", "POST", "/v1/request-landing")?;
    assert_eq!(out, "Ship landed\n");
    let flows = lab.observe_json(&["--type", "l7", "--last", "8"])?;
    let seen: Vec<(String, String, String, String)> = flows
        .iter()
        .map(|f| {
            let f = &f["flow"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&f["l7"]["http"]["method"]),
                text(&f["l7"]["type"]),
                text(&f["traffic_direction"]),
                text(&f["verdict"]),
            )
        })
        .collect();
    let row = |m: &str, t: &str, d: &str, v: &str| (m.into(), t.into(), d.into(), v.into());
    assert_eq!(
        seen,
        [
            row("PUT", "REQUEST", "EGRESS", "FORWARDED"),
            row("PUT", "REQUEST", "INGRESS", "DROPPED"),
            row("PUT", "RESPONSE", "INGRESS", "FORWARDED"),
            row("PUT", "RESPONSE", "EGRESS", "FORWARDED"),
            row("POST", "REQUEST", "EGRESS", "FORWARDED"),
            row("POST", "REQUEST", "INGRESS", "FORWARDED"),
            row("POST", "RESPONSE", "INGRESS", "FORWARDED"),
            row("POST", "RESPONSE", "EGRESS", "FORWARDED"),
        ],
        "{flows:?}"
    );
    let out = lab.agent(&["policy", "delete", "tiefighter-egress-http"])?;
    assert!(out.contains("Revision: 4"), "{out}");

    // Visibility without enforcement: `http: [{}]` lets the PUT through the proxy to
    // the deathstar, and records it with the deathstar's answer.
    let out = lab.agent(&[
        "policy",
        "import",
        policy("rule1-http-visibility.yaml")
            .to_str()
            .unwrap_or_default(),
    ])?;
    assert!(out.contains("Revision: 5"), "{out}");
    let puts_before = deathstar_requests(&lab, "PUT");
    let out = put_until_it_explodes(&lab)?;
    assert!(out.starts_with("Panic: deathstar exploded"), "{out}");
    assert!(deathstar_requests(&lab, "PUT") > puts_before);
    let crashed = eventually(Duration::from_secs(10), || {
        let out = lab.observe(&[
            "--type",
            "l7",
            "--http-method",
            "PUT",
            "--http-status",
            "500",
            "--last",
            "20",
        ])?;
        Ok(out
            .contains("http-response FORWARDED (HTTP/1.1 500 ")
            .then_some(out))
    })?;
    assert!(
        crashed.contains("PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port"),
        "{crashed}"
    );
    let list = lab.agent(&["endpoint", "list"])?;
    assert!(list.contains("proxy-redirect"), "{list}");

    // Without the L7 part, plain forwarding again: the PUT reaches the deathstar.
    let out = lab.agent(&[
        "policy",
        "import",
        policy("rule1.yaml").to_str().unwrap_or_default(),
    ])?;
    assert!(out.contains("Revision: 6"), "{out}");
    let out = put_until_it_explodes(&lab)?;
    assert!(out.starts_with("Panic: deathstar exploded"), "{out}");
    assert!(deathstar_requests(&lab, "PUT") > puts_before);
    let list = lab.agent(&["endpoint", "list"])?;
    assert!(!list.contains("proxy-redirect"), "{list}");
    Ok(())
}
