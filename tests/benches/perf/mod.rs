//! Side-by-side benchmarks of the real binaries, against upstream's when their paths are
//! given: `HUBBLE_UPSTREAM` (the `hubble` CLI) and `HUBBLE_RELAY_UPSTREAM`
//! (`hubble-relay`). Each figure is printed with upstream's beside it and their ratio.
//!
//! - `hubble observe --input-file` over a capture of the corpus mix, `-o compact` and
//!   `-o json`: wall clock, peak RSS (medians of alternating pairs of runs, and the
//!   median of the pairs' ratios), and whether the two outputs are byte-identical;
//! - history through the relay: every agent replays the capture (`hubble-agent
//!   --replay`), then one `hubble observe --all -o jsonpb` client reads the whole
//!   history through the relay and, for reference, straight from one agent: wall
//!   clock, flows/s, relay CPU per flow and peak RSS, order checked;
//! - follow latency: the agents replay in a loop at a set rate with fresh times, and
//!   a `hubble observe --follow` client on the relay measures how old each flow is
//!   when it arrives, against a client on one agent directly;
//! - agent memory: one agent replays the capture in a loop until its ring of 1,048,575
//!   flows is full: resident memory per stored flow, and the replay's flows/s.
//!
//! `Options::quick` runs each figure briefly (CI runs it to keep the harness working;
//! timings are printed, never checked).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};

/// Flows in the capture of a full run: the corpus mix, 101,500 flows (about 150 MB of
/// `jsonpb`).
pub const FULL_FLOWS: usize = 101_500;
/// Flows in the capture of a quick run.
pub const QUICK_FLOWS: usize = 2_000;
/// Agents replaying the capture behind the relay.
pub const AGENTS: usize = 8;
/// Flows the agent figure's ring holds in a full run (2^20 - 1, upstream's largest
/// `--hubble-event-buffer-capacity`).
pub const AGENT_RING_FLOWS: usize = 1_048_575;
/// The figures `--only` picks from.
const FIGURES: [&str; 4] = ["cli", "relay", "follow", "agent"];
/// Alternating pairs of runs (ours, then upstream's) of each `--input-file` figure in a
/// full run; the medians and the median of the pairs' ratios are printed.
const CLI_PAIRS: usize = 5;
/// Longest any one measured command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Brief runs: a small capture, a short follow.
    pub quick: bool,
    /// Flows in the capture.
    pub flows: usize,
    /// Directory of our binaries (`hubble`, `hubble-agent`, `hubble-relay`).
    pub bin_dir: PathBuf,
    /// Upstream `hubble`.
    pub upstream_cli: Option<PathBuf>,
    /// Upstream `hubble-relay`.
    pub upstream_relay: Option<PathBuf>,
    /// Which figures: any of `cli`, `relay`, `follow` (empty: all).
    pub only: Vec<String>,
    /// Where to write the capture and stop, for profiling one command by hand.
    pub write_capture: Option<PathBuf>,
}

impl Options {
    /// Options from the command line (`--quick`, `--flows N`, `--only cli,relay,follow,agent`,
    /// `--write-capture FILE`)
    /// and the environment (`HUBBLE_UPSTREAM`, `HUBBLE_RELAY_UPSTREAM`).
    pub fn from_args(args: impl IntoIterator<Item = String>, bin_dir: PathBuf) -> Result<Self> {
        let mut options = Options {
            quick: false,
            flows: 0,
            bin_dir,
            upstream_cli: upstream("HUBBLE_UPSTREAM")?,
            upstream_relay: upstream("HUBBLE_RELAY_UPSTREAM")?,
            only: Vec::new(),
            write_capture: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--flows" => {
                    let value = args.next().context("--flows needs a number")?;
                    options.flows = value
                        .parse()
                        .with_context(|| format!("--flows: not a number of flows: {value:?}"))?;
                }
                "--only" => {
                    let figures = FIGURES.join(", ");
                    let value = args
                        .next()
                        .with_context(|| format!("--only needs some of {figures}"))?;
                    for part in value.split(',') {
                        ensure!(
                            FIGURES.contains(&part),
                            "--only: unknown figure {part:?} ({figures})"
                        );
                        options.only.push(part.to_string());
                    }
                }
                "--write-capture" => {
                    let value = args.next().context("--write-capture needs a file name")?;
                    options.write_capture = Some(PathBuf::from(value));
                }
                // Arguments cargo passes to every bench target.
                "--bench" => {}
                other => bail!(
                    "unknown argument {other:?} (--quick, --flows N, --only LIST, --write-capture FILE)"
                ),
            }
        }
        if options.flows == 0 {
            options.flows = if options.quick {
                QUICK_FLOWS
            } else {
                FULL_FLOWS
            };
        }
        Ok(options)
    }

    fn wants(&self, figure: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|f| f == figure)
    }

    fn ours(&self, name: &str) -> Result<PathBuf> {
        let path = self.bin_dir.join(name);
        let build = if self.bin_dir.ends_with("release") {
            "cargo build --release -p agent -p relay -p hubble-cli"
        } else {
            "cargo build --workspace"
        };
        ensure!(path.exists(), "{} is not built ({build})", path.display());
        // `cargo bench` builds the benchmark and its libraries, not the binaries it
        // starts: never measure one older than the sources.
        let built = std::fs::metadata(&path)?.modified()?;
        if let Some(newer) = newest_source_after(name, built) {
            bail!(
                "{} is older than {} ({build})",
                path.display(),
                newer.display()
            );
        }
        Ok(path)
    }
}

/// A source (`src/`, `build.rs`, BPF C) or manifest of a crate binary `name` is built
/// from, changed after `built`, if any. Unit-test files (`tests.rs`, `tests/` under
/// `src/`) are not part of the binary and do not count.
fn newest_source_after(name: &str, built: std::time::SystemTime) -> Option<PathBuf> {
    fn walk(dir: &Path, built: std::time::SystemTime) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "tests" || name == "tests.rs" {
                continue;
            }
            if path.is_dir() {
                if name == "target" || name.to_string_lossy().starts_with('.') {
                    continue;
                }
                if let Some(found) = walk(&path, built) {
                    return Some(found);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "c" || e == "h")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > built)
            {
                return Some(path);
            }
        }
        None
    }
    let crates: &[&str] = match name {
        "hubble-agent" => &[
            "agent",
            "observer",
            "ebpf-events",
            "peer-service",
            "metrics",
            "metrics-exposition",
            "proxy",
            "proto",
        ],
        "hubble-relay" => &["relay", "observer", "ebpf-events", "peer-service", "proto"],
        "hubble" => &["hubble-cli", "proto"],
        _ => &[],
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    crates.iter().find_map(|krate| {
        let dir = workspace.join(krate);
        ["src", "bpf"]
            .iter()
            .find_map(|part| walk(&dir.join(part), built))
            .or_else(|| {
                ["Cargo.toml", "build.rs"]
                    .iter()
                    .map(|f| dir.join(f))
                    .find(|f| {
                        std::fs::metadata(f)
                            .and_then(|m| m.modified())
                            .is_ok_and(|m| m > built)
                    })
            })
    })
}

fn upstream(variable: &str) -> Result<Option<PathBuf>> {
    match std::env::var_os(variable) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => {
            let path = PathBuf::from(value);
            ensure!(
                path.is_file(),
                "{variable}={} is not a file",
                path.display()
            );
            Ok(Some(path))
        }
    }
}

/// Runs every figure asked for, printing each as it is measured.
pub fn run(options: &Options) -> Result<()> {
    if let Some(path) = &options.write_capture {
        let bytes = write_capture(path, options.flows)?;
        println!(
            "{}: {} flows of the corpus mix, {:.1} MB of jsonpb",
            path.display(),
            options.flows,
            bytes as f64 / 1e6
        );
        return Ok(());
    }
    let dir = tempfile_dir()?;
    let capture = dir.path.join("corpus.jsonl");
    let started = Instant::now();
    let bytes = write_capture(&capture, options.flows)?;
    println!(
        "capture: {} flows of the corpus mix, {:.1} MB of jsonpb, written in {:.2?}",
        options.flows,
        bytes as f64 / 1e6,
        started.elapsed()
    );
    if options.upstream_cli.is_none() {
        println!("(HUBBLE_UPSTREAM not set: CLI figures without upstream's)");
    }
    if options.upstream_relay.is_none() {
        println!("(HUBBLE_RELAY_UPSTREAM not set: relay figures without upstream's)");
    }
    if options.wants("cli") {
        cli_input_file(options, &capture, &dir.path)?;
    }
    if options.wants("relay") {
        relay_history(options, &capture, &dir.path)?;
    }
    if options.wants("follow") {
        follow_latency(options, &capture, &dir.path)?;
    }
    if options.wants("agent") {
        agent_memory(options, &capture, &dir.path)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Agent memory and replay

/// One agent replays the capture in a loop into a ring of `AGENT_RING_FLOWS` (the
/// capture's size rounded up in a quick run) until the ring is full: how long that takes
/// (the whole ingest path from a JSON line to a stored flow), and the agent's resident
/// memory then, per stored flow.
fn agent_memory(options: &Options, capture: &Path, dir: &Path) -> Result<()> {
    let capacity = if options.quick {
        (options.flows + 1).next_power_of_two() - 1
    } else {
        AGENT_RING_FLOWS
    };
    let mut agents = start_agents_with(options, 1, capacity, capture, dir, &["--replay-loop"])?;
    let filled = wait_for_replays(&mut agents, capacity as u64)?;
    let pid = agents.agents[0].pid();
    // Read at once: the replay goes on in its loop (its CPU until now includes start-up).
    let cpu = cpu_time(pid);
    let rss = rss_kib(pid);
    println!(
        "agent holding {capacity} corpus flows: RSS {:.1} MiB = {:.0} bytes/flow (peak {:.1} MiB); ring filled in {filled:.2?} ({:.0} k flows/s, replay of the capture in a loop), agent CPU {:.2?} = {:.2} us/flow",
        mib(rss),
        rss as f64 * 1024.0 / capacity as f64,
        mib(peak_rss_kib(pid)),
        capacity as f64 / filled.as_secs_f64() / 1e3,
        cpu,
        cpu.as_secs_f64() * 1e6 / capacity as f64
    );
    Ok(())
}

/// Resident memory of a process now, in KiB (VmRSS from /proc).
fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

// ---------------------------------------------------------------------------------------
// The capture

/// Writes `flows` flows of the corpus mix as `hubble observe -o jsonpb` prints them.
/// Returns the bytes written.
pub fn write_capture(path: &Path, flows: usize) -> Result<u64> {
    use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut writer = proto::json::Writer::with_capacity(4096);
    for n in 0..flows as u64 {
        let flow = observer::sample::corpus_flow(n);
        let response = GetFlowsResponse {
            node_name: flow.node_name.clone(),
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(flow)),
        };
        proto::json::write_line(&mut writer, &response, &mut out)?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

// ---------------------------------------------------------------------------------------
// Processes

struct TempDir {
    path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempfile_dir() -> Result<TempDir> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let path = std::env::temp_dir().join(format!("hubble-perf-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir { path })
}

/// A child process killed when dropped.
struct Running {
    child: Child,
    what: String,
}

impl Running {
    fn spawn(mut command: Command, what: &str) -> Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {what}: {command:?}"))?;
        Ok(Self {
            child,
            what: what.to_string(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.what);
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// User + system CPU time of a process so far (from /proc).
fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest: Vec<String> = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .map(str::to_string)
                .collect();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Peak resident memory of a process so far, in KiB (VmHWM from /proc).
fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

/// A `kB` line of /proc/<pid>/status, 0 when it cannot be read.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    ::tests::memory_kib(&pid.to_string(), field).unwrap_or(0)
}

/// What one measured command did.
struct Measured {
    elapsed: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    lines: u64,
    ordered: bool,
}

/// Runs `command` with its output streamed into `sink` (or counted and checked for time
/// order when `sink` is `None`), sampling its peak RSS while it runs.
fn measure(mut command: Command, what: &str, sink: Option<&Path>) -> Result<Measured> {
    command.stdin(Stdio::null()).stderr(Stdio::piped());
    match sink {
        Some(path) => {
            command.stdout(std::fs::File::create(path)?);
        }
        None => {
            command.stdout(Stdio::piped());
        }
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {what}: {command:?}"))?;
    let pid = child.id();
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    });
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || -> (u64, bool) {
        let Some(pipe) = stdout else {
            return (0, true);
        };
        let mut lines = 0;
        let mut order = OrderCheck::default();
        let mut reader = BufReader::with_capacity(1 << 20, pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            lines += 1;
            order.see(&line);
            line.clear();
        }
        (lines, order.ordered)
    });
    let mut peak = 0;
    let mut cpu = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        peak = peak.max(peak_rss_kib(pid));
        cpu = cpu.max(cpu_time(pid));
        if started.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let (lines, ordered) = reader.join().unwrap_or((0, false));
    let errors = errors.join().unwrap_or_default();
    ensure!(status.success(), "{what} failed ({status}): {errors}");
    let lines = match sink {
        Some(path) => count_lines(path)?,
        None => lines,
    };
    Ok(Measured {
        elapsed,
        cpu,
        peak_rss_kib: peak,
        lines,
        ordered,
    })
}

fn count_lines(path: &Path) -> Result<u64> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// Checks that the `"time"` of successive JSON lines never goes back.
#[derive(Default)]
struct OrderCheck {
    last: Option<(Vec<u8>, u32)>,
    ordered: bool,
    started: bool,
}

impl OrderCheck {
    fn see(&mut self, line: &[u8]) {
        if !self.started {
            self.started = true;
            self.ordered = true;
        }
        let Some(key) = time_key(line) else {
            return;
        };
        if let Some(last) = &self.last {
            if key < *last {
                self.ordered = false;
            }
        }
        self.last = Some(key);
    }
}

/// The first `"time":"YYYY-MM-DDTHH:MM:SS[.fraction]Z"` of a line as a comparable key
/// (UTC as protobuf JSON prints it).
fn time_key(line: &[u8]) -> Option<(Vec<u8>, u32)> {
    const KEY: &[u8] = b"\"time\":\"";
    let start = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let value = &line[start..];
    let end = value.iter().position(|&b| b == b'"')?;
    let value = &value[..end];
    let seconds_end = value.iter().position(|&b| b == b'.' || b == b'Z')?;
    let mut nanos = 0u32;
    let mut digits = 0;
    if value.get(seconds_end) == Some(&b'.') {
        for &b in &value[seconds_end + 1..] {
            if !b.is_ascii_digit() {
                break;
            }
            nanos = nanos * 10 + u32::from(b - b'0');
            digits += 1;
        }
    }
    for _ in digits..9 {
        nanos *= 10;
    }
    Some((value[..seconds_end].to_vec(), nanos))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(upstream: Duration, ours: Duration) -> f64 {
    upstream.as_secs_f64() / ours.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------
// CLI --input-file

fn cli_input_file(options: &Options, capture: &Path, dir: &Path) -> Result<()> {
    let ours = options.ours("hubble")?;
    let pairs = if options.quick { 1 } else { CLI_PAIRS };
    for format in ["compact", "json"] {
        let command = |binary: &Path| {
            let mut command = Command::new(binary);
            command
                .args(["observe", "--input-file"])
                .arg(capture)
                .args(["--all", "-o", format])
                .env("TZ", "UTC")
                .env_remove("HUBBLE_CONFIG");
            command
        };
        let our_out = dir.join(format!("ours.{format}"));
        let their_out = dir.join(format!("upstream.{format}"));
        let mut mine = Vec::new();
        let mut theirs = Vec::new();
        let mut same = None;
        for pair in 0..pairs {
            let run = measure(
                command(&ours),
                "hubble observe --input-file",
                Some(&our_out),
            )?;
            ensure!(
                run.lines == options.flows as u64,
                "hubble observe --input-file -o {format} printed {} lines for {} flows",
                run.lines,
                options.flows
            );
            mine.push(run);
            if let Some(upstream) = &options.upstream_cli {
                theirs.push(measure(
                    command(upstream),
                    "upstream hubble",
                    Some(&their_out),
                )?);
                if pair == 0 {
                    same = Some(first_difference(&our_out, &their_out)?);
                }
                let _ = std::fs::remove_file(&their_out);
            }
            let _ = std::fs::remove_file(&our_out);
        }
        let ours_median = Median::of(&mine);
        let mut line = format!(
            "hubble observe --input-file ({} flows) -o {format}, median of {pairs}: ours {:.2?} (CPU {:.2?}, {:.0} k flows/s), peak RSS {:.1} MiB, {} lines",
            options.flows,
            ours_median.elapsed,
            ours_median.cpu,
            options.flows as f64 / ours_median.elapsed.as_secs_f64() / 1e3,
            mib(ours_median.peak_rss_kib),
            mine[0].lines
        );
        if let Some(same) = same {
            let upstream_median = Median::of(&theirs);
            let mut ratios: Vec<f64> = mine
                .iter()
                .zip(&theirs)
                .map(|(ours, theirs)| ratio(theirs.elapsed, ours.elapsed))
                .collect();
            ratios.sort_by(f64::total_cmp);
            line.push_str(&format!(
                "; upstream {:.2?} (CPU {:.2?}), peak RSS {:.1} MiB, {} lines; {:.1}x faster (pairs {:.1}-{:.1}x); output {}",
                upstream_median.elapsed,
                upstream_median.cpu,
                mib(upstream_median.peak_rss_kib),
                theirs[0].lines,
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1],
                same.unwrap_or_else(|| "byte-identical".to_string())
            ));
        }
        println!("{line}");
    }
    Ok(())
}

/// The median of each figure over runs of one command (the upper one of an even count).
struct Median {
    elapsed: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

impl Median {
    fn of(runs: &[Measured]) -> Median {
        fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
            values.sort();
            values[values.len() / 2]
        }
        Median {
            elapsed: median(runs.iter().map(|run| run.elapsed).collect()),
            cpu: median(runs.iter().map(|run| run.cpu).collect()),
            peak_rss_kib: median(runs.iter().map(|run| run.peak_rss_kib).collect()),
        }
    }
}

/// `None` when both files hold the same bytes, else where they first differ.
fn first_difference(a: &Path, b: &Path) -> Result<Option<String>> {
    let a = std::fs::read(a)?;
    let b = std::fs::read(b)?;
    if a == b {
        return Ok(None);
    }
    let at = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let line = a[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    let excerpt = |bytes: &[u8]| {
        let start = bytes[..at.min(bytes.len())]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        let end = bytes[start..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(bytes.len(), |p| start + p);
        String::from_utf8_lossy(&bytes[start..end]).into_owned()
    };
    Ok(Some(format!(
        "DIFFERS at line {line} ({} vs {} bytes): ours {:?} upstream {:?}",
        a.len(),
        b.len(),
        excerpt(&a),
        excerpt(&b)
    )))
}

// ---------------------------------------------------------------------------------------
// Agents and relays

struct Agents {
    agents: Vec<Running>,
    addrs: Vec<SocketAddr>,
    /// The first agent also serves the peer service over the nodes file.
    peer_service: SocketAddr,
}

/// Starts `AGENTS` agents replaying `capture` (`extra` adds replay flags), each on its
/// own loopback port, the first serving the peer service over a nodes file naming all.
fn start_agents(options: &Options, capture: &Path, dir: &Path, extra: &[&str]) -> Result<Agents> {
    let capacity = (options.flows + 1).next_power_of_two() - 1;
    start_agents_with(options, AGENTS, capacity, capture, dir, extra)
}

/// Starts `count` agents with rings of `capacity` flows replaying `capture`.
fn start_agents_with(
    options: &Options,
    count: usize,
    capacity: usize,
    capture: &Path,
    dir: &Path,
    extra: &[&str],
) -> Result<Agents> {
    let binary = options.ours("hubble-agent")?;
    let mut addrs = Vec::new();
    for _ in 0..count {
        addrs.push(free_port()?);
    }
    let nodes_file = dir.join("nodes.yaml");
    let mut text = String::new();
    for (k, addr) in addrs.iter().enumerate() {
        text.push_str(&format!("- {{name: node{k}, address: \"{addr}\"}}\n"));
    }
    std::fs::write(&nodes_file, text)?;
    let mut agents = Vec::new();
    for (k, addr) in addrs.iter().enumerate() {
        let mut command = Command::new(&binary);
        command
            .arg("--node-name")
            .arg(format!("node{k}"))
            .arg("--admin-socket")
            .arg(dir.join(format!("admin{k}.sock")))
            .args([
                "--unix-socket",
                "",
                "--metrics-address",
                "",
                "--state-dir",
                "",
            ])
            .arg("--endpoints-dir")
            .arg(dir.join("endpoints"))
            .arg("--services-dir")
            .arg(dir.join("services"))
            .arg("--listen-address")
            .arg(addr.to_string())
            .arg("--ring-capacity")
            .arg(capacity.max(4095).to_string())
            .arg("--peers-file")
            .arg(&nodes_file)
            .arg("--replay")
            .arg(capture)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        agents.push(Running::spawn(command, &format!("hubble-agent node{k}"))?);
    }
    Ok(Agents {
        agents,
        peer_service: addrs[0],
        addrs,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `(flows held, connected nodes)` from a server's ServerStatus, `None` while it does
/// not answer.
fn server_status(runtime: &tokio::runtime::Runtime, addr: SocketAddr) -> Option<(u64, u32)> {
    runtime.block_on(async {
        let mut client = tokio::time::timeout(
            Duration::from_secs(2),
            proto::observer::observer_client::ObserverClient::connect(format!("http://{addr}")),
        )
        .await
        .ok()?
        .ok()?;
        let status = tokio::time::timeout(
            Duration::from_secs(5),
            client.server_status(proto::observer::ServerStatusRequest {}),
        )
        .await
        .ok()?
        .ok()?
        .into_inner();
        Some((
            status.num_flows,
            status.num_connected_nodes.map_or(0, |n| n.value),
        ))
    })
}

/// Waits until every agent holds `flows` flows (its replay is done).
fn wait_for_replays(agents: &mut Agents, flows: u64) -> Result<Duration> {
    let runtime = runtime()?;
    let started = Instant::now();
    let deadline = started + COMMAND_DEADLINE;
    for k in 0..agents.addrs.len() {
        loop {
            agents.agents[k].check_alive()?;
            if server_status(&runtime, agents.addrs[k]).is_some_and(|(n, _)| n >= flows) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "agent node{k} did not replay {flows} flows"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(started.elapsed())
}

/// Starts a relay (ours or upstream's: same flags) following the agents' peer service
/// and waits until it reports every node connected.
fn start_relay(binary: &Path, what: &str, agents: &Agents) -> Result<(Running, SocketAddr)> {
    let listen = free_port()?;
    let mut command = Command::new(binary);
    command
        .args([
            "serve",
            "--disable-client-tls",
            "--disable-server-tls",
            "--peer-service",
        ])
        .arg(agents.peer_service.to_string())
        .arg("--listen-address")
        .arg(listen.to_string())
        .arg("--health-listen-address")
        .arg(free_port()?.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut relay = Running::spawn(command, what)?;
    let runtime = runtime()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        relay.check_alive()?;
        if server_status(&runtime, listen).is_some_and(|(_, n)| n as usize == agents.addrs.len()) {
            return Ok((relay, listen));
        }
        ensure!(
            Instant::now() < deadline,
            "{what} did not connect to every agent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn observe_all(cli: &Path, server: SocketAddr) -> Command {
    let mut command = Command::new(cli);
    command
        .args(["observe", "--server"])
        .arg(server.to_string())
        .args(["--all", "-o", "jsonpb"])
        .env_remove("HUBBLE_CONFIG");
    command
}

// ---------------------------------------------------------------------------------------
// History through the relay

fn relay_history(options: &Options, capture: &Path, dir: &Path) -> Result<()> {
    let cli = options.ours("hubble")?;
    let mut agents = start_agents(options, capture, dir, &[])?;
    let replayed = wait_for_replays(&mut agents, options.flows as u64)?;
    let total = options.flows * AGENTS;
    println!(
        "agent replay: {AGENTS} agents x {} flows in {replayed:.2?} ({:.0} k flows/s per agent, all at once on this machine)",
        options.flows,
        options.flows as f64 / replayed.as_secs_f64() / 1e3
    );
    let direct = measure(
        observe_all(&cli, agents.addrs[0]),
        "hubble observe (direct)",
        None,
    )?;
    let direct_rate = direct.lines as f64 / direct.elapsed.as_secs_f64();
    println!(
        "history from one agent directly: {} lines in {:.2?} ({:.0} k flows/s), client CPU {:.2} us/flow",
        direct.lines,
        direct.elapsed,
        direct_rate / 1e3,
        direct.cpu.as_secs_f64() * 1e6 / direct.lines.max(1) as f64
    );
    let mut relays = vec![("ours", options.ours("hubble-relay")?)];
    if let Some(upstream) = &options.upstream_relay {
        relays.push(("upstream", upstream.clone()));
    }
    let mut results = Vec::new();
    for (who, binary) in relays {
        let (relay, listen) = start_relay(&binary, &format!("{who} hubble-relay"), &agents)?;
        let cpu_before = cpu_time(relay.pid());
        let through = measure(observe_all(&cli, listen), "hubble observe (relay)", None)?;
        let cpu = cpu_time(relay.pid()).saturating_sub(cpu_before);
        let rss = peak_rss_kib(relay.pid());
        let rate = through.lines as f64 / through.elapsed.as_secs_f64();
        println!(
            "history through {who} hubble-relay: {} lines (of {total} flows) in {:.2?} ({:.0} k flows/s, {:.0}% of one agent directly), time-ordered: {}; relay CPU {:.2?} = {:.2} us/flow, relay peak RSS {:.1} MiB; client CPU {:.2} us/flow",
            through.lines,
            through.elapsed,
            rate / 1e3,
            100.0 * rate / direct_rate,
            through.ordered,
            cpu,
            cpu.as_secs_f64() * 1e6 / total as f64,
            mib(rss),
            through.cpu.as_secs_f64() * 1e6 / total as f64
        );
        // Upstream's relay sorts within a buffer and a timeout only, so its order is
        // reported, not required; ours keeps history exactly ordered.
        ensure!(
            through.lines >= total as u64 && (through.ordered || who == "upstream"),
            "{who} hubble-relay: {} lines for {total} flows, time-ordered: {}",
            through.lines,
            through.ordered
        );
        results.push((who, through.elapsed));
    }
    if let [(_, ours), (_, theirs)] = results[..] {
        println!(
            "history through the relay: ours {ours:.2?} vs upstream {theirs:.2?}: {:.1}x faster",
            ratio(theirs, ours)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Follow latency

fn follow_latency(options: &Options, capture: &Path, dir: &Path) -> Result<()> {
    let cli = options.ours("hubble")?;
    let rate = if options.quick { "200" } else { "1000" };
    let duration = if options.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(15)
    };
    let mut agents = start_agents(
        options,
        capture,
        dir,
        &[
            "--replay-loop",
            "--replay-retimestamp",
            "--replay-rate",
            rate,
        ],
    )?;
    wait_for_replays(&mut agents, 1)?;
    let mut relays = vec![("ours", options.ours("hubble-relay")?)];
    if let Some(upstream) = &options.upstream_relay {
        relays.push(("upstream", upstream.clone()));
    }
    let direct = follow_delays(&cli, agents.addrs[0], duration)?;
    println!(
        "follow latency, one agent directly ({AGENTS} agents x {rate} flows/s): {}",
        summary(direct)
    );
    for (who, binary) in relays {
        let (_relay, listen) = start_relay(&binary, &format!("{who} hubble-relay"), &agents)?;
        let delays = follow_delays(&cli, listen, duration)?;
        println!(
            "follow latency through {who} hubble-relay ({AGENTS} agents x {rate} flows/s): {}",
            summary(delays.clone())
        );
        ensure!(
            !delays.is_empty(),
            "no flow followed through {who} hubble-relay"
        );
    }
    Ok(())
}

fn summary(mut delays: Vec<f64>) -> String {
    if delays.is_empty() {
        return "no flows".to_string();
    }
    delays.sort_by(f64::total_cmp);
    let at = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} flows",
        at(0.5),
        at(0.99),
        at(1.0),
        delays.len()
    )
}

/// Follows `server` for `duration` and returns, for each flow, how long ago (ms) its
/// time was when the line arrived (the agents replay with fresh times).
fn follow_delays(cli: &Path, server: SocketAddr, duration: Duration) -> Result<Vec<f64>> {
    let mut command = Command::new(cli);
    command
        .args(["observe", "--server"])
        .arg(server.to_string())
        .args(["--follow", "-o", "jsonpb"])
        .env_remove("HUBBLE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Running::spawn(command, "hubble observe --follow")?;
    let stdout = child.child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut delays = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            if let Some(time) = flow_time_seconds(&line) {
                delays.push((now - time) * 1e3);
            }
        }
        delays
    });
    // The first second is the client connecting and the relay's first request.
    std::thread::sleep(duration);
    drop(child);
    let delays = reader.join().unwrap_or_default();
    Ok(delays)
}

/// A flow line's time in seconds since the epoch.
fn flow_time_seconds(line: &str) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = value.get("flow")?.get("time")?.as_str()?;
    let (date, rest) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let rest = rest.strip_suffix('Z')?;
    let mut clock = rest.split(':');
    let h: f64 = clock.next()?.parse().ok()?;
    let min: f64 = clock.next()?.parse().ok()?;
    let s: f64 = clock.next()?.parse().ok()?;
    Some(days_from_civil(y, m, d) as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_keys_order_fractions_of_any_length() {
        let key =
            |t: &str| super::time_key(format!("{{\"flow\":{{\"time\":\"{t}\"}}}}").as_bytes());
        assert!(key("2026-01-01T00:00:00.5Z") > key("2026-01-01T00:00:00.123456789Z"));
        assert!(key("2026-01-01T00:00:01Z") > key("2026-01-01T00:00:00.999Z"));
        assert_eq!(
            key("2026-01-01T00:00:00.1Z"),
            key("2026-01-01T00:00:00.100Z")
        );
        assert_eq!(super::time_key(b"{}"), None);
    }

    #[test]
    fn flow_times_read_as_seconds_since_the_epoch() {
        let line = r#"{"flow":{"time":"2023-11-14T22:13:20.250Z"}}"#;
        assert_eq!(super::flow_time_seconds(line), Some(1_700_000_000.25));
    }

    #[test]
    fn arguments_are_checked() {
        let dir = std::path::PathBuf::from("/nonexistent");
        let quick = super::Options::from_args(["--quick".to_string()], dir.clone()).expect("quick");
        assert!(quick.quick);
        assert_eq!(quick.flows, super::QUICK_FLOWS);
        let error = super::Options::from_args(["--only".into(), "nope".into()], dir.clone())
            .expect_err("unknown figure");
        assert!(error.to_string().contains("\"nope\""), "{error}");
        let error =
            super::Options::from_args(["--flows".into(), "x".into()], dir).expect_err("flows");
        assert!(error.to_string().contains("\"x\""), "{error}");
    }
}
