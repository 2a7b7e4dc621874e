//! Datapath benchmark: prints the figures of the design brief.
//!
//! `cargo bench -p ebpf-events --features loader` (as root for the kernel
//! parts; without root only the decoder is measured). It builds its own
//! namespaces (node + two pods, as in the tests) and reports:
//!
//! - userspace decode cost per record;
//! - program cost per packet from BPF run-time statistics (enabled with a
//!   `BPF_ENABLE_STATS` descriptor for the duration of the run, which the
//!   kernel drops again on exit) with events on (batched wake-ups), events on
//!   with a wake-up per record, and events off;
//! - records drained per second under a 64-byte UDP flood, with the kernel's
//!   reserve failures and the channel's discards;
//! - iperf3 TCP throughput across the endpoint veths with and without the
//!   programs attached, as a ratio: `IPERF_ROUNDS` rounds, the median of each
//!   configuration's ratios to the run without programs in its round.

#[allow(dead_code)]
#[path = "../tests/datapath/topology.rs"]
mod topology;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_events::abi::EventHeader;
use ebpf_events::constants::{message_type, monitor_aggregation, trace_point};
use ebpf_events::encode::encode_record;
use ebpf_events::loader::{Datapath, DatapathConfig, ProgramStats, EVENT_CHANNEL_CAPACITY};
use ebpf_events::{decode, DatapathEvent, EndpointEntry, IpcacheEntry};
use topology::{enter_netns, in_netns, Topology};

/// Packets per program-cost measurement.
const COST_PACKETS: u64 = 200_000;
/// Length of the UDP flood.
const FLOOD: Duration = Duration::from_secs(3);
/// Length of each iperf3 run.
const IPERF_SECONDS: u32 = 4;
/// Rounds of iperf3 runs (one without programs, then one per configuration): single
/// runs on a shared 2-core machine vary by a tenth either way.
const IPERF_ROUNDS: usize = 5;

/// The median of `values`, which it sorts (the upper one of an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<()> {
    bench_decode();
    if !tests::skip::require_root("kernel benchmarks", "network namespaces, eBPF") {
        return Ok(());
    }
    let topology = Topology::create("z", 2)?;
    enter_netns(&topology.node)?;
    let mut datapath = Datapath::load(DatapathConfig::default())?;
    for (index, pod) in topology.pods.iter().enumerate() {
        let ifindex = datapath.attach(&pod.host_veth)?;
        let id = 100 + index as u16;
        let identity = 1000 + index as u32;
        datapath.upsert_endpoint(
            ifindex,
            EndpointEntry::new(id, identity).with_ipv4(pod.ipv4),
        )?;
        datapath.upsert_ipcache(
            format!("{}/32", pod.ipv4).parse()?,
            IpcacheEntry::local_endpoint(identity, id),
        )?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let reader = {
        let _guard = runtime.enter();
        datapath.take_event_reader()?
    };
    let reader_stats = reader.stats();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(EVENT_CHANNEL_CAPACITY);
    let decoded = Arc::new(AtomicU64::new(0));
    let decoded_in_task = Arc::clone(&decoded);
    runtime.spawn(reader.forward(sender));
    runtime.spawn(async move {
        while let Some(record) = receiver.recv().await {
            if decode(&record).is_ok() {
                decoded_in_task.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let _stats = Datapath::enable_stats()?;

    let target = SocketAddr::new(topology.pods[1].ipv4.into(), 9000);
    let sink = udp_sink(&topology.pods[1].netns, target)?;
    let modes = [
        ("events on, batched wake-ups", DatapathConfig::default()),
        (
            "events on, wake-up per record",
            DatapathConfig {
                wakeup_bytes: 0,
                ..DatapathConfig::default()
            },
        ),
        (
            "events off",
            DatapathConfig {
                events_enabled: false,
                ..DatapathConfig::default()
            },
        ),
    ];
    println!("program cost per packet ({COST_PACKETS} UDP packets, both hooks):");
    for (name, config) in modes {
        datapath.set_config(config)?;
        let before = datapath.program_stats()?;
        let interrupts_before = irq_work_interrupts();
        flood(
            &topology.pods[0].netns,
            target,
            Some(COST_PACKETS),
            FLOOD * 10,
        )?;
        std::thread::sleep(Duration::from_millis(200));
        let after = datapath.program_stats()?;
        let (runs, ns) = delta(&before, &after);
        println!(
            "  {name:32} {:8.1} ns/run over {runs} runs, {} wake-up interrupts",
            ns as f64 / runs.max(1) as f64,
            irq_work_interrupts().saturating_sub(interrupts_before)
        );
    }

    datapath.set_config(DatapathConfig::default())?;
    let lost_before = datapath.kernel_lost()?;
    let read_before = reader_stats.records_read();
    let discarded_before = reader_stats.records_discarded();
    let decoded_before = decoded.load(Ordering::Relaxed);
    let wakeups_before = reader_stats.wakeups();
    let started = Instant::now();
    let sent = flood(&topology.pods[0].netns, target, None, FLOOD)?;
    std::thread::sleep(Duration::from_millis(300));
    let elapsed = started.elapsed().as_secs_f64();
    let read = reader_stats.records_read() - read_before;
    println!(
        "UDP flood, 64-byte payload, {:.1} s: {sent} packets sent ({:.0}/s), {read} records drained \
         ({:.0}/s), {} decoded, kernel_lost {}, channel discards {}, wake-ups {}",
        FLOOD.as_secs_f64(),
        sent as f64 / FLOOD.as_secs_f64(),
        read as f64 / elapsed,
        decoded.load(Ordering::Relaxed) - decoded_before,
        datapath.kernel_lost()? - lost_before,
        reader_stats.records_discarded() - discarded_before,
        reader_stats.wakeups() - wakeups_before,
    );
    sink.store(true, Ordering::Relaxed);

    let server = topology.pods[1].ipv4.to_string();
    let (client_ns, server_ns) = (&topology.pods[0].netns, &topology.pods[1].netns);
    let aggregation_medium = DatapathConfig {
        monitor_aggregation: monitor_aggregation::MEDIUM,
        ..DatapathConfig::default()
    };
    let off = DatapathConfig {
        events_enabled: false,
        ..DatapathConfig::default()
    };
    println!(
        "iperf3 TCP, {IPERF_SECONDS} s per run, {IPERF_ROUNDS} rounds, Gbit/s (median; ratio to no programs in the same round: median, min-max):"
    );
    let configs = [
        (
            "programs, events for every packet",
            DatapathConfig::default(),
        ),
        ("programs, monitor aggregation medium", aggregation_medium),
        ("programs, events off", off),
    ];
    let mut without = Vec::new();
    let mut with = vec![Vec::new(); configs.len()];
    let mut ratios = vec![Vec::new(); configs.len()];
    for _ in 0..IPERF_ROUNDS {
        for pod in &topology.pods {
            datapath.detach(&pod.host_veth)?;
        }
        let bare = iperf(client_ns, server_ns, &server)?;
        without.push(bare);
        for pod in &topology.pods {
            datapath.attach(&pod.host_veth)?;
        }
        for (i, (_, config)) in configs.iter().enumerate() {
            datapath.set_config(*config)?;
            let rate = iperf(client_ns, server_ns, &server)?;
            with[i].push(rate);
            ratios[i].push(rate / bare);
        }
    }
    println!("  {:44} {:6.2}", "no programs", median(&mut without) / 1e9);
    for (i, (name, _)) in configs.iter().enumerate() {
        let rate = median(&mut with[i]);
        let ratio = median(&mut ratios[i]);
        println!(
            "  {name:44} {:6.2} ({ratio:.3}, {:.3}-{:.3})",
            rate / 1e9,
            ratios[i][0],
            ratios[i][ratios[i].len() - 1]
        );
    }
    drop(datapath);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The machine's irq-work interrupts so far (`IWI` in /proc/interrupts, all CPUs): a
/// program's forced ring-buffer wake-up raises one. 0 where the kernel shows no count.
fn irq_work_interrupts() -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix("IWI:"))
        .map_or(0, |counts| {
            counts
                .split_whitespace()
                .map_while(|field| field.parse::<u64>().ok())
                .sum()
        })
}

fn bench_decode() {
    let header = EventHeader {
        msg_type: message_type::TRACE,
        subtype: trace_point::TO_LXC,
        ifindex: 7,
        ktime_ns: 1,
        src_identity: 1000,
        dst_identity: 1001,
        ..EventHeader::default()
    };
    let record = encode_record(&header, None, &[0x45; 98]);
    let rounds = 5_000_000u64;
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..rounds {
        if let Ok(DatapathEvent::Trace(event)) = decode(std::hint::black_box(&record)) {
            bytes += event.packet.len();
        }
    }
    let elapsed = started.elapsed();
    std::hint::black_box(bytes);
    println!(
        "decode: {:.1} ns/record ({:.1} M records/s, one core)",
        elapsed.as_nanos() as f64 / rounds as f64,
        rounds as f64 / elapsed.as_secs_f64() / 1e6
    );
}

fn delta(before: &ProgramStats, after: &ProgramStats) -> (u64, u64) {
    let runs = (after.from_container.run_cnt - before.from_container.run_cnt)
        + (after.to_container.run_cnt - before.to_container.run_cnt);
    let ns = (after.from_container.run_time_ns - before.from_container.run_time_ns)
        + (after.to_container.run_time_ns - before.to_container.run_time_ns);
    (runs, ns)
}

/// Binds a UDP socket in `netns` that discards what it receives until the
/// returned flag is set.
fn udp_sink(netns: &str, addr: SocketAddr) -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop_in_thread = Arc::clone(&stop);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_netns(netns, move || {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        ready_tx.send(()).ok();
        let mut buf = [0u8; 2048];
        while !stop_in_thread.load(Ordering::Relaxed) {
            let _ = socket.recv(&mut buf);
        }
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(2))
        .context("UDP sink did not start")?;
    Ok(stop)
}

/// Sends 64-byte datagrams from `netns` until `count` are sent or `limit`
/// passes; returns how many were sent.
fn flood(netns: &str, to: SocketAddr, count: Option<u64>, limit: Duration) -> Result<u64> {
    in_netns(netns, move || {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect(to)?;
        let payload = [0x5a_u8; 64];
        let deadline = Instant::now() + limit;
        let mut sent = 0u64;
        while count.is_none_or(|c| sent < c) {
            if sent.is_multiple_of(1024) && Instant::now() > deadline {
                break;
            }
            if socket.send(&payload).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
}

/// Runs iperf3 from `client_ns` to `server` in `server_ns`; bits/s received.
fn iperf(client_ns: &str, server_ns: &str, server: &str) -> Result<f64> {
    let mut daemon = Command::new("ip")
        .args([
            "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", "5201",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting iperf3 (apt-get install iperf3)")?;
    std::thread::sleep(Duration::from_millis(300));
    let output = Command::new("ip")
        .args([
            "netns", "exec", client_ns, "iperf3", "-c", server, "-p", "5201", "-J",
        ])
        .args(["-t", &IPERF_SECONDS.to_string()])
        .output()?;
    let _ = daemon.wait();
    let json = String::from_utf8_lossy(&output.stdout);
    let Some(section) = json.find("\"sum_received\"").map(|at| &json[at..]) else {
        bail!("iperf3 printed no sum_received: {json}");
    };
    let Some(value) = section
        .find("\"bits_per_second\":")
        .map(|at| &section[at + 18..])
    else {
        bail!("iperf3 printed no bits_per_second");
    };
    let number: String = value
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    Ok(number.parse()?)
}
