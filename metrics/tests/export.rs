//! Flow export: line format, filters, field masks, rotation through the exporter, write
//! errors and configuration reloads.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use metrics::export::{
    parse_dynamic_config, parse_flow_filters, watch_config_file, write_export_line, ExportManager,
    ExporterConfig,
};
use metrics::exposition::{encode, Collect, Format};
use pbjson_types::Timestamp;
use proto::fieldmask::FieldMask;
use proto::flow::{layer4, Endpoint, Flow, Ip, Layer4, Tcp, Verdict};
use proto::observer::{export_event, ExportEvent};

fn flow(n: usize, source_pod: &str, verdict: Verdict) -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: 1_700_000_000 + n as i64,
            nanos: 123_000_000,
        }),
        uuid: format!("uuid-{n}"),
        verdict: verdict as i32,
        ip: Some(Ip {
            source: "10.200.1.12".into(),
            destination: "10.200.1.20".into(),
            ip_version: 1,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40000,
                destination_port: 80,
                flags: None,
            })),
        }),
        source: Some(Endpoint {
            namespace: "default".into(),
            pod_name: source_pod.into(),
            labels: vec!["k8s:org=<alliance>&co".into()],
            ..Default::default()
        }),
        destination: Some(Endpoint {
            namespace: "default".into(),
            pod_name: "deathstar".into(),
            ..Default::default()
        }),
        node_name: "kind-worker".into(),
        ..Default::default()
    }
}

fn read_lines(dir: &Path) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let mut text = String::new();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(std::fs::File::open(&path)?).read_to_string(&mut text)?;
        } else if path.is_file() {
            text = std::fs::read_to_string(&path)?;
        }
        lines.extend(text.lines().map(str::to_owned));
    }
    Ok(lines)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out waiting for {what}")
}

#[test]
fn lines_are_upstream_export_events() {
    let f = flow(1, "xwing", Verdict::Dropped);
    let mut writer = proto::json::Writer::with_capacity(1024);
    let mut line = Vec::new();
    write_export_line(&mut writer, &f, &mut line);
    let event = ExportEvent {
        node_name: f.node_name.clone(),
        time: f.time,
        response_types: Some(export_event::ResponseTypes::Flow(f.clone())),
    };
    let want = proto::json::to_string(&event) + "\n";
    assert_eq!(String::from_utf8_lossy(&line), want);
    let text = String::from_utf8_lossy(&line);
    assert!(
        text.starts_with("{\"flow\":{\"time\":\"2023-11-14T22:13:21.123Z\""),
        "{text}"
    );
    assert!(
        text.ends_with(",\"node_name\":\"kind-worker\",\"time\":\"2023-11-14T22:13:21.123Z\"}\n"),
        "{text}"
    );
    assert!(
        text.contains("\\u003calliance\\u003e\\u0026co"),
        "Go's HTML escaping: {text}"
    );
}

#[test]
fn filters_parse_in_upstream_syntax() -> Result<()> {
    let filters = parse_flow_filters(
        r#"{"source_pod":["default/xwing"]} {"verdict":["DROPPED"],"destinationPod":["default/"]}"#,
    )?;
    assert_eq!(filters.len(), 2);
    assert_eq!(filters[0].source_pod, ["default/xwing"]);
    assert_eq!(filters[1].verdict, [Verdict::Dropped as i32]);
    assert_eq!(filters[1].destination_pod, ["default/"]);
    let list = parse_flow_filters(r#"[{"source_pod":["a/"]},{"source_pod":["b/"]}]"#)?;
    assert_eq!(list.len(), 2);
    let error = parse_flow_filters(r#"{"verdict":["SOMETIMES"]}"#)
        .err()
        .context("bad verdict accepted")?;
    assert!(error.to_string().contains("SOMETIMES"), "{error}");
    Ok(())
}

#[test]
fn dynamic_config_in_upstream_format() -> Result<()> {
    let configs = parse_dynamic_config(
        r#"
flowLogs:
- name: "test001"
  filePath: "/var/log/network/flow-log/pa/test001.log"
  fieldMask: []
  includeFilters: []
  excludeFilters: []
  end: "2023-10-09T23:59:59-07:00"
- name: "test002"
  filePath: "/var/log/network/flow-log/pa/test002.log"
  fieldMask: ["source.namespace", "source.pod_name", "destination.namespace", "destination.pod_name", "verdict"]
  includeFilters:
  - source_pod: ["default/"]
    event_type:
    - type: 1
  - destination_pod: ["frontend/nginx-975996d4c-7hhgt"]
  excludeFilters: []
  fileMaxSizeMb: 1
  fileMaxBackups: 2
  fileCompress: true
"#,
    )?;
    assert_eq!(configs.len(), 2);
    assert!(!configs[0].is_active(chrono::Utc::now()));
    assert_eq!(configs[1].include_filters.len(), 2);
    assert_eq!(configs[1].include_filters[0].event_type[0].r#type, 1);
    assert_eq!(configs[1].file_max_size_bytes, 1024 * 1024);
    assert_eq!(configs[1].file_max_backups, 2);
    assert!(configs[1].file_compress);
    let error = parse_dynamic_config(
        "flowLogs:\n- name: a\n  filePath: /x\n- name: a\n  filePath: /x\n- filePath: /y\n",
    )
    .err()
    .context("duplicates accepted")?;
    let text = error.to_string();
    assert!(text.contains("duplicated flowlog name a"), "{text}");
    assert!(text.contains("duplicated flowlog path /x"), "{text}");
    assert!(text.contains("name is required"), "{text}");
    Ok(())
}

#[test]
fn field_mask_keeps_listed_fields_as_upstream() -> Result<()> {
    let mask = FieldMask::compile(&["source.pod_name", "verdict", "time"])?;
    let masked = mask.apply(&flow(1, "xwing", Verdict::Dropped))?;
    let mut writer = proto::json::Writer::with_capacity(256);
    let mut line = Vec::new();
    write_export_line(&mut writer, &masked, &mut line);
    assert_eq!(
        String::from_utf8_lossy(&line),
        "{\"flow\":{\"time\":\"2023-11-14T22:13:21.123Z\",\"verdict\":\"DROPPED\",\"source\":{\"pod_name\":\"xwing\"}},\"time\":\"2023-11-14T22:13:21.123Z\"}\n"
    );
    // A path into a message the flow lacks yields it empty, as upstream's copy does.
    let mut bare = flow(2, "xwing", Verdict::Forwarded);
    bare.destination = None;
    let masked = FieldMask::compile(&["destination.namespace"])?.apply(&bare)?;
    assert_eq!(masked.destination, Some(Endpoint::default()));
    let error = FieldMask::compile(&["source.podname"])
        .err()
        .context("bad path accepted")?;
    assert!(error.to_string().contains("podname"), "{error}");
    assert!(FieldMask::compile(&["source_names.x"]).is_err());
    Ok(())
}

#[test]
fn exporter_filters_masks_and_rotates_without_loss() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flows").join("hubble-events.log");
    let mut config = ExporterConfig::new("audit", &path);
    config.include_filters = parse_flow_filters(r#"{"source_pod":["default/xwing"]}"#)?;
    config.exclude_filters = parse_flow_filters(r#"{"verdict":["FORWARDED"]}"#)?;
    config.field_mask = vec!["uuid".into(), "source".into(), "verdict".into()];
    config.file_max_size_bytes = 8 * 1024;
    config.file_max_backups = 1000;
    config.file_compress = true;
    let manager = ExportManager::new();
    manager.apply(vec![config])?;
    let total = 6000;
    for n in 0..total {
        let (pod, verdict) = match n % 3 {
            0 => ("xwing", Verdict::Dropped),
            1 => ("xwing", Verdict::Forwarded),
            _ => ("tiefighter", Verdict::Dropped),
        };
        manager.export_flow(&Arc::new(flow(n, pod, verdict)));
    }
    let stats = manager.stats("audit").context("exporter stats")?;
    manager.stop_all();
    let lines = read_lines(path.parent().context("parent")?)?;
    let files = std::fs::read_dir(path.parent().context("parent")?)?.count();
    assert!(files > 10, "expected several rotations, got {files} files");
    assert_eq!(stats.discarded.load(Ordering::Relaxed), 0);
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    assert_eq!(lines.len(), total / 3);
    assert_eq!(stats.written.load(Ordering::Relaxed), (total / 3) as u64);
    let uuids: HashSet<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v["flow"]["uuid"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(uuids.len(), total / 3, "duplicated or unreadable lines");
    assert!(lines.iter().all(|l| l.contains("\"verdict\":\"DROPPED\"")
        && l.contains("\"pod_name\":\"xwing\"")
        && !l.contains("\"IP\"")
        && !l.contains("node_name")));
    Ok(())
}

#[test]
fn write_errors_are_counted_and_exposed() -> Result<()> {
    let manager = ExportManager::new();
    manager.apply(vec![ExporterConfig::new("full", "/dev/full")])?;
    for n in 0..10 {
        manager.export_flow(&Arc::new(flow(n, "xwing", Verdict::Dropped)));
    }
    let stats = manager.stats("full").context("stats")?;
    manager.stop_all();
    assert_eq!(stats.errors.load(Ordering::Relaxed), 10);
    assert_eq!(stats.written.load(Ordering::Relaxed), 0);
    let mut families = Vec::new();
    manager.collect(&mut families);
    let text = encode(families, Format::Text);
    assert!(
        text.contains("hubble_export_errors_total{name=\"full\"} 10"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_full_queue_drops_and_counts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manager = ExportManager::new();
    manager.apply(vec![ExporterConfig::new("burst", dir.path().join("f.log"))])?;
    let total = metrics::export::EXPORT_QUEUE_CAPACITY * 8;
    let shared = Arc::new(flow(1, "xwing", Verdict::Dropped));
    for _ in 0..total {
        manager.export_flow(&shared);
    }
    let stats = manager.stats("burst").context("stats")?;
    manager.stop_all();
    let written = stats.written.load(Ordering::Relaxed);
    let discarded = stats.discarded.load(Ordering::Relaxed);
    assert_eq!(written + discarded, total as u64);
    assert_eq!(read_lines(dir.path())?.len() as u64, written);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_changes_are_applied_without_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("exporters.yaml");
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    std::fs::write(
        &config_path,
        format!("flowLogs:\n- name: a\n  filePath: {}\n", a.display()),
    )?;
    let manager = Arc::new(ExportManager::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = watch_config_file(
        manager.clone(),
        config_path.clone(),
        Duration::from_millis(200),
        async move {
            let _ = stop_rx.await;
        },
    );
    let m = manager.clone();
    tokio::task::spawn_blocking(move || wait_for("exporter a", || m.running() == ["a"])).await??;
    manager.export_flow(&Arc::new(flow(1, "xwing", Verdict::Dropped)));

    // Replace the file by a rename, as Kubernetes does with ConfigMaps.
    let staged = dir.path().join("exporters.yaml.new");
    std::fs::write(
        &staged,
        format!(
            "flowLogs:\n- name: b\n  filePath: {}\n  includeFilters:\n  - verdict: [FORWARDED]\n",
            b.display()
        ),
    )?;
    std::fs::rename(&staged, &config_path)?;
    let m = manager.clone();
    tokio::task::spawn_blocking(move || wait_for("exporter b", || m.running() == ["b"])).await??;
    manager.export_flow(&Arc::new(flow(2, "xwing", Verdict::Dropped)));
    manager.export_flow(&Arc::new(flow(3, "xwing", Verdict::Forwarded)));

    // A broken file keeps the running exporters.
    std::fs::write(&staged, "flowLogs: [ {name: \n")?;
    std::fs::rename(&staged, &config_path)?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(manager.running(), ["b"]);

    let _ = stop_tx.send(());
    task.await?;
    assert!(manager.running().is_empty());
    let a_text = std::fs::read_to_string(&a)?;
    let b_text = std::fs::read_to_string(&b)?;
    assert_eq!(a_text.lines().count(), 1, "{a_text}");
    assert_eq!(b_text.lines().count(), 1, "{b_text}");
    assert!(b_text.contains("uuid-3"));
    let mut families = Vec::new();
    manager.collect(&mut families);
    let text = encode(families, Format::Text);
    assert!(
        text.contains("hubble_dynamic_exporter_reconfigurations_total{op=\"add\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("hubble_dynamic_exporter_reconfigurations_total{op=\"remove\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("hubble_dynamic_exporter_config_errors_total 1"),
        "{text}"
    );
    Ok(())
}
