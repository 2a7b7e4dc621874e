//! How many flows per second the live view keeps up with, and where every flow went.
//!
//! An in-process observer is fed for [`RUN`] as fast as it takes flows (or at
//! `TUI_BENCH_RATE` flows/s) while the view's loop drains the stream into its state
//! and draws an 80x24 screen every 100 ms on ratatui's test backend, as `hubble tui`
//! does. Then production stops and the view keeps reading until every flow produced
//! is accounted for: received by the view, or reported lost (by the server, whose
//! ring the stream could not keep up with, or by the view's own queue). Rows evicted
//! from the table (it keeps [`ROW_CAPACITY`]) were received and shown, not lost.
//!
//! Run: `cargo bench -p hubble-cli --bench tui_rate` (`TUI_BENCH_RATE=20000` for a
//! fixed rate). Fails if produced != received + lost.

// The sample flows fill the deprecated `summary` as Hubble still does.
#![allow(deprecated)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubble_cli::conn::{self, ConnOptions};
use hubble_cli::tui::feed::Feed;
use hubble_cli::tui::state::{State, ROW_CAPACITY};
use hubble_cli::tui::{drain_events, view, FRAME_INTERVAL};
use observer::server::{ServeConfig, Server};
use observer::{LocalObserver, ObserverConfig};
use proto::flow::{self, Flow};
use proto::observer::GetFlowsRequest;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// How long flows are produced.
const RUN: Duration = Duration::from_secs(5);

/// How long the view may take, once production stopped, to account for every flow.
const SETTLE: Duration = Duration::from_secs(30);

/// Observer ring size (flows).
const RING_CAPACITY: u64 = 65_535;

fn flow(i: u64) -> Flow {
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: 1_721_922_966,
            nanos: (i % 1_000_000_000) as i32,
        }),
        node_name: "kind-worker".into(),
        verdict: if i.is_multiple_of(4) {
            flow::Verdict::Dropped
        } else {
            flow::Verdict::Forwarded
        } as i32,
        source: Some(flow::Endpoint {
            namespace: "default".into(),
            pod_name: "xwing".into(),
            identity: 9203,
            ..Default::default()
        }),
        destination: Some(flow::Endpoint {
            namespace: "default".into(),
            pod_name: "deathstar".into(),
            identity: 50122,
            ..Default::default()
        }),
        ip: Some(flow::Ip {
            source: "10.244.1.21".into(),
            destination: "10.244.1.30".into(),
            ..Default::default()
        }),
        event_type: Some(flow::CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        summary: "TCP Flags: SYN".into(),
        ..Default::default()
    }
}

fn main() -> anyhow::Result<()> {
    let rate: Option<f64> = std::env::var("TUI_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (observer, ingest) = LocalObserver::new(ObserverConfig {
            node_name: "kind-worker".into(),
            ring_capacity: RING_CAPACITY,
            ..Default::default()
        })?;
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("hubble.sock");
        let mut config = ServeConfig::default();
        config.unix_socket = Some(socket.clone());
        let server = Server::bind(config).await?;
        let obs = observer.clone();
        tokio::spawn(async move {
            server
                .run(obs, tonic::service::Routes::default(), std::future::pending())
                .await
        });

        let opts = ConnOptions {
            server: format!("unix://{}", socket.display()),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let channel = conn::connect(&opts).await?;
        let (feed, mut events) = Feed::new();
        // From the oldest stored flow on, so that the warm-up flow below arrives however
        // late the server starts the stream; once it has, the stream is reading and
        // every later flow is either received or reported lost.
        let request = GetFlowsRequest {
            follow: true,
            since: Some(pbjson_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        };
        let stream = feed.spawn_flows(channel, request, 1);
        let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
        let mut state = State::new(ROW_CAPACITY, Instant::now());

        anyhow::ensure!(ingest.push_flow_wait(flow(0)).await, "observer stopped");
        let warm = Instant::now();
        while state.received == 0 {
            anyhow::ensure!(warm.elapsed() < SETTLE, "the warm-up flow never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
            drain_events(&mut state, &mut events, &feed, 1);
        }

        let produced = Arc::new(AtomicU64::new(1));
        let producing = Arc::new(AtomicBool::new(true));
        let producer = {
            let (produced, producing) = (produced.clone(), producing.clone());
            tokio::spawn(async move {
                let start = Instant::now();
                let mut i = 1u64;
                while start.elapsed() < RUN {
                    if let Some(r) = rate {
                        let due = (start.elapsed().as_secs_f64() * r) as u64;
                        if i >= due {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            continue;
                        }
                    }
                    if !ingest.push_flow_wait(flow(i)).await {
                        break;
                    }
                    i += 1;
                    produced.store(i, Ordering::Relaxed);
                }
                producing.store(false, Ordering::Relaxed);
                (ingest, start.elapsed())
            })
        };

        // The view's loop, as `hubble tui` runs it, until production stopped and every
        // flow is accounted for. `run` is what was seen when production stopped.
        let received_before = state.received;
        let mut frames = tokio::time::interval(FRAME_INTERVAL);
        let start = Instant::now();
        let (mut drawn, mut draining) = (0u64, Duration::ZERO);
        let mut run: Option<(Duration, u64, u64, Instant)> = None;
        loop {
            frames.tick().await;
            let t = Instant::now();
            drain_events(&mut state, &mut events, &feed, 1);
            draining += t.elapsed();
            state.tick(Instant::now());
            terminal.draw(|f| view::draw(f, &state))?;
            drawn += 1;
            let stopped = match run {
                Some((.., stopped)) => stopped,
                None if producing.load(Ordering::Relaxed) => continue,
                None => {
                    let now = Instant::now();
                    run = Some((start.elapsed(), state.received, drawn, now));
                    now
                }
            };
            let total = produced.load(Ordering::Relaxed);
            if state.received + state.lost() >= total || stopped.elapsed() > SETTLE {
                break;
            }
        }
        // Rates of the view over its own time until it saw production stop (a frame can
        // lag behind when it drains a full queue); production over the producer's time.
        let (view_time, received_in_run, drawn_in_run, _) =
            run.unwrap_or((start.elapsed(), state.received, drawn, Instant::now()));
        let secs = view_time.as_secs_f64();
        stream.abort();
        let (_ingest, producing_time) = producer.await?;
        let produced = produced.load(Ordering::Relaxed);
        let received = state.received;
        let lost = state.lost();
        println!(
            "tui_rate: {:.1} s producing{}, view on 80x24 at {:.1} frames/s, table of {} rows",
            producing_time.as_secs_f64(),
            rate.map_or(String::new(), |r| format!(" at {r:.0} flows/s")),
            drawn_in_run as f64 / secs,
            ROW_CAPACITY,
        );
        println!(
            "  produced  {produced:>10} flows ({:.0}/s)",
            produced as f64 / producing_time.as_secs_f64()
        );
        println!(
            "  received  {received:>10} flows by the view: {:.0} rows/s kept up with while produced; {} rows in the table, {} evicted from it (shown, not lost)",
            (received_in_run - received_before) as f64 / secs,
            state.rows().len(),
            state.evicted,
        );
        println!(
            "            the view's loop took {:.2} us per row received ({:.0} rows/s of one thread, wall time on {} CPUs shared with the producer and server)",
            draining.as_secs_f64() * 1e6 / received.max(1) as f64,
            received as f64 / draining.as_secs_f64().max(1e-9),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
        println!(
            "  lost      {lost:>10} reported ({} by the server: ring overwritten before the stream read them; {} discarded by the view's queue)",
            state.lost_events, state.discarded,
        );
        let ok = produced == received + lost;
        println!(
            "  check     produced = received + lost: {produced} {} {received} + {lost}",
            if ok { "=" } else { "!=" }
        );
        anyhow::ensure!(ok, "{} flows unaccounted for", produced as i128 - (received + lost) as i128);
        anyhow::Ok(())
    })
}
