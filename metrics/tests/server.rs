//! The `/metrics` endpoint: content negotiation, `promtool check metrics`, and a real
//! Prometheus scraping it.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{demo_metrics, get, start_server};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_text_by_default_and_openmetrics_on_request() -> Result<()> {
    let (_metrics, registry) = demo_metrics()?;
    let (addr, stop, task) = start_server(registry).await?;
    let (text, open, missing) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((
            get(addr, "/metrics", None)?,
            get(
                addr,
                "/metrics",
                Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            )?,
            get(addr, "/nothing", None)?,
        ))
    })
    .await??;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.body.contains("# TYPE hubble_drop_total counter\nhubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 3\n"), "{}", text.body);
    assert!(text
        .body
        .contains("hubble_lost_events_total{source=\"hubble_ring_buffer\"} 7"));
    assert!(text
        .body
        .contains("hubble_lost_events_total{source=\"observer_events_queue\"} 0"));
    assert!(!text.body.contains("# EOF"));
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(
        open.body.contains("# TYPE hubble_drop counter\n"),
        "{}",
        open.body
    );
    assert!(open
        .body
        .contains("# {traceID=\"4bf92f3577b34da6a3ce929d0e0e4736\"}"));
    assert!(open.body.ends_with("# EOF\n"));
    assert_eq!(missing.status, 404);
    let _ = stop.send(());
    task.await?;
    Ok(())
}

fn run_promtool(body: &str, content_type: &str) -> Result<Option<String>> {
    if !tests::skip::require_file("promtool check metrics", PROMTOOL, "prometheus") {
        return Ok(None);
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting promtool")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("promtool stdin")?;
        stdin.write_all(body.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("promtool rejected the {content_type} exposition:\n{report}\n---\n{body}");
    }
    Ok(Some(report))
}

#[test]
fn promtool_accepts_the_exposition() -> Result<()> {
    let (_metrics, registry) = demo_metrics()?;
    let text = registry.encode(metrics::Format::Text);
    if let Some(report) = run_promtool(&text, "text")? {
        // promtool only lints; it prints nothing when every family is fine.
        assert!(
            report.trim().is_empty(),
            "promtool lint findings:\n{report}"
        );
    }
    Ok(())
}

/// A Prometheus server started by this test; killed (by its PID) when dropped.
struct PrometheusProcess {
    child: Child,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn query(prometheus: SocketAddr, expr: &str) -> Result<serde_json::Value> {
    let response = common::get(prometheus, &format!("/api/v1/query?query={expr}"), None)?;
    Ok(serde_json::from_str(&response.body)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_server() -> Result<()> {
    if !tests::skip::require_file("prometheus_scrapes_the_server", PROMETHEUS, "prometheus") {
        return Ok(());
    }
    let (metrics, registry) = demo_metrics()?;
    let (addr, stop, task) = start_server(registry).await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: hubble\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )?;
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting prometheus")?;
    let prometheus = PrometheusProcess { child };

    let deadline = Instant::now() + Duration::from_secs(60);
    let result =
        tokio::task::spawn_blocking(move || -> Result<(serde_json::Value, serde_json::Value)> {
            loop {
                if Instant::now() > deadline {
                    bail!("Prometheus did not return hubble_drop_total in time");
                }
                std::thread::sleep(Duration::from_millis(500));
                let Ok(drops) = query(web, "hubble_drop_total") else {
                    continue;
                };
                if drops["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                {
                    let up = query(web, "up")?;
                    return Ok((drops, up));
                }
            }
        })
        .await?;
    let (drops, up) = match result {
        Ok(found) => found,
        Err(e) => {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            bail!("{e}\nprometheus log:\n{log}");
        }
    };
    let series = drops["data"]["result"].as_array().context("result array")?;
    assert_eq!(series.len(), 1, "{drops}");
    assert_eq!(series[0]["metric"]["reason"], "POLICY_DENIED");
    assert_eq!(series[0]["metric"]["protocol"], "TCP");
    assert_eq!(series[0]["metric"]["job"], "hubble");
    assert_eq!(series[0]["value"][1], "3");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    // Prometheus asks for OpenMetrics first, so exemplars reach its storage.
    metrics.process_flow(&common::http_response("0af7651916cd43dd8448eb211c80319c"));
    let exemplars = tokio::task::spawn_blocking(move || -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = chrono::Utc::now().timestamp();
            let path = format!(
                "/api/v1/query_exemplars?query=hubble_http_requests_total&start={}&end={}",
                now - 600,
                now + 60
            );
            let body = common::get(web, &path, None)?.body;
            if body.contains("0af7651916cd43dd8448eb211c80319c") || Instant::now() > deadline {
                return Ok(body);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await??;
    assert!(
        exemplars.contains("0af7651916cd43dd8448eb211c80319c"),
        "{exemplars}"
    );

    drop(prometheus);
    let _ = stop.send(());
    task.await?;
    Ok(())
}
