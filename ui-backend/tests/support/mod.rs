//! Shared parts of the integration tests: a scripted Observer server, demo flows, an
//! HTTP client and a running `hubble-ui`.
#![allow(dead_code)]

pub mod flows;
pub mod http;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::oneshot;
use ui_backend::{Config, ServerAddress, Ui};

/// A `hubble-ui` running in this process.
pub struct RunningUi {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningUi {
    /// Starts the UI on 127.0.0.1:0, reading the server at `server`.
    pub async fn start(server: SocketAddr) -> Self {
        let upstream = ServerAddress::Tcp {
            host: server.ip().to_string(),
            port: server.port(),
        };
        let mut config = Config::new("127.0.0.1:0".parse().expect("address"), upstream);
        config.status_interval = Duration::from_millis(300);
        let ui = Ui::bind(config).await.expect("bind hubble-ui");
        let addr = ui.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            ui.run(async {
                let _ = stopped.await;
            })
            .await
            .expect("hubble-ui runs");
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the UI and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("hubble-ui stops within 10 s")
            .expect("hubble-ui task");
    }
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `wait`.
pub async fn eventually<T, F, Fut>(what: &str, wait: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {wait:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
