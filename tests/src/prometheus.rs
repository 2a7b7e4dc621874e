//! Debian's real Prometheus server (`/usr/bin/prometheus`) for the tests: started
//! with one scrape job over the given targets (1 s interval) and exemplar storage,
//! queried through its HTTP API, killed when dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Where Debian's `prometheus` package installs the server.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    web: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` (config, data, log) scraping `targets` (`IP:PORT`)
    /// every second as job `job`; its web API on a free loopback port.
    pub fn start(dir: &Path, job: &str, targets: &[String]) -> Result<Prometheus> {
        let config = dir.join("prometheus.yml");
        let targets = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {job}\n    scrape_interval: 1s\n    \
                 scrape_timeout: 1s\n    static_configs:\n      \
                 - targets: [{targets}]\n"
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("a free local port")?
            .port();
        let web = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .arg("--enable-feature=exemplar-storage")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("prometheus log")?)
            .spawn()
            .with_context(|| format!("starting {PROMETHEUS}"))?;
        Ok(Prometheus { child, web, log })
    }

    /// What Prometheus has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An error with Prometheus' log if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("prometheus exited with {status}:\n{}", self.log());
        }
        Ok(())
    }

    /// The result vector of instant query `expr`, or an error while Prometheus is not
    /// ready to answer.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let body = http_get(self.web, &path)?;
        let response: Value =
            serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        if response["status"] != "success" {
            bail!("query {expr} failed: {response}");
        }
        response["data"]["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("query {expr}: no result vector in {response}"))
    }

    /// The trace ids of the exemplars Prometheus stored for `expr` in the last hour.
    pub fn exemplar_trace_ids(&self, expr: &str) -> Result<Vec<String>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs();
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            percent_encode(expr),
            now.saturating_sub(3600),
            now + 60
        );
        let body = http_get(self.web, &path)?;
        let response: Value =
            serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
        if response["status"] != "success" {
            bail!("exemplar query {expr} failed: {response}");
        }
        let series = response["data"].as_array().cloned().unwrap_or_default();
        Ok(series
            .iter()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["labels"]["traceID"].as_str().map(str::to_owned))
            .collect())
    }

    /// The series of `expr` as `labels -> value`, the labels (without `job` and
    /// `instance`) sorted and printed `name="value",...`.
    pub fn series(&self, expr: &str) -> Result<BTreeMap<String, String>> {
        let result = self
            .query(expr)
            .with_context(|| format!("prometheus log:\n{}", self.log()))?;
        Ok(result
            .iter()
            .map(|sample| {
                let labels = sample["metric"]
                    .as_object()
                    .map(|m| {
                        let mut labels: Vec<String> = m
                            .iter()
                            .filter(|(name, _)| {
                                !["__name__", "job", "instance"].contains(&name.as_str())
                            })
                            .map(|(name, value)| format!("{name}={value}"))
                            .collect();
                        labels.sort();
                        labels.join(",")
                    })
                    .unwrap_or_default();
                let value = sample["value"][1].as_str().unwrap_or_default().to_string();
                (labels, value)
            })
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything but RFC 3986's unreserved characters, percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The body of a 200 response to `GET path`.
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("read from {addr}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP response: {response}"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {status}\n{body}");
    }
    Ok(body.to_string())
}
