//! Ingest figure: the whole path from a datapath ring-buffer record to a stored flow,
//! on one core, as `hubble-agent` runs it: the record decoded and parsed into a flow
//! (`observer::parser::Parser`), enriched from the agent's state (`StateGetters`:
//! endpoints, identities, the deathstar service), the hooks (`FlowHooks` with the
//! agent's default metrics handlers), then compacted and inserted into a full ring
//! (`FlowStoreWriter`). Records are built in the kernel's layout
//! (`ebpf_events::encode`): the seeds' demo traffic, a mix of trace, policy-verdict
//! and drop records between the tiefighter, the xwing and two deathstars.
//!
//! Each stage is also timed on its own (decode and parse with enrichment; hooks;
//! compact and insert), so the figure says where the time goes.
//!
//! With `HUBBLE_PARSER_BENCH_UPSTREAM` naming upstream's compiled parser benchmark
//! (`go test -c` of cilium's `pkg/hubble/parser/threefour`, built by hand, never part of
//! the repository), its `BenchmarkL34Decode` (decode alone, no-op getters) runs in the
//! same run and the ratio is printed.
//!
//! Run with `cargo bench -p agent --bench ingest` (add `-- --quick` for a short run).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agent::daemon::{FlowHooks, Links, StateGetters};
use agent::endpoints::{EndpointEvent, EndpointSpec, WatchedEndpoint};
use agent::identity::LocalIdentityAllocator;
use agent::services::{parse_service_file, ServiceSource};
use agent::state::AgentState;
use ebpf_events::abi::{EventHeader, PolicyVerdictInfo, EVENT_FLAG_TO_ENDPOINT};
use ebpf_events::constants::{
    drop_reason, message_type, policy_action, policy_match, trace_point, trace_reason,
};
use ebpf_events::encode::{encode_record, ipv4_tcp_frame};
use ebpf_events::KtimeClock;
use metrics::{Metrics, MetricsConfig};
use observer::parser::Parser;
use observer::store::FlowStore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEATHSTAR_SERVICE: &str = "name: deathstar
namespace: default
type: ClusterIP
clusterIP: 10.96.60.53
ports:
- name: http
  port: 80
  targetPort: 80
  protocol: TCP
selector: {org: empire, class: deathstar}
";

/// The demo's pods: (endpoint id, name, class, org, address).
const PODS: [(u16, &str, &str, &str, &str); 4] = [
    (1, "deathstar-1", "deathstar", "empire", "10.200.1.11"),
    (2, "deathstar-2", "deathstar", "empire", "10.200.1.13"),
    (3, "tiefighter", "tiefighter", "empire", "10.200.1.14"),
    (4, "xwing", "xwing", "alliance", "10.200.1.12"),
];

/// CPU time of this thread: the figures are per core even on a busy machine.
fn cpu_now() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// The agent's state with the demo's pods and the deathstar service.
fn demo_state() -> Arc<AgentState> {
    let state = AgentState::new(Arc::new(LocalIdentityAllocator::new()), "default");
    let spec = parse_service_file(std::path::Path::new("deathstar.yaml"), DEATHSTAR_SERVICE)
        .expect("the deathstar service parses");
    state
        .upsert_service(
            ServiceSource::File("/svc/default_deathstar.yaml".into()),
            spec,
        )
        .expect("the deathstar service is declared");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime for the state's endpoint events");
    for (id, name, class, org, ipv4) in PODS {
        let pod = WatchedEndpoint {
            id,
            path: format!("/eps/default_{name}.yaml").into(),
            spec: EndpointSpec {
                name: name.to_string(),
                namespace: "default".to_string(),
                labels: [
                    ("org".to_string(), org.to_string()),
                    ("class".to_string(), class.to_string()),
                ]
                .into(),
                ipv4: ipv4.parse().expect("address"),
                ipv6: None,
                interface: format!("lxc{id}"),
                workloads: Vec::new(),
            },
        };
        runtime
            .block_on(state.apply_endpoint_event(EndpointEvent::Added(pod)))
            .expect("the pod gets an identity");
    }
    state
}

/// An Ethernet + IPv4 + TCP frame between two address texts.
fn tcp_frame(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let address = |text: &str| text.parse().expect("an IPv4 address");
    ipv4_tcp_frame(address(src), address(dst), sport, dport, flags)
}

/// One connection's records of the demo, `n` picking ships, deathstars and ports.
fn records_of_connection(state: &AgentState, n: u64) -> Vec<Vec<u8>> {
    let pod = |name: &str| {
        state
            .endpoints()
            .into_iter()
            .find(|e| e.spec.name == name)
            .expect("a demo pod")
    };
    let deathstar = pod(if n.is_multiple_of(2) {
        "deathstar-1"
    } else {
        "deathstar-2"
    });
    let ship = pod(if n % 4 == 3 { "xwing" } else { "tiefighter" });
    let (ship_ip, ds_ip) = (ship.spec.ipv4.to_string(), deathstar.spec.ipv4.to_string());
    let sport = 32768 + (n % 28000) as u16;
    let ktime = 42_942_000_000 + n * 1_000;
    let header = |msg_type: u8, subtype: u8, at: &agent::endpoints::Endpoint, reason: u8| {
        let (src_identity, dst_identity) = if reason == trace_reason::REPLY {
            (deathstar.identity.0, ship.identity.0)
        } else {
            (ship.identity.0, deathstar.identity.0)
        };
        EventHeader {
            msg_type,
            subtype,
            source: at.id,
            ifindex: u32::from(at.id) + 100,
            ktime_ns: ktime,
            orig_len: 54,
            src_identity,
            dst_identity,
            reason,
            ..Default::default()
        }
    };
    let trace = |point: u8, at: &agent::endpoints::Endpoint, reason: u8, frame: &[u8]| {
        encode_record(&header(message_type::TRACE, point, at, reason), None, frame)
    };
    // The deathstar's ingress policy verdict on the ship's SYN.
    let verdict = |match_type: u8, action: u8, frame: &[u8]| {
        let mut verdict = header(message_type::POLICY_VERDICT, 0, &deathstar, 0);
        verdict.flags = EVENT_FLAG_TO_ENDPOINT;
        let info = PolicyVerdictInfo {
            remote_identity: ship.identity.0,
            dport: 80,
            protocol: 6,
            direction: 0,
            match_type,
            action,
            ..Default::default()
        };
        encode_record(&verdict, Some(&info), frame)
    };
    let syn = tcp_frame(&ship_ip, &ds_ip, sport, 80, 0x02);
    if ship.spec.name == "xwing" {
        // rule1 drops the xwing's SYN at the deathstar: a verdict and a drop.
        let mut drop = header(
            message_type::DROP,
            drop_reason::POLICY_DENIED,
            &deathstar,
            0,
        );
        drop.flags = EVENT_FLAG_TO_ENDPOINT;
        return vec![
            trace(trace_point::FROM_LXC, &ship, trace_reason::NEW, &syn),
            verdict(policy_match::NONE, policy_action::DENIED, &syn),
            encode_record(&drop, None, &syn),
        ];
    }
    let syn_ack = tcp_frame(&ds_ip, &ship_ip, 80, sport, 0x12);
    let ack = tcp_frame(&ship_ip, &ds_ip, sport, 80, 0x10);
    let fin = tcp_frame(&ds_ip, &ship_ip, 80, sport, 0x11);
    vec![
        trace(trace_point::FROM_LXC, &ship, trace_reason::NEW, &syn),
        verdict(policy_match::L3_L4, policy_action::ALLOWED, &syn),
        trace(trace_point::TO_LXC, &deathstar, trace_reason::NEW, &syn),
        trace(
            trace_point::FROM_LXC,
            &deathstar,
            trace_reason::REPLY,
            &syn_ack,
        ),
        trace(trace_point::TO_LXC, &ship, trace_reason::REPLY, &syn_ack),
        trace(
            trace_point::FROM_LXC,
            &ship,
            trace_reason::ESTABLISHED,
            &ack,
        ),
        trace(trace_point::FROM_LXC, &deathstar, trace_reason::REPLY, &fin),
    ]
}

/// Records each stage runs over between two clock reads when the stages are timed apart.
const STAGE_BATCH: usize = 1024;

/// Per-record CPU time of each stage and of the whole path, over `total` records.
#[derive(Default)]
struct Stages {
    parse: Duration,
    hooks: Duration,
    store: Duration,
    records: u64,
}

fn ns_per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total: u64 = if quick { 200_000 } else { 3_000_000 };
    let capacity = if quick { (1 << 16) - 1 } else { (1 << 20) - 1 };

    let state = demo_state();
    let parser = Parser::new(
        "node1",
        KtimeClock::measure().expect("the kernel clock"),
        StateGetters::new(state.clone(), Links::default()).into_parser_getters(),
    );
    let handlers =
        MetricsConfig::parse(agent::cli::DEFAULT_METRICS).expect("the default metrics parse");
    let hooks = FlowHooks {
        metrics: Some(Arc::new(Metrics::new(&handlers))),
        export: None,
    };
    let (mut writer, store) = FlowStore::new(capacity).expect("valid capacity");

    // 1,024 connections' records, cycled: distinct ports and times, the demo's pods.
    let records: Vec<Vec<u8>> = (0..1024)
        .flat_map(|n| records_of_connection(&state, n))
        .collect();

    // Warm-up: fill the ring once, so the measured inserts overwrite, as in a running
    // agent.
    for record in records.iter().cycle().take(capacity as usize + 1) {
        let flow = parser.parse(record).expect("a demo record parses");
        writer.push_flow(hooks.on_flow(flow), &mut |_| {});
    }

    // The whole path, as the agent's pipeline and ring writer run it, on one thread.
    let start = cpu_now();
    for record in records.iter().cycle().take(total as usize) {
        let flow = parser.parse(record).expect("a demo record parses");
        writer.push_flow(hooks.on_flow(flow), &mut |_| {});
    }
    let whole = cpu_now() - start;

    // The same path with each stage timed on its own, a batch of records at a time (a
    // clock read per record and stage would cost more than some stages: the thread's
    // CPU clock is a system call).
    let mut stages = Stages::default();
    let mut batch = Vec::with_capacity(STAGE_BATCH);
    let mut cycle = records.iter().cycle();
    while stages.records < total / 4 {
        let t0 = cpu_now();
        batch.extend(
            cycle
                .by_ref()
                .take(STAGE_BATCH)
                .map(|record| parser.parse(record).expect("a demo record parses")),
        );
        let t1 = cpu_now();
        batch = batch.into_iter().map(|flow| hooks.on_flow(flow)).collect();
        let t2 = cpu_now();
        stages.records += batch.len() as u64;
        for flow in batch.drain(..) {
            writer.push_flow(flow, &mut |_| {});
        }
        let t3 = cpu_now();
        stages.parse += t1 - t0;
        stages.hooks += t2 - t1;
        stages.store += t3 - t2;
    }
    std::hint::black_box(store.ring().oldest());

    let per_record = ns_per(whole, total);
    println!(
        "ingest, record -> stored flow, one core ({total} records of the demo's traffic, ring of {capacity}, mimalloc as hubble-agent)"
    );
    println!(
        "  whole path (decode, parse, enrich, metrics hooks, compact, insert): {per_record:>7.1} ns/record = {:.2} M records/s per core",
        1e3 / per_record
    );
    let n = stages.records;
    println!(
        "  stages (timed apart): decode+parse+enrich {:.1} ns, hooks {:.1} ns, compact+insert {:.1} ns",
        ns_per(stages.parse, n),
        ns_per(stages.hooks, n),
        ns_per(stages.store, n)
    );
    if let Some(upstream) = std::env::var_os("HUBBLE_PARSER_BENCH_UPSTREAM") {
        match upstream_decode_ns(&upstream) {
            Ok(ns) => println!(
                "  upstream BenchmarkL34Decode (decode alone, no-op getters): {ns:.1} ns/record; ours whole path / upstream decode: {:.2}x as fast",
                ns / per_record
            ),
            Err(e) => println!("  upstream BenchmarkL34Decode not run: {e}"),
        }
    } else {
        println!("  upstream: set HUBBLE_PARSER_BENCH_UPSTREAM to upstream's compiled threefour parser benchmark");
    }
}

/// Runs upstream's `BenchmarkL34Decode` and returns its ns/op.
fn upstream_decode_ns(binary: &std::ffi::OsStr) -> Result<f64, String> {
    let out = Command::new(binary)
        .args([
            "-test.run",
            "^$",
            "-test.bench",
            "^BenchmarkL34Decode$",
            "-test.benchmem",
            "-test.count",
            "3",
        ])
        .output()
        .map_err(|e| format!("running {}: {e}", binary.to_string_lossy()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("BenchmarkL34Decode"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|w| *w == "ns/op")?;
            fields.get(at.checked_sub(1)?)?.parse().ok()
        })
        .collect();
    if figures.is_empty() {
        return Err(format!("no BenchmarkL34Decode line in its output:\n{text}"));
    }
    figures.sort_by(f64::total_cmp);
    Ok(figures[figures.len() / 2])
}
