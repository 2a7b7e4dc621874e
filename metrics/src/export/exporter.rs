//! One running exporter: a thread writing the flows of a bounded queue to its sink.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use pbjson_types::Timestamp;
use proto::fieldmask::FieldMask;
use proto::filter::FilterSet;
use proto::flow::{Flow, LostEvent};
use proto::json::{ToJson, Writer};

use super::config::{ExporterConfig, STDOUT_PATH};
use super::rotate::{LostLines, RotatingFile, RotationConfig};
use crate::error::ExportError;

/// Capacity of each exporter's queue, in events. At the agent's target rates (about a
/// million flows per second at most) this absorbs a pause of several milliseconds of the
/// writer (a rotation, a slow disk); beyond it flows are dropped and counted rather
/// than slowing the agent down.
pub const EXPORT_QUEUE_CAPACITY: usize = 16_384;

/// Write errors are logged at most this often per exporter (all are counted).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What an exporter writes.
#[derive(Debug, Clone)]
pub(crate) enum ExportItem {
    Flow(Arc<Flow>),
    Lost {
        event: Arc<LostEvent>,
        node_name: Arc<str>,
        time: Timestamp,
    },
}

/// Counters of one exporter.
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// Events that reached the file.
    pub written: AtomicU64,
    /// Events dropped because the queue was full.
    pub discarded: AtomicU64,
    /// Events lost to write errors (full disk, removed directory, ...).
    pub errors: AtomicU64,
}

/// Writes `flow` as upstream's exporter does: one `ExportEvent` whose time and node
/// name come from the flow, followed by a newline, into `out`.
pub fn write_export_line(w: &mut Writer, flow: &Flow, out: &mut Vec<u8>) {
    w.clear();
    w.begin_object();
    w.key("flow");
    flow.write_json(w);
    finish_event(w, &flow.node_name, flow.time.as_ref());
    out.extend_from_slice(w.as_str().as_bytes());
    out.push(b'\n');
}

fn write_lost_line(
    w: &mut Writer,
    event: &LostEvent,
    node_name: &str,
    time: &Timestamp,
    out: &mut Vec<u8>,
) {
    w.clear();
    w.begin_object();
    w.key("lost_events");
    event.write_json(w);
    finish_event(w, node_name, Some(time));
    out.extend_from_slice(w.as_str().as_bytes());
    out.push(b'\n');
}

fn finish_event(w: &mut Writer, node_name: &str, time: Option<&Timestamp>) {
    if !node_name.is_empty() {
        w.key("node_name");
        w.string(node_name);
    }
    if let Some(time) = time {
        w.key("time");
        w.timestamp(time);
    }
    w.end_object();
}

/// The compiled parts of a configuration, checked before anything is started.
pub(crate) struct Prepared {
    pub config: ExporterConfig,
    filters: FilterSet,
    mask: FieldMask,
}

impl Prepared {
    pub fn new(config: ExporterConfig) -> Result<Self, ExportError> {
        let filters = FilterSet::compile(&config.include_filters, &config.exclude_filters)
            .map_err(|e| ExportError::Invalid {
                name: config.name.clone(),
                reason: e.to_string(),
            })?;
        let mask = FieldMask::compile(&config.field_mask)?;
        Ok(Self {
            config,
            filters,
            mask,
        })
    }
}

/// A started exporter.
pub(crate) struct RunningExporter {
    pub config: ExporterConfig,
    pub stats: Arc<ExporterStats>,
    sender: SyncSender<ExportItem>,
    thread: Option<JoinHandle<()>>,
}

impl RunningExporter {
    /// Starts the writer thread of `prepared`.
    pub fn start(prepared: Prepared, stats: Arc<ExporterStats>) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(EXPORT_QUEUE_CAPACITY);
        let config = prepared.config.clone();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("flow-export-{}", config.name))
            .spawn(move || run(prepared, receiver, &thread_stats))?;
        Ok(Self {
            config,
            stats,
            sender,
            thread: Some(thread),
        })
    }

    /// Queues `item` without waiting; a full queue drops it and counts it.
    pub fn offer(&self, item: ExportItem) {
        match self.sender.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Stops the exporter after it has written everything queued.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let (dead_sender, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.sender, dead_sender));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        self.finish();
    }
}

enum Sink {
    File(RotatingFile),
    Stdout(Vec<u8>),
}

impl Sink {
    /// Returns how many lines reached the output.
    fn write_line(&mut self, line: &[u8]) -> Result<u64, LostLines> {
        match self {
            Sink::File(file) => file.write_line(line),
            Sink::Stdout(buffer) => {
                buffer.extend_from_slice(line);
                Ok(0)
            }
        }
    }

    /// Returns how many lines reached the output.
    fn flush(&mut self) -> Result<u64, LostLines> {
        match self {
            Sink::File(file) => file.flush(),
            Sink::Stdout(buffer) => {
                let lines = buffer.iter().filter(|b| **b == b'\n').count() as u64;
                let result = std::io::stdout().lock().write_all(buffer);
                buffer.clear();
                result
                    .map(|()| lines)
                    .map_err(|error| LostLines { lines, error })
            }
        }
    }

    fn close(&mut self) -> Result<u64, LostLines> {
        match self {
            Sink::File(file) => file.close(),
            Sink::Stdout(_) => self.flush(),
        }
    }
}

struct Writing<'a> {
    name: String,
    stats: &'a ExporterStats,
    last_error_log: Option<Instant>,
}

impl Writing<'_> {
    fn account(&mut self, result: Result<u64, LostLines>) {
        match result {
            Ok(lines) => {
                self.stats.written.fetch_add(lines, Ordering::Relaxed);
            }
            Err(lost) => self.report(lost),
        }
    }

    fn report(&mut self, lost: LostLines) {
        self.stats.errors.fetch_add(lost.lines, Ordering::Relaxed);
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|last| now.duration_since(last) >= ERROR_LOG_INTERVAL)
        {
            self.last_error_log = Some(now);
            tracing::error!(exporter = %self.name, lines = lost.lines, error = %lost.error, "cannot write flow log");
        }
    }
}

fn run(prepared: Prepared, receiver: Receiver<ExportItem>, stats: &ExporterStats) {
    let Prepared {
        config,
        filters,
        mask,
    } = prepared;
    let mut sink = if config.file_path.as_os_str() == STDOUT_PATH {
        Sink::Stdout(Vec::with_capacity(64 * 1024))
    } else {
        Sink::File(RotatingFile::new(
            &config.file_path,
            RotationConfig {
                max_size_bytes: config.file_max_size_bytes,
                max_backups: config.file_max_backups,
                compress: config.file_compress,
            },
        ))
    };
    let mut state = Writing {
        name: config.name.clone(),
        stats,
        last_error_log: None,
    };
    let mut json = Writer::with_capacity(4096);
    let mut line = Vec::with_capacity(4096);
    loop {
        let item = match receiver.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Empty) => {
                // Idle: make what was written visible, then wait.
                state.account(sink.flush());
                match receiver.recv() {
                    Ok(item) => item,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        if !config.is_active(Utc::now()) {
            continue;
        }
        line.clear();
        match &item {
            ExportItem::Flow(flow) => {
                if !filters.matches(flow.as_ref()) {
                    continue;
                }
                if mask.is_active() {
                    match mask.apply(flow) {
                        Ok(masked) => write_export_line(&mut json, &masked, &mut line),
                        Err(error) => {
                            let error = std::io::Error::other(error);
                            state.report(LostLines { lines: 1, error });
                            continue;
                        }
                    }
                } else {
                    write_export_line(&mut json, flow, &mut line);
                }
            }
            ExportItem::Lost {
                event,
                node_name,
                time,
            } => {
                // Lost events carry no flow; an include list selects flows only.
                if !config.include_filters.is_empty() {
                    continue;
                }
                write_lost_line(&mut json, event, node_name, time, &mut line);
            }
        }
        state.account(sink.write_line(&line));
    }
    state.account(sink.close());
}
