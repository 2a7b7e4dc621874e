//! Figures for `hubble-ui` in a real browser: the flow rate the page keeps up with, and
//! the browser's memory over a long run.
//!
//! ```sh
//! (cd ui-backend/tests/browser && npm install)
//! cargo run --release -p ui-backend --example ui_load -- --rates 200,1000,3000,6000 --seconds 20
//! cargo run --release -p ui-backend --example ui_load -- --rates 500 --seconds 600 --sample-seconds 30
//! ```
//!
//! For each rate a scripted Observer server feeds that many flows per second (demo pods
//! in three namespaces, one in ten dropped) to an in-process `hubble-ui`, and
//! `tests/browser/load.mjs` measures in chromium: flows received and table rows
//! rendered per second, updates per second, main-thread time spent rendering, the lag
//! between a flow's timestamp and its arrival in the page, flows missed or skipped for
//! the page, and the JS heap (after a forced GC) at the start and the end.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use proto::flow::Verdict;
use support::flows::{self, Pod};
use support::server::{Feed, ScriptedServer};
use support::RunningUi;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Measures the page under a steady flow rate.
#[derive(Debug, Parser)]
struct Args {
    /// Flow rates to try, in flows per second.
    #[arg(long, value_delimiter = ',', default_value = "200,1000,3000,6000")]
    rates: Vec<u32>,
    /// Length of each run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Interval between samples printed during a run.
    #[arg(long, default_value_t = 2)]
    sample_seconds: u64,
}

/// Pods the load is spread over: the demo plus a small shop in its own namespace.
const PODS: [Pod; 8] = [
    flows::TIEFIGHTER,
    flows::XWING,
    flows::DEATHSTAR_1,
    flows::DEATHSTAR_2,
    flows::COREDNS,
    Pod {
        namespace: "shop",
        name: "frontend-5c8d9f7b6d-q7x2m",
        ip: "10.200.2.10",
        identity: 300,
        labels: &["k8s:app=frontend"],
    },
    Pod {
        namespace: "shop",
        name: "cart-6d4f8b9c7-z8k4p",
        ip: "10.200.2.11",
        identity: 301,
        labels: &["k8s:app=cart"],
    },
    Pod {
        namespace: "shop",
        name: "payments-0",
        ip: "10.200.2.12",
        identity: 302,
        labels: &["k8s:app=payments"],
    },
];

/// Source, destination, port of the connections the load repeats.
const CONNECTIONS: [(usize, usize, u32); 7] = [
    (0, 2, 80),
    (0, 3, 80),
    (1, 2, 80),
    (1, 4, 53),
    (5, 6, 8080),
    (6, 7, 9000),
    (5, 4, 53),
];

/// Pushes `rate` flows per second into `feed` until `stop` is set.
async fn generate(feed: Arc<Feed>, rate: u32, stop: Arc<AtomicBool>) {
    let tick = Duration::from_millis(10);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut ticker = tokio::time::interval(tick);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let (src, dst, port) = CONNECTIONS[(sent % CONNECTIONS.len() as u64) as usize];
            let verdict = if sent % 10 == 9 {
                Verdict::Dropped
            } else {
                Verdict::Forwarded
            };
            feed.push(flows::tcp_syn(PODS[src], PODS[dst], port, verdict));
            sent += 1;
        }
    }
}

struct Run {
    summary: serde_json::Value,
    backend_rate: f64,
}

async fn run_one(rate: u32, args: &Args) -> anyhow::Result<Run> {
    let feed = Feed::new();
    let server = ScriptedServer::start(feed.clone(), "127.0.0.1:0".parse()?).await;
    let ui = RunningUi::start(server.addr).await;
    let stop = Arc::new(AtomicBool::new(false));
    let generator = tokio::spawn(generate(feed.clone(), rate, stop.clone()));
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut child = tokio::process::Command::new("node")
        .arg(browser_dir.join("load.mjs"))
        .arg(format!("http://{}/", ui.addr))
        .arg(args.seconds.to_string())
        .arg(args.sample_seconds.to_string())
        .current_dir(&browser_dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node")?;
    let mut lines = BufReader::new(child.stdout.take().context("node stdout")?).lines();
    let mut summary = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(json) = line.strip_prefix("SUMMARY ") {
            summary = Some(serde_json::from_str(json)?);
        } else if let Some(json) = line.strip_prefix("SAMPLE ") {
            let s: serde_json::Value = serde_json::from_str(json)?;
            println!(
                "  {rate:>6}/s t={:>4}s page {:>7.0} flows/s {:>5.1} updates/s lag {:>6} ms heap {:>6.1} MB rows {}",
                s["t"],
                s["flowsPerS"].as_f64().unwrap_or(0.0),
                s["updatesPerS"].as_f64().unwrap_or(0.0),
                s["lagMs"],
                s["heapUsedMB"].as_f64().unwrap_or(0.0),
                s["rows"]
            );
        }
    }
    let status = child.wait().await?;
    let backend = support::http::get_json(ui.addr, "/api/status").await;
    stop.store(true, Ordering::Relaxed);
    generator.await?;
    ui.stop().await;
    server.stop().await;
    let Some(summary) = summary else {
        bail!("load.mjs printed no summary ({status})");
    };
    Ok(Run {
        summary,
        backend_rate: backend["flows_per_second"].as_f64().unwrap_or(0.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        bail!("run npm install in {} first", browser_dir.display());
    }
    let mut rows = Vec::new();
    for &rate in &args.rates {
        println!("offering {rate} flows/s for {} s", args.seconds);
        let run = run_one(rate, &args).await?;
        rows.push((rate, run));
    }
    println!();
    println!(
        "{:>8} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>8} {:>10} {:>10}",
        "offered",
        "backend",
        "page",
        "rows/s",
        "updates/s",
        "render",
        "lag p50",
        "lag max",
        "skipped",
        "heap start",
        "heap end"
    );
    for (rate, run) in &rows {
        let s = &run.summary;
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        println!(
            "{:>6}/s {:>7.0}/s {:>7.0}/s {:>8.0} {:>9.1} {:>7.0}ms/s {:>6.0} ms {:>6.0} ms {:>8} {:>7.1} MB {:>7.1} MB",
            rate,
            run.backend_rate,
            f("flowsPerS"),
            f("rowsPerS"),
            f("updatesPerS"),
            f("renderMsPerS"),
            f("lagMsMedian"),
            f("lagMsMax"),
            s["skippedFlows"].as_u64().unwrap_or(0) + s["missedFlows"].as_u64().unwrap_or(0),
            f("heapStartMB"),
            f("heapEndMB"),
        );
    }
    Ok(())
}
