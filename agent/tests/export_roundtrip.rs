//! `hubble-agent --replay` end to end, without root: replayed flows go through the
//! agent's hooks (metrics, then export, then the ring), land in rotated export files
//! (plain or gzipped), and `hubble observe --input-file` reads every one of them back:
//! nothing lost, nothing duplicated, nothing reordered across a rotation.
//!
//! Needs the `hubble` binary next to this test's target directory (`cargo build -p
//! hubble-cli`); fails saying so when it is missing.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, Agent};

/// Flows in the capture. Each exported line is about 700 bytes, so 1 MB rotations
/// happen every ~1500 flows: this gives several of them.
const FLOWS: u16 = 6000;
/// Source port of flow 0; flow `i` has `FIRST_PORT + i`, its identity in every check.
const FIRST_PORT: u16 = 10_000;
/// Every fifth flow is a policy drop, the others are forwarded traces.
const DROP_EVERY: u16 = 5;
/// The smallest rotation size the agent accepts.
const MAX_SIZE_MB: u64 = 1;
/// Enough backups that none is pruned.
const MAX_BACKUPS: usize = 100;
/// Room for the whole capture in the ring.
const RING_CAPACITY: u64 = 8191;
/// How long the agent may take to replay and export the capture.
const EXPORT_DEADLINE: Duration = Duration::from_secs(120);
/// How long one `hubble` invocation may take.
const HUBBLE_DEADLINE: Duration = Duration::from_secs(60);

/// The `hubble` CLI built next to this test (`target/<profile>/hubble`).
fn hubble_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/<test> -> target/<profile>/hubble
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("hubble"))
        .expect("target directory of the test executable");
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build -p hubble-cli` (same target directory and \
         profile) before this test",
        bin.display()
    );
    bin
}

/// One `hubble observe -o jsonpb` line per flow, each flow with its own source port and
/// time.
fn write_capture(path: &Path) {
    const {
        assert!(
            FLOWS < 54_000,
            "times below are formatted within one minute"
        )
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create capture"));
    for i in 0..FLOWS {
        let time = format!(
            "2024-07-25T15:56:{:02}.{:03}000123Z",
            6 + i / 1000,
            i % 1000
        );
        let drop = i % DROP_EVERY == 0;
        let mut flow = json!({
            "time": time,
            "verdict": if drop { "DROPPED" } else { "FORWARDED" },
            "IP": {"source": "10.200.1.20", "destination": "10.200.1.30", "ipVersion": "IPv4"},
            "l4": {"TCP": {
                "source_port": FIRST_PORT + i,
                "destination_port": 80,
                "flags": {"SYN": true},
            }},
            "source": {
                "identity": 62396,
                "namespace": "default",
                "labels": ["k8s:org=empire", "k8s:class=tiefighter"],
                "pod_name": "tiefighter",
            },
            "destination": {
                "identity": 50122,
                "namespace": "default",
                "labels": ["k8s:org=empire", "k8s:class=deathstar"],
                "pod_name": "deathstar-1",
            },
            "Type": "L3_L4",
            "node_name": "replay-node",
            "event_type": if drop { json!({"type": 1, "sub_type": 133}) } else { json!({"type": 4}) },
            "traffic_direction": "INGRESS",
            "Summary": "TCP Flags: SYN",
        });
        if drop {
            flow["drop_reason_desc"] = json!("POLICY_DENIED");
        }
        let line = json!({"flow": flow, "node_name": "replay-node", "time": time});
        writeln!(out, "{line}").expect("write capture");
    }
    out.flush().expect("flush capture");
}

fn start_agent(dir: &Path, capture: &Path, export: &Path, metrics: u16, compress: bool) -> Agent {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--export-file-path".into(),
        export.into(),
        "--export-file-max-size-mb".into(),
        MAX_SIZE_MB.to_string().into(),
        "--export-file-max-backups".into(),
        MAX_BACKUPS.to_string().into(),
        "--ring-capacity".into(),
        RING_CAPACITY.to_string().into(),
    ];
    if compress {
        args.push("--export-file-compress".into());
    }
    Agent::replay(dir, capture, metrics, "export-test", args)
}

/// The text of `/metrics`, or `None` while the server is not up.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// Series of `family` as (labels, value), e.g. `verdict="DROPPED",...` -> 1200.
fn series(metrics: &str, family: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{family}{{");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((labels.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn total(metrics: &str, family: &str) -> f64 {
    series(metrics, family).values().sum()
}

/// Waits until every replayed flow is counted by the flow metrics and written by the
/// exporter, and every rotated file is final (gzipped, when compressing). Returns the
/// last scrape.
fn wait_for_export(agent: &mut Agent, port: u16, export: &Path, compress: bool) -> String {
    let deadline = Instant::now() + EXPORT_DEADLINE;
    let mut last = String::new();
    loop {
        agent.assert_running();
        if let Some(metrics) = scrape(port) {
            let processed = total(&metrics, "hubble_flows_processed_total");
            let written = total(&metrics, "hubble_export_events_total");
            // Looked at once every flow is written: the exporter makes its directory
            // with its first file.
            let settled = || {
                !compress
                    || export_files(export)
                        .iter()
                        .all(|f| f == export || f.extension().is_some_and(|e| e == "gz"))
            };
            if processed == f64::from(FLOWS) && written == f64::from(FLOWS) && settled() {
                return metrics;
            }
            last = metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not export {FLOWS} flows within {EXPORT_DEADLINE:?}\n\
             metrics:\n{last}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The export files, oldest first: rotated backups (their names carry the rotation
/// time) then the current file.
fn export_files(export: &Path) -> Vec<PathBuf> {
    let dir = export.parent().expect("export directory");
    let stem = export.file_stem().and_then(|s| s.to_str()).expect("stem");
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read export directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}-")))
        })
        .collect();
    backups.sort();
    if export.exists() {
        backups.push(export.to_path_buf());
    }
    backups
}

/// `file` as plain JSON lines: gzipped backups are decompressed (with `gzip`) into
/// `scratch`.
fn plain_copy(file: &Path, scratch: &Path) -> PathBuf {
    if file.extension().is_none_or(|e| e != "gz") {
        return file.to_path_buf();
    }
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(file)
        .output()
        .expect("run gzip -dc (is gzip installed?)");
    assert!(
        out.status.success(),
        "gzip -dc {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let name = file.file_stem().expect("file name");
    let plain = scratch.join(name);
    std::fs::write(&plain, out.stdout).expect("write decompressed file");
    plain
}

/// Runs `hubble` with `args` (isolated from the user's configuration) and returns its
/// stdout, failing with its stderr when it fails.
fn hubble(home: &Path, args: &[&std::ffi::OsStr]) -> String {
    let mut cmd = Command::new(hubble_bin());
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("HUBBLE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hubble");
    let deadline = Instant::now() + HUBBLE_DEADLINE;
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hubble") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubble {args:?} did not finish within {HUBBLE_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.join().expect("stdout reader");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        status.success(),
        "hubble {args:?} failed ({status}): {stderr}"
    );
    stdout
}

fn observe_file(home: &Path, file: &Path) -> Vec<Value> {
    let text = hubble(
        home,
        &[
            "observe".as_ref(),
            "--input-file".as_ref(),
            file.as_os_str(),
            "-o".as_ref(),
            "json".as_ref(),
        ],
    );
    parse_lines(&text, file)
}

fn parse_lines(text: &str, origin: &Path) -> Vec<Value> {
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {line}",
                    origin.display(),
                    n + 1
                )
            })
        })
        .collect()
}

/// The distinguishing field of a flow line: its source port.
fn port_of(line: &Value) -> u16 {
    line["flow"]["l4"]["TCP"]["source_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no TCP source port in {line}"))
}

fn roundtrip(compress: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let capture = dir.join("capture.json");
    write_capture(&capture);
    let export_dir = dir.join("export");
    let export = export_dir.join("flows.json");
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    // Resolve the CLI first: a missing binary fails before the agent starts.
    hubble_bin();

    let port = free_port();
    let mut agent = start_agent(dir, &capture, &export, port, compress);
    let metrics = wait_for_export(&mut agent, port, &export, compress);

    // Metrics: every replayed flow counted once, by type and verdict.
    let drops = (0..FLOWS).filter(|i| i % DROP_EVERY == 0).count() as f64;
    let processed = series(&metrics, "hubble_flows_processed_total");
    let by_verdict = |verdict: &str| -> f64 {
        processed
            .iter()
            .filter(|(labels, _)| labels.contains(&format!("verdict=\"{verdict}\"")))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(by_verdict("DROPPED"), drops, "{processed:?}");
    assert_eq!(
        by_verdict("FORWARDED"),
        f64::from(FLOWS) - drops,
        "{processed:?}"
    );
    assert!(
        processed
            .keys()
            .any(|l| l.contains("type=\"Drop\"") && l.contains("verdict=\"DROPPED\"")),
        "{processed:?}"
    );
    assert_eq!(total(&metrics, "hubble_export_discarded_total"), 0.0);
    assert_eq!(total(&metrics, "hubble_export_errors_total"), 0.0);

    // The files: several rotations, none over the size limit, compressed as asked.
    let files = export_files(&export);
    let backups = files.len() - 1;
    let mut report = format!(
        "compress={compress}: {FLOWS} flows in {} files ({backups} rotations)\n",
        files.len()
    );
    assert!(
        backups >= 3,
        "expected several rotations, got files {files:?}"
    );
    assert_eq!(files.last(), Some(&export), "no current file: {files:?}");
    for file in &files[..backups] {
        let gz = file.extension().is_some_and(|e| e == "gz");
        assert_eq!(gz, compress, "{} (compress={compress})", file.display());
    }

    // Every file read back by `hubble observe --input-file -o json`: each exported line
    // is the object it prints for it, and together, in rotation order, they are the
    // capture's flows exactly once and in order.
    let mut exported = Vec::new();
    for file in &files {
        let plain = plain_copy(file, &scratch);
        let size = std::fs::metadata(&plain).expect("file size").len();
        assert!(
            size <= MAX_SIZE_MB * 1024 * 1024,
            "{} holds {size} bytes, over the rotation size",
            file.display()
        );
        let raw = parse_lines(&std::fs::read_to_string(&plain).expect("read"), file);
        assert!(!raw.is_empty(), "{} is empty", file.display());
        let observed = observe_file(dir, &plain);
        assert_eq!(
            observed.len(),
            raw.len(),
            "hubble observe printed a different number of flows for {}",
            file.display()
        );
        for (n, (line, printed)) in raw.iter().zip(&observed).enumerate() {
            assert_eq!(
                line,
                printed,
                "{} line {}: exported and printed objects differ",
                file.display(),
                n + 1
            );
        }
        report += &format!(
            "  {}: {} flows, {size} bytes{}\n",
            file.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            raw.len(),
            if plain == *file { "" } else { " (gunzipped)" }
        );
        exported.extend(observed);
    }
    let ports: Vec<u16> = exported.iter().map(port_of).collect();
    let expected: Vec<u16> = (0..FLOWS).map(|i| FIRST_PORT + i).collect();
    if ports != expected {
        let mut seen = BTreeMap::new();
        for port in &ports {
            *seen.entry(*port).or_insert(0u32) += 1;
        }
        let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        let missing: Vec<_> = expected.iter().filter(|p| !seen.contains_key(p)).collect();
        panic!(
            "exported flows are not the capture's, once each and in order: {} exported, \
             {} missing (first {:?}), {} duplicated (first {:?})",
            ports.len(),
            missing.len(),
            missing.iter().take(10).collect::<Vec<_>>(),
            duplicated.len(),
            duplicated.iter().take(10).collect::<Vec<_>>()
        );
    }

    // And each flow is the one `hubble observe -o json` prints for the capture's line.
    let replayed = observe_file(dir, &capture);
    assert_eq!(replayed.len(), usize::from(FLOWS));
    for (sent, got) in replayed.iter().zip(&exported) {
        assert_eq!(sent, got, "flow {} changed on its way", port_of(sent));
    }

    // The ring got them too, after the hooks.
    let socket = format!("unix://{}", dir.join("hubble.sock").display());
    let served = hubble(
        dir,
        &[
            "observe".as_ref(),
            "--server".as_ref(),
            socket.as_ref(),
            "--all".as_ref(),
            "-o".as_ref(),
            "json".as_ref(),
        ],
    );
    let served = parse_lines(&served, Path::new("the Hubble API"));
    let served_ports: Vec<u16> = served
        .iter()
        .filter(|l| l.get("flow").is_some())
        .map(port_of)
        .collect();
    assert_eq!(served_ports, expected, "flows served from the ring");
    drop(agent);
    print!("{report}");
}

#[test]
fn replayed_flows_are_exported_to_plain_rotated_files() {
    roundtrip(false);
}

#[test]
fn replayed_flows_are_exported_to_gzipped_rotated_files() {
    roundtrip(true);
}
