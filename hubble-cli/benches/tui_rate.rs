//! How many flows per second the live view keeps up with: an in-process observer is fed
//! as fast as it takes flows (or at `TUI_BENCH_RATE` flows/s) while the view's loop
//! drains the stream into its state and draws an 80x24 screen every 100 ms on
//! ratatui's test backend. Prints rows received and frames drawn per second.

// The sample flows fill the deprecated `summary` as Hubble still does.
#![allow(deprecated)]

use std::time::{Duration, Instant};

use hubble_cli::conn::{self, ConnOptions};
use hubble_cli::tui::feed::Feed;
use hubble_cli::tui::state::{State, ROW_CAPACITY};
use hubble_cli::tui::{apply_event, view, FRAME_INTERVAL};
use observer::serve::{ServeConfig, Server};
use observer::{LocalObserver, ObserverConfig};
use proto::flow::{self, Flow};
use proto::observer::GetFlowsRequest;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// How long the measurement runs.
const RUN: Duration = Duration::from_secs(5);

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
        let (observer, ingest) = LocalObserver::new(ObserverConfig { node_name: "kind-worker".into(), ring_capacity: 65_535, ..Default::default() })?;
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("hubble.sock");
        let mut config = ServeConfig::default();
        config.unix_socket = Some(socket.clone());
        let server = Server::bind(config).await?;
        let obs = observer.clone();
        tokio::spawn(async move { server.run(obs, tonic::service::Routes::default(), std::future::pending()).await });

        let opts = ConnOptions {
            server: format!("unix://{}", socket.display()),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let channel = conn::connect(&opts).await?;
        let (feed, mut events) = Feed::new();
        let request = GetFlowsRequest { follow: true, ..Default::default() };
        let stream = feed.spawn_flows(channel, request, 1);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let producer = tokio::spawn(async move {
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < RUN + Duration::from_secs(1) {
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
            }
            i
        });

        let mut terminal = Terminal::new(TestBackend::new(80, 24))?;
        let mut state = State::new(ROW_CAPACITY, Instant::now());
        let mut frames = tokio::time::interval(FRAME_INTERVAL);
        let start = Instant::now();
        let mut drawn = 0u64;
        while start.elapsed() < RUN {
            frames.tick().await;
            while let Ok((tagged, event)) = events.try_recv() {
                apply_event(&mut state, 1, tagged, event);
            }
            state.tick(Instant::now());
            terminal.draw(|f| view::draw(f, &state))?;
            drawn += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        stream.abort();
        let produced = producer.await?;
        let discarded = feed.discarded.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "tui: {:.0} rows/s received into the view, {:.1} frames/s drawn (80x24), {} rows kept, {} evicted, {} discarded, {} flows produced, {} lost",
            state.received as f64 / secs,
            drawn as f64 / secs,
            state.rows().len(),
            state.evicted,
            discarded,
            produced,
            state.lost_events
        );
        anyhow::Ok(())
    })
}
