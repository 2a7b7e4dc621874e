//! The seeds' demo watched live on the real kernel datapath: the service map of
//! `hubble-ui` in a real browser (Debian's chromium, `ui-backend/tests/browser/run.mjs`)
//! and `hubble tui` in a real terminal (tmux, 80x24), both reading the agent's Unix
//! socket, both showing xwing's landing dropped by `rule1`. Needs root, chromium, node
//! with playwright-core, and tmux; prints a SKIP line otherwise. Screenshots go to
//! `target/ui-artifacts/live/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tests::{bin, eventually, require_root, Lab};

const T: Duration = Duration::from_secs(60);
/// Longest the browser script may take (each of its waits is 20 s at most).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
/// Pause between two rounds of demo traffic while the views are watched.
const TRAFFIC_PAUSE: Duration = Duration::from_secs(2);

/// Sends the demo traffic every [`TRAFFIC_PAUSE`] until `stop` is set.
fn traffic_until(lab: &Lab, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = lab.traffic() {
            eprintln!("hubble-lab traffic: {e:#}");
        }
        let pause_end = Instant::now() + TRAFFIC_PAUSE;
        while !stop.load(Ordering::Relaxed) && Instant::now() < pause_end {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A process this test started: stopped by its PID on drop (SIGTERM, then SIGKILL).
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    /// Waits for the process to exit by itself within `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        if self.wait(Duration::from_secs(10)).is_err() {
            eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A detached tmux session of our own, killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(name: String, command: &str) -> Result<Self> {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "80", "-y", "24"])
            .arg(command)
            .status()?;
        if !status.success() {
            bail!("tmux new-session failed: {status}");
        }
        Ok(Tmux(name))
    }

    fn screen(&self) -> Result<String> {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn keys(&self, keys: &[&str]) -> Result<()> {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.0])
            .args(keys)
            .status()?;
        if !status.success() {
            bail!("tmux send-keys {keys:?} failed: {status}");
        }
        Ok(())
    }

    /// Waits until the screen satisfies `ok`, returning it; fails with the last screen.
    fn wait(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen()?;
            if ok(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn browser_dir() -> PathBuf {
    workspace().join("ui-backend/tests/browser")
}

fn rule1() -> PathBuf {
    workspace().join("examples/policies/rule1.yaml")
}

/// Why the browser or the terminal cannot be driven here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} not found (apt-get install chromium)"));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found (apt-get install nodejs npm)".into());
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core not installed (run npm install in {})",
            browser_dir().display()
        ));
    }
    let tmux = Command::new("tmux").arg("-V").output();
    if !tmux.is_ok_and(|o| o.status.success()) {
        return Some("tmux not found (apt-get install tmux)".into());
    }
    None
}

/// The number of flows `hubble tui` says it received (`rows N shown, M received, ...`).
fn received(screen: &str) -> Option<u64> {
    screen.lines().find_map(|l| {
        let before = l.split(" received,").next().filter(|b| b.len() < l.len())?;
        before.rsplit(' ').next()?.parse().ok()
    })
}

/// A plain HTTP/1.0 GET returning the body of a 200 answer.
fn http_get(address: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = address.parse()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP answer from {address}{path}: {answer}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {head}");
    }
    Ok(body.to_string())
}

/// `hubble-ui` started from its binary, reading the agent's socket; stopped on drop.
struct Ui {
    address: String,
    _process: Process,
}

impl Ui {
    fn start(server: &str) -> Result<Self> {
        let mut child = Command::new(bin("hubble-ui")?)
            .args(["--listen-address", "127.0.0.1:0", "--server", server])
            // Only flows from now on: the lab's first requests, sent while the agent was
            // still programming the endpoints, are not part of the story.
            .args(["--initial-flows", "0"])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting hubble-ui")?;
        let stdout = child.stdout.take().context("hubble-ui stdout")?;
        let process = Process {
            name: "hubble-ui",
            child,
        };
        // Its log is drained (and echoed) for as long as it runs; the first line tells
        // the address it bound.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("hubble-ui: {line}");
                if let Some(rest) = line.split("serving http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(address.to_string());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(30))
            .context("hubble-ui did not print the address it serves")?;
        Ok(Ui {
            address,
            _process: process,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    fn map(&self) -> Result<Value> {
        Ok(serde_json::from_str(&http_get(&self.address, "/api/map")?)?)
    }
}

/// The edge `default/<from> -> default/<to>` on TCP port 80 of a map snapshot.
fn edge<'a>(map: &'a Value, from: &str, to: &str) -> Option<&'a Value> {
    map["edges"].as_array()?.iter().find(|e| {
        e["source"] == format!("default/{from}")
            && e["destination"] == format!("default/{to}")
            && e["port"] == 80
    })
}

/// Edges drawn from a deathstar: replies are left out of the map, and deathstar opens
/// no connection of its own, so there must be none.
fn edges_from_deathstar(map: &Value) -> Vec<&Value> {
    map["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .filter(|e| e["source"] == "default/deathstar")
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `run.mjs` against `url`. When it prints `WAITING_FOR_DROPS`, imports `rule1` and
/// sends traffic every few seconds until the script ends. Returns its transcript.
fn run_browser_script(lab: &Lab, url: &str, artifacts: &Path) -> Result<Vec<String>> {
    let mut child = Command::new("node")
        .arg(browser_dir().join("run.mjs"))
        .arg(url)
        .arg(artifacts)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting node")?;
    let stdout = child.stdout.take().context("node stdout")?;
    let mut node = Process {
        name: "node run.mjs",
        child,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let mut transcript = Vec::new();
    let outcome = std::thread::scope(|scope| {
        let mut traffic = None;
        let outcome = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(line)) => {
                    println!("browser: {line}");
                    if line == "WAITING_FOR_DROPS" && traffic.is_none() {
                        let path = rule1();
                        let out = lab.agent(&["policy", "import", &path.to_string_lossy()]);
                        match out {
                            Ok(out) => println!("policy import: {}", out.trim()),
                            Err(e) => break Err(e.context("importing rule1")),
                        }
                        traffic = Some(scope.spawn(|| traffic_until(lab, &stop)));
                    }
                    transcript.push(line);
                }
                Ok(Err(e)) => break Err(anyhow::Error::from(e).context("reading node's output")),
                Err(RecvTimeoutError::Disconnected) => break Ok(()),
                Err(RecvTimeoutError::Timeout) => {
                    break Err(anyhow::anyhow!(
                        "the browser script did not finish within {SCRIPT_TIMEOUT:?}"
                    ))
                }
            }
        };
        stop.store(true, Ordering::Relaxed);
        if let Some(traffic) = traffic {
            let _ = traffic.join();
        }
        outcome
    });
    outcome?;
    let status = node.wait(Duration::from_secs(30))?;
    if !status.success() || !transcript.iter().any(|l| l == "PASS browser checks") {
        bail!(
            "browser checks failed ({status}); screenshots in {}",
            artifacts.display()
        );
    }
    Ok(transcript)
}

#[test]
fn seeds_policy_drop_live_in_the_browser_and_the_terminal() -> Result<()> {
    let test = "seeds_policy_drop_live_in_the_browser_and_the_terminal";
    if !require_root(test) {
        return Ok(());
    }
    if let Some(reason) = missing_prerequisite() {
        tests::skip(test, &reason);
        return Ok(());
    }
    let started = Instant::now();
    let lab = Lab::up("ui", "10.105.0.0/24")?;

    // 1. No policy yet. The agent programs its endpoints asynchronously after `up`, so
    // traffic is repeated until xwing's landing is seen at both ends with its identity.
    lab.wait_until_programmed()
        .context("the agent did not program xwing and deathstar")?;
    println!("lab up and programmed after {:?}", started.elapsed());

    // 2. The web page. Before the browser opens, the map already holds the three
    // workloads and both landings forwarded.
    let ui = Ui::start(&lab.socket())?;
    let map = eventually(Duration::from_secs(30), || {
        lab.traffic()?;
        let map = ui.map()?;
        let landed = |from| {
            edge(&map, from, "deathstar")
                .is_some_and(|e| e["verdicts"]["FORWARDED"].as_u64().unwrap_or(0) > 0)
        };
        Ok((landed("xwing") && landed("tiefighter")).then_some(map))
    })
    .context("hubble-ui's map did not show both landings")?;
    let from_deathstar = edges_from_deathstar(&map);
    assert!(from_deathstar.is_empty(), "{from_deathstar:?}");
    for from in ["xwing", "tiefighter"] {
        let e = edge(&map, from, "deathstar").context("edge")?;
        assert!(e["verdicts"]["DROPPED"].is_null(), "drop before rule1: {e}");
        assert_eq!(e["protocol"], "TCP", "{e}");
    }
    let names: Vec<&str> = map["nodes"]
        .as_array()
        .context("nodes")?
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    for name in ["deathstar", "tiefighter", "xwing"] {
        assert!(
            names.contains(&name),
            "{name} missing from the map: {names:?}"
        );
    }
    println!("map before the browser: {names:?}");

    let artifacts = workspace().join("target/ui-artifacts/live");
    let browser_started = Instant::now();
    let transcript = run_browser_script(&lab, &ui.url(), &artifacts)?;
    println!(
        "browser checks passed after {:?} ({} lines); screenshots in {}",
        browser_started.elapsed(),
        transcript.len(),
        artifacts.display()
    );
    // The map behind the page agrees: xwing's landings end dropped, tiefighter's never.
    let map = ui.map()?;
    let xwing = edge(&map, "xwing", "deathstar").context("xwing edge")?;
    assert_eq!(xwing["last_verdict"], "DROPPED", "{xwing}");
    let tiefighter = edge(&map, "tiefighter", "deathstar").context("tiefighter edge")?;
    assert!(tiefighter["verdicts"]["DROPPED"].is_null(), "{tiefighter}");
    let from_deathstar = edges_from_deathstar(&map);
    assert!(from_deathstar.is_empty(), "{from_deathstar:?}");
    drop(ui);

    // 3. The terminal view, filtered to xwing's drops, while traffic keeps coming.
    let home = lab.run_dir.join("tui-home");
    std::fs::create_dir_all(&home)?;
    let command = format!(
        "HOME={} {} tui --server {} --from-pod default/xwing --verdict DROPPED; \
         echo TUI-EXITED-$?; sleep 60",
        home.display(),
        bin("hubble")?.display(),
        lab.socket()
    );
    let session = Tmux::start(format!("hubble-e2e-tui-{}", std::process::id()), &command)?;
    // No traffic now: the view first loads the drops already stored (up to the 200 it
    // asks for), so that the live ones can be told from them.
    let filter = ["--from-pod", "default/xwing", "--verdict", "DROPPED"];
    let (stored, screen) = eventually(T, || {
        let args = [&filter[..], &["--last", "200"]].concat();
        let stored = lab.observe_json(&args)?.len() as u64;
        let screen = session.screen()?;
        Ok((received(&screen) == Some(stored)).then_some((stored, screen)))
    })
    .context("hubble tui did not load the stored drops")?;
    println!("hubble tui with the {stored} stored drops:\n{screen}");
    let stop = AtomicBool::new(false);
    let screen = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| traffic_until(&lab, &stop));
        let screen = session.wait("a live dropped xwing -> deathstar row", T, |s| {
            received(s).is_some_and(|n| n > stored)
                && s.lines().any(|l| {
                    l.contains("default/xwing")
                        && l.contains("deathstar")
                        && l.trim_end().ends_with("DROPPED")
                })
        });
        stop.store(true, Ordering::Relaxed);
        let _ = traffic.join();
        screen
    })?;
    println!("hubble tui:\n{screen}");
    assert!(screen.contains("VERDICT"), "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    // The filter holds: only xwing's landings, dropped (drop events print DROPPED,
    // policy verdicts DENIED, as `hubble observe` does).
    let rows: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("default/") && !l.contains("--"))
        .collect();
    assert!(
        rows.iter().all(|l| l.contains("default/xwing")
            && l.contains("deathstar")
            && (l.trim_end().ends_with("DROPPED") || l.trim_end().ends_with("DENIED"))),
        "{screen}"
    );
    assert!(rows.iter().any(|l| l.contains("Policy denied")), "{screen}");

    // q quits and gives the terminal back.
    session.keys(&["q"])?;
    let screen = session.wait("the TUI to exit", Duration::from_secs(15), |s| {
        s.contains("TUI-EXITED-0")
    })?;
    assert!(
        !screen.contains("VERDICT"),
        "alternate screen left behind:\n{screen}"
    );
    drop(session);

    println!("whole test took {:?}", started.elapsed());
    Ok(())
}
