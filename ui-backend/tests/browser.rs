//! The page in a real browser: Debian's chromium driven by playwright-core
//! (`tests/browser/run.mjs`) against `hubble-ui` and a scripted Observer server.
//! Screenshots go to `target/ui-artifacts/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::flows;
use support::server::{Feed, ScriptedServer};
use support::RunningUi;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Longest the browser script may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite(browser_dir: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} not found (apt-get install chromium)"));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found (apt-get install nodejs npm)".into());
    }
    if !browser_dir.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core not installed (run npm install in {})",
            browser_dir.display()
        ));
    }
    None
}

/// `target/ui-artifacts` of the workspace.
pub fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-artifacts")
}

#[tokio::test]
async fn the_page_shows_the_map_turning_dropped_and_filters_the_table() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if let Some(reason) = missing_prerequisite(&browser_dir) {
        tests::skip("browser test", &reason);
        return;
    }
    let feed = Feed::new();
    let server = ScriptedServer::start(feed.clone(), "127.0.0.1:0".parse().expect("addr")).await;
    let ui = RunningUi::start(server.addr).await;
    for flow in flows::before_policy_as_observed()
        .into_iter()
        .chain(flows::via_service())
    {
        feed.push(flow);
    }
    let artifacts = artifact_dir();
    let mut child = Command::new("node")
        .arg(browser_dir.join("run.mjs"))
        .arg(format!("http://{}/", ui.addr))
        .arg(&artifacts)
        .current_dir(&browser_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let stdout = child.stdout.take().expect("stdout");
    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut transcript = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("browser: {line}");
            if line == "WAITING_FOR_DROPS" {
                for flow in flows::after_policy_as_observed() {
                    feed.push(flow);
                }
            }
            transcript.push(line);
        }
        let status = child.wait().await.expect("node exits");
        (status, transcript)
    };
    let (status, transcript) = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .expect("browser script finishes in time");
    ui.stop().await;
    server.stop().await;
    assert!(
        status.success() && transcript.iter().any(|l| l == "PASS browser checks"),
        "browser checks failed ({status}); screenshots in {}",
        artifacts.display()
    );
    // The scripted denials come as policy-verdict and drop events: both kinds were shown.
    let denials = transcript
        .iter()
        .find_map(|l| l.strip_suffix(" drop rows read DROPPED"))
        .and_then(|l| l.strip_prefix("STEP "))
        .expect("the event type step ran");
    assert!(
        !denials.starts_with("0 ") && !denials.ends_with(" 0"),
        "both event kinds expected: {denials}"
    );
    println!("screenshots in {}", artifacts.display());
}
